//! The only place with SQL. One interface in use-case words ([`Store`]) over the backends;
//! the backend is chosen from the database URL and the rest of Herald never knows which it
//! talks to. Instants are Unix milliseconds in every backend.

mod postgres;
mod rows;
mod sqlite;

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

pub use crate::domain::event::NewEvent;
use crate::domain::scope::Scope;
use crate::domain::status::EventStatus;
use crate::domain::webhook::WebhookFields;

pub use postgres::PostgresStore;
pub use sqlite::SqliteStore;

/// Failures of the store itself (never of a partner's input).
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("migration failed: {0}")]
    Migration(#[from] sqlx::migrate::MigrateError),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Invalid(String),
}

impl StoreError {
    /// Whether the database could not be reached (as opposed to a query that failed).
    pub fn is_unavailable(&self) -> bool {
        match self {
            StoreError::Database(
                sqlx::Error::Io(_)
                | sqlx::Error::PoolTimedOut
                | sqlx::Error::PoolClosed
                | sqlx::Error::Tls(_)
                | sqlx::Error::WorkerCrashed,
            ) => true,
            // PostgreSQL's connection-exception (08) and operator-intervention (57P) classes:
            // the server went away or is shutting down.
            StoreError::Database(sqlx::Error::Database(db)) => db
                .code()
                .is_some_and(|code| code.starts_with("08") || code.starts_with("57P")),
            _ => false,
        }
    }

    /// Whether the same statement may well succeed if tried again: the database is
    /// unreachable, busy or locked (SQLite), or a transaction lost a serialization conflict
    /// or a deadlock (PostgreSQL's class 40). Anything else is taken to be about the rows.
    pub fn is_transient(&self) -> bool {
        if self.is_unavailable() {
            return true;
        }
        match self {
            StoreError::Database(sqlx::Error::Database(db)) => db.code().is_some_and(|code| {
                // SQLite's codes are numbers whose low byte is the primary code
                // (SQLITE_BUSY 5, SQLITE_LOCKED 6); PostgreSQL's are five characters.
                code.starts_with("40")
                    || (code.len() < 5
                        && code.parse::<u32>().is_ok_and(|n| matches!(n & 0xff, 5 | 6)))
            }),
            _ => false,
        }
    }
}

pub type StoreResult<T> = Result<T, StoreError>;

/// A publish that was not committed, with its events handed back, so that the caller can
/// commit some of them again without having copied them all beforehand.
#[derive(Debug, thiserror::Error)]
#[error("{error}")]
pub struct PublishFailure {
    pub error: StoreError,
    pub events: Vec<NewEvent>,
}

impl From<PublishFailure> for StoreError {
    fn from(failure: PublishFailure) -> StoreError {
        failure.error
    }
}

#[derive(Debug, Clone)]
pub struct Tenant {
    pub name: String,
    pub created_at_ms: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenKind {
    Partner,
    Producer,
}

impl TokenKind {
    pub fn as_str(self) -> &'static str {
        match self {
            TokenKind::Partner => "partner",
            TokenKind::Producer => "producer",
        }
    }
}

/// A token as stored (never the token itself, only its hash).
#[derive(Debug, Clone)]
pub struct Token {
    pub id: Uuid,
    pub kind: TokenKind,
    pub tenant: Option<String>,
    pub scopes: Vec<Scope>,
    pub created_at_ms: i64,
    pub revoked_at_ms: Option<i64>,
}

#[derive(Debug, Clone)]
pub struct NewToken {
    pub id: Uuid,
    pub hash: String,
    pub kind: TokenKind,
    pub tenant: Option<String>,
    pub scopes: Vec<Scope>,
}

#[derive(Debug, Clone)]
pub struct Webhook {
    pub id: Uuid,
    pub tenant: String,
    pub name: String,
    pub url: String,
    pub api_key: String,
    pub event_types: Vec<String>,
    pub is_active: bool,
    /// Compact JSON text of an object.
    pub metadata: String,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
}

impl Webhook {
    /// Applies a change in memory; given fields replace the old values.
    pub fn apply(&mut self, change: WebhookChange) {
        match change {
            WebhookChange::Fields(fields) => {
                if let Some(name) = fields.name {
                    self.name = name;
                }
                if let Some(url) = fields.url {
                    self.url = url;
                }
                if let Some(event_types) = fields.event_types {
                    self.event_types = event_types;
                }
                if let Some(is_active) = fields.is_active {
                    self.is_active = is_active;
                }
                if let Some(metadata) = fields.metadata {
                    self.metadata = metadata;
                }
            }
            WebhookChange::RotateKey { api_key } => self.api_key = api_key,
        }
    }
}

