//! The only place with SQL. One interface in use-case words ([`Store`]) over the backends;
//! the backend is chosen from the database URL and the rest of Herald never knows which it
//! talks to, nor how it batches its writes. Instants are Unix milliseconds in every backend.

mod error;
mod health;
mod model;
mod notifications;
mod postgres;
mod recovery;
mod results;
mod rows;
mod sql;
mod sqlite;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use async_trait::async_trait;
use tokio_util::sync::CancellationToken;

pub use crate::domain::event::NewEvent;
use crate::domain::health::HealthPolicy;
use crate::domain::ids::{EventId, NodeId, TenantId, TokenId, WebhookId};
pub use error::{PublishFailure, StoreError, StoreResult};
pub use model::{
    AttemptRecord, ClaimRequest, ClaimedDelivery, ClaimedWork, DeliveryLog, DirectPublishOutcome,
    Event, EventPage, EventQuery, MAX_EVENT_LOGS, NewToken, NewWebhook, PublishOutcome, QueueDepth,
    RecoverOutcome, RetryOutcome, Tenant, Token, TokenKind, Webhook, WebhookChange, pending_event,
};
pub use notifications::{
    ClaimedNotification, NotificationOutcome, NotificationRecord, NotificationStore,
};
pub use postgres::PostgresStore;
pub use recovery::RecoveryStep;
pub use sqlite::SqliteStore;

/// How much a write transaction's commit must survive, the same on both backends.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Commit {
    /// Acknowledged to a client: flushed to disk at commit (SQLite `synchronous = FULL`,
    /// PostgreSQL's default `synchronous_commit`), so it survives a crash of the machine.
    Durable,
    /// Dispatcher bookkeeping (claims, fan-out, attempt results): a crash loses at most work
    /// that is then done again (a lease runs out, the attempt is made again), so its commit
    /// does not wait for a flush of its own (SQLite `synchronous = NORMAL`, PostgreSQL
    /// `synchronous_commit = off`); the next durable commit flushes it too.
    Relaxed,
}

/// Schema, health, tenants and tokens.
#[async_trait]
pub trait AccessStore: Send + Sync {
    /// Applies the embedded migrations of this backend.
    async fn migrate(&self) -> StoreResult<()>;
    /// Whether the database answers.
    async fn ping(&self) -> StoreResult<()>;
    async fn create_tenant(&self, name: &TenantId) -> StoreResult<Tenant>;
    async fn list_tenants(&self) -> StoreResult<Vec<Tenant>>;
    async fn create_token(&self, token: NewToken) -> StoreResult<Token>;
    async fn list_tokens(&self) -> StoreResult<Vec<Token>>;
    /// Marks a token revoked; false when no such token exists.
    async fn revoke_token(&self, id: TokenId) -> StoreResult<bool>;
    /// The token with this hash, revoked or not.
    async fn find_token(&self, hash: &str) -> StoreResult<Option<Token>>;
}

/// A tenant's webhooks and their delivery logs.
#[async_trait]
pub trait WebhookStore: Send + Sync {
    async fn list_webhooks(&self, tenant: &TenantId) -> StoreResult<Vec<Webhook>>;
    async fn find_webhook(&self, tenant: &TenantId, id: WebhookId) -> StoreResult<Option<Webhook>>;
    /// Creates a webhook unless the tenant already has `max_per_tenant` (then `Ok(None)`).
    async fn create_webhook(
        &self,
        webhook: NewWebhook,
        max_per_tenant: u32,
    ) -> StoreResult<Option<Webhook>>;
    /// Applies a change; `Ok(None)` when the tenant has no such webhook.
    async fn change_webhook(
        &self,
        tenant: &TenantId,
        id: WebhookId,
        change: WebhookChange,
    ) -> StoreResult<Option<Webhook>>;
    /// Deletes a webhook and ends its unfinished deliveries as failed; false when not found.
    async fn delete_webhook(&self, tenant: &TenantId, id: WebhookId) -> StoreResult<bool>;
    /// Gives every event of the tenant created in `[since_ms, until_ms)` whose delivery to
    /// the webhook ended failed a new delivery cycle to it, as a retry naming it would. Works
    /// through the first windows itself and leaves the rest to
    /// [`DeliveryStore::continue_recoveries`]; returns how many events it queues in all.
    async fn recover_webhook(
        &self,
        tenant: &TenantId,
        id: WebhookId,
        since_ms: i64,
        until_ms: i64,
    ) -> StoreResult<RecoverOutcome>;
    /// The webhook's delivery logs, newest first.
    async fn webhook_logs(
        &self,
        tenant: &TenantId,
        id: WebhookId,
        limit: u32,
    ) -> StoreResult<Vec<DeliveryLog>>;
}

