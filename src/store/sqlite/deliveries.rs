//! The delivery queue on SQLite: fan-out, claims under leases, attempt results, retention.
//! Every statement here runs on the single writer connection, so a tick's fan-out and claim
//! see each other and no two claims can take the same row.

use std::collections::HashSet;

use std::sync::Arc;

use async_trait::async_trait;
use tokio_util::sync::CancellationToken;

use super::*;

/// Matches pending events to the active webhooks of their tenants and queues a delivery per
/// match; events nobody subscribes to are `skipped`. A handful of statements per batch.
async fn fan_out(tx: &mut Transaction<'_, Sqlite>, now: i64, limit: usize) -> StoreResult<usize> {
    let pending: Vec<PendingEvent> = sqlx::query_as(
        "SELECT seq, tenant, event_type FROM events WHERE status = 'pending' ORDER BY seq LIMIT ?",
    )
    .bind(limit as i64)
    .fetch_all(&mut **tx)
    .await?;
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
    for chunk in chunks(&plan.deliveries) {
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

/// Each webhook with queued deliveries and its first due time, found by stepping through the
/// per-webhook queue index one webhook at a time: a few index seeks per webhook, whatever
/// their backlogs. Scanning the queue in due order instead read past every due delivery of
/// a webhook at its in-flight limit on every tick, so one dead endpoint's growing backlog
/// slowed everyone (herald bench h, i). Each webhook is named by its id.
const QUEUED_WEBHOOKS: &str = "WITH RECURSIVE hooks (seq) AS ( \
       SELECT (SELECT MIN(webhook_seq) FROM deliveries WHERE state = 'queued') \
       UNION ALL \
       SELECT (SELECT MIN(webhook_seq) FROM deliveries \
               WHERE state = 'queued' AND webhook_seq > hooks.seq) \
       FROM hooks WHERE hooks.seq IS NOT NULL) \
     SELECT w.id, (SELECT MIN(next_attempt_at) FROM deliveries \
                   WHERE state = 'queued' AND webhook_seq = hooks.seq), w.tenant \
     FROM hooks JOIN webhooks w ON w.seq = hooks.seq";

/// Logs finished attempts and moves their deliveries on, and their events' statuses with them.
async fn record(tx: &mut Transaction<'_, Sqlite>, records: &[AttemptRecord]) -> StoreResult<()> {
    let Some(node) = records.first().map(|r| r.node.clone()) else {
        return Ok(());
    };
    let steps = next_states(records);
    let moves: Vec<_> = records
        .iter()
        .zip(&steps)
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
            .push_bind(node.as_str())
            .push(" RETURNING deliveries.id");
        moved.extend(
            update
                .build_query_scalar::<i64>()
                .fetch_all(&mut **tx)
                .await?,
        );
    }
    let logs: Vec<_> = records
        .iter()
        .zip(&steps)
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
                if r.next == NextStep::Succeeded {
                    "success"
                } else {
                    "failed"
                },
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
    let finished = finished_events(records, &steps, &moved);
    refresh_event_statuses(tx, &finished, latest_attempt_at(records)).await?;
    Ok(())
}

/// Records `records` inside `tx` without letting one of them stop the others: all in one
/// savepoint, and only if the database refuses that, each in a savepoint of its own, skipping
/// (and logging) those it still refuses. Transient failures are returned: the caller keeps
/// the results and tries again.
async fn record_isolated(
    tx: &mut Transaction<'_, Sqlite>,
    records: &[AttemptRecord],
) -> StoreResult<()> {
    if records.is_empty() {
        return Ok(());
    }
    let error = match record_in_savepoint(tx, records).await {
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
        match record_in_savepoint(tx, std::slice::from_ref(record)).await {
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
) -> StoreResult<()> {
    let mut savepoint = sqlx::Connection::begin(&mut **tx).await?;
    match record(&mut savepoint, records).await {
        Ok(()) => Ok(savepoint.commit().await?),
        Err(error) => {
            savepoint.rollback().await?;
            Err(error)
        }
    }
}

#[async_trait]
impl DeliveryStore for SqliteStore {
    async fn claim_work(&self, request: &ClaimRequest) -> StoreResult<ClaimedWork> {
        let now = request.now_ms;
        let mut tx = self.write_transaction(Commit::Relaxed).await?;
        let fanned_out = fan_out(&mut tx, now, request.fan_out_limit).await?;
        record_isolated(&mut tx, &request.finished).await?;
        // A lease that ran out means its attempt hung: the delivery is due again.
        if now - self.leases_checked_at.load(Ordering::Relaxed) >= LEASE_CHECK_EVERY_MS {
            sqlx::query(
                "UPDATE deliveries SET state = 'queued', locked_until = NULL, locked_by = NULL, \
                 updated_at = ?1 WHERE state = 'in_flight' AND locked_until < ?1",
            )
            .bind(now)
            .execute(&mut *tx)
            .await?;
            self.leases_checked_at.store(now, Ordering::Relaxed);
        }

        let queued: Vec<(String, i64, String)> =
            sqlx::query_as(QUEUED_WEBHOOKS).fetch_all(&mut *tx).await?;
        let ready = webhooks_ready(queued, request);
        let candidates: Vec<Candidate> = if ready.is_empty() || request.limit == 0 {
            Vec::new()
        } else {
            sqlx::query_as(
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
            .bind(per_webhook_quota(request, ready.len()) as i64)
            .fetch_all(&mut *tx)
            .await?
        };

        let deliveries = within_limits(candidates, request)?;
        if !deliveries.is_empty() {
            let ids: Vec<i64> = deliveries.iter().map(|d| d.delivery_id).collect();
            sqlx::query(
                "UPDATE OR IGNORE deliveries SET state = 'in_flight', locked_until = ?, \
                 locked_by = ?, \
                 updated_at = ? WHERE id IN (SELECT value FROM json_each(?))",
            )
            .bind(now + request.lease_ms)
            .bind(&request.node)
            .bind(now)
            .bind(json_list(&ids))
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(ClaimedWork {
            fanned_out,
            deliveries,
        })
    }

    async fn record_attempts(&self, records: &[AttemptRecord]) -> StoreResult<()> {
        let mut tx = self.write_transaction(Commit::Relaxed).await?;
        record_isolated(&mut tx, records).await?;
        tx.commit().await?;
        Ok(())
    }

    /// One writer does everything, so a recorder's transaction would only queue behind the
    /// claims, and each transaction costs round trips to sqlx's worker thread while the writer
    /// is held. Recording in the claim made healthy webhooks beside a dead one (herald bench
    /// h) keep 93-94% of their throughput alone instead of 90-91%, d and e unchanged.
    fn records_with_claims(&self) -> bool {
        true
    }

    async fn release_deliveries(&self, node: &str, delivery_ids: &[i64]) -> StoreResult<()> {
        sqlx::query(
            "UPDATE deliveries SET state = 'queued', locked_until = NULL, locked_by = NULL \
             WHERE locked_by = ? AND state = 'in_flight' AND id IN (SELECT value FROM json_each(?))",
        )
        .bind(node)
        .bind(json_list(delivery_ids))
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

    /// On the writer, although a reader would see the same: waiting for the writer (behind a
    /// publish commit, ~2.4 ms under load) paces the dispatcher, whose next tick then takes
    /// two publish batches instead of one. On a reader the ticks came twice as often with
    /// half the events each, spending the writer's time on more transactions: herald bench d
    /// measured no better (6,668 deliveries/s, against 7,200-8,700 on the writer that hour).
    async fn next_wake_at(&self) -> StoreResult<Option<i64>> {
        let next: Option<i64> = sqlx::query_scalar(&format!(
            "WITH queued (webhook_id, due, tenant) AS ({QUEUED_WEBHOOKS}) \
             SELECT MIN(at) FROM ( \
               SELECT (SELECT 0 FROM events WHERE status = 'pending' LIMIT 1) AS at \
               UNION ALL SELECT MIN(due) FROM queued \
               UNION ALL SELECT MIN(locked_until) FROM deliveries WHERE state = 'in_flight')"
        ))
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
