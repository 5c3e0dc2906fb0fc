//! Partner routes over events: list, status, logs and manual retry, with the retry body. A
//! path `{eventId}` names an event by record id or by business eventId.

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{RawQuery, State};
use axum::http::HeaderMap;
use serde::Serialize;
use serde_json::{Map, Value};
use utoipa::ToSchema;
use uuid::Uuid;

use super::AppState;
use super::ListParams;
use super::auth::Caller;
use super::body::{RETRY_BODY_LIMIT, RawBody, bytes_within_limit, declares_json, parse_json};
use super::cursor;
use super::error::{ApiError, ErrorBody};
use super::path::Path;
use super::views::{DeliveryLogView, EventStatusView, EventView, Success};
use crate::domain::event_type::is_valid_type;
use crate::domain::ids::{TenantId, WebhookId};
use crate::domain::scope::Scope;
use crate::domain::status::EventStatus;
use crate::domain::time::parse_iso8601_ms;
use crate::store::{Event, EventQuery, RetryOutcome};

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct EventList {
    /// Events matching the query across all pages.
    pub total: i64,
    pub events: Vec<EventView>,
    /// Opaque; pass as `cursor` for the next page. Absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct EventLogs {
    pub event: EventView,
    /// The newest 1,000 attempts at most, oldest first.
    pub logs: Vec<DeliveryLogView>,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RetryQueued {
    /// The path value, echoed.
    pub event_id: String,
    pub webhook_count: u32,
    /// `Event queued for retry to N webhook(s)`.
    pub message: String,
}

/// `POST /v1/webhooks/events/{eventId}/retry` body; optional (empty or `{}` mean every
/// active subscribed webhook).
// The field holds the JSON sent; [`RetryRequest::webhook`] checks it.
#[derive(ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RetryRequest {
    /// Retry to this webhook only; it must be active.
    #[schema(value_type = Option<Uuid>)]
    webhook_id: Option<Value>,
}

impl RawBody for RetryRequest {
    const FIELDS: &'static [&'static str] = &["webhookId"];

    fn from_fields(mut object: Map<String, Value>) -> RetryRequest {
        RetryRequest {
            webhook_id: object.remove("webhookId"),
        }
    }
}

impl RetryRequest {
    /// The webhook named, if any (`null` names none).
    fn webhook(self) -> Result<Option<WebhookId>, String> {
        const NOT_A_UUID: &str = "webhookId must be a valid UUID";
        match self.webhook_id {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(text)) => WebhookId::parse(&text).map(Some).ok_or(NOT_A_UUID.into()),
            Some(_) => Err(NOT_A_UUID.into()),
        }
    }
}

async fn find_event(state: &AppState, tenant: &TenantId, id: &str) -> Result<Event, ApiError> {
    // Ids are UUIDs; anything else names no event, without a query.
    if Uuid::parse_str(id).is_err() {
        return Err(ApiError::EventNotFound);
    }
    state
        .store
        .find_event(tenant, &id.to_ascii_lowercase())
        .await?
        .ok_or(ApiError::EventNotFound)
}

/// `status`: one of the event statuses.
fn status_filter(params: &ListParams) -> Result<Option<EventStatus>, ApiError> {
    params
        .get("status")
        .map(|text| {
            EventStatus::parse(text).ok_or_else(|| {
                ApiError::Validation(
                    "status must be one of pending, processing, completed, failed, skipped".into(),
                )
            })
        })
        .transpose()
}

/// `eventType`: an event type (not a pattern).
fn event_type_filter(params: &ListParams) -> Result<Option<String>, ApiError> {
    match params.get("eventType") {
        Some(text) if !is_valid_type(text) => Err(ApiError::Validation(
            "eventType must be a valid event type".into(),
        )),
        other => Ok(other.map(str::to_string)),
    }
}

/// `since` or `until`: an ISO 8601 instant.
fn instant(params: &ListParams, name: &str) -> Result<Option<i64>, ApiError> {
    params
        .get(name)
        .map(|text| {
            parse_iso8601_ms(text).ok_or_else(|| {
                ApiError::Validation(format!("{name} must be an ISO 8601 timestamp"))
            })
        })
        .transpose()
}

/// Where the page after `cursor` starts, within the caller's tenant only.
async fn cursor_position(
    state: &AppState,
    tenant: &TenantId,
    cursor: &str,
) -> Result<i64, ApiError> {
    let refused =
        || ApiError::Validation("cursor must be a nextCursor value from a previous page".into());
    let last = cursor::decode(cursor).ok_or_else(refused)?;
    state
        .store
        .event_position(tenant, last)
        .await?
        .ok_or_else(refused)
}

