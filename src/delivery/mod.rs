//! Delivery: the dispatcher claims due work under leases and sends each attempt as its own
//! task within per-webhook, per-tenant and global limits, and hands each result to the store,
//! which writes them in batches; a retention task deletes old logs. Nothing here holds a
//! transaction across an HTTP call.

mod attempt;
mod claims;
mod clock;
mod dispatcher;
mod in_flight;
mod notifier;
mod recoveries;
mod retention;
pub mod sender;

use std::sync::Arc;

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use claims::{Claim, Claims, Tick};
pub use clock::Clock;
pub use dispatcher::Dispatcher;
use notifier::Notifier;

use crate::config::Config;
use crate::domain::time::now_ms;
use crate::store::Store;

/// Wakes the dispatcher when new work exists (an event committed, a retry queued), so the
/// first attempt starts at once instead of at the next timer. Wake-ups coalesce.
#[derive(Clone, Default)]
pub struct Wakeup(Arc<Notify>);

impl Wakeup {
    pub fn wake(&self) {
        self.0.notify_one();
    }

    async fn woken(&self) {
        self.0.notified().await;
    }
}

/// Takes back this node's leftover claims, then starts the dispatcher (claiming through
/// `claims`), the store's own work beside it, the recoveries, the retention task and (with an
/// operator webhook) the notifier on `tracker`; they stop when `shutdown` is cancelled.
pub async fn start(
    store: Arc<dyn Store>,
    config: Arc<Config>,
    claims: Claims,
    wakeup: Wakeup,
    tracker: &TaskTracker,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let node = claims.node().clone();
    let recovered = store.recover(&node, now_ms()).await?;
    if recovered > 0 {
        tracing::info!(recovered, "took back deliveries claimed by a previous run");
    }
    let dispatcher = Dispatcher::with_claims(store.clone(), config.clone(), wakeup.clone(), claims);
    // The store's work signal (a retry queued, another node's news) also tells of attempts
    // whose results may have changed a webhook's health.
    let notifier_wakeup = Wakeup::default();
    let (woken, notifier_woken) = (wakeup.clone(), notifier_wakeup.clone());
    let on_work = Arc::new(move || {
        woken.wake();
        notifier_woken.wake();
    });
    for job in store.clone().background_jobs(on_work, shutdown.clone()) {
        tracker.spawn(job);
    }
    tracker.spawn(retention::run(
        store.clone(),
        config.log_retention,
        shutdown.clone(),
    ));
    tracker.spawn(recoveries::run(
        store.clone(),
        wakeup.clone(),
        shutdown.clone(),
    ));
    tracker.spawn(report_queue_depth(store.clone(), shutdown.clone()));
    if let Some(operator) = config.operator_webhook.clone() {
        let notifier = Notifier::new(
            store.clone(),
            dispatcher.sender(),
            operator,
            &config,
            node,
            notifier_wakeup,
        );
        tracker.spawn(notifier.run(shutdown.clone()));
    }
    tracker.spawn(dispatcher.run(shutdown));
    Ok(())
}

/// Publishes the queue's depth, webhooks by health and running recoveries (all nodes) as
/// gauges every few seconds.
async fn report_queue_depth(store: Arc<dyn Store>, shutdown: CancellationToken) {
    let mut ticker = tokio::time::interval(std::time::Duration::from_secs(2));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = ticker.tick() => {}
        }
        match store.queue_depth().await {
            Ok(depth) => {
                metrics::gauge!("herald_events_pending").set(depth.pending_events as f64);
                metrics::gauge!("herald_deliveries_queued").set(depth.queued as f64);
                metrics::gauge!("herald_deliveries_in_flight").set(depth.in_flight as f64);
                for (state, count) in [
                    ("healthy", depth.webhooks_healthy),
                    ("failing", depth.webhooks_failing),
                    ("disabled", depth.webhooks_disabled),
                ] {
                    metrics::gauge!("herald_webhooks", "state" => state).set(count as f64);
                }
                metrics::gauge!("herald_recoveries_running").set(depth.recoveries_running as f64);
            }
            Err(error) => tracing::debug!(%error, "could not read the queue depth"),
        }
    }
}
