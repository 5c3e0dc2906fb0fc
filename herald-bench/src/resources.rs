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
use tokio::task::JoinHandle;

use crate::app::{HeraldApi, Tenant};
use crate::calls::publish_batch;
use crate::child::HeraldProcess;
use crate::database::TempDatabase;
use crate::flow::{self, Flow, FlowOptions, Publishing, round};
use crate::ingest;
use crate::load::{Counters, LoadResult, Until, closed_loop};
use crate::progress::Progress;
use crate::receiver::{Mode, Receiver};
use crate::report::{Rate, ScenarioReport, thousands};
use crate::run::Context;
use crate::system::{CpuClock, CpuUse, Pid, memory};

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
    let progress = Progress::start("i. resources 1/3: load (Herald as a child process)");
    let healthy = Receiver::start(Mode::Healthy, 1, true).await?;
    let extra = [("HERALD_RETRY_SCHEDULE", WAITING_SCHEDULE)];
    let herald = HeraldProcess::start(database_url, &extra).await?;
    let pid = Pid::Child(herald.pid);
    let api = HeraldApi::connect(database_url, herald.base.clone()).await?;
    let mut figures = Map::new();
    let load = load_phase(ctx, &api, &healthy, pid, progress, &mut figures).await?;
    let idle_percent = idle_phase(ctx, pid, &mut figures).await?;
    let peak_rss_mib = waiting_phase(ctx, &api, pid, &mut figures).await?;
    herald.stop().await;
    Ok(resources_report(load, idle_percent, peak_rss_mib, figures))
}

/// The load phase's flow and the child's CPU over it.
struct LoadPhase {
    flow: Flow,
    cpu: CpuUse,
}

/// Phase 1, load: the end-to-end scenario's traffic, measured on the child alone.
async fn load_phase(
    ctx: &Context,
    api: &HeraldApi,
    healthy: &Receiver,
    pid: Pid,
    mut progress: Progress,
    figures: &mut Map<String, Value>,
) -> anyhow::Result<LoadPhase> {
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
    let clock = CpuClock::start(pid);
    let flow = flow::run(api, &tenant, healthy, &[0], options, &mut progress).await;
    let cpu = clock.read().context("cannot read the child's CPU time")?;
    ingest::check(&flow.load, "the load phase")?;
    let peak_under_load = memory(pid).context("cannot read the child's memory")?;
    for (name, value) in [
        ("load_deliveries", json!(flow.delivered)),
        ("load_deliveries_per_s", json!(round(flow.rate(), 1))),
        ("load_cpu_seconds", json!(round(cpu.cpu_seconds, 3))),
        ("load_cpu_cores", json!(round(cpu.cores, 3))),
        (
            "cpu_ms_per_1000_deliveries",
            json!(round(
                cpu.cpu_seconds * 1e6 / flow.delivered.max(1) as f64,
                2
            )),
        ),
        (
            "peak_rss_under_load_mib",
            json!(round(peak_under_load.peak_rss_mib, 1)),
        ),
    ] {
        figures.insert(name.into(), value);
    }
    progress.finish(&format!(
        "{} deliveries/s, {:.2} CPU s, peak RSS {:.1} MiB",
        thousands(flow.rate()),
        cpu.cpu_seconds,
        peak_under_load.peak_rss_mib
    ));
    Ok(LoadPhase { flow, cpu })
}

/// Phase 2, idle: nothing to do; the process should sleep. Returns its CPU in percent of a
/// core.
async fn idle_phase(
    ctx: &Context,
    pid: Pid,
    figures: &mut Map<String, Value>,
) -> anyhow::Result<f64> {
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
    Ok(idle_percent)
}

/// Phase 3, waiting: deliveries whose first attempt got a 500 and whose retry is an hour
/// away. Returns the child's peak RSS over the whole scenario.
async fn waiting_phase(
    ctx: &Context,
    api: &HeraldApi,
    pid: Pid,
    figures: &mut Map<String, Value>,
) -> anyhow::Result<f64> {
    let mut progress =
        Progress::start("i. resources 3/3: deliveries waiting behind a dead endpoint");
    let waiting = fill_waiting(ctx, api, pid, &mut progress).await?;
    figures.extend(waiting.figures());
    let end = memory(pid).context("cannot read the child's memory")?;
    figures.insert("peak_rss_mib".into(), json!(round(end.peak_rss_mib, 1)));
    progress.finish(&format!(
        "RSS {} MiB with {} deliveries waiting",
        figures["rss_with_waiting_mib"],
        thousands(figures["waiting_deliveries"].as_f64().unwrap_or(0.0))
    ));
    Ok(end.peak_rss_mib)
}

