//! The dispatcher: each tick asks the store to fan out pending events and claim due
//! deliveries, then sends every claimed delivery as its own task, whose result goes back to
//! the store. Limits per webhook, per tenant and per node keep a slow endpoint (or a tenant
//! with many) from holding up the others. It sleeps until woken (new work, a finished
//! attempt) or until the next delivery falls due: no busy polling.
//!
//! A finished attempt wakes it at once only when the last claim left due work for want of
//! room. Otherwise the results that a claim writes (SQLite's) gather for [`RESULTS_GATHER`]
//! and one claim writes them all: at 300 events/s, one write transaction for several events'
//! results instead of one for each.
//!
//! [`Dispatcher::tick`] is one step of that loop, which tests drive by hand; the loop's
//! timers run on the dispatcher's [`Clock`], so with a manual one only a wake-up moves it.
//! The gathering of results is a batching window, not a schedule, and runs on real time.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::Wakeup;
use super::claims::{Claims, Tick};
use super::clock::Clock;
use super::sender::Sender;
use crate::config::Config;
use crate::domain::ids::NodeId;
use crate::store::{Store, StoreResult};

/// The longest the dispatcher sleeps without looking at the store.
const MAX_IDLE: Duration = Duration::from_secs(5);
/// How long a finished attempt's result waits for others before the dispatcher claims to
/// write them together: several events' worth at 300 events/s, and short beside anything a
/// partner could see (an event's status, a retry's schedule).
const RESULTS_GATHER: Duration = Duration::from_millis(20);
/// How long a graceful shutdown waits for attempts in flight before releasing them.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

pub struct Dispatcher {
    store: Arc<dyn Store>,
    config: Arc<Config>,
    claims: Claims,
    wakeup: Wakeup,
}

impl Dispatcher {
    /// A dispatcher with claims of its own (tests drive it alone).
    pub fn new(
        store: Arc<dyn Store>,
        config: Arc<Config>,
        wakeup: Wakeup,
        node: NodeId,
        clock: Clock,
    ) -> anyhow::Result<Dispatcher> {
        let claims = Claims::new(store.clone(), config.clone(), node, clock)?;
        Ok(Dispatcher::with_claims(store, config, wakeup, claims))
    }

    /// A dispatcher claiming through `claims`, which publishing commits share.
    pub fn with_claims(
        store: Arc<dyn Store>,
        config: Arc<Config>,
        wakeup: Wakeup,
        claims: Claims,
    ) -> Dispatcher {
        Dispatcher {
            store,
            config,
            claims,
            wakeup,
        }
    }

    /// One step: claims what the node has room for (the store fans out pending events and
    /// writes finished attempts' results on the way) and starts an attempt task for each
    /// delivery claimed.
    pub async fn tick(&mut self) -> StoreResult<Tick> {
        let claim = self.claims.begin().await;
        let work = self.store.claim(claim.request()).await?;
        Ok(claim.start(work))
    }

    /// The sender attempts go through, for other outbound calls under the same rules.
    pub(super) fn sender(&self) -> Arc<Sender> {
        self.claims.sender()
    }

    /// Waits until every attempt started so far has ended and handed its result over.
    pub async fn settle(&mut self) {
        self.claims.settle().await;
    }