#[derive(Debug, Clone)]
pub struct NewWebhook {
    pub id: Uuid,
    pub tenant: String,
    pub name: String,
    pub url: String,
    pub api_key: String,
    pub event_types: Vec<String>,
    pub is_active: bool,
    pub metadata: String,
}

/// How a webhook changes: validated fields to replace, or a new key.
#[derive(Debug, Clone)]
pub enum WebhookChange {
    Fields(WebhookFields),
    RotateKey { api_key: String },
}

#[derive(Debug, Clone)]
pub struct Event {
    /// Record id.
    pub id: Uuid,
    /// Business id, the idempotency key within the tenant.
    pub event_id: String,
    pub tenant: String,
    pub event_type: String,
    /// Compact JSON text of an object.
    pub payload: String,
    pub user_id: Option<String>,
    pub source_service: Option<String>,
    pub occurred_at_ms: i64,
    pub status: EventStatus,
    pub created_at_ms: i64,
    pub queued_at_ms: Option<i64>,
    pub processed_at_ms: Option<i64>,
}

/// The event as it is once stored for the first time, at `created_at_ms` (the commit: so
/// `createdAt` follows the order in which lists show events).
pub fn pending_event(new: NewEvent, created_at_ms: i64) -> Event {
    Event {
        id: new.id,
        event_id: new.event_id,
        tenant: new.tenant,
        event_type: new.event_type,
        payload: new.payload,
        user_id: new.user_id,
        source_service: new.source_service,
        occurred_at_ms: new.occurred_at_ms,
        status: EventStatus::Pending,
        created_at_ms,
        queued_at_ms: None,
        processed_at_ms: None,
    }
}

/// What a committed publish learnt: `known` tenants exist, `inserted` holds the record ids
/// stored now, `existing` the stored events of keys that were already taken.
struct Published {
    known: std::collections::HashSet<String>,
    inserted: std::collections::HashSet<String>,
    existing: HashMap<(String, String), Event>,
    created_at_ms: i64,
}

impl Published {
    /// The outcome of each published event, in order.
    fn outcomes(self, events: Vec<NewEvent>) -> Vec<PublishOutcome> {
        let Published {
            known,
            inserted,
            existing,
            created_at_ms,
        } = self;
        events
            .into_iter()
            .map(|event| {
                if !known.contains(&event.tenant) {
                    PublishOutcome::UnknownTenant(event.tenant)
                } else if inserted.contains(&event.id.to_string()) {
                    PublishOutcome::Created(pending_event(event, created_at_ms))
                } else {
                    match existing.get(&(event.tenant.clone(), event.event_id.clone())) {
                        Some(stored) => PublishOutcome::Existing(stored.clone()),
                        // Stored and gone within one transaction cannot happen; answer as if
                        // the tenant were unknown rather than invent an event.
                        None => PublishOutcome::UnknownTenant(event.tenant),
                    }
                }
            })
            .collect()
    }
}

/// What publishing one event did.
#[derive(Debug, Clone)]
pub enum PublishOutcome {
    Created(Event),
    /// The `(tenant, eventId)` was known: the first stored event, unchanged.
    Existing(Event),
    UnknownTenant(String),
}

/// One attempt, as the delivery log shows it.
#[derive(Debug, Clone)]
pub struct DeliveryLog {
    pub id: Uuid,
    pub event_id: String,
    pub webhook_id: Uuid,
    pub attempt_number: i64,
    pub request_url: String,
    /// JSON object of strings.
    pub request_headers: String,
    /// The body sent, as JSON text.
    pub request_body: String,
    pub response_status: Option<i64>,
    pub response_body: Option<String>,
    pub error_message: Option<String>,
    pub delivery_status: String,
    pub duration_ms: Option<i64>,
    pub created_at_ms: i64,
    pub next_retry_at_ms: Option<i64>,
}

/// At most this many attempts are read for one event (the newest), so that an event retried
/// for days cannot make one answer unbounded.
pub const MAX_EVENT_LOGS: u32 = 1_000;

/// A page of a tenant's events, newest first.
#[derive(Debug, Clone)]
pub struct EventQuery {
    pub tenant: String,
    pub status: Option<EventStatus>,
    pub event_type: Option<String>,
    pub since_ms: Option<i64>,
    pub until_ms: Option<i64>,
    /// Only events older than this cursor (as returned in `next_cursor`).
    pub before_cursor: Option<i64>,
    pub limit: u32,
}

#[derive(Debug, Clone)]
pub struct EventPage {
    /// Events matching the filters across all pages.
    pub total: i64,
    pub events: Vec<Event>,
    pub next_cursor: Option<i64>,
}

/// What a manual retry did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RetryOutcome {
    /// A new cycle was queued to this many webhooks.
    Queued(u32),
    WebhookNotFound,
    WebhookInactive,
}

