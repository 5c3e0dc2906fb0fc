//! The operator's notifier: drains the notifications outbox that health transitions fill.
//! Each round claims the due notifications under a lease, POSTs each (Standard Webhooks
//! signature with the operator's key, through the delivery sender, so the destination rules
//! and the egress proxy apply as to any partner) and records the outcome; a failed attempt is
//! retried on the delivery schedule. Runs on every node; the lease keeps two nodes from
//! sending the same notification at once.

use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::Wakeup;
use super::sender::{Sender, SentAttempt, unix_seconds};
use crate::config::{Config, OperatorWebhook};
use crate::domain::ids::NodeId;
use crate::domain::outcome::{AttemptResult, Verdict, classify};
use crate::domain::retry::RetryPolicy;
use crate::domain::signature::standard_signature_with;
use crate::domain::time::now_ms;
use crate::store::{ClaimedNotification, NotificationOutcome, Store};

/// Most notifications claimed per round; a full round goes round again at once.
const BATCH: u32 = 16;
/// How often an idle notifier looks at the outbox. Transitions on other nodes, and retries
/// falling due, are only seen this way.
const POLL: Duration = Duration::from_secs(1);
/// Wake-ups closer together than this are merged: they come from the delivery store's work
/// signal, which fires far more often than notifications are queued.
const MIN_GAP: Duration = Duration::from_millis(200);
/// Claims outlive the delivery timeout by this margin, as the dispatcher's do.
const LEASE_MARGIN: Duration = Duration::from_secs(5);
/// How long a graceful shutdown waits for notifications being sent; the rest are sent again
/// (by any node) once their lease runs out.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);
/// The most of a reply's body kept in `last_error`.
const ERROR_BODY_CHARS: usize = 200;

pub(super) struct Notifier {
    store: Arc<dyn Store>,
    sender: Arc<Sender>,
    operator: OperatorWebhook,
    policy: RetryPolicy,
    node: NodeId,
    lease_ms: i64,
    grace: Duration,
    wakeup: Wakeup,
}

impl Notifier {
    pub(super) fn new(
        store: Arc<dyn Store>,
        sender: Arc<Sender>,
        operator: OperatorWebhook,
        config: &Config,
        node: NodeId,
        wakeup: Wakeup,
    ) -> Notifier {
        let lease = config.delivery_timeout.saturating_add(LEASE_MARGIN);
        Notifier {
            store,
            sender,
            operator,
            policy: config.retry_policy(),
            node,
            lease_ms: i64::try_from(lease.as_millis()).unwrap_or(i64::MAX),
            grace: SHUTDOWN_GRACE.min(config.delivery_timeout),
            wakeup,
        }
    }

    pub(super) async fn run(self, shutdown: CancellationToken) {
        let this = Arc::new(self);
        let mut failures = 0u32;
        while !shutdown.is_cancelled() {
            let pause = match this.round(&shutdown).await {
                Ok(more) => {
                    failures = 0;
                    if more {
                        continue;
                    }
                    POLL
                }
                Err(error) => {
                    failures += 1;
                    tracing::warn!(%error, failures, "notifier could not claim notifications");
                    Duration::from_millis(100 * u64::from(failures.min(30)))
                }
            };
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = this.wakeup.woken(), if failures == 0 => {
                    tokio::time::sleep(MIN_GAP).await;
                }
                _ = tokio::time::sleep(pause) => {}
            }
        }
    }

    /// Claims a batch and sends it; true when the batch was full (more may be due).
    async fn round(
        self: &Arc<Self>,
        shutdown: &CancellationToken,
    ) -> crate::store::StoreResult<bool> {
        let claimed = self
            .store
            .claim_notifications(&self.node, now_ms(), self.lease_ms, BATCH)
            .await?;
        let full = claimed.len() == BATCH as usize;
        // Each on a task of its own: a batch sent one by one could outlast its lease.
        let mut sends = JoinSet::new();
        for notification in claimed {
            sends.spawn(self.clone().deliver(notification));
        }
        let all_sent = async { while sends.join_next().await.is_some() {} };
        tokio::pin!(all_sent);
        tokio::select! {
            _ = &mut all_sent => {}
            _ = shutdown.cancelled() => {
                // Dropping the set aborts what is left; its leases run out and it is sent again.
                let _ = tokio::time::timeout(self.grace, all_sent).await;
            }
        }
        Ok(full)
    }

    /// One attempt of one claimed notification, and its outcome recorded.
    async fn deliver(self: Arc<Self>, notification: ClaimedNotification) {
        let timestamp = unix_seconds();
        let signature = standard_signature_with(
            &self.operator.key,
            &notification.id,
            timestamp,
            &notification.body,
        );
        let signed = vec![
            ("webhook-id", notification.id.clone()),
            ("webhook-timestamp", timestamp.to_string()),
            ("webhook-signature", signature),
        ];
        let sent = self
            .sender
            .post(&self.operator.url, &notification.body, signed)
            .await;
        let attempt = notification.attempts.saturating_add(1);
        let outcome = outcome_of(&self.policy, attempt, &sent, now_ms());
        match &outcome {
            NotificationOutcome::Sent => {
                metrics::counter!("herald_operator_notifications_total", "outcome" => "sent")
                    .increment(1);
                tracing::info!(id = %notification.id, kind = %notification.kind, attempt, "operator notification sent");
            }
            NotificationOutcome::RetryAt { error, .. } => {
                metrics::counter!("herald_operator_notification_retries_total").increment(1);
                tracing::warn!(id = %notification.id, kind = %notification.kind, attempt, %error, "operator notification failed; will retry");
            }
            NotificationOutcome::Failed { error } => {
                metrics::counter!("herald_operator_notifications_total", "outcome" => "failed")
                    .increment(1);
                tracing::error!(id = %notification.id, kind = %notification.kind, attempt, %error, "operator notification failed for good");
            }
        }
        match self
            .store
            .record_notification(&self.node, &notification.id, &outcome, now_ms())
            .await
        {
            Ok(true) => {}
            Ok(false) => tracing::warn!(
                id = %notification.id,
                "operator notification's lease was lost before its outcome was recorded"
            ),
            Err(error) => tracing::warn!(
                id = %notification.id,
                %error,
                "could not record an operator notification's outcome; it will be sent again"
            ),
        }
    }
}

