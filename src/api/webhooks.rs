//! Partner routes over webhooks: list, create, read, partial update, delete, rotate-key and
//! the webhook's delivery logs, with the create and update bodies they take.

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use serde::Serialize;
use serde_json::{Map, Value};
use utoipa::ToSchema;
use utoipa::openapi::schema::{ArrayBuilder, SchemaType, Type};
use utoipa::openapi::{Array, ObjectBuilder};

use super::AppState;
use super::ListParams;
use super::auth::Caller;
use super::body::{RawBody, WEBHOOK_BODY_LIMIT, json_body};
use super::error::{ApiError, ErrorBody};
use super::path::Path;
use super::views::{DeliveryLogView, Success, WebhookView};
use crate::domain::event_type::MAX_TYPE_LEN;
use crate::domain::ids::WebhookId;
use crate::domain::keys::ApiKey;
use crate::domain::scope::Scope;
use crate::domain::webhook::{FIELDS, NewWebhook, WebhookInput};
use crate::store::{self, WebhookChange};

/// What a webhook subscribes with: `*`, a type, or a type followed by `.*`.
const SUBSCRIPTION_PATTERN: &str = r"^(\*|[a-z0-9_]+(\.[a-z0-9_]+)*(\.\*)?)$";

/// `event_types` of a webhook body; `nullable` for the update, where null means "unchanged".
fn event_types_schema(nullable: bool) -> Array {
    let array = if nullable {
        SchemaType::from_iter([Type::Array, Type::Null])
    } else {
        SchemaType::Type(Type::Array)
    };
    ArrayBuilder::new()
        .schema_type(array)
        .items(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .pattern(Some(SUBSCRIPTION_PATTERN))
                .max_length(Some(MAX_TYPE_LEN + 2)),
        )
        .min_items(Some(1))
        .max_items(Some(100))
        .description(Some(
            "Non-empty: exact types (`kyc.status.changed`), wildcards (`card.*`) or `*`.",
        ))
        .build()
}

fn create_event_types() -> Array {
    event_types_schema(false)
}

fn update_event_types() -> Array {
    event_types_schema(true)
}

/// `POST /v1/webhooks` body (snake_case).
// Each field holds the JSON sent; `domain::webhook` checks it and names it in its message.
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WebhookCreate {
    /// 1 to 255 characters.
    #[schema(value_type = String, min_length = 1, max_length = 255)]
    name: Option<Value>,
    /// Absolute `https` URL (`http` only where the operator allows it); a host that is a
    /// literal private or loopback address is refused unless the operator allows it.
    #[schema(value_type = String, max_length = 2048)]
    url: Option<Value>,
    #[schema(schema_with = create_event_types, required = true)]
    event_types: Option<Value>,
    /// Default false.
    #[schema(value_type = Option<bool>)]
    is_active: Option<Value>,
    /// JSON object, at most 8 KiB; null means `{}`.
    #[schema(value_type = Option<BTreeMap<String, Value>>)]
    metadata: Option<Value>,
}

impl RawBody for WebhookCreate {
    const FIELDS: &'static [&'static str] = &FIELDS;

    fn from_fields(mut object: Map<String, Value>) -> WebhookCreate {
        WebhookCreate {
            name: object.remove("name"),
            url: object.remove("url"),
            event_types: object.remove("event_types"),
            is_active: object.remove("is_active"),
            metadata: object.remove("metadata"),
        }
    }
}

impl From<WebhookCreate> for WebhookInput {
    fn from(body: WebhookCreate) -> WebhookInput {
        WebhookInput {
            name: body.name,
            url: body.url,
            event_types: body.event_types,
            is_active: body.is_active,
            metadata: body.metadata,
        }
    }
}

/// `PUT /v1/webhooks/{id}` body: any subset of the create fields (null: unchanged, except
/// `metadata`, which null clears).
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WebhookUpdate {
    #[schema(value_type = Option<String>, min_length = 1, max_length = 255)]
    name: Option<Value>,
    #[schema(value_type = Option<String>, max_length = 2048)]
    url: Option<Value>,
    #[schema(schema_with = update_event_types)]
    event_types: Option<Value>,
    #[schema(value_type = Option<bool>)]
    is_active: Option<Value>,
    #[schema(value_type = Option<BTreeMap<String, Value>>)]
    metadata: Option<Value>,
}

impl RawBody for WebhookUpdate {
    const FIELDS: &'static [&'static str] = &FIELDS;

    fn from_fields(mut object: Map<String, Value>) -> WebhookUpdate {
        WebhookUpdate {
            name: object.remove("name"),
            url: object.remove("url"),
            event_types: object.remove("event_types"),
            is_active: object.remove("is_active"),
            metadata: object.remove("metadata"),
        }
    }
}

impl From<WebhookUpdate> for WebhookInput {
    fn from(body: WebhookUpdate) -> WebhookInput {
        WebhookInput {
            name: body.name,
            url: body.url,
            event_types: body.event_types,
            is_active: body.is_active,
            metadata: body.metadata,
        }
    }
}

/// A path id that is not a UUID names no webhook.
pub(super) fn webhook_id(text: &str) -> Result<WebhookId, ApiError> {
    WebhookId::parse(text).ok_or(ApiError::WebhookNotFound)
}

/// The store's shape of a new webhook.
fn stored(new: NewWebhook) -> store::NewWebhook {
    let NewWebhook {
        id,
        tenant,
        api_key,
        settings,
    } = new;
    store::NewWebhook {
        id,
        tenant,
        name: settings.name,
        url: settings.url,
        api_key,
        event_types: settings.event_types,
        is_active: settings.is_active,
        metadata: settings.metadata,
    }
}

#[derive(Serialize, ToSchema)]
pub struct Deleted {
    #[schema(value_type = Uuid)]
    pub id: WebhookId,
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
    request_body(content = WebhookCreate, content_type = "application/json"),
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
    let settings = WebhookCreate::from_body(body)
        .and_then(|body| {
            WebhookInput::from(body).validate_create(&state.config.destination_policy())
        })
        .map_err(ApiError::Validation)?;
    let new = NewWebhook::new(tenant.clone(), settings);
    let cap = state.config.max_webhooks_per_tenant;
    match state.store.create_webhook(stored(new), cap).await? {
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
    request_body(content = WebhookUpdate, content_type = "application/json"),
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
    let fields = WebhookUpdate::from_body(body)
        .and_then(|body| {
            WebhookInput::from(body).validate_update(&state.config.destination_policy())
        })
        .map_err(ApiError::Validation)?;
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
        api_key: ApiKey::generate(),
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
