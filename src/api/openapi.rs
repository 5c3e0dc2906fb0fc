//! The OpenAPI 3.1 document served at `/openapi.json`, generated from the route annotations
//! and response types, plus the request shapes (bodies are validated by hand for the
//! contract's messages, so they are described here) and the error answers routes share.
//! The schema fuzz test (`tests/api/fuzz.rs`) holds Herald to it.

use std::collections::BTreeMap;

use serde_json::Value;
use utoipa::openapi::header::HeaderBuilder;
use utoipa::openapi::path::{Operation, ParameterIn};
use utoipa::openapi::schema::{ArrayBuilder, Schema, SchemaType, Type};
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::openapi::{Array, Content, ObjectBuilder, Ref, RefOr, Required, ResponseBuilder};
use utoipa::{Modify, OpenApi, ToSchema};

use super::error::ErrorBody;
use super::events::{EventList, EventLogs, RetryQueued};
use super::publish::{BatchResult, BatchResults};
use super::views::{DeliveryLogView, EventStatusView, EventView, WebhookView};
use super::webhooks::{Deleted, LogList};
use crate::domain::event_type::MAX_TYPE_LEN;
use crate::domain::status::EventStatus;

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
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
pub struct WebhookCreate {
    /// 1 to 255 characters.
    #[schema(min_length = 1, max_length = 255)]
    name: String,
    /// Absolute `https` URL (`http` only where the operator allows it); a host that is a
    /// literal private or loopback address is refused unless the operator allows it.
    #[schema(max_length = 2048)]
    url: String,
    #[schema(schema_with = create_event_types)]
    event_types: Vec<String>,
    /// Default false.
    is_active: Option<bool>,
    /// JSON object, at most 8 KiB; null means `{}`.
    metadata: Option<BTreeMap<String, Value>>,
}

/// `PUT /v1/webhooks/{id}` body: any subset of the create fields (null: unchanged, except
/// `metadata`, which null clears).
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
pub struct WebhookUpdate {
    #[schema(min_length = 1, max_length = 255)]
    name: Option<String>,
    #[schema(max_length = 2048)]
    url: Option<String>,
    #[schema(schema_with = update_event_types)]
    event_types: Option<Vec<String>>,
    is_active: Option<bool>,
    metadata: Option<BTreeMap<String, Value>>,
}

/// `POST /v1/webhooks/events/{eventId}/retry` body; optional (empty or `{}` mean every
/// active subscribed webhook).
#[derive(ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[allow(dead_code)]
pub struct RetryRequest {
    /// Retry to this webhook only; it must be active.
    webhook_id: Option<uuid::Uuid>,
}

/// `POST /v1/events` body.
#[derive(ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[allow(dead_code)]
pub struct PublishRequest {
    /// Tenant name.
    #[schema(pattern = r"^[a-z0-9][a-z0-9_-]{0,62}$")]
    tenant: String,
    /// Lowercase dotted type, such as `kyc.status.changed`.
    #[schema(pattern = r"^[a-z0-9_]+(\.[a-z0-9_]+)*$", max_length = 255)]
    event_type: String,
    /// JSON object; may not contain the envelope keys (`api_version`, `event_id`,
    /// `event_type`, `event_category`, `user_id`, `occurred_at`).
    payload: BTreeMap<String, Value>,
    /// Idempotency key; generated when absent.
    event_id: Option<uuid::Uuid>,
    #[schema(max_length = 255)]
    user_id: Option<String>,
    #[schema(max_length = 255)]
    source_service: Option<String>,
    /// ISO 8601; default now.
    #[schema(format = DateTime)]
    occurred_at: Option<String>,
}

/// `POST /v1/events/batch` body.
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
pub struct BatchRequest {
    /// 1 to 1000 events; each is answered on its own (an invalid one with its 400).
    #[schema(min_items = 1, max_items = 1000)]
    events: Vec<PublishRequest>,
}

/// The answer of `/healthz` and `/readyz`.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct Health {
    /// `ok`, `ready` or `unavailable`.
    status: String,
    /// Why the store is not ready (503 only).
    #[schema(nullable = false)]
    message: Option<String>,
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

/// Adds to every operation the error answers Herald gives it besides its own, so that each
/// lists every status it can send (the schema fuzz test holds the document to that). An
/// answer an annotation already describes is kept.
struct ErrorResponses;