/// Publishing events and the partner's view of them.
#[async_trait]
pub trait EventStore: Send + Sync {
    /// Stores events durably (committed when this returns), idempotent on `(tenant, eventId)`.
    /// One outcome per input, in order; nothing is stored when it fails.
    async fn publish_events(
        &self,
        events: Vec<NewEvent>,
    ) -> Result<Vec<PublishOutcome>, PublishFailure>;
    /// [`EventStore::publish_events`], and in the same commit, where the backend's writes
    /// allow it, the fan-out and claim [`DeliveryStore::claim`] would make (results waiting
    /// are left to the dispatcher's claims): an event published to an idle
    /// node is claimed by the transaction that stores it, instead of by a transaction of its
    /// own after a wake-up. `None` when the backend does not (PostgreSQL, whose publishes
    /// commit side by side in one statement each; its dispatchers claim on notification).
    async fn publish_and_claim(
        &self,
        events: Vec<NewEvent>,
        _claim: &ClaimRequest,
    ) -> Result<(Vec<PublishOutcome>, Option<ClaimedWork>), PublishFailure> {
        Ok((self.publish_events(events).await?, None))
    }
    async fn list_events(&self, query: &EventQuery) -> StoreResult<EventPage>;
    /// The tenant's event whose record id or business eventId is `id`.
    async fn find_event(&self, tenant: &TenantId, id: &str) -> StoreResult<Option<Event>>;
    /// The newest [`MAX_EVENT_LOGS`] delivery logs of an event, oldest first.
    async fn event_logs(&self, tenant: &TenantId, event: EventId) -> StoreResult<Vec<DeliveryLog>>;
    /// Where the tenant's event with record id `event` stands in the newest-first order of
    /// [`EventQuery::before_cursor`]; `None` when the tenant has no such event.
    async fn event_position(&self, tenant: &TenantId, event: EventId) -> StoreResult<Option<i64>>;
    /// Starts a new delivery cycle for an event, to one webhook or to every active subscriber.
    async fn retry_event(
        &self,
        tenant: &TenantId,
        event: EventId,
        webhook: Option<WebhookId>,
    ) -> StoreResult<RetryOutcome>;
    /// Stores `event` already fanned out to the webhook `webhook` of the event's tenant, and
    /// to it alone, whatever its event types: in one transaction, the event (`processing`)
    /// and one delivery due now. The webhook must be active.
    async fn publish_to_webhook(
        &self,
        webhook: WebhookId,
        event: NewEvent,
    ) -> StoreResult<DirectPublishOutcome>;
}

