//! The dispatcher: each tick fans out pending events, records the attempts finished since
//! the last tick and claims due deliveries (one store transaction), then sends every claimed
//! delivery as its own task. Limits per webhook, per tenant and per node keep a slow
//! endpoint (or a tenant with many) from holding up the others. It sleeps until woken (new work, a finished attempt) or until the
//! next delivery falls due: no busy polling.
//!
//! Where the store asks for it (`DeliveryStore::records_with_claims`), results are written
//! by the next tick rather than by the recorder: a finished attempt wakes the dispatcher
//! anyway (its slot is free), so one transaction does what took two.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{Notify, mpsc};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::sender::{Sender, SentAttempt};
use super::{RECORD_BATCH, RECORD_TRIES, Wakeup};
use crate::config::Config;
use crate::domain::outcome::{Verdict, classify};
use crate::domain::retry::RetryPolicy;
use crate::domain::time::now_ms;
use crate::store::{AttemptRecord, ClaimRequest, ClaimedDelivery, NextStep, Store};

/// Most pending events fanned out per tick.
const BATCH: usize = 500;
/// Most deliveries claimed per tick. The claim reads a few times this many due deliveries,
/// so a smaller batch keeps each tick (and the writer it holds) short; a full batch makes the
/// dispatcher go round again at once (measured with herald bench d: 500 -> 128 per tick,
/// 2.3 -> 0.5 ms per claim).
const CLAIM_BATCH: usize = 128;
/// Claims outlive the delivery timeout by this margin (the contract allows at most 10 s).
const LEASE_MARGIN: Duration = Duration::from_secs(5);
/// The longest the dispatcher sleeps without looking at the store.
const MAX_IDLE: Duration = Duration::from_secs(5);
/// How long a graceful shutdown waits for attempts in flight before releasing them.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// Attempts in flight on this node: per webhook, per tenant, and which deliveries.
#[derive(Default)]
struct InFlight {
    per_webhook: HashMap<Uuid, usize>,
    per_tenant: HashMap<String, usize>,
    deliveries: HashMap<i64, (Uuid, String)>,
}

impl InFlight {
    fn start(&mut self, delivery: &ClaimedDelivery) {
        *self.per_webhook.entry(delivery.webhook_id).or_insert(0) += 1;
        match self.per_tenant.get_mut(&delivery.tenant) {
            Some(count) => *count += 1,
            None => {
                self.per_tenant.insert(delivery.tenant.clone(), 1);
            }
        }
        self.deliveries.insert(
            delivery.delivery_id,
            (delivery.webhook_id, delivery.tenant.clone()),
        );
    }

    fn finish(&mut self, delivery_id: i64) {
        if let Some((webhook, tenant)) = self.deliveries.remove(&delivery_id) {
            if let Some(count) = self.per_webhook.get_mut(&webhook) {
                *count -= 1;
                if *count == 0 {
                    self.per_webhook.remove(&webhook);
                }
            }
            if let Some(count) = self.per_tenant.get_mut(&tenant) {
                *count -= 1;
                if *count == 0 {
                    self.per_tenant.remove(&tenant);
                }
            }
        }
    }
}

/// Frees an attempt's slot if its task panics, so a bug in one attempt cannot shrink the
/// node's capacity for good. A task cancelled at shutdown keeps its slot: the drain releases
/// what is still in flight.
struct SlotGuard {
    in_flight: Arc<Mutex<InFlight>>,
    attempt_done: Arc<Notify>,
    delivery_id: i64,
}

impl Drop for SlotGuard {
    fn drop(&mut self) {
        if std::thread::panicking() {
            tracing::error!(
                delivery_id = self.delivery_id,
                "an attempt panicked; its delivery is attempted again when its lease runs out"
            );
            self.in_flight
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .finish(self.delivery_id);
            self.attempt_done.notify_one();
        }
    }
}

pub struct Dispatcher {
    store: Arc<dyn Store>,
    config: Arc<Config>,
    policy: RetryPolicy,
    sender: Arc<Sender>,
    /// Each attempt task sends its result here.
    results: mpsc::UnboundedSender<AttemptRecord>,
    /// The results, when this dispatcher records them (else the recorder has them).
    finished: Option<mpsc::UnboundedReceiver<AttemptRecord>>,
    wakeup: Wakeup,
    node: String,
    in_flight: Arc<Mutex<InFlight>>,
    /// An attempt finished: its slot is free and its result waits to be recorded.
    attempt_done: Arc<Notify>,
}

impl Dispatcher {
    pub fn new(
        store: Arc<dyn Store>,
        config: Arc<Config>,
        sender: Arc<Sender>,
        results: mpsc::UnboundedSender<AttemptRecord>,
        finished: Option<mpsc::UnboundedReceiver<AttemptRecord>>,
        wakeup: Wakeup,
        node: String,
    ) -> Dispatcher {
        Dispatcher {
            policy: config.retry_policy(),
            store,
            config,
            sender,
            results,
            finished,
            wakeup,
            node,
            in_flight: Default::default(),
            attempt_done: Default::default(),
        }
    }

