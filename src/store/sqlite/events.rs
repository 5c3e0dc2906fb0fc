//! Publishing events and the partner's view of them on SQLite.

use std::collections::{HashMap, HashSet};

use async_trait::async_trait;
use uuid::Uuid;

use super::*;

#[async_trait]
impl EventStore for SqliteStore {
    async fn publish_events(&self, events: Vec<NewEvent>) -> StoreResult<Vec<PublishOutcome>> {
        let mut tx = self.write_transaction(Commit::Durable).await?;
        // One instant for the whole commit, never earlier than the last one, so `createdAt`
        // agrees with the newest-first order of lists.
        let created_at: i64 = sqlx::query_scalar(
            "SELECT MAX(?, COALESCE((SELECT created_at FROM events ORDER BY seq DESC LIMIT 1), 0))",
        )
        .bind(now_ms())
        .fetch_one(&mut *tx)
        .await?;
        let mut tenants: Vec<&str> = events.iter().map(|e| e.tenant.as_str()).collect();
        tenants.sort_unstable();
        tenants.dedup();
        let known: HashSet<String> = sqlx::query_scalar::<_, String>(
            "SELECT name FROM tenants WHERE name IN (SELECT value FROM json_each(?))",
        )
        .bind(json_list(&tenants))
        .fetch_all(&mut *tx)
        .await?
        .into_iter()
        .collect();
        let rows: Vec<_> = events
            .iter()
            .filter(|e| known.contains(&e.tenant))
            .map(|e| {
                (
                    e.id.to_string(),
                    &e.tenant,
                    &e.event_id,
                    &e.event_type,
                    &e.payload,
                    &e.user_id,
                    &e.source_service,
                    e.occurred_at_ms,
                )
            })
            .collect();
        // A few statements for the whole batch, in order (so `seq` follows it); a key already
        // stored (or repeated within the batch) inserts nothing and is answered with the
        // stored event below.
        let mut inserted: HashSet<String> = HashSet::with_capacity(rows.len());
        for chunk in chunks(&rows) {
            let mut insert = QueryBuilder::<Sqlite>::new(
                "INSERT INTO events (id, tenant, event_id, event_type, payload, user_id, \
                 source_service, occurred_at, status, created_at) ",
            );
            insert.push_values(chunk, |mut row, event| {
                row.push_bind(event.0.as_str())
                    .push_bind(event.1.as_str())
                    .push_bind(event.2.as_str())
                    .push_bind(event.3.as_str())
                    .push_bind(event.4.as_str())
                    .push_bind(event.5.as_deref())
                    .push_bind(event.6.as_deref())
                    .push_bind(event.7)
                    .push_bind("pending")
                    .push_bind(created_at);
            });
            insert.push(" ON CONFLICT (tenant, event_id) DO NOTHING");
            let stored = insert.build().execute(&mut *tx).await?.rows_affected();
            let ids = chunk.iter().map(|event| event.0.clone());
            if stored as usize == chunk.len() {
                inserted.extend(ids);
            } else {
                // Some were repeats: which of this chunk's new ids made it in. Asking only
                // then (rather than `RETURNING id` always) spares the common case a row per
                // event streamed back from sqlx's worker thread.
                let ids: Vec<String> = ids.collect();
                inserted.extend(
                    sqlx::query_scalar::<_, String>(
                        "SELECT id FROM events WHERE id IN (SELECT value FROM json_each(?))",
                    )
                    .bind(json_list(&ids))
                    .fetch_all(&mut *tx)
                    .await?,
                );
            }
        }
        let repeated: Vec<(&str, &str)> = events
            .iter()
            .filter(|e| known.contains(&e.tenant) && !inserted.contains(&e.id.to_string()))
            .map(|e| (e.tenant.as_str(), e.event_id.as_str()))
            .collect();
        let mut existing = HashMap::new();
        if !repeated.is_empty() {
            let rows: Vec<EventRow> = sqlx::query_as(&format!(
                "SELECT {EVENT_COLUMNS} FROM events WHERE (tenant, event_id) IN \
                 (SELECT j.value ->> '$[0]', j.value ->> '$[1]' FROM json_each(?) AS j)"
            ))
            .bind(json_list(&repeated))
            .fetch_all(&mut *tx)
            .await?;
            for row in rows {
                let event = Event::try_from(row)?;
                existing.insert((event.tenant.clone(), event.event_id.clone()), event);
            }
        }
        tx.commit().await?;
        Ok(publish_outcomes(
            events, &known, &inserted, &existing, created_at,
        ))
    }

