//! Partner routes over a webhook's health: where it stands, and recovering the events it
//! missed.

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderMap, StatusCode};
use serde::Serialize;
use serde_json::{Map, Value};
use utoipa::ToSchema;

use super::AppState;
use super::auth::Caller;
use super::body::{RawBody, WEBHOOK_BODY_LIMIT, json_body};
use super::error::{ApiError, ErrorBody};
use super::path::Path;
use super::views::Success;
use super::webhooks::webhook_id;
use crate::domain::health::{Health, HealthState};
use crate::domain::ids::WebhookId;
use crate::domain::scope::Scope;
use crate::domain::time::{now_ms, parse_iso8601_ms, serde_ms};
use crate::store::RecoverOutcome;

/// A webhook's health: its state and the streak of failures that led to it.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = WebhookHealth)]
pub struct HealthView {
    #[schema(value_type = Uuid)]
    pub webhook_id: WebhookId,
    pub state: HealthState,
    /// Attempts that ended failed since the last success.
    pub consecutive_failures: i64,
    /// The first failure of the current streak.
    #[serde(with = "serde_ms::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub failing_since: Option<i64>,
    #[serde(with = "serde_ms::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub last_attempt_at: Option<i64>,
    #[serde(with = "serde_ms::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub last_success_at: Option<i64>,
    #[serde(with = "serde_ms::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub last_failure_at: Option<i64>,
    /// The HTTP status of the latest attempt; null when it got no answer.
    pub last_response_status: Option<i64>,
    #[serde(with = "serde_ms::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub disabled_at: Option<i64>,
    pub disabled_reason: Option<String>,
}

impl HealthView {
    pub fn new(webhook_id: WebhookId, health: Health) -> HealthView {
        HealthView {
            webhook_id,
            state: health.state,
            consecutive_failures: health.consecutive_failures,
            failing_since: health.failing_since_ms,
            last_attempt_at: health.last_attempt_at_ms,
            last_success_at: health.last_success_at_ms,
            last_failure_at: health.last_failure_at_ms,
            last_response_status: health.last_response_status,
            disabled_at: health.disabled_at_ms,
            disabled_reason: health.disabled_reason,
        }
    }
}

/// The webhook's health: `healthy`, `failing` or `disabled`, and its counters.
#[utoipa::path(get, path = "/v1/webhooks/{id}/health", operation_id = "getWebhookHealth", tag = "webhooks", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Webhook id")),
    responses((status = 200, body = HealthView), (status = 404, body = ErrorBody),
              (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
              (status = 503, body = ErrorBody)))]
pub async fn health(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<HealthView>, ApiError> {
    let tenant = caller.partner(Scope::WebhooksRead)?;
    let id = webhook_id(&id)?;
    let webhook = state
        .store
        .find_webhook(tenant, id)
        .await?
        .ok_or(ApiError::WebhookNotFound)?;
    Ok(Json(HealthView::new(id, webhook.health)))
}

/// The body of a recover request: the creation times of the events to look at.
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RecoverRequest {
    /// ISO 8601; events created at or after it.
    #[schema(value_type = String, format = DateTime, example = "2025-12-29T10:00:00.000Z")]
    since: Option<Value>,
    /// ISO 8601, default now; events created before it.
    #[schema(value_type = Option<String>, format = DateTime)]
    until: Option<Value>,
}

impl RawBody for RecoverRequest {
    const FIELDS: &'static [&'static str] = &["since", "until"];

    fn from_fields(mut object: Map<String, Value>) -> RecoverRequest {
        RecoverRequest {
            since: object.remove("since"),
            until: object.remove("until"),
        }
    }
}

impl RecoverRequest {
    /// `[since, until)`, `until` defaulting to `now_ms`.
    fn range(self, now_ms: i64) -> Result<(i64, i64), String> {
        let instant = |field: &str, value: Option<Value>| -> Result<Option<i64>, String> {
            match value {
                None | Some(Value::Null) => Ok(None),
                Some(Value::String(text)) => parse_iso8601_ms(&text)
                    .map(Some)
                    .ok_or_else(|| format!("{field} must be an ISO 8601 timestamp")),
                Some(_) => Err(format!("{field} must be an ISO 8601 timestamp")),
            }
        };
        let since = instant("since", self.since)?.ok_or("since is required")?;
        let until = instant("until", self.until)?.unwrap_or(now_ms);
        if since >= until {
            return Err("since must be before until".into());
        }
        Ok((since, until))
    }
}

