//! Webhooks and their delivery logs on SQLite.

use async_trait::async_trait;

use super::{Commit, SqliteStore, end_unfinished_deliveries};
use crate::domain::health::{Health, HealthState};
use crate::domain::ids::{TenantId, WebhookId};
use crate::domain::time::now_ms;
use crate::store::health::update_health;
use crate::store::rows::{KeyedWebhookRow, LOG_SELECT, LogRow, WEBHOOK_COLUMNS, WebhookRow};
use crate::store::sql;
use crate::store::{
    DeliveryLog, NewWebhook, RecoverOutcome, StoreResult, Webhook, WebhookChange, WebhookStore,
};

#[async_trait]
impl WebhookStore for SqliteStore {
    async fn list_webhooks(&self, tenant: &TenantId) -> StoreResult<Vec<Webhook>> {
        let rows: Vec<WebhookRow> = sqlx::query_as(sql::LIST_WEBHOOKS)
            .bind(tenant.as_str())
            .fetch_all(&self.reader)
            .await?;
        rows.into_iter().map(Webhook::try_from).collect()
    }

    async fn find_webhook(&self, tenant: &TenantId, id: WebhookId) -> StoreResult<Option<Webhook>> {
        let row: Option<WebhookRow> = sqlx::query_as(sql::FIND_WEBHOOK)
            .bind(tenant.as_str())
            .bind(id.to_string())
            .fetch_optional(&self.reader)
            .await?;
        row.map(Webhook::try_from).transpose()
    }

    async fn create_webhook(
        &self,
        webhook: NewWebhook,
        max_per_tenant: u32,
    ) -> StoreResult<Option<Webhook>> {
        // The count and the insert share the single writer, so two concurrent creates cannot
        // both slip under the cap.
        let mut tx = self.write_transaction(Commit::Durable).await?;
        let count: i64 = sqlx::query_scalar(sql::COUNT_WEBHOOKS)
            .bind(webhook.tenant.as_str())
            .fetch_one(&mut *tx)
            .await?;
        if count >= i64::from(max_per_tenant) {
            return Ok(None);
        }
        let now = now_ms();
        let event_types = serde_json::to_string(&webhook.event_types).unwrap_or_default();
        sqlx::query(sql::INSERT_WEBHOOK)
            .bind(webhook.id.to_string())
            .bind(webhook.tenant.as_str())
            .bind(&webhook.name)
            .bind(&webhook.url)
            .bind(webhook.api_key.expose())
            .bind(&event_types)
            .bind(webhook.is_active)
            .bind(&webhook.metadata)
            .bind(now)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(Some(Webhook {
            id: webhook.id,
            tenant: webhook.tenant,
            name: webhook.name,
            url: webhook.url,
            api_key: webhook.api_key,
            event_types: webhook.event_types,
            is_active: webhook.is_active,
            metadata: webhook.metadata,
            created_at_ms: now,
            updated_at_ms: now,
            health: Health::default(),
        }))
    }

    async fn change_webhook(
        &self,
        tenant: &TenantId,
        id: WebhookId,
        change: WebhookChange,
    ) -> StoreResult<Option<Webhook>> {
        let mut tx = self.write_transaction(Commit::Durable).await?;
        let row: Option<KeyedWebhookRow> = sqlx::query_as(&format!(
            "SELECT seq, {WEBHOOK_COLUMNS} FROM webhooks WHERE tenant = ? AND id = ?"
        ))
        .bind(tenant.as_str())
        .bind(id.to_string())
        .fetch_optional(&mut *tx)
        .await?;
        let Some(row) = row else { return Ok(None) };
        let (seq, mut webhook) = row.decode()?;
        let was_active = webhook.is_active;
        webhook.apply(change);
        let reenabled =
            !was_active && webhook.is_active && webhook.health.state == HealthState::Disabled;
        if reenabled {
            webhook.health.reenabled();
            update_health::<_>(&webhook.health, id.to_string())
                .execute(&mut *tx)
                .await?;
        }
        // Deactivating ends the webhook's unfinished deliveries, as deleting does: no
        // further attempts, and their events still reach a final status.
        if was_active && !webhook.is_active {
            end_unfinished_deliveries(&mut tx, seq, now_ms()).await?;
        }
        // Strictly later than before, even within one millisecond: clients compare it.
        webhook.updated_at_ms = now_ms().max(webhook.updated_at_ms + 1);
        sqlx::query(sql::UPDATE_WEBHOOK)
            .bind(&webhook.name)
            .bind(&webhook.url)
            .bind(webhook.api_key.expose())
            .bind(serde_json::to_string(&webhook.event_types).unwrap_or_default())
            .bind(webhook.is_active)
            .bind(&webhook.metadata)
            .bind(webhook.updated_at_ms)
            .bind(id.to_string())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(Some(webhook))
    }

    async fn delete_webhook(&self, tenant: &TenantId, id: WebhookId) -> StoreResult<bool> {
        let id = id.to_string();
        let mut tx = self.write_transaction(Commit::Durable).await?;
        let deleted: Option<i64> =
            sqlx::query_scalar("DELETE FROM webhooks WHERE tenant = ? AND id = ? RETURNING seq")
                .bind(tenant.as_str())
                .bind(&id)
                .fetch_optional(&mut *tx)
                .await?;
        let Some(seq) = deleted else {
            return Ok(false);
        };
        end_unfinished_deliveries(&mut tx, seq, now_ms()).await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn recover_webhook(
        &self,
        tenant: &TenantId,
        id: WebhookId,
        since_ms: i64,
        until_ms: i64,
    ) -> StoreResult<RecoverOutcome> {
        self.recover_webhook_events(tenant, id, since_ms, until_ms)
            .await
    }

    async fn webhook_logs(
        &self,
        tenant: &TenantId,
        id: WebhookId,
        limit: u32,
    ) -> StoreResult<Vec<DeliveryLog>> {
        let rows: Vec<LogRow> = sqlx::query_as(&format!(
            "{LOG_SELECT} WHERE a.webhook_id = ? AND e.tenant = ? \
             ORDER BY a.created_at DESC, a.rowid DESC LIMIT ?"
        ))
        .bind(id.to_string())
        .bind(tenant.as_str())
        .bind(i64::from(limit))
        .fetch_all(&self.reader)
        .await?;
        rows.into_iter().map(DeliveryLog::try_from).collect()
    }
}
