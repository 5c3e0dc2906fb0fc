//! Writes attempt results in batches of their own, beside the dispatcher's claims, for a
//! store whose transactions run side by side (PostgreSQL): whatever finished while the
//! previous batch was being committed goes into the next transaction. On SQLite the
//! dispatcher records results in its claims instead (`DeliveryStore::records_with_claims`).

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;

use super::{RECORD_BATCH, RECORD_TRIES, Wakeup};
use crate::store::{AttemptRecord, NextStep, Store};

/// Records results until every sender (the dispatcher and its attempt tasks) is gone.
pub async fn run(
    store: Arc<dyn Store>,
    mut queue: mpsc::UnboundedReceiver<AttemptRecord>,
    wakeup: Wakeup,
) {
    let mut batch = Vec::with_capacity(RECORD_BATCH);
    while queue.recv_many(&mut batch, RECORD_BATCH).await > 0 {
        let mut tries = 0;
        loop {
            match store.record_attempts(&batch).await {
                Ok(()) => {
                    // A retry now in the queue may fall due before the dispatcher's next
                    // look: have it look again.
                    if batch.iter().any(|r| matches!(r.next, NextStep::RetryAt(_))) {
                        wakeup.wake();
                    }
                    break;
                }
                Err(error) if tries < RECORD_TRIES => {
                    tries += 1;
                    tracing::warn!(%error, tries, "could not record attempt results; retrying");
                    tokio::time::sleep(Duration::from_millis(50 * u64::from(tries.min(20)))).await;
                }
                Err(error) => {
                    tracing::error!(%error, count = batch.len(), "dropping attempt results after repeated failures");
                    break;
                }
            }
        }
        batch.clear();
    }
}