fn resources_report(
    load: LoadPhase,
    idle_percent: f64,
    peak_rss_mib: f64,
    figures: Map<String, Value>,
) -> ScenarioReport {
    let LoadPhase { flow, cpu } = load;
    // The waiting figures are printed as the JSON document prints them.
    let summary = format!(
        "peak RSS {:.1} MiB; {:.2} CPU ms/delivery; idle {:.2}% of a core; RSS {} MiB with {} waiting",
        peak_rss_mib,
        cpu.cpu_seconds * 1000.0 / flow.delivered.max(1) as f64,
        idle_percent,
        figures["rss_with_waiting_mib"],
        thousands(figures["waiting_deliveries"].as_f64().unwrap_or(0.0)),
    );
    ScenarioReport {
        id: "resources",
        letter: 'i',
        title: "resources of the Herald process",
        throughput: Rate {
            value: round(flow.rate(), 1),
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
        elapsed_s: round(flow.elapsed.as_secs_f64(), 3),
        cpu: Some(cpu),
    }
}

/// What filling the waiting queue found.
struct WaitingQueue {
    published: u64,
    not_fanned_out: u64,
    attempts_in_flight: u64,
    rss_at_rest_mib: f64,
    max_rss_while_filling_mib: f64,
    published_in: Duration,
    publish_events_per_s: f64,
    fanned_out_in: Duration,
}

impl WaitingQueue {
    fn figures(&self) -> Map<String, Value> {
        let mut figures = Map::new();
        for (name, value) in [
            (
                "waiting_deliveries",
                json!(self.published - self.not_fanned_out),
            ),
            ("events_published", json!(self.published)),
            ("events_not_fanned_out", json!(self.not_fanned_out)),
            (
                "attempts_in_flight_to_dead_endpoint",
                json!(self.attempts_in_flight),
            ),
            (
                "rss_with_waiting_mib",
                json!(round(self.rss_at_rest_mib, 1)),
            ),
            (
                "max_rss_while_filling_mib",
                json!(round(self.max_rss_while_filling_mib, 1)),
            ),
            (
                "fill_publish_seconds",
                json!(round(self.published_in.as_secs_f64(), 2)),
            ),
            (
                "fill_publish_events_per_s",
                json!(round(self.publish_events_per_s, 1)),
            ),
            (
                "fill_fanned_out_after_seconds",
                json!(round(self.fanned_out_in.as_secs_f64(), 2)),
            ),
        ] {
            figures.insert(name.into(), value);
        }
        figures
    }
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
) -> anyhow::Result<WaitingQueue> {
    let hole = Receiver::start(Mode::BlackHole, 1, false).await?;
    let tenant = api.tenant("bench-waiting").await?;
    api.webhook(&tenant, "dead-endpoint", &hole.url(0)).await?;
    let sampler = RssSampler::start(pid);
    let counters = Arc::new(Counters::default());
    watch_fill(ctx, pid, &counters, progress);
    let started = Instant::now();
    let load = publish_waiting(ctx, api, &tenant, counters).await?;
    let published_in = started.elapsed();
    let not_fanned_out = wait_for_fan_out(api, &tenant, started + ctx.fill_within).await?;
    let fanned_out_in = started.elapsed();
    // A moment for the dispatcher's last tick to settle before reading memory at rest.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let at_rest = memory(pid).context("cannot read the child's memory")?;
    let max_rss_while_filling_mib = sampler.stop();
    Ok(WaitingQueue {
        published: load.accepted,
        not_fanned_out,
        attempts_in_flight: hole.connections(),
        rss_at_rest_mib: at_rest.rss_mib,
        max_rss_while_filling_mib,
        published_in,
        publish_events_per_s: load.rate(),
        fanned_out_in,
    })
}

/// The child's largest RSS seen, sampled every 100 ms from a task of its own.
struct RssSampler {
    max_rss_kib: Arc<AtomicU64>,
    task: JoinHandle<()>,
}

impl RssSampler {
    fn start(pid: Pid) -> RssSampler {
        let max_rss_kib = Arc::new(AtomicU64::new(0));
        let task = {
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
        RssSampler { max_rss_kib, task }
    }

    /// Stops sampling; returns the largest RSS seen, in MiB.
    fn stop(self) -> f64 {
        self.task.abort();
        self.max_rss_kib.load(Ordering::Relaxed) as f64 / 1024.0
    }
}

/// Shows the events published so far and the child's RSS on the progress line.
fn watch_fill(ctx: &Context, pid: Pid, counters: &Arc<Counters>, progress: &mut Progress) {
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

/// Publishes the waiting queue's events in batches of up to `FILL_BATCH`; every batch must
/// be accepted.
async fn publish_waiting(
    ctx: &Context,
    api: &HeraldApi,
    tenant: &Tenant,
    counters: Arc<Counters>,
) -> anyhow::Result<LoadResult> {
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
    Ok(load)
}

/// Waits until every event of `tenant` is fanned out into a delivery (none pending), or the
/// deadline; returns how many are still pending.
async fn wait_for_fan_out(
    api: &HeraldApi,
    tenant: &Tenant,
    deadline: Instant,
) -> anyhow::Result<u64> {
    let mut pending = api.count_events(tenant, Some("pending")).await?;
    while pending > 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(250)).await;
        pending = api.count_events(tenant, Some("pending")).await?;
    }
    Ok(pending)
}

/// The child's retry schedule: one retry, an hour after the first attempt.
const WAITING_SCHEDULE: &str = "1h";