/// What a dispatcher asks for on each tick: fan out pending events, take back expired leases,
/// and claim due deliveries within its free capacity.
#[derive(Debug, Clone)]
pub struct ClaimRequest {
    /// Who claims (written to `locked_by`).
    pub node: String,
    pub now_ms: i64,
    /// Claims hold until `now_ms + lease_ms`.
    pub lease_ms: i64,
    /// Most pending events fanned out in this tick.
    pub fan_out_limit: usize,
    /// Most deliveries claimed in this tick.
    pub limit: usize,
    /// Most deliveries one webhook may have in flight on this node.
    pub per_webhook_limit: usize,
    /// This node's deliveries in flight, per webhook.
    pub in_flight: HashMap<Uuid, usize>,
    /// Most deliveries of one tenant in flight on this node.
    pub per_tenant_limit: usize,
    /// This node's deliveries in flight, per tenant.
    pub in_flight_per_tenant: HashMap<String, usize>,
    /// Attempts this node finished since its last tick, recorded in the same transaction
    /// before the claim (a due retry among them may be claimed again at once).
    pub finished: Vec<AttemptRecord>,
}

/// A delivery claimed for one attempt, with everything needed to send it.
#[derive(Debug, Clone)]
pub struct ClaimedDelivery {
    pub delivery_id: i64,
    pub event_seq: i64,
    /// Business id (`webhook-id` header).
    pub event_id: String,
    pub event_created_at_ms: i64,
    pub webhook_id: Uuid,
    /// The webhook's tenant, whose share of the node's slots the attempt takes.
    pub tenant: String,
    pub url: String,
    /// The webhook's key as of the claim: a rotated key signs the next attempt.
    pub api_key: String,
    /// 1-based, within the delivery's cycle.
    pub attempt_number: u32,
    pub cycle: i64,
    /// The envelope body, identical on every attempt.
    pub body: String,
}

#[derive(Debug, Clone)]
pub struct ClaimedWork {
    pub fanned_out: usize,
    pub deliveries: Vec<ClaimedDelivery>,
}

/// Where a delivery goes after an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NextStep {
    Succeeded,
    RetryAt(i64),
    Failed,
}

/// One finished attempt, to be logged and applied to its delivery.
#[derive(Debug, Clone)]
pub struct AttemptRecord {
    pub id: Uuid,
    pub delivery_id: i64,
    pub event_seq: i64,
    pub webhook_id: Uuid,
    /// The node that held the claim; a claim taken over meanwhile is left alone.
    pub node: String,
    pub attempt_number: u32,
    pub request_url: String,
    /// JSON object of the headers sent.
    pub request_headers: String,
    pub response_status: Option<u16>,
    pub response_body: Option<String>,
    pub error_message: Option<String>,
    pub duration_ms: Option<i64>,
    pub created_at_ms: i64,
    pub next: NextStep,
}

/// Deliveries waiting and in flight, for the queue gauges.
#[derive(Debug, Clone, Copy, Default)]
pub struct QueueDepth {
    pub pending_events: i64,
    pub queued: i64,
    pub in_flight: i64,
}

/// Schema, health, tenants and tokens.
#[async_trait]
pub trait AccessStore: Send + Sync {
    /// Applies the embedded migrations of this backend.
    async fn migrate(&self) -> StoreResult<()>;
    /// Whether the database answers.
    async fn ping(&self) -> StoreResult<()>;
    async fn create_tenant(&self, name: &str) -> StoreResult<Tenant>;
    async fn list_tenants(&self) -> StoreResult<Vec<Tenant>>;
    async fn create_token(&self, token: NewToken) -> StoreResult<Token>;
    async fn list_tokens(&self) -> StoreResult<Vec<Token>>;
    /// Marks a token revoked; false when no such token exists.
    async fn revoke_token(&self, id: Uuid) -> StoreResult<bool>;
    /// The token with this hash, revoked or not.
    async fn find_token(&self, hash: &str) -> StoreResult<Option<Token>>;
}

