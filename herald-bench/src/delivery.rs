//! Scenarios d to h, each on a fresh in-process Herald: end to end with one webhook, the
//! first-attempt latency at a steady rate, fan-out to five webhooks, a receiver failing half
//! the time, and a black-hole webhook beside a healthy one.

use serde_json::json;

use crate::app::{BenchApp, Tenant};
use crate::flow::{self, Flow, FlowOptions, Publishing, round};
use crate::ingest::{error_notes, percentiles};
use crate::progress::Progress;
use crate::receiver::{Mode, Receiver};
use crate::report::{Latency, Rate, ScenarioReport, thousands};
use crate::run::{Context, with_app};
use crate::system::{CpuClock, CpuUse, Pid};

/// d. 64 publishers, one webhook, every delivery checked.
pub async fn end_to_end(ctx: &Context) -> anyhow::Result<ScenarioReport> {
    let mut progress = Progress::start("d. end-to-end, 1 webhook");
    let receiver = Receiver::start(Mode::Healthy, 1, true).await?;
    let (flow, cpu, completed) = with_app(ctx, &[], async |app: &BenchApp| {
        let tenant = with_webhooks(app, "bench-e2e", &[receiver.url(0)]).await?;
        let (flow, cpu) = measure(
            ctx,
            app,
            &tenant,
            &receiver,
            &[0],
            closed(ctx),
            &mut progress,
        )
        .await;
        let completed = completed(ctx, app, &tenant, flow.published).await?;
        Ok((flow, cpu, completed))
    })
    .await?;
    progress.finish(&format!("{} deliveries/s", thousands(flow.rate())));
    let summary = format!(
        "{} publishers; {} delivered, {} completed",
        ctx.connections,
        thousands(flow.delivered as f64),
        thousands(completed as f64)
    );
    let mut report = report(
        ctx,
        "end_to_end",
        'd',
        "end-to-end, 1 webhook",
        flow,
        cpu,
        Some(completed),
        summary,
    );
    report.notes.push(format!(
        "at saturation the first-attempt latency is mostly the backlog the publishers may \
         build (--max-backlog {}) divided by the throughput; scenario e measures latency",
        ctx.max_backlog
    ));
    Ok(report)
}

/// e. A fixed publish rate; what matters is the first-attempt latency.
pub async fn steady(ctx: &Context) -> anyhow::Result<ScenarioReport> {
    let mut progress = Progress::start("e. steady-rate latency");
    let receiver = Receiver::start(Mode::Healthy, 1, true).await?;
    let rate_per_s = ctx.steady_rate_per_s;
    let (flow, cpu, completed) = with_app(ctx, &[], async |app: &BenchApp| {
        let tenant = with_webhooks(app, "bench-steady", &[receiver.url(0)]).await?;
        let publishing = Publishing::Steady { rate_per_s };
        let (flow, cpu) = measure(
            ctx,
            app,
            &tenant,
            &receiver,
            &[0],
            publishing,
            &mut progress,
        )
        .await;
        let completed = completed(ctx, app, &tenant, flow.published).await?;
        Ok((flow, cpu, completed))
    })
    .await?;
    progress.finish(&format!(
        "first attempt p50 {:.2} ms",
        flow.first_attempt.map_or(0.0, |p| p.p50_ms)
    ));
    let summary = format!(
        "{} events/s offered for {:.1} s; publish p50 {}",
        thousands(rate_per_s as f64),
        ctx.duration.as_secs_f64(),
        percentiles(&flow.load, "publish call")
            .map_or("-".into(), |l| format!("{:.2} ms", l.percentiles.p50_ms))
    );
    let mut report = report(
        ctx,
        "steady_latency",
        'e',
        "first-attempt latency, steady rate",
        flow,
        cpu,
        Some(completed),
        summary,
    );
    report
        .figures
        .insert("offered_rate_per_s".into(), json!(rate_per_s));
    Ok(report)
}

/// f. Every event to five webhooks.
pub async fn fan_out(ctx: &Context) -> anyhow::Result<ScenarioReport> {
    const WEBHOOKS: usize = 5;
    let mut progress = Progress::start("f. fan-out to 5 webhooks");
    let receiver = Receiver::start(Mode::Healthy, WEBHOOKS, true).await?;
    let paths: Vec<usize> = (0..WEBHOOKS).collect();
    let (flow, cpu, completed) = with_app(ctx, &[], async |app: &BenchApp| {
        let urls: Vec<String> = paths.iter().map(|p| receiver.url(*p)).collect();
        let tenant = with_webhooks(app, "bench-fan-out", &urls).await?;
        let (flow, cpu) = measure(
            ctx,
            app,
            &tenant,
            &receiver,
            &paths,
            closed(ctx),
            &mut progress,
        )
        .await;
        let completed = completed(ctx, app, &tenant, flow.published).await?;
        Ok((flow, cpu, completed))
    })
    .await?;
    progress.finish(&format!("{} deliveries/s", thousands(flow.rate())));
    let summary = format!(
        "{} events x {WEBHOOKS} webhooks; {} completed",
        thousands(flow.published as f64),
        thousands(completed as f64)
    );
    Ok(report(
        ctx,
        "fan_out",
        'f',
        "fan-out, 1 event to 5 webhooks",
        flow,
        cpu,
        Some(completed),
        summary,
    ))
}

