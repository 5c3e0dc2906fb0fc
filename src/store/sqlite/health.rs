//! Webhook health on SQLite, written with the attempt results that move it.

use async_trait::async_trait;
use sqlx::{FromRow, Sqlite, Transaction};

use super::recoveries::WebhookTx;
use super::{end_unfinished_deliveries, json_list};
use crate::domain::health::{Health, HealthPolicy, Transition};
use crate::domain::notification::Subject;
use crate::store::health::{
    HealthWrites, Moving, attempts_by_webhook, move_health, queue_notification, update_health,
};
use crate::store::rows::{HEALTH_COLUMNS, HealthRow, parse_uuid};
use crate::store::{AttemptRecord, StoreResult, sql};

#[derive(FromRow)]
struct SubjectRow {
    seq: i64,
    id: String,
    tenant: String,
    url: String,
    #[sqlx(flatten)]
    health: HealthRow,
}

/// Applies a batch's attempts to their webhooks' health, and the transitions' effects: a
/// disabled webhook is switched off and its unfinished deliveries end failed, and the
/// operator's notifications and a recovered webhook's catch-up are queued.
pub(super) async fn apply_health(
    tx: &mut Transaction<'_, Sqlite>,
    records: &[AttemptRecord],
    policy: &HealthPolicy,
    now: i64,
) -> StoreResult<()> {
    let by_webhook = attempts_by_webhook(records);
    let ids: Vec<String> = by_webhook.keys().map(|id| id.to_string()).collect();
    let rows: Vec<SubjectRow> = sqlx::query_as(&format!(
        "SELECT seq, id, tenant, url, {HEALTH_COLUMNS} FROM webhooks \
         WHERE id IN (SELECT value FROM json_each(?))"
    ))
    .bind(json_list(&ids))
    .fetch_all(&mut **tx)
    .await?;
    for row in rows {
        let Some(attempts) = by_webhook.get(&parse_uuid(&row.id)?) else {
            continue;
        };
        let mut writes = WebhookTx {
            tx: &mut *tx,
            webhook_seq: row.seq,
        };
        let webhook = Moving {
            id: row.id,
            tenant: row.tenant,
            url: row.url,
            health: row.health,
        };
        move_health(&mut writes, webhook, attempts, policy, now).await?;
    }
    Ok(())
}

#[async_trait]
impl HealthWrites for WebhookTx<'_, '_> {
    async fn write_health(&mut self, webhook_id: &str, health: &Health) -> StoreResult<()> {
        update_health::<Sqlite>(health, webhook_id.to_string())
            .execute(&mut **self.tx)
            .await?;
        Ok(())
    }

    async fn switch_off(&mut self, webhook_id: &str, now: i64) -> StoreResult<()> {
        sqlx::query(sql::DISABLE_WEBHOOK)
            .bind(now)
            .bind(webhook_id)
            .execute(&mut **self.tx)
            .await?;
        end_unfinished_deliveries(self.tx, self.webhook_seq, now).await
    }

    async fn notify(
        &mut self,
        transition: &Transition,
        subject: &Subject<'_>,
        at_ms: i64,
        now: i64,
    ) -> StoreResult<()> {
        queue_notification::<Sqlite>(transition, subject, at_ms, now)
            .execute(&mut **self.tx)
            .await?;
        Ok(())
    }
}