/// A tenant's webhooks and their delivery logs.
#[async_trait]
pub trait WebhookStore: Send + Sync {
    async fn list_webhooks(&self, tenant: &str) -> StoreResult<Vec<Webhook>>;
    async fn find_webhook(&self, tenant: &str, id: Uuid) -> StoreResult<Option<Webhook>>;
    /// Creates a webhook unless the tenant already has `max_per_tenant` (then `Ok(None)`).
    async fn create_webhook(
        &self,
        webhook: NewWebhook,
        max_per_tenant: u32,
    ) -> StoreResult<Option<Webhook>>;
    /// Applies a change; `Ok(None)` when the tenant has no such webhook.
    async fn change_webhook(
        &self,
        tenant: &str,
        id: Uuid,
        change: WebhookChange,
    ) -> StoreResult<Option<Webhook>>;
    /// Deletes a webhook and ends its unfinished deliveries as failed; false when not found.
    async fn delete_webhook(&self, tenant: &str, id: Uuid) -> StoreResult<bool>;
    /// The webhook's delivery logs, newest first.
    async fn webhook_logs(
        &self,
        tenant: &str,
        id: Uuid,
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
    /// How many `publish_events` calls may usefully run at once.
    fn concurrent_publishes(&self) -> usize {
        1
    }
    async fn list_events(&self, query: &EventQuery) -> StoreResult<EventPage>;
    /// The tenant's event whose record id or business eventId is `id`.
    async fn find_event(&self, tenant: &str, id: &str) -> StoreResult<Option<Event>>;
    /// The newest [`MAX_EVENT_LOGS`] delivery logs of an event, oldest first.
    async fn event_logs(&self, tenant: &str, event: Uuid) -> StoreResult<Vec<DeliveryLog>>;
    /// Where the tenant's event with record id `event` stands in the newest-first order of
    /// [`EventQuery::before_cursor`]; `None` when the tenant has no such event.
    async fn event_position(&self, tenant: &str, event: Uuid) -> StoreResult<Option<i64>>;
    /// Starts a new delivery cycle for an event, to one webhook or to every active subscriber.
    async fn retry_event(
        &self,
        tenant: &str,
        event: Uuid,
        webhook: Option<Uuid>,
    ) -> StoreResult<RetryOutcome>;
}

/// The delivery queue: fan-out, claims under leases, attempt results, retention.
#[async_trait]
pub trait DeliveryStore: Send + Sync {
    /// One dispatcher tick in one transaction: fans out pending events, records the
    /// finished attempts (skipping any the database refuses, as `record_attempts` does), requeues deliveries whose lease expired, and claims due deliveries
    /// under a lease.
    async fn claim_work(&self, request: &ClaimRequest) -> StoreResult<ClaimedWork>;
    /// Logs finished attempts and moves their deliveries on (and their events' statuses) in
    /// a transaction of their own. A record the database refuses is logged and skipped (its
    /// delivery is left to its lease) rather than failing the others; `Err` only when the
    /// failure was transient ([`StoreError::is_transient`]) and nothing was recorded.
    async fn record_attempts(&self, records: &[AttemptRecord]) -> StoreResult<()>;
    /// Whether the dispatcher should hand finished attempts to its next claim
    /// ([`ClaimRequest::finished`]) rather than to a recorder writing them beside the claims.
    fn records_with_claims(&self) -> bool {
        false
    }
    /// Puts claimed deliveries back in the queue untried (graceful shutdown).
    async fn release_deliveries(&self, node: &str, delivery_ids: &[i64]) -> StoreResult<()>;
    /// At start-up: takes back claims a previous run of this node left behind. On SQLite,
    /// where one process owns the file, that is every claim.
    async fn recover_claims(&self, node: &str, now_ms: i64) -> StoreResult<u64>;
    /// When the dispatcher next has something to do: now if events await fan-out, else the
    /// earliest due delivery or lease expiry; `None` when there is nothing at all.
    async fn next_wake_at(&self) -> StoreResult<Option<i64>>;
    async fn queue_depth(&self) -> StoreResult<QueueDepth>;
    /// Deletes up to `limit` delivery logs created before `cutoff_ms`; returns how many.
    async fn delete_attempts_before(&self, cutoff_ms: i64, limit: u32) -> StoreResult<u64>;
    /// Calls `on_work` whenever another node announces work (until `shutdown`). A backend
    /// owned by one process has nobody to hear from and returns at once.
    async fn listen_for_work(
        &self,
        on_work: Arc<dyn Fn() + Send + Sync>,
        shutdown: CancellationToken,
    );
}

/// Everything Herald asks of its database, whichever backend holds it.
pub trait Store: AccessStore + WebhookStore + EventStore + DeliveryStore + 'static {}

impl<T: AccessStore + WebhookStore + EventStore + DeliveryStore + 'static> Store for T {}

/// Opens the store a database URL names, without migrating it.
pub async fn connect(database_url: &str) -> StoreResult<Arc<dyn Store>> {
    if database_url.starts_with("sqlite:") {
        Ok(Arc::new(SqliteStore::connect(database_url).await?))
    } else if database_url.starts_with("postgres://") || database_url.starts_with("postgresql://") {
        Ok(Arc::new(PostgresStore::connect(database_url).await?))
    } else {
        Err(StoreError::Invalid(format!(
            "unsupported database URL {:?}: use sqlite://PATH or postgres://...",
            crate::config::redact_password(database_url)
        )))
    }
}
