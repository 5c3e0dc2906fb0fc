//! Work notifications between nodes: `LISTEN` on the store's channel, reconnecting with a
//! backoff when the connection is lost.

use std::sync::Arc;
use std::time::{Duration, Instant};

use sqlx::postgres::PgListener;
use tokio_util::sync::CancellationToken;

use super::PostgresStore;

impl PostgresStore {
    /// Calls `on_work` whenever another node announces work (and once each time listening
    /// starts), until `shutdown`.
    pub(super) async fn listen_for_work(
        &self,
        on_work: Arc<dyn Fn() + Send + Sync>,
        shutdown: CancellationToken,
    ) {
        let mut failures = 0u32;
        while !shutdown.is_cancelled() {
            if failures > 0 {
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep(listen_backoff(failures)) => {}
                }
            }
            let mut listener = match PgListener::connect_with(&self.pool).await {
                Ok(listener) => listener,
                Err(error) => {
                    failures = failures.saturating_add(1);
                    tracing::warn!(%error, failures, "cannot listen for work notifications");
                    continue;
                }
            };
            if let Err(error) = listener.listen(&self.channel).await {
                failures = failures.saturating_add(1);
                tracing::warn!(%error, failures, "cannot listen for work notifications");
                continue;
            }
            let listening_since = Instant::now();
            // Whatever was announced while not listening is found by looking now.
            on_work();
            loop {
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    received = listener.try_recv() => match received {
                        Ok(Some(_)) => on_work(),
                        // The connection was lost; try_recv reconnects on the next call.
                        Ok(None) => on_work(),
                        Err(error) => {
                            tracing::warn!(%error, "work notifications interrupted");
                            break;
                        }
                    },
                }
            }
            // A listener that held for a while was a success: start the backoff afresh.
            if listening_since.elapsed() >= LISTEN_BACKOFF_MAX {
                failures = 0;
            }
            failures = failures.saturating_add(1);
        }
    }
}

/// The first pause before listening again after a failure, and the longest.
const LISTEN_BACKOFF_FIRST: Duration = Duration::from_millis(100);
const LISTEN_BACKOFF_MAX: Duration = Duration::from_secs(5);

/// The pause before listening again after `failures` failures in a row: doubling from
/// [`LISTEN_BACKOFF_FIRST`] up to [`LISTEN_BACKOFF_MAX`], so a database that refuses LISTEN
/// is not asked again in a tight loop.
fn listen_backoff(failures: u32) -> Duration {
    if failures == 0 {
        return Duration::ZERO;
    }
    let doublings = (failures - 1).min(16);
    LISTEN_BACKOFF_FIRST
        .saturating_mul(1u32 << doublings)
        .min(LISTEN_BACKOFF_MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listening_again_backs_off_exponentially_up_to_a_cap() {
        let pauses: Vec<u64> = (0..=10)
            .map(|failures| listen_backoff(failures).as_millis() as u64)
            .collect();
        assert_eq!(
            pauses,
            [
                0, 100, 200, 400, 800, 1_600, 3_200, 5_000, 5_000, 5_000, 5_000
            ]
        );
        assert_eq!(listen_backoff(u32::MAX), LISTEN_BACKOFF_MAX);
    }
}
