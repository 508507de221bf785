//! The simulated account: USD and DIEM balances, billing order and the per-model
//! fixed rate-limit windows.
//!
//! Billing follows the Venice facts: a request is refused with 402 only when both
//! balances are already at or below zero; otherwise it is charged after it runs to
//! DIEM while DIEM is positive, else to USD, which may leave that balance slightly
//! negative. The DIEM allowance refreshes at 00:00 UTC (a new "epoch").
//!
//! Rate limits are per model, in fixed windows of `window` length: a window opens
//! at the first request after the previous one ended and counts requests and
//! tokens (prompt + completion). Everything here is synchronous and takes the
//! current time as a parameter so it can be tested without sleeping.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use super::SimConfig;

/// Rate-limit state of one model's window, as reported in `x-ratelimit-*` headers.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RateSnapshot {
    pub limit_requests: u64,
    pub remaining_requests: u64,
    pub limit_tokens: u64,
    pub remaining_tokens: u64,
    /// When the current window ends.
    pub reset_at: Instant,
}

impl RateSnapshot {
    /// The same snapshot with nothing remaining (used for rate-limit responses).
    pub fn exhausted(mut self) -> Self {
        self.remaining_requests = 0;
        self.remaining_tokens = 0;
        self
    }
}

/// What a request was charged, split by currency.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Charge {
    pub usd: f64,
    pub diem: f64,
}

/// Why a request was refused before running.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Refusal {
    /// Requests or tokens of the model's window are used up (429).
    RateLimited(RateSnapshot),
    /// Both balances are at or below zero (402).
    InsufficientBalance(RateSnapshot),
}

/// A request the account admitted.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Admitted {
    /// The window after this request was counted.
    pub rate: RateSnapshot,
    pub charge: Charge,
}

#[derive(Debug, Clone, Copy)]
struct Window {
    start: Instant,
    requests: u64,
    tokens: u64,
}

/// Balances and rate-limit windows of the simulated API key.
#[derive(Debug)]
pub struct Account {
    usd: f64,
    diem: f64,
    diem_allowance: f64,
    /// UTC day number (days since the Unix epoch) of the current DIEM epoch.
    epoch_day: u64,
    rpm: u64,
    tpm: u64,
    window: Duration,
    windows: HashMap<String, Window>,
}

impl Account {
    /// A fresh account from the simulator configuration.
    pub fn new(config: &SimConfig, epoch_day: u64) -> Self {
        Self {
            usd: config.balance_usd,
            diem: config.balance_diem,
            diem_allowance: config.balance_diem,
            epoch_day,
            rpm: config.rpm,
            tpm: config.tpm,
            // A zero window would never roll over sensibly; keep it positive.
            window: config.window.max(Duration::from_millis(1)),
            windows: HashMap::new(),
        }
    }

    /// Current `(usd, diem)` balances; refreshes DIEM when a new UTC day began.
    pub fn balances(&mut self, today: u64) -> (f64, f64) {
        self.roll_epoch(today);
        (self.usd, self.diem)
    }

    /// Whether any balance can pay for a request.
    pub fn can_pay(&self) -> bool {
        self.usd > 0.0 || self.diem > 0.0
    }

    /// The model's window at `now`, without counting anything.
    pub fn peek(&mut self, model: &str, now: Instant) -> RateSnapshot {
        let w = *self.window_mut(model, now);
        self.snapshot(&w)
    }

    /// Admits one request for `model`: checks the window, then the balance, then
    /// counts the request and its `tokens` and charges `cost_usd` (when `bill`).
    pub fn admit(
        &mut self,
        model: &str,
        now: Instant,
        today: u64,
        tokens: u64,
        cost_usd: f64,
        bill: bool,
    ) -> Result<Admitted, Refusal> {
        self.roll_epoch(today);
        let (rpm, tpm) = (self.rpm, self.tpm);
        let w = *self.window_mut(model, now);
        if w.requests >= rpm || w.tokens >= tpm {
            return Err(Refusal::RateLimited(self.snapshot(&w).exhausted()));
        }
        if !self.can_pay() {
            return Err(Refusal::InsufficientBalance(self.snapshot(&w)));
        }
        let w = self.window_mut(model, now);
        w.requests += 1;
        w.tokens = w.tokens.saturating_add(tokens);
        let w = *w;
        let charge = if bill {
            self.charge(cost_usd)
        } else {
            Charge::default()
        };
        Ok(Admitted {
            rate: self.snapshot(&w),
            charge,
        })
    }

    /// Charges `cost_usd` to DIEM while it is positive, else to USD.
    pub fn charge(&mut self, cost_usd: f64) -> Charge {
        let cost = if cost_usd.is_finite() && cost_usd > 0.0 {
            cost_usd
        } else {
            0.0
        };
        if cost == 0.0 {
            Charge::default()
        } else if self.diem > 0.0 {
            self.diem -= cost;
            Charge {
                usd: 0.0,
                diem: cost,
            }
        } else {
            self.usd -= cost;
            Charge {
                usd: cost,
                diem: 0.0,
            }
        }
    }

