//! Publishing events and the partner's view of them on PostgreSQL.

use std::collections::{HashMap, HashSet};

use async_trait::async_trait;
use sqlx::{Postgres, Transaction};

use super::PostgresStore;
use crate::domain::ids::{BusinessEventId, EventId, TenantId, WebhookId};
use crate::domain::time::now_ms;
use crate::store::model::Published;
use crate::store::rows::{
    EVENT_COLUMNS, EventRow, KeyedWebhookRow, LOG_SELECT, LogRow, event_page, retry_keys,
};
use crate::store::sql;
use crate::store::{
    DeliveryLog, DirectPublishOutcome, Event, EventPage, EventQuery, EventStore, MAX_EVENT_LOGS,
    NewEvent, PublishFailure, PublishOutcome, RetryOutcome, StoreError, StoreResult,
};

impl PostgresStore {
    /// Stores `events` in one transaction; see [`EventStore::publish_events`].
    async fn store_events(&self, events: &[NewEvent]) -> StoreResult<Published> {
        let created_at = now_ms();
        let (known, inserted) = self.insert_events(events, created_at).await?;
        let known: HashSet<String> = known.into_iter().collect();
        let inserted: HashSet<String> = inserted.into_iter().collect();
        let repeated: Vec<&NewEvent> = events
            .iter()
            .filter(|e| known.contains(e.tenant.as_str()) && !inserted.contains(&e.id.to_string()))
            .collect();
        let existing = if repeated.is_empty() {
            HashMap::new()
        } else {
            self.stored_events(&repeated).await?
        };
        Ok(Published {
            known,
            inserted,
            existing,
            created_at_ms: created_at,
        })
    }

    /// Inserts the events of known tenants whose (tenant, eventId) is new, created at
    /// `created_at`, in one statement; returns the known tenants and the ids inserted.
    async fn insert_events(
        &self,
        events: &[NewEvent],
        created_at: i64,
    ) -> StoreResult<(Vec<String>, Vec<String>)> {
        let tenants: Vec<&str> = events.iter().map(|e| e.tenant.as_str()).collect();
        let column = |f: fn(&NewEvent) -> String| events.iter().map(f).collect::<Vec<_>>();
        // One statement, committed on its own: each statement is a round trip and work for
        // the server, whose CPU is what limits publishing (a transaction of a tenant lookup,
        // the insert and the notification was five). Events of unknown tenants are not
        // stored; a repeated (tenant, eventId) is skipped and looked up after. The
        // notification wakes the dispatchers of every node when the statement commits.
        Ok(sqlx::query_as(
            "WITH known AS (SELECT name FROM tenants WHERE name = ANY($1)), \
             ins AS ( \
               INSERT INTO events (id, tenant, event_id, event_type, payload, user_id, \
                                   source_service, occurred_at, status, created_at) \
               SELECT u.id, u.tenant, u.event_id, u.event_type, u.payload, u.user_id, \
                      u.source_service, u.occurred_at, 'pending', $9 \
               FROM UNNEST($2::text[], $1::text[], $3::text[], $4::text[], $5::text[], \
                           $6::text[], $7::text[], $8::bigint[]) WITH ORDINALITY \
                    AS u(id, tenant, event_id, event_type, payload, user_id, source_service, \
                         occurred_at, n) \
               WHERE u.tenant IN (SELECT name FROM known) \
               ORDER BY u.n \
               ON CONFLICT (tenant, event_id) DO NOTHING RETURNING id), \
             woken AS (SELECT pg_notify($10, '') WHERE EXISTS (SELECT 1 FROM ins)) \
             SELECT ARRAY(SELECT name FROM known), ARRAY(SELECT id FROM ins) \
             FROM (SELECT COUNT(*) FROM woken) AS w",
        )
        .bind(&tenants)
        .bind(column(|e| e.id.to_string()))
        .bind(column(|e| e.event_id.to_string()))
        .bind(column(|e| e.event_type.clone()))
        .bind(column(|e| e.payload.clone()))
        .bind(events.iter().map(|e| e.user_id.clone()).collect::<Vec<_>>())
        .bind(
            events
                .iter()
                .map(|e| e.source_service.clone())
                .collect::<Vec<_>>(),
        )
        .bind(events.iter().map(|e| e.occurred_at_ms).collect::<Vec<_>>())
        .bind(created_at)
        .bind(&self.channel)
        .fetch_one(&self.pool)
        .await?)
    }

    /// The stored events with the (tenant, eventId) of `repeated`, by that name.
    async fn stored_events(
        &self,
        repeated: &[&NewEvent],
    ) -> StoreResult<HashMap<(TenantId, BusinessEventId), Event>> {
        let mut existing = HashMap::new();
        let rows: Vec<EventRow> = sqlx::query_as(&format!(
            "SELECT {EVENT_COLUMNS} FROM events WHERE (tenant, event_id) IN \
             (SELECT * FROM UNNEST($1::text[], $2::text[]))"
        ))
        .bind(
            repeated
                .iter()
                .map(|e| e.tenant.to_string())
                .collect::<Vec<_>>(),
        )
        .bind(
            repeated
                .iter()
                .map(|e| e.event_id.to_string())
                .collect::<Vec<_>>(),
        )
        .fetch_all(&self.pool)
        .await?;
        for row in rows {
            let event = Event::try_from(row)?;
            existing.insert((event.tenant.clone(), event.event_id.clone()), event);
        }
        Ok(existing)
    }
}

