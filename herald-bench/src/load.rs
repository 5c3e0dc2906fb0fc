//! Load generation and its arithmetic: closed-loop workers (N connections, each sending its
//! next request when the previous one is answered), an open-loop pacer (a fixed rate, however
//! slowly answers come), request bodies, and percentiles. Nothing here knows a scenario.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures_util::future::BoxFuture;
use serde::Serialize;
use tokio::task::JoinSet;
use uuid::Uuid;

/// One request of a load: resolves to how many events (or requests) it got accepted.
pub type Call = Arc<dyn Fn(u64) -> BoxFuture<'static, anyhow::Result<u64>> + Send + Sync>;

/// Whether workers may send now (the end-to-end scenarios hold publishers back while too
/// many deliveries are outstanding).
pub type Gate = Arc<dyn Fn() -> bool + Send + Sync>;

/// Counters the progress line reads while a load runs.
#[derive(Default)]
pub struct Counters {
    pub accepted: AtomicU64,
    pub errors: AtomicU64,
}

/// What a load did.
#[derive(Debug, Default)]
pub struct LoadResult {
    /// Calls answered as expected.
    pub calls: u64,
    /// Events (or requests) accepted by those calls.
    pub accepted: u64,
    pub errors: u64,
    /// The first error's text, to show when something is wrong.
    pub first_error: Option<String>,
    /// Duration of each successful call, in microseconds.
    pub latencies_us: Vec<u32>,
    pub started: Option<Instant>,
    /// From the first call sent to the last answer.
    pub elapsed: Duration,
    /// In an open loop, the most a call started after its scheduled instant: when the
    /// benchmark itself falls behind, the rate it offered was lower than asked.
    pub latest_start: Duration,
}

impl LoadResult {
    /// Accepted per second of `elapsed`.
    pub fn rate(&self) -> f64 {
        per_second(self.accepted, self.elapsed)
    }

    fn merge(&mut self, other: LoadResult) {
        self.calls += other.calls;
        self.accepted += other.accepted;
        self.errors += other.errors;
        if self.first_error.is_none() {
            self.first_error = other.first_error;
        }
        self.latencies_us.extend(other.latencies_us);
        self.latest_start = self.latest_start.max(other.latest_start);
    }
}

/// `count` per second of `elapsed` (0 when nothing elapsed).
pub fn per_second(count: u64, elapsed: Duration) -> f64 {
    if elapsed.is_zero() {
        0.0
    } else {
        count as f64 / elapsed.as_secs_f64()
    }
}

/// When a closed loop stops.
#[derive(Debug, Clone, Copy)]
pub enum Until {
    /// No call starts after this long.
    Elapsed(Duration),
    /// This many calls in all, over every connection, unless `within` passes first.
    Calls { calls: u64, within: Duration },
}

impl Until {
    fn time_limit(self) -> Duration {
        match self {
            Until::Elapsed(limit) | Until::Calls { within: limit, .. } => limit,
        }
    }
}

/// `connections` workers call `call` back to back until `until`; while `gate` says no, they
/// wait.
pub async fn closed_loop(
    connections: usize,
    until: Until,
    call: Call,
    gate: Option<Gate>,
    counters: Arc<Counters>,
) -> LoadResult {
    let started = Instant::now();
    let claimed = Arc::new(AtomicU64::new(0));
    let mut workers = JoinSet::new();
    for _ in 0..connections {
        let (call, gate, counters, claimed) = (
            call.clone(),
            gate.clone(),
            counters.clone(),
            claimed.clone(),
        );
        workers.spawn(async move {
            let mut result = LoadResult::default();
            loop {
                if started.elapsed() >= until.time_limit() {
                    break;
                }
                if let Some(gate) = &gate {
                    if !gate() {
                        tokio::time::sleep(Duration::from_millis(1)).await;
                        continue;
                    }
                }
                let sequence = claimed.fetch_add(1, Ordering::Relaxed);
                if let Until::Calls { calls, .. } = until {
                    if sequence >= calls {
                        break;
                    }
                }
                let sent = Instant::now();
                record(&mut result, &counters, sent, call(sequence).await);
            }
            result
        });
    }
    finish(started, LoadResult::default(), workers).await
}

