//! The delivery queue on SQLite: fan-out, claims under leases, attempt results, retention.
//! Every statement here runs on the single writer connection, so a tick's fan-out and claim
//! see each other and no two claims can take the same row.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use async_trait::async_trait;
use sqlx::{QueryBuilder, Sqlite, Transaction};
use tokio_util::sync::CancellationToken;

use super::results::record_isolated;
use super::{Commit, LEASE_CHECK_EVERY_MS, SqliteStore, chunks, json_list, push_rows};
use crate::domain::ids::NodeId;
use crate::domain::subscription::{PendingEvent, plan_fan_out};
use crate::store::rows::{Candidate, take_within};
use crate::store::sql;
use crate::store::{
    AttemptRecord, BackgroundJob, ClaimRequest, ClaimedDelivery, ClaimedWork, DeliveryStore,
    QueueDepth, RecoveryStep, StoreResult,
};

/// Matches pending events to the active webhooks of their tenants and queues a delivery per
/// match; events nobody subscribes to are `skipped`. A handful of statements per batch.
async fn fan_out(tx: &mut Transaction<'_, Sqlite>, now: i64, limit: usize) -> StoreResult<usize> {
    let pending = read_pending(tx, limit).await?;
    if pending.is_empty() {
        return Ok(0);
    }
    let mut tenants: Vec<&str> = pending.iter().map(|e| e.tenant.as_str()).collect();
    tenants.sort_unstable();
    tenants.dedup();
    let webhooks: Vec<(String, i64, String)> = sqlx::query_as(
        "SELECT tenant, seq, event_types FROM webhooks \
         WHERE is_active = 1 AND tenant IN (SELECT value FROM json_each(?))",
    )
    .bind(json_list(&tenants))
    .fetch_all(&mut **tx)
    .await?;
    let plan = plan_fan_out(&pending, webhooks);
    queue_deliveries(tx, &plan.deliveries, now).await?;
    for (seqs, status, processed_at) in [
        (&plan.processing, "processing", None),
        (&plan.skipped, "skipped", Some(now)),
    ] {
        if seqs.is_empty() {
            continue;
        }
        sqlx::query(
            "UPDATE OR IGNORE events SET status = ?1, queued_at = ?2, processed_at = ?3 \
             WHERE seq IN (SELECT value FROM json_each(?4))",
        )
        .bind(status)
        .bind(now)
        .bind(processed_at)
        .bind(json_list(seqs))
        .execute(&mut **tx)
        .await?;
    }
    Ok(pending.len())
}

/// The oldest `limit` events awaiting fan-out.
async fn read_pending(
    tx: &mut Transaction<'_, Sqlite>,
    limit: usize,
) -> StoreResult<Vec<PendingEvent>> {
    Ok(sqlx::query_as::<_, (i64, String, String)>(
        "SELECT seq, tenant, event_type FROM events WHERE status = 'pending' ORDER BY seq LIMIT ?",
    )
    .bind(limit as i64)
    .fetch_all(&mut **tx)
    .await?
    .into_iter()
    .map(|(seq, tenant, event_type)| PendingEvent {
        seq,
        tenant,
        event_type,
    })
    .collect())
}

/// Inserts a fan-out's deliveries, `(event seq, webhook seq)`, queued and due `now`.
async fn queue_deliveries(
    tx: &mut Transaction<'_, Sqlite>,
    deliveries: &[(i64, i64)],
    now: i64,
) -> StoreResult<()> {
    for chunk in chunks(deliveries) {
        let mut insert = QueryBuilder::<Sqlite>::new(
            "INSERT INTO deliveries (event_seq, webhook_seq, cycle, state, next_attempt_at, \
             created_at, updated_at) SELECT column1, column2, 1, 'queued', ",
        );
        insert
            .separated(", ")
            .push_bind(now)
            .push_bind(now)
            .push_bind(now);
        insert.push(" FROM (");
        push_rows(&mut insert, &chunk, 2, |row, (seq, webhook)| {
            row.push_bind(*seq).push_bind(*webhook);
        });
        insert.push(") WHERE column1 IS NOT NULL");
        insert.build().execute(&mut **tx).await?;
    }
    Ok(())
}

/// Each webhook with queued deliveries (`sql::queued_webhooks!`): its id, its first due
/// time and its tenant.
const QUEUED_WEBHOOKS: &str = concat!(
    "WITH RECURSIVE ",
    sql::queued_webhooks!(),
    " SELECT w.id, q.first_due, w.tenant FROM queued q JOIN webhooks w ON w.seq = q.seq"
);

