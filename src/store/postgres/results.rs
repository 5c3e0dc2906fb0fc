//! Attempt results on PostgreSQL: written in transactions of their own, beside the claims
//! (transactions here run side by side), by the store's background work.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use sqlx::{Postgres, Transaction};
use tokio_util::sync::CancellationToken;

use super::health::{apply_health, lock_webhooks};
use super::{PostgresStore, lock_events, refresh_event_statuses};
use crate::domain::health::HealthPolicy;
use crate::domain::status::{DeliveryState, NextStep};
use crate::store::results::{
    attempt_status, finished_events, latest_attempt_at, next_states, skip,
};
use crate::store::{AttemptRecord, Commit, StoreResult};

/// Logs finished attempts and moves their deliveries on, and their events' statuses with
/// them, and their webhooks' health. Locks the webhooks first, then the events, each in order.
async fn record(
    tx: &mut Transaction<'_, Postgres>,
    records: &[AttemptRecord],
    health: &HealthPolicy,
) -> StoreResult<()> {
    let Some(node) = records.first().map(|r| r.node.clone()) else {
        return Ok(());
    };
    let webhooks = lock_webhooks(tx, records).await?;
    let mut seqs: Vec<i64> = records.iter().map(|r| r.event_seq).collect();
    seqs.sort_unstable();
    seqs.dedup();
    lock_events(tx, &seqs).await?;
    let steps = next_states(records);
    let moved = move_deliveries(tx, records, &steps, node.as_str()).await?;
    log_attempts(tx, records, &steps, &moved).await?;
    let finished = finished_events(records, &steps, &moved);
    let at = latest_attempt_at(records);
    refresh_event_statuses(tx, &finished, at).await?;
    apply_health(tx, webhooks, records, health, at).await
}

/// Moves each attempt's delivery to its next state (`steps`, in the order of `records`);
/// returns the ids of those it moved.
async fn move_deliveries(
    tx: &mut Transaction<'_, Postgres>,
    records: &[AttemptRecord],
    steps: &[(DeliveryState, Option<i64>)],
    node: &str,
) -> StoreResult<HashSet<i64>> {
    // Only the claim holder moves a delivery on: one superseded by a manual retry, ended
    // by a deleted webhook or taken over after its lease keeps its state.
    let moved: Vec<i64> = sqlx::query_scalar(
        "UPDATE deliveries d SET state = u.state, attempts = u.attempts, \
         next_attempt_at = COALESCE(u.next_at, d.next_attempt_at), locked_until = NULL, \
         locked_by = NULL, updated_at = u.at \
         FROM UNNEST($1::bigint[], $2::text[], $3::bigint[], $4::bigint[], $5::bigint[]) \
              AS u(id, state, attempts, next_at, at) \
         WHERE d.id = u.id AND d.state = 'in_flight' AND d.locked_by = $6 RETURNING d.id",
    )
    .bind(records.iter().map(|r| r.delivery_id).collect::<Vec<_>>())
    .bind(
        steps
            .iter()
            .map(|(state, _)| state.as_str())
            .collect::<Vec<_>>(),
    )
    .bind(
        records
            .iter()
            .map(|r| i64::from(r.attempt_number))
            .collect::<Vec<_>>(),
    )
    .bind(steps.iter().map(|(_, at)| *at).collect::<Vec<_>>())
    .bind(records.iter().map(|r| r.created_at_ms).collect::<Vec<_>>())
    .bind(node)
    .fetch_all(&mut **tx)
    .await?;
    Ok(moved.into_iter().collect())
}

