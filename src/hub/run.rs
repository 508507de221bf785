//! The hub's event loop: when it wakes, what it takes, and how it stops.
//!
//! Every event a producer sends would otherwise wake the hub's thread (an `eventfd` write on
//! the sender's side, a park and unpark on the hub's), and each wake-up publishes its own
//! updates, which wake every WebSocket client and cost one socket write each. So the hub
//! *gathers*: the first event after a quiet spell is applied at once (a single request shows
//! without delay), then the hub stops listening for [`GATHER`] and takes everything that
//! arrived meanwhile in one go, as long as events keep coming. Under steady traffic that is one
//! wake-up, and one write per client, per millisecond instead of per event; an update waits at
//! most [`GATHER`] (plus the timer's 1 ms resolution) longer. Order is unchanged: events are
//! applied in the order they were sent.

use std::time::{Duration, Instant};

use super::{Hub, Shared};

/// After applying an event, the hub takes what arrives within this long together.
pub const GATHER: Duration = Duration::from_millis(1);

/// Most events applied in one gathering; the rest wait for the next (shutdown and the header
/// window are checked between gatherings).
const GATHER_MAX: usize = 1024;

impl Hub {
    /// Applies events until every producer is gone or `shutdown` flips to true. On the way out
    /// the sink is closed, so the store knows it has received every update.
    pub async fn run(&self, mut shutdown: tokio::sync::watch::Receiver<bool>) {
        let mut rx = self.rx.lock().await;
        // Whether the hub is between an event and the end of its gathering time.
        let mut gathering = false;
        loop {
            let due = self.coalesce.lock().due();
            let window_end = tokio::time::sleep_until(due.unwrap_or_else(Instant::now).into());
            let gathered = tokio::time::sleep(GATHER);
            tokio::select! {
                ev = rx.recv(), if !gathering => match ev {
                    Some(ev) => {
                        self.apply(ev);
                        gathering = true;
                    }
                    None => break,
                },
                _ = gathered, if gathering => {
                    let mut taken = 0;
                    while taken < GATHER_MAX {
                        let Ok(ev) = rx.try_recv() else { break };
                        self.apply(ev);
                        taken += 1;
                    }
                    // A quiet gathering ends it: the next event is applied as it comes.
                    gathering = taken > 0;
                }
                _ = window_end, if due.is_some() => self.flush_coalesced(),
                _ = shutdown.changed() => {
                    // Drain what is already queued, then stop.
                    while let Ok(ev) = rx.try_recv() {
                        self.apply(ev);
                    }
                    break;
                }
            }
        }
        self.flush_coalesced();
        let mut shared = self.shared.write();
        let Shared { state, log } = &mut *shared;
        log.checkpoint(state, true);
        log.close_sink();
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use parking_lot::RwLock;

    use super::*;
    use crate::hub::state::AlertCurrency;
    use crate::hub::HubEvent;
    use crate::metrics::Metrics;

    fn alert(below: f64) -> HubEvent {
        HubEvent::SetAlert {
            currency: AlertCurrency::Diem,
            below: Some(below),
        }
    }

    /// Lets every other ready task run, without letting the paused clock move.
    async fn settle() {
        for _ in 0..16 {
            tokio::task::yield_now().await;
        }
    }

    #[tokio::test(start_paused = true)]
    async fn the_first_event_is_applied_at_once_and_the_next_ones_when_the_gathering_ends() {
        let (hub, handle) = Hub::new(Arc::new(Metrics::new()), Arc::new(RwLock::default()));
        let hub = Arc::new(hub);
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let task = tokio::spawn({
            let hub = hub.clone();
            async move { hub.run(stopped).await }
        });
        let mut updates = handle.subscribe();

        handle.send(alert(1.0));
        settle().await;
        let first = updates
            .try_recv()
            .expect("the first event is applied at once");
        handle.send(alert(2.0));
        handle.send(alert(3.0));
        settle().await;
        assert!(
            updates.try_recv().is_err(),
            "events inside the gathering time wait for it to end"
        );
        assert_eq!(handle.with_state(|s| s.sequence), first.sequence);

        tokio::time::advance(GATHER).await;
        let second = updates
            .recv()
            .await
            .expect("published when the gathering ends");
        let third = updates.recv().await.expect("in the same gathering");
        assert_eq!(
            (second.sequence, third.sequence),
            (first.sequence + 1, first.sequence + 2),
            "in the order they were sent"
        );

        // A quiet gathering ends it: the next event is applied as it comes.
        tokio::time::advance(GATHER).await;
        settle().await;
        handle.send(alert(4.0));
        settle().await;
        let fourth = updates.try_recv().expect("applied at once");
        assert_eq!(fourth.sequence, first.sequence + 3);

        stop.send_replace(true);
        task.await.expect("the hub stops");
    }
}
