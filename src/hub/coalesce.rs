//! Coalescing of what Venice's response headers change: the balance and rate limits.
//!
//! Every response carries the account's balance and the model's rate-limit headroom, and both
//! change with every call. Applying and publishing each one would make three updates per
//! request (balance, rate limit, usage), each broadcast, encoded, encrypted and stored. The hub
//! instead applies header events at most once per [`WINDOW`]: the first one after a quiet
//! window is applied at once (a user's single request is seen without delay); later ones inside
//! the window wait, in order, and the hub applies them together when the window ends
//! ([`Coalescer::due`]), publishing one balance update and one rate-limit update per model
//! for the lot. Nothing is skipped — every waiting event is applied, oldest first, so the
//! state ends exactly where applying them one by one would — and the state never runs ahead of
//! the updates, so replaying the published updates always gives the live state.
//!
//! Owns only the waiting list and its timing; the hub applies and publishes.

use std::time::{Duration, Instant};

/// Shortest time between two applications of header events. The dashboard redraws at most
/// every 100 ms, so nothing a user can see is lost.
pub const WINDOW: Duration = Duration::from_millis(100);

/// Waiting events beyond which they are applied at once whatever the window (a bound on
/// memory under any load).
pub const MAX_WAITING: usize = 4096;

/// Events waiting for the end of the window, and when events were last applied.
#[derive(Debug)]
pub struct Coalescer<T> {
    window: Duration,
    last: Option<Instant>,
    waiting: Vec<T>,
}

impl<T> Default for Coalescer<T> {
    fn default() -> Self {
        Self::new(WINDOW)
    }
}

impl<T> Coalescer<T> {
    pub fn new(window: Duration) -> Self {
        Self {
            window,
            last: None,
            waiting: Vec::new(),
        }
    }

    /// Offers one event at `now`: returns the events to apply now (oldest first; empty when
    /// the event has to wait for the window to end).
    pub fn offer(&mut self, event: T, now: Instant) -> Vec<T> {
        self.waiting.push(event);
        let quiet = self
            .last
            .is_none_or(|at| now.saturating_duration_since(at) >= self.window);
        if quiet || self.waiting.len() >= MAX_WAITING {
            self.take(now)
        } else {
            Vec::new()
        }
    }

    /// When the waiting events are due (`None`: nothing waits).
    pub fn due(&self) -> Option<Instant> {
        match (self.waiting.is_empty(), self.last) {
            (false, Some(at)) => Some(at + self.window),
            (false, None) => Some(Instant::now()),
            (true, _) => None,
        }
    }

    /// Every waiting event, oldest first, to be applied now; the window restarts at `now`.
    pub fn take(&mut self, now: Instant) -> Vec<T> {
        self.last = Some(now);
        std::mem::take(&mut self.waiting)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const W: Duration = Duration::from_millis(100);

    #[test]
    fn first_event_goes_at_once_then_the_window_collects_in_order() {
        let mut c = Coalescer::new(W);
        let t0 = Instant::now();
        assert_eq!(c.offer(1, t0), vec![1]);
        assert_eq!(c.due(), None);
        assert!(c.offer(2, t0 + W / 4).is_empty());
        assert!(c.offer(3, t0 + W / 2).is_empty());
        assert_eq!(c.due(), Some(t0 + W));
        assert_eq!(c.take(t0 + W), vec![2, 3]);
        assert_eq!(c.due(), None);
        // Applied at t0 + W: the window starts again from there.
        assert!(c.offer(4, t0 + W + W / 2).is_empty());
        assert_eq!(c.due(), Some(t0 + 2 * W));
        assert_eq!(c.take(t0 + 2 * W), vec![4]);
        assert_eq!(c.offer(5, t0 + 4 * W), vec![5]);
    }

    #[test]
    fn a_quiet_stream_of_events_is_never_delayed() {
        let mut c = Coalescer::new(W);
        let t0 = Instant::now();
        for i in 0..5u32 {
            assert_eq!(c.offer(i, t0 + W * 2 * i), vec![i]);
        }
    }

    #[test]
    fn too_many_waiting_events_are_applied_at_once() {
        let mut c = Coalescer::new(W);
        let t0 = Instant::now();
        assert_eq!(c.offer(0, t0).len(), 1);
        for i in 1..MAX_WAITING {
            assert!(c.offer(i, t0).is_empty(), "event {i} waits");
        }
        let all = c.offer(MAX_WAITING, t0);
        assert_eq!(all.len(), MAX_WAITING);
        assert_eq!(all.first(), Some(&1));
        assert_eq!(c.due(), None);
    }
}