impl ErrorResponses {
    fn add(operation: &mut Operation, path: &str, method: &str) {
        let partner = path.starts_with("/v1/webhooks");
        let mut errors: Vec<(&str, &str)> = Vec::new();
        if !path.starts_with("/v1/") {
            return;
        }
        errors.push((
            "401",
            "`Not authenticated`: missing, malformed, unknown or revoked bearer token.",
        ));
        errors.push((
            "403",
            "`Not authorized`: the token lacks the kind or scope this route needs.",
        ));
        if path.contains('{') {
            errors.push((
                "404",
                "`Webhook not found` or `Event not found`: an unknown id, a malformed one, or \
                 another tenant's.",
            ));
        }
        let has_query = operation
            .parameters
            .iter()
            .flatten()
            .any(|p| matches!(p.parameter_in, ParameterIn::Query));
        if operation.request_body.is_some() || has_query {
            errors.push((
                "400",
                "Invalid request: one sentence naming the field (malformed JSON, a missing or \
                 malformed field, a value out of range).",
            ));
        }
        if operation.request_body.is_some() {
            errors.push((
                "408",
                "The request body did not arrive within the body timeout.",
            ));
            errors.push(("413", "The request body is over this route's limit."));
            errors.push(("415", "The Content-Type of the body is not JSON."));
        }
        if partner && method != "get" {
            errors.push((
                "429",
                "`Too many requests`: the tenant's partner write rate is spent; try again \
                 after `Retry-After` seconds.",
            ));
        }
        errors.push((
            "503",
            if partner {
                "`Notification service is not configured for this environment` (switched off \
                 in configuration), or the database is unavailable."
            } else {
                "The database is unavailable, or Herald is shutting down; try again shortly."
            },
        ));
        let responses = &mut operation.responses.responses;
        for (status, description) in errors {
            let described = matches!(
                responses.get(status),
                Some(RefOr::T(response)) if !response.description.is_empty()
            );
            if described {
                continue;
            }
            let mut response = ResponseBuilder::new().description(description).content(
                "application/json",
                Content::new(Some(Ref::from_schema_name("ErrorBody"))),
            );
            if status == "429" {
                response = response.header(
                    "Retry-After",
                    HeaderBuilder::new()
                        .schema(
                            ObjectBuilder::new()
                                .schema_type(Type::Integer)
                                .minimum(Some(0)),
                        )
                        .description(Some("Whole seconds to wait."))
                        .build(),
                );
            }
            responses.insert(status.to_string(), RefOr::T(response.build()));
        }
    }
}

impl Modify for ErrorResponses {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        for (path, item) in openapi.paths.paths.iter_mut() {
            for (method, operation) in [
                ("get", item.get.as_mut()),
                ("post", item.post.as_mut()),
                ("put", item.put.as_mut()),
                ("delete", item.delete.as_mut()),
            ] {
                if let Some(operation) = operation {
                    ErrorResponses::add(operation, path, method);
                    optional_body_is_absent_not_null(operation);
                }
            }
        }
    }
}

/// utoipa describes an `Option<T>` request body as "T or JSON null"; Herald means "T, or no
/// body at all" (a `null` body is a 400, like any body that is not an object).
fn optional_body_is_absent_not_null(operation: &mut Operation) {
    let Some(body) = operation.request_body.as_mut() else {
        return;
    };
    for content in body.content.values_mut() {
        let Some(RefOr::T(Schema::OneOf(one_of))) = &content.schema else {
            continue;
        };
        let is_null = |schema: &RefOr<Schema>| {
            matches!(schema, RefOr::T(Schema::Object(object))
                if object.schema_type == SchemaType::Type(Type::Null))
        };
        let mut others = one_of.items.iter().filter(|schema| !is_null(schema));
        if let (Some(only), None) = (others.next(), others.next()) {
            if one_of.items.len() == 2 {
                content.schema = Some(only.clone());
                body.required = Some(Required::False);
            }
        }
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
        WebhookCreate, WebhookUpdate, RetryRequest, PublishRequest, BatchRequest, Health,
    )),
    modifiers(&BearerAuth, &ErrorResponses),
)]
pub struct ApiDoc;
