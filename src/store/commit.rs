//! Committing the writer's backlog: [`try_flush`] (transactions of at most [`MAX_BATCH`],
//! metrics and [`super::health::Health`] told about each commit and each failure) and
//! [`flush`], which also schedules the retry of a failed commit with exponential backoff.
//!
//! Used only by the writer thread ([`super::task`]); a failed batch stays in `pending` whole,
//! so nothing is dropped, and the updates committed before it in the same backlog stay
//! acknowledged.

use std::time::{Duration, SystemTime};

use tokio::time::Instant;

use super::task::{Parts, MAX_BATCH, RETRY_MAX, RETRY_MIN};
use crate::hub::Stored;

/// Commits `pending` in transactions of at most [`MAX_BATCH`]; on failure keeps what is left
/// (the caller retries later) and says why.
pub(super) fn try_flush(parts: &mut Parts, pending: &mut Vec<Stored>) -> Result<(), String> {
    while !pending.is_empty() {
        let n = pending.len().min(MAX_BATCH);
        let before = parts.writer.last();
        match parts.writer.write(&pending[..n]) {
            Ok(last) => {
                if let Some(metrics) = &parts.metrics {
                    let (count, lag) = batch_stats(&pending[..n], before);
                    metrics.store_appended(count, lag);
                }
                pending.drain(..n);
                parts.committed.send_replace(last);
                if let Some(failed_for) = parts.health.committed(last, pending) {
                    tracing::info!(last, failed_for = ?failed_for, "session store writes again");
                }
            }
            Err(e) => {
                let reason = e.failure_reason();
                tracing::error!(error = %e, reason, pending = pending.len(), "session store: cannot commit a batch; keeping it and retrying");
                if let Some(metrics) = &parts.metrics {
                    metrics.store_failed(reason);
                }
                parts.health.failed(&e);
                return Err(e.to_string());
            }
        }
    }
    Ok(())
}

/// How many updates of a committed batch were new (after `before`), and the write lag of its
/// oldest: from the update's publication to now.
fn batch_stats(batch: &[Stored], before: u64) -> (u64, Duration) {
    let mut count = 0;
    let mut oldest: Option<u64> = None;
    for item in batch {
        if let Stored::Update(u) = item {
            if u.sequence > before {
                count += 1;
                oldest = Some(oldest.map_or(u.timestamp, |o| o.min(u.timestamp)));
            }
        }
    }
    let lag = oldest
        .map(|ms| {
            SystemTime::now()
                .duration_since(crate::util::from_epoch_ms(ms))
                .unwrap_or_default()
        })
        .unwrap_or_default();
    (count, lag)
}

/// Commits `pending` and schedules what comes next: nothing on success (the backoff starts
/// over), a retry after `retry` on failure (the backoff doubles).
pub(super) fn flush(
    parts: &mut Parts,
    pending: &mut Vec<Stored>,
    retry: &mut Duration,
    deadline: &mut Option<Instant>,
) -> bool {
    if try_flush(parts, pending).is_ok() {
        *retry = RETRY_MIN;
        *deadline = None;
        true
    } else {
        *deadline = Some(Instant::now() + *retry);
        *retry = (*retry * 2).min(RETRY_MAX);
        false
    }
}