    async fn list_events(&self, query: &EventQuery) -> StoreResult<EventPage> {
        // Optional filters are written as `(? IS NULL OR ...)` so one statement (prepared
        // once per connection) serves every combination.
        const FILTER: &str = "tenant = ?1 AND (?2 IS NULL OR status = ?2) \
             AND (?3 IS NULL OR event_type = ?3) AND (?4 IS NULL OR created_at >= ?4) \
             AND (?5 IS NULL OR created_at <= ?5)";
        let total: i64 = sqlx::query_scalar(&format!("SELECT COUNT(*) FROM events WHERE {FILTER}"))
            .bind(&query.tenant)
            .bind(query.status.map(|s| s.as_str()))
            .bind(&query.event_type)
            .bind(query.since_ms)
            .bind(query.until_ms)
            .fetch_one(&self.reader)
            .await?;
        let rows: Vec<(i64, EventRow)> = sqlx::query_as::<_, SeqEventRow>(&format!(
            "SELECT seq, {EVENT_COLUMNS} FROM events WHERE {FILTER} \
             AND (?6 IS NULL OR seq < ?6) ORDER BY seq DESC LIMIT ?7"
        ))
        .bind(&query.tenant)
        .bind(query.status.map(|s| s.as_str()))
        .bind(&query.event_type)
        .bind(query.since_ms)
        .bind(query.until_ms)
        .bind(query.before_cursor)
        .bind(i64::from(query.limit) + 1)
        .fetch_all(&self.reader)
        .await?
        .into_iter()
        .map(|row| (row.seq, row.event))
        .collect();
        // One row more than the page says whether another page follows.
        let mut rows = rows;
        let next_cursor = if rows.len() > query.limit as usize {
            rows.truncate(query.limit as usize);
            rows.last().map(|(seq, _)| *seq)
        } else {
            None
        };
        let events = rows
            .into_iter()
            .map(|(_, row)| Event::try_from(row))
            .collect::<StoreResult<Vec<_>>>()?;
        Ok(EventPage {
            total,
            events,
            next_cursor,
        })
    }

    async fn find_event(&self, tenant: &str, id: &str) -> StoreResult<Option<Event>> {
        // A record id wins over a business id that happens to be equal to it.
        let row: Option<EventRow> = sqlx::query_as(&format!(
            "SELECT {EVENT_COLUMNS} FROM events WHERE tenant = ?1 AND (id = ?2 OR event_id = ?2) \
             ORDER BY id = ?2 DESC LIMIT 1"
        ))
        .bind(tenant)
        .bind(id)
        .fetch_optional(&self.reader)
        .await?;
        row.map(Event::try_from).transpose()
    }

    async fn event_logs(&self, tenant: &str, event: Uuid) -> StoreResult<Vec<DeliveryLog>> {
        let rows: Vec<LogRow> = sqlx::query_as(&format!(
            "{LOG_SELECT} WHERE e.id = ? AND e.tenant = ? ORDER BY a.created_at, a.rowid"
        ))
        .bind(event.to_string())
        .bind(tenant)
        .fetch_all(&self.reader)
        .await?;
        rows.into_iter().map(DeliveryLog::try_from).collect()
    }

    async fn retry_event(
        &self,
        tenant: &str,
        event: Uuid,
        webhook: Option<Uuid>,
    ) -> StoreResult<RetryOutcome> {
        let mut tx = self.write_transaction(Commit::Durable).await?;
        let found: Option<(i64, String)> =
            sqlx::query_as("SELECT seq, event_type FROM events WHERE id = ? AND tenant = ?")
                .bind(event.to_string())
                .bind(tenant)
                .fetch_optional(&mut *tx)
                .await?;
        let Some((event_seq, event_type)) = found else {
            return Err(StoreError::Invalid(format!(
                "event {event} vanished during retry"
            )));
        };
        let webhooks: Vec<WebhookRow> = sqlx::query_as(&format!(
            "SELECT {WEBHOOK_COLUMNS} FROM webhooks WHERE tenant = ? AND (? IS NULL OR id = ?)"
        ))
        .bind(tenant)
        .bind(webhook.map(|id| id.to_string()))
        .bind(webhook.map(|id| id.to_string()))
        .fetch_all(&mut *tx)
        .await?;
        let webhooks: Vec<Webhook> = webhooks
            .into_iter()
            .map(Webhook::try_from)
            .collect::<StoreResult<_>>()?;
        let targets: Vec<&Webhook> = match webhook {
            Some(_) => match webhooks.first() {
                None => return Ok(RetryOutcome::WebhookNotFound),
                Some(w) if !w.is_active => return Ok(RetryOutcome::WebhookInactive),
                Some(w) => vec![w],
            },
            None => webhooks
                .iter()
                .filter(|w| w.is_active && any_pattern_matches(&w.event_types, &event_type))
                .collect(),
        };
        if targets.is_empty() {
            return Ok(RetryOutcome::Queued(0));
        }
        let now = now_ms();
        for target in &targets {
            let webhook_id = target.id.to_string();
            // The new cycle replaces every earlier one of this event and webhook, finished or
            // not, so the event's status reflects each delivery's latest cycle.
            sqlx::query(
                "UPDATE deliveries SET state = 'superseded', locked_until = NULL, \
                 locked_by = NULL, updated_at = ? \
                 WHERE event_seq = ? AND webhook_id = ? AND state <> 'superseded'",
            )
            .bind(now)
            .bind(event_seq)
            .bind(&webhook_id)
            .execute(&mut *tx)
            .await?;
            let last_cycle: i64 = sqlx::query_scalar(
                "SELECT COALESCE(MAX(cycle), 0) FROM deliveries \
                 WHERE event_seq = ? AND webhook_id = ?",
            )
            .bind(event_seq)
            .bind(&webhook_id)
            .fetch_one(&mut *tx)
            .await?;
            sqlx::query(
                "INSERT INTO deliveries (event_seq, webhook_id, cycle, state, next_attempt_at, \
                 created_at, updated_at) VALUES (?, ?, ?, 'queued', ?, ?, ?)",
            )
            .bind(event_seq)
            .bind(&webhook_id)
            .bind(last_cycle + 1)
            .bind(now)
            .bind(now)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        }
        sqlx::query(
            "UPDATE events SET status = 'processing', processed_at = NULL, \
             queued_at = COALESCE(queued_at, ?) WHERE seq = ?",
        )
        .bind(now)
        .bind(event_seq)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(RetryOutcome::Queued(targets.len() as u32))
    }
}
