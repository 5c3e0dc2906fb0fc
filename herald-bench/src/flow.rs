//! One end-to-end measurement: publish events (N closed-loop connections, or a fixed rate),
//! wait until the receiver has every delivery, then work out deliveries per second from the
//! first publish to the last delivery and the first-attempt latencies (publish request sent
//! to delivery received, as a producer would see it). It measures; the scenarios decide what
//! the figures mean.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use serde_json::{Map, Value, json};

use crate::app::{HeraldApi, Tenant};
use crate::calls::{SendLog, publish_single};
use crate::load::{
    Counters, Gate, LoadResult, Percentiles, Until, closed_loop, open_loop, per_second,
};
use crate::progress::Progress;
use crate::receiver::Receiver;

/// How events are published.
#[derive(Debug, Clone, Copy)]
pub enum Publishing {
    /// `connections` publishers, each publishing its next event once the last is answered.
    Closed { connections: usize },
    /// A fixed rate, whatever the answers do.
    Steady { rate_per_s: u64 },
}

#[derive(Debug, Clone, Copy)]
pub struct FlowOptions {
    pub publishing: Publishing,
    pub duration: Duration,
    /// Deliveries each event makes on the watched paths (the number of healthy webhooks).
    pub deliveries_per_event: u64,
    /// Publishers hold off while more deliveries than this are outstanding, so a backlog
    /// cannot outgrow the run and the drain stays short.
    pub max_backlog: u64,
    /// The longest to wait for outstanding deliveries once publishing stops.
    pub drain_within: Duration,
}

/// What one measurement found.
#[derive(Debug)]
pub struct Flow {
    pub load: LoadResult,
    /// Events acknowledged.
    pub published: u64,
    /// Deliveries expected on the watched paths.
    pub expected: u64,
    /// Distinct (path, event) answered 200.
    pub delivered: u64,
    /// Requests received on the watched paths.
    pub attempts: u64,
    /// Requests answered 200 beyond the first for the same (path, event).
    pub duplicates: u64,
    /// From the first publish sent to the last successful delivery received.
    pub elapsed: Duration,
    /// From the last publish answered to the last successful delivery received: how far
    /// delivery lagged behind ingest when publishing stopped.
    pub drain_after_last_ack: Duration,
    pub drained: bool,
    /// From each event's publish request sent to its first attempt received. A healthy
    /// receiver's events have one attempt each, and a retry always follows the attempt it
    /// repeats, so the earliest request with an event's id is its attempt number 1.
    pub first_attempt: Option<Percentiles>,
}

impl Flow {
    /// Deliveries per second from the first publish to the last delivery.
    pub fn rate(&self) -> f64 {
        per_second(self.delivered, self.elapsed)
    }

    /// The figures every delivery scenario reports.
    pub fn figures(&self) -> Map<String, Value> {
        let mut figures = Map::new();
        figures.insert("published".into(), json!(self.published));
        figures.insert("expected_deliveries".into(), json!(self.expected));
        figures.insert("delivered".into(), json!(self.delivered));
        figures.insert("attempts".into(), json!(self.attempts));
        figures.insert("duplicates".into(), json!(self.duplicates));
        figures.insert("publish_errors".into(), json!(self.load.errors));
        figures.insert(
            "publish_rate_per_s".into(),
            json!(round(self.load.rate(), 1)),
        );
        figures.insert(
            "first_publish_to_last_delivery_s".into(),
            json!(round(self.elapsed.as_secs_f64(), 3)),
        );
        figures.insert(
            "last_ack_to_last_delivery_ms".into(),
            json!(round(self.drain_after_last_ack.as_secs_f64() * 1_000.0, 1)),
        );
        figures.insert("drained".into(), json!(self.drained));
        figures
    }

    /// The most an open loop's publish started after its scheduled instant, in ms.
    pub fn latest_send_after_schedule_ms(&self) -> f64 {
        self.load.latest_start.as_secs_f64() * 1_000.0
    }

    /// A note when the benchmark fell behind its own schedule by more than a millisecond, so
    /// that it offered less than the rate it claims.
    pub fn behind_schedule_note(&self) -> Option<String> {
        let late_ms = self.latest_send_after_schedule_ms();
        (late_ms > 1.0).then(|| {
            format!(
                "a publish started up to {late_ms:.1} ms after its scheduled instant (the \
                 benchmark fell behind its schedule)"
            )
        })
    }
}

