//! Works through recoveries left to the background (large recover requests, catch-ups after
//! a webhook recovered), a window per transaction, and wakes the dispatcher for what they
//! queue. Every node runs one; on PostgreSQL they share the work.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::Wakeup;
use crate::domain::time::now_ms;
use crate::store::Store;

/// How often a node looks for recoveries to continue.
const LOOK_EVERY: Duration = Duration::from_millis(500);

pub async fn run(store: Arc<dyn Store>, wakeup: Wakeup, shutdown: CancellationToken) {
    let mut ticker = tokio::time::interval(LOOK_EVERY);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = ticker.tick() => {}
        }
        while !shutdown.is_cancelled() {
            match store.continue_recoveries(now_ms()).await {
                Ok(step) => {
                    if step.queued > 0 {
                        metrics::counter!("herald_recovered_deliveries_total")
                            .increment(step.queued);
                        wakeup.wake();
                    }
                    if !step.more {
                        break;
                    }
                }
                Err(error) => {
                    tracing::warn!(%error, "could not continue a recovery");
                    break;
                }
            }
        }
    }
}
