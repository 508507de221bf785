//! One model's admission gate: a requests limiter, a tokens limiter, the hold Venice asked for,
//! and a bounded FIFO of waiting requests.
//!
//! Owns deciding when one request for one model may go upstream. Limiters are governor GCRA
//! limiters sized from the configured (or learned) per-window limits; a response that says
//! `remaining: 0` holds the model until its reset instant. Waiters queue in arrival order (tokio's
//! mutex is fair) and give up at their deadline.

use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use parking_lot::Mutex;
use serde::Serialize;
use tokio::time::Instant;

use crate::admission::{Limit, Refusal, RefusalKind};

/// The limiters of one model for one set of limits.
struct Limiters {
    rpm: u32,
    tpm: u32,
    requests: Arc<DefaultDirectRateLimiter>,
    tokens: Arc<DefaultDirectRateLimiter>,
}

fn limiter(per_window: u32, window: Duration) -> Arc<DefaultDirectRateLimiter> {
    let n = NonZeroU32::new(per_window.max(1)).unwrap_or(NonZeroU32::MIN);
    let period = (window / n.get()).max(Duration::from_nanos(1));
    let quota = Quota::with_period(period)
        .unwrap_or_else(|| Quota::per_second(NonZeroU32::MIN))
        .allow_burst(n);
    Arc::new(RateLimiter::direct(quota))
}

impl Limiters {
    fn new(rpm: u32, tpm: u32, window: Duration) -> Self {
        Self {
            rpm,
            tpm,
            requests: limiter(rpm, window),
            tokens: limiter(tpm, window),
        }
    }
}

struct Inner {
    limiters: Limiters,
    /// Venice said `remaining: 0`: hold until this instant, for this limit.
    hold: Option<(Instant, SystemTime, Limit)>,
}

/// What the state and metrics show of a gate.
#[derive(Debug, Clone, Serialize)]
pub struct GateView {
    pub rpm: u32,
    pub tpm: u32,
    pub waiting: usize,
    pub admitted: u64,
    pub refused: u64,
    #[serde(with = "crate::util::opt_epoch_ms")]
    pub held_until: Option<SystemTime>,
    pub held_for: Option<Limit>,
}

/// One model's gate.
pub struct Gate {
    window: Duration,
    /// Limits the user configured for this model: learned limits never exceed them.
    cap: Option<(u32, u32)>,
    fifo: tokio::sync::Mutex<()>,
    waiting: AtomicUsize,
    admitted: AtomicU64,
    refused: AtomicU64,
    inner: Mutex<Inner>,
}

/// Decrements the waiting count however the wait ends (admitted, refused, or dropped because
/// the client went away).
struct Waiting<'a>(&'a AtomicUsize);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Gate {
    /// A gate starting at `rpm`/`tpm`; `cap` (the user's own per-model limits) bounds what is
    /// learned from Venice later.
    pub fn new(rpm: u32, tpm: u32, window: Duration, cap: Option<(u32, u32)>) -> Self {
        Self {
            window,
            cap,
            fifo: tokio::sync::Mutex::new(()),
            waiting: AtomicUsize::new(0),
            admitted: AtomicU64::new(0),
            refused: AtomicU64::new(0),
            inner: Mutex::new(Inner {
                limiters: Limiters::new(rpm, tpm, window),
                hold: None,
            }),
        }
    }

    /// Waits until a request estimated at `tokens` may go, or refuses it. `max_queue` bounds
    /// the waiters; `deadline` bounds the wait.
    pub async fn admit(
        &self,
        tokens: u32,
        max_queue: usize,
        deadline: Instant,
    ) -> Result<Duration, Refusal> {
        let started = Instant::now();
        if self.waiting.fetch_add(1, Ordering::AcqRel) >= max_queue {
            self.waiting.fetch_sub(1, Ordering::AcqRel);
            return Err(self.refuse(RefusalKind::QueueFull, Limit::Queue, Duration::from_secs(1)));
        }
        let _waiting = Waiting(&self.waiting);
        let Ok(_turn) = tokio::time::timeout_at(deadline, self.fifo.lock()).await else {
            return Err(self.refuse(
                RefusalKind::WaitExceeded,
                Limit::Queue,
                Duration::from_secs(1),
            ));
        };
        self.wait_hold(deadline).await?;
        let (requests, token_limiter) = {
            let inner = self.inner.lock();
            (
                inner.limiters.requests.clone(),
                inner.limiters.tokens.clone(),
            )
        };
        self.wait_cells(&requests, 1, Limit::Requests, deadline)
            .await?;
        self.wait_cells(&token_limiter, tokens, Limit::Tokens, deadline)
            .await?;
        self.admitted.fetch_add(1, Ordering::Relaxed);
        Ok(started.elapsed())
    }

