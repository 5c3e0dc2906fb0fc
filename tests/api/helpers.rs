//! `TestApp`: a Herald app on port 0 with a fresh SQLite file, a tenant-and-token toolkit
//! working on the same database (as the CLI does), and an HTTP client.

use std::net::SocketAddr;
use std::sync::Arc;

use herald::app::App;
use herald::config::Config;
use herald::domain::ids::{TenantId, TokenId};
use herald::domain::keys::{new_token, token_hash};
use herald::domain::scope::Scope;
use herald::store::{NewToken, Store, TokenKind};
use reqwest::{Client, Method, RequestBuilder, Response};
use serde_json::Value;
use tempfile::TempDir;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

pub struct TestApp {
    pub address: SocketAddr,
    pub store: Arc<dyn Store>,
    pub client: Client,
    shutdown: CancellationToken,
    server: Option<JoinHandle<anyhow::Result<()>>>,
    vars: Vec<(String, String)>,
    dir: Option<TempDir>,
}

/// The store a test runs against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// The `HERALD_DATABASE_URL` among an app's settings.
fn database_url_of(vars: &[(String, String)]) -> &str {
    vars.iter()
        .find(|(k, _)| k == "HERALD_DATABASE_URL")
        .map(|(_, v)| v.as_str())
        .expect("a database URL")
}

/// The PostgreSQL server tests use, from `HERALD_TEST_DATABASE_URL`; `None` (after saying so
/// loudly) when it is not set. Under CI (`CI=true`) a missing server is a failure: a green
/// run there must have run the PostgreSQL tests.
pub fn test_database_url() -> Option<String> {
    match std::env::var("HERALD_TEST_DATABASE_URL") {
        Ok(url) if !url.is_empty() => Some(url),
        _ => {
            let ci = std::env::var("CI").is_ok_and(|v| v == "true" || v == "1");
            assert!(
                !ci,
                "HERALD_TEST_DATABASE_URL is not set under CI: the PostgreSQL tests must run"
            );
            // Written to the process's stderr directly, past the test harness's capture, so
            // the skip shows in every run's output; once per run is enough.
            static SAID: std::sync::Once = std::sync::Once::new();
            SAID.call_once(|| {
                use std::io::Write;
                let _ = writeln!(
                    std::io::stderr(),
                    "SKIPPED: HERALD_TEST_DATABASE_URL is not set, so the PostgreSQL tests \
                     (postgres::*, multinode::*) pass without running"
                );
            });
            None
        }
    }
}

