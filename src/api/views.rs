//! The JSON shapes of the contract (camelCase, ISO timestamps, masked keys), built from
//! store records. Only this file decides how a record looks on the wire.

use serde::Serialize;
use serde_json::value::RawValue;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::domain::ids::{BusinessEventId, EventId, TenantId, WebhookId};
use crate::domain::status::EventStatus;
use crate::domain::time::serde_ms;
use crate::store::{DeliveryLog, Event, Webhook};

/// Stored JSON text, sent as JSON without being parsed again.
fn raw_json(text: &str) -> Box<RawValue> {
    RawValue::from_string(text.to_string())
        .unwrap_or_else(|_| RawValue::from_string("{}".into()).expect("valid JSON"))
}

/// A webhook. `apiKey` is masked except in create and rotate-key responses, which also
/// carry `signingSecret`.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct WebhookView {
    #[schema(value_type = Uuid)]
    pub id: WebhookId,
    #[schema(value_type = String)]
    pub tenant: TenantId,
    pub name: String,
    pub url: String,
    /// `whk_****...****` and the last four characters, or the full key once.
    pub api_key: String,
    /// Standard Webhooks secret (`whsec_...`); only in create and rotate-key responses.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signing_secret: Option<String>,
    pub event_types: Vec<String>,
    pub is_active: bool,
    #[schema(value_type = Object)]
    pub metadata: Box<RawValue>,
    #[serde(with = "serde_ms")]
    #[schema(value_type = String, format = DateTime, example = "2025-12-29T10:00:00.000Z")]
    pub created_at: i64,
    #[serde(with = "serde_ms")]
    #[schema(value_type = String, format = DateTime, example = "2025-12-29T10:00:00.000Z")]
    pub updated_at: i64,
}

impl WebhookView {
    pub fn masked(webhook: Webhook) -> WebhookView {
        WebhookView::new(webhook, false)
    }

    pub fn with_secrets(webhook: Webhook) -> WebhookView {
        WebhookView::new(webhook, true)
    }

    fn new(webhook: Webhook, reveal: bool) -> WebhookView {
        let key = webhook.api_key;
        let (api_key, signing_secret) = if reveal {
            let secret = key.signing_secret();
            (key.into_exposed(), Some(secret))
        } else {
            (key.masked(), None)
        };
        WebhookView {
            id: webhook.id,
            tenant: webhook.tenant,
            name: webhook.name,
            url: webhook.url,
            api_key,
            signing_secret,
            event_types: webhook.event_types,
            is_active: webhook.is_active,
            metadata: raw_json(&webhook.metadata),
            created_at: webhook.created_at_ms,
            updated_at: webhook.updated_at_ms,
        }
    }
}

/// An event as stored.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct EventView {
    /// Record id.
    #[schema(value_type = Uuid)]
    pub id: EventId,
    /// Business id, the idempotency key.
    #[schema(value_type = String)]
    pub event_id: BusinessEventId,
    #[schema(value_type = String)]
    pub tenant: TenantId,
    pub event_type: String,
    #[schema(value_type = Object)]
    pub payload: Box<RawValue>,
    pub user_id: Option<String>,
    pub source_service: Option<String>,
    pub status: EventStatus,
    #[serde(with = "serde_ms")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: i64,
    #[serde(with = "serde_ms::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub queued_at: Option<i64>,
    #[serde(with = "serde_ms::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub processed_at: Option<i64>,
}

impl From<Event> for EventView {
    fn from(event: Event) -> EventView {
        EventView {
            id: event.id,
            payload: raw_json(&event.payload),
            event_id: event.event_id,
            tenant: event.tenant,
            event_type: event.event_type,
            user_id: event.user_id,
            source_service: event.source_service,
            status: event.status,
            created_at: event.created_at_ms,
            queued_at: event.queued_at_ms,
            processed_at: event.processed_at_ms,
        }
    }
}

/// The short status of an event.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct EventStatusView {
    #[schema(value_type = Uuid)]
    pub id: EventId,
    #[schema(value_type = String)]
    pub event_id: BusinessEventId,
    pub status: EventStatus,
    pub event_type: String,
    #[serde(with = "serde_ms")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: i64,
    #[serde(with = "serde_ms::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub processed_at: Option<i64>,
}

impl From<Event> for EventStatusView {
    fn from(event: Event) -> EventStatusView {
        EventStatusView {
            id: event.id,
            event_id: event.event_id,
            status: event.status,
            event_type: event.event_type,
            created_at: event.created_at_ms,
            processed_at: event.processed_at_ms,
        }
    }
}

/// One delivery attempt.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DeliveryLogView {
    pub id: Uuid,
    /// Business id of the event.
    #[schema(value_type = String)]
    pub event_id: BusinessEventId,
    #[schema(value_type = Uuid)]
    pub webhook_id: WebhookId,
    pub attempt_number: i64,
    pub request_url: String,
    /// Headers as sent.
    #[schema(value_type = Object)]
    pub request_headers: Box<RawValue>,
    /// The JSON object sent.
    #[schema(value_type = Object)]
    pub request_body: Box<RawValue>,
    pub response_status: Option<i64>,
    /// First 64 KiB of the response body.
    pub response_body: Option<String>,
    pub error_message: Option<String>,
    /// `pending`, `processing`, `success` or `failed`.
    pub delivery_status: String,
    pub duration_ms: Option<i64>,
    #[serde(with = "serde_ms")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: i64,
    #[serde(with = "serde_ms::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub next_retry_at: Option<i64>,
}

impl From<DeliveryLog> for DeliveryLogView {
    fn from(log: DeliveryLog) -> DeliveryLogView {
        DeliveryLogView {
            id: log.id,
            request_headers: raw_json(&log.request_headers),
            request_body: raw_json(&log.request_body),
            event_id: log.event_id,
            webhook_id: log.webhook_id,
            attempt_number: log.attempt_number,
            request_url: log.request_url,
            response_status: log.response_status,
            response_body: log.response_body,
            error_message: log.error_message,
            delivery_status: log.delivery_status.as_str().to_string(),
            duration_ms: log.duration_ms,
            created_at: log.created_at_ms,
            next_retry_at: log.next_retry_at_ms,
        }
    }
}

/// `{"success": true, "data": ...}`, the envelope of partner writes.
#[derive(Serialize, ToSchema)]
pub struct Success<T> {
    pub success: bool,
    pub data: T,
}

impl<T> Success<T> {
    pub fn new(data: T) -> Success<T> {
        Success {
            success: true,
            data,
        }
    }
}
