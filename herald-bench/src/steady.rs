//! Scenarios k and l: single events published on a fixed schedule, 300 and then 1,000 a
//! second, to Herald running alone as a child process, with one webhook on the receiver. They
//! show what a producer and its partner see at an ordinary rate rather than at saturation:
//! the first attempt's latency from the instant the publish request was sent, and what each
//! event costs Herald in CPU time, its own and not the clients' or the receiver's.

use std::time::Duration;

use anyhow::Context as _;
use serde_json::{Map, Value, json};

use crate::app::{HeraldApi, Tenant};
use crate::child::HeraldProcess;
use crate::database::TempDatabase;
use crate::delivery::report;
use crate::flow::{self, Flow, FlowOptions, Publishing, round};
use crate::ingest;
use crate::progress::Progress;
use crate::receiver::{Mode, Receiver};
use crate::report::{Rate, ScenarioReport, thousands};
use crate::run::Context;
use crate::system::{CpuClock, CpuUse, MachineCpu, MachineCpuClock, Pid};

/// One steady-rate scenario.
pub struct SteadyRate {
    pub letter: char,
    pub id: &'static str,
    pub title: &'static str,
    pub rate_per_s: u64,
}

/// k. An ordinary rate: Herald's cost per event should stay near its cost at saturation.
pub const STEADY_300: SteadyRate = SteadyRate {
    letter: 'k',
    id: "steady_300",
    title: "steady 300 events/s, Herald alone",
    rate_per_s: 300,
};

/// l. A busier rate, still far below saturation.
pub const STEADY_1000: SteadyRate = SteadyRate {
    letter: 'l',
    id: "steady_1000",
    title: "steady 1,000 events/s, Herald alone",
    rate_per_s: 1_000,
};

/// The measured events' webhook, and the warm-up's (a tenant of its own, so that its
/// deliveries are not counted).
const MEASURED_PATH: usize = 0;
const WARM_UP_PATH: usize = 1;

/// Lets the warm-up's last attempt results be written before Herald's idle CPU is read.
const SETTLE: Duration = Duration::from_millis(250);

/// Which scenario in the run measured Herald's CPU at saturation, and its figure.
const SATURATION_SCENARIO: &str = "resources";
const SATURATION_CPU_MS_PER_1000: &str = "cpu_ms_per_1000_deliveries";
const CPU_S_PER_1000: &str = "herald_cpu_s_per_1000_events";

/// k or l on a fresh store.
pub async fn steady(ctx: &Context, scenario: &SteadyRate) -> anyhow::Result<ScenarioReport> {
    let mut database = TempDatabase::create(&ctx.database).await?;
    let result = on_store(ctx, scenario, &database.url).await;
    let removed = database.remove().await;
    let report = result?;
    removed?;
    Ok(report)
}

async fn on_store(
    ctx: &Context,
    scenario: &SteadyRate,
    database_url: &str,
) -> anyhow::Result<ScenarioReport> {
    let receiver = Receiver::start(Mode::Healthy, 2, true).await?;
    let retry = [("HERALD_RETRY_SCHEDULE", ctx.retry_schedule)];
    let herald = HeraldProcess::start(database_url, &retry).await?;
    let report = measure(ctx, scenario, database_url, &herald, &receiver).await;
    herald.stop().await;
    report
}

async fn measure(
    ctx: &Context,
    scenario: &SteadyRate,
    database_url: &str,
    herald: &HeraldProcess,
    receiver: &Receiver,
) -> anyhow::Result<ScenarioReport> {
    let mut progress = Progress::start(&format!(
        "{}. {} (Herald as a child process)",
        scenario.letter, scenario.title
    ));
    let pid = Pid::Child(herald.pid);
    let api = HeraldApi::connect(database_url, herald.base.clone()).await?;
    let warm_up_tenant = api.tenant("bench-warm-up").await?;
    api.webhook(&warm_up_tenant, "warm-up", &receiver.url(WARM_UP_PATH))
        .await?;
    let tenant = api.tenant("bench-steady").await?;
    api.webhook(&tenant, "receiver", &receiver.url(MEASURED_PATH))
        .await?;

    let warm_up_events = warm_up(
        ctx,
        scenario,
        &api,
        &warm_up_tenant,
        receiver,
        &mut progress,
    )
    .await?;
    let idle = idle_cpu(ctx, pid).await?;
    let (flow, cpu) =
        measured_window(ctx, scenario, &api, &tenant, receiver, pid, &mut progress).await?;
    let completed = api
        .wait_for_events(&tenant, "completed", flow.published, ctx.drain_within)
        .await?;

    let figures = SteadyFigures::new(scenario, &flow, cpu, idle, warm_up_events);
    progress.finish(&format!(
        "first attempt p50 {:.2} ms, p99 {:.2} ms; Herald {:.3} CPU s per 1,000 events",
        flow.first_attempt.map_or(0.0, |p| p.p50_ms),
        flow.first_attempt.map_or(0.0, |p| p.p99_ms),
        figures.herald_cpu_s_per_1000,
    ));
    Ok(figures.into_report(ctx, scenario, flow, completed))
}

