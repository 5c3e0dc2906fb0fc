//! The Herald under test, started in this process on 127.0.0.1:0 with a temporary store
//! ([`BenchApp`]), and the calls the scenarios make to set it up and check it
//! ([`HeraldApi`]): tenants and tokens through the store, webhooks and counts over HTTP.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use herald::app::App;
use herald::config::Config;
use herald::domain::ids::TenantId;
use herald::domain::keys::{new_token, token_hash};
use herald::domain::scope::Scope;
use herald::store::{self, NewToken, Store, TokenKind};
use serde_json::{Value, json};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::database::{DatabaseChoice, TempDatabase};

/// Delays after attempts 1..5: a failed attempt comes back within a second, so the
/// failing-receiver scenario ends in seconds.
pub const SHORT_RETRY_SCHEDULE: &str = "100ms,200ms,400ms,800ms,1s";

/// The `HERALD_*` settings of every benchmark app: its store, port 0, plain-http loopback
/// receivers allowed, the short retry schedule; then `extra` (which wins).
pub fn settings(database_url: &str, extra: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut vars: Vec<(String, String)> = [
        ("HERALD_DATABASE_URL", database_url),
        ("HERALD_LISTEN", "127.0.0.1:0"),
        ("HERALD_ALLOW_HTTP", "true"),
        ("HERALD_ALLOW_PRIVATE_TARGETS", "true"),
        ("HERALD_RETRY_SCHEDULE", SHORT_RETRY_SCHEDULE),
    ]
    .iter()
    .chain(extra)
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    // Later pairs win in Config::load; keep only the last of each name for clarity.
    let mut seen = std::collections::HashSet::new();
    vars.reverse();
    vars.retain(|(k, _)| seen.insert(k.clone()));
    vars.reverse();
    vars
}

/// A tenant and its partner token (all four partner scopes).
#[derive(Debug, Clone)]
pub struct Tenant {
    pub name: String,
    pub token: String,
}

/// What the scenarios call on a running Herald, wherever it runs.
#[derive(Clone)]
pub struct HeraldApi {
    /// `http://127.0.0.1:PORT`
    pub base: String,
    /// Keep-alive HTTP/1.1 client shared by every request of the benchmark.
    pub client: reqwest::Client,
    /// A producer token (`events:publish`).
    pub producer: String,
    store: Arc<dyn Store>,
}

