//! The delivery queue on SQLite: fan-out, claims under leases, attempt results, retention.
//! Every statement here runs on the single writer connection, so a tick's fan-out and claim
//! see each other and no two claims can take the same row.

use std::collections::HashMap;

use std::sync::Arc;

use async_trait::async_trait;
use tokio_util::sync::CancellationToken;

use super::*;

/// How many due rows one claim looks at, per delivery it may claim: enough to see past the
/// backlog of webhooks that are at their in-flight limit.
const CLAIM_SCAN_FACTOR: usize = 4;

/// Matches pending events to the active webhooks of their tenants and queues a delivery per
/// match; events nobody subscribes to are `skipped`.
async fn fan_out(tx: &mut Transaction<'_, Sqlite>, now: i64, limit: usize) -> StoreResult<usize> {
    let pending: Vec<PendingEvent> = sqlx::query_as(
        "SELECT seq, tenant, event_type FROM events WHERE status = 'pending' ORDER BY seq LIMIT ?",
    )
    .bind(limit as i64)
    .fetch_all(&mut **tx)
    .await?;
    let mut subscribers: HashMap<String, Vec<(String, Vec<String>)>> = HashMap::new();
    for event in &pending {
        if !subscribers.contains_key(&event.tenant) {
            let rows: Vec<(String, String)> = sqlx::query_as(
                "SELECT id, event_types FROM webhooks WHERE tenant = ? AND is_active = 1",
            )
            .bind(&event.tenant)
            .fetch_all(&mut **tx)
            .await?;
            let webhooks = rows
                .into_iter()
                .map(|(id, patterns)| (id, serde_json::from_str(&patterns).unwrap_or_default()))
                .collect();
            subscribers.insert(event.tenant.clone(), webhooks);
        }
        let mut matched = 0;
        for (webhook_id, patterns) in &subscribers[&event.tenant] {
            if any_pattern_matches(patterns, &event.event_type) {
                sqlx::query(
                    "INSERT INTO deliveries (event_seq, webhook_id, cycle, state, \
                     next_attempt_at, created_at, updated_at) VALUES (?, ?, 1, 'queued', ?, ?, ?)",
                )
                .bind(event.seq)
                .bind(webhook_id)
                .bind(now)
                .bind(now)
                .bind(now)
                .execute(&mut **tx)
                .await?;
                matched += 1;
            }
        }
        let status = if matched > 0 { "processing" } else { "skipped" };
        sqlx::query(
            "UPDATE events SET status = ?1, queued_at = ?2, \
             processed_at = CASE WHEN ?1 = 'skipped' THEN ?2 END WHERE seq = ?3",
        )
        .bind(status)
        .bind(now)
        .bind(event.seq)
        .execute(&mut **tx)
        .await?;
    }
    Ok(pending.len())
}

