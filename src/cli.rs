//! The `herald` command line: `serve`, `migrate`, `tenant create|list`,
//! `token create|list|revoke`. Results go to stdout (with `--json`, only the JSON); logs and
//! errors go to stderr.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::{Args, Parser, Subcommand};
use serde_json::json;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::app::{App, open_store};
use crate::config::Config;
use crate::domain::keys::{new_token, token_hash};
use crate::domain::scope::Scope;
use crate::domain::tenant::is_valid_tenant_name;
use crate::domain::time::format_ms;
use crate::store::{NewToken, Store, StoreError, TokenKind};
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

#[derive(Subcommand)]
enum TenantCommand {
    /// Create a tenant; NAME matches [a-z0-9][a-z0-9_-]{0,62}.
    Create {
        name: String,
        #[arg(long)]
        json: bool,
    },
    /// List tenants.
    List {
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum TokenCommand {
    /// Create a token; it is printed once and stored only as a hash.
    Create {
        /// Partner token for this tenant.
        #[arg(
            long,
            required_unless_present = "producer",
            conflicts_with = "producer"
        )]
        tenant: Option<String>,
        /// Partner scope (repeatable): webhooks:read, webhooks:write, events:read,
        /// events:retry. Default: all four.
        #[arg(long = "scope", value_name = "SCOPE")]
        scopes: Vec<String>,
        /// Producer token (scope events:publish, any tenant).
        #[arg(long, conflicts_with = "scopes")]
        producer: bool,
        /// Print only {"id":...,"token":...}.
        #[arg(long)]
        json: bool,
    },
    /// List tokens (never the tokens themselves).
    List {
        #[arg(long)]
        json: bool,
    },
    /// Revoke a token by id; it is refused within a second.
    Revoke { id: String },
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
    }
}

async fn serve(config: Config) -> anyhow::Result<()> {
    let database_url = config.database_url.clone();
    let app = App::build(config).await?;
    tracing::info!(address = %app.local_addr(), database = %database_url, "Herald is listening");
    let shutdown = CancellationToken::new();
    tokio::spawn(cancel_on_signal(shutdown.clone()));
    app.run(shutdown).await?;
    tracing::info!("Herald stopped");
    Ok(())
}

async fn cancel_on_signal(shutdown: CancellationToken) {
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
    tracing::info!("shutting down");
    shutdown.cancel();
}

async fn tenant(store: &dyn Store, command: TenantCommand) -> anyhow::Result<()> {
    match command {
        TenantCommand::Create { name, json } => {
            if !is_valid_tenant_name(&name) {
                bail!("invalid tenant name {name:?}: use [a-z0-9][a-z0-9_-]{{0,62}}");
            }
            let tenant = store
                .create_tenant(&name)
                .await
                .map_err(conflict_as_message)?;
            if json {
                println!(
                    "{}",
                    json!({"name": tenant.name, "createdAt": format_ms(tenant.created_at_ms)})
                );
            } else {
                println!("Created tenant {}", tenant.name);
            }
        }
        TenantCommand::List { json } => {
            let tenants = store.list_tenants().await?;
            if json {
                let rows: Vec<_> = tenants
                    .iter()
                    .map(|t| json!({"name": t.name, "createdAt": format_ms(t.created_at_ms)}))
                    .collect();
                println!("{}", serde_json::Value::Array(rows));
            } else {
                println!("{:<32} CREATED", "NAME");
                for t in tenants {
                    println!("{:<32} {}", t.name, format_ms(t.created_at_ms));
                }
            }
        }
    }
    Ok(())
}

async fn token(store: &dyn Store, command: TokenCommand) -> anyhow::Result<()> {
    match command {
        TokenCommand::Create {
            tenant,
            scopes,
            producer,
            json,
        } => {
            let (kind, scopes) = if producer {
                (TokenKind::Producer, vec![Scope::EventsPublish])
            } else {
                (TokenKind::Partner, partner_scopes(&scopes)?)
            };
            let token = new_token();
            let record = store
                .create_token(NewToken {
                    id: Uuid::new_v4(),
                    hash: token_hash(&token),
                    kind,
                    tenant,
                    scopes,
                })
                .await
                .map_err(conflict_as_message)?;
            if json {
                println!("{}", json!({"id": record.id, "token": token}));
            } else {
                let owner = match &record.tenant {
                    Some(tenant) => format!("tenant {tenant}"),
                    None => "producers (any tenant)".into(),
                };
                println!("Created {} token {} for {owner}.", kind.as_str(), record.id);
                println!("{token}");
                eprintln!("Store it now: it is not shown again.");
            }
        }
        TokenCommand::List { json } => {
            let tokens = store.list_tokens().await?;
            if json {
                let rows: Vec<_> = tokens
                    .iter()
                    .map(|t| {
                        json!({
                            "id": t.id, "kind": t.kind.as_str(), "tenant": t.tenant,
                            "scopes": t.scopes.iter().map(|s| s.as_str()).collect::<Vec<_>>(),
                            "createdAt": format_ms(t.created_at_ms),
                            "revokedAt": t.revoked_at_ms.map(format_ms),
                        })
                    })
                    .collect();
                println!("{}", serde_json::Value::Array(rows));
            } else {
                println!(
                    "{:<36}  {:<8}  {:<16}  {:<24}  {:<24}  SCOPES",
                    "ID", "KIND", "TENANT", "CREATED", "REVOKED"
                );
                for t in tokens {
                    let scopes: Vec<_> = t.scopes.iter().map(|s| s.as_str()).collect();
                    println!(
                        "{:<36}  {:<8}  {:<16}  {:<24}  {:<24}  {}",
                        t.id,
                        t.kind.as_str(),
                        t.tenant.as_deref().unwrap_or("-"),
                        format_ms(t.created_at_ms),
                        t.revoked_at_ms.map(format_ms).unwrap_or_else(|| "-".into()),
                        scopes.join(",")
                    );
                }
            }
        }
        TokenCommand::Revoke { id } => {
            let parsed =
                Uuid::parse_str(&id).with_context(|| format!("{id:?} is not a token id"))?;
            if !store.revoke_token(parsed).await? {
                bail!("no token with id {id}");
            }
            println!("Revoked token {parsed}");
        }
    }
    Ok(())
}

fn partner_scopes(names: &[String]) -> anyhow::Result<Vec<Scope>> {
    if names.is_empty() {
        return Ok(Scope::PARTNER_DEFAULT.to_vec());
    }
    let mut scopes = Vec::new();
    for name in names.iter().flat_map(|n| n.split(',')) {
        match Scope::parse(name.trim()) {
            Some(scope) if scope.is_partner_scope() => {
                if !scopes.contains(&scope) {
                    scopes.push(scope);
                }
            }
            _ => bail!(
                "unknown partner scope {name:?}: use webhooks:read, webhooks:write, events:read or events:retry"
            ),
        }
    }
    Ok(scopes)
}

fn conflict_as_message(error: StoreError) -> anyhow::Error {
    match error {
        StoreError::Conflict(message) => anyhow::anyhow!(message),
        other => other.into(),
    }
}
