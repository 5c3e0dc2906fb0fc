//! Partner routes over a webhook's health: where it stands, and recovering the events it
//! missed.

use axum::Json;
use axum::extract::State;
use serde::Serialize;
use utoipa::ToSchema;

use super::AppState;
use super::auth::Caller;
use super::error::{ApiError, ErrorBody};
use super::path::Path;
use super::webhooks::webhook_id;
use crate::domain::health::{Health, HealthState};
use crate::domain::ids::WebhookId;
use crate::domain::scope::Scope;
use crate::domain::time::serde_ms;

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
        .find_webhook(tenant.as_str(), id.into())
        .await?
        .ok_or(ApiError::WebhookNotFound)?;
    Ok(Json(HealthView::new(id, webhook.health)))
}