/// What a recover request queued.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RecoveryQueued {
    #[schema(value_type = Uuid)]
    pub webhook_id: WebhookId,
    pub event_count: u64,
    /// `N event(s) queued for recovery`.
    pub message: String,
}

/// Re-sends to this webhook every event created in `[since, until)` whose delivery to it
/// ended failed; large ranges continue in the background.
#[utoipa::path(post, path = "/v1/webhooks/{id}/recover", operation_id = "recoverWebhook", tag = "webhooks", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Webhook id")),
    request_body(content = RecoverRequest, content_type = "application/json"),
    responses((status = 202, body = Success<RecoveryQueued>), (status = 400, body = ErrorBody),
              (status = 404, body = ErrorBody), (status = 401, body = ErrorBody),
              (status = 403, body = ErrorBody), (status = 408, body = ErrorBody),
              (status = 413, body = ErrorBody), (status = 415, body = ErrorBody),
              (status = 429, description = "Too many writes for this tenant", body = ErrorBody,
               headers(("Retry-After" = u64, description = "Whole seconds (at least 1) until a write is allowed again"))), (status = 503, body = ErrorBody)))]
pub async fn recover(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<Success<RecoveryQueued>>), ApiError> {
    let tenant = caller.partner(Scope::EventsRetry)?;
    state.partner_writes.admit(tenant)?;
    let id = webhook_id(&id)?;
    let body = json_body(&headers, body, WEBHOOK_BODY_LIMIT)?;
    let (since, until) = RecoverRequest::from_body(body)
        .and_then(|body| body.range(now_ms()))
        .map_err(ApiError::Validation)?;
    match state
        .store
        .recover_webhook(tenant, id, since, until)
        .await?
    {
        RecoverOutcome::Queued(count) => {
            if count > 0 {
                metrics::counter!("herald_recoveries_started_total", "trigger" => "request")
                    .increment(1);
                state.wakeup.wake();
            }
            Ok((
                StatusCode::ACCEPTED,
                Json(Success::new(RecoveryQueued {
                    webhook_id: id,
                    event_count: count,
                    message: format!("{count} event(s) queued for recovery"),
                })),
            ))
        }
        RecoverOutcome::WebhookNotFound => Err(ApiError::WebhookNotFound),
        RecoverOutcome::WebhookInactive => {
            Err(ApiError::Validation("Webhook is not active".into()))
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn recover_range(body: &Value, now_ms: i64) -> Result<(i64, i64), String> {
        RecoverRequest::from_body(body.clone()).and_then(|body| body.range(now_ms))
    }

    #[test]
    fn a_recover_range_needs_since_before_until() {
        let at = |text: &str| parse_iso8601_ms(text).unwrap();
        assert_eq!(
            recover_range(
                &json!({"since": "2025-01-01T00:00:00Z"}),
                at("2025-01-02T00:00:00Z")
            ),
            Ok((at("2025-01-01T00:00:00Z"), at("2025-01-02T00:00:00Z")))
        );
        assert_eq!(
            recover_range(
                &json!({"since": "2025-01-01T00:00:00Z", "until": "2025-01-01T01:00:00Z"}),
                0
            ),
            Ok((at("2025-01-01T00:00:00Z"), at("2025-01-01T01:00:00Z")))
        );
        assert_eq!(
            recover_range(&json!({}), 0),
            Err("since is required".into())
        );
        assert_eq!(
            recover_range(&json!({"since": "yesterday"}), 0),
            Err("since must be an ISO 8601 timestamp".into())
        );
        assert_eq!(
            recover_range(&json!({"since": "2025-01-01T00:00:00Z", "until": 5}), 0),
            Err("until must be an ISO 8601 timestamp".into())
        );
        assert_eq!(
            recover_range(
                &json!({"since": "2025-01-02T00:00:00Z", "until": "2025-01-01T00:00:00Z"}),
                0
            ),
            Err("since must be before until".into())
        );
        assert_eq!(
            recover_range(&json!({"since": "2025-01-01T00:00:00Z", "from": 1}), 0),
            Err("Unknown field: from (expected since, until)".into())
        );
    }
}
