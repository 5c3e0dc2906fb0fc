//! Group commit of publishes. Every accepted event goes to one writer task, which commits
//! whatever has queued up meanwhile in a single transaction and then answers each waiting
//! request: one fsync for many events, and an event is durable before its 2xx is sent.

use std::sync::Arc;

use tokio::sync::{Semaphore, mpsc, oneshot};
use tokio_util::task::TaskTracker;

use crate::delivery::Wakeup;
use crate::domain::event::NewEvent;
use crate::store::{PublishOutcome, Store};

/// Most events committed in one transaction; a larger backlog is split over several.
const MAX_EVENTS_PER_COMMIT: usize = 8_000;
/// Requests waiting for the writer before publishers feel back-pressure.
const QUEUE_DEPTH: usize = 4_096;

/// Why a publish was not stored.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error("the store could not commit the events: {0}")]
    Store(String),
    #[error("the store is unavailable: {0}")]
    Unavailable(String),
    #[error("Herald is shutting down")]
    ShuttingDown,
}

struct PublishRequest {
    events: Vec<NewEvent>,
    reply: oneshot::Sender<Result<Vec<PublishOutcome>, IngestError>>,
}

/// The handle publishers use; cheap to clone. The writer stops once every handle is dropped.
#[derive(Clone)]
pub struct Ingest {
    queue: mpsc::Sender<PublishRequest>,
}

impl Ingest {
    /// Starts the writer task on `tracker`.
    pub fn start(store: Arc<dyn Store>, wakeup: Wakeup, tracker: &TaskTracker) -> Ingest {
        let (queue, requests) = mpsc::channel(QUEUE_DEPTH);
        tracker.spawn(write_batches(store, wakeup, requests));
        Ingest { queue }
    }

    /// Stores events and returns one outcome per event, in order, once they are committed.
    pub async fn publish(&self, events: Vec<NewEvent>) -> Result<Vec<PublishOutcome>, IngestError> {
        let (reply, answer) = oneshot::channel();
        self.queue
            .send(PublishRequest { events, reply })
            .await
            .map_err(|_| IngestError::ShuttingDown)?;
        answer.await.map_err(|_| IngestError::ShuttingDown)?
    }
}

async fn write_batches(
    store: Arc<dyn Store>,
    wakeup: Wakeup,
    mut requests: mpsc::Receiver<PublishRequest>,
) {
    // A batch gathers what queued while the commits before it ran; with several commits
    // allowed at once (PostgreSQL), the next batch starts as soon as a slot is free.
    let slots = Arc::new(Semaphore::new(store.concurrent_publishes().max(1)));
    let commits = TaskTracker::new();
    loop {
        let Ok(slot) = slots.clone().acquire_owned().await else {
            break;
        };
        let Some(first) = requests.recv().await else {
            break;
        };
        let mut queued_events = first.events.len();
        let mut batch = vec![first];
        while queued_events < MAX_EVENTS_PER_COMMIT {
            match requests.try_recv() {
                Ok(next) => {
                    queued_events += next.events.len();
                    batch.push(next);
                }
                Err(_) => break,
            }
        }
        let (store, wakeup) = (store.clone(), wakeup.clone());
        commits.spawn(async move {
            commit(store.as_ref(), &wakeup, batch).await;
            drop(slot);
        });
    }
    commits.close();
    commits.wait().await;
}

/// Commits one batch and answers each of its requests.
async fn commit(store: &dyn Store, wakeup: &Wakeup, batch: Vec<PublishRequest>) {
    let queued_events: usize = batch.iter().map(|r| r.events.len()).sum();
    let sizes: Vec<usize> = batch.iter().map(|r| r.events.len()).collect();
    let mut replies = Vec::with_capacity(batch.len());
    let mut events = Vec::with_capacity(queued_events);
    for request in batch {
        events.extend(request.events);
        replies.push(request.reply);
    }
    match store.publish_events(events).await {
        Ok(outcomes) => {
            if outcomes
                .iter()
                .any(|o| matches!(o, PublishOutcome::Created(_)))
            {
                wakeup.wake();
            }
            let mut outcomes = outcomes.into_iter();
            for (reply, size) in replies.into_iter().zip(sizes) {
                let _ = reply.send(Ok(outcomes.by_ref().take(size).collect()));
            }
        }
        Err(error) => {
            tracing::error!(%error, events = queued_events, "commit of published events failed");
            let unavailable = error.is_unavailable();
            for reply in replies {
                let error = if unavailable {
                    IngestError::Unavailable(error.to_string())
                } else {
                    IngestError::Store(error.to_string())
                };
                let _ = reply.send(Err(error));
            }
        }
    }
}
