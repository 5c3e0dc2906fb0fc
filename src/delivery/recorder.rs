//! Writes attempt results in batches: whatever finished while the previous batch was being
//! committed goes into the next transaction.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;

use super::Wakeup;
use crate::store::{AttemptRecord, NextStep, Store};

const MAX_BATCH: usize = 1_000;
const MAX_TRIES: u32 = 20;

pub struct Recorder {
    store: Arc<dyn Store>,
    queue: mpsc::UnboundedReceiver<AttemptRecord>,
    wakeup: Wakeup,
}

impl Recorder {
    /// The sending half goes to the send tasks; the recorder stops once all are dropped.
    pub fn new(
        store: Arc<dyn Store>,
        wakeup: Wakeup,
    ) -> (mpsc::UnboundedSender<AttemptRecord>, Recorder) {
        let (results, queue) = mpsc::unbounded_channel();
        (
            results,
            Recorder {
                store,
                queue,
                wakeup,
            },
        )
    }

    pub async fn run(mut self) {
        let mut batch = Vec::with_capacity(MAX_BATCH);
        while self.queue.recv_many(&mut batch, MAX_BATCH).await > 0 {
            let mut tries = 0;
            loop {
                match self.store.record_attempts(batch.clone()).await {
                    Ok(()) => {
                        // A retry now in the queue may fall due before the dispatcher's
                        // next look: have it look again.
                        if batch.iter().any(|r| matches!(r.next, NextStep::RetryAt(_))) {
                            self.wakeup.wake();
                        }
                        break;
                    }
                    Err(error) if tries < MAX_TRIES => {
                        tries += 1;
                        tracing::warn!(%error, tries, "could not record attempt results; retrying");
                        tokio::time::sleep(Duration::from_millis(50 * u64::from(tries.min(20))))
                            .await;
                    }
                    Err(error) => {
                        // The claims stay leased: when the leases run out the deliveries are
                        // attempted again, so nothing is lost, only logged twice.
                        tracing::error!(%error, count = batch.len(), "dropping attempt results after repeated failures");
                        break;
                    }
                }
            }
            batch.clear();
        }
    }
}
