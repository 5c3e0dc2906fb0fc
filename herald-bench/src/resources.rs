//! Scenario i: what the Herald process itself costs. Herald runs here as a child process
//! (`herald-bench serve`, Herald's own command line in this binary) so that its CPU time and
//! resident memory, read from `/proc/<pid>`, are its own and not the benchmark's clients' and
//! receiver's. Three phases:
//! an end-to-end load, a few idle seconds, then a large queue of deliveries waiting for a
//! retry an hour away.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use serde_json::{Map, Value, json};

use crate::app::HeraldApi;
use crate::calls::publish_batch;
use crate::child::HeraldProcess;
use crate::database::TempDatabase;
use crate::flow::{self, FlowOptions, Publishing, round};
use crate::ingest;
use crate::load::{Counters, Until, closed_loop};
use crate::progress::Progress;
use crate::receiver::{Mode, Receiver};
use crate::report::{Rate, ScenarioReport, thousands};
use crate::run::Context;
use crate::system::{CpuClock, Pid, memory};

/// Events per batch when filling the waiting queue (the API's maximum).
const FILL_BATCH: usize = 1_000;
/// Concurrent batch publishers filling the waiting queue.
const FILL_CONNECTIONS: usize = 4;
/// The load phase is long enough for stable CPU figures; throughput is scenario d's job.
const LOAD_PHASE: Duration = Duration::from_secs(5);

/// i. Peak RSS and CPU of Herald under load, idle CPU, RSS with a large waiting queue.
pub async fn resources(ctx: &Context) -> anyhow::Result<ScenarioReport> {
    let mut database = TempDatabase::create(&ctx.database).await?;
    let result = measure(ctx, &database.url).await;
    let removed = database.remove().await;
    let report = result?;
    removed?;
    Ok(report)
}

async fn measure(ctx: &Context, database_url: &str) -> anyhow::Result<ScenarioReport> {
    let mut progress = Progress::start("i. resources 1/3: load (Herald as a child process)");
    let healthy = Receiver::start(Mode::Healthy, 1, true).await?;
    let extra = [("HERALD_RETRY_SCHEDULE", WAITING_SCHEDULE)];
    let herald = HeraldProcess::start(database_url, &extra).await?;
    let pid = Pid::Child(herald.pid);
    let api = HeraldApi::connect(database_url, herald.base.clone()).await?;
    let mut figures = Map::new();

    // 1. Load: the end-to-end scenario's traffic, measured on the child alone.
    let tenant = api.tenant("bench-load").await?;
    api.webhook(&tenant, "healthy", &healthy.url(0)).await?;
    let options = FlowOptions {
        publishing: Publishing::Closed {
            connections: ctx.connections,
        },
        duration: ctx.duration.min(LOAD_PHASE),
        deliveries_per_event: 1,
        max_backlog: ctx.max_backlog,
        drain_within: ctx.drain_within,
    };
    let cpu = CpuClock::start(pid);
    let load = flow::run(&api, &tenant, &healthy, &[0], options, &mut progress).await;
    let load_cpu = cpu.read().context("cannot read the child's CPU time")?;
    ingest::check(&load.load, "the load phase")?;
    let peak_under_load = memory(pid).context("cannot read the child's memory")?;
    figures.insert("load_deliveries".into(), json!(load.delivered));
    figures.insert("load_deliveries_per_s".into(), json!(round(load.rate(), 1)));
    figures.insert(
        "load_cpu_seconds".into(),
        json!(round(load_cpu.cpu_seconds, 3)),
    );
    figures.insert("load_cpu_cores".into(), json!(round(load_cpu.cores, 3)));
    figures.insert(
        "cpu_ms_per_1000_deliveries".into(),
        json!(round(
            load_cpu.cpu_seconds * 1e6 / load.delivered.max(1) as f64,
            2
        )),
    );
    figures.insert(
        "peak_rss_under_load_mib".into(),
        json!(round(peak_under_load.peak_rss_mib, 1)),
    );
    progress.finish(&format!(
        "{} deliveries/s, {:.2} CPU s, peak RSS {:.1} MiB",
        thousands(load.rate()),
        load_cpu.cpu_seconds,
        peak_under_load.peak_rss_mib
    ));

    // 2. Idle: nothing to do; the process should sleep.
    let progress = Progress::start("i. resources 2/3: idle");
    tokio::time::sleep(ctx.idle / 4).await;
    let idle_clock = CpuClock::start(pid);
    tokio::time::sleep(ctx.idle).await;
    let idle = idle_clock
        .read()
        .context("cannot read the child's CPU time")?;
    let idle_percent = idle.cores * 100.0;
    figures.insert("idle_seconds".into(), json!(ctx.idle.as_secs_f64()));
    figures.insert("idle_cpu_seconds".into(), json!(round(idle.cpu_seconds, 3)));
    figures.insert(
        "idle_cpu_percent_of_a_core".into(),
        json!(round(idle_percent, 3)),
    );
    progress.finish(&format!("{idle_percent:.2}% of a core"));

    // 3. Waiting: deliveries whose first attempt got a 500 and whose retry is an hour away.
    let mut progress =
        Progress::start("i. resources 3/3: deliveries waiting behind a dead endpoint");
    let waiting = fill_waiting(ctx, &api, pid, &mut progress).await?;
    figures.extend(waiting);
    let end = memory(pid).context("cannot read the child's memory")?;
    figures.insert("peak_rss_mib".into(), json!(round(end.peak_rss_mib, 1)));
    progress.finish(&format!(
        "RSS {} MiB with {} deliveries waiting",
        figures["rss_with_waiting_mib"],
        thousands(figures["waiting_deliveries"].as_f64().unwrap_or(0.0))
    ));
    herald.stop().await;

    let summary = format!(
        "peak RSS {:.1} MiB; {:.2} CPU ms/delivery; idle {:.2}% of a core; RSS {} MiB with {} waiting",
        end.peak_rss_mib,
        load_cpu.cpu_seconds * 1000.0 / load.delivered.max(1) as f64,
        idle_percent,
        figures["rss_with_waiting_mib"],
        thousands(figures["waiting_deliveries"].as_f64().unwrap_or(0.0)),
    );
    Ok(ScenarioReport {
        id: "resources",
        letter: 'i',
        title: "resources of the Herald process",
        throughput: Rate {
            value: round(load.rate(), 1),
            unit: "deliveries/s",
        },
        latency: None,
        summary,
        figures,
        notes: vec![
            "Herald runs as a child process (`herald serve`) here, so its CPU and RSS are its \
             own; the throughput is its load phase's."
                .into(),
        ],
        elapsed_s: round(load.elapsed.as_secs_f64(), 3),
        cpu: Some(load_cpu),
    })
}