/// Opens a new cycle of the (locked) event for each webhook of `targets` (keys): it replaces
/// every earlier one of this event and webhook, finished or not, and the event is
/// processing again.
async fn open_cycles(
    tx: &mut Transaction<'_, Postgres>,
    event_seq: i64,
    targets: &[i64],
    now: i64,
) -> StoreResult<()> {
    sqlx::query(
        "UPDATE deliveries SET state = 'superseded', locked_until = NULL, locked_by = NULL, \
         updated_at = $1 WHERE event_seq = $2 AND webhook_seq = ANY($3) AND state <> 'superseded'",
    )
    .bind(now)
    .bind(event_seq)
    .bind(targets)
    .execute(&mut **tx)
    .await?;
    sqlx::query(
        "INSERT INTO deliveries (event_seq, webhook_seq, cycle, state, next_attempt_at, \
                                 created_at, updated_at) \
         SELECT $1, t.seq, COALESCE((SELECT MAX(cycle) FROM deliveries d \
                                    WHERE d.event_seq = $1 AND d.webhook_seq = t.seq), 0) + 1, \
                'queued', $2, $2, $2 \
         FROM UNNEST($3::bigint[]) AS t(seq)",
    )
    .bind(event_seq)
    .bind(now)
    .bind(targets)
    .execute(&mut **tx)
    .await?;
    sqlx::query(sql::REOPEN_EVENT)
        .bind(now)
        .bind(event_seq)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

#[async_trait]
impl EventStore for PostgresStore {
    async fn publish_events(
        &self,
        events: Vec<NewEvent>,
    ) -> Result<Vec<PublishOutcome>, PublishFailure> {
        match self.store_events(&events).await {
            Ok(published) => Ok(published.outcomes(events)),
            Err(error) => Err(PublishFailure { error, events }),
        }
    }

    async fn list_events(&self, query: &EventQuery) -> StoreResult<EventPage> {
        let (count, page) = sql::list_events::<Postgres>(query);
        let total = count.fetch_one(&self.pool).await?;
        event_page(total, page.fetch_all(&self.pool).await?, query.limit)
    }

    async fn find_event(&self, tenant: &TenantId, id: &str) -> StoreResult<Option<Event>> {
        let row: Option<EventRow> = sqlx::query_as(&format!(
            "SELECT {EVENT_COLUMNS} FROM events WHERE tenant = $1 AND (id = $2 OR event_id = $2) \
             ORDER BY (id = $2) DESC LIMIT 1"
        ))
        .bind(tenant.as_str())
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        row.map(Event::try_from).transpose()
    }

    async fn event_logs(&self, tenant: &TenantId, event: EventId) -> StoreResult<Vec<DeliveryLog>> {
        let rows: Vec<LogRow> = sqlx::query_as(&format!(
            "{LOG_SELECT} WHERE e.id = $1 AND e.tenant = $2 \
             ORDER BY a.created_at DESC, a.id DESC LIMIT $3"
        ))
        .bind(event.to_string())
        .bind(tenant.as_str())
        .bind(i64::from(MAX_EVENT_LOGS))
        .fetch_all(&self.pool)
        .await?;
        // Read newest first to keep the newest; answered oldest first.
        rows.into_iter().rev().map(DeliveryLog::try_from).collect()
    }

    async fn event_position(&self, tenant: &TenantId, event: EventId) -> StoreResult<Option<i64>> {
        Ok(sqlx::query_scalar(sql::EVENT_POSITION)
            .bind(event.to_string())
            .bind(tenant.as_str())
            .fetch_optional(&self.pool)
            .await?)
    }

    async fn retry_event(
        &self,
        tenant: &TenantId,
        event: EventId,
        webhook: Option<WebhookId>,
    ) -> StoreResult<RetryOutcome> {
        let mut tx = self.pool.begin().await?;
        // Key-share locks keep the webhooks from being deleted or switched off (`FOR UPDATE`)
        // until the new cycle is committed (those changes then end it properly). Webhooks are
        // locked before the event, in the order every writer takes them.
        let rows: Vec<KeyedWebhookRow> =
            sqlx::query_as(&format!("{} FOR KEY SHARE", sql::RETRY_WEBHOOKS))
                .bind(tenant.as_str())
                .bind(webhook.map(|id| id.to_string()))
                .fetch_all(&mut *tx)
                .await?;
        let found: Option<(i64, String)> =
            sqlx::query_as(&format!("{} FOR UPDATE", sql::RETRY_EVENT))
                .bind(event.to_string())
                .bind(tenant.as_str())
                .fetch_optional(&mut *tx)
                .await?;
        let Some((event_seq, event_type)) = found else {
            return Err(StoreError::Invalid(format!(
                "event {event} vanished during retry"
            )));
        };
        let targets = match retry_keys(rows, webhook.is_some(), &event_type)? {
            Ok(targets) => targets,
            Err(outcome) => return Ok(outcome),
        };
        open_cycles(&mut tx, event_seq, &targets, now_ms()).await?;
        self.notify_work(&mut tx).await?;
        tx.commit().await?;
        Ok(RetryOutcome::Queued(targets.len() as u32))
    }

    async fn publish_to_webhook(
        &self,
        webhook: WebhookId,
        event: NewEvent,
    ) -> StoreResult<DirectPublishOutcome> {
        self.store_direct(&webhook.to_string(), event).await
    }
}