/// Logs each attempt; the next retry shows only where its delivery moved (`moved`).
async fn log_attempts(
    tx: &mut Transaction<'_, Postgres>,
    records: &[AttemptRecord],
    steps: &[(DeliveryState, Option<i64>)],
    moved: &HashSet<i64>,
) -> StoreResult<()> {
    sqlx::query(
        "INSERT INTO attempts (id, delivery_id, event_seq, webhook_id, attempt_number, request_url, \
         request_headers, response_status, response_body, error_message, status, duration_ms, \
         created_at, next_retry_at) \
         SELECT * FROM UNNEST($1::text[], $2::bigint[], $3::bigint[], $4::text[], $5::bigint[], \
                              $6::text[], $7::text[], $8::bigint[], $9::text[], $10::text[], \
                              $11::text[], $12::bigint[], $13::bigint[], $14::bigint[])",
    )
    .bind(records.iter().map(|r| r.id.to_string()).collect::<Vec<_>>())
    .bind(records.iter().map(|r| r.delivery_id).collect::<Vec<_>>())
    .bind(records.iter().map(|r| r.event_seq).collect::<Vec<_>>())
    .bind(records.iter().map(|r| r.webhook_id.to_string()).collect::<Vec<_>>())
    .bind(records.iter().map(|r| i64::from(r.attempt_number)).collect::<Vec<_>>())
    .bind(records.iter().map(|r| r.request_url.clone()).collect::<Vec<_>>())
    .bind(records.iter().map(|r| r.request_headers.clone()).collect::<Vec<_>>())
    .bind(records.iter().map(|r| r.response_status.map(i64::from)).collect::<Vec<_>>())
    .bind(records.iter().map(|r| r.response_body.clone()).collect::<Vec<_>>())
    .bind(records.iter().map(|r| r.error_message.clone()).collect::<Vec<_>>())
    .bind(
        records
            .iter()
            .map(attempt_status)
            .collect::<Vec<_>>(),
    )
    .bind(records.iter().map(|r| r.duration_ms).collect::<Vec<_>>())
    .bind(records.iter().map(|r| r.created_at_ms).collect::<Vec<_>>())
    .bind(
        records
            .iter()
            .zip(steps)
            .map(|(r, (_, at))| if moved.contains(&r.delivery_id) { *at } else { None })
            .collect::<Vec<_>>(),
    )
    .execute(&mut **tx)
    .await?;
    Ok(())
}

impl PostgresStore {
    async fn record_in_transaction(&self, records: &[AttemptRecord]) -> StoreResult<()> {
        let mut tx = self.transaction(Commit::Relaxed).await?;
        record(&mut tx, records, &self.health).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Logs finished attempts and moves their deliveries on in a transaction of their own.
    /// A record the database refuses is logged and skipped (its delivery is left to its
    /// lease) rather than failing the others; `Err` only when the failure was transient
    /// ([`crate::store::StoreError::is_transient`]) and nothing was recorded.
    async fn record_batch(&self, records: &[AttemptRecord]) -> StoreResult<()> {
        let error = match self.record_in_transaction(records).await {
            Ok(()) => return Ok(()),
            Err(error) if error.is_transient() => return Err(error),
            Err(error) => error,
        };
        // Only once the batch failed: each record in a transaction of its own, so a row the
        // database refuses stops no other; it is skipped, its delivery left to its lease.
        if records.len() == 1 {
            skip(&records[0], &error);
            return Ok(());
        }
        tracing::warn!(%error, count = records.len(), "attempt results refused together; recording them one by one");
        for record in records {
            match self
                .record_in_transaction(std::slice::from_ref(record))
                .await
            {
                Ok(()) => {}
                Err(error) if error.is_transient() => return Err(error),
                Err(error) => skip(record, &error),
            }
        }
        Ok(())
    }

    /// Writes one batch of the waiting results; false when none was waiting.
    pub(super) async fn record_waiting(&self) -> StoreResult<bool> {
        let batch = self.unrecorded.take();
        if batch.is_empty() {
            return Ok(false);
        }
        let outcome = self.record_batch(&batch).await;
        self.unrecorded.settle(batch, &outcome);
        outcome.map(|()| true)
    }

    /// Writes attempt results in batches beside the claims (transactions here run side by
    /// side): whatever finished while the previous batch was being committed goes into the
    /// next one. A batch that queued a retry calls `on_work`: the retry may fall due before
    /// the dispatcher's next look.
    pub(super) async fn record_in_background(
        &self,
        on_work: Arc<dyn Fn() + Send + Sync>,
        shutdown: CancellationToken,
    ) {
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = self.unrecorded.arrived() => {}
            }
            loop {
                let batch = self.unrecorded.take();
                if batch.is_empty() {
                    break;
                }
                match self.record_batch(&batch).await {
                    Ok(()) => {
                        self.unrecorded.written();
                        if batch.iter().any(|r| matches!(r.next, NextStep::RetryAt(_))) {
                            on_work();
                        }
                    }
                    Err(error) => {
                        let failures = self.unrecorded.not_written(batch, &error);
                        let pause = Duration::from_millis(50 * u64::from(failures.min(20)));
                        tokio::select! {
                            _ = shutdown.cancelled() => return,
                            _ = tokio::time::sleep(pause) => {}
                        }
                    }
                }
            }
        }
    }
}
