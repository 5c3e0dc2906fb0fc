//! One run: the settings every scenario reads ([`Context`]), which scenarios run and in what
//! order, and the report at the end.

use std::time::Duration;

use anyhow::bail;
use serde_json::json;

use crate::Args;
use crate::app::{BenchApp, SHORT_RETRY_SCHEDULE};
use crate::database::DatabaseChoice;
use crate::report::{self, Document, Failure, ScenarioReport};
use crate::steady::{self, STEADY_300, STEADY_1000};
use crate::system::Machine;
use crate::{delivery, ingest, isolation, resources};

/// Everything a scenario needs to know about the run.
pub struct Context {
    pub database: DatabaseChoice,
    pub duration: Duration,
    pub connections: usize,
    pub smoke: bool,
    pub batch_size: usize,
    pub steady_rate_per_s: u64,
    /// Publishers hold off while more deliveries than this are outstanding.
    pub max_backlog: u64,
    pub drain_within: Duration,
    pub waiting_deliveries: u64,
    /// The longest the resources scenario spends filling the waiting queue.
    pub fill_within: Duration,
    pub idle: Duration,
    /// Retry delays of the in-process apps (the failing-receiver scenario waits for them).
    pub retry_schedule: &'static str,
    /// Per-attempt timeout of the isolation scenario, so the black hole frees its slots.
    pub isolation_timeout: &'static str,
    /// Events with ids of one 60-bit prefix stored before the colliding-ids scenario
    /// publishes more of them.
    pub colliding_stored: u64,
}

impl Context {
    fn new(args: &Args) -> anyhow::Result<Context> {
        let smoke = args.smoke;
        let duration = args.duration.unwrap_or(if smoke { 0.3 } else { 10.0 });
        if !(duration > 0.0 && duration <= 3_600.0) {
            bail!("--duration must be from 0 to 3600 seconds");
        }
        let connections = args.connections.unwrap_or(if smoke { 4 } else { 64 });
        if !(1..=4_096).contains(&connections) {
            bail!("--connections must be from 1 to 4096");
        }
        Ok(Context {
            database: DatabaseChoice::from_url(args.database_url.as_deref())?,
            duration: Duration::from_secs_f64(duration),
            connections,
            smoke,
            batch_size: 100,
            steady_rate_per_s: if smoke { 200 } else { 1_000 },
            max_backlog: args.max_backlog.unwrap_or(if smoke { 200 } else { 1_000 }),
            drain_within: Duration::from_secs(if smoke { 20 } else { 60 }),
            waiting_deliveries: args
                .waiting
                .unwrap_or(if smoke { 2_000 } else { 1_000_000 }),
            fill_within: Duration::from_secs(args.fill_within.unwrap_or(if smoke {
                20
            } else {
                120
            })),
            idle: Duration::from_millis(if smoke { 500 } else { 5_000 }),
            retry_schedule: if smoke {
                "20ms,20ms,20ms,20ms,20ms"
            } else {
                SHORT_RETRY_SCHEDULE
            },
            isolation_timeout: if smoke { "500ms" } else { "2s" },
            colliding_stored: if smoke { 200 } else { 3_000 },
        })
    }
}

/// The scenarios, in the order they run.
const SCENARIOS: [(char, &str); 12] = [
    ('a', "raw"),
    ('b', "ingest_single"),
    ('c', "ingest_batch"),
    ('d', "end_to_end"),
    ('e', "steady_latency"),
    ('f', "fan_out"),
    ('g', "failing_receiver"),
    ('h', "isolation"),
    ('i', "resources"),
    ('j', "colliding_ids"),
    (STEADY_300.letter, STEADY_300.id),
    (STEADY_1000.letter, STEADY_1000.id),
];

