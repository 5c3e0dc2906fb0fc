//! Scenario h: a healthy webhook's throughput beside a webhook whose endpoint never answers,
//! against its throughput alone, each run on a fresh in-process Herald.

use serde_json::{Map, Value, json};

use crate::app::BenchApp;
use crate::delivery::{closed, measure, report, with_webhooks};
use crate::flow::{Flow, round};
use crate::progress::Progress;
use crate::receiver::{Mode, Receiver};
use crate::report::{ScenarioReport, thousands};
use crate::run::{Context, with_app};
use crate::system::CpuUse;

/// Runs beside the black hole in scenario h; each is preceded and followed by a run alone.
/// More pairs narrow the spread of the ratio, at the cost of two runs each.
const ISOLATION_PAIRS: usize = 3;

/// h. The d-style run with a webhook that never answers beside the healthy one, alternating
/// with runs without it (alone, beside, alone, ..., beside, alone); the mean healthy
/// deliveries per second beside the black hole are compared with the mean of the runs
/// alone. A machine's speed drifts over a minute, and a single pair of runs would read that
/// drift as interference or hide interference behind it; alternating spreads the drift over
/// both sides.
pub async fn isolation(ctx: &Context) -> anyhow::Result<ScenarioReport> {
    let (alone, mut beside) = alternate_runs(ctx).await?;
    let comparison = Comparison::of(alone, &beside);
    let hole_connections: u64 = beside.iter().map(|run| run.hole_connections).sum();
    // The figures and latency are the first run beside the black hole's; the throughput is
    // the mean of those runs. No completion check: the events stay in processing while the
    // black hole's attempts time out and are retried.
    let first_beside = beside.swap_remove(0);
    let mut report = report(
        ctx,
        "isolation",
        'h',
        "isolation: healthy beside a black hole",
        first_beside.flow,
        first_beside.cpu,
        None,
        comparison.summary(),
    );
    report.throughput.value = round(comparison.beside_mean, 1);
    comparison.insert_into(&mut report.figures);
    for (name, value) in [
        ("black_hole_connections", json!(hole_connections)),
        ("delivery_timeout", json!(ctx.isolation_timeout)),
    ] {
        report.figures.insert(name.into(), value);
    }
    Ok(report)
}

/// Runs alone and beside the black hole in turn, starting and ending alone: the healthy
/// deliveries per second of each run alone, and each run beside.
async fn alternate_runs(ctx: &Context) -> anyhow::Result<(Vec<f64>, Vec<BesideRun>)> {
    let runs = 2 * ISOLATION_PAIRS + 1;
    let mut alone = Vec::new();
    let mut beside = Vec::new();
    for run in 1..=runs {
        if run % 2 == 1 {
            let title = format!("h. isolation {run}/{runs}: healthy webhook alone");
            alone.push(isolation_alone(ctx, &title).await?);
        } else {
            let title = format!("h. isolation {run}/{runs}: beside a black hole");
            beside.push(isolation_beside(ctx, &title).await?);
        }
    }
    Ok((alone, beside))
}

/// The healthy webhook's deliveries per second beside the black hole against alone.
struct Comparison {
    alone: Vec<f64>,
    beside: Vec<f64>,
    alone_mean: f64,
    beside_mean: f64,
    /// Beside over alone.
    ratio: f64,
}

impl Comparison {
    fn of(alone: Vec<f64>, beside: &[BesideRun]) -> Comparison {
        let mean = |rates: &[f64]| rates.iter().sum::<f64>() / rates.len().max(1) as f64;
        let beside: Vec<f64> = beside.iter().map(|run| run.flow.rate()).collect();
        let alone_mean = mean(&alone);
        let beside_mean = mean(&beside);
        Comparison {
            ratio: beside_mean / alone_mean.max(f64::MIN_POSITIVE),
            alone,
            beside,
            alone_mean,
            beside_mean,
        }
    }

    fn summary(&self) -> String {
        let list = |rates: &[f64]| {
            rates
                .iter()
                .map(|rate| thousands(*rate))
                .collect::<Vec<_>>()
                .join(", ")
        };
        format!(
            "{:.0}% of {} /s alone (beside: {}; alone: {})",
            self.ratio * 100.0,
            thousands(self.alone_mean),
            list(&self.beside),
            list(&self.alone),
        )
    }

    fn insert_into(&self, figures: &mut Map<String, Value>) {
        let rounded = |rates: &[f64]| rates.iter().map(|r| round(*r, 1)).collect::<Vec<_>>();
        for (name, value) in [
            ("without_black_hole_per_s", json!(round(self.alone_mean, 1))),
            ("without_black_hole_runs_per_s", json!(rounded(&self.alone))),
            ("beside_black_hole_runs_per_s", json!(rounded(&self.beside))),
            (
                "ratio_to_run_without_black_hole",
                json!(round(self.ratio, 4)),
            ),
        ] {
            figures.insert(name.into(), value);
        }
    }
}

/// One run of scenario h beside the black hole.
struct BesideRun {
    /// The healthy webhook's flow.
    flow: Flow,
    cpu: Option<CpuUse>,
    /// Connections the black hole accepted.
    hole_connections: u64,
}

async fn isolation_beside(ctx: &Context, title: &str) -> anyhow::Result<BesideRun> {
    let mut progress = Progress::start(title);
    let healthy = Receiver::start(Mode::Healthy, 1, true).await?;
    let hole = Receiver::start(Mode::BlackHole, 1, false).await?;
    let (flow, cpu) = with_app(ctx, &isolation_settings(ctx), async |app: &BenchApp| {
        let urls = [healthy.url(0), hole.url(0)];
        let tenant = with_webhooks(app, "bench-beside", &urls).await?;
        Ok(measure(
            ctx,
            app,
            &tenant,
            &healthy,
            &[0],
            closed(ctx),
            &mut progress,
        )
        .await)
    })
    .await?;
    progress.finish(&format!("{} deliveries/s", thousands(flow.rate())));
    Ok(BesideRun {
        flow,
        cpu,
        hole_connections: hole.connections(),
    })
}

/// The settings of every run of scenario h: attempts time out, so the black hole frees its
/// slots.
fn isolation_settings(ctx: &Context) -> [(&'static str, &'static str); 1] {
    [("HERALD_DELIVERY_TIMEOUT", ctx.isolation_timeout)]
}

/// Healthy deliveries per second of one webhook alone, as scenario h runs it.
async fn isolation_alone(ctx: &Context, title: &str) -> anyhow::Result<f64> {
    let mut progress = Progress::start(title);
    let alone = Receiver::start(Mode::Healthy, 1, true).await?;
    let flow = with_app(ctx, &isolation_settings(ctx), async |app: &BenchApp| {
        let tenant = with_webhooks(app, "bench-alone", &[alone.url(0)]).await?;
        Ok(
            measure(ctx, app, &tenant, &alone, &[0], closed(ctx), &mut progress)
                .await
                .0,
        )
    })
    .await?;
    progress.finish(&format!("{} deliveries/s", thousands(flow.rate())));
    Ok(flow.rate())
}