/// Sends `rate_per_s` calls per second for `duration`, each on its own task, whether or not
/// earlier calls were answered (so a slow answer cannot lower the offered rate). A call made
/// while others are unanswered takes another keep-alive connection of the client's pool, so a
/// slow answer does not hold the next request back either.
pub async fn open_loop(
    rate_per_s: u64,
    duration: Duration,
    call: Call,
    counters: Arc<Counters>,
) -> LoadResult {
    let started = Instant::now();
    let count = (rate_per_s as f64 * duration.as_secs_f64()).round() as u64;
    let mut calls = JoinSet::new();
    let mut total = LoadResult::default();
    for sequence in 0..count {
        let due = started + Duration::from_secs_f64(sequence as f64 / rate_per_s as f64);
        tokio::time::sleep_until(due.into()).await;
        let call = call.clone();
        let counters = counters.clone();
        calls.spawn(async move {
            let sent = Instant::now();
            let mut result = LoadResult {
                latest_start: sent.saturating_duration_since(due),
                ..LoadResult::default()
            };
            record(&mut result, &counters, sent, call(sequence).await);
            result
        });
        while let Some(done) = calls.try_join_next() {
            if let Ok(result) = done {
                total.merge(result);
            }
        }
    }
    finish(started, total, calls).await
}

fn record(
    result: &mut LoadResult,
    counters: &Counters,
    sent: Instant,
    outcome: anyhow::Result<u64>,
) {
    match outcome {
        Ok(accepted) => {
            result.calls += 1;
            result.accepted += accepted;
            counters.accepted.fetch_add(accepted, Ordering::Relaxed);
            let micros = sent.elapsed().as_micros().min(u128::from(u32::MAX)) as u32;
            result.latencies_us.push(micros);
        }
        Err(error) => {
            result.errors += 1;
            counters.errors.fetch_add(1, Ordering::Relaxed);
            if result.first_error.is_none() {
                result.first_error = Some(format!("{error:#}"));
            }
        }
    }
}

async fn finish(
    started: Instant,
    mut total: LoadResult,
    mut tasks: JoinSet<LoadResult>,
) -> LoadResult {
    total.started = Some(started);
    while let Some(done) = tasks.join_next().await {
        if let Ok(result) = done {
            total.merge(result);
        }
    }
    total.elapsed = started.elapsed();
    total
}

/// p50, p99 and the maximum of a set of durations, in milliseconds.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Percentiles {
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    pub samples: usize,
}

impl Percentiles {
    /// Nearest-rank percentiles of `micros` (sorted here); `None` when empty.
    pub fn of_micros(mut micros: Vec<u32>) -> Option<Percentiles> {
        if micros.is_empty() {
            return None;
        }
        micros.sort_unstable();
        let rank = |p: f64| {
            let index = ((p * micros.len() as f64).ceil() as usize).clamp(1, micros.len()) - 1;
            f64::from(micros[index]) / 1_000.0
        };
        Some(Percentiles {
            p50_ms: rank(0.50),
            p99_ms: rank(0.99),
            max_ms: rank(1.0),
            samples: micros.len(),
        })
    }
}

/// The event type every benchmark event has.
pub const EVENT_TYPE: &str = "bench.delivery.sent";

/// A publish body (`POST /v1/events` or a batch item) with a known `eventId`; the payload is
/// about the size of a small real notification.
pub fn event_json(tenant: &str, event_id: Uuid, sequence: u64) -> String {
    format!(
        r#"{{"tenant":"{tenant}","eventType":"{EVENT_TYPE}","eventId":"{event_id}","payload":{{"sequence":{sequence},"status":"approved","customer":"cus_{sequence:012}","amount":1250,"currency":"EUR","note":"benchmark event"}}}}"#
    )
}

/// A batch body of `size` events whose ids `new_id` makes.
pub fn batch_json_with(
    tenant: &str,
    size: usize,
    first_sequence: u64,
    new_id: fn() -> Uuid,
) -> String {
    let mut body = String::with_capacity(size * 260 + 16);
    body.push_str(r#"{"events":["#);
    for i in 0..size {
        if i > 0 {
            body.push(',');
        }
        body.push_str(&event_json(tenant, new_id(), first_sequence + i as u64));
    }
    body.push_str("]}");
    body
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_use_the_nearest_rank() {
        let micros: Vec<u32> = (1..=100).map(|n| n * 1_000).collect();
        let p = Percentiles::of_micros(micros).unwrap();
        assert_eq!(p.p50_ms, 50.0);
        assert_eq!(p.p99_ms, 99.0);
        assert_eq!(p.max_ms, 100.0);
        assert_eq!(p.samples, 100);
        assert!(Percentiles::of_micros(Vec::new()).is_none());
    }

    #[test]
    fn event_bodies_are_valid_publish_requests() {
        let body: serde_json::Value =
            serde_json::from_str(&batch_json_with("acme", 3, 7, Uuid::new_v4)).expect("valid JSON");
        let events = body["events"].as_array().unwrap();
        assert_eq!(events.len(), 3);
        let validated =
            herald::domain::event::validate_new_event(&events[0], 0).expect("a valid event");
        assert_eq!(validated.event_type, EVENT_TYPE);
    }
}
