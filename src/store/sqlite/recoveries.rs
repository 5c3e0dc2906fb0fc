//! Recovering a webhook's failed events on SQLite: [`crate::store::recovery`] run in a
//! SQLite transaction.

use async_trait::async_trait;
use sqlx::{Sqlite, Transaction};

use super::{Commit, SqliteStore, json_list};
use crate::domain::ids::{TenantId, WebhookId};
use crate::domain::time::now_ms;
use crate::store::recovery::{
    self, FIRST_CREATED_FROM, RECOVERY_WEBHOOK, RUNNING_RECOVERY, Range, Recovering, RecoveryStep,
    RecoveryValues, RunningRow, SEQ_BOUNDS,
};
use crate::store::{RecoverOutcome, StoreResult, sql};

/// A transaction's work for the webhook `webhook_seq`: a recovery's, and a batch's health
/// writes ([`super::health`]).
pub(super) struct WebhookTx<'a, 't> {
    pub(super) tx: &'a mut Transaction<'t, Sqlite>,
    pub(super) webhook_seq: i64,
}

#[async_trait]
impl Recovering for WebhookTx<'_, '_> {
    async fn seq_bounds(&mut self, tenant: &str) -> StoreResult<Option<(i64, i64)>> {
        let (low, high): (Option<i64>, Option<i64>) = sqlx::query_as(SEQ_BOUNDS)
            .bind(tenant)
            .fetch_one(&mut **self.tx)
            .await?;
        Ok(low.zip(high))
    }

    async fn created_from(&mut self, tenant: &str, seq: i64) -> StoreResult<Option<i64>> {
        Ok(sqlx::query_scalar(FIRST_CREATED_FROM)
            .bind(tenant)
            .bind(seq)
            .fetch_optional(&mut **self.tx)
            .await?)
    }

    async fn failed_between(
        &mut self,
        range: &Range,
        first: i64,
        last: i64,
    ) -> StoreResult<Vec<(i64, i64)>> {
        Ok(
            recovery::failed_between(range, self.webhook_seq, first, last)
                .fetch_all(&mut **self.tx)
                .await?,
        )
    }

    async fn requeue(&mut self, failed: &[(i64, i64)], now: i64) -> StoreResult<u64> {
        if failed.is_empty() {
            return Ok(0);
        }
        let ids = json_list(&failed.iter().map(|(id, _)| *id).collect::<Vec<_>>());
        sqlx::query(
            "INSERT INTO deliveries (event_seq, webhook_seq, cycle, state, next_attempt_at, \
             created_at, updated_at) SELECT event_seq, webhook_seq, cycle + 1, 'queued', $1, $1, \
             $1 FROM deliveries WHERE id IN (SELECT value FROM json_each($2))",
        )
        .bind(now)
        .bind(&ids)
        .execute(&mut **self.tx)
        .await?;
        sqlx::query(
            "UPDATE deliveries SET state = 'superseded', updated_at = $1 \
             WHERE id IN (SELECT value FROM json_each($2))",
        )
        .bind(now)
        .bind(&ids)
        .execute(&mut **self.tx)
        .await?;
        for (_, event_seq) in failed {
            sqlx::query(sql::REOPEN_EVENT)
                .bind(now)
                .bind(event_seq)
                .execute(&mut **self.tx)
                .await?;
        }
        Ok(failed.len() as u64)
    }

    async fn record(&mut self, values: RecoveryValues) -> StoreResult<()> {
        values.query::<Sqlite>().execute(&mut **self.tx).await?;
        Ok(())
    }
}

impl SqliteStore {
    pub(super) async fn recover_webhook_events(
        &self,
        tenant: &TenantId,
        id: WebhookId,
        since_ms: i64,
        until_ms: i64,
    ) -> StoreResult<RecoverOutcome> {
        let mut tx = self.write_transaction(Commit::Durable).await?;
        let webhook: Option<(i64, bool)> = sqlx::query_as(sql::WEBHOOK_KEY)
            .bind(tenant.as_str())
            .bind(id.to_string())
            .fetch_optional(&mut *tx)
            .await?;
        let Some((webhook_seq, is_active)) = webhook else {
            return Ok(RecoverOutcome::WebhookNotFound);
        };
        if !is_active {
            return Ok(RecoverOutcome::WebhookInactive);
        }
        let range = Range {
            tenant: tenant.to_string(),
            since: since_ms,
            until: until_ms,
            ended_since: None,
        };
        let mut recovery = WebhookTx {
            tx: &mut tx,
            webhook_seq,
        };
        let queued = recovery::start(&mut recovery, &id.to_string(), &range, now_ms()).await?;
        tx.commit().await?;
        Ok(RecoverOutcome::Queued(queued))
    }

    pub(super) async fn recovery_step(&self, now: i64) -> StoreResult<RecoveryStep> {
        let mut tx = self.write_transaction(Commit::Durable).await?;
        let running: Option<RunningRow> = sqlx::query_as(RUNNING_RECOVERY)
            .fetch_optional(&mut *tx)
            .await?;
        let Some(job) = running else {
            return Ok(RecoveryStep::default());
        };
        let webhook: Option<(i64, bool)> = sqlx::query_as(RECOVERY_WEBHOOK)
            .bind(&job.webhook_id)
            .fetch_optional(&mut *tx)
            .await?;
        let (webhook_seq, active) = webhook.unwrap_or_default();
        let mut recovery = WebhookTx {
            tx: &mut tx,
            webhook_seq,
        };
        let queued = recovery::step(&mut recovery, &job, active, now).await?;
        tx.commit().await?;
        Ok(RecoveryStep { queued, more: true })
    }
}
