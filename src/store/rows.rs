//! Row shapes shared by both backends: the SQL column lists and how a row becomes a record.
//! Integers are `BIGINT` on PostgreSQL so one decoding serves both.

use std::collections::HashMap;

use sqlx::FromRow;
use uuid::Uuid;

use super::{
    ClaimedDelivery, DeliveryLog, Event, EventPage, RetryOutcome, StoreError, StoreResult, Tenant,
    Token, TokenKind, Webhook,
};
use crate::domain::claim::Capacity;
use crate::domain::envelope::{EnvelopeFields, render_body};
use crate::domain::health::{Health, HealthState};
use crate::domain::ids::{BusinessEventId, TenantId, WebhookId};
use crate::domain::keys::ApiKey;
use crate::domain::page::cut_page;
use crate::domain::scope::scopes_from_text;
use crate::domain::status::{AttemptStatus, DeliveryState, EventStatus, derive_event_status};
use crate::domain::subscription::{RetryCandidate, RetryTargets, retry_targets};

#[derive(FromRow)]
pub(super) struct TenantRow {
    pub(super) name: String,
    pub(super) created_at: i64,
}

impl From<TenantRow> for Tenant {
    fn from(row: TenantRow) -> Tenant {
        Tenant {
            name: TenantId::from(row.name),
            created_at_ms: row.created_at,
        }
    }
}

#[derive(FromRow)]
pub(super) struct TokenRow {
    pub(super) id: String,
    pub(super) kind: String,
    pub(super) tenant: Option<String>,
    pub(super) scopes: String,
    pub(super) created_at: i64,
    pub(super) revoked_at: Option<i64>,
}

impl TryFrom<TokenRow> for Token {
    type Error = StoreError;
    fn try_from(row: TokenRow) -> StoreResult<Token> {
        Ok(Token {
            id: parse_uuid(&row.id)?.into(),
            kind: if row.kind == "producer" {
                TokenKind::Producer
            } else {
                TokenKind::Partner
            },
            tenant: row.tenant.map(TenantId::from),
            scopes: scopes_from_text(&row.scopes),
            created_at_ms: row.created_at,
            revoked_at_ms: row.revoked_at,
        })
    }
}

pub(super) const WEBHOOK_COLUMNS: &str = "id, tenant, name, url, api_key, event_types, is_active, metadata, created_at, updated_at, \
     health_state, consecutive_failures, failing_since, last_attempt_at, last_success_at, \
     last_failure_at, last_response_status, disabled_at, disabled_reason";

/// The columns of [`HealthRow`].
pub(super) const HEALTH_COLUMNS: &str = "health_state, consecutive_failures, failing_since, last_attempt_at, last_success_at, \
     last_failure_at, last_response_status, disabled_at, disabled_reason";

#[derive(FromRow)]
pub(super) struct WebhookRow {
    pub(super) id: String,
    pub(super) tenant: String,
    pub(super) name: String,
    pub(super) url: String,
    pub(super) api_key: String,
    pub(super) event_types: String,
    pub(super) is_active: bool,
    pub(super) metadata: String,
    pub(super) created_at: i64,
    pub(super) updated_at: i64,
    #[sqlx(flatten)]
    pub(super) health: HealthRow,
}

/// A webhook's health columns.
#[derive(FromRow)]
pub(super) struct HealthRow {
    pub(super) health_state: String,
    pub(super) consecutive_failures: i64,
    pub(super) failing_since: Option<i64>,
    pub(super) last_attempt_at: Option<i64>,
    pub(super) last_success_at: Option<i64>,
    pub(super) last_failure_at: Option<i64>,
    pub(super) last_response_status: Option<i64>,
    pub(super) disabled_at: Option<i64>,
    pub(super) disabled_reason: Option<String>,
}

impl TryFrom<HealthRow> for Health {
    type Error = StoreError;
    fn try_from(row: HealthRow) -> StoreResult<Health> {
        Ok(Health {
            state: HealthState::parse(&row.health_state).ok_or_else(|| {
                StoreError::Invalid(format!("stored health state {:?}", row.health_state))
            })?,
            consecutive_failures: row.consecutive_failures,
            failing_since_ms: row.failing_since,
            last_attempt_at_ms: row.last_attempt_at,
            last_success_at_ms: row.last_success_at,
            last_failure_at_ms: row.last_failure_at,
            last_response_status: row.last_response_status,
            disabled_at_ms: row.disabled_at,
            disabled_reason: row.disabled_reason,
        })
    }
}

impl TryFrom<WebhookRow> for Webhook {
    type Error = StoreError;
    fn try_from(row: WebhookRow) -> StoreResult<Webhook> {
        Ok(Webhook {
            id: parse_uuid(&row.id)?.into(),
            tenant: TenantId::from(row.tenant),
            name: row.name,
            url: row.url,
            api_key: ApiKey::from(row.api_key),
            event_types: serde_json::from_str(&row.event_types)
                .map_err(|e| StoreError::Invalid(format!("stored event_types: {e}")))?,
            is_active: row.is_active,
            metadata: row.metadata,
            created_at_ms: row.created_at,
            updated_at_ms: row.updated_at,
            health: Health::try_from(row.health)?,
        })
    }
}

