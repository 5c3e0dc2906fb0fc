//! Build, then run: [`App::build`] connects and migrates the store and binds the listener
//! (so port 0 works and tests know the port); [`App::run`] serves until the shutdown token
//! is cancelled and returns once every task it started has stopped.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::api::rate::WriteLimiter;
use crate::api::serve::{ServeLimits, serve};
use crate::api::{self, AppState};
use crate::config::{Config, redact_password};
use crate::delivery::{self, Claims, Clock, Wakeup};
use crate::domain::health::HealthPolicy;
use crate::domain::ids::NodeId;
use crate::ingest::Ingest;
use crate::store::{self, Store};
use crate::telemetry::metrics_handle;

/// Connects to the database a URL names and applies its migrations.
pub async fn open_store(database_url: &str) -> anyhow::Result<Arc<dyn Store>> {
    open_store_with(database_url, HealthPolicy::default()).await
}

/// [`open_store`] for a server, whose attempt results move health as `health` says.
pub async fn open_store_with(
    database_url: &str,
    health: HealthPolicy,
) -> anyhow::Result<Arc<dyn Store>> {
    let store = store::connect_with(database_url, health)
        .await
        .with_context(|| format!("cannot open the database {}", redact_password(database_url)))?;
    store
        .migrate()
        .await
        .context("cannot migrate the database")?;
    Ok(store)
}

pub struct App {
    listener: TcpListener,
    state: AppState,
    /// The node's claims, shared by the ingest writer and the dispatcher `run` starts.
    claims: Claims,
    tracker: TaskTracker,
}

impl App {
    pub async fn build(config: Config) -> anyhow::Result<App> {
        let store = open_store_with(&config.database_url, config.health_policy()).await?;
        let listener = TcpListener::bind(&config.listen)
            .await
            .with_context(|| format!("cannot listen on {}", config.listen))?;
        let tracker = TaskTracker::new();
        let wakeup = Wakeup::default();
        let config = Arc::new(config);
        let claims = Claims::new(
            store.clone(),
            config.clone(),
            NodeId::generate(),
            Clock::system(),
        )?;
        let ingest = Ingest::start(
            store.clone(),
            store::concurrent_publishes(&config.database_url),
            wakeup.clone(),
            store::claims_when_publishing(&config.database_url).then(|| claims.clone()),
            &tracker,
        );
        let state = AppState {
            store,
            ingest,
            metrics: metrics_handle(),
            tokens: Default::default(),
            wakeup,
            partner_writes: Arc::new(WriteLimiter::new(
                config.partner_write_rate,
                config.partner_write_burst,
            )),
            config,
        };
        Ok(App {
            listener,
            state,
            claims,
            tracker,
        })
    }

    /// The address actually bound (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("a bound listener has an address")
    }

    /// Serves until `shutdown` is cancelled, then lets in-flight requests finish.
    pub async fn run(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let App {
            listener,
            state,
            claims,
            tracker,
        } = self;
        delivery::start(
            state.store.clone(),
            state.config.clone(),
            claims,
            state.wakeup.clone(),
            &tracker,
            shutdown.clone(),
        )
        .await
        .context("cannot start delivery")?;
        let limits = ServeLimits::of(&state.config);
        let router = api::router(state);
        serve(listener, router, limits, shutdown).await;
        // The router (and with it the last ingest handle) is gone, so the ingest writer drains
        // and stops; the dispatcher saw the same cancellation and finishes or releases its work.
        tracker.close();
        tracker.wait().await;
        Ok(())
    }
}
