//! The delivery queue on PostgreSQL: fan-out, claims under leases, attempt results,
//! retention. Rows are taken with `FOR UPDATE SKIP LOCKED`, so nodes claiming at the same
//! moment take different work instead of waiting for each other.

use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use sqlx::postgres::PgListener;
use tokio_util::sync::CancellationToken;

use super::*;

/// The CTEs `hooks` and `queued (id, first_due)`: each webhook with queued deliveries and
/// its first due time, found by stepping through `deliveries_queued_by_webhook` one webhook
/// at a time (a recursive skip scan): a few index reads per webhook, whatever their
/// backlogs, as on SQLite.
const QUEUED_WEBHOOKS: &str = "hooks (id) AS ( \
       SELECT MIN(webhook_id) FROM deliveries WHERE state = 'queued' \
       UNION ALL \
       SELECT (SELECT MIN(webhook_id) FROM deliveries \
               WHERE state = 'queued' AND webhook_id > hooks.id) \
       FROM hooks WHERE hooks.id IS NOT NULL), \
     queued (id, first_due) AS (SELECT id, (SELECT MIN(next_attempt_at) FROM deliveries \
                 WHERE state = 'queued' AND webhook_id = hooks.id) \
       FROM hooks WHERE id IS NOT NULL)";

/// A row of [`plan_pending`]'s result: a pending event (with a seq) or an active webhook of
/// its tenant (with an id).
#[derive(sqlx::FromRow)]
struct PendingOrWebhook {
    seq: Option<i64>,
    tenant: String,
    event_type: Option<String>,
    webhook_id: Option<String>,
    patterns: Option<String>,
}

/// Matches pending events to the active webhooks of their tenants: the events, locked, and
/// their deliveries and statuses to write.
async fn plan_pending(
    tx: &mut Transaction<'_, Postgres>,
    limit: usize,
) -> StoreResult<FanOutPlan<String>> {
    // One statement for both (each is a round trip while the dispatcher holds its locks).
    // Shared locks on the webhooks: one being deleted or deactivated waits for this fan-out,
    // then ends the deliveries it created.
    let rows: Vec<PendingOrWebhook> = sqlx::query_as(
        "WITH pending AS (SELECT seq, tenant, event_type FROM events \
                          WHERE status = 'pending' ORDER BY seq LIMIT $1 \
                          FOR UPDATE SKIP LOCKED), \
         hooks AS (SELECT tenant, id, event_types FROM webhooks \
                   WHERE tenant IN (SELECT tenant FROM pending) AND is_active \
                   ORDER BY id FOR SHARE) \
         SELECT seq, tenant, event_type, NULL AS webhook_id, NULL AS patterns FROM pending \
         UNION ALL SELECT NULL, tenant, NULL, id, event_types FROM hooks",
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
                webhook_id: Some(id),
                patterns: Some(patterns),
                tenant,
                ..
            } => webhooks.push((tenant, id, patterns)),
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
    plan: &FanOutPlan<String>,
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
           INSERT INTO deliveries (event_seq, webhook_id, cycle, state, next_attempt_at, \
                                   created_at, updated_at) \
           SELECT u.seq, u.webhook, 1, 'queued', $5, $5, $5 \
           FROM UNNEST($1::bigint[], $2::text[]) AS u(seq, webhook)), \
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
            .map(|(_, webhook)| webhook.as_str())
            .collect::<Vec<_>>(),
    )
    .bind(&seqs)
    .bind(&statuses)
    .bind(now)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Logs finished attempts and moves their deliveries on, and their events' statuses with
/// them. Locks the events first, in `seq` order.
async fn record(tx: &mut Transaction<'_, Postgres>, records: &[AttemptRecord]) -> StoreResult<()> {
    let Some(node) = records.first().map(|r| r.node.clone()) else {
        return Ok(());
    };
    let mut seqs: Vec<i64> = records.iter().map(|r| r.event_seq).collect();
    seqs.sort_unstable();
    seqs.dedup();
    lock_events(tx, &seqs).await?;
    let steps = next_states(records);
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
    .bind(&node)
    .fetch_all(&mut **tx)
    .await?;
    let moved: std::collections::HashSet<i64> = moved.into_iter().collect();
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
            .map(|r| if r.next == NextStep::Succeeded { "success" } else { "failed" })
            .collect::<Vec<_>>(),
    )
    .bind(records.iter().map(|r| r.duration_ms).collect::<Vec<_>>())
    .bind(records.iter().map(|r| r.created_at_ms).collect::<Vec<_>>())
    .bind(
        records
            .iter()
            .zip(&steps)
            .map(|(r, (_, at))| if moved.contains(&r.delivery_id) { *at } else { None })
            .collect::<Vec<_>>(),
    )
    .execute(&mut **tx)
    .await?;
    let finished = finished_events(records, &steps, &moved);
    refresh_event_statuses(tx, &finished, latest_attempt_at(records)).await?;
    Ok(())
}

