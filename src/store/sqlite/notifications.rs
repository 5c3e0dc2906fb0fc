//! The operator's notifications on SQLite. Writes go through the single writer like every
//! other; a claim first looks on a reader, so a notifier polling an empty outbox never takes
//! the writer from the dispatcher.

use async_trait::async_trait;

use super::{Commit, SqliteStore};
use crate::domain::ids::NodeId;
use crate::store::StoreResult;
use crate::store::notifications::{
    ClaimedNotification, ClaimedRow, DUE_NOTIFICATIONS, LIST_NOTIFICATIONS, NotificationOutcome,
    NotificationRecord, NotificationStore, RECORD_NOTIFICATION, claimed_in_order, outcome_columns,
};
use crate::store::sql;

#[async_trait]
impl NotificationStore for SqliteStore {
    async fn queue_notification(
        &self,
        id: &str,
        kind: &str,
        body: &str,
        now_ms: i64,
    ) -> StoreResult<()> {
        let mut tx = self.write_transaction(Commit::Durable).await?;
        sqlx::query(sql::QUEUE_NOTIFICATION)
            .bind(id)
            .bind(kind)
            .bind(body)
            .bind(now_ms)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn claim_notifications(
        &self,
        node: &NodeId,
        now_ms: i64,
        lease_ms: i64,
        limit: u32,
    ) -> StoreResult<Vec<ClaimedNotification>> {
        let due: Option<String> = sqlx::query_scalar(&format!("{DUE_NOTIFICATIONS} LIMIT 1"))
            .bind(now_ms)
            .fetch_optional(&self.reader)
            .await?;
        if due.is_none() {
            return Ok(Vec::new());
        }
        // Relaxed: a claim lost to a power cut only means the notification is claimed again.
        let mut tx = self.write_transaction(Commit::Relaxed).await?;
        let rows: Vec<ClaimedRow> = sqlx::query_as(&format!(
            "UPDATE notifications SET locked_until = $2, locked_by = $3, updated_at = $1 \
             WHERE id IN ({DUE_NOTIFICATIONS} LIMIT $4) \
             RETURNING id, kind, body, attempts, next_attempt_at"
        ))
        .bind(now_ms)
        .bind(now_ms.saturating_add(lease_ms))
        .bind(node.as_str())
        .bind(i64::from(limit))
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(claimed_in_order(rows))
    }

    async fn record_notification(
        &self,
        node: &NodeId,
        id: &str,
        outcome: &NotificationOutcome,
        now_ms: i64,
    ) -> StoreResult<bool> {
        let (state, next_attempt_at, error) = outcome_columns(outcome);
        // Relaxed: an outcome lost to a power cut means one more attempt, at least once.
        let mut tx = self.write_transaction(Commit::Relaxed).await?;
        let written = sqlx::query(RECORD_NOTIFICATION)
            .bind(state)
            .bind(next_attempt_at)
            .bind(error)
            .bind(now_ms)
            .bind(id)
            .bind(node.as_str())
            .execute(&mut *tx)
            .await?
            .rows_affected();
        tx.commit().await?;
        Ok(written == 1)
    }

    async fn list_notifications(&self) -> StoreResult<Vec<NotificationRecord>> {
        Ok(sqlx::query_as(LIST_NOTIFICATIONS)
            .fetch_all(&self.reader)
            .await?)
    }
}