impl HeraldApi {
    /// Opens the store at `database_url` (already migrated by Herald) and makes a producer
    /// token; `base` is where Herald listens.
    pub async fn connect(database_url: &str, base: String) -> anyhow::Result<HeraldApi> {
        let store = store::connect(database_url)
            .await
            .context("cannot open Herald's store")?;
        let producer = create_token(store.as_ref(), TokenKind::Producer, None).await?;
        Ok(HeraldApi {
            base,
            client: http_client()?,
            producer,
            store,
        })
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    /// Creates a tenant and a partner token for it.
    pub async fn tenant(&self, name: &str) -> anyhow::Result<Tenant> {
        self.store
            .create_tenant(&TenantId::from(name))
            .await
            .with_context(|| format!("cannot create tenant {name}"))?;
        let token = create_token(self.store.as_ref(), TokenKind::Partner, Some(name)).await?;
        Ok(Tenant {
            name: name.to_string(),
            token,
        })
    }

    /// Creates an active webhook subscribed to every event type; returns its id.
    pub async fn webhook(&self, tenant: &Tenant, name: &str, url: &str) -> anyhow::Result<Uuid> {
        let body = json!({"name": name, "url": url, "event_types": ["*"], "is_active": true});
        let response = self
            .client
            .post(self.url("/v1/webhooks"))
            .bearer_auth(&tenant.token)
            .json(&body)
            .send()
            .await?;
        let status = response.status();
        let answer: Value = response.json().await.unwrap_or(Value::Null);
        if status.as_u16() != 201 {
            bail!("creating webhook {name} answered {status}: {answer}");
        }
        answer["data"]["id"]
            .as_str()
            .and_then(|id| Uuid::parse_str(id).ok())
            .with_context(|| format!("no webhook id in {answer}"))
    }

    /// The tenant's events with this status, or all of them (the `total` of the events list).
    pub async fn count_events(&self, tenant: &Tenant, status: Option<&str>) -> anyhow::Result<u64> {
        let filter = status.map_or(String::new(), |s| format!("&status={s}"));
        let response = self
            .client
            .get(self.url(&format!("/v1/webhooks/events?limit=1{filter}")))
            .bearer_auth(&tenant.token)
            .send()
            .await?;
        let answer: Value = response.json().await?;
        answer["total"]
            .as_u64()
            .with_context(|| format!("no total in {answer}"))
    }

    /// Polls until the tenant has at least `count` events with `status`, or `within` passed;
    /// returns the last count seen.
    pub async fn wait_for_events(
        &self,
        tenant: &Tenant,
        status: &str,
        count: u64,
        within: Duration,
    ) -> anyhow::Result<u64> {
        let deadline = Instant::now() + within;
        loop {
            let seen = self.count_events(tenant, Some(status)).await?;
            if seen >= count || Instant::now() >= deadline {
                return Ok(seen);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// The client of every benchmark request: HTTP/1.1, keep-alive, no idle limit, no proxy.
pub fn http_client() -> anyhow::Result<reqwest::Client> {
    Ok(reqwest::Client::builder()
        .tcp_nodelay(true)
        .no_proxy()
        .timeout(Duration::from_secs(60))
        .build()?)
}

async fn create_token(
    store: &dyn Store,
    kind: TokenKind,
    tenant: Option<&str>,
) -> anyhow::Result<String> {
    let scopes = match kind {
        TokenKind::Producer => vec![Scope::EventsPublish],
        TokenKind::Partner => Scope::PARTNER_DEFAULT.to_vec(),
    };
    let token = new_token();
    store
        .create_token(NewToken {
            id: Uuid::new_v4().into(),
            hash: token_hash(&token),
            kind,
            tenant: tenant.map(TenantId::from),
            scopes,
        })
        .await
        .context("cannot create a token")?;
    Ok(token)
}

/// A Herald app in this process (`App::build` then `App::run`) on its own temporary store.
pub struct BenchApp {
    pub api: HeraldApi,
    shutdown: CancellationToken,
    server: JoinHandle<anyhow::Result<()>>,
    database: TempDatabase,
}

impl BenchApp {
    /// Starts an app with the benchmark settings plus `extra` `HERALD_*` pairs.
    pub async fn start(choice: &DatabaseChoice, extra: &[(&str, &str)]) -> anyhow::Result<Self> {
        let mut database = TempDatabase::create(choice).await?;
        match BenchApp::start_on(&database.url, extra).await {
            Ok((api, shutdown, server)) => Ok(BenchApp {
                api,
                shutdown,
                server,
                database,
            }),
            Err(error) => {
                let _ = database.remove().await;
                Err(error)
            }
        }
    }

    async fn start_on(
        database_url: &str,
        extra: &[(&str, &str)],
    ) -> anyhow::Result<(HeraldApi, CancellationToken, JoinHandle<anyhow::Result<()>>)> {
        let config = Config::load(None, settings(database_url, extra), &[])?;
        let app = App::build(config).await?;
        let base = format!("http://{}", app.local_addr());
        let shutdown = CancellationToken::new();
        let server = tokio::spawn(app.run(shutdown.clone()));
        match HeraldApi::connect(database_url, base).await {
            Ok(api) => Ok((api, shutdown, server)),
            Err(error) => {
                shutdown.cancel();
                let _ = server.await;
                Err(error)
            }
        }
    }

    /// Stops the app gracefully, then removes its store.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        self.shutdown.cancel();
        let stopped = (&mut self.server).await;
        let removed = self.database.remove().await;
        stopped.context("the Herald task panicked")??;
        removed
    }
}

impl Drop for BenchApp {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}
