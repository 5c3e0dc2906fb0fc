//! Attempt results handed to the store and not written yet. Each backend writes them in
//! batches of its own choosing (SQLite in its next claim, PostgreSQL beside the claims); they
//! wait here meanwhile, and here is the one rule for a batch the database keeps refusing.

use std::collections::HashSet;
use std::sync::Mutex;

use tokio::sync::Notify;

use super::{AttemptRecord, StoreError, StoreResult};
use crate::domain::status::{AttemptStatus, DeliveryState};

/// Most results written in one transaction.
pub(super) const RECORD_BATCH: usize = 1_000;
/// Failed writes in a row after which the results that failed are dropped, so that a batch
/// the database keeps refusing cannot stop delivery for good. Their deliveries stay claimed
/// until the lease runs out and are then attempted again: nothing is lost, an attempt is only
/// logged twice.
const RECORD_TRIES: u32 = 20;

/// Results in the order they were handed over, and how many writes failed in a row.
#[derive(Default)]
pub(super) struct Unrecorded {
    state: Mutex<State>,
    arrived: Notify,
}

#[derive(Default)]
struct State {
    records: Vec<AttemptRecord>,
    failures: u32,
}

impl Unrecorded {
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(super) fn len(&self) -> usize {
        self.state().records.len()
    }

    /// Keeps a finished attempt's result until a batch takes it.
    pub(super) fn hand_over(&self, record: AttemptRecord) {
        self.state().records.push(record);
        self.arrived.notify_one();
    }

    /// Waits until results were handed over since the last call (at once if some were).
    pub(super) async fn arrived(&self) {
        self.arrived.notified().await;
    }

    /// The oldest waiting results, at most [`RECORD_BATCH`], for the caller to write.
    pub(super) fn take(&self) -> Vec<AttemptRecord> {
        let mut state = self.state();
        if state.records.len() <= RECORD_BATCH {
            std::mem::take(&mut state.records)
        } else {
            let rest = state.records.split_off(RECORD_BATCH);
            std::mem::replace(&mut state.records, rest)
        }
    }

    /// Settles a batch from [`Unrecorded::take`] by the outcome of writing it: written, or
    /// waiting again ([`Unrecorded::not_written`]).
    pub(super) fn settle<T>(&self, batch: Vec<AttemptRecord>, outcome: &StoreResult<T>) {
        match outcome {
            Ok(_) => self.written(),
            Err(error) => {
                self.not_written(batch, error);
            }
        }
    }

    /// A batch from [`Unrecorded::take`] was written.
    pub(super) fn written(&self) {
        self.state().failures = 0;
    }

    /// A batch from [`Unrecorded::take`] could not be written: it waits again, ahead of the
    /// results handed over since, unless writes have failed [`RECORD_TRIES`] times in a row.
    /// Returns how many writes failed in a row.
    pub(super) fn not_written(&self, mut batch: Vec<AttemptRecord>, error: &StoreError) -> u32 {
        let mut state = self.state();
        state.failures += 1;
        let failures = state.failures;
        if batch.is_empty() {
            return failures;
        }
        if failures % RECORD_TRIES == 0 {
            tracing::error!(%error, failures, count = batch.len(),
                "dropping attempt results after repeated failures; their leases will expire");
            return failures;
        }
        tracing::warn!(%error, failures, count = batch.len(), "could not record attempt results; keeping them");
        batch.append(&mut state.records);
        state.records = batch;
        failures
    }
}

/// A result as both backends write it: the state its delivery moves to, when it is due
/// again, and the status its log shows.
pub(super) fn next_states(records: &[AttemptRecord]) -> Vec<(DeliveryState, Option<i64>)> {
    records.iter().map(|r| r.next.delivery_state()).collect()
}

/// The status an attempt's log shows.
pub(super) fn attempt_status(record: &AttemptRecord) -> &'static str {
    AttemptStatus::of(record.next).as_str()
}

/// The events (sorted, once each) whose delivery this batch finished, among those it moved:
/// their statuses need deriving again.
pub(super) fn finished_events(
    records: &[AttemptRecord],
    states: &[(DeliveryState, Option<i64>)],
    moved: &HashSet<i64>,
) -> Vec<i64> {
    let mut seqs: Vec<i64> = records
        .iter()
        .zip(states)
        .filter(|(r, (state, _))| moved.contains(&r.delivery_id) && *state != DeliveryState::Queued)
        .map(|(r, _)| r.event_seq)
        .collect();
    seqs.sort_unstable();
    seqs.dedup();
    seqs
}

/// The instant a batch of attempt results is recorded at (events' `processedAt` when their
/// status becomes final): the start of its latest attempt.
pub(super) fn latest_attempt_at(records: &[AttemptRecord]) -> i64 {
    records
        .iter()
        .map(|r| r.created_at_ms)
        .max()
        .unwrap_or_default()
}

/// Logs an attempt result the database refused and that is therefore not recorded: its
/// delivery stays claimed until its lease runs out, and is then tried again.
pub(super) fn skip(record: &AttemptRecord, error: &StoreError) {
    tracing::error!(%error, attempt = %record.id, delivery = record.delivery_id,
        "attempt result refused by the database; skipped, its delivery is left to its lease");
}

#[cfg(test)]
mod tests {
    use uuid::Uuid;

    use super::*;
    use crate::domain::status::NextStep;

    fn record(delivery_id: i64) -> AttemptRecord {
        AttemptRecord {
            id: Uuid::now_v7(),
            delivery_id,
            event_seq: 1,
            webhook_id: Uuid::nil().into(),
            node: "n".into(),
            attempt_number: 1,
            request_url: "https://example.com/".into(),
            request_headers: "{}".into(),
            response_status: Some(200),
            response_body: None,
            error_message: None,
            duration_ms: Some(1),
            created_at_ms: 0,
            next: NextStep::Succeeded,
        }
    }

    fn ids(records: &[AttemptRecord]) -> Vec<i64> {
        records.iter().map(|r| r.delivery_id).collect()
    }

    #[test]
    fn a_failed_batch_waits_again_ahead_of_later_results_until_the_last_try() {
        let unrecorded = Unrecorded::default();
        let error = StoreError::Invalid("refused".into());
        unrecorded.hand_over(record(1));
        unrecorded.hand_over(record(2));
        let batch = unrecorded.take();
        unrecorded.hand_over(record(3));
        assert_eq!(unrecorded.not_written(batch, &error), 1);
        assert_eq!(ids(&unrecorded.take()), [1, 2, 3]);
        for _ in 1..RECORD_TRIES - 1 {
            unrecorded.not_written(vec![record(4)], &error);
            assert_eq!(ids(&unrecorded.take()), [4]);
        }
        // The twentieth failure in a row drops what failed.
        assert_eq!(
            unrecorded.not_written(vec![record(4)], &error),
            RECORD_TRIES
        );
        assert!(unrecorded.take().is_empty());
        unrecorded.written();
        assert_eq!(unrecorded.not_written(vec![record(5)], &error), 1);
    }

    #[test]
    fn a_batch_takes_at_most_the_batch_size_oldest_first() {
        let unrecorded = Unrecorded::default();
        for id in 0..(RECORD_BATCH as i64 + 5) {
            unrecorded.hand_over(record(id));
        }
        let first = unrecorded.take();
        assert_eq!(first.len(), RECORD_BATCH);
        assert_eq!(first[0].delivery_id, 0);
        assert_eq!(
            ids(&unrecorded.take()),
            (RECORD_BATCH as i64..).take(5).collect::<Vec<_>>()
        );
    }
}
