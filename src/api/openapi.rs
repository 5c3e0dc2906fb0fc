//! The OpenAPI 3.1 document served at `/openapi.json`, generated from the route annotations
//! and response types, plus the request shapes (bodies are validated by hand for the
//! contract's messages, so they are described here).

use std::collections::BTreeMap;

use serde_json::Value;
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::{Modify, OpenApi, ToSchema};

use super::error::ErrorBody;
use super::events::{EventList, EventLogs, RetryQueued};
use super::publish::{BatchResult, BatchResults};
use super::views::{DeliveryLogView, EventStatusView, EventView, WebhookView};
use super::webhooks::{Deleted, LogList};
use crate::domain::status::EventStatus;

/// `POST /v1/webhooks` body (snake_case).
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct WebhookCreate {
    /// 1 to 255 characters.
    name: String,
    /// Absolute `https` URL.
    url: String,
    /// Non-empty: exact types (`kyc.status.changed`), wildcards (`card.*`) or `*`.
    event_types: Vec<String>,
    /// Default false.
    is_active: Option<bool>,
    /// JSON object, at most 8 KiB.
    metadata: Option<BTreeMap<String, Value>>,
}

/// `PUT /v1/webhooks/{id}` body: any subset of the create fields.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct WebhookUpdate {
    name: Option<String>,
    url: Option<String>,
    event_types: Option<Vec<String>>,
    is_active: Option<bool>,
    metadata: Option<BTreeMap<String, Value>>,
}

/// `POST /v1/webhooks/events/{eventId}/retry` body; optional.
#[derive(ToSchema)]
#[serde(rename_all = "camelCase")]
#[allow(dead_code)]
pub struct RetryRequest {
    /// Retry to this webhook only.
    webhook_id: Option<uuid::Uuid>,
}

/// `POST /v1/events` body.
#[derive(ToSchema)]
#[serde(rename_all = "camelCase")]
#[allow(dead_code)]
pub struct PublishRequest {
    /// Tenant name.
    tenant: String,
    /// Lowercase dotted type, such as `kyc.status.changed`.
    event_type: String,
    /// JSON object; may not contain the envelope keys.
    payload: BTreeMap<String, Value>,
    /// Idempotency key; generated when absent.
    event_id: Option<uuid::Uuid>,
    user_id: Option<String>,
    source_service: Option<String>,
    /// ISO 8601; default now.
    occurred_at: Option<String>,
}

/// `POST /v1/events/batch` body.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct BatchRequest {
    /// 1 to 1000 events.
    events: Vec<PublishRequest>,
}

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
        );
    }
}

#[derive(OpenApi)]
#[openapi(
    info(title = "Herald", description = "Webhook notification service: partner and producer API."),
    paths(
        super::webhooks::list, super::webhooks::create, super::webhooks::get,
        super::webhooks::update, super::webhooks::delete, super::webhooks::rotate_key,
        super::webhooks::logs, super::events::list, super::events::status, super::events::logs,
        super::events::retry, super::publish::publish, super::publish::publish_batch,
        super::ops::healthz, super::ops::readyz, super::ops::metrics, super::ops::openapi_json,
    ),
    components(schemas(
        WebhookView, EventView, EventStatusView, DeliveryLogView, EventStatus, ErrorBody,
        Deleted, LogList, EventList, EventLogs, RetryQueued, BatchResult, BatchResults,
        WebhookCreate, WebhookUpdate, RetryRequest, PublishRequest, BatchRequest,
    )),
    modifiers(&BearerAuth),
)]
pub struct ApiDoc;
