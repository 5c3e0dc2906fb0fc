//! Attempt results on SQLite: logged, applied to their deliveries and their events'
//! statuses, inside the next claim's transaction or, when no claim comes (shutdown), in one
//! of their own.

use std::collections::HashSet;

use sqlx::{QueryBuilder, Sqlite, Transaction};

use super::health::apply_health;
use super::{Commit, SqliteStore, chunks, push_rows, refresh_event_statuses};
use crate::domain::health::HealthPolicy;
use crate::domain::status::DeliveryState;
use crate::store::results::{
    attempt_status, finished_events, latest_attempt_at, next_states, skip,
};
use crate::store::{AttemptRecord, StoreError, StoreResult};

/// Logs finished attempts and moves their deliveries on, and their events' statuses with them.
async fn record(
    tx: &mut Transaction<'_, Sqlite>,
    records: &[AttemptRecord],
    health: &HealthPolicy,
) -> StoreResult<()> {
    let Some(node) = records.first().map(|r| r.node.clone()) else {
        return Ok(());
    };
    let steps = next_states(records);
    let moved = move_deliveries(tx, records, &steps, node.as_str()).await?;
    log_attempts(tx, records, &steps, &moved).await?;
    let finished = finished_events(records, &steps, &moved);
    let at = latest_attempt_at(records);
    refresh_event_statuses(tx, &finished, at).await?;
    apply_health(tx, records, health, at).await
}

/// Moves each attempt's delivery to its next state (`steps`, in the order of `records`);
/// returns the ids of those it moved.
async fn move_deliveries(
    tx: &mut Transaction<'_, Sqlite>,
    records: &[AttemptRecord],
    steps: &[(DeliveryState, Option<i64>)],
    node: &str,
) -> StoreResult<HashSet<i64>> {
    let moves: Vec<_> = records
        .iter()
        .zip(steps)
        .map(|(r, (state, at))| {
            (
                r.delivery_id,
                state.as_str(),
                r.attempt_number,
                *at,
                r.created_at_ms,
            )
        })
        .collect();
    // Only the claim holder moves a delivery on: one superseded by a manual retry, ended
    // by a deleted webhook or taken over after its lease keeps its state.
    let mut moved: HashSet<i64> = HashSet::with_capacity(moves.len());
    for chunk in chunks(&moves) {
        let mut update =
            QueryBuilder::<Sqlite>::new("WITH u (id, state, attempts, next_at, at) AS (");
        push_rows(
            &mut update,
            &chunk,
            5,
            |row, (id, state, attempts, next_at, at)| {
                row.push_bind(*id)
                    .push_bind(*state)
                    .push_bind(*attempts)
                    .push_bind(*next_at)
                    .push_bind(*at);
            },
        );
        update
            .push(
                ") UPDATE OR IGNORE deliveries SET state = u.state, attempts = u.attempts, \
                 next_attempt_at = COALESCE(u.next_at, deliveries.next_attempt_at), \
                 locked_until = NULL, locked_by = NULL, updated_at = u.at FROM u \
                 WHERE deliveries.id = u.id AND deliveries.state = 'in_flight' \
                 AND deliveries.locked_by = ",
            )
            .push_bind(node)
            .push(" RETURNING deliveries.id");
        moved.extend(
            update
                .build_query_scalar::<i64>()
                .fetch_all(&mut **tx)
                .await?,
        );
    }
    Ok(moved)
}

/// Logs each attempt; the next retry shows only where its delivery moved (`moved`).
async fn log_attempts(
    tx: &mut Transaction<'_, Sqlite>,
    records: &[AttemptRecord],
    steps: &[(DeliveryState, Option<i64>)],
    moved: &HashSet<i64>,
) -> StoreResult<()> {
    let logs: Vec<_> = records
        .iter()
        .zip(steps)
        .map(|(r, (_, at))| {
            (
                r.id.to_string(),
                r.delivery_id,
                r.event_seq,
                r.webhook_id.to_string(),
                r.attempt_number,
                &r.request_url,
                &r.request_headers,
                r.response_status,
                &r.response_body,
                &r.error_message,
                attempt_status(r),
                r.duration_ms,
                r.created_at_ms,
                if moved.contains(&r.delivery_id) {
                    *at
                } else {
                    None
                },
            )
        })
        .collect();
    for chunk in chunks(&logs) {
        let mut insert = QueryBuilder::<Sqlite>::new(
            "INSERT INTO attempts (id, delivery_id, event_seq, webhook_id, attempt_number, \
             request_url, request_headers, response_status, response_body, error_message, \
             status, duration_ms, created_at, next_retry_at) SELECT * FROM (",
        );
        push_rows(&mut insert, &chunk, 14, |row, log| {
            row.push_bind(log.0.as_str())
                .push_bind(log.1)
                .push_bind(log.2)
                .push_bind(log.3.as_str())
                .push_bind(log.4)
                .push_bind(log.5.as_str())
                .push_bind(log.6.as_str())
                .push_bind(log.7)
                .push_bind(log.8.as_deref())
                .push_bind(log.9.as_deref())
                .push_bind(log.10)
                .push_bind(log.11)
                .push_bind(log.12)
                .push_bind(log.13);
        });
        insert.push(") WHERE column1 IS NOT NULL");
        insert.build().execute(&mut **tx).await?;
    }
    Ok(())
}

/// Records `records` inside `tx` without letting one of them stop the others: all in one
/// savepoint, and only if the database refuses that, each in a savepoint of its own, skipping
/// (and logging) those it still refuses. Transient failures are returned: the caller keeps
/// the results and tries again.
pub(super) async fn record_isolated(
    tx: &mut Transaction<'_, Sqlite>,
    records: &[AttemptRecord],
    health: &HealthPolicy,
) -> StoreResult<()> {
    if records.is_empty() {
        return Ok(());
    }
    let error = match record_in_savepoint(tx, records, health).await {
        Ok(()) => return Ok(()),
        Err(error) if error.is_transient() => return Err(error),
        Err(error) => error,
    };
    if records.len() == 1 {
        skip(&records[0], &error);
        return Ok(());
    }
    tracing::warn!(%error, count = records.len(), "attempt results refused together; recording them one by one");
    for record in records {
        match record_in_savepoint(tx, std::slice::from_ref(record), health).await {
            Ok(()) => {}
            Err(error) if error.is_transient() => return Err(error),
            Err(error) => skip(record, &error),
        }
    }
    Ok(())
}

async fn record_in_savepoint(
    tx: &mut Transaction<'_, Sqlite>,
    records: &[AttemptRecord],
    health: &HealthPolicy,
) -> StoreResult<()> {
    let mut savepoint = sqlx::Connection::begin(&mut **tx).await?;
    match record(&mut savepoint, records, health).await {
        Ok(()) => Ok(savepoint.commit().await?),
        Err(error) => {
            savepoint.rollback().await?;
            Err(error)
        }
    }
}

impl SqliteStore {
    /// Writes the results handed over so far in a transaction of their own.
    pub(super) async fn record_waiting(&self) -> StoreResult<()> {
        loop {
            let finished = self.unrecorded.take();
            if finished.is_empty() {
                return Ok(());
            }
            let written = async {
                let mut tx = self.write_transaction(Commit::Relaxed).await?;
                record_isolated(&mut tx, &finished, &self.health).await?;
                Ok::<_, StoreError>(tx.commit().await?)
            }
            .await;
            self.unrecorded.settle(finished, &written);
            written?;
        }
    }
}
