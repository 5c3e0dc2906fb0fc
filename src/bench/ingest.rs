//! Scenarios a to c: the raw loopback HTTP baseline (the benchmark's client straight to its
//! receiver, no Herald), then publishing single events and batches of 100 to a tenant with
//! no webhooks, so that no delivery competes with ingest.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use anyhow::bail;
use serde_json::{Map, json};

use super::calls::{publish_batch, publish_single, raw_delivery};
use super::flow::round;
use super::herald::{BenchApp, http_client};
use super::load::{Call, Counters, LoadResult, Percentiles, Until, closed_loop};
use super::progress::{Progress, Status};
use super::receiver::{Mode, Receiver};
use super::report::{Latency, Rate, ScenarioReport, thousands};
use super::system::{CpuClock, Pid};
use super::{Context, with_app};

/// a. The same client posting delivery-shaped requests straight to the receiver.
pub async fn raw(ctx: &Context) -> anyhow::Result<ScenarioReport> {
    let mut progress = Progress::start("a. raw loopback HTTP baseline");
    let receiver = Receiver::start(Mode::Healthy, 1, false).await?;
    let client = http_client()?;
    let counters = Arc::new(Counters::default());
    progress.watch(count_status(counters.clone(), "requests"));
    let cpu = CpuClock::start(Pid::Current);
    let call = raw_delivery(&client, &receiver.url(0));
    let until = Until::Elapsed(ctx.duration);
    let load = closed_loop(ctx.connections, until, call, None, counters).await;
    let cpu = cpu.read();
    check(&load, "the raw baseline")?;
    let mut figures = Map::new();
    figures.insert("requests".into(), json!(load.accepted));
    figures.insert("errors".into(), json!(load.errors));
    figures.insert("receiver_connections".into(), json!(receiver.connections()));
    progress.finish(&format!("{} requests/s", thousands(load.rate())));
    Ok(ScenarioReport {
        id: "raw",
        letter: 'a',
        title: "raw loopback HTTP (no Herald)",
        throughput: Rate {
            value: round(load.rate(), 1),
            unit: "requests/s",
        },
        latency: percentiles(&load, "request"),
        summary: format!(
            "{} connections: the client straight to the receiver",
            ctx.connections
        ),
        figures,
        notes: error_notes(&load),
        elapsed_s: round(load.elapsed.as_secs_f64(), 3),
        cpu,
    })
}

/// b. `POST /v1/events`, one event per call, N connections.
pub async fn single(ctx: &Context) -> anyhow::Result<ScenarioReport> {
    let progress = Progress::start("b. ingest, single events");
    with_app(ctx, &[], async |app: &BenchApp| {
        let tenant = app.api.tenant("bench-ingest").await?;
        let call = publish_single(&app.api, &tenant.name, None);
        let load = publish(ctx, call, progress, "events").await?;
        let stored = app.api.count_events(&tenant, None).await?;
        ingest_report(ctx, load, stored, 'b', "ingest_single", 1)
    })
    .await
}

/// c. `POST /v1/events/batch` with batches of `ctx.batch_size`, N connections.
pub async fn batch(ctx: &Context) -> anyhow::Result<ScenarioReport> {
    let progress = Progress::start("c. ingest, batches");
    with_app(ctx, &[], async |app: &BenchApp| {
        let tenant = app.api.tenant("bench-batch").await?;
        let call = publish_batch(&app.api, &tenant.name, ctx.batch_size);
        let load = publish(ctx, call, progress, "events").await?;
        let stored = app.api.count_events(&tenant, None).await?;
        ingest_report(ctx, load, stored, 'c', "ingest_batch", ctx.batch_size)
    })
    .await
}

async fn publish(
    ctx: &Context,
    call: Call,
    mut progress: Progress,
    unit: &'static str,
) -> anyhow::Result<(LoadResult, Option<super::system::CpuUse>)> {
    let counters = Arc::new(Counters::default());
    progress.watch(count_status(counters.clone(), unit));
    let cpu = CpuClock::start(Pid::Current);
    let until = Until::Elapsed(ctx.duration);
    let load = closed_loop(ctx.connections, until, call, None, counters).await;
    let cpu = cpu.read();
    check(&load, "publishing")?;
    progress.finish(&format!("{} {unit}/s", thousands(load.rate())));
    Ok((load, cpu))
}

fn ingest_report(
    ctx: &Context,
    (load, cpu): (LoadResult, Option<super::system::CpuUse>),
    stored: u64,
    letter: char,
    id: &'static str,
    per_call: usize,
) -> anyhow::Result<ScenarioReport> {
    if stored < load.accepted {
        bail!(
            "{} events were acknowledged but the events list counts {stored}",
            load.accepted
        );
    }
    let mut figures = Map::new();
    figures.insert("events".into(), json!(load.accepted));
    figures.insert("calls".into(), json!(load.calls));
    figures.insert("events_per_call".into(), json!(per_call));
    figures.insert("errors".into(), json!(load.errors));
    figures.insert("events_listed".into(), json!(stored));
    let (title, summary) = if per_call == 1 {
        (
            "ingest, single events",
            format!(
                "{} connections; tenant without webhooks (no delivery competes)",
                ctx.connections
            ),
        )
    } else {
        (
            "ingest, batches",
            format!(
                "{} connections x {per_call} events per call; tenant without webhooks",
                ctx.connections
            ),
        )
    };
    Ok(ScenarioReport {
        id,
        letter,
        title,
        throughput: Rate {
            value: round(load.rate(), 1),
            unit: "events/s",
        },
        latency: percentiles(&load, "publish call"),
        summary,
        figures,
        notes: error_notes(&load),
        elapsed_s: round(load.elapsed.as_secs_f64(), 3),
        cpu,
    })
}

/// Fails when nothing at all was accepted (the first error says why).
pub fn check(load: &LoadResult, what: &str) -> anyhow::Result<()> {
    if load.accepted == 0 {
        bail!(
            "{what} got nothing accepted: {}",
            load.first_error.as_deref().unwrap_or("no call completed")
        );
    }
    Ok(())
}

pub fn error_notes(load: &LoadResult) -> Vec<String> {
    match &load.first_error {
        Some(first) => vec![format!("{} calls failed; the first: {first}", load.errors)],
        None => Vec::new(),
    }
}

pub fn percentiles(load: &LoadResult, of: &'static str) -> Option<Latency> {
    Percentiles::of_micros(load.latencies_us.clone()).map(|percentiles| Latency { of, percentiles })
}

/// A live line: how many `unit` so far, and the rate since the status was made.
pub fn count_status(counters: Arc<Counters>, unit: &'static str) -> Status {
    let started = Instant::now();
    Box::new(move || {
        let done = counters.accepted.load(Ordering::Relaxed);
        format!(
            "{unit} {:>10}  ({}/s)  errors {}",
            done,
            thousands(super::load::per_second(done, started.elapsed())),
            counters.errors.load(Ordering::Relaxed)
        )
    })
}
