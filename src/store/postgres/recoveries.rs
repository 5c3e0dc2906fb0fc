//! Recovering a webhook's failed events on PostgreSQL (see [`crate::store::recovery`]).
//! A running recovery's row is locked by the node stepping it (`SKIP LOCKED`), so nodes share
//! recoveries without taking the same window twice.

use sqlx::{Postgres, Transaction};
use uuid::Uuid;

use super::{PostgresStore, lock_events};
use crate::store::recovery::{
    ADVANCE_RECOVERY, FIRST_CREATED_FROM, INLINE_WINDOWS, INSERT_RECOVERY, RUNNING_RECOVERY, Range,
    RecoveryStep, RunningRow, SEQ_BOUNDS, SeqSearch, window_end,
};
use crate::store::{RecoverOutcome, StoreResult};

/// Deliveries to the webhook that ended failed, of the range's events among seqs
/// `[first, last]`: `(delivery id, event seq)`.
async fn failed_between(
    tx: &mut Transaction<'_, Postgres>,
    range: &Range,
    webhook_id: &str,
    first: i64,
    last: i64,
) -> StoreResult<Vec<(i64, i64)>> {
    Ok(sqlx::query_as(
        "SELECT d.id, d.event_seq FROM deliveries d JOIN events e ON e.seq = d.event_seq \
         WHERE d.event_seq BETWEEN $1 AND $2 AND d.webhook_id = $3 AND d.state = 'failed' \
         AND e.tenant = $4 AND e.created_at >= $5 AND e.created_at < $6 \
         AND ($7::bigint IS NULL OR d.updated_at >= $7)",
    )
    .bind(first)
    .bind(last)
    .bind(webhook_id)
    .bind(&range.tenant)
    .bind(range.since)
    .bind(range.until)
    .bind(range.ended_since)
    .fetch_all(&mut **tx)
    .await?)
}

/// Opens a new cycle (attempt 1, due now) for each failed delivery, which it supersedes.
/// Locks the events first, in `seq` order, as every change of their deliveries does.
async fn requeue(
    tx: &mut Transaction<'_, Postgres>,
    failed: &[(i64, i64)],
    now: i64,
) -> StoreResult<u64> {
    if failed.is_empty() {
        return Ok(0);
    }
    let mut seqs: Vec<i64> = failed.iter().map(|(_, seq)| *seq).collect();
    seqs.sort_unstable();
    seqs.dedup();
    lock_events(tx, &seqs).await?;
    let ids: Vec<i64> = failed.iter().map(|(id, _)| *id).collect();
    // Only those still failed once the events are locked: a retry may have come first.
    let superseded: Vec<i64> = sqlx::query_scalar(
        "UPDATE deliveries SET state = 'superseded', updated_at = $1 \
         WHERE id = ANY($2) AND state = 'failed' RETURNING id",
    )
    .bind(now)
    .bind(&ids)
    .fetch_all(&mut **tx)
    .await?;
    sqlx::query(
        "INSERT INTO deliveries (event_seq, webhook_id, cycle, state, next_attempt_at, \
         created_at, updated_at) SELECT event_seq, webhook_id, cycle + 1, 'queued', $1, $1, $1 \
         FROM deliveries WHERE id = ANY($2)",
    )
    .bind(now)
    .bind(&superseded)
    .execute(&mut **tx)
    .await?;
    sqlx::query(
        "UPDATE events SET status = 'processing', processed_at = NULL, \
         queued_at = COALESCE(queued_at, $1) WHERE seq = ANY($2)",
    )
    .bind(now)
    .bind(&seqs)
    .execute(&mut **tx)
    .await?;
    Ok(superseded.len() as u64)
}

/// The seqs of the range's events to walk, `None` when the tenant has none from `since` on.
async fn seq_span(
    tx: &mut Transaction<'_, Postgres>,
    range: &Range,
) -> StoreResult<Option<(i64, i64)>> {
    let (low, high): (Option<i64>, Option<i64>) = sqlx::query_as(SEQ_BOUNDS)
        .bind(&range.tenant)
        .fetch_one(&mut **tx)
        .await?;
    let (Some(low), Some(high)) = (low, high) else {
        return Ok(None);
    };
    let mut search = SeqSearch::new(low, high, range.since);
    while let Some(probe) = search.probe() {
        let created: Option<i64> = sqlx::query_scalar(FIRST_CREATED_FROM)
            .bind(&range.tenant)
            .bind(probe)
            .fetch_optional(&mut **tx)
            .await?;
        search.answer(probe, created);
    }
    Ok((search.first() <= high).then_some((search.first(), high)))
}

