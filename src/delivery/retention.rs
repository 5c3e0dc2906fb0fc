//! Deletes delivery logs older than the retention, in small batches so it never holds the
//! writer for long.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::domain::time::now_ms;
use crate::store::Store;

const BATCH: u32 = 5_000;

/// How often to sweep: a quarter of the retention, between a quarter second and a minute.
fn sweep_interval(retention: Duration) -> Duration {
    (retention / 4).clamp(Duration::from_millis(250), Duration::from_secs(60))
}

pub async fn run(store: Arc<dyn Store>, retention: Duration, shutdown: CancellationToken) {
    let mut ticker = tokio::time::interval(sweep_interval(retention));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = ticker.tick() => {}
        }
        let cutoff = now_ms() - retention.as_millis() as i64;
        loop {
            match store.delete_attempts_before(cutoff, BATCH).await {
                Ok(deleted) => {
                    if deleted > 0 {
                        metrics::counter!("herald_delivery_logs_deleted_total").increment(deleted);
                    }
                    if deleted < u64::from(BATCH) || shutdown.is_cancelled() {
                        break;
                    }
                }
                Err(error) => {
                    tracing::warn!(%error, "could not delete old delivery logs");
                    break;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sweeps_often_for_short_retentions_and_at_most_every_minute() {
        assert_eq!(
            sweep_interval(Duration::from_secs(2)),
            Duration::from_millis(500)
        );
        assert_eq!(
            sweep_interval(Duration::from_millis(100)),
            Duration::from_millis(250)
        );
        assert_eq!(
            sweep_interval(Duration::from_secs(7 * 86_400)),
            Duration::from_secs(60)
        );
    }
}