/// A webhook with the integer key its deliveries name it by (`webhooks.seq`).
#[derive(FromRow)]
pub(super) struct KeyedWebhookRow {
    pub(super) seq: i64,
    #[sqlx(flatten)]
    pub(super) webhook: WebhookRow,
}

impl KeyedWebhookRow {
    pub(super) fn decode(self) -> StoreResult<(i64, Webhook)> {
        Ok((self.seq, Webhook::try_from(self.webhook)?))
    }
}

/// The keys of the webhooks a manual retry of an event of `event_type` opens a new cycle for,
/// among `rows` ([`super::sql::RETRY_WEBHOOKS`]; `one`: the retry names a webhook). `Err`
/// holds the answer when it opens none.
pub(super) fn retry_keys(
    rows: Vec<KeyedWebhookRow>,
    one: bool,
    event_type: &str,
) -> StoreResult<Result<Vec<i64>, RetryOutcome>> {
    let webhooks: Vec<(i64, Webhook)> = rows
        .into_iter()
        .map(KeyedWebhookRow::decode)
        .collect::<StoreResult<_>>()?;
    let candidates = webhooks.iter().map(|(seq, w)| RetryCandidate {
        key: *seq,
        is_active: w.is_active,
        event_types: &w.event_types,
    });
    Ok(match retry_targets(candidates.collect(), one, event_type) {
        RetryTargets::Webhooks(targets) if targets.is_empty() => Err(RetryOutcome::Queued(0)),
        RetryTargets::Webhooks(targets) => Ok(targets),
        RetryTargets::NotFound => Err(RetryOutcome::WebhookNotFound),
        RetryTargets::Inactive => Err(RetryOutcome::WebhookInactive),
    })
}

pub(super) const EVENT_COLUMNS: &str = "id, event_id, tenant, event_type, payload, user_id, source_service, \
     occurred_at, status, created_at, queued_at, processed_at";

#[derive(FromRow)]
pub(super) struct EventRow {
    pub(super) id: String,
    pub(super) event_id: String,
    pub(super) tenant: String,
    pub(super) event_type: String,
    pub(super) payload: String,
    pub(super) user_id: Option<String>,
    pub(super) source_service: Option<String>,
    pub(super) occurred_at: i64,
    pub(super) status: String,
    pub(super) created_at: i64,
    pub(super) queued_at: Option<i64>,
    pub(super) processed_at: Option<i64>,
}

impl TryFrom<EventRow> for Event {
    type Error = StoreError;
    fn try_from(row: EventRow) -> StoreResult<Event> {
        Ok(Event {
            id: parse_uuid(&row.id)?.into(),
            event_id: BusinessEventId::from(row.event_id),
            tenant: TenantId::from(row.tenant),
            event_type: row.event_type,
            payload: row.payload,
            user_id: row.user_id,
            source_service: row.source_service,
            occurred_at_ms: row.occurred_at,
            status: EventStatus::parse(&row.status)
                .ok_or_else(|| StoreError::Invalid(format!("stored status {:?}", row.status)))?,
            created_at_ms: row.created_at,
            queued_at_ms: row.queued_at,
            processed_at_ms: row.processed_at,
        })
    }
}

pub(super) const LOG_SELECT: &str = "SELECT a.id, e.event_id, a.webhook_id, a.attempt_number, a.request_url, \
     a.request_headers, e.event_type, e.user_id, e.occurred_at, e.payload, a.response_status, \
     a.response_body, a.error_message, a.status, a.duration_ms, a.created_at, a.next_retry_at \
     FROM attempts a JOIN events e ON e.seq = a.event_seq";

#[derive(FromRow)]
pub(super) struct LogRow {
    pub(super) id: String,
    pub(super) event_id: String,
    pub(super) webhook_id: String,
    pub(super) attempt_number: i64,
    pub(super) request_url: String,
    pub(super) request_headers: String,
    pub(super) event_type: String,
    pub(super) user_id: Option<String>,
    pub(super) occurred_at: i64,
    pub(super) payload: String,
    pub(super) response_status: Option<i64>,
    pub(super) response_body: Option<String>,
    pub(super) error_message: Option<String>,
    pub(super) status: String,
    pub(super) duration_ms: Option<i64>,
    pub(super) created_at: i64,
    pub(super) next_retry_at: Option<i64>,
}

