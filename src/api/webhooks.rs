//! Partner routes over webhooks: list, create, read, partial update, delete,
//! rotate-key and the webhook's delivery logs.

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

use super::AppState;
use super::ListParams;
use super::auth::Caller;
use super::body::{WEBHOOK_BODY_LIMIT, json_body};
use super::error::{ApiError, ErrorBody};
use super::path::Path;
use super::views::{DeliveryLogView, Success, WebhookView};
use crate::domain::keys::new_api_key;
use crate::domain::scope::Scope;
use crate::domain::webhook::{validate_create, validate_update};
use crate::store::{NewWebhook, WebhookChange};

/// A path id that is not a UUID names no webhook.
fn webhook_id(text: &str) -> Result<Uuid, ApiError> {
    Uuid::parse_str(text).map_err(|_| ApiError::WebhookNotFound)
}

#[derive(Serialize, ToSchema)]
pub struct Deleted {
    pub id: Uuid,
    /// Always `Webhook deleted`.
    pub message: &'static str,
}

#[derive(Serialize, ToSchema)]
pub struct LogList {
    /// Number of logs returned.
    pub count: usize,
    pub logs: Vec<DeliveryLogView>,
}

/// The tenant's webhooks, keys masked.
#[utoipa::path(get, path = "/v1/webhooks", operation_id = "listWebhooks", tag = "webhooks", security(("bearer" = [])),
    responses((status = 200, body = Vec<WebhookView>), (status = 401, body = ErrorBody),
              (status = 403, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<Vec<WebhookView>>, ApiError> {
    let tenant = caller.partner(Scope::WebhooksRead)?;
    let webhooks = state.store.list_webhooks(tenant).await?;
    Ok(Json(
        webhooks.into_iter().map(WebhookView::masked).collect(),
    ))
}

/// Creates a webhook (inactive unless `is_active` is true); the response shows the full
/// `apiKey` and `signingSecret`, once.
#[utoipa::path(post, path = "/v1/webhooks", operation_id = "createWebhook", tag = "webhooks", security(("bearer" = [])),
    request_body(content = crate::api::openapi::WebhookCreate, content_type = "application/json"),
    responses((status = 201, body = Success<WebhookView>), (status = 400, body = ErrorBody),
              (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
              (status = 408, body = ErrorBody), (status = 413, body = ErrorBody),
              (status = 415, body = ErrorBody),
              (status = 429, description = "Too many writes for this tenant", body = ErrorBody,
               headers(("Retry-After" = u64, description = "Whole seconds (at least 1) until a write is allowed again"))), (status = 503, body = ErrorBody)))]
pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<Success<WebhookView>>), ApiError> {
    let tenant = caller.partner(Scope::WebhooksWrite)?;
    state.partner_writes.admit(tenant)?;
    let body = json_body(&headers, body, WEBHOOK_BODY_LIMIT)?;
    let fields =
        validate_create(&body, &state.config.destination_policy()).map_err(ApiError::Validation)?;
    let new = NewWebhook {
        id: Uuid::now_v7(),
        tenant: tenant.to_string(),
        name: fields.name.unwrap_or_default(),
        url: fields.url.unwrap_or_default(),
        api_key: new_api_key(),
        event_types: fields.event_types.unwrap_or_default(),
        is_active: fields.is_active.unwrap_or(false),
        metadata: fields.metadata.unwrap_or_else(|| "{}".into()),
    };
    let cap = state.config.max_webhooks_per_tenant;
    match state.store.create_webhook(new, cap).await? {
        Some(webhook) => Ok((
            StatusCode::CREATED,
            Json(Success::new(WebhookView::with_secrets(webhook))),
        )),
        None => Err(ApiError::Validation(format!(
            "Maximum webhook limit ({cap}) reached for this tenant"
        ))),
    }
}

