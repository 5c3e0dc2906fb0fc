//! Group commit of publishes. Every accepted event goes to one writer task, which commits
//! whatever has queued up meanwhile in a single transaction and then answers each waiting
//! request: one fsync for many events, and an event is durable before its 2xx is sent. When
//! that shared commit fails, its events are committed again in halves until each event that
//! still fails has failed on its own, so one bad event never fails another producer's.

use std::sync::Arc;

use tokio::sync::{Semaphore, mpsc, oneshot};
use tokio_util::task::TaskTracker;

use crate::delivery::{Claims, Wakeup};
use crate::domain::event::NewEvent;
use crate::store::{PublishFailure, PublishOutcome, Store, StoreError};

/// Most events committed in one transaction; a larger backlog is split over several.
const MAX_EVENTS_PER_COMMIT: usize = 8_000;
/// Requests waiting for the writer before publishers feel back-pressure.
const QUEUE_DEPTH: usize = 4_096;
/// Most commits spent finding the failing events of one failed batch: a bad event among
/// 8,000 is found in about 26 commits; past the budget the rest fail together.
const ISOLATING_COMMITS: u32 = 100;

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

/// What became of one published event: `Err` when it alone could not be committed.
pub type EventResult = Result<PublishOutcome, IngestError>;

struct PublishRequest {
    events: Vec<NewEvent>,
    reply: oneshot::Sender<Result<Vec<EventResult>, IngestError>>,
}

/// The handle publishers use; cheap to clone. The writer stops once every handle is dropped.
#[derive(Clone)]
pub struct Ingest {
    queue: mpsc::Sender<PublishRequest>,
}

impl Ingest {
    /// Starts the writer task on `tracker`, which runs up to `concurrent_commits` commits
    /// at once ([`crate::store::concurrent_publishes`] of the store's database URL). With
    /// `claims`, a commit also claims for the node's dispatcher when it can
    /// ([`crate::store::claims_when_publishing`]).
    pub fn start(
        store: Arc<dyn Store>,
        concurrent_commits: usize,
        wakeup: Wakeup,
        claims: Option<Claims>,
        tracker: &TaskTracker,
    ) -> Ingest {
        let (queue, requests) = mpsc::channel(QUEUE_DEPTH);
        let writer = Writer {
            store,
            wakeup,
            claims,
        };
        tracker.spawn(write_batches(writer, concurrent_commits, requests));
        Ingest { queue }
    }

    /// Stores events and returns one result per event, in order, once they are committed.
    pub async fn publish(&self, events: Vec<NewEvent>) -> Result<Vec<EventResult>, IngestError> {
        let (reply, answer) = oneshot::channel();
        self.queue
            .send(PublishRequest { events, reply })
            .await
            .map_err(|_| IngestError::ShuttingDown)?;
        answer.await.map_err(|_| IngestError::ShuttingDown)?
    }
}

/// What every commit of the writer shares.
#[derive(Clone)]
struct Writer {
    store: Arc<dyn Store>,
    wakeup: Wakeup,
    claims: Option<Claims>,
}

async fn write_batches(
    writer: Writer,
    concurrent_commits: usize,
    mut requests: mpsc::Receiver<PublishRequest>,
) {
    // A batch gathers what queued while the commits before it ran; with several commits
    // allowed at once (PostgreSQL), the next batch starts as soon as a slot is free.
    let slots = Arc::new(Semaphore::new(concurrent_commits.max(1)));
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
        let writer = writer.clone();
        commits.spawn(async move {
            writer.commit(batch).await;
            drop(slot);
        });
    }
    commits.close();
    commits.wait().await;
}

impl Writer {
    /// Commits one batch and answers each of its requests.
    async fn commit(&self, batch: Vec<PublishRequest>) {
        let queued_events: usize = batch.iter().map(|r| r.events.len()).sum();
        let sizes: Vec<usize> = batch.iter().map(|r| r.events.len()).collect();
        let mut replies = Vec::with_capacity(batch.len());
        let mut events = Vec::with_capacity(queued_events);
        for request in batch {
            events.extend(request.events);
            replies.push(request.reply);
        }
        let store = self.store.as_ref();
        let (published, claimed_all) = self.publish(events).await;
        let results: Vec<EventResult> = match published {
            Ok(outcomes) => outcomes.into_iter().map(Ok).collect(),
            Err(failure) => {
                tracing::error!(error = %failure.error, events = queued_events,
                    "commit of published events failed; committing them in parts");
                isolate(store, failure).await
            }
        };
        if !claimed_all
            && results
                .iter()
                .any(|r| matches!(r, Ok(PublishOutcome::Created(_))))
        {
            self.wakeup.wake();
        }
        answer(replies, sizes, results);
    }