/// What attempt `attempt` (1-based), ended at `now_ms`, makes of the notification: the
/// outcome rules and the retry schedule of deliveries.
fn outcome_of(
    policy: &RetryPolicy,
    attempt: u32,
    sent: &SentAttempt,
    now_ms: i64,
) -> NotificationOutcome {
    let retry_after = match classify(&sent.result) {
        Verdict::Succeeded => return NotificationOutcome::Sent,
        Verdict::GiveUp => None,
        Verdict::Retry { retry_after } => {
            let jitter = rand::random_range(-1.0..=1.0);
            policy.next_delay(attempt, jitter, retry_after)
        }
    };
    let error = error_of(sent);
    match retry_after {
        Some(delay) => NotificationOutcome::RetryAt {
            at_ms: now_ms.saturating_add(i64::try_from(delay.as_millis()).unwrap_or(i64::MAX)),
            error,
        },
        None => NotificationOutcome::Failed { error },
    }
}

/// A failed attempt in a line: the sender's message, or the status and the start of the
/// reply.
fn error_of(sent: &SentAttempt) -> String {
    if let Some(message) = &sent.error_message {
        return message.clone();
    }
    match (&sent.result, &sent.response_body) {
        (AttemptResult::Answered { status, .. }, Some(body)) if !body.is_empty() => {
            let start: String = body.chars().take(ERROR_BODY_CHARS).collect();
            format!("HTTP {status}: {start}")
        }
        (AttemptResult::Answered { status, .. }, _) => format!("HTTP {status}"),
        _ => "Attempt failed".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answered(status: u16) -> SentAttempt {
        SentAttempt {
            result: AttemptResult::Answered {
                status,
                retry_after: None,
            },
            request_headers: Vec::new(),
            response_status: Some(status),
            response_body: Some("nope".into()),
            error_message: None,
            duration_ms: Some(1),
        }
    }

    fn policy() -> RetryPolicy {
        RetryPolicy {
            delays: vec![Duration::from_secs(1), Duration::from_secs(5)],
        }
    }

    #[test]
    fn a_2xx_is_sent() {
        assert_eq!(
            outcome_of(&policy(), 1, &answered(204), 0),
            NotificationOutcome::Sent
        );
    }

    #[test]
    fn a_5xx_is_retried_on_the_schedule_until_it_runs_out() {
        match outcome_of(&policy(), 2, &answered(500), 10_000) {
            NotificationOutcome::RetryAt { at_ms, error } => {
                assert!((14_500..=15_500).contains(&at_ms), "{at_ms}");
                assert_eq!(error, "HTTP 500: nope");
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            outcome_of(&policy(), 3, &answered(500), 0),
            NotificationOutcome::Failed { .. }
        ));
    }

    #[test]
    fn a_4xx_and_a_refused_destination_are_final() {
        assert_eq!(
            outcome_of(&policy(), 1, &answered(400), 0),
            NotificationOutcome::Failed {
                error: "HTTP 400: nope".into()
            }
        );
        let refused = SentAttempt {
            result: AttemptResult::Refused,
            request_headers: Vec::new(),
            response_status: None,
            response_body: None,
            error_message: Some("Destination refused".into()),
            duration_ms: None,
        };
        assert_eq!(
            outcome_of(&policy(), 1, &refused, 0),
            NotificationOutcome::Failed {
                error: "Destination refused".into()
            }
        );
    }
}
