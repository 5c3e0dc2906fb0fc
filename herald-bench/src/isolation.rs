//! Scenario h: a healthy webhook's throughput beside a webhook whose endpoint never answers,
//! against its throughput alone, each run on a fresh in-process Herald.

use serde_json::json;

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
    let runs = 2 * ISOLATION_PAIRS + 1;
    let mut alone = Vec::new();
    let mut beside: Vec<(Flow, Option<CpuUse>, u64)> = Vec::new();
    for run in 1..=runs {
        if run % 2 == 1 {
            let title = format!("h. isolation {run}/{runs}: healthy webhook alone");
            alone.push(isolation_alone(ctx, &title).await?);
        } else {
            let title = format!("h. isolation {run}/{runs}: beside a black hole");
            beside.push(isolation_beside(ctx, &title).await?);
        }
    }
    let mean = |rates: &[f64]| rates.iter().sum::<f64>() / rates.len().max(1) as f64;
    let beside_rates: Vec<f64> = beside.iter().map(|(flow, _, _)| flow.rate()).collect();
    let without = mean(&alone);
    let with = mean(&beside_rates);
    let ratio = with / without.max(f64::MIN_POSITIVE);
    let list = |rates: &[f64]| {
        rates
            .iter()
            .map(|rate| thousands(*rate))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let summary = format!(
        "{:.0}% of {} /s alone (beside: {}; alone: {})",
        ratio * 100.0,
        thousands(without),
        list(&beside_rates),
        list(&alone),
    );
    let hole_connections: u64 = beside.iter().map(|(_, _, connections)| connections).sum();
    // The figures and latency are the first run beside the black hole's; the throughput is
    // the mean of those runs. No completion check: the events stay in processing while the
    // black hole's attempts time out and are retried.
    let (flow, cpu, _) = beside.swap_remove(0);
    let mut report = report(
        ctx,
        "isolation",
        'h',
        "isolation: healthy beside a black hole",
        flow,
        cpu,
        None,
        summary,
    );
    report.throughput.value = round(with, 1);
    for (name, value) in [
        ("without_black_hole_per_s", json!(round(without, 1))),
        (
            "without_black_hole_runs_per_s",
            json!(alone.iter().map(|r| round(*r, 1)).collect::<Vec<_>>()),
        ),
        (
            "beside_black_hole_runs_per_s",
            json!(
                beside_rates
                    .iter()
                    .map(|r| round(*r, 1))
                    .collect::<Vec<_>>()
            ),
        ),
        ("ratio_to_run_without_black_hole", json!(round(ratio, 4))),
        ("black_hole_connections", json!(hole_connections)),
        ("delivery_timeout", json!(ctx.isolation_timeout)),
    ] {
        report.figures.insert(name.into(), value);
    }
    Ok(report)
}

/// One run of scenario h beside the black hole: the healthy webhook's flow, the CPU used and
/// the connections the black hole accepted.
async fn isolation_beside(
    ctx: &Context,
    title: &str,
) -> anyhow::Result<(Flow, Option<CpuUse>, u64)> {
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
    Ok((flow, cpu, hole.connections()))
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
