//! `herald-bench`: starts Herald (the `herald` library) on temporary stores with a built-in
//! receiver and load clients, runs the scenarios and reports what it measured, as a table or
//! one JSON document. It is a measuring tool, not a test: it fails only when a scenario cannot
//! run at all. What the figures are compared with is in this crate's README, not here.

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod app;
mod calls;
mod child;
mod database;
mod delivery;
mod flow;
mod ingest;
mod isolation;
mod load;
mod progress;
mod receiver;
mod report;
mod resources;
mod run;
mod steady;
mod system;

use std::process::ExitCode;

use clap::Parser;

/// `herald-bench serve ...` is Herald's own command line (`herald serve ...`). The resources
/// and steady-rate scenarios start Herald as a child process this way, so that the CPU and
/// memory they read are Herald's alone, and the child runs exactly the code being
/// benchmarked.
pub const SERVE: &str = "serve";

/// The flags of `herald-bench`.
#[derive(Parser, Debug)]
#[command(
    name = "herald-bench",
    version,
    about = "Benchmark Herald on a temporary store with a built-in receiver"
)]
pub struct Args {
    /// A PostgreSQL database to run on (`postgres://...`): each app gets a fresh schema in
    /// it, dropped at the end [default: a temporary SQLite file].
    #[arg(long, value_name = "URL")]
    database_url: Option<String>,
    /// Seconds each scenario publishes for [default: 10; 0.3 with --smoke].
    #[arg(long, value_name = "SECS")]
    duration: Option<f64>,
    /// Concurrent keep-alive connections of the clients [default: 64; 4 with --smoke].
    #[arg(long, value_name = "N")]
    connections: Option<usize>,
    /// Scenarios to run, by letter or name, comma-separated [default: all]: a raw,
    /// b ingest_single, c ingest_batch, d end_to_end, e steady_latency, f fan_out,
    /// g failing_receiver, h isolation, i resources, j colliding_ids, k steady_300,
    /// l steady_1000.
    #[arg(long, value_name = "LIST", value_delimiter = ',')]
    scenarios: Vec<String>,
    /// Deliveries left waiting in the resources scenario [default: 1000000; 2000 with
    /// --smoke].
    #[arg(long, value_name = "N")]
    waiting: Option<u64>,
    /// The longest the resources scenario spends building that queue; it reports how many
    /// deliveries it reached [default: 120; 20 with --smoke].
    #[arg(long, value_name = "SECS")]
    fill_within: Option<u64>,
    /// In the delivery scenarios, publishers hold off while more deliveries than this are
    /// outstanding [default: 1000; 200 with --smoke].
    #[arg(long, value_name = "N")]
    max_backlog: Option<u64>,
    /// A few seconds in all with tiny counts, to keep the benchmark working (CI); its
    /// figures are not measurements of anything.
    #[arg(long)]
    smoke: bool,
    /// Print one JSON document on stdout instead of the table.
    #[arg(long)]
    json: bool,
}

fn main() -> ExitCode {
    if std::env::args_os().nth(1).is_some_and(|arg| arg == SERVE) {
        return herald::cli::main();
    }
    let args = Args::parse();
    herald::telemetry::init_logging();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run::run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}