    pub async fn run(mut self, shutdown: CancellationToken) {
        let mut sends = JoinSet::new();
        let lease_ms = i64::try_from(
            self.config
                .delivery_timeout
                .saturating_add(LEASE_MARGIN)
                .as_millis(),
        )
        .unwrap_or(i64::MAX);
        let mut failures = 0u32;
        // Results not yet recorded: received, or kept from a tick that failed.
        let mut finished = Vec::new();
        while !shutdown.is_cancelled() {
            while sends.try_join_next().is_some() {}
            let (free, busy, busy_tenants) = {
                let in_flight = self.in_flight.lock().unwrap_or_else(|e| e.into_inner());
                let free =
                    (self.config.max_in_flight as usize).saturating_sub(in_flight.deliveries.len());
                (
                    free,
                    in_flight.per_webhook.clone(),
                    in_flight.per_tenant.clone(),
                )
            };
            metrics::gauge!("herald_deliveries_in_flight_node")
                .set((self.config.max_in_flight as usize - free) as f64);
            self.receive_results(&mut finished);
            let request = ClaimRequest {
                node: self.node.clone(),
                now_ms: now_ms(),
                lease_ms,
                fan_out_limit: BATCH,
                limit: free.min(CLAIM_BATCH),
                per_webhook_limit: self.config.max_in_flight_per_webhook as usize,
                in_flight: busy,
                per_tenant_limit: self.config.max_in_flight_per_tenant as usize,
                in_flight_per_tenant: busy_tenants,
                finished: std::mem::take(&mut finished),
            };
            let work = match self.store.claim_work(&request).await {
                Ok(work) => {
                    failures = 0;
                    work
                }
                Err(error) => {
                    failures += 1;
                    tracing::warn!(%error, failures, "dispatcher could not claim work");
                    finished = request.finished;
                    if failures % RECORD_TRIES == 0 && !finished.is_empty() {
                        tracing::error!(
                            count = finished.len(),
                            "dropping attempt results after repeated failures"
                        );
                        finished.clear();
                    }
                    let pause = Duration::from_millis(100 * u64::from(failures.min(30)));
                    tokio::select! {
                        _ = shutdown.cancelled() => break,
                        _ = tokio::time::sleep(pause) => continue,
                    }
                }
            };
            let claimed = work.deliveries.len();
            for delivery in work.deliveries {
                self.in_flight
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .start(&delivery);
                sends.spawn(self.attempt(delivery));
            }
            if work.fanned_out == BATCH || (claimed == request.limit && claimed > 0) {
                // More is probably waiting: go round again, letting the sends start first.
                tokio::task::yield_now().await;
                continue;
            }
            let idle = self.idle_time(free > claimed, request.now_ms).await;
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = self.wakeup.woken() => {}
                _ = self.attempt_done.notified() => {}
                _ = tokio::time::sleep(idle) => {}
            }
        }
        self.drain(sends, finished).await;
    }

    /// Moves the results that arrived since the last tick into `finished`, up to a batch.
    fn receive_results(&mut self, finished: &mut Vec<AttemptRecord>) {
        let Some(queue) = self.finished.as_mut() else {
            return;
        };
        while finished.len() < RECORD_BATCH {
            match queue.try_recv() {
                Ok(record) => finished.push(record),
                Err(_) => break,
            }
        }
    }

    /// How long to sleep when the claim at `claimed_at` took everything it could.
    async fn idle_time(&self, has_free_slots: bool, claimed_at: i64) -> Duration {
        if !has_free_slots {
            return MAX_IDLE;
        }
        match self.store.next_wake_at().await {
            Ok(next) => sleep_until_due(next, claimed_at, now_ms()),
            Err(error) => {
                tracing::warn!(%error, "dispatcher could not read the next due time");
                Duration::from_secs(1)
            }
        }
    }

    /// One attempt: send, classify, schedule, hand the result to the recorder.
    fn attempt(&self, delivery: ClaimedDelivery) -> impl Future<Output = ()> + Send + 'static {
        let sender = self.sender.clone();
        let policy = self.policy.clone();
        let results = self.results.clone();
        let node = self.node.clone();
        let in_flight = self.in_flight.clone();
        let attempt_done = self.attempt_done.clone();
        async move {
            let _slot = SlotGuard {
                in_flight: in_flight.clone(),
                attempt_done: attempt_done.clone(),
                delivery_id: delivery.delivery_id,
            };
            let started_ms = now_ms();
            if delivery.attempt_number == 1 && delivery.cycle == 1 {
                metrics::histogram!("herald_delivery_first_attempt_delay_seconds")
                    .record(seconds_between(delivery.event_created_at_ms, started_ms));
            }
            let clock = Instant::now();
            let sent = sender.send(&delivery).await;
            let next = next_step(&policy, &delivery, &sent);
            let outcome = match next {
                NextStep::Succeeded => "success",
                NextStep::RetryAt(_) => "retry",
                NextStep::Failed => "failed",
            };
            metrics::counter!("herald_delivery_attempts_total", "outcome" => outcome).increment(1);
            metrics::histogram!("herald_delivery_attempt_duration_seconds")
                .record(clock.elapsed().as_secs_f64());
            if next == NextStep::Succeeded && delivery.cycle == 1 {
                metrics::histogram!("herald_delivery_success_delay_seconds")
                    .record(seconds_between(delivery.event_created_at_ms, now_ms()));
            }
            let record = AttemptRecord {
                id: Uuid::now_v7(),
                delivery_id: delivery.delivery_id,
                event_seq: delivery.event_seq,
                webhook_id: delivery.webhook_id,
                node,
                attempt_number: delivery.attempt_number,
                request_url: delivery.url,
                request_headers: headers_json(&sent.request_headers),
                response_status: sent.response_status,
                response_body: sent.response_body,
                error_message: sent.error_message,
                duration_ms: sent.duration_ms,
                created_at_ms: started_ms,
                next,
            };
            let _ = results.send(record);
            in_flight
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .finish(delivery.delivery_id);
            attempt_done.notify_one();
        }
    }

    /// Graceful shutdown: attempts in flight may finish within the grace period and are
    /// recorded; the rest are cancelled and their deliveries released untried, for the next
    /// run or another node.
    async fn drain(mut self, mut sends: JoinSet<()>, mut finished: Vec<AttemptRecord>) {
        let deadline =
            tokio::time::Instant::now() + SHUTDOWN_GRACE.min(self.config.delivery_timeout);
        while !sends.is_empty() {
            match tokio::time::timeout_at(deadline, sends.join_next()).await {
                Ok(_) => {}
                Err(_) => {
                    sends.abort_all();
                    while sends.join_next().await.is_some() {}
                }
            }
        }
        if let Some(queue) = self.finished.as_mut() {
            while let Ok(record) = queue.try_recv() {
                finished.push(record);
            }
        }
        if !finished.is_empty() {
            if let Err(error) = self.store.record_attempts(&finished).await {
                tracing::warn!(%error, count = finished.len(), "could not record attempt results at shutdown; their leases will expire");
            }
        }
        let unfinished: Vec<i64> = {
            let in_flight = self.in_flight.lock().unwrap_or_else(|e| e.into_inner());
            in_flight.deliveries.keys().copied().collect()
        };
        if !unfinished.is_empty() {
            match self.store.release_deliveries(&self.node, &unfinished).await {
                Ok(()) => tracing::info!(
                    released = unfinished.len(),
                    "released deliveries in flight at shutdown"
                ),
                Err(error) => {
                    tracing::warn!(%error, "could not release deliveries; their leases will expire")
                }
            }
        }
    }
}

