//! Recovering a webhook's failed events on PostgreSQL: [`crate::store::recovery`] run in a
//! PostgreSQL transaction, re-queuing after locking the events. A running
//! recovery's row is locked by the node stepping it (`SKIP LOCKED`), so nodes share
//! recoveries without taking the same window twice; its webhook is held with `KEY SHARE`,
//! as a retry holds it.

use async_trait::async_trait;
use sqlx::{Postgres, Transaction};

use super::{PostgresStore, lock_events};
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
    pub(super) tx: &'a mut Transaction<'t, Postgres>,
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
        let mut seqs: Vec<i64> = failed.iter().map(|(_, seq)| *seq).collect();
        seqs.sort_unstable();
        seqs.dedup();
        lock_events(self.tx, &seqs).await?;
        let ids: Vec<i64> = failed.iter().map(|(id, _)| *id).collect();
        // Only those still failed once the events are locked: a retry may have come first.
        let superseded: Vec<i64> = sqlx::query_scalar(
            "UPDATE deliveries SET state = 'superseded', updated_at = $1 \
             WHERE id = ANY($2) AND state = 'failed' RETURNING id",
        )
        .bind(now)
        .bind(&ids)
        .fetch_all(&mut **self.tx)
        .await?;
        sqlx::query(
            "INSERT INTO deliveries (event_seq, webhook_seq, cycle, state, next_attempt_at, \
             created_at, updated_at) SELECT event_seq, webhook_seq, cycle + 1, 'queued', $1, $1, \
             $1 FROM deliveries WHERE id = ANY($2)",
        )
        .bind(now)
        .bind(&superseded)
        .execute(&mut **self.tx)
        .await?;
        sqlx::query(
            "UPDATE events SET status = 'processing', processed_at = NULL, \
             queued_at = COALESCE(queued_at, $1) WHERE seq = ANY($2)",
        )
        .bind(now)
        .bind(&seqs)
        .execute(&mut **self.tx)
        .await?;
        Ok(superseded.len() as u64)
    }

    async fn record(&mut self, values: RecoveryValues) -> StoreResult<()> {
        values.query::<Postgres>().execute(&mut **self.tx).await?;
        Ok(())
    }
}

impl PostgresStore {
    pub(super) async fn recover_webhook_events(
        &self,
        tenant: &TenantId,
        id: WebhookId,
        since_ms: i64,
        until_ms: i64,
    ) -> StoreResult<RecoverOutcome> {
        let mut tx = self.pool.begin().await?;
        let webhook_id = id.to_string();
        let webhook: Option<(i64, bool)> =
            sqlx::query_as(&format!("{} FOR KEY SHARE", sql::WEBHOOK_KEY))
                .bind(tenant.as_str())
                .bind(&webhook_id)
                .fetch_optional(&mut *tx)
                .await?;
        let webhook_seq = match webhook {
            None => return Ok(RecoverOutcome::WebhookNotFound),
            Some((_, false)) => return Ok(RecoverOutcome::WebhookInactive),
            Some((seq, true)) => seq,
        };
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
        let queued = recovery::start(&mut recovery, &webhook_id, &range, now_ms()).await?;
        if queued > 0 {
            self.notify_work(&mut tx).await?;
        }
        tx.commit().await?;
        Ok(RecoverOutcome::Queued(queued))
    }

    pub(super) async fn recovery_step(&self, now: i64) -> StoreResult<RecoveryStep> {
        let mut tx = self.pool.begin().await?;
        let running: Option<RunningRow> =
            sqlx::query_as(&format!("{RUNNING_RECOVERY} FOR UPDATE SKIP LOCKED"))
                .fetch_optional(&mut *tx)
                .await?;
        let Some(job) = running else {
            return Ok(RecoveryStep::default());
        };
        let webhook: Option<(i64, bool)> =
            sqlx::query_as(&format!("{RECOVERY_WEBHOOK} FOR KEY SHARE"))
                .bind(&job.webhook_id)
                .fetch_optional(&mut *tx)
                .await?;
        let (webhook_seq, active) = webhook.unwrap_or_default();
        let mut recovery = WebhookTx {
            tx: &mut tx,
            webhook_seq,
        };
        let queued = recovery::step(&mut recovery, &job, active, now).await?;
        if queued > 0 {
            self.notify_work(&mut tx).await?;
        }
        tx.commit().await?;
        Ok(RecoveryStep { queued, more: true })
    }
}