/// A fresh, empty schema on the test PostgreSQL server; returns the URL that selects it.
/// Schemas of runs older than an hour are dropped on the way.
pub async fn fresh_postgres_schema(base_url: &str) -> String {
    use sqlx::Connection;
    let mut connection = sqlx::PgConnection::connect(base_url)
        .await
        .expect("the test PostgreSQL answers");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let stale: Vec<String> = sqlx::query_scalar(
        "SELECT nspname::text FROM pg_namespace WHERE nspname LIKE 'herald_test_%'",
    )
    .fetch_all(&mut connection)
    .await
    .unwrap_or_default();
    for schema in stale {
        let born: u64 = schema
            .split('_')
            .nth(2)
            .and_then(|s| s.parse().ok())
            .unwrap_or(now);
        if born + 3600 < now {
            let _ = sqlx::query(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"))
                .execute(&mut connection)
                .await;
        }
    }
    let schema = format!("herald_test_{now}_{}", Uuid::new_v4().simple());
    sqlx::query(&format!("CREATE SCHEMA {schema}"))
        .execute(&mut connection)
        .await
        .expect("schema created");
    let separator = if base_url.contains('?') { '&' } else { '?' };
    format!("{base_url}{separator}options[search_path]={schema}")
}

/// A migrated store on `backend`, without an app (`None`: no PostgreSQL server configured).
/// The directory holds the SQLite file.
pub async fn fresh_store_on(backend: Backend) -> Option<(Arc<dyn Store>, TempDir)> {
    let (url, dir) = fresh_database_on(backend).await?;
    let store = herald::app::open_store(&url).await.expect("store opens");
    Some((store, dir))
}

/// The URL of an empty database on `backend`, for a store to open (and open again); the
/// directory holds the SQLite file.
pub async fn fresh_database_on(backend: Backend) -> Option<(String, TempDir)> {
    let dir = tempfile::tempdir().expect("temporary directory");
    let url = match backend {
        Backend::Sqlite => format!("sqlite://{}", dir.path().join("herald.db").display()),
        Backend::Postgres => fresh_postgres_schema(&test_database_url()?).await,
    };
    Some((url, dir))
}

impl TestApp {
    /// An app on `backend` with settings overridden as `HERALD_*` variables would; `None`
    /// when the backend is PostgreSQL and no test server is configured.
    pub async fn spawn_on(backend: Backend, env: &[(&str, &str)]) -> Option<TestApp> {
        match backend {
            Backend::Sqlite => Some(TestApp::spawn_with(env).await),
            Backend::Postgres => {
                let url = fresh_postgres_schema(&test_database_url()?).await;
                Some(TestApp::spawn_on_database(&url, env).await)
            }
        }
    }

    /// An app on the database `url` names (which the test prepared).
    pub async fn spawn_on_database(url: &str, env: &[(&str, &str)]) -> TestApp {
        let mut vars: Vec<(String, String)> = vec![
            ("HERALD_DATABASE_URL".into(), url.to_string()),
            ("HERALD_LISTEN".into(), "127.0.0.1:0".into()),
        ];
        vars.extend(env.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        TestApp::start(vars, tempfile::tempdir().expect("temporary directory")).await
    }

    /// A SQLite app with settings overridden as `HERALD_*` variables would.
    pub async fn spawn_with(env: &[(&str, &str)]) -> TestApp {
        let dir = tempfile::tempdir().expect("temporary directory");
        let database_url = format!("sqlite://{}", dir.path().join("herald.db").display());
        let mut vars: Vec<(String, String)> = vec![
            ("HERALD_DATABASE_URL".into(), database_url),
            ("HERALD_LISTEN".into(), "127.0.0.1:0".into()),
        ];
        vars.extend(env.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        TestApp::start(vars, dir).await
    }

    /// Stops this app gracefully and starts a new one on the same database and settings.
    pub async fn restart(self) -> TestApp {
        self.halt().await.start().await
    }

    /// Stops this app gracefully, keeping its database and settings to start it again.
    pub async fn halt(mut self) -> HaltedApp {
        let dir = self.dir.take().expect("the app owns its directory");
        let vars = std::mem::take(&mut self.vars);
        self.stop().await;
        HaltedApp { vars, dir }
    }

    async fn start(vars: Vec<(String, String)>, dir: TempDir) -> TestApp {
        let database_url = database_url_of(&vars).to_string();
        let config = Config::load(None, vars.clone(), &[]).expect("test configuration is valid");
        let app = App::build(config).await.expect("app builds");
        let address = app.local_addr();
        let store = herald::store::connect(&database_url)
            .await
            .expect("store opens");
        let shutdown = CancellationToken::new();
        let server = tokio::spawn(app.run(shutdown.clone()));
        TestApp {
            address,
            store,
            client: Client::new(),
            shutdown,
            server: Some(server),
            vars,
            dir: Some(dir),
        }
    }

    /// The database this app runs on.
    pub fn database_url(&self) -> &str {
        database_url_of(&self.vars)
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.address, path)
    }

    pub async fn create_tenant(&self, name: &str) {
        self.store
            .create_tenant(&TenantId::from(name))
            .await
            .expect("tenant created");
    }

    /// A partner token for `tenant` with `scopes` (all four partner scopes when empty).
    pub async fn partner_token(&self, tenant: &str, scopes: &[Scope]) -> String {
        let scopes = if scopes.is_empty() {
            Scope::PARTNER_DEFAULT.to_vec()
        } else {
            scopes.to_vec()
        };
        self.token(TokenKind::Partner, Some(tenant), scopes).await.1
    }

    pub async fn producer_token(&self) -> String {
        self.token(TokenKind::Producer, None, vec![Scope::EventsPublish])
            .await
            .1
    }

    /// Creates a token; returns its id and the token.
    pub async fn token(
        &self,
        kind: TokenKind,
        tenant: Option<&str>,
        scopes: Vec<Scope>,
    ) -> (TokenId, String) {
        let token = new_token();
        let record = self
            .store
            .create_token(NewToken {
                id: Uuid::new_v4().into(),
                hash: token_hash(&token),
                kind,
                tenant: tenant.map(TenantId::from),
                scopes,
            })
            .await
            .expect("token created");
        (record.id, token)
    }

    /// A tenant with a full partner token.
    pub async fn partner(&self, tenant: &str) -> Partner<'_> {
        self.create_tenant(tenant).await;
        self.partner_of(tenant).await
    }

    /// A full partner token for a tenant that exists (after a restart, in an old database).
    pub async fn partner_of(&self, tenant: &str) -> Partner<'_> {
        let token = self.partner_token(tenant, &[]).await;
        Partner { app: self, token }
    }

    pub fn request(&self, method: Method, path: &str, token: &str) -> RequestBuilder {
        self.client
            .request(method, self.url(path))
            .bearer_auth(token)
    }

    /// Publishes an event as a producer; returns the status and body.
    pub async fn publish(&self, producer: &str, event: &Value) -> (u16, Value) {
        read(
            self.request(Method::POST, "/v1/events", producer)
                .json(event)
                .send()
                .await
                .unwrap(),
        )
        .await
    }

    /// Stops the server gracefully and waits for it.
    pub async fn stop(mut self) {
        self.shutdown.cancel();
        if let Some(server) = self.server.take() {
            server
                .await
                .expect("server task")
                .expect("server stops cleanly");
        }
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// An app stopped by [`TestApp::halt`]: its database, untouched while nothing runs on it,
/// and its settings.
pub struct HaltedApp {
    vars: Vec<(String, String)>,
    dir: TempDir,
}

impl HaltedApp {
    pub fn database_url(&self) -> &str {
        database_url_of(&self.vars)
    }

    /// A new app on the same database and settings.
    pub async fn start(self) -> TestApp {
        TestApp::start(self.vars, self.dir).await
    }
}

/// A tenant's partner token and shortcuts for its calls.
pub struct Partner<'a> {
    pub app: &'a TestApp,
    pub token: String,
}

impl Partner<'_> {
    pub async fn get(&self, path: &str) -> (u16, Value) {
        read(
            self.app
                .request(Method::GET, path, &self.token)
                .send()
                .await
                .unwrap(),
        )
        .await
    }

    pub async fn post(&self, path: &str, body: &Value) -> (u16, Value) {
        read(
            self.app
                .request(Method::POST, path, &self.token)
                .json(body)
                .send()
                .await
                .unwrap(),
        )
        .await
    }

    pub async fn put(&self, path: &str, body: &Value) -> (u16, Value) {
        read(
            self.app
                .request(Method::PUT, path, &self.token)
                .json(body)
                .send()
                .await
                .unwrap(),
        )
        .await
    }

    pub async fn delete(&self, path: &str) -> (u16, Value) {
        read(
            self.app
                .request(Method::DELETE, path, &self.token)
                .send()
                .await
                .unwrap(),
        )
        .await
    }

    /// Polls the event's status route until it shows `status`; returns that answer.
    pub async fn wait_for_status(&self, event: &str, status: &str) -> Value {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
        loop {
            let (code, body) = self
                .get(&format!("/v1/webhooks/events/{event}/status"))
                .await;
            if code == 200 && body["status"] == status {
                return body;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "event {event} never reached {status}; last: {code} {body}"
            );
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    }

    /// Creates a webhook and returns the `data` object of the response.
    pub async fn create_webhook(&self, body: &Value) -> Value {
        let (status, response) = self.post("/v1/webhooks", body).await;
        assert_eq!(status, 201, "{response}");
        response["data"].clone()
    }
}

/// A webhook create body with a valid https URL.
pub fn webhook_body(name: &str, event_types: &[&str]) -> Value {
    serde_json::json!({
        "name": name,
        "url": format!("https://hooks.example.com/{name}"),
        "event_types": event_types,
    })
}

/// Status and JSON body of a response (`Value::Null` when the body is not JSON).
pub async fn read(response: Response) -> (u16, Value) {
    let status = response.status().as_u16();
    let text = response.text().await.unwrap_or_default();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

/// Asserts an error response: status and exact message.
pub fn assert_error(actual: &(u16, Value), status: u16, message: &str) {
    assert_eq!(actual.0, status, "status of {}", actual.1);
    assert_eq!(actual.1["message"], message, "message of {}", actual.1);
}

/// Waits until `store` has no delivery work left, on any node: no event waiting for its
/// fan-out, no delivery queued (a retry or a catch-up included) or in flight (an attempt's
/// row stays in flight until its result is written), no recovery running. From then on no
/// partner is called until something new is published or retried, so what a test counts
/// then is final: absence shown by a state nothing can leave, not by waiting a while.
pub async fn wait_until_idle(store: &dyn Store) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let depth = store.queue_depth().await.expect("queue depth");
        let left = (
            depth.pending_events,
            depth.queued,
            depth.in_flight,
            depth.recoveries_running,
        );
        if left == (0, 0, 0, 0) {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "never idle: (pending, queued, in flight, recoveries) = {left:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}