/// One webhook, key masked.
#[utoipa::path(get, path = "/v1/webhooks/{id}", operation_id = "getWebhook", tag = "webhooks", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Webhook id")),
    responses((status = 200, body = WebhookView), (status = 404, body = ErrorBody),
              (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn get(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<WebhookView>, ApiError> {
    let tenant = caller.partner(Scope::WebhooksRead)?;
    let webhook = state
        .store
        .find_webhook(tenant, webhook_id(&id)?)
        .await?
        .ok_or(ApiError::WebhookNotFound)?;
    Ok(Json(WebhookView::masked(webhook)))
}

/// Partial update: given fields replace the old values.
#[utoipa::path(put, path = "/v1/webhooks/{id}", operation_id = "updateWebhook", tag = "webhooks", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Webhook id")),
    request_body(content = crate::api::openapi::WebhookUpdate, content_type = "application/json"),
    responses((status = 200, body = Success<WebhookView>), (status = 400, body = ErrorBody),
              (status = 404, body = ErrorBody), (status = 401, body = ErrorBody),
              (status = 403, body = ErrorBody), (status = 408, body = ErrorBody),
              (status = 413, body = ErrorBody), (status = 415, body = ErrorBody),
              (status = 429, description = "Too many writes for this tenant", body = ErrorBody,
               headers(("Retry-After" = u64, description = "Whole seconds (at least 1) until a write is allowed again"))),
              (status = 503, body = ErrorBody)))]
pub async fn update(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Success<WebhookView>>, ApiError> {
    let tenant = caller.partner(Scope::WebhooksWrite)?;
    state.partner_writes.admit(tenant)?;
    let id = webhook_id(&id)?;
    let body = json_body(&headers, body, WEBHOOK_BODY_LIMIT)?;
    let fields =
        validate_update(&body, &state.config.destination_policy()).map_err(ApiError::Validation)?;
    let webhook = state
        .store
        .change_webhook(tenant, id, WebhookChange::Fields(fields))
        .await?
        .ok_or(ApiError::WebhookNotFound)?;
    Ok(Json(Success::new(WebhookView::masked(webhook))))
}

/// Deletes a webhook for good; its unfinished deliveries end as failed.
#[utoipa::path(delete, path = "/v1/webhooks/{id}", operation_id = "deleteWebhook", tag = "webhooks", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Webhook id")),
    responses((status = 200, body = Success<Deleted>), (status = 404, body = ErrorBody),
              (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
              (status = 429, description = "Too many writes for this tenant", body = ErrorBody,
               headers(("Retry-After" = u64, description = "Whole seconds (at least 1) until a write is allowed again"))),
              (status = 503, body = ErrorBody)))]
pub async fn delete(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Success<Deleted>>, ApiError> {
    let tenant = caller.partner(Scope::WebhooksWrite)?;
    state.partner_writes.admit(tenant)?;
    let id = webhook_id(&id)?;
    if !state.store.delete_webhook(tenant, id).await? {
        return Err(ApiError::WebhookNotFound);
    }
    Ok(Json(Success::new(Deleted {
        id,
        message: "Webhook deleted",
    })))
}

/// Replaces the webhook's key at once; the old key stops signing immediately.
#[utoipa::path(post, path = "/v1/webhooks/{id}/rotate-key", operation_id = "rotateWebhookKey", tag = "webhooks", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Webhook id")),
    responses((status = 200, body = Success<WebhookView>), (status = 404, body = ErrorBody),
              (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
              (status = 429, description = "Too many writes for this tenant", body = ErrorBody,
               headers(("Retry-After" = u64, description = "Whole seconds (at least 1) until a write is allowed again"))),
              (status = 503, body = ErrorBody)))]
pub async fn rotate_key(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Success<WebhookView>>, ApiError> {
    let tenant = caller.partner(Scope::WebhooksWrite)?;
    state.partner_writes.admit(tenant)?;
    let change = WebhookChange::RotateKey {
        api_key: new_api_key(),
    };
    let webhook = state
        .store
        .change_webhook(tenant, webhook_id(&id)?, change)
        .await?
        .ok_or(ApiError::WebhookNotFound)?;
    Ok(Json(Success::new(WebhookView::with_secrets(webhook))))
}

/// The webhook's delivery logs, newest first.
#[utoipa::path(get, path = "/v1/webhooks/{id}/logs", operation_id = "listWebhookLogs", tag = "webhooks", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Webhook id"),
           ("limit" = Option<u32>, Query, minimum = 1, maximum = 100, description = "1 to 100, default 50")),
    responses((status = 200, body = LogList), (status = 400, body = ErrorBody),
              (status = 404, body = ErrorBody), (status = 401, body = ErrorBody),
              (status = 403, body = ErrorBody)))]
pub async fn logs(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    RawQuery(query): RawQuery,
) -> Result<Json<LogList>, ApiError> {
    let tenant = caller.partner(Scope::WebhooksRead)?;
    let id = webhook_id(&id)?;
    let limit = ListParams::parse(query.as_deref()).limit()?;
    if state.store.find_webhook(tenant, id).await?.is_none() {
        return Err(ApiError::WebhookNotFound);
    }
    let logs = state.store.webhook_logs(tenant, id, limit).await?;
    Ok(Json(LogList {
        count: logs.len(),
        logs: logs.into_iter().map(Into::into).collect(),
    }))
}