impl PostgresStore {
    async fn record_in_transaction(&self, records: &[AttemptRecord]) -> StoreResult<()> {
        let mut tx = self.pool.begin().await?;
        record(&mut tx, records).await?;
        tx.commit().await?;
        Ok(())
    }
}

#[async_trait]
impl DeliveryStore for PostgresStore {
    async fn claim_work(&self, request: &ClaimRequest) -> StoreResult<ClaimedWork> {
        let now = request.now_ms;
        let mut tx = self.pool.begin().await?;
        let plan = plan_pending(&mut tx, request.fan_out_limit).await?;
        // Every tick, even without pending events: the same statement takes back expired
        // leases, so that the claim below sees them.
        queue_fanned_out(&mut tx, &plan, now).await?;
        record(&mut tx, &request.finished).await?;
        let saturated: Vec<String> = request
            .in_flight
            .iter()
            .filter(|(_, count)| **count >= request.per_webhook_limit)
            .map(|(id, _)| id.to_string())
            .collect();
        let saturated_tenants = saturated_tenants(request);
        // One statement (each is a round trip to the database while the claim holds its
        // locks): the webhooks with due work that are below their limit on this node, then
        // each one's share of its due deliveries (`per_webhook_quota`'s rule; the number
        // of ready webhooks is known only here). Rows another node has locked are skipped.
        // Tenants at their limit on this node are left out (looked up only when there are
        // some, so the common claim costs what it did).
        // Each webhook's share is read in the order of its index (due time): ordering by
        // `id` as well sorted all of its due deliveries first, on every claim (herald bench
        // d: ~850 rows read a tick for ~65 taken).
        let quota = QuotaBounds::of(request);
        let candidates: Vec<Candidate> = if request.limit == 0 {
            Vec::new()
        } else {
            sqlx::query_as(&format!(
                "WITH RECURSIVE {QUEUED_WEBHOOKS}, \
                 ready AS (SELECT id FROM queued \
                           WHERE first_due <= $1 AND id <> ALL($2::text[]) \
                           AND (cardinality($5::text[]) = 0 OR NOT EXISTS ( \
                             SELECT 1 FROM webhooks w \
                             WHERE w.id = queued.id AND w.tenant = ANY($5::text[])))), \
                 c AS (SELECT q.id FROM ready h CROSS JOIN LATERAL ( \
                         SELECT id FROM deliveries WHERE state = 'queued' \
                         AND webhook_id = h.id AND next_attempt_at <= $1 \
                         ORDER BY next_attempt_at \
                         LIMIT (SELECT GREATEST(1, LEAST($4, ($3 + COUNT(*) - 1) / GREATEST(COUNT(*), 1))) \
                                FROM ready) \
                         FOR UPDATE SKIP LOCKED) q) \
                 SELECT d.id, d.event_seq, d.webhook_id, w.tenant, d.attempts, d.cycle, e.event_id, \
                        e.event_type, e.user_id, e.occurred_at, e.payload, e.created_at, w.url, \
                        w.api_key \
                 FROM c JOIN deliveries d ON d.id = c.id JOIN events e ON e.seq = d.event_seq \
                 JOIN webhooks w ON w.id = d.webhook_id ORDER BY d.next_attempt_at, d.id"
            ))
            .bind(now)
            .bind(&saturated)
            .bind(quota.reads as i64)
            .bind(quota.most as i64)
            .bind(&saturated_tenants)
            .fetch_all(&mut *tx)
            .await?
        };
        let deliveries = within_limits(candidates, request)?;
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
            .bind(&request.node)
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
        })
    }

    async fn record_attempts(&self, records: &[AttemptRecord]) -> StoreResult<()> {
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

    async fn release_deliveries(&self, node: &str, delivery_ids: &[i64]) -> StoreResult<()> {
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "UPDATE deliveries SET state = 'queued', locked_until = NULL, locked_by = NULL \
             WHERE locked_by = $1 AND state = 'in_flight' AND id = ANY($2)",
        )
        .bind(node)
        .bind(delivery_ids)
        .execute(&mut *tx)
        .await?;
        self.notify_work(&mut tx).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn recover_claims(&self, _node: &str, _now_ms: i64) -> StoreResult<u64> {
        // Nodes share the database: a claim may belong to a live node, so none is taken back
        // here. Claims of a node that died return to the queue when their lease runs out.
        Ok(0)
    }

    async fn next_wake_at(&self) -> StoreResult<Option<i64>> {
        let next: Option<i64> = sqlx::query_scalar(&format!(
            "WITH RECURSIVE {QUEUED_WEBHOOKS} \
             SELECT MIN(at) FROM ( \
               SELECT (SELECT 0::bigint FROM events WHERE status = 'pending' LIMIT 1) AS at \
               UNION ALL SELECT MIN(first_due) FROM queued \
               UNION ALL SELECT MIN(locked_until) FROM deliveries WHERE state = 'in_flight') AS t"
        ))
        .fetch_one(&self.pool)
        .await?;
        Ok(next)
    }

    async fn queue_depth(&self) -> StoreResult<QueueDepth> {
        let (pending_events, queued, in_flight): (i64, i64, i64) = sqlx::query_as(
            "SELECT (SELECT COUNT(*) FROM events WHERE status = 'pending'), \
                    (SELECT COUNT(*) FROM deliveries WHERE state = 'queued'), \
                    (SELECT COUNT(*) FROM deliveries WHERE state = 'in_flight')",
        )
        .fetch_one(&self.pool)
        .await?;
        Ok(QueueDepth {
            pending_events,
            queued,
            in_flight,
        })
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

    async fn listen_for_work(
        &self,
        on_work: Arc<dyn Fn() + Send + Sync>,
        shutdown: CancellationToken,
    ) {
        let mut failures = 0u32;
        while !shutdown.is_cancelled() {
            if failures > 0 {
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep(listen_backoff(failures)) => {}
                }
            }
            let mut listener = match PgListener::connect_with(&self.pool).await {
                Ok(listener) => listener,
                Err(error) => {
                    failures = failures.saturating_add(1);
                    tracing::warn!(%error, failures, "cannot listen for work notifications");
                    continue;
                }
            };
            if let Err(error) = listener.listen(&self.channel).await {
                failures = failures.saturating_add(1);
                tracing::warn!(%error, failures, "cannot listen for work notifications");
                continue;
            }
            let listening_since = Instant::now();
            // Whatever was announced while not listening is found by looking now.
            on_work();
            loop {
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    received = listener.try_recv() => match received {
                        Ok(Some(_)) => on_work(),
                        // The connection was lost; try_recv reconnects on the next call.
                        Ok(None) => on_work(),
                        Err(error) => {
                            tracing::warn!(%error, "work notifications interrupted");
                            break;
                        }
                    },
                }
            }
            // A listener that held for a while was a success: start the backoff afresh.
            if listening_since.elapsed() >= LISTEN_BACKOFF_MAX {
                failures = 0;
            }
            failures = failures.saturating_add(1);
        }
    }
}

/// The first pause before listening again after a failure, and the longest.
const LISTEN_BACKOFF_FIRST: Duration = Duration::from_millis(100);
const LISTEN_BACKOFF_MAX: Duration = Duration::from_secs(5);

/// The pause before listening again after `failures` failures in a row: doubling from
/// [`LISTEN_BACKOFF_FIRST`] up to [`LISTEN_BACKOFF_MAX`], so a database that refuses LISTEN
/// is not asked again in a tight loop.
fn listen_backoff(failures: u32) -> Duration {
    if failures == 0 {
        return Duration::ZERO;
    }
    let doublings = (failures - 1).min(16);
    LISTEN_BACKOFF_FIRST
        .saturating_mul(1u32 << doublings)
        .min(LISTEN_BACKOFF_MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listening_again_backs_off_exponentially_up_to_a_cap() {
        let pauses: Vec<u64> = (0..=10)
            .map(|failures| listen_backoff(failures).as_millis() as u64)
            .collect();
        assert_eq!(
            pauses,
            [
                0, 100, 200, 400, 800, 1_600, 3_200, 5_000, 5_000, 5_000, 5_000
            ]
        );
        assert_eq!(listen_backoff(u32::MAX), LISTEN_BACKOFF_MAX);
    }
}
