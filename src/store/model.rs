//! The records the store hands out and takes in: tenants, tokens, webhooks, events, delivery
//! logs, claims and attempt results. Instants are Unix milliseconds.

use std::collections::{HashMap, HashSet};

use uuid::Uuid;

use crate::domain::claim::Capacity;
use crate::domain::event::NewEvent;
use crate::domain::health::Health;
use crate::domain::ids::{BusinessEventId, EventId, NodeId, TenantId, TokenId, WebhookId};
use crate::domain::keys::ApiKey;
use crate::domain::scope::Scope;
use crate::domain::status::{AttemptStatus, EventStatus, NextStep};
use crate::domain::webhook::WebhookFields;

#[derive(Debug, Clone)]
pub struct Tenant {
    pub name: TenantId,
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
    pub id: TokenId,
    pub kind: TokenKind,
    pub tenant: Option<TenantId>,
    pub scopes: Vec<Scope>,
    pub created_at_ms: i64,
    pub revoked_at_ms: Option<i64>,
}

#[derive(Debug, Clone)]
pub struct NewToken {
    pub id: TokenId,
    pub hash: String,
    pub kind: TokenKind,
    pub tenant: Option<TenantId>,
    pub scopes: Vec<Scope>,
}

#[derive(Debug, Clone)]
pub struct Webhook {
    pub id: WebhookId,
    pub tenant: TenantId,
    pub name: String,
    pub url: String,
    pub api_key: ApiKey,
    pub event_types: Vec<String>,
    pub is_active: bool,
    /// Compact JSON text of an object.
    pub metadata: String,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
    pub health: Health,
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
    pub id: WebhookId,
    pub tenant: TenantId,
    pub name: String,
    pub url: String,
    pub api_key: ApiKey,
    pub event_types: Vec<String>,
    pub is_active: bool,
    pub metadata: String,
}

/// How a webhook changes: validated fields to replace, or a new key.
#[derive(Debug, Clone)]
pub enum WebhookChange {
    Fields(WebhookFields),
    RotateKey { api_key: ApiKey },
}

#[derive(Debug, Clone)]
pub struct Event {
    /// Record id.
    pub id: EventId,
    /// Business id, the idempotency key within the tenant.
    pub event_id: BusinessEventId,
    pub tenant: TenantId,
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
pub(super) struct Published {
    pub(super) known: HashSet<String>,
    pub(super) inserted: HashSet<String>,
    pub(super) existing: HashMap<(TenantId, BusinessEventId), Event>,
    pub(super) created_at_ms: i64,
}

impl Published {
    /// The outcome of each published event, in order.
    pub(super) fn outcomes(self, events: Vec<NewEvent>) -> Vec<PublishOutcome> {
        let Published {
            known,
            inserted,
            existing,
            created_at_ms,
        } = self;
        events
            .into_iter()
            .map(|event| {
                if !known.contains(event.tenant.as_str()) {
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
    UnknownTenant(TenantId),
}

/// One attempt, as the delivery log shows it.
#[derive(Debug, Clone)]
pub struct DeliveryLog {
    pub id: Uuid,
    pub event_id: BusinessEventId,
    pub webhook_id: WebhookId,
    pub attempt_number: i64,
    pub request_url: String,
    /// JSON object of strings.
    pub request_headers: String,
    /// The body sent, as JSON text.
    pub request_body: String,
    pub response_status: Option<i64>,
    pub response_body: Option<String>,
    pub error_message: Option<String>,
    pub delivery_status: AttemptStatus,
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
    pub tenant: TenantId,
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

/// What a recover request did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecoverOutcome {
    /// This many events get a new delivery cycle to the webhook (some perhaps in the
    /// background).
    Queued(u64),
    WebhookNotFound,
    WebhookInactive,
}

/// What publishing an event straight to one webhook did
/// ([`super::EventStore::publish_to_webhook`]).
#[derive(Debug, Clone)]
pub enum DirectPublishOutcome {
    /// Stored and queued to the webhook: the event as it now is (`processing`).
    Queued(Box<Event>),
    WebhookNotFound,
    WebhookInactive,
}

/// What a dispatcher asks for on each tick: fan out pending events, take back expired leases,
/// and claim due deliveries within its free capacity.
#[derive(Debug, Clone)]
pub struct ClaimRequest {
    /// Who claims (written to `locked_by`).
    pub node: NodeId,
    pub now_ms: i64,
    /// Claims hold until `now_ms + lease_ms`.
    pub lease_ms: i64,
    /// Most pending events fanned out in this tick.
    pub fan_out_limit: usize,
    /// What this node may still take.
    pub capacity: Capacity,
}

/// A delivery claimed for one attempt, with everything needed to send it.
#[derive(Debug, Clone)]
pub struct ClaimedDelivery {
    pub delivery_id: i64,
    pub event_seq: i64,
    /// Business id (`webhook-id` header).
    pub event_id: BusinessEventId,
    pub event_created_at_ms: i64,
    pub webhook_id: WebhookId,
    /// The webhook's tenant, whose share of the node's slots the attempt takes.
    pub tenant: TenantId,
    pub url: String,
    /// The webhook's key as of the claim: a rotated key signs the next attempt.
    pub api_key: ApiKey,
    /// 1-based, within the delivery's cycle.
    pub attempt_number: u32,
    pub cycle: i64,
    /// The envelope body, identical on every attempt.
    pub body: String,
}

#[derive(Debug, Clone, Default)]
pub struct ClaimedWork {
    pub fanned_out: usize,
    pub deliveries: Vec<ClaimedDelivery>,
    /// Due deliveries the claim left for want of room (the node, a webhook or a tenant at its
    /// limit), which an attempt's freed slot may let in. A backend that cannot tell says
    /// `true`, so that every finished attempt is followed by a claim.
    pub due_left: bool,
}

/// One finished attempt, to be logged and applied to its delivery.
#[derive(Debug, Clone)]
pub struct AttemptRecord {
    pub id: Uuid,
    pub delivery_id: i64,
    pub event_seq: i64,
    pub webhook_id: WebhookId,
    /// The node that held the claim; a claim taken over meanwhile is left alone.
    pub node: NodeId,
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

/// Deliveries waiting and in flight, webhooks by health and recoveries running, for the
/// gauges.
#[derive(Debug, Clone, Copy, Default, sqlx::FromRow)]
pub struct QueueDepth {
    pub pending_events: i64,
    pub queued: i64,
    pub in_flight: i64,
    pub webhooks_healthy: i64,
    pub webhooks_failing: i64,
    pub webhooks_disabled: i64,
    pub recoveries_running: i64,
}
