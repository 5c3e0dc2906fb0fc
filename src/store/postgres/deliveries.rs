//! The delivery queue on PostgreSQL: fan-out, claims under leases, attempt results,
//! retention. Rows are taken with `FOR UPDATE SKIP LOCKED`, so nodes claiming at the same
//! moment take different work instead of waiting for each other.

use std::sync::Arc;

use async_trait::async_trait;
use sqlx::{Postgres, Transaction};
use tokio_util::sync::CancellationToken;

use super::PostgresStore;
use crate::domain::ids::NodeId;
use crate::domain::subscription::{FanOutPlan, PendingEvent, plan_fan_out};
use crate::store::Commit;
use crate::store::rows::{Candidate, take_within};
use crate::store::sql;
use crate::store::{
    AttemptRecord, BackgroundJob, ClaimRequest, ClaimedDelivery, ClaimedWork, DeliveryStore,
    QueueDepth, RecoveryStep, StoreResult,
};

/// A row of [`plan_pending`]'s result: a pending event (with a seq) or an active webhook of
/// its tenant (with its key).
#[derive(sqlx::FromRow)]
struct PendingOrWebhook {
    seq: Option<i64>,
    tenant: String,
    event_type: Option<String>,
    webhook_seq: Option<i64>,
    patterns: Option<String>,
}

/// Matches pending events to the active webhooks of their tenants: the events, locked, and
/// their deliveries and statuses to write.
async fn plan_pending(
    tx: &mut Transaction<'_, Postgres>,
    limit: usize,
) -> StoreResult<FanOutPlan<i64>> {
    // One statement for both (each is a round trip while the dispatcher holds its locks).
    // Key-share locks on the webhooks: one being deleted or switched off (which takes
    // `FOR UPDATE`) waits for this fan-out, then ends the deliveries it created; attempt
    // results moving a webhook's health (`NO KEY UPDATE`) do not wait.
    let rows: Vec<PendingOrWebhook> = sqlx::query_as(
        "WITH pending AS (SELECT seq, tenant, event_type FROM events \
                          WHERE status = 'pending' ORDER BY seq LIMIT $1 \
                          FOR UPDATE SKIP LOCKED), \
         hooks AS (SELECT tenant, id, seq, event_types FROM webhooks \
                   WHERE tenant IN (SELECT tenant FROM pending) AND is_active \
                   ORDER BY id FOR KEY SHARE) \
         SELECT seq, tenant, event_type, NULL AS webhook_seq, NULL AS patterns FROM pending \
         UNION ALL SELECT NULL, tenant, NULL, seq, event_types FROM hooks",
    )
    .bind(limit as i64)
    .fetch_all(&mut **tx)
    .await?;
    let (mut pending, mut webhooks) = (Vec::new(), Vec::new());
    for row in rows {
        match row {
            PendingOrWebhook {
                seq: Some(seq),
                event_type: Some(event_type),
                tenant,
                ..
            } => pending.push(PendingEvent {
                seq,
                tenant,
                event_type,
            }),
            PendingOrWebhook {
                webhook_seq: Some(key),
                patterns: Some(patterns),
                tenant,
                ..
            } => webhooks.push((tenant, key, patterns)),
            _ => {}
        }
    }
    pending.sort_unstable_by_key(|e| e.seq);
    Ok(plan_fan_out(&pending, webhooks))
}