#[async_trait]
impl DeliveryStore for SqliteStore {
    async fn claim_work(&self, request: &ClaimRequest) -> StoreResult<ClaimedWork> {
        let now = request.now_ms;
        let mut tx = self.write_transaction().await?;
        let fanned_out = fan_out(&mut tx, now, request.fan_out_limit).await?;
        // A lease that ran out means its node died or hung: the delivery is due again.
        sqlx::query(
            "UPDATE deliveries SET state = 'queued', locked_until = NULL, locked_by = NULL, \
             updated_at = ?1 WHERE state = 'in_flight' AND locked_until < ?1",
        )
        .bind(now)
        .execute(&mut *tx)
        .await?;

        let saturated: Vec<String> = request
            .in_flight
            .iter()
            .filter(|(_, count)| **count >= request.per_webhook_limit)
            .map(|(id, _)| id.to_string())
            .collect();
        let candidates: Vec<Candidate> = sqlx::query_as(
            "SELECT d.id, d.event_seq, d.webhook_id, d.attempts, d.cycle, e.event_id, \
             e.event_type, e.user_id, e.occurred_at, e.payload, e.created_at, w.url, w.api_key \
             FROM (SELECT id, next_attempt_at, ROW_NUMBER() OVER \
                     (PARTITION BY webhook_id ORDER BY next_attempt_at, id) AS rank \
                   FROM (SELECT id, webhook_id, next_attempt_at FROM deliveries \
                         WHERE state = 'queued' AND next_attempt_at <= ?1 \
                         AND webhook_id NOT IN (SELECT value FROM json_each(?2)) \
                         ORDER BY next_attempt_at LIMIT ?3)) AS c \
             JOIN deliveries d ON d.id = c.id \
             JOIN events e ON e.seq = d.event_seq \
             JOIN webhooks w ON w.id = d.webhook_id \
             WHERE c.rank <= ?4 ORDER BY c.next_attempt_at, c.id",
        )
        .bind(now)
        .bind(serde_json::to_string(&saturated).unwrap_or_else(|_| "[]".into()))
        .bind((request.limit * CLAIM_SCAN_FACTOR) as i64)
        .bind(request.per_webhook_limit as i64)
        .fetch_all(&mut *tx)
        .await?;

        let mut taken: HashMap<String, usize> = HashMap::new();
        let mut deliveries = Vec::with_capacity(candidates.len().min(request.limit));
        for candidate in candidates {
            if deliveries.len() >= request.limit {
                break;
            }
            let webhook_id = parse_uuid(&candidate.webhook_id)?;
            let busy = request.in_flight.get(&webhook_id).copied().unwrap_or(0);
            let count = taken.entry(candidate.webhook_id.clone()).or_insert(0);
            if busy + *count >= request.per_webhook_limit {
                continue;
            }
            *count += 1;
            deliveries.push(candidate.into_claimed(webhook_id));
        }
        if !deliveries.is_empty() {
            let ids: Vec<i64> = deliveries.iter().map(|d| d.delivery_id).collect();
            sqlx::query(
                "UPDATE deliveries SET state = 'in_flight', locked_until = ?, locked_by = ?, \
                 updated_at = ? WHERE id IN (SELECT value FROM json_each(?))",
            )
            .bind(now + request.lease_ms)
            .bind(&request.node)
            .bind(now)
            .bind(serde_json::to_string(&ids).unwrap_or_else(|_| "[]".into()))
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(ClaimedWork {
            fanned_out,
            deliveries,
        })
    }

    async fn record_attempts(&self, records: Vec<AttemptRecord>) -> StoreResult<()> {
        let mut tx = self.write_transaction().await?;
        let mut touched: Vec<(i64, i64)> = Vec::with_capacity(records.len());
        for record in &records {
            let (state, next_attempt_at) = match record.next {
                NextStep::Succeeded => (DeliveryState::Succeeded, None),
                NextStep::RetryAt(at) => (DeliveryState::Queued, Some(at)),
                NextStep::Failed => (DeliveryState::Failed, None),
            };
            // Only the claim holder moves the delivery on: a delivery superseded by a manual
            // retry, ended by a deleted webhook or taken over after its lease keeps its state.
            let moved = sqlx::query(
                "UPDATE deliveries SET state = ?, attempts = ?, \
                 next_attempt_at = COALESCE(?, next_attempt_at), locked_until = NULL, \
                 locked_by = NULL, updated_at = ? \
                 WHERE id = ? AND state = 'in_flight' AND locked_by = ?",
            )
            .bind(state.as_str())
            .bind(record.attempt_number as i64)
            .bind(next_attempt_at)
            .bind(record.created_at_ms)
            .bind(record.delivery_id)
            .bind(&record.node)
            .execute(&mut *tx)
            .await?
            .rows_affected()
                > 0;
            let status = if record.next == NextStep::Succeeded {
                "success"
            } else {
                "failed"
            };
            sqlx::query(
                "INSERT INTO attempts (id, delivery_id, event_seq, webhook_id, attempt_number, \
                 request_url, request_headers, response_status, response_body, error_message, \
                 status, duration_ms, created_at, next_retry_at) \
                 VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            )
            .bind(record.id.to_string())
            .bind(record.delivery_id)
            .bind(record.event_seq)
            .bind(record.webhook_id.to_string())
            .bind(record.attempt_number as i64)
            .bind(&record.request_url)
            .bind(&record.request_headers)
            .bind(record.response_status.map(i64::from))
            .bind(&record.response_body)
            .bind(&record.error_message)
            .bind(status)
            .bind(record.duration_ms)
            .bind(record.created_at_ms)
            .bind(if moved { next_attempt_at } else { None })
            .execute(&mut *tx)
            .await?;
            if moved && state != DeliveryState::Queued {
                touched.push((record.event_seq, record.created_at_ms));
            }
        }
        touched.sort_unstable();
        touched.dedup_by_key(|(seq, _)| *seq);
        for (event_seq, at) in touched {
            refresh_event_status(&mut tx, event_seq, at).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn release_deliveries(&self, node: &str, delivery_ids: &[i64]) -> StoreResult<()> {
        sqlx::query(
            "UPDATE deliveries SET state = 'queued', locked_until = NULL, locked_by = NULL \
             WHERE locked_by = ? AND state = 'in_flight' AND id IN (SELECT value FROM json_each(?))",
        )
        .bind(node)
        .bind(serde_json::to_string(delivery_ids).unwrap_or_else(|_| "[]".into()))
        .execute(&self.writer)
        .await?;
        Ok(())
    }

    async fn recover_claims(&self, _node: &str, now_ms: i64) -> StoreResult<u64> {
        // One process owns a SQLite file, so every claim in it belongs to a run that is gone.
        let result = sqlx::query(
            "UPDATE deliveries SET state = 'queued', locked_until = NULL, locked_by = NULL, \
             next_attempt_at = MIN(next_attempt_at, ?1), updated_at = ?1 WHERE state = 'in_flight'",
        )
        .bind(now_ms)
        .execute(&self.writer)
        .await?;
        Ok(result.rows_affected())
    }

    async fn next_wake_at(&self) -> StoreResult<Option<i64>> {
        let next: Option<i64> = sqlx::query_scalar(
            "SELECT MIN(at) FROM ( \
               SELECT (SELECT 0 FROM events WHERE status = 'pending' LIMIT 1) AS at \
               UNION ALL SELECT MIN(next_attempt_at) FROM deliveries WHERE state = 'queued' \
               UNION ALL SELECT MIN(locked_until) FROM deliveries WHERE state = 'in_flight')",
        )
        .fetch_one(&self.writer)
        .await?;
        Ok(next)
    }

    async fn queue_depth(&self) -> StoreResult<QueueDepth> {
        let (pending_events, queued, in_flight): (i64, i64, i64) = sqlx::query_as(
            "SELECT (SELECT COUNT(*) FROM events WHERE status = 'pending'), \
                    (SELECT COUNT(*) FROM deliveries WHERE state = 'queued'), \
                    (SELECT COUNT(*) FROM deliveries WHERE state = 'in_flight')",
        )
        .fetch_one(&self.reader)
        .await?;
        Ok(QueueDepth {
            pending_events,
            queued,
            in_flight,
        })
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

    async fn listen_for_work(
        &self,
        _on_work: Arc<dyn Fn() + Send + Sync>,
        _shutdown: CancellationToken,
    ) {
        // One process owns the file: its own wake-ups are all there is.
    }
}