/// Claims due deliveries within the request's capacity: the ready webhooks' due
/// deliveries, up to each one's quota, then those the node may take, under a lease. Also
/// says whether due deliveries were left for want of room ([`ClaimedWork::due_left`]).
async fn claim_due(
    tx: &mut Transaction<'_, Sqlite>,
    request: &ClaimRequest,
) -> StoreResult<(Vec<ClaimedDelivery>, bool)> {
    let now = request.now_ms;
    let queued: Vec<(String, i64, String)> =
        sqlx::query_as(QUEUED_WEBHOOKS).fetch_all(&mut **tx).await?;
    let due_webhooks = queued.iter().filter(|(_, due, _)| *due <= now).count();
    let capacity = &request.capacity;
    let ready = capacity.webhooks_ready(queued, now);
    let held_back = ready.len() < due_webhooks;
    if ready.is_empty() || capacity.limit == 0 {
        return Ok((Vec::new(), held_back || !ready.is_empty()));
    }
    let quota = capacity.per_webhook_quota(ready.len());
    let candidates: Vec<Candidate> = sqlx::query_as(
        "SELECT d.id, d.event_seq, w.id AS webhook_id, w.tenant, d.attempts, d.cycle, \
         e.event_id, e.event_type, e.user_id, e.occurred_at, e.payload, e.created_at, \
         w.url, w.api_key \
         FROM json_each(?1) AS h \
         JOIN webhooks w ON w.id = h.value \
         JOIN deliveries d ON d.id IN ( \
           SELECT q.id FROM deliveries q WHERE q.state = 'queued' \
           AND q.webhook_seq = w.seq AND q.next_attempt_at <= ?2 \
           ORDER BY q.next_attempt_at, q.id LIMIT ?3) \
         JOIN events e ON e.seq = d.event_seq \
         ORDER BY d.next_attempt_at, d.id",
    )
    .bind(json_list(&ready))
    .bind(now)
    .bind(quota as i64)
    .fetch_all(&mut **tx)
    .await?;
    // A webhook that filled its quota may have more due; candidates beyond the node's or a
    // tenant's limit were read and not taken.
    let mut per_webhook: HashMap<&str, usize> = HashMap::new();
    for candidate in &candidates {
        *per_webhook
            .entry(candidate.webhook_id.as_str())
            .or_default() += 1;
    }
    let quota_filled = per_webhook.values().any(|&read| read >= quota);
    let read = candidates.len();
    let deliveries = take_within(candidates, capacity)?;
    let due_left = held_back || quota_filled || deliveries.len() < read;
    if !deliveries.is_empty() {
        let ids: Vec<i64> = deliveries.iter().map(|d| d.delivery_id).collect();
        sqlx::query(
            "UPDATE OR IGNORE deliveries SET state = 'in_flight', locked_until = ?, \
             locked_by = ?, updated_at = ? WHERE id IN (SELECT value FROM json_each(?))",
        )
        .bind(now + request.lease_ms)
        .bind(request.node.as_str())
        .bind(now)
        .bind(json_list(&ids))
        .execute(&mut **tx)
        .await?;
    }
    Ok((deliveries, due_left))
}

impl SqliteStore {
    /// The claim, in one transaction with the results handed over since the last one: one
    /// writer does everything, so a transaction of their own would only queue behind the
    /// claims, and a finished attempt wakes the dispatcher anyway (its slot is free).
    async fn claim_recording(
        &self,
        request: &ClaimRequest,
        finished: &[AttemptRecord],
    ) -> StoreResult<ClaimedWork> {
        let mut tx = self.write_transaction(Commit::Relaxed).await?;
        let work = self.claim_in(&mut tx, request, finished).await?;
        tx.commit().await?;
        Ok(work)
    }

