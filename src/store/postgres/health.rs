//! Webhook health on PostgreSQL, written with the attempt results that move it. Several
//! nodes may finish attempts of one webhook at once: each batch locks its webhooks' rows
//! (in id order, before any event's) so the counters stay exact and a transition happens in
//! exactly one transaction.

use async_trait::async_trait;
use sqlx::{FromRow, Postgres, Transaction};

use super::end_unfinished_deliveries;
use super::recoveries::WebhookTx;
use crate::domain::health::{Health, HealthPolicy, Transition};
use crate::domain::notification::Subject;
use crate::store::health::{
    HealthWrites, Moving, attempts_by_webhook, move_health, queue_notification, update_health,
};
use crate::store::rows::{HEALTH_COLUMNS, HealthRow, parse_uuid};
use crate::store::{AttemptRecord, StoreResult, sql};

/// A webhook whose health a batch of results moves, locked.
#[derive(FromRow)]
pub(super) struct Locked {
    seq: i64,
    id: String,
    tenant: String,
    url: String,
    #[sqlx(flatten)]
    health: HealthRow,
}

/// Locks the webhooks of a batch of results, in id order. `NO KEY UPDATE` leaves them to
/// fan-outs and retries, which hold `KEY SHARE` locks on them meanwhile; whatever switches a
/// webhook off takes `FOR UPDATE`, which waits for those.
pub(super) async fn lock_webhooks(
    tx: &mut Transaction<'_, Postgres>,
    records: &[AttemptRecord],
) -> StoreResult<Vec<Locked>> {
    let mut ids: Vec<String> = records.iter().map(|r| r.webhook_id.to_string()).collect();
    ids.sort_unstable();
    ids.dedup();
    Ok(sqlx::query_as(&format!(
        "SELECT seq, id, tenant, url, {HEALTH_COLUMNS} FROM webhooks WHERE id = ANY($1) \
         ORDER BY id FOR NO KEY UPDATE"
    ))
    .bind(ids)
    .fetch_all(&mut **tx)
    .await?)
}

/// Applies a batch's attempts to their (locked) webhooks' health, and the transitions'
/// effects: a disabled webhook is switched off and its unfinished deliveries end failed, and
/// the operator's notifications and a recovered webhook's catch-up are queued.
pub(super) async fn apply_health(
    tx: &mut Transaction<'_, Postgres>,
    locked: Vec<Locked>,
    records: &[AttemptRecord],
    policy: &HealthPolicy,
    now: i64,
) -> StoreResult<()> {
    let by_webhook = attempts_by_webhook(records);
    for row in locked {
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
        update_health::<Postgres>(health, webhook_id.to_string())
            .execute(&mut **self.tx)
            .await?;
        Ok(())
    }

    async fn switch_off(&mut self, webhook_id: &str, now: i64) -> StoreResult<()> {
        // Waits for fan-outs holding the webhook, so that the deliveries they queue are there
        // to be ended.
        sqlx::query("SELECT id FROM webhooks WHERE id = $1 FOR UPDATE")
            .bind(webhook_id)
            .execute(&mut **self.tx)
            .await?;
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
        queue_notification::<Postgres>(transition, subject, at_ms, now)
            .execute(&mut **self.tx)
            .await?;
        Ok(())
    }
}