/// Rounds to `places` decimals (for readable JSON).
pub fn round(value: f64, places: i32) -> f64 {
    let factor = 10f64.powi(places);
    (value * factor).round() / factor
}

/// Publishes single events for `tenant` and measures the deliveries `receiver` gets on
/// `paths`.
pub async fn run(
    api: &HeraldApi,
    tenant: &Tenant,
    receiver: &Receiver,
    paths: &[usize],
    options: FlowOptions,
    progress: &mut Progress,
) -> Flow {
    let sends = Arc::new(SendLog::default());
    let counters = Arc::new(Counters::default());
    let call = publish_single(api, &tenant.name, Some(sends.clone()));
    let per_event = options.deliveries_per_event;
    let outstanding = {
        let (counters, receiver, paths) = (counters.clone(), receiver.clone(), paths.to_vec());
        move || {
            let expected = counters.accepted.load(Ordering::Relaxed) * per_event;
            expected.saturating_sub(receiver.succeeded_on(&paths))
        }
    };
    {
        let (counters, receiver, paths) = (counters.clone(), receiver.clone(), paths.to_vec());
        progress.watch(Box::new(move || {
            format!(
                "published {:>9}  delivered {:>9}  attempts {:>9}  errors {}",
                counters.accepted.load(Ordering::Relaxed),
                receiver.succeeded_on(&paths),
                receiver.requests_on(&paths),
                counters.errors.load(Ordering::Relaxed),
            )
        }));
    }
    let load = match options.publishing {
        Publishing::Closed { connections } => {
            let max_backlog = options.max_backlog;
            let outstanding = outstanding.clone();
            let gate: Gate = Arc::new(move || outstanding() <= max_backlog);
            let until = Until::Elapsed(options.duration);
            closed_loop(connections, until, call, Some(gate), counters.clone()).await
        }
        Publishing::Steady { rate_per_s } => {
            open_loop(rate_per_s, options.duration, call, counters.clone()).await
        }
    };
    let drain_deadline = Instant::now() + options.drain_within;
    while outstanding() > 0 && Instant::now() < drain_deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let drained = outstanding() == 0;
    measure(load, &sends, receiver, paths, per_event, drained)
}

fn measure(
    load: LoadResult,
    sends: &SendLog,
    receiver: &Receiver,
    paths: &[usize],
    per_event: u64,
    drained: bool,
) -> Flow {
    let started = load.started.unwrap_or_else(Instant::now);
    let sent: HashMap<u128, Instant> = sends.entries().into_iter().collect();
    let (mut delivered, mut attempts, mut duplicates) = (0, 0, 0);
    let mut last_delivery = started;
    let mut latencies_us = Vec::with_capacity(sent.len() * paths.len());
    for path in paths {
        let arrivals = receiver.arrivals(*path);
        attempts += arrivals.len() as u64;
        let mut first: HashMap<u128, Instant> = HashMap::with_capacity(arrivals.len());
        let mut succeeded: HashSet<u128> = HashSet::with_capacity(arrivals.len());
        for arrival in &arrivals {
            first
                .entry(arrival.event)
                .and_modify(|at| *at = (*at).min(arrival.at))
                .or_insert(arrival.at);
            if arrival.succeeded {
                if succeeded.insert(arrival.event) {
                    delivered += 1;
                    last_delivery = last_delivery.max(arrival.at);
                } else {
                    duplicates += 1;
                }
            }
        }
        for (event, arrived) in first {
            if let Some(sent) = sent.get(&event) {
                let micros = arrived.saturating_duration_since(*sent).as_micros();
                latencies_us.push(micros.min(u128::from(u32::MAX)) as u32);
            }
        }
    }
    let last_ack = started + load.elapsed;
    Flow {
        published: load.accepted,
        expected: load.accepted * per_event,
        load,
        delivered,
        attempts,
        duplicates,
        elapsed: last_delivery.saturating_duration_since(started),
        drain_after_last_ack: last_delivery.saturating_duration_since(last_ack),
        drained,
        first_attempt: Percentiles::of_micros(latencies_us),
    }
}