/// Publishing at the scenario's rate for `duration`, one delivery per event.
fn flow_options(ctx: &Context, scenario: &SteadyRate, duration: Duration) -> FlowOptions {
    FlowOptions {
        publishing: Publishing::Steady {
            rate_per_s: scenario.rate_per_s,
        },
        duration,
        deliveries_per_event: 1,
        max_backlog: ctx.max_backlog,
        drain_within: ctx.drain_within,
    }
}

/// Publishes to the warm-up tenant for a tenth of the run (a second at most); returns how
/// many events it published.
async fn warm_up(
    ctx: &Context,
    scenario: &SteadyRate,
    api: &HeraldApi,
    warm_up_tenant: &Tenant,
    receiver: &Receiver,
    progress: &mut Progress,
) -> anyhow::Result<u64> {
    // Connections, caches and the first statements of each kind are paid for before the
    // measured window, so its maximum is not the price of a cold start.
    let warm_up_for = ctx.duration.mul_f64(0.1).min(Duration::from_secs(1));
    let flow = flow::run(
        api,
        warm_up_tenant,
        receiver,
        &[WARM_UP_PATH],
        flow_options(ctx, scenario, warm_up_for),
        progress,
    )
    .await;
    ingest::check(&flow.load, "the warm-up")?;
    Ok(flow.published)
}

/// Herald's CPU while it had nothing to do, once the warm-up settled.
struct Idle {
    measured_for: Duration,
    cpu: CpuUse,
}

async fn idle_cpu(ctx: &Context, pid: Pid) -> anyhow::Result<Idle> {
    tokio::time::sleep(SETTLE).await;
    let measured_for = ctx.idle.mul_f64(0.4);
    let clock = CpuClock::start(pid);
    tokio::time::sleep(measured_for).await;
    let cpu = clock.read().context("cannot read the child's CPU time")?;
    Ok(Idle { measured_for, cpu })
}

/// The CPU spent over the measured window: Herald's, the benchmark process's (its clients
/// and receiver), and the whole machine's.
struct WindowCpu {
    herald: CpuUse,
    benchmark: Option<CpuUse>,
    machine: Option<MachineCpu>,
}

/// Publishes to the measured tenant for the run's duration, with the CPU clocks running.
async fn measured_window(
    ctx: &Context,
    scenario: &SteadyRate,
    api: &HeraldApi,
    tenant: &Tenant,
    receiver: &Receiver,
    pid: Pid,
    progress: &mut Progress,
) -> anyhow::Result<(Flow, WindowCpu)> {
    let herald_clock = CpuClock::start(pid);
    let benchmark_clock = CpuClock::start(Pid::Current);
    let machine_clock = MachineCpuClock::start();
    let flow = flow::run(
        api,
        tenant,
        receiver,
        &[MEASURED_PATH],
        flow_options(ctx, scenario, ctx.duration),
        progress,
    )
    .await;
    let herald = herald_clock
        .read()
        .context("cannot read the child's CPU time")?;
    let benchmark = benchmark_clock.read();
    let machine = machine_clock.read();
    ingest::check(&flow.load, "publishing")?;
    let cpu = WindowCpu {
        herald,
        benchmark,
        machine,
    };
    Ok((flow, cpu))
}

/// What k and l report beyond the figures of every delivery scenario.
struct SteadyFigures {
    offered_rate_per_s: u64,
    achieved_events_per_s: f64,
    latest_send_after_schedule_ms: f64,
    max_first_attempt_ms: Option<f64>,
    herald_cpu_s_per_1000: f64,
    cpu: WindowCpu,
    idle: Idle,
    warm_up_events: u64,
}

impl SteadyFigures {
    fn new(
        scenario: &SteadyRate,
        flow: &Flow,
        cpu: WindowCpu,
        idle: Idle,
        warm_up_events: u64,
    ) -> SteadyFigures {
        SteadyFigures {
            offered_rate_per_s: scenario.rate_per_s,
            achieved_events_per_s: flow.load.rate(),
            latest_send_after_schedule_ms: flow.latest_send_after_schedule_ms(),
            max_first_attempt_ms: flow.first_attempt.map(|p| p.max_ms),
            herald_cpu_s_per_1000: cpu.herald.cpu_seconds / flow.published.max(1) as f64 * 1_000.0,
            cpu,
            idle,
            warm_up_events,
        }
    }

