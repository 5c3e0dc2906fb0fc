//! Webhook health on SQLite, written with the attempt results that move it.

use sqlx::{FromRow, Sqlite, Transaction};

use super::recoveries::Recovery;
use super::{end_unfinished_deliveries, json_list};
use crate::domain::health::{HealthPolicy, Transition};
use crate::domain::notification::Subject;
use crate::store::health::{apply, attempts_by_webhook, queue_notification, update_health};
use crate::store::recovery::{self, Range};
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
                sqlx::query(sql::DISABLE_WEBHOOK)
                    .bind(now)
                    .bind(&row.id)
                    .execute(&mut **tx)
                    .await?;
                end_unfinished_deliveries(tx, row.seq, now).await?;
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
                    webhook_seq: row.seq,
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
