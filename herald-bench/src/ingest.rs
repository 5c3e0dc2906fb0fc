//! Scenarios a to c and j: the raw loopback HTTP baseline (the benchmark's client straight to
//! its receiver, no Herald), then publishing single events and batches of 100 to a tenant with
//! no webhooks, so that no delivery competes with ingest; and single events whose ids all
//! share their first 60 bits, beside single events of random ids on the same store.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use anyhow::bail;
use serde_json::{Map, json};
use uuid::Uuid;

use crate::app::{BenchApp, http_client};
use crate::calls::{
    publish_batch, publish_batch_with, publish_single, publish_single_with, raw_delivery,
};
use crate::flow::round;
use crate::load::{Call, Counters, LoadResult, Percentiles, Until, closed_loop, per_second};
use crate::progress::{Progress, Status};
use crate::receiver::{Mode, Receiver};
use crate::report::{Latency, Rate, ScenarioReport, thousands};
use crate::run::{Context, with_app};
use crate::system::{CpuClock, CpuUse, Pid};

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

/// The first 60 bits every id of the colliding-ids scenario shares.
const SHARED_PREFIX: u128 = 0x4f9_c2a1_e7b3_d4c5;

/// A UUID whose first 60 bits are [`SHARED_PREFIX`] and whose other 68 are random.
fn colliding_id() -> Uuid {
    Uuid::from_u128((SHARED_PREFIX << 68) | (rand::random::<u128>() >> 60))
}

/// j. `POST /v1/events` of ids that share their first 60 bits, once `ctx.colliding_stored`
/// such events are stored, beside the same load with random ids on the same store: a producer
/// choosing its ids must not be able to slow ingest down.
pub async fn colliding(ctx: &Context) -> anyhow::Result<ScenarioReport> {
    let progress = Progress::start("j. ingest, ids sharing a 60-bit prefix");
    with_app(ctx, &[], async |app: &BenchApp| {
        let tenant = app.api.tenant("bench-colliding").await?;
        let seed = publish_batch_with(&app.api, &tenant.name, ctx.batch_size, colliding_id);
        let mut stored_first = 0;
        for sequence in 0..ctx.colliding_stored.div_ceil(ctx.batch_size as u64) {
            stored_first += seed(sequence).await?;
        }
        let random = publish(
            ctx,
            publish_single(&app.api, &tenant.name, None),
            Progress::start("j. (random ids, for comparison)"),
            "events",
        )
        .await?;
        let random_rate = random.0.rate();
        let call = publish_single_with(&app.api, &tenant.name, None, colliding_id);
        let load = publish(ctx, call, progress, "events").await?;
        let stored = app.api.count_events(&tenant, None).await?;
        let mut report = ingest_report(ctx, load, stored, 'j', "colliding_ids", 1)?;
        report.title = "ingest, ids sharing a 60-bit prefix";
        report.summary = format!(
            "{} connections; {stored_first} events of that prefix stored first; random ids \
             on the same store: {} events/s",
            ctx.connections,
            thousands(random_rate)
        );
        report
            .figures
            .insert("stored_first".into(), json!(stored_first));
        report.figures.insert(
            "random_ids_events_per_s".into(),
            json!(round(random_rate, 1)),
        );
        report.figures.insert(
            "rate_against_random_ids".into(),
            json!(round(report.throughput.value / random_rate.max(1e-9), 3)),
        );
        Ok(report)
    })
    .await
}

async fn publish(
    ctx: &Context,
    call: Call,
    mut progress: Progress,
    unit: &'static str,
) -> anyhow::Result<(LoadResult, Option<CpuUse>)> {
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
    (load, cpu): (LoadResult, Option<CpuUse>),
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
            thousands(per_second(done, started.elapsed())),
            counters.errors.load(Ordering::Relaxed)
        )
    })
}