    fn roll_epoch(&mut self, today: u64) {
        if today > self.epoch_day {
            self.epoch_day = today;
            self.diem = self.diem_allowance;
        }
    }

    fn window_mut(&mut self, model: &str, now: Instant) -> &mut Window {
        let len = self.window;
        let w = self.windows.entry(model.to_string()).or_insert(Window {
            start: now,
            requests: 0,
            tokens: 0,
        });
        if now.saturating_duration_since(w.start) >= len {
            *w = Window {
                start: now,
                requests: 0,
                tokens: 0,
            };
        }
        w
    }

    fn snapshot(&self, w: &Window) -> RateSnapshot {
        RateSnapshot {
            limit_requests: self.rpm,
            remaining_requests: self.rpm.saturating_sub(w.requests),
            limit_tokens: self.tpm,
            remaining_tokens: self.tpm.saturating_sub(w.tokens),
            reset_at: w.start + self.window,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn account(usd: f64, diem: f64, rpm: u64, tpm: u64) -> Account {
        let config = SimConfig {
            balance_usd: usd,
            balance_diem: diem,
            rpm,
            tpm,
            window: Duration::from_secs(60),
            ..SimConfig::default()
        };
        Account::new(&config, 100)
    }

    #[test]
    fn window_counts_requests_then_rolls_over() {
        let mut a = account(10.0, 0.0, 2, 1_000);
        let t0 = Instant::now();
        let first = a.admit("m", t0, 100, 10, 0.0, true).expect("first");
        assert_eq!(first.rate.remaining_requests, 1);
        assert_eq!(first.rate.remaining_tokens, 990);
        assert_eq!(first.rate.reset_at, t0 + Duration::from_secs(60));
        let t1 = t0 + Duration::from_secs(1);
        assert!(a.admit("m", t1, 100, 10, 0.0, true).is_ok());
        match a.admit("m", t1, 100, 10, 0.0, true) {
            Err(Refusal::RateLimited(s)) => assert_eq!(s.remaining_requests, 0),
            other => panic!("expected rate limit, got {other:?}"),
        }
        // Another model has its own window.
        assert!(a.admit("other", t1, 100, 10, 0.0, true).is_ok());
        // The window ends 60 s after its first request.
        let t2 = t0 + Duration::from_secs(60);
        let again = a.admit("m", t2, 100, 10, 0.0, true).expect("new window");
        assert_eq!(again.rate.remaining_requests, 1);
        assert_eq!(again.rate.reset_at, t2 + Duration::from_secs(60));
    }

    #[test]
    fn tokens_exhaust_the_window() {
        let mut a = account(10.0, 0.0, 100, 50);
        let t0 = Instant::now();
        let ok = a.admit("m", t0, 100, 60, 0.0, true).expect("first");
        assert_eq!(ok.rate.remaining_tokens, 0);
        assert!(matches!(
            a.admit("m", t0, 100, 1, 0.0, true),
            Err(Refusal::RateLimited(_))
        ));
        assert_eq!(a.peek("m", t0).remaining_requests, 99);
    }

    #[test]
    fn diem_is_charged_before_usd_and_may_go_negative() {
        let mut a = account(1.0, 0.5, 100, 1_000_000);
        let t = Instant::now();
        let c = a.admit("m", t, 100, 1, 0.4, true).expect("ok").charge;
        assert_eq!(
            c,
            Charge {
                usd: 0.0,
                diem: 0.4
            }
        );
        // DIEM still positive (0.1): it is charged and goes negative.
        let c = a.admit("m", t, 100, 1, 0.3, true).expect("ok").charge;
        assert_eq!(c.diem, 0.3);
        let (usd, diem) = a.balances(100);
        assert_eq!(usd, 1.0);
        assert!(diem < 0.0);
        // Now USD pays.
        let c = a.admit("m", t, 100, 1, 0.25, true).expect("ok").charge;
        assert_eq!(
            c,
            Charge {
                usd: 0.25,
                diem: 0.0
            }
        );
        assert_eq!(a.balances(100).0, 0.75);
    }

    #[test]
    fn refuses_with_402_when_both_balances_are_gone() {
        let mut a = account(0.1, 0.0, 100, 1_000_000);
        let t = Instant::now();
        assert!(a.admit("m", t, 100, 1, 0.2, true).is_ok());
        assert!(a.balances(100).0 < 0.0);
        assert!(matches!(
            a.admit("m", t, 100, 1, 0.2, true),
            Err(Refusal::InsufficientBalance(_))
        ));
        // A refused request is not counted.
        assert_eq!(a.peek("m", t).remaining_requests, 99);
    }

    #[test]
    fn unbilled_requests_cost_nothing_and_diem_refreshes_daily() {
        let mut a = account(1.0, 2.0, 100, 1_000_000);
        let t = Instant::now();
        let c = a.admit("m", t, 100, 1, 1.5, false).expect("ok").charge;
        assert_eq!(c, Charge::default());
        a.admit("m", t, 100, 1, 1.5, true).expect("ok");
        assert_eq!(a.balances(100).1, 0.5);
        assert_eq!(a.balances(101).1, 2.0);
    }
}
