//! Delivery: the dispatcher claims due work under leases and sends each attempt as its own
//! task within per-webhook, per-tenant and global limits; results are written in batches, by the
//! dispatcher's next claim or by a recorder beside it, depending on the store; a retention
//! task deletes old logs. Nothing here holds a transaction across an HTTP call.

mod dispatcher;
mod recorder;
mod retention;
pub mod sender;

use std::sync::Arc;

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use uuid::Uuid;

use crate::config::Config;
use crate::domain::time::now_ms;
use crate::store::Store;

/// Most finished attempts recorded in one transaction (by the dispatcher or the recorder).
const RECORD_BATCH: usize = 1_000;
/// Failed tries after which results waiting to be recorded are dropped, so that a batch the
/// store keeps refusing cannot stop delivery for good. Their deliveries stay claimed until
/// the lease runs out and are then attempted again: nothing is lost, an attempt is only
/// logged twice.
const RECORD_TRIES: u32 = 20;

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

/// Takes back this node's leftover claims, then starts the dispatcher (and the recorder, if
/// the store wants one) and the retention task on `tracker`; they stop when `shutdown` is cancelled.
pub async fn start(
    store: Arc<dyn Store>,
    config: Arc<Config>,
    wakeup: Wakeup,
    tracker: &TaskTracker,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let node = format!("node-{}", Uuid::new_v4());
    let recovered = store.recover_claims(&node, now_ms()).await?;
    if recovered > 0 {
        tracing::info!(recovered, "took back deliveries claimed by a previous run");
    }
    let sender = Arc::new(sender::Sender::new(&config)?);
    let listening = wakeup.clone();
    let notifications = store.clone();
    let stop_listening = shutdown.clone();
    tracker.spawn(async move {
        let on_work = Arc::new(move || listening.wake());
        notifications.listen_for_work(on_work, stop_listening).await;
    });
    let (results, finished) = tokio::sync::mpsc::unbounded_channel();
    let finished = if store.records_with_claims() {
        Some(finished)
    } else {
        tracker.spawn(recorder::run(store.clone(), finished, wakeup.clone()));
        None
    };
    tracker.spawn(retention::run(
        store.clone(),
        config.log_retention,
        shutdown.clone(),
    ));
    tracker.spawn(report_queue_depth(store.clone(), shutdown.clone()));
    let dispatcher =
        dispatcher::Dispatcher::new(store, config, sender, results, finished, wakeup, node);
    tracker.spawn(dispatcher.run(shutdown));
    Ok(())
}

/// Publishes the queue's depth (all nodes) as gauges every few seconds.
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
            }
            Err(error) => tracing::debug!(%error, "could not read the queue depth"),
        }
    }
}
