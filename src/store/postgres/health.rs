//! Webhook health on PostgreSQL, written with the attempt results that move it. Several
//! nodes may finish attempts of one webhook at once: each batch locks its webhooks' rows
//! (in id order, before any event's) so the counters stay exact and a transition happens in
//! exactly one transaction.

use sqlx::{FromRow, Postgres, Transaction};

use super::end_unfinished_deliveries;
use super::recoveries::Recovery;
use crate::domain::health::{HealthPolicy, Transition};
use crate::domain::notification::Subject;
use crate::store::health::{apply, attempts_by_webhook, queue_notification, update_health};
use crate::store::recovery::{self, Range};
use crate::store::rows::{HEALTH_COLUMNS, HealthRow, parse_uuid};
use crate::store::{AttemptRecord, StoreResult, sql};

/// A webhook whose health a batch of results moves, locked.
#[derive(FromRow)]
pub(super) struct Locked {
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
        "SELECT id, tenant, url, {HEALTH_COLUMNS} FROM webhooks WHERE id = ANY($1) \
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
        let id = parse_uuid(&row.id)?;
        let Some(attempts) = by_webhook.get(&id) else {
            continue;
        };
        let applied = apply(row.health.try_into()?, attempts, policy);
        update_health(&applied.health, row.id.clone())
            .execute(&mut **tx)
            .await?;
        let subject = Subject {
            tenant: &row.tenant,
            webhook_id: id,
            url: &row.url,
            consecutive_failures: applied.health.consecutive_failures,
            failing_since_ms: applied.health.failing_since_ms,
        };
        for (transition, at) in &applied.transitions {
            if let Transition::Disabled { .. } = transition {
                // Waits for fan-outs holding the webhook, so that the deliveries they queue
                // are there to be ended.
                sqlx::query("SELECT id FROM webhooks WHERE id = $1 FOR UPDATE")
                    .bind(&row.id)
                    .execute(&mut **tx)
                    .await?;
                sqlx::query(sql::DISABLE_WEBHOOK)
                    .bind(now)
                    .bind(&row.id)
                    .execute(&mut **tx)
                    .await?;
                end_unfinished_deliveries(tx, &row.id, now).await?;
            }
            if let Transition::Recovered {
                streak_since_ms, ..
            } = transition
                && let Some((since, until)) = policy.catch_up(*streak_since_ms, *at)
            {
                let range = Range {
                    tenant: row.tenant.clone(),
                    since,
                    until,
                    ended_since: Some(*streak_since_ms),
                };
                let mut recovery = Recovery {
                    tx: &mut *tx,
                    webhook_id: &row.id,
                };
                recovery::queue(&mut recovery, &row.id, &range, now).await?;
                metrics::counter!("herald_recoveries_started_total", "trigger" => "catch_up")
                    .increment(1);
            }
            if policy.notify_operator {
                queue_notification(transition, &subject, *at, now)
                    .execute(&mut **tx)
                    .await?;
            }
        }
    }
    Ok(())
}
