//! The `herald` command line: `serve`, `migrate`, `tenant create|list`,
//! `token create|list|revoke`, and the operators' commands on a tenant's events and webhooks
//! (`events`, `webhooks`). Results go to stdout (with `--json`, only the JSON); logs and
//! errors go to stderr.

use std::path::PathBuf;
use std::process::ExitCode;

mod admin;
mod events;
mod instant;
mod output;
mod webhooks;

use anyhow::bail;
use clap::{Args, Parser, Subcommand};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use self::admin::{TenantCommand, TokenCommand, tenant, token};
use self::events::{EventsCommand, events};
use self::webhooks::{WebhooksCommand, webhooks};
use crate::app::{App, open_store};
use crate::config::Config;
use crate::domain::ids::TenantId;
use crate::store::Store;
use crate::telemetry::init_logging;

#[derive(Parser)]
#[command(
    name = "herald",
    version,
    about = "Herald: webhook notification service"
)]
struct Cli {
    /// TOML configuration file.
    #[arg(long, global = true, value_name = "PATH")]
    config: Option<PathBuf>,
    /// Database URL (`sqlite://PATH` or `postgres://...`); overrides HERALD_DATABASE_URL.
    #[arg(long, global = true, value_name = "URL")]
    database_url: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the API (migrating the database first).
    Serve(ServeArgs),
    /// Apply database migrations and exit.
    Migrate,
    /// Manage tenants (partners).
    #[command(subcommand)]
    Tenant(TenantCommand),
    /// Manage bearer tokens.
    #[command(subcommand)]
    Token(TokenCommand),
    /// Inspect and retry a tenant's events.
    #[command(subcommand)]
    Events(EventsCommand),
    /// Inspect a tenant's webhooks and their health.
    #[command(subcommand)]
    Webhooks(WebhooksCommand),
}

/// Flags of `serve`; each overrides its `HERALD_*` variable and the config file.
#[derive(Args, Default)]
struct ServeArgs {
    /// Address to serve on (HERALD_LISTEN).
    #[arg(long, value_name = "HOST:PORT")]
    listen: Option<String>,
    /// `false` makes every /v1/webhooks* route answer 503 (HERALD_NOTIFICATIONS_ENABLED).
    #[arg(long, value_name = "BOOL")]
    notifications_enabled: Option<String>,
    /// Webhook cap per tenant (HERALD_MAX_WEBHOOKS_PER_TENANT).
    #[arg(long, value_name = "N")]
    max_webhooks_per_tenant: Option<String>,
    /// Delays after attempts 1..N-1, e.g. 1s,5s,25s,2m,10m (HERALD_RETRY_SCHEDULE).
    #[arg(long, value_name = "DELAYS")]
    retry_schedule: Option<String>,
    /// Per-attempt timeout, e.g. 30s (HERALD_DELIVERY_TIMEOUT).
    #[arg(long, value_name = "DURATION")]
    delivery_timeout: Option<String>,
    /// Accept http:// webhook URLs (HERALD_ALLOW_HTTP); development only.
    #[arg(long, value_name = "BOOL", num_args = 0..=1, default_missing_value = "true")]
    allow_http: Option<String>,
    /// Deliver to loopback/private addresses (HERALD_ALLOW_PRIVATE_TARGETS); development only.
    #[arg(long, value_name = "BOOL", num_args = 0..=1, default_missing_value = "true")]
    allow_private_targets: Option<String>,
    /// How long delivery logs are kept, e.g. 7d (HERALD_LOG_RETENTION).
    #[arg(long, value_name = "DURATION")]
    log_retention: Option<String>,
    /// Attempts in flight at once on this node (HERALD_MAX_IN_FLIGHT).
    #[arg(long, value_name = "N")]
    max_in_flight: Option<String>,
    /// Attempts in flight at once to one webhook (HERALD_MAX_IN_FLIGHT_PER_WEBHOOK).
    #[arg(long, value_name = "N")]
    max_in_flight_per_webhook: Option<String>,
}

impl ServeArgs {
    fn flags(&self) -> Vec<(&'static str, String)> {
        [
            ("listen", &self.listen),
            ("notifications_enabled", &self.notifications_enabled),
            ("max_webhooks_per_tenant", &self.max_webhooks_per_tenant),
            ("retry_schedule", &self.retry_schedule),
            ("delivery_timeout", &self.delivery_timeout),
            ("allow_http", &self.allow_http),
            ("allow_private_targets", &self.allow_private_targets),
            ("log_retention", &self.log_retention),
            ("max_in_flight", &self.max_in_flight),
            ("max_in_flight_per_webhook", &self.max_in_flight_per_webhook),
        ]
        .into_iter()
        .filter_map(|(key, value)| value.clone().map(|v| (key, v)))
        .collect()
    }
}

/// Runs the command line and returns the process exit code.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let mut flags = match &cli.command {
        Command::Serve(args) => args.flags(),
        _ => Vec::new(),
    };
    if let Some(url) = &cli.database_url {
        flags.push(("database_url", url.clone()));
    }
    let config = Config::load(cli.config.as_deref(), std::env::vars(), &flags)?;
    match cli.command {
        Command::Serve(_) => serve(config).await,
        Command::Migrate => {
            open_store(&config.database_url).await?;
            println!("Database {} is up to date.", config.database_url);
            Ok(())
        }
        Command::Tenant(command) => {
            tenant(open_store(&config.database_url).await?.as_ref(), command).await
        }
        Command::Token(command) => {
            token(open_store(&config.database_url).await?.as_ref(), command).await
        }
        Command::Events(command) => {
            events(open_store(&config.database_url).await?.as_ref(), command).await
        }
        Command::Webhooks(command) => {
            webhooks(open_store(&config.database_url).await?.as_ref(), command).await
        }
    }
}

/// Fails with the producer API's message when `tenant` does not exist: a mistyped name would
/// otherwise look like a tenant with nothing in it.
async fn ensure_tenant(store: &dyn Store, tenant: &TenantId) -> anyhow::Result<()> {
    if !store
        .list_tenants()
        .await?
        .iter()
        .any(|t| t.name == *tenant)
    {
        bail!("Unknown tenant: {tenant}");
    }
    Ok(())
}

async fn serve(config: Config) -> anyhow::Result<()> {
    let database_url = config.database_url.clone();
    let app = App::build(config).await?;
    tracing::info!(address = %app.local_addr(), database = %database_url, "Herald is listening");
    let shutdown = CancellationToken::new();
    let signals = TaskTracker::new();
    signals.spawn(cancel_on_signal(shutdown.clone()));
    signals.close();
    let result = app.run(shutdown.clone()).await;
    // The app may stop on its own (an error at start-up); the signal task then ends too.
    shutdown.cancel();
    signals.wait().await;
    result?;
    tracing::info!("Herald stopped");
    Ok(())
}

/// Cancels `shutdown` on Ctrl-C or SIGTERM; returns when it is cancelled either way.
async fn cancel_on_signal(shutdown: CancellationToken) {
    tokio::select! {
        _ = shutdown.cancelled() => {}
        _ = signalled() => {
            tracing::info!("shutting down");
            shutdown.cancel();
        }
    }
}

/// Completes on the first Ctrl-C or SIGTERM.
async fn signalled() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut terminate =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                .expect("can install a SIGTERM handler");
        tokio::select! {
            _ = interrupt => {}
            _ = terminate.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = interrupt.await;
}