fn select(names: &[String]) -> anyhow::Result<Vec<(char, &'static str)>> {
    if names.is_empty() {
        return Ok(SCENARIOS.to_vec());
    }
    let mut chosen = Vec::new();
    for name in names.iter().map(|n| n.trim().to_ascii_lowercase()) {
        match SCENARIOS
            .iter()
            .find(|(letter, id)| name == letter.to_string() || name == *id)
        {
            Some(scenario) => chosen.push(*scenario),
            None => bail!(
                "unknown scenario {name:?}; expected one of {}",
                SCENARIOS
                    .iter()
                    .map(|(l, id)| format!("{l} ({id})"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        }
    }
    chosen.sort();
    chosen.dedup();
    Ok(chosen)
}

async fn run_one(letter: char, ctx: &Context) -> anyhow::Result<ScenarioReport> {
    match letter {
        'a' => ingest::raw(ctx).await,
        'b' => ingest::single(ctx).await,
        'c' => ingest::batch(ctx).await,
        'd' => delivery::end_to_end(ctx).await,
        'e' => delivery::steady(ctx).await,
        'f' => delivery::fan_out(ctx).await,
        'g' => delivery::failing(ctx).await,
        'h' => isolation::isolation(ctx).await,
        'i' => resources::resources(ctx).await,
        'j' => ingest::colliding(ctx).await,
        'k' => steady::steady(ctx, &STEADY_300).await,
        _ => steady::steady(ctx, &STEADY_1000).await,
    }
}

/// Runs the benchmark and prints its report.
pub async fn run(args: Args) -> anyhow::Result<()> {
    let ctx = Context::new(&args)?;
    let selected = select(&args.scenarios)?;
    let machine = Machine::describe();
    eprintln!(
        "Herald benchmark: {} store, {} CPUs ({}), {} connections, {:.1} s per scenario{}",
        ctx.database.label(),
        machine.cpus,
        machine.cpu_model,
        ctx.connections,
        ctx.duration.as_secs_f64(),
        if ctx.smoke { ", smoke mode" } else { "" }
    );
    let mut scenarios = Vec::new();
    let mut failures = Vec::new();
    for (letter, id) in selected {
        match run_one(letter, &ctx).await {
            Ok(report) => scenarios.push(report),
            Err(error) => {
                eprintln!("{letter}. {id}: FAILED: {error:#}");
                failures.push(Failure {
                    id,
                    letter,
                    error: format!("{error:#}"),
                });
            }
        }
    }
    steady::compare_with_saturation(&mut scenarios);
    let document = Document {
        // Herald and its benchmark share the workspace version.
        herald_version: env!("CARGO_PKG_VERSION"),
        database: ctx.database.label(),
        machine,
        settings: json!({
            "duration_s": ctx.duration.as_secs_f64(),
            "connections": ctx.connections,
            "smoke": ctx.smoke,
            "batch_size": ctx.batch_size,
            "steady_rate_per_s": ctx.steady_rate_per_s,
            "max_backlog": ctx.max_backlog,
            "waiting_deliveries": ctx.waiting_deliveries,
            "fill_within_s": ctx.fill_within.as_secs(),
            "retry_schedule": ctx.retry_schedule,
            "isolation_delivery_timeout": ctx.isolation_timeout,
            "colliding_stored": ctx.colliding_stored,
        }),
        scenarios,
        failures,
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&document)?);
    } else {
        print!("{}", report::render_table(&document));
    }
    if !document.failures.is_empty() {
        bail!("{} scenario(s) could not run", document.failures.len());
    }
    Ok(())
}

/// Starts an in-process app with the benchmark settings plus `extra`, runs `body` on it,
/// then stops it and removes its store, whatever `body` returned.
pub async fn with_app<T>(
    ctx: &Context,
    extra: &[(&str, &str)],
    body: impl AsyncFnOnce(&BenchApp) -> anyhow::Result<T>,
) -> anyhow::Result<T> {
    let mut settings = vec![("HERALD_RETRY_SCHEDULE", ctx.retry_schedule)];
    settings.extend_from_slice(extra);
    let app = BenchApp::start(&ctx.database, &settings).await?;
    let result = body(&app).await;
    let stopped = app.stop().await;
    let value = result?;
    stopped?;
    Ok(value)
}