    /// Stores `events`, claiming for the node in the same commit when it may
    /// ([`Claims::try_begin`]). `true` when that claim left the dispatcher nothing to do: it
    /// fanned out every pending event and left no due delivery waiting for room (the
    /// dispatcher then claims as attempts end).
    async fn publish(
        &self,
        events: Vec<NewEvent>,
    ) -> (Result<Vec<PublishOutcome>, PublishFailure>, bool) {
        let store = self.store.as_ref();
        let claim = self.claims.as_ref().and_then(|c| c.try_begin(events.len()));
        let Some(claim) = claim else {
            return (store.publish_events(events).await, false);
        };
        match store.publish_and_claim(events, claim.request()).await {
            Ok((outcomes, Some(work))) => {
                let tick = claim.start(work);
                (Ok(outcomes), !tick.more && !tick.due_left)
            }
            Ok((outcomes, None)) => (Ok(outcomes), false),
            Err(failure) => (Err(failure), false),
        }
    }
}

/// Answers each request of a batch with its share of the batch's results.
fn answer(
    replies: Vec<oneshot::Sender<Result<Vec<EventResult>, IngestError>>>,
    sizes: Vec<usize>,
    results: Vec<EventResult>,
) {
    let mut results = results.into_iter();
    for (reply, size) in replies.into_iter().zip(sizes) {
        let mut mine: Vec<EventResult> = results.by_ref().take(size).collect();
        // A single publish that failed, or a batch none of whose events could be stored
        // because the database is unreachable, fails as a whole, as it did alone.
        let whole = mine.len() == 1
            || mine
                .iter()
                .all(|r| matches!(r, Err(IngestError::Unavailable(_))));
        let answer = if whole && !mine.is_empty() && mine.iter().all(Result::is_err) {
            Err(mine.swap_remove(0).expect_err("every result is an error"))
        } else {
            Ok(mine)
        };
        let _ = reply.send(answer);
    }
}

/// The results of the events of a failed commit, in order: each half of a failed range is
/// committed on its own, so every event that can be stored is, and an event fails only
/// when it failed alone (or the database is unreachable, or the budget is spent).
async fn isolate(store: &dyn Store, failure: PublishFailure) -> Vec<EventResult> {
    enum Range {
        Untried(Vec<NewEvent>),
        Failed(PublishFailure),
    }
    let mut results = Vec::with_capacity(failure.events.len());
    let mut budget = ISOLATING_COMMITS;
    // The top of the stack is the leftmost range not answered yet, so results stay in order
    // and an event repeated later in the batch sees the first one stored.
    let mut ranges = vec![Range::Failed(failure)];
    while let Some(range) = ranges.pop() {
        match range {
            Range::Untried(events) => {
                budget = budget.saturating_sub(1);
                match store.publish_events(events).await {
                    Ok(outcomes) => results.extend(outcomes.into_iter().map(Ok)),
                    Err(failure) => ranges.push(Range::Failed(failure)),
                }
            }
            Range::Failed(PublishFailure { error, mut events }) => {
                if events.len() == 1 || error.is_unavailable() || budget == 0 {
                    match &events[..] {
                        [event] => tracing::error!(%error, tenant = %event.tenant,
                            event_id = %event.event_id, "event could not be stored"),
                        _ => tracing::error!(%error, events = events.len(),
                            "events could not be stored"),
                    }
                    results.extend(events.iter().map(|_| Err(ingest_error(&error))));
                } else {
                    let right = events.split_off(events.len() / 2);
                    ranges.push(Range::Untried(right));
                    ranges.push(Range::Untried(events));
                }
            }
        }
    }
    results
}

fn ingest_error(error: &StoreError) -> IngestError {
    if error.is_unavailable() {
        IngestError::Unavailable(error.to_string())
    } else {
        IngestError::Store(error.to_string())
    }
}
