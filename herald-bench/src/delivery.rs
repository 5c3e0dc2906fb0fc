//! Scenarios d to g, each on a fresh in-process Herald: end to end with one webhook, the
//! first-attempt latency at a steady rate, fan-out to five webhooks, and a receiver failing
//! half the time; and the measurement and report they share with scenario h.

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
        "{} publishers; {} delivered, {} completed; last delivery {:.0} ms after the last \
         publish answered",
        ctx.connections,
        thousands(flow.delivered as f64),
        thousands(completed as f64),
        flow.drain_after_last_ack.as_secs_f64() * 1_000.0
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
    let latest_send_ms = flow.latest_send_after_schedule_ms();
    let behind_schedule = flow.behind_schedule_note();
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
    report.figures.insert(
        "latest_send_after_schedule_ms".into(),
        json!(round(latest_send_ms, 3)),
    );
    report.notes.extend(behind_schedule);
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

/// Scenario g's receiver: half its answers are 500. Five delays in the schedule give six
/// attempts: at most five failures per event, so every event is delivered in the end.
const HALF_FAILING: Mode = Mode::Flaky {
    failure_ratio: 0.5,
    max_failures: 5,
};

/// g. Half the answers are 500; the short schedule retries them; every event must end
/// completed.
pub async fn failing(ctx: &Context) -> anyhow::Result<ScenarioReport> {
    let mut progress = Progress::start("g. failing receiver (50% 500)");
    let receiver = Receiver::start(HALF_FAILING, 1, true).await?;
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
    let answered_500 = Answered500::of(&flow);
    progress.finish(&format!(
        "{} deliveries/s, {:.1}% of answers 500",
        thousands(flow.rate()),
        answered_500.share * 100.0
    ));
    let summary = format!(
        "{:.1}% of {} attempts answered 500; {} of {} events completed, {failed} failed",
        answered_500.share * 100.0,
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
    for (name, value) in [
        ("answered_500", json!(answered_500.count)),
        ("share_answered_500", json!(round(answered_500.share, 4))),
        ("failed", json!(failed)),
        ("retry_schedule", json!(ctx.retry_schedule)),
    ] {
        report.figures.insert(name.into(), value);
    }
    Ok(report)
}

/// The attempts the flaky receiver answered 500, and their share of all attempts.
struct Answered500 {
    count: u64,
    share: f64,
}

impl Answered500 {
    fn of(flow: &Flow) -> Answered500 {
        // Every other attempt was a first 200 (delivered) or a repeated one (duplicate).
        let count = flow.attempts - flow.delivered - flow.duplicates;
        Answered500 {
            count,
            share: count as f64 / flow.attempts.max(1) as f64,
        }
    }
}

/// Closed-loop publishing on every connection of the run.
pub fn closed(ctx: &Context) -> Publishing {
    Publishing::Closed {
        connections: ctx.connections,
    }
}

/// A new tenant with one active webhook per URL.
pub async fn with_webhooks(
    app: &BenchApp,
    tenant: &str,
    urls: &[String],
) -> anyhow::Result<Tenant> {
    let tenant = app.api.tenant(tenant).await?;
    for (n, url) in urls.iter().enumerate() {
        app.api
            .webhook(&tenant, &format!("receiver-{n}"), url)
            .await?;
    }
    Ok(tenant)
}

/// One flow of single-event publishes to `tenant`, watched on `paths` of `receiver`, and the
/// CPU this process used meanwhile.
pub async fn measure(
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

/// The report of a delivery scenario from its flow: the shared figures, and notes on what did
/// not complete or drain.
#[allow(clippy::too_many_arguments)]
pub fn report(
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
