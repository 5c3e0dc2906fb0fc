//! The producer API: `POST /v1/events` and `POST /v1/events/batch`. Events are
//! validated here, committed by the ingest writer, and answered only once durable.

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;

use super::AppState;
use super::auth::Caller;
use super::body::{BATCH_BODY_LIMIT, EVENT_BODY_LIMIT, json_body};
use super::error::{ApiError, ErrorBody};
use super::views::EventView;
use crate::domain::event::validate_new_event;
use crate::domain::time::now_ms;
use crate::store::PublishOutcome;

const MAX_BATCH_EVENTS: usize = 1_000;

fn unknown_tenant(name: &str) -> ApiError {
    ApiError::Validation(format!("Unknown tenant: {name}"))
}

fn count(outcome: &'static str, n: u64) {
    metrics::counter!("herald_events_published_total", "outcome" => outcome).increment(n);
}

/// Publishes one event. 201 when stored now, 200 with the stored event when its
/// `(tenant, eventId)` was already known.
#[utoipa::path(post, path = "/v1/events", operation_id = "publishEvent", tag = "producer", security(("bearer" = [])),
    request_body(content = crate::api::openapi::PublishRequest, content_type = "application/json"),
    responses((status = 201, body = EventView), (status = 200, body = EventView),
              (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
              (status = 403, body = ErrorBody), (status = 408, body = ErrorBody),
              (status = 413, body = ErrorBody), (status = 415, body = ErrorBody),
              (status = 503, body = ErrorBody)))]
pub async fn publish(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    caller.producer()?;
    let body = json_body(&headers, body, EVENT_BODY_LIMIT)?;
    let event = validate_new_event(&body, now_ms()).map_err(|message| {
        count("rejected", 1);
        ApiError::Validation(message)
    })?;
    let outcome = state.ingest.publish(vec![event]).await?.pop().transpose()?;
    match outcome {
        Some(PublishOutcome::Created(event)) => {
            count("created", 1);
            Ok((StatusCode::CREATED, Json(EventView::from(event))).into_response())
        }
        Some(PublishOutcome::Existing(event)) => {
            count("existing", 1);
            Ok((StatusCode::OK, Json(EventView::from(event))).into_response())
        }
        Some(PublishOutcome::UnknownTenant(name)) => {
            count("rejected", 1);
            Err(unknown_tenant(&name))
        }
        None => Err(ApiError::Internal("publish returned no outcome".into())),
    }
}

/// One item of a batch answer: the status it would have had alone, and its event or error.
#[derive(Serialize, ToSchema)]
#[serde(untagged)]
pub enum BatchResult {
    Stored { status: u16, event: EventView },
    Rejected { status: u16, message: String },
}

#[derive(Serialize, ToSchema)]
pub struct BatchResults {
    /// One entry per item, in order.
    pub results: Vec<BatchResult>,
}

/// Publishes 1 to 1000 events; valid items are stored even when others are not.
#[utoipa::path(post, path = "/v1/events/batch", operation_id = "publishEvents", tag = "producer", security(("bearer" = [])),
    request_body(content = crate::api::openapi::BatchRequest, content_type = "application/json"),
    responses((status = 200, body = BatchResults), (status = 400, body = ErrorBody),
              (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
              (status = 408, body = ErrorBody), (status = 413, body = ErrorBody),
              (status = 415, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub async fn publish_batch(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<BatchResults>, ApiError> {
    const SHAPE: &str = "events must be an array of 1 to 1000 events";
    caller.producer()?;
    let body = json_body(&headers, body, BATCH_BODY_LIMIT)?;
    let object = body
        .as_object()
        .ok_or_else(|| ApiError::Validation("Request body must be a JSON object".into()))?;
    if let Some(key) = object.keys().find(|k| k.as_str() != "events") {
        return Err(ApiError::Validation(format!(
            "Unknown field: {key} (expected events)"
        )));
    }
    let items = match object.get("events") {
        Some(Value::Array(items)) if (1..=MAX_BATCH_EVENTS).contains(&items.len()) => items,
        _ => return Err(ApiError::Validation(SHAPE.into())),
    };
    let now = now_ms();
    let mut results: Vec<Option<BatchResult>> = Vec::with_capacity(items.len());
    let mut valid = Vec::with_capacity(items.len());
    for item in items {
        match validate_new_event(item, now) {
            Ok(event) => {
                valid.push(event);
                results.push(None);
            }
            Err(message) => results.push(Some(BatchResult::Rejected {
                status: 400,
                message,
            })),
        }
    }
    let rejected = (results.len() - valid.len()) as u64;
    let mut outcomes = state.ingest.publish(valid).await?.into_iter();
    let (mut created, mut existing, mut unknown, mut failed) = (0, 0, 0, 0);
    for slot in results.iter_mut().filter(|slot| slot.is_none()) {
        *slot = Some(match outcomes.next().transpose() {
            // Only this item could not be stored; the ingest writer has logged why.
            Err(error) => {
                let error = ApiError::from(error);
                failed += 1;
                BatchResult::Rejected {
                    status: error.status().as_u16(),
                    message: error.to_string(),
                }
            }
            Ok(Some(PublishOutcome::Created(event))) => {
                created += 1;
                BatchResult::Stored {
                    status: 201,
                    event: event.into(),
                }
            }
            Ok(Some(PublishOutcome::Existing(event))) => {
                existing += 1;
                BatchResult::Stored {
                    status: 200,
                    event: event.into(),
                }
            }
            Ok(Some(PublishOutcome::UnknownTenant(name))) => {
                unknown += 1;
                BatchResult::Rejected {
                    status: 400,
                    message: unknown_tenant(&name).to_string(),
                }
            }
            Ok(None) => {
                return Err(ApiError::Internal(
                    "publish returned too few outcomes".into(),
                ));
            }
        });
    }
    count("created", created);
    count("existing", existing);
    count("rejected", rejected + unknown + failed);
    Ok(Json(BatchResults {
        results: results.into_iter().flatten().collect(),
    }))
}