    fn into_report(
        self,
        ctx: &Context,
        scenario: &SteadyRate,
        flow: Flow,
        completed: u64,
    ) -> ScenarioReport {
        let behind_schedule = flow.behind_schedule_note();
        let mut report = report(
            ctx,
            scenario.id,
            scenario.letter,
            scenario.title,
            flow,
            Some(self.cpu.herald),
            Some(completed),
            self.summary(),
        );
        report.throughput = Rate {
            value: round(self.achieved_events_per_s, 1),
            unit: "events/s",
        };
        self.insert_into(&mut report.figures);
        report.notes.push(format!(
            "Herald runs as a child process (`herald serve`): its CPU is its own, over the {:.1} s \
             of publishing and the drain; the machine's busy share includes the benchmark's \
             clients and receiver",
            ctx.duration.as_secs_f64()
        ));
        report.notes.extend(behind_schedule);
        report
    }

    fn summary(&self) -> String {
        format!(
            "max {}; Herald {:.3} CPU s/1,000 events, idle {:.2}% of a core; machine {} busy",
            self.max_first_attempt_ms
                .map_or("-".into(), |ms| format!("{ms:.1} ms")),
            self.herald_cpu_s_per_1000,
            self.idle.cpu.cores * 100.0,
            self.cpu
                .machine
                .map_or("-".into(), |m| format!("{:.0}%", m.busy_percent)),
        )
    }

    fn insert_into(&self, figures: &mut Map<String, Value>) {
        let (herald, benchmark, machine) = (self.cpu.herald, self.cpu.benchmark, self.cpu.machine);
        for (name, value) in [
            ("offered_rate_per_s", json!(self.offered_rate_per_s)),
            (
                "achieved_events_per_s",
                json!(round(self.achieved_events_per_s, 1)),
            ),
            (
                "latest_send_after_schedule_ms",
                json!(round(self.latest_send_after_schedule_ms, 3)),
            ),
            ("herald_cpu_seconds", json!(round(herald.cpu_seconds, 3))),
            ("herald_cpu_cores", json!(round(herald.cores, 4))),
            (CPU_S_PER_1000, json!(round(self.herald_cpu_s_per_1000, 5))),
            (
                "herald_idle_seconds",
                json!(round(self.idle.measured_for.as_secs_f64(), 2)),
            ),
            (
                "herald_idle_cpu_percent_of_a_core",
                json!(round(self.idle.cpu.cores * 100.0, 3)),
            ),
            (
                "benchmark_process_cpu_seconds",
                json!(benchmark.map(|cpu| round(cpu.cpu_seconds, 3))),
            ),
            (
                "machine_cpu_busy_percent",
                json!(machine.map(|m| round(m.busy_percent, 1))),
            ),
            (
                "machine_cpu_stolen_percent",
                json!(machine.map(|m| round(m.stolen_percent, 1))),
            ),
            ("warm_up_events", json!(self.warm_up_events)),
        ] {
            figures.insert(name.into(), value);
        }
    }
}

/// When the run also measured Herald alone at saturation (scenario i), adds to k and l their
/// CPU per event as a multiple of that one.
pub fn compare_with_saturation(scenarios: &mut [ScenarioReport]) {
    let Some(saturation_ms) = scenarios
        .iter()
        .find(|s| s.id == SATURATION_SCENARIO)
        .and_then(|s| s.figures.get(SATURATION_CPU_MS_PER_1000))
        .and_then(Value::as_f64)
        .filter(|ms| *ms > 0.0)
    else {
        return;
    };
    for scenario in scenarios
        .iter_mut()
        .filter(|s| [STEADY_300.id, STEADY_1000.id].contains(&s.id))
    {
        let Some(steady_s) = scenario.figures.get(CPU_S_PER_1000).and_then(Value::as_f64) else {
            continue;
        };
        let ratio = steady_s * 1_000.0 / saturation_ms;
        scenario.figures.insert(
            "herald_cpu_per_event_against_saturation".into(),
            json!(round(ratio, 2)),
        );
        scenario.notes.push(format!(
            "Herald's CPU per event is {ratio:.2} times its CPU per delivery at saturation \
             (scenario i: {} CPU ms per 1,000)",
            thousands(saturation_ms)
        ));
    }
}