/// The tenant's events, newest first.
#[utoipa::path(get, path = "/v1/webhooks/events", operation_id = "listEvents", tag = "events", security(("bearer" = [])),
    params(("status" = Option<EventStatus>, Query, description = "Only events with this status"),
           ("limit" = Option<u32>, Query, minimum = 1, maximum = 100, description = "1 to 100, default 50"),
           ("eventType" = Option<String>, Query, pattern = r"^[a-z0-9_]+(\.[a-z0-9_]+)*$", max_length = 255, description = "Only this event type"),
           ("since" = Option<String>, Query, format = DateTime, description = "Created at or after (ISO 8601)"),
           ("until" = Option<String>, Query, format = DateTime, description = "Created at or before (ISO 8601)"),
           ("cursor" = Option<String>, Query, description = "Opaque: the nextCursor of the previous page (same tenant); \
             anything else is a 400")),
    responses((status = 200, body = EventList), (status = 400, body = ErrorBody),
              (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    RawQuery(query): RawQuery,
) -> Result<Json<EventList>, ApiError> {
    let tenant = caller.partner(Scope::EventsRead)?;
    let params = ListParams::parse(query.as_deref());
    let limit = params.limit()?;
    let status = status_filter(&params)?;
    let event_type = event_type_filter(&params)?;
    let (since_ms, until_ms) = (instant(&params, "since")?, instant(&params, "until")?);
    let before_cursor = match params.get("cursor") {
        None => None,
        Some(text) => Some(cursor_position(&state, tenant, text).await?),
    };
    let page = state
        .store
        .list_events(&EventQuery {
            tenant: tenant.clone(),
            status,
            event_type,
            since_ms,
            until_ms,
            before_cursor,
            limit,
        })
        .await?;
    // The cursor names the page's last event, which the caller has just seen.
    let next_cursor = page
        .next_cursor
        .and(page.events.last())
        .map(|last| cursor::encode(last.id));
    Ok(Json(EventList {
        total: page.total,
        events: page.events.into_iter().map(EventView::from).collect(),
        next_cursor,
    }))
}

/// The event's status.
#[utoipa::path(get, path = "/v1/webhooks/events/{eventId}/status", operation_id = "getEventStatus", tag = "events", security(("bearer" = [])),
    params(("eventId" = Uuid, Path, description = "Record id or business eventId")),
    responses((status = 200, body = EventStatusView), (status = 404, body = ErrorBody),
              (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn status(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<EventStatusView>, ApiError> {
    let tenant = caller.partner(Scope::EventsRead)?;
    Ok(Json(find_event(&state, tenant, &id).await?.into()))
}

/// The event and its delivery attempts (the newest 1,000 at most), oldest first.
#[utoipa::path(get, path = "/v1/webhooks/events/{eventId}/logs", operation_id = "getEventLogs", tag = "events", security(("bearer" = [])),
    params(("eventId" = Uuid, Path, description = "Record id or business eventId")),
    responses((status = 200, body = EventLogs), (status = 404, body = ErrorBody),
              (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn logs(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<EventLogs>, ApiError> {
    let tenant = caller.partner(Scope::EventsRead)?;
    let event = find_event(&state, tenant, &id).await?;
    let logs = state.store.event_logs(tenant, event.id).await?;
    Ok(Json(EventLogs {
        event: event.into(),
        logs: logs.into_iter().map(Into::into).collect(),
    }))
}

/// Which webhook a retry body names, if any. An empty body, `{}`, `webhookId: null` or no
/// body at all mean every active subscribed webhook.
fn retry_target(headers: &HeaderMap, body: &[u8]) -> Result<Option<WebhookId>, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    if declares_json(headers) == Some(false) {
        return Err(ApiError::UnsupportedMediaType);
    }
    RetryRequest::from_body(parse_json(body)?)
        .and_then(RetryRequest::webhook)
        .map_err(ApiError::Validation)
}

/// Starts a new delivery cycle (attempt 1, at once) to one webhook or every active
/// subscriber.
#[utoipa::path(post, path = "/v1/webhooks/events/{eventId}/retry", operation_id = "retryEvent", tag = "events", security(("bearer" = [])),
    params(("eventId" = Uuid, Path, description = "Record id or business eventId")),
    request_body(content = Option<RetryRequest>, content_type = "application/json"),
    responses((status = 200, body = Success<RetryQueued>), (status = 400, body = ErrorBody),
              (status = 404, body = ErrorBody), (status = 401, body = ErrorBody),
              (status = 403, body = ErrorBody), (status = 408, body = ErrorBody),
              (status = 413, description = "Body over 16 KiB", body = ErrorBody),
              (status = 415, body = ErrorBody),
              (status = 429, description = "Too many writes for this tenant", body = ErrorBody,
               headers(("Retry-After" = u64, description = "Whole seconds (at least 1) until a write is allowed again"))), (status = 503, body = ErrorBody)))]
pub async fn retry(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Success<RetryQueued>>, ApiError> {
    let tenant = caller.partner(Scope::EventsRetry)?;
    state.partner_writes.admit(tenant)?;
    let body = bytes_within_limit(body, RETRY_BODY_LIMIT)?;
    let webhook = retry_target(&headers, &body)?;
    let event = find_event(&state, tenant, &id).await?;
    match state.store.retry_event(tenant, event.id, webhook).await? {
        RetryOutcome::Queued(count) => {
            if count > 0 {
                state.wakeup.wake();
            }
            Ok(Json(Success::new(RetryQueued {
                event_id: id,
                webhook_count: count,
                message: format!("Event queued for retry to {count} webhook(s)"),
            })))
        }
        RetryOutcome::WebhookNotFound => Err(ApiError::WebhookNotFound),
        RetryOutcome::WebhookInactive => Err(ApiError::Validation("Webhook is not active".into())),
    }
}
