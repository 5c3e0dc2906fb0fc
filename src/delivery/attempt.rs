//! One attempt: send, classify the outcome, decide where the delivery goes next, and hand
//! the result to the store. Runs as a task of its own, outside any transaction.

use std::sync::Arc;
use std::time::Instant;

use uuid::Uuid;

use super::clock::Clock;
use super::in_flight::Slots;
use super::sender::{Sender, SentAttempt};
use crate::domain::ids::NodeId;
use crate::domain::outcome::{Verdict, classify};
use crate::domain::retry::RetryPolicy;
use crate::domain::status::NextStep;
use crate::store::{AttemptRecord, ClaimedDelivery, Store};

/// What every attempt of this node shares.
#[derive(Clone)]
pub(super) struct Attempts {
    pub(super) store: Arc<dyn Store>,
    pub(super) sender: Arc<Sender>,
    pub(super) policy: RetryPolicy,
    pub(super) node: NodeId,
    pub(super) slots: Slots,
    pub(super) clock: Clock,
}

impl Attempts {
    /// One attempt of a claimed delivery, whose slot [`Slots`] already counts.
    pub(super) fn attempt(
        &self,
        delivery: ClaimedDelivery,
    ) -> impl Future<Output = ()> + Send + 'static {
        let this = self.clone();
        async move {
            let _slot = this.slots.guard(delivery.delivery_id);
            let started_ms = this.clock.now_ms();
            if delivery.attempt_number == 1 && delivery.cycle == 1 {
                metrics::histogram!("herald_delivery_first_attempt_delay_seconds")
                    .record(seconds_between(delivery.event_created_at_ms, started_ms));
            }
            let stopwatch = Instant::now();
            let sent = this.sender.send(&delivery).await;
            let next = next_step(&this.policy, &delivery, &sent, this.clock.now_ms());
            let outcome = match next {
                NextStep::Succeeded => "success",
                NextStep::RetryAt(_) => "retry",
                NextStep::Failed => "failed",
            };
            metrics::counter!("herald_delivery_attempts_total", "outcome" => outcome).increment(1);
            metrics::histogram!("herald_delivery_attempt_duration_seconds")
                .record(stopwatch.elapsed().as_secs_f64());
            if next == NextStep::Succeeded && delivery.cycle == 1 {
                metrics::histogram!("herald_delivery_success_delay_seconds").record(
                    seconds_between(delivery.event_created_at_ms, this.clock.now_ms()),
                );
            }
            let delivery_id = delivery.delivery_id;
            this.store.record_result(AttemptRecord {
                id: Uuid::now_v7(),
                delivery_id,
                event_seq: delivery.event_seq,
                webhook_id: delivery.webhook_id,
                node: this.node.clone(),
                attempt_number: delivery.attempt_number,
                request_url: delivery.url,
                request_headers: headers_json(&sent.request_headers),
                response_status: sent.response_status,
                response_body: sent.response_body,
                error_message: sent.error_message,
                duration_ms: sent.duration_ms,
                created_at_ms: started_ms,
                next,
            });
            this.slots.finish(delivery_id);
        }
    }
}

/// Where the delivery goes after this attempt, ended at `now_ms`, per the outcome rules
/// and the retry policy.
fn next_step(
    policy: &RetryPolicy,
    delivery: &ClaimedDelivery,
    sent: &SentAttempt,
    now_ms: i64,
) -> NextStep {
    match classify(&sent.result) {
        Verdict::Succeeded => NextStep::Succeeded,
        Verdict::GiveUp => NextStep::Failed,
        Verdict::Retry { retry_after } => {
            let jitter = rand::random_range(-1.0..=1.0);
            match policy.next_delay(delivery.attempt_number, jitter, retry_after) {
                Some(delay) => NextStep::RetryAt(
                    now_ms.saturating_add(i64::try_from(delay.as_millis()).unwrap_or(i64::MAX)),
                ),
                None => NextStep::Failed,
            }
        }
    }
}

fn headers_json(headers: &[(&'static str, String)]) -> String {
    let object: serde_json::Map<String, serde_json::Value> = headers
        .iter()
        .map(|(name, value)| (name.to_string(), serde_json::Value::String(value.clone())))
        .collect();
    serde_json::Value::Object(object).to_string()
}

fn seconds_between(from_ms: i64, to_ms: i64) -> f64 {
    to_ms.saturating_sub(from_ms).max(0) as f64 / 1_000.0
}