impl TryFrom<LogRow> for DeliveryLog {
    type Error = StoreError;
    fn try_from(row: LogRow) -> StoreResult<DeliveryLog> {
        let request_body = render_body(&EnvelopeFields {
            event_id: &row.event_id,
            event_type: &row.event_type,
            user_id: row.user_id.as_deref(),
            occurred_at_ms: row.occurred_at,
            payload_json: &row.payload,
        });
        Ok(DeliveryLog {
            id: parse_uuid(&row.id)?,
            webhook_id: parse_uuid(&row.webhook_id)?.into(),
            event_id: BusinessEventId::from(row.event_id),
            attempt_number: row.attempt_number,
            request_url: row.request_url,
            request_headers: row.request_headers,
            request_body,
            response_status: row.response_status,
            response_body: row.response_body,
            error_message: row.error_message,
            delivery_status: AttemptStatus::parse(&row.status).ok_or_else(|| {
                StoreError::Invalid(format!("stored attempt status {:?}", row.status))
            })?,
            duration_ms: row.duration_ms,
            created_at_ms: row.created_at,
            next_retry_at_ms: row.next_retry_at,
        })
    }
}

pub(super) fn parse_uuid(text: &str) -> StoreResult<Uuid> {
    Uuid::parse_str(text).map_err(|_| StoreError::Invalid(format!("stored id {text:?}")))
}

pub(super) fn is_unique_violation(error: &sqlx::Error) -> bool {
    matches!(error, sqlx::Error::Database(db) if db.is_unique_violation())
}

#[derive(FromRow)]
pub(super) struct Candidate {
    pub(super) id: i64,
    pub(super) event_seq: i64,
    pub(super) webhook_id: String,
    pub(super) tenant: String,
    pub(super) attempts: i64,
    pub(super) cycle: i64,
    pub(super) event_id: String,
    pub(super) event_type: String,
    pub(super) user_id: Option<String>,
    pub(super) occurred_at: i64,
    pub(super) payload: String,
    pub(super) created_at: i64,
    pub(super) url: String,
    pub(super) api_key: String,
}

impl Candidate {
    /// The claimed delivery, with its body rendered from the event.
    pub(super) fn into_claimed(self, webhook_id: WebhookId) -> ClaimedDelivery {
        let body = render_body(&EnvelopeFields {
            event_id: &self.event_id,
            event_type: &self.event_type,
            user_id: self.user_id.as_deref(),
            occurred_at_ms: self.occurred_at,
            payload_json: &self.payload,
        });
        ClaimedDelivery {
            delivery_id: self.id,
            event_seq: self.event_seq,
            event_id: BusinessEventId::from(self.event_id),
            event_created_at_ms: self.created_at,
            webhook_id,
            tenant: TenantId::from(self.tenant),
            url: self.url,
            api_key: ApiKey::from(self.api_key),
            attempt_number: self.attempts as u32 + 1,
            cycle: self.cycle,
            body,
        }
    }
}

#[derive(FromRow)]
pub(super) struct SeqEventRow {
    pub(super) seq: i64,
    #[sqlx(flatten)]
    pub(super) event: EventRow,
}

/// A page of an event list: `total` matches in all, and the rows [`super::sql::list_events`]
/// read, cut to `limit` with the cursor of the next page if there is one.
pub(super) fn event_page(total: i64, rows: Vec<SeqEventRow>, limit: u32) -> StoreResult<EventPage> {
    let rows = rows.into_iter().map(|row| (row.seq, row.event)).collect();
    let (rows, next_cursor) = cut_page(rows, limit);
    let events = rows
        .into_iter()
        .map(Event::try_from)
        .collect::<StoreResult<Vec<_>>>()?;
    Ok(EventPage {
        total,
        events,
        next_cursor,
    })
}

/// The statuses events derive from their deliveries' states (`(event seq, state)` rows, in
/// any order): `(seq, status, whether it is final)` for each event whose deliveries give one.
pub(super) fn derived_statuses(rows: Vec<(i64, String)>) -> Vec<(i64, &'static str, bool)> {
    let mut states: HashMap<i64, Vec<DeliveryState>> = HashMap::new();
    for (seq, state) in rows {
        if let Some(state) = DeliveryState::parse(&state) {
            states.entry(seq).or_default().push(state);
        }
    }
    states
        .into_iter()
        .filter_map(|(seq, states)| {
            derive_event_status(states).map(|status| (seq, status.as_str(), status.is_final()))
        })
        .collect()
}

/// The candidates the claiming node may take ([`Capacity::within_limits`]), in order, as
/// claimed deliveries.
pub(super) fn take_within(
    candidates: Vec<Candidate>,
    capacity: &Capacity,
) -> StoreResult<Vec<ClaimedDelivery>> {
    let candidates = candidates
        .into_iter()
        .map(|c| Ok((WebhookId::from(parse_uuid(&c.webhook_id)?), c)))
        .collect::<StoreResult<Vec<_>>>()?;
    Ok(capacity
        .within_limits(candidates, |(webhook, c)| {
            (webhook.as_uuid(), c.tenant.as_str())
        })
        .into_iter()
        .map(|(webhook, c)| c.into_claimed(webhook))
        .collect())
}