/// The delivery queue: fan-out, claims under leases, attempt results, retention. Every
/// backend is driven the same way; how it batches its writes is its own business.
#[async_trait]
pub trait DeliveryStore: Send + Sync {
    /// One dispatcher tick: fans out pending events, takes back deliveries whose lease ran
    /// out, and claims due deliveries under a lease, within the request's limits. A backend
    /// may write results handed over by [`DeliveryStore::record_result`] in the same
    /// transaction (SQLite, which has one writer, does).
    async fn claim(&self, request: &ClaimRequest) -> StoreResult<ClaimedWork>;
    /// Hands over a finished attempt's result, to be logged and applied to its delivery (and
    /// its event's status) in a batch: by the dispatcher's next claim on SQLite, beside the
    /// claims on PostgreSQL. Returns at once. A result the database refuses is logged and skipped (its
    /// delivery is left to its lease) rather than failing the others; a batch that cannot be
    /// written is tried again, and dropped after repeated failures.
    fn record_result(&self, result: AttemptRecord);
    /// How many results handed over wait for the dispatcher's next claim to write them (on
    /// SQLite); 0 on PostgreSQL, whose recorder writes them by itself.
    fn results_waiting(&self) -> usize;
    /// Writes every result handed over and not written yet (graceful shutdown, tests).
    async fn flush_results(&self) -> StoreResult<()>;
    /// Puts claimed deliveries back in the queue untried (graceful shutdown).
    async fn release(&self, node: &NodeId, delivery_ids: &[i64]) -> StoreResult<()>;
    /// At start-up: takes back claims a previous run of this node left behind. On SQLite,
    /// where one process owns the file, that is every claim.
    async fn recover(&self, node: &NodeId, now_ms: i64) -> StoreResult<u64>;
    /// When the dispatcher next has something to do: now if events await fan-out, else the
    /// earliest due delivery or lease expiry; `None` when there is nothing at all.
    async fn next_wake_at(&self) -> StoreResult<Option<i64>>;
    async fn queue_depth(&self) -> StoreResult<QueueDepth>;
    /// One window of the oldest recovery still running (a large recover request, a
    /// catch-up after a webhook recovered), in a transaction of its own.
    async fn continue_recoveries(&self, now_ms: i64) -> StoreResult<RecoveryStep>;
    /// Deletes up to `limit` delivery logs created before `cutoff_ms`; returns how many.
    async fn delete_attempts_before(&self, cutoff_ms: i64, limit: u32) -> StoreResult<u64>;
    /// The store's own work beside the dispatcher, each job to run as a task of its own until
    /// `shutdown`; a job calls `on_work` whenever the dispatcher should look again (another
    /// node announced work, a retry was queued). PostgreSQL listens for other nodes and writes
    /// attempt results; SQLite copies its write-ahead log into the database file.
    fn background_jobs(
        self: Arc<Self>,
        on_work: Arc<dyn Fn() + Send + Sync>,
        shutdown: CancellationToken,
    ) -> Vec<BackgroundJob>;
}

/// A job of the store's own, run as a task of its own ([`DeliveryStore::background_jobs`]).
pub type BackgroundJob = Pin<Box<dyn Future<Output = ()> + Send + 'static>>;

/// Everything Herald asks of its database, whichever backend holds it.
pub trait Store:
    AccessStore + WebhookStore + EventStore + DeliveryStore + NotificationStore + 'static
{
}

impl<T> Store for T where
    T: AccessStore + WebhookStore + EventStore + DeliveryStore + NotificationStore + 'static
{
}

/// Opens the store a database URL names, without migrating it, with the default health
/// policy (enough for everything but writing attempt results).
pub async fn connect(database_url: &str) -> StoreResult<Arc<dyn Store>> {
    connect_with(database_url, HealthPolicy::default()).await
}

/// Opens the store a database URL names, without migrating it; attempt results move
/// webhooks' health as `health` says.
pub async fn connect_with(database_url: &str, health: HealthPolicy) -> StoreResult<Arc<dyn Store>> {
    if database_url.starts_with("sqlite:") {
        Ok(Arc::new(SqliteStore::connect(database_url, health).await?))
    } else if is_postgres(database_url) {
        Ok(Arc::new(
            PostgresStore::connect(database_url, health).await?,
        ))
    } else {
        Err(StoreError::Invalid(format!(
            "unsupported database URL {:?}: use sqlite://PATH or postgres://...",
            crate::config::redact_password(database_url)
        )))
    }
}

/// How many group commits of published events ([`EventStore::publish_events`]) the ingest
/// writer of one node may run at once on the database a URL names: one on SQLite, whose
/// single writer connection runs them one after the other anyway; several on PostgreSQL.
/// Decided where the backend is chosen, so the store's interface says nothing of it.
pub fn concurrent_publishes(database_url: &str) -> usize {
    if is_postgres(database_url) {
        postgres::CONCURRENT_PUBLISHES
    } else {
        1
    }
}

/// Whether a publish's commit claims for its node in the same transaction
/// ([`EventStore::publish_and_claim`]) on the database a URL names: on SQLite, whose single
/// writer would run the claim right after it anyway; not on PostgreSQL, whose publishes
/// commit side by side while the dispatcher claims.
pub fn claims_when_publishing(database_url: &str) -> bool {
    !is_postgres(database_url)
}

fn is_postgres(database_url: &str) -> bool {
    database_url.starts_with("postgres://") || database_url.starts_with("postgresql://")
}