/// How long to sleep after a claim at `claimed_at` that took everything it could, when the
/// next work falls due at `next`. Work due at the claim that it did not take belongs to
/// webhooks at their limit: a finished attempt will wake the dispatcher, so a second is a
/// safety net. Work that fell due since (a retry the claim recorded, say) is taken at once;
/// treating it as the first kind delayed every retry by up to a second (herald bench g).
fn sleep_until_due(next: Option<i64>, claimed_at: i64, now: i64) -> Duration {
    match next {
        Some(at) if at <= claimed_at => Duration::from_secs(1),
        Some(at) => Duration::from_millis(at.saturating_sub(now).max(0) as u64).min(MAX_IDLE),
        None => MAX_IDLE,
    }
}

/// Where the delivery goes after this attempt, per the outcome rules and the retry policy.
fn next_step(policy: &RetryPolicy, delivery: &ClaimedDelivery, sent: &SentAttempt) -> NextStep {
    match classify(&sent.result) {
        Verdict::Succeeded => NextStep::Succeeded,
        Verdict::GiveUp => NextStep::Failed,
        Verdict::Retry { retry_after } => {
            let jitter = rand::random_range(-1.0..=1.0);
            match policy.next_delay(delivery.attempt_number, jitter, retry_after) {
                Some(delay) => NextStep::RetryAt(
                    now_ms().saturating_add(i64::try_from(delay.as_millis()).unwrap_or(i64::MAX)),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn work_due_since_the_claim_is_taken_at_once() {
        // A retry recorded by the claim at 1,000 fell due at 1,004; it is now 1,010.
        assert_eq!(sleep_until_due(Some(1_004), 1_000, 1_010), Duration::ZERO);
    }

    #[test]
    fn work_the_claim_left_waits_for_a_free_slot() {
        assert_eq!(
            sleep_until_due(Some(990), 1_000, 1_010),
            Duration::from_secs(1)
        );
        assert_eq!(
            sleep_until_due(Some(1_000), 1_000, 1_010),
            Duration::from_secs(1)
        );
    }

    #[test]
    fn later_work_is_slept_for_up_to_the_idle_cap() {
        assert_eq!(
            sleep_until_due(Some(1_250), 1_000, 1_010),
            Duration::from_millis(240)
        );
        assert_eq!(sleep_until_due(Some(60_000), 1_000, 1_010), MAX_IDLE);
        assert_eq!(sleep_until_due(None, 1_000, 1_010), MAX_IDLE);
    }
}
