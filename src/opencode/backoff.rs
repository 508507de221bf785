//! Reconnect backoff of the OpenCode server link: exponential with "equal jitter".
//!
//! Owns the waits between attempts to reach `opencode serve`. Each wait is drawn from
//! `[base/2, base]`, and the base doubles from `min` up to `max`; a successful connection
//! resets it. Equal rather than full jitter: a restarted server is picked up within about the
//! current base, never at once in a tight loop, and several gateways do not retry in step.

use std::time::Duration;

/// Waits between reconnect attempts.
#[derive(Debug, Clone)]
pub struct Backoff {
    min: Duration,
    max: Duration,
    base: Duration,
}

impl Backoff {
    /// Starts at `min` and never waits longer than `max` (`max` is raised to `min` if lower).
    pub fn new(min: Duration, max: Duration) -> Self {
        let min = min.max(Duration::from_millis(1));
        Self {
            min,
            max: max.max(min),
            base: min,
        }
    }

    /// The next wait, and doubles the base for the one after.
    pub fn next_wait(&mut self) -> Duration {
        let base = self.base;
        self.base = (self.base * 2).min(self.max);
        let half = base / 2;
        let spread = (base - half).as_nanos() as u64;
        half + Duration::from_nanos(fastrand::u64(0..=spread))
    }

    /// The base of the next wait (its upper bound).
    pub fn current(&self) -> Duration {
        self.base
    }

    /// After a success: the next wait starts from `min` again.
    pub fn reset(&mut self) {
        self.base = self.min;
    }

    /// Jumps to the longest wait (used while the password is wrong: retrying fast cannot help).
    pub fn saturate(&mut self) {
        self.base = self.max;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn waits_double_within_jitter_bounds_up_to_max() {
        let mut b = Backoff::new(100 * MS, 1000 * MS);
        let mut base = 100 * MS;
        for _ in 0..10 {
            let w = b.next_wait();
            assert!(
                w >= base / 2 && w <= base,
                "{w:?} not in [{:?}, {base:?}]",
                base / 2
            );
            base = (base * 2).min(1000 * MS);
            assert_eq!(b.current(), base);
        }
        assert_eq!(b.current(), 1000 * MS);
    }

    #[test]
    fn reset_and_saturate() {
        let mut b = Backoff::new(10 * MS, 80 * MS);
        for _ in 0..5 {
            b.next_wait();
        }
        b.reset();
        assert_eq!(b.current(), 10 * MS);
        assert!(b.next_wait() <= 10 * MS);
        b.saturate();
        assert_eq!(b.current(), 80 * MS);
    }

    #[test]
    fn degenerate_bounds_are_fixed_up() {
        let mut b = Backoff::new(Duration::ZERO, Duration::ZERO);
        assert!(b.next_wait() <= MS);
        let mut b = Backoff::new(50 * MS, 10 * MS);
        assert_eq!(b.current(), 50 * MS);
        b.next_wait();
        assert_eq!(b.current(), 50 * MS);
    }

    #[test]
    fn jitter_spreads_the_waits() {
        let mut seen = std::collections::HashSet::new();
        for _ in 0..50 {
            seen.insert(Backoff::new(1000 * MS, 1000 * MS).next_wait());
        }
        assert!(seen.len() > 1, "no jitter: {seen:?}");
    }
}
