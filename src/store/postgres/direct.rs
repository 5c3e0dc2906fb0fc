//! Publishing an event straight to one webhook on PostgreSQL (a partner's test delivery):
//! the event is stored as fan-out would leave it, so the dispatcher only has to claim it.

use super::PostgresStore;
use crate::domain::status::EventStatus;
use crate::domain::time::now_ms;
use crate::store::{DirectPublishOutcome, NewEvent, StoreResult, pending_event, sql};

impl PostgresStore {
    /// See [`crate::store::EventStore::publish_to_webhook`].
    pub(super) async fn store_direct(
        &self,
        webhook: &str,
        event: NewEvent,
    ) -> StoreResult<DirectPublishOutcome> {
        let mut tx = self.pool.begin().await?;
        // A key-share lock, as fan-out takes: a deactivation or deletion (`FOR UPDATE`) waits
        // for this commit, then ends the delivery queued here.
        let found: Option<(i64, bool)> =
            sqlx::query_as(&format!("{} FOR KEY SHARE", sql::WEBHOOK_KEY))
                .bind(event.tenant.as_str())
                .bind(webhook)
                .fetch_optional(&mut *tx)
                .await?;
        let webhook_seq = match found {
            None => return Ok(DirectPublishOutcome::WebhookNotFound),
            Some((_, false)) => return Ok(DirectPublishOutcome::WebhookInactive),
            Some((seq, true)) => seq,
        };
        let now = now_ms();
        sqlx::query(
            "WITH stored AS ( \
               INSERT INTO events (id, tenant, event_id, event_type, payload, user_id, \
                                   source_service, occurred_at, status, created_at, queued_at) \
               VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 'processing', $9, $9) RETURNING seq) \
             INSERT INTO deliveries (event_seq, webhook_seq, cycle, state, next_attempt_at, \
                                     created_at, updated_at) \
             SELECT seq, $10, 1, 'queued', $9, $9, $9 FROM stored",
        )
        .bind(event.id.to_string())
        .bind(event.tenant.as_str())
        .bind(event.event_id.as_str())
        .bind(&event.event_type)
        .bind(&event.payload)
        .bind(&event.user_id)
        .bind(&event.source_service)
        .bind(event.occurred_at_ms)
        .bind(now)
        .bind(webhook_seq)
        .execute(&mut *tx)
        .await?;
        // Wakes the dispatchers of the other nodes; this node's is woken by the caller.
        self.notify_work(&mut tx).await?;
        tx.commit().await?;
        let mut stored = pending_event(event, now);
        stored.status = EventStatus::Processing;
        stored.queued_at_ms = Some(now);
        Ok(DirectPublishOutcome::Queued(Box::new(stored)))
    }
}
