//! Recovering a webhook's failed events on SQLite: the statements of
//! [`crate::store::recovery`] that name a webhook by its `seq`.

use async_trait::async_trait;
use sqlx::{Sqlite, Transaction};

use super::{Commit, SqliteStore, json_list};
use crate::domain::ids::{TenantId, WebhookId};
use crate::domain::time::now_ms;
use crate::store::recovery::{
    self, FIRST_CREATED_FROM, RUNNING_RECOVERY, Range, Recovering, RecoveryStep, RecoveryValues,
    RunningRow, SEQ_BOUNDS,
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
        Ok(sqlx::query_as(
            "SELECT d.id, d.event_seq FROM deliveries d JOIN events e ON e.seq = d.event_seq \
             WHERE d.event_seq BETWEEN $1 AND $2 AND d.webhook_seq = $3 AND d.state = 'failed' \
             AND e.tenant = $4 AND e.created_at >= $5 AND e.created_at < $6 \
             AND ($7 IS NULL OR d.updated_at >= $7)",
        )
        .bind(first)
        .bind(last)
        .bind(self.webhook_seq)
        .bind(&range.tenant)
        .bind(range.since)
        .bind(range.until)
        .bind(range.ended_since)
        .fetch_all(&mut **self.tx)
        .await?)
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
        let webhook: Option<(i64, bool)> =
            sqlx::query_as("SELECT seq, is_active FROM webhooks WHERE tenant = $1 AND id = $2")
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
        let webhook: Option<i64> =
            sqlx::query_scalar("SELECT seq FROM webhooks WHERE id = $1 AND is_active")
                .bind(&job.webhook_id)
                .fetch_optional(&mut *tx)
                .await?;
        let mut recovery = WebhookTx {
            tx: &mut tx,
            webhook_seq: webhook.unwrap_or_default(),
        };
        let queued = recovery::step(&mut recovery, &job, webhook.is_some(), now).await?;
        tx.commit().await?;
        Ok(RecoveryStep { queued, more: true })
    }
}