/// Writes a fan-out (the deliveries it queues, the statuses of its events) and puts back in
/// the queue the deliveries whose lease ran out (their node died or hung), in one statement.
async fn queue_fanned_out(
    tx: &mut Transaction<'_, Postgres>,
    plan: &FanOutPlan<i64>,
    now: i64,
) -> StoreResult<()> {
    let (seqs, statuses): (Vec<i64>, Vec<&str>) = plan
        .processing
        .iter()
        .map(|seq| (*seq, "processing"))
        .chain(plan.skipped.iter().map(|seq| (*seq, "skipped")))
        .unzip();
    sqlx::query(
        "WITH queued AS ( \
           INSERT INTO deliveries (event_seq, webhook_seq, cycle, state, next_attempt_at, \
                                   created_at, updated_at) \
           SELECT u.seq, u.webhook, 1, 'queued', $5, $5, $5 \
           FROM UNNEST($1::bigint[], $2::bigint[]) AS u(seq, webhook)), \
         fanned_out AS ( \
           UPDATE events e SET status = u.status, queued_at = $5, \
                  processed_at = CASE WHEN u.status = 'skipped' THEN $5 END \
           FROM UNNEST($3::bigint[], $4::text[]) AS u(seq, status) WHERE e.seq = u.seq), \
         expired AS ( \
           UPDATE deliveries SET state = 'queued', locked_until = NULL, locked_by = NULL, \
                  updated_at = $5 \
           WHERE id IN (SELECT id FROM deliveries WHERE state = 'in_flight' \
                        AND locked_until < $5 FOR UPDATE SKIP LOCKED)) \
         SELECT 1",
    )
    .bind(
        plan.deliveries
            .iter()
            .map(|(seq, _)| *seq)
            .collect::<Vec<_>>(),
    )
    .bind(
        plan.deliveries
            .iter()
            .map(|(_, webhook)| *webhook)
            .collect::<Vec<_>>(),
    )
    .bind(&seqs)
    .bind(&statuses)
    .bind(now)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// The due deliveries a node may claim, locked: `(now, saturated webhook ids, quota reads,
/// quota most, saturated tenants)`. The webhooks with due work that are below their limit on
/// this node (`sql::queued_webhooks!`), then each one's share of its due deliveries
/// (`Capacity::per_webhook_quota`'s rule; the number of ready webhooks is known only here).
/// Rows another node has locked are skipped. Tenants at their limit on this node are left
/// out (looked up only when there are some, so the common claim costs what it did). Each
/// webhook's share is read in the order of its index (due time): ordering by `id` as well
/// sorted all of its due deliveries first, on every claim (herald bench d: ~850 rows read a
/// tick for ~65 taken).
const CLAIMABLE: &str = concat!(
    "WITH RECURSIVE ",
    sql::queued_webhooks!(),
    ", ready AS (SELECT seq FROM queued \
                 WHERE first_due <= $1 \
                 AND seq NOT IN (SELECT seq FROM webhooks WHERE id = ANY($2::text[])) \
                 AND (cardinality($5::text[]) = 0 OR NOT EXISTS ( \
                   SELECT 1 FROM webhooks w \
                   WHERE w.seq = queued.seq AND w.tenant = ANY($5::text[])))), \
     c AS (SELECT q.id FROM ready h CROSS JOIN LATERAL ( \
             SELECT id FROM deliveries WHERE state = 'queued' \
             AND webhook_seq = h.seq AND next_attempt_at <= $1 \
             ORDER BY next_attempt_at \
             LIMIT (SELECT GREATEST(1, LEAST($4, ($3 + COUNT(*) - 1) / GREATEST(COUNT(*), 1))) \
                    FROM ready) \
             FOR UPDATE SKIP LOCKED) q) \
     SELECT d.id, d.event_seq, w.id AS webhook_id, w.tenant, d.attempts, d.cycle, e.event_id, \
            e.event_type, e.user_id, e.occurred_at, e.payload, e.created_at, w.url, w.api_key \
     FROM c JOIN deliveries d ON d.id = c.id JOIN events e ON e.seq = d.event_seq \
     JOIN webhooks w ON w.seq = d.webhook_seq ORDER BY d.next_attempt_at, d.id"
);

/// Reads the due deliveries this node may claim, locked, within the request's capacity:
/// the ready webhooks' due deliveries, up to each one's quota, then those the node may take.
async fn claimable(
    tx: &mut Transaction<'_, Postgres>,
    request: &ClaimRequest,
) -> StoreResult<Vec<ClaimedDelivery>> {
    let now = request.now_ms;
    let capacity = &request.capacity;
    if capacity.limit == 0 {
        return Ok(Vec::new());
    }
    let saturated = capacity.saturated_webhooks();
    let saturated_tenants = capacity.saturated_tenants();
    // One statement: each is a round trip to the database while the claim holds its locks.
    let quota = capacity.quota_bounds();
    let candidates: Vec<Candidate> = sqlx::query_as(CLAIMABLE)
        .bind(now)
        .bind(&saturated)
        .bind(quota.reads as i64)
        .bind(quota.most as i64)
        .bind(&saturated_tenants)
        .fetch_all(&mut **tx)
        .await?;
    take_within(candidates, capacity)
}

#[async_trait]
impl DeliveryStore for PostgresStore {
    async fn claim(&self, request: &ClaimRequest) -> StoreResult<ClaimedWork> {
        let now = request.now_ms;
        let mut tx = self.transaction(Commit::Relaxed).await?;
        let plan = plan_pending(&mut tx, request.fan_out_limit).await?;
        // Every tick, even without pending events: the same statement takes back expired
        // leases, so that the claim below sees them.
        queue_fanned_out(&mut tx, &plan, now).await?;
        let deliveries = claimable(&mut tx, request).await?;
        // More was queued than this node took: the notification lets idle nodes share it.
        let notify = plan.deliveries.len() > deliveries.len();
        if !deliveries.is_empty() || notify {
            let ids: Vec<i64> = deliveries.iter().map(|d| d.delivery_id).collect();
            sqlx::query(
                "WITH claimed AS ( \
                   UPDATE deliveries SET state = 'in_flight', locked_until = $1, locked_by = $2, \
                          updated_at = $3 WHERE id = ANY($4)) \
                 SELECT pg_notify($5, '') WHERE $6",
            )
            .bind(now + request.lease_ms)
            .bind(request.node.as_str())
            .bind(now)
            .bind(&ids)
            .bind(&self.channel)
            .bind(notify)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(ClaimedWork {
            fanned_out: plan.events(),
            deliveries,
            // The claim's one statement does not say what it left; a finished attempt is
            // followed by a claim, as it always was here.
            due_left: true,
        })
    }

    fn record_result(&self, result: AttemptRecord) {
        self.unrecorded.hand_over(result);
    }

    fn results_waiting(&self) -> usize {
        0
    }

    async fn flush_results(&self) -> StoreResult<()> {
        while self.record_waiting().await? {}
        Ok(())
    }

    async fn release(&self, node: &NodeId, delivery_ids: &[i64]) -> StoreResult<()> {
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "UPDATE deliveries SET state = 'queued', locked_until = NULL, locked_by = NULL \
             WHERE locked_by = $1 AND state = 'in_flight' AND id = ANY($2)",
        )
        .bind(node.as_str())
        .bind(delivery_ids)
        .execute(&mut *tx)
        .await?;
        self.notify_work(&mut tx).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn recover(&self, _node: &NodeId, _now_ms: i64) -> StoreResult<u64> {
        // Nodes share the database: a claim may belong to a live node, so none is taken back
        // here. Claims of a node that died return to the queue when their lease runs out.
        Ok(0)
    }

    async fn next_wake_at(&self) -> StoreResult<Option<i64>> {
        Ok(sqlx::query_scalar(sql::NEXT_WAKE_AT)
            .fetch_one(&self.pool)
            .await?)
    }

    async fn queue_depth(&self) -> StoreResult<QueueDepth> {
        Ok(sqlx::query_as(sql::QUEUE_DEPTH)
            .fetch_one(&self.pool)
            .await?)
    }

    async fn continue_recoveries(&self, now_ms: i64) -> StoreResult<RecoveryStep> {
        self.recovery_step(now_ms).await
    }

    async fn delete_attempts_before(&self, cutoff_ms: i64, limit: u32) -> StoreResult<u64> {
        let result = sqlx::query(
            "DELETE FROM attempts WHERE id IN \
             (SELECT id FROM attempts WHERE created_at < $1 ORDER BY created_at LIMIT $2)",
        )
        .bind(cutoff_ms)
        .bind(i64::from(limit))
        .execute(&self.pool)
        .await?;
        Ok(result.rows_affected())
    }

    fn background_jobs(
        self: Arc<Self>,
        on_work: Arc<dyn Fn() + Send + Sync>,
        shutdown: CancellationToken,
    ) -> Vec<BackgroundJob> {
        let recorder = self.clone();
        let (on_recorded, stop_recording) = (on_work.clone(), shutdown.clone());
        vec![
            Box::pin(async move { self.listen_for_work(on_work, shutdown).await }),
            Box::pin(async move {
                recorder
                    .record_in_background(on_recorded, stop_recording)
                    .await
            }),
        ]
    }
}
