//! The OpenAPI 3.1 document served at `/openapi.json`: the route annotations and the
//! request and response types beside each handler, collected here, plus the error answers
//! routes share. The schema fuzz test (`tests/api/fuzz.rs`) holds Herald to it.

use axum::Json;
use utoipa::openapi::header::HeaderBuilder;
use utoipa::openapi::path::{Operation, ParameterIn};
use utoipa::openapi::schema::{Schema, SchemaType, Type};
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::openapi::{Content, ObjectBuilder, Ref, RefOr, Required, Response, ResponseBuilder};
use utoipa::{Modify, OpenApi};

use super::error::ErrorBody;
use super::events::{self, EventList, EventLogs, RetryQueued, RetryRequest};
use super::health::{self, HealthView, RecoverRequest, RecoveryQueued};
use super::ops::{self, Health};
use super::publish::{self, BatchRequest, BatchResult, BatchResults, PublishRequest};
use super::test_delivery;
use super::views::{DeliveryLogView, EventStatusView, EventView, WebhookView};
use super::webhooks::{self, Deleted, LogList, WebhookCreate, WebhookUpdate};
use crate::domain::health::HealthState;
use crate::domain::status::EventStatus;

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
        if !path.starts_with("/v1/") {
            return;
        }
        let errors = ErrorResponses::of(operation, path, method);
        let responses = &mut operation.responses.responses;
        for (status, description) in errors {
            let described = matches!(
                responses.get(status),
                Some(RefOr::T(response)) if !response.description.is_empty()
            );
            if !described {
                let response = ErrorResponses::response(status, description);
                responses.insert(status.to_string(), RefOr::T(response));
            }
        }
    }

    /// The error answers of an operation under `/v1/`, with their descriptions.
    fn of(operation: &Operation, path: &str, method: &str) -> Vec<(&'static str, &'static str)> {
        let partner = path.starts_with("/v1/webhooks");
        let mut errors = vec![
            (
                "401",
                "`Not authenticated`: missing, malformed, unknown or revoked bearer token.",
            ),
            (
                "403",
                "`Not authorized`: the token lacks the kind or scope this route needs.",
            ),
        ];
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
            errors.extend([
                (
                    "408",
                    "The request body did not arrive within the body timeout.",
                ),
                ("413", "The request body is over this route's limit."),
                ("415", "The Content-Type of the body is not JSON."),
            ]);
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
        errors
    }

    /// An `ErrorBody` answer; a 429 also names its `Retry-After` header.
    fn response(status: &str, description: &str) -> Response {
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
        response.build()
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
        webhooks::list, webhooks::create, webhooks::get, webhooks::update, webhooks::delete,
        webhooks::rotate_key, webhooks::logs, health::health, health::recover,
        test_delivery::test, events::list, events::status, events::logs, events::retry,
        publish::publish, publish::publish_batch, ops::healthz, ops::readyz, ops::metrics,
        openapi_json,
    ),
    components(schemas(
        WebhookView, EventView, EventStatusView, DeliveryLogView, EventStatus, ErrorBody,
        Deleted, LogList, EventList, EventLogs, RetryQueued, BatchResult, BatchResults,
        WebhookCreate, WebhookUpdate, RetryRequest, PublishRequest, BatchRequest, Health,
        HealthView, HealthState, RecoverRequest, RecoveryQueued,
    )),
    modifiers(&BearerAuth, &ErrorResponses),
)]
pub struct ApiDoc;

/// This document.
#[utoipa::path(get, path = "/openapi.json", tag = "operations",
    responses((status = 200, description = "OpenAPI 3.1", body = Object)))]
pub async fn openapi_json() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}