    async fn wait_hold(&self, deadline: Instant) -> Result<(), Refusal> {
        loop {
            let hold = self.inner.lock().hold;
            match hold {
                Some((until, _, limit)) if until > Instant::now() => {
                    if until > deadline {
                        let after = until.saturating_duration_since(Instant::now());
                        return Err(self.refuse(RefusalKind::WaitExceeded, limit, after));
                    }
                    tokio::time::sleep_until(until).await;
                }
                _ => return Ok(()),
            }
        }
    }

    async fn wait_cells(
        &self,
        limiter: &DefaultDirectRateLimiter,
        n: u32,
        limit: Limit,
        deadline: Instant,
    ) -> Result<(), Refusal> {
        let Some(n) = NonZeroU32::new(n) else {
            return Ok(());
        };
        loop {
            let wait = match limiter.check_n(n) {
                Ok(Ok(())) => return Ok(()),
                // Larger than the whole window: it can never fit, let Venice decide.
                Err(_) => return Ok(()),
                Ok(Err(not_until)) => not_until.wait_time_from(DefaultClock::default().now()),
            };
            let at = Instant::now() + wait;
            if at > deadline {
                return Err(self.refuse(RefusalKind::WaitExceeded, limit, wait));
            }
            tokio::time::sleep_until(at).await;
        }
    }

    fn refuse(&self, kind: RefusalKind, limit: Limit, retry_after: Duration) -> Refusal {
        self.refused.fetch_add(1, Ordering::Relaxed);
        Refusal {
            kind,
            limit,
            retry_after: retry_after.max(Duration::from_secs(1)),
        }
    }

    /// Learns from a response: new limits resize the limiters; `remaining: 0` holds the model
    /// until the reset instant.
    pub fn observe(
        &self,
        limits: (Option<u64>, Option<u64>),
        exhausted: Option<(Limit, SystemTime)>,
    ) {
        let mut inner = self.inner.lock();
        let (cap_rpm, cap_tpm) = self.cap.unwrap_or((u32::MAX, u32::MAX));
        let rpm = limits.0.map_or(inner.limiters.rpm, clamp_u32).min(cap_rpm);
        let tpm = limits.1.map_or(inner.limiters.tpm, clamp_u32).min(cap_tpm);
        if rpm != inner.limiters.rpm || tpm != inner.limiters.tpm {
            inner.limiters = Limiters::new(rpm, tpm, self.window);
        }
        if let Some((limit, at)) = exhausted {
            let wait = at
                .duration_since(SystemTime::now())
                .unwrap_or(Duration::ZERO);
            // A reset further out than two windows is not believed.
            if !wait.is_zero() && wait <= self.window * 2 {
                inner.hold = Some((Instant::now() + wait, at, limit));
            }
        }
    }

    /// Tokens a finished request used beyond its estimate are taken from the limiter too.
    pub fn reconcile(&self, extra_tokens: u32) {
        if let Some(n) = NonZeroU32::new(extra_tokens) {
            let tokens = self.inner.lock().limiters.tokens.clone();
            let _ = tokens.check_n(n);
        }
    }

    pub fn view(&self) -> GateView {
        let inner = self.inner.lock();
        let held = inner.hold.filter(|(until, _, _)| *until > Instant::now());
        GateView {
            rpm: inner.limiters.rpm,
            tpm: inner.limiters.tpm,
            waiting: self.waiting.load(Ordering::Acquire),
            admitted: self.admitted.load(Ordering::Relaxed),
            refused: self.refused.load(Ordering::Relaxed),
            held_until: held.map(|(_, at, _)| at),
            held_for: held.map(|(_, _, l)| l),
        }
    }
}

fn clamp_u32(v: u64) -> u32 {
    u32::try_from(v).unwrap_or(u32::MAX).max(1)
}