/// Starts a recovery in `tx`: works through up to [`INLINE_WINDOWS`] windows and records the
/// rest as running. Returns how many deliveries it queues in all, now and later.
pub(super) async fn start_recovery(
    tx: &mut Transaction<'_, Postgres>,
    webhook_id: &str,
    range: &Range,
    now: i64,
) -> StoreResult<u64> {
    let Some((first, last)) = seq_span(tx, range).await? else {
        return Ok(0);
    };
    let total = failed_between(tx, range, webhook_id, first, last)
        .await?
        .len() as u64;
    if total == 0 {
        return Ok(0);
    }
    let mut next = first;
    let mut queued = 0;
    for _ in 0..INLINE_WINDOWS {
        if next > last {
            return Ok(total);
        }
        let end = window_end(next, last);
        let failed = failed_between(tx, range, webhook_id, next, end).await?;
        queued += requeue(tx, &failed, now).await?;
        next = end + 1;
    }
    if next <= last {
        insert_running(tx, webhook_id, range, (next, last), queued, now).await?;
    }
    Ok(total)
}

/// Leaves the whole of a recovery to the background (a catch-up, queued by the
/// transaction that saw its webhook recover).
pub(super) async fn queue_recovery(
    tx: &mut Transaction<'_, Postgres>,
    webhook_id: &str,
    range: &Range,
    now: i64,
) -> StoreResult<()> {
    if let Some(span) = seq_span(tx, range).await? {
        insert_running(tx, webhook_id, range, span, 0, now).await?;
    }
    Ok(())
}

async fn insert_running(
    tx: &mut Transaction<'_, Postgres>,
    webhook_id: &str,
    range: &Range,
    (next, last): (i64, i64),
    queued: u64,
    now: i64,
) -> StoreResult<()> {
    sqlx::query(INSERT_RECOVERY)
        .bind(Uuid::now_v7().to_string())
        .bind(&range.tenant)
        .bind(webhook_id)
        .bind(range.since)
        .bind(range.until)
        .bind(range.ended_since)
        .bind(next)
        .bind(last)
        .bind(queued as i64)
        .bind(now)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

impl PostgresStore {
    pub(super) async fn recover_webhook_events(
        &self,
        tenant: &str,
        id: Uuid,
        since_ms: i64,
        until_ms: i64,
    ) -> StoreResult<RecoverOutcome> {
        let mut tx = self.pool.begin().await?;
        let webhook: Option<bool> = sqlx::query_scalar(
            "SELECT is_active FROM webhooks WHERE tenant = $1 AND id = $2 FOR UPDATE",
        )
        .bind(tenant)
        .bind(id.to_string())
        .fetch_optional(&mut *tx)
        .await?;
        match webhook {
            None => return Ok(RecoverOutcome::WebhookNotFound),
            Some(false) => return Ok(RecoverOutcome::WebhookInactive),
            Some(true) => {}
        }
        let range = Range {
            tenant: tenant.to_string(),
            since: since_ms,
            until: until_ms,
            ended_since: None,
        };
        let now = crate::domain::time::now_ms();
        let queued = start_recovery(&mut tx, &id.to_string(), &range, now).await?;
        if queued > 0 {
            self.notify_work(&mut tx).await?;
        }
        tx.commit().await?;
        Ok(RecoverOutcome::Queued(queued))
    }

    pub(super) async fn recovery_step(&self, now: i64) -> StoreResult<RecoveryStep> {
        let mut tx = self.pool.begin().await?;
        let running: Option<RunningRow> =
            sqlx::query_as(&format!("{RUNNING_RECOVERY} FOR UPDATE SKIP LOCKED"))
                .fetch_optional(&mut *tx)
                .await?;
        let Some(job) = running else {
            return Ok(RecoveryStep::default());
        };
        // A webhook deleted or switched off meanwhile ends its recovery.
        let active: Option<bool> =
            sqlx::query_scalar("SELECT is_active FROM webhooks WHERE id = $1 FOR UPDATE")
                .bind(&job.webhook_id)
                .fetch_optional(&mut *tx)
                .await?;
        let (queued, next) = if active == Some(true) {
            let end = window_end(job.next_seq, job.last_seq);
            let failed =
                failed_between(&mut tx, &job.range(), &job.webhook_id, job.next_seq, end).await?;
            (requeue(&mut tx, &failed, now).await?, end + 1)
        } else {
            (0, job.last_seq + 1)
        };
        let state = if next > job.last_seq {
            "done"
        } else {
            "running"
        };
        sqlx::query(ADVANCE_RECOVERY)
            .bind(next)
            .bind(queued as i64)
            .bind(state)
            .bind(now)
            .bind(&job.id)
            .execute(&mut *tx)
            .await?;
        if queued > 0 {
            self.notify_work(&mut tx).await?;
        }
        tx.commit().await?;
        Ok(RecoveryStep { queued, more: true })
    }
}