    pub async fn run(mut self, shutdown: CancellationToken) {
        let mut failures = 0u32;
        while !shutdown.is_cancelled() {
            let (pause, waiting_for_room) = match self.tick().await {
                Ok(tick) if tick.more => {
                    failures = 0;
                    // Go round again at once, letting the sends start first.
                    tokio::task::yield_now().await;
                    continue;
                }
                Ok(tick) => {
                    failures = 0;
                    self.idle_time(tick).await
                }
                Err(error) => {
                    failures += 1;
                    tracing::warn!(%error, failures, "dispatcher could not claim work");
                    (
                        Duration::from_millis(100 * u64::from(failures.min(30))),
                        true,
                    )
                }
            };
            let attempt_done = self.claims.slots().attempt_done.clone();
            let calm = failures == 0;
            self.claims.dispatcher_idle(true);
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = self.wakeup.woken(), if calm => {}
                _ = attempt_done.notified(), if calm && waiting_for_room => {}
                _ = self.results_left_waiting(&attempt_done), if calm && !waiting_for_room => {}
                _ = self.claims.clock().sleep(pause) => {}
            }
            self.claims.dispatcher_idle(false);
        }
        self.drain().await;
    }

    /// After a tick that took everything it could: how long to sleep, and whether due work
    /// waits for room, so that each finished attempt should be followed by a claim.
    async fn idle_time(&self, tick: Tick) -> (Duration, bool) {
        if !tick.room_left {
            return (MAX_IDLE, true);
        }
        match self.store.next_wake_at().await {
            Ok(next) => {
                let left_at_claim = next.is_some_and(|at| at <= tick.at_ms);
                let pause = sleep_until_due(next, tick.at_ms, self.claims.clock().now_ms());
                (pause, tick.due_left || left_at_claim)
            }
            Err(error) => {
                tracing::warn!(%error, "dispatcher could not read the next due time");
                (Duration::from_secs(1), true)
            }
        }
    }

    /// Ends [`RESULTS_GATHER`] after an attempt finished, if results wait for a claim to
    /// write them.
    async fn results_left_waiting(&self, attempt_done: &tokio::sync::Notify) {
        loop {
            attempt_done.notified().await;
            tokio::time::sleep(RESULTS_GATHER).await;
            if self.store.results_waiting() > 0 {
                return;
            }
        }
    }

    /// Graceful shutdown: attempts in flight may finish within the grace period and are
    /// recorded; the rest are cancelled and their deliveries released untried, for the next
    /// run or another node.
    async fn drain(mut self) {
        self.claims.close().await;
        let grace = SHUTDOWN_GRACE.min(self.config.delivery_timeout);
        if tokio::time::timeout(grace, self.settle()).await.is_err() {
            self.claims.abandon().await;
        }
        if let Err(error) = self.store.flush_results().await {
            tracing::warn!(%error, "could not record attempt results at shutdown; their leases will expire");
        }
        let unfinished = self.claims.slots().lock().deliveries();
        if unfinished.is_empty() {
            return;
        }
        match self.store.release(self.claims.node(), &unfinished).await {
            Ok(()) => tracing::info!(
                released = unfinished.len(),
                "released deliveries in flight at shutdown"
            ),
            Err(error) => {
                tracing::warn!(%error, "could not release deliveries; their leases will expire")
            }
        }
    }
}

/// How long to sleep after a claim at `claimed_at` that took everything it could, when the
/// next work falls due at `next`. Work due at the claim that it did not take belongs to
/// webhooks at their limit: a finished attempt will wake the dispatcher, so a second is a
/// safety net. Work that fell due since (a retry the claim recorded, say) is taken at once;
/// treating it as the first kind delayed every retry by up to a second (herald bench g).
fn sleep_until_due(next: Option<i64>, claimed_at: i64, now: i64) -> Duration {
    match next {
        Some(at) if at <= claimed_at => Duration::from_secs(1),
        Some(at) => Duration::from_millis(at.saturating_sub(now).max(0) as u64).min(MAX_IDLE),
        None => MAX_IDLE,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn work_due_since_the_claim_is_taken_at_once() {
        // A retry recorded by the claim at 1,000 fell due at 1,004; it is now 1,010.
        assert_eq!(sleep_until_due(Some(1_004), 1_000, 1_010), Duration::ZERO);
    }

    #[test]
    fn work_the_claim_left_waits_for_a_free_slot() {
        assert_eq!(
            sleep_until_due(Some(990), 1_000, 1_010),
            Duration::from_secs(1)
        );
        assert_eq!(
            sleep_until_due(Some(1_000), 1_000, 1_010),
            Duration::from_secs(1)
        );
    }

    #[test]
    fn later_work_is_slept_for_up_to_the_idle_cap() {
        assert_eq!(
            sleep_until_due(Some(1_250), 1_000, 1_010),
            Duration::from_millis(240)
        );
        assert_eq!(sleep_until_due(Some(60_000), 1_000, 1_010), MAX_IDLE);
        assert_eq!(sleep_until_due(None, 1_000, 1_010), MAX_IDLE);
    }
}