    /// A claim's work inside `tx`: fan-out, the results `finished`, leases that ran out, and
    /// the due deliveries within the request's capacity.
    pub(super) async fn claim_in(
        &self,
        tx: &mut Transaction<'_, Sqlite>,
        request: &ClaimRequest,
        finished: &[AttemptRecord],
    ) -> StoreResult<ClaimedWork> {
        let now = request.now_ms;
        let fanned_out = fan_out(tx, now, request.fan_out_limit).await?;
        record_isolated(tx, finished, &self.health).await?;
        // A lease that ran out means its attempt hung: the delivery is due again.
        if now - self.leases_checked_at.load(Ordering::Relaxed) >= LEASE_CHECK_EVERY_MS {
            sqlx::query(
                "UPDATE deliveries SET state = 'queued', locked_until = NULL, locked_by = NULL, \
                 updated_at = ?1 WHERE state = 'in_flight' AND locked_until < ?1",
            )
            .bind(now)
            .execute(&mut **tx)
            .await?;
            self.leases_checked_at.store(now, Ordering::Relaxed);
        }
        let (deliveries, due_left) = claim_due(tx, request).await?;
        Ok(ClaimedWork {
            fanned_out,
            deliveries,
            due_left,
        })
    }
}

#[async_trait]
impl DeliveryStore for SqliteStore {
    async fn claim(&self, request: &ClaimRequest) -> StoreResult<ClaimedWork> {
        let finished = self.unrecorded.take();
        let outcome = self.claim_recording(request, &finished).await;
        self.unrecorded.settle(finished, &outcome);
        outcome
    }

    fn record_result(&self, result: AttemptRecord) {
        self.unrecorded.hand_over(result);
    }

    fn results_waiting(&self) -> usize {
        self.unrecorded.len()
    }

    async fn flush_results(&self) -> StoreResult<()> {
        self.record_waiting().await
    }

    async fn release(&self, node: &NodeId, delivery_ids: &[i64]) -> StoreResult<()> {
        sqlx::query(
            "UPDATE deliveries SET state = 'queued', locked_until = NULL, locked_by = NULL \
             WHERE locked_by = ? AND state = 'in_flight' AND id IN (SELECT value FROM json_each(?))",
        )
        .bind(node.as_str())
        .bind(json_list(delivery_ids))
        .execute(&self.writer)
        .await?;
        Ok(())
    }

    async fn recover(&self, _node: &NodeId, now_ms: i64) -> StoreResult<u64> {
        // One process owns a SQLite file, so every claim in it belongs to a run that is gone.
        let mut tx = self.write_transaction(Commit::Durable).await?;
        let result = sqlx::query(
            "UPDATE deliveries SET state = 'queued', locked_until = NULL, locked_by = NULL, \
             next_attempt_at = MIN(next_attempt_at, ?1), updated_at = ?1 WHERE state = 'in_flight'",
        )
        .bind(now_ms)
        .execute(&mut *tx)
        .await?;
        // The operator's notifications it was sending too.
        sqlx::query(
            "UPDATE notifications SET locked_until = NULL, locked_by = NULL, updated_at = ?1 \
             WHERE state = 'queued' AND locked_until IS NOT NULL",
        )
        .bind(now_ms)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(result.rows_affected())
    }

    /// On the writer, although a reader would see the same: waiting for the writer (behind a
    /// publish commit, ~2.4 ms under load) paces the dispatcher, whose next tick then takes
    /// two publish batches instead of one. On a reader the ticks came twice as often with
    /// half the events each, spending the writer's time on more transactions, and end-to-end
    /// throughput fell.
    async fn next_wake_at(&self) -> StoreResult<Option<i64>> {
        Ok(sqlx::query_scalar(sql::NEXT_WAKE_AT)
            .fetch_one(&self.writer)
            .await?)
    }

    async fn queue_depth(&self) -> StoreResult<QueueDepth> {
        Ok(sqlx::query_as(sql::QUEUE_DEPTH)
            .fetch_one(&self.reader)
            .await?)
    }

    async fn continue_recoveries(&self, now_ms: i64) -> StoreResult<RecoveryStep> {
        self.recovery_step(now_ms).await
    }

    async fn delete_attempts_before(&self, cutoff_ms: i64, limit: u32) -> StoreResult<u64> {
        let result = sqlx::query(
            "DELETE FROM attempts WHERE rowid IN \
             (SELECT rowid FROM attempts WHERE created_at < ? ORDER BY created_at LIMIT ?)",
        )
        .bind(cutoff_ms)
        .bind(i64::from(limit))
        .execute(&self.writer)
        .await?;
        Ok(result.rows_affected())
    }

    fn background_jobs(
        self: Arc<Self>,
        _on_work: Arc<dyn Fn() + Send + Sync>,
        shutdown: CancellationToken,
    ) -> Vec<BackgroundJob> {
        // One process owns the file: its own wake-ups are all there is to hear.
        vec![Box::pin(async move {
            self.checkpoint_in_background(shutdown).await
        })]
    }
}