/// g. Half the answers are 500; the short schedule retries them; every event must end
/// completed.
pub async fn failing(ctx: &Context) -> anyhow::Result<ScenarioReport> {
    let mut progress = Progress::start("g. failing receiver (50% 500)");
    // Five delays in the schedule give six attempts: at most five failures per event, so
    // every event is delivered in the end.
    let mode = Mode::Flaky {
        failure_ratio: 0.5,
        max_failures: 5,
    };
    let receiver = Receiver::start(mode, 1, true).await?;
    let (flow, cpu, completed, failed) = with_app(ctx, &[], async |app: &BenchApp| {
        let tenant = with_webhooks(app, "bench-failing", &[receiver.url(0)]).await?;
        let (flow, cpu) = measure(
            ctx,
            app,
            &tenant,
            &receiver,
            &[0],
            closed(ctx),
            &mut progress,
        )
        .await;
        let completed = completed(ctx, app, &tenant, flow.published).await?;
        let failed = app.api.count_events(&tenant, Some("failed")).await?;
        Ok((flow, cpu, completed, failed))
    })
    .await?;
    let answered_500 = flow.attempts - flow.delivered - flow.duplicates;
    let share_500 = answered_500 as f64 / flow.attempts.max(1) as f64;
    progress.finish(&format!(
        "{} deliveries/s, {:.1}% of answers 500",
        thousands(flow.rate()),
        share_500 * 100.0
    ));
    let summary = format!(
        "{:.1}% of {} attempts answered 500; {} of {} events completed, {failed} failed",
        share_500 * 100.0,
        thousands(flow.attempts as f64),
        thousands(completed as f64),
        thousands(flow.published as f64)
    );
    let mut report = report(
        ctx,
        "failing_receiver",
        'g',
        "failing receiver (50% 500, retries)",
        flow,
        cpu,
        Some(completed),
        summary,
    );
    report
        .figures
        .insert("answered_500".into(), json!(answered_500));
    report
        .figures
        .insert("share_answered_500".into(), json!(round(share_500, 4)));
    report.figures.insert("failed".into(), json!(failed));
    report
        .figures
        .insert("retry_schedule".into(), json!(ctx.retry_schedule));
    Ok(report)
}

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

fn closed(ctx: &Context) -> Publishing {
    Publishing::Closed {
        connections: ctx.connections,
    }
}

/// A new tenant with one active webhook per URL.
async fn with_webhooks(app: &BenchApp, tenant: &str, urls: &[String]) -> anyhow::Result<Tenant> {
    let tenant = app.api.tenant(tenant).await?;
    for (n, url) in urls.iter().enumerate() {
        app.api
            .webhook(&tenant, &format!("receiver-{n}"), url)
            .await?;
    }
    Ok(tenant)
}

async fn measure(
    ctx: &Context,
    app: &BenchApp,
    tenant: &Tenant,
    receiver: &Receiver,
    paths: &[usize],
    publishing: Publishing,
    progress: &mut Progress,
) -> (Flow, Option<CpuUse>) {
    let options = FlowOptions {
        publishing,
        duration: ctx.duration,
        deliveries_per_event: paths.len() as u64,
        max_backlog: ctx.max_backlog,
        drain_within: ctx.drain_within,
    };
    let cpu = CpuClock::start(Pid::Current);
    let flow = flow::run(&app.api, tenant, receiver, paths, options, progress).await;
    (flow, cpu.read())
}

/// Waits for the tenant's events to be `completed` (the attempts are recorded after the
/// receiver answered); returns how many are.
async fn completed(
    ctx: &Context,
    app: &BenchApp,
    tenant: &Tenant,
    published: u64,
) -> anyhow::Result<u64> {
    app.api
        .wait_for_events(tenant, "completed", published, ctx.drain_within)
        .await
}

#[allow(clippy::too_many_arguments)]
fn report(
    ctx: &Context,
    id: &'static str,
    letter: char,
    title: &'static str,
    flow: Flow,
    cpu: Option<CpuUse>,
    completed: Option<u64>,
    summary: String,
) -> ScenarioReport {
    let mut figures = flow.figures();
    let mut notes = error_notes(&flow.load);
    if let Some(completed) = completed {
        figures.insert("completed".into(), json!(completed));
        figures.insert("all_completed".into(), json!(completed == flow.published));
        if completed < flow.published {
            notes.push(format!(
                "only {completed} of {} events were completed within {:.0} s",
                flow.published,
                ctx.drain_within.as_secs_f64()
            ));
        }
    }
    if !flow.drained {
        notes.push(format!(
            "only {} of {} deliveries arrived within {:.0} s of the last publish",
            flow.delivered,
            flow.expected,
            ctx.drain_within.as_secs_f64()
        ));
    }
    if flow.before_ack > 0 {
        notes.push(format!(
            "{} first attempts arrived before their publish's answer was read (counted as 0 ms)",
            flow.before_ack
        ));
    }
    ScenarioReport {
        id,
        letter,
        title,
        throughput: Rate {
            value: round(flow.rate(), 1),
            unit: "deliveries/s",
        },
        latency: flow.first_attempt.map(|percentiles| Latency {
            of: "first attempt",
            percentiles,
        }),
        summary,
        figures,
        notes,
        elapsed_s: round(flow.elapsed.as_secs_f64(), 3),
        cpu,
    }
}
