//! The operator's notifications on PostgreSQL. Claims take rows with `FOR UPDATE SKIP
//! LOCKED`, so notifiers of several nodes claiming at once take different notifications and
//! never the same one.

use async_trait::async_trait;

use super::PostgresStore;
use crate::domain::ids::NodeId;
use crate::store::StoreResult;
use crate::store::notifications::{
    ClaimedNotification, ClaimedRow, DUE_NOTIFICATIONS, LIST_NOTIFICATIONS, NotificationOutcome,
    NotificationRecord, NotificationStore, RECORD_NOTIFICATION, claimed_in_order, outcome_columns,
};
use crate::store::sql;

#[async_trait]
impl NotificationStore for PostgresStore {
    async fn queue_notification(
        &self,
        id: &str,
        kind: &str,
        body: &str,
        now_ms: i64,
    ) -> StoreResult<()> {
        sqlx::query(sql::QUEUE_NOTIFICATION)
            .bind(id)
            .bind(kind)
            .bind(body)
            .bind(now_ms)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn claim_notifications(
        &self,
        node: &NodeId,
        now_ms: i64,
        lease_ms: i64,
        limit: u32,
    ) -> StoreResult<Vec<ClaimedNotification>> {
        // A row another node is claiming is skipped, not waited for; one it claimed and
        // committed meanwhile is checked again against the lease condition once locked.
        let rows: Vec<ClaimedRow> = sqlx::query_as(&format!(
            "UPDATE notifications SET locked_until = $2, locked_by = $3, updated_at = $1 \
             WHERE id IN ({DUE_NOTIFICATIONS} LIMIT $4 FOR UPDATE SKIP LOCKED) \
             AND state = 'queued' AND (locked_until IS NULL OR locked_until <= $1) \
             RETURNING id, kind, body, attempts, next_attempt_at"
        ))
        .bind(now_ms)
        .bind(now_ms.saturating_add(lease_ms))
        .bind(node.as_str())
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
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
        let written = sqlx::query(RECORD_NOTIFICATION)
            .bind(state)
            .bind(next_attempt_at)
            .bind(error)
            .bind(now_ms)
            .bind(id)
            .bind(node.as_str())
            .execute(&self.pool)
            .await?
            .rows_affected();
        Ok(written == 1)
    }

    async fn list_notifications(&self) -> StoreResult<Vec<NotificationRecord>> {
        Ok(sqlx::query_as(LIST_NOTIFICATIONS)
            .fetch_all(&self.pool)
            .await?)
    }
}
