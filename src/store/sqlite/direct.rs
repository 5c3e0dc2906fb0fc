//! Publishing an event straight to one webhook on SQLite (a partner's test delivery): the
//! event is stored as fan-out would leave it, so the dispatcher only has to claim it.

use sqlx::{Sqlite, Transaction};

use super::event_keys::{event_key, event_number};
use super::{Commit, SqliteStore};
use crate::domain::status::EventStatus;
use crate::domain::time::now_ms;
use crate::store::{DirectPublishOutcome, NewEvent, StoreResult, pending_event, sql};

impl SqliteStore {
    /// See [`crate::store::EventStore::publish_to_webhook`].
    pub(super) async fn store_direct(
        &self,
        webhook: &str,
        event: NewEvent,
    ) -> StoreResult<DirectPublishOutcome> {
        let mut tx = self.write_transaction(Commit::Durable).await?;
        let found: Option<(i64, bool)> = sqlx::query_as(sql::WEBHOOK_KEY)
            .bind(event.tenant.as_str())
            .bind(webhook)
            .fetch_optional(&mut *tx)
            .await?;
        let webhook_seq = match found {
            None => return Ok(DirectPublishOutcome::WebhookNotFound),
            Some((_, false)) => return Ok(DirectPublishOutcome::WebhookInactive),
            Some((seq, true)) => seq,
        };
        // Never earlier than the last event stored, as in a publish, so `createdAt` agrees
        // with the newest-first order of lists.
        let now: i64 = sqlx::query_scalar(
            "SELECT MAX(?, COALESCE((SELECT created_at FROM events ORDER BY seq DESC LIMIT 1), 0))",
        )
        .bind(now_ms())
        .fetch_one(&mut *tx)
        .await?;
        insert_direct(&mut tx, &event, webhook_seq, now).await?;
        tx.commit().await?;
        let mut stored = pending_event(event, now);
        stored.status = EventStatus::Processing;
        stored.queued_at_ms = Some(now);
        Ok(DirectPublishOutcome::Queued(Box::new(stored)))
    }
}

/// Stores `event` (`processing`, created and queued at `now`) and its one delivery, to the
/// webhook `webhook_seq`, due now.
async fn insert_direct(
    tx: &mut Transaction<'_, Sqlite>,
    event: &NewEvent,
    webhook_seq: i64,
    now: i64,
) -> StoreResult<()> {
    // The business id is not noted in the writer's memory of recent keys: lookups scan
    // the rows after what it knows, and the next publish reads them in (see
    // `event_keys`), as for an event another process stored.
    let event_seq: i64 = sqlx::query_scalar(
        "INSERT INTO events (id, tenant, event_id, event_key, event_type, payload, user_id, \
         source_service, occurred_at, status, created_at, queued_at) \
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 'processing', ?, ?) RETURNING seq",
    )
    .bind(event.id.to_string())
    .bind(event.tenant.as_str())
    .bind(event.event_id.as_str())
    .bind(event_key(event_number(event.event_id.as_str())))
    .bind(&event.event_type)
    .bind(&event.payload)
    .bind(&event.user_id)
    .bind(&event.source_service)
    .bind(event.occurred_at_ms)
    .bind(now)
    .bind(now)
    .fetch_one(&mut **tx)
    .await?;
    sqlx::query(
        "INSERT INTO deliveries (event_seq, webhook_seq, cycle, state, next_attempt_at, \
         created_at, updated_at) VALUES (?, ?, 1, 'queued', ?, ?, ?)",
    )
    .bind(event_seq)
    .bind(webhook_seq)
    .bind(now)
    .bind(now)
    .bind(now)
    .execute(&mut **tx)
    .await?;
    Ok(())
}