/// Publishes `ctx.waiting_deliveries` events in batches to a webhook whose endpoint never
/// answers, waits until every event is fanned out into a delivery (or `ctx.fill_within`
/// passed), then reads the child's RSS. The endpoint holds its webhook's in-flight slots, so
/// the deliveries wait in the queue as they would behind a dead partner, and the fill is not
/// slowed by a million attempts.
async fn fill_waiting(
    ctx: &Context,
    api: &HeraldApi,
    pid: Pid,
    progress: &mut Progress,
) -> anyhow::Result<Map<String, Value>> {
    let hole = Receiver::start(Mode::BlackHole, 1, false).await?;
    let tenant = api.tenant("bench-waiting").await?;
    api.webhook(&tenant, "dead-endpoint", &hole.url(0)).await?;
    let max_rss_kib = Arc::new(AtomicU64::new(0));
    let sampler = {
        let max_rss_kib = max_rss_kib.clone();
        tokio::spawn(async move {
            loop {
                if let Some(m) = memory(pid) {
                    max_rss_kib.fetch_max((m.rss_mib * 1024.0) as u64, Ordering::Relaxed);
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    };
    let counters = Arc::new(Counters::default());
    {
        let counters = counters.clone();
        let target = thousands(ctx.waiting_deliveries as f64);
        progress.watch(Box::new(move || {
            format!(
                "published {:>9} of {target}  RSS {:.1} MiB",
                counters.accepted.load(Ordering::Relaxed),
                memory(pid).map_or(0.0, |m| m.rss_mib)
            )
        }));
    }
    let started = Instant::now();
    let batch = FILL_BATCH.min(ctx.waiting_deliveries.max(1) as usize);
    let calls = ctx.waiting_deliveries.div_ceil(batch as u64);
    let call = publish_batch(api, &tenant.name, batch);
    let until = Until::Calls {
        calls,
        within: ctx.fill_within,
    };
    let load = closed_loop(FILL_CONNECTIONS, until, call, None, counters).await;
    ingest::check(&load, "filling the queue")?;
    if load.errors > 0 {
        bail!(
            "{} batches failed: {}",
            load.errors,
            load.first_error.unwrap_or_default()
        );
    }
    let published = load.accepted;
    let published_in = started.elapsed();
    // Every event fanned out into a delivery (none pending), or the deadline.
    let deadline = started + ctx.fill_within;
    let mut pending = api.count_events(&tenant, Some("pending")).await?;
    while pending > 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(250)).await;
        pending = api.count_events(&tenant, Some("pending")).await?;
    }
    let fanned_out_in = started.elapsed();
    // A moment for the dispatcher's last tick to settle before reading memory at rest.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let at_rest = memory(pid).context("cannot read the child's memory")?;
    sampler.abort();
    let mut figures = Map::new();
    figures.insert("waiting_deliveries".into(), json!(published - pending));
    figures.insert("events_published".into(), json!(published));
    figures.insert("events_not_fanned_out".into(), json!(pending));
    figures.insert(
        "attempts_in_flight_to_dead_endpoint".into(),
        json!(hole.connections()),
    );
    figures.insert(
        "rss_with_waiting_mib".into(),
        json!(round(at_rest.rss_mib, 1)),
    );
    figures.insert(
        "max_rss_while_filling_mib".into(),
        json!(round(
            max_rss_kib.load(Ordering::Relaxed) as f64 / 1024.0,
            1
        )),
    );
    figures.insert(
        "fill_publish_seconds".into(),
        json!(round(published_in.as_secs_f64(), 2)),
    );
    figures.insert(
        "fill_publish_events_per_s".into(),
        json!(round(load.rate(), 1)),
    );
    figures.insert(
        "fill_fanned_out_after_seconds".into(),
        json!(round(fanned_out_in.as_secs_f64(), 2)),
    );
    Ok(figures)
}

/// The child's retry schedule: one retry, an hour after the first attempt.
const WAITING_SCHEDULE: &str = "1h";
