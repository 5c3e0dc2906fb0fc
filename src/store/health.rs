//! Webhook health as the store keeps it: what a batch of attempt results tells each webhook,
//! and the statement that writes a webhook's health, bound the same way on both backends.
//! The rule itself is [`crate::domain::health`]; the transitions' effects (disable, notify,
//! catch up) run in the transaction that writes the results.

use std::collections::BTreeMap;

use async_trait::async_trait;
use sqlx::query::Query;
use sqlx::{Database, Encode, Type};
use uuid::Uuid;

use super::recovery::{self, Range, Recovering};
use super::rows::{HealthRow, parse_uuid};
use super::{AttemptRecord, StoreResult, sql};
use crate::domain::health::{FinishedAttempt, Health, HealthPolicy, Transition};
use crate::domain::notification::{self, Subject};
use crate::domain::status::NextStep;

/// Each webhook's attempts in a batch of results, in the order they started; webhooks in id
/// order, which is the order PostgreSQL locks their rows in.
pub(super) fn attempts_by_webhook(
    records: &[AttemptRecord],
) -> BTreeMap<Uuid, Vec<FinishedAttempt>> {
    let mut by_webhook: BTreeMap<Uuid, Vec<FinishedAttempt>> = BTreeMap::new();
    for record in records {
        by_webhook
            .entry(record.webhook_id.as_uuid())
            .or_default()
            .push(FinishedAttempt {
                at_ms: record.created_at_ms,
                succeeded: matches!(record.next, NextStep::Succeeded),
                response_status: record.response_status.map(i64::from),
            });
    }
    for attempts in by_webhook.values_mut() {
        attempts.sort_by_key(|a| a.at_ms);
    }
    by_webhook
}

/// A webhook's health after a batch, and what changed on the way.
pub(super) struct Applied {
    pub(super) health: Health,
    /// Each transition with the instant of the attempt that caused it.
    pub(super) transitions: Vec<(Transition, i64)>,
}

/// Applies a webhook's attempts, in order, to its stored health.
fn apply(mut health: Health, attempts: &[FinishedAttempt], policy: &HealthPolicy) -> Applied {
    let mut transitions = Vec::new();
    for attempt in attempts {
        for transition in health.apply(*attempt, policy) {
            transitions.push((transition, attempt.at_ms));
        }
    }
    Applied {
        health,
        transitions,
    }
}

/// A webhook a batch of results moves, as a backend read it.
pub(super) struct Moving {
    pub(super) id: String,
    pub(super) tenant: String,
    pub(super) url: String,
    pub(super) health: HealthRow,
}

/// The writes of a batch's health step that differ between backends, for one webhook in one
/// transaction (a recovery's too: a recovered webhook's catch-up is queued from here).
#[async_trait]
pub(super) trait HealthWrites: Recovering {
    /// Writes the webhook's health ([`update_health`]).
    async fn write_health(&mut self, webhook_id: &str, health: &Health) -> StoreResult<()>;
    /// Switches the webhook off and ends its unfinished deliveries as failed.
    async fn switch_off(&mut self, webhook_id: &str, now: i64) -> StoreResult<()>;
    /// Queues the operator's notification of a transition ([`queue_notification`]).
    async fn notify(
        &mut self,
        transition: &Transition,
        subject: &Subject<'_>,
        at_ms: i64,
        now: i64,
    ) -> StoreResult<()>;
}

/// Applies a webhook's attempts of a batch to its health and carries out the transitions: a
/// disabled webhook is switched off, a recovered one's catch-up is queued, and the operator
/// is told of each (when an operator webhook is set).
pub(super) async fn move_health(
    tx: &mut impl HealthWrites,
    webhook: Moving,
    attempts: &[FinishedAttempt],
    policy: &HealthPolicy,
    now: i64,
) -> StoreResult<()> {
    let applied = apply(webhook.health.try_into()?, attempts, policy);
    tx.write_health(&webhook.id, &applied.health).await?;
    let subject = Subject {
        tenant: &webhook.tenant,
        webhook_id: parse_uuid(&webhook.id)?,
        url: &webhook.url,
        consecutive_failures: applied.health.consecutive_failures,
        failing_since_ms: applied.health.failing_since_ms,
    };
    for (transition, at) in &applied.transitions {
        if let Transition::Disabled { .. } = transition {
            tx.switch_off(&webhook.id, now).await?;
        }
        if let Transition::Recovered {
            streak_since_ms, ..
        } = transition
            && let Some((since, until)) = policy.catch_up(*streak_since_ms, *at)
        {
            let range = Range {
                tenant: webhook.tenant.clone(),
                since,
                until,
                ended_since: Some(*streak_since_ms),
            };
            recovery::queue(tx, &webhook.id, &range, now).await?;
            metrics::counter!("herald_recoveries_started_total", "trigger" => "catch_up")
                .increment(1);
        }
        if policy.notify_operator {
            tx.notify(transition, &subject, *at, now).await?;
        }
    }
    Ok(())
}

/// [`sql::UPDATE_HEALTH`] with its values bound.
pub(super) fn update_health<'q, DB>(
    health: &'q Health,
    webhook_id: String,
) -> Query<'q, DB, <DB as Database>::Arguments<'q>>
where
    DB: Database,
    &'q str: Encode<'q, DB> + Type<DB>,
    i64: Encode<'q, DB> + Type<DB>,
    Option<i64>: Encode<'q, DB> + Type<DB>,
    Option<&'q str>: Encode<'q, DB> + Type<DB>,
    String: Encode<'q, DB> + Type<DB>,
{
    sqlx::query::<DB>(sql::UPDATE_HEALTH)
        .bind(health.state.as_str())
        .bind(health.consecutive_failures)
        .bind(health.failing_since_ms)
        .bind(health.last_attempt_at_ms)
        .bind(health.last_success_at_ms)
        .bind(health.last_failure_at_ms)
        .bind(health.last_response_status)
        .bind(health.disabled_at_ms)
        .bind(health.disabled_reason.as_deref())
        .bind(webhook_id)
}

/// [`sql::QUEUE_NOTIFICATION`] with the notification of `transition` bound.
pub(super) fn queue_notification<'q, DB>(
    transition: &Transition,
    subject: &Subject<'_>,
    at_ms: i64,
    now_ms: i64,
) -> Query<'q, DB, <DB as Database>::Arguments<'q>>
where
    DB: Database,
    &'q str: Encode<'q, DB> + Type<DB>,
    i64: Encode<'q, DB> + Type<DB>,
    String: Encode<'q, DB> + Type<DB>,
{
    sqlx::query::<DB>(sql::QUEUE_NOTIFICATION)
        .bind(Uuid::now_v7().to_string())
        .bind(transition.kind())
        .bind(notification::render(transition, subject, at_ms))
        .bind(now_ms)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::health::HealthState;

    fn record(webhook: u128, at: i64, next: NextStep, status: Option<u16>) -> AttemptRecord {
        AttemptRecord {
            id: Uuid::now_v7(),
            delivery_id: at,
            event_seq: 1,
            webhook_id: Uuid::from_u128(webhook).into(),
            node: "n".into(),
            attempt_number: 1,
            request_url: "https://example.com/".into(),
            request_headers: "{}".into(),
            response_status: status,
            response_body: None,
            error_message: None,
            duration_ms: Some(1),
            created_at_ms: at,
            next,
        }
    }

    #[test]
    fn a_batch_is_applied_per_webhook_in_the_order_attempts_started() {
        let records = [
            record(2, 30, NextStep::Succeeded, Some(200)),
            record(1, 20, NextStep::Failed, Some(500)),
            record(2, 10, NextStep::Failed, Some(500)),
            record(1, 10, NextStep::Failed, Some(500)),
        ];
        let by_webhook = attempts_by_webhook(&records);
        let ids: Vec<u128> = by_webhook.keys().map(|id| id.as_u128()).collect();
        assert_eq!(ids, [1, 2]);
        let policy = HealthPolicy {
            failing_after: 1,
            ..HealthPolicy::default()
        };
        let second = apply(Health::default(), &by_webhook[&Uuid::from_u128(2)], &policy);
        // Failed first (failing), then succeeded (recovered).
        let kinds: Vec<&str> = second.transitions.iter().map(|(t, _)| t.kind()).collect();
        assert_eq!(kinds, ["webhook.failing", "webhook.recovered"]);
        assert_eq!(second.health.state, HealthState::Healthy);
        let first = apply(Health::default(), &by_webhook[&Uuid::from_u128(1)], &policy);
        assert_eq!(first.health.consecutive_failures, 2);
        assert_eq!(first.transitions.len(), 1);
    }
}
