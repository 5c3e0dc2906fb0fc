//! The producer API: `POST /v1/events` and `POST /v1/events/batch`, with the bodies they
//! take. Events are validated here, committed by the ingest writer, and answered only once
//! durable.

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::{Map, Value};
use utoipa::ToSchema;

use super::AppState;
use super::auth::Caller;
use super::body::{BATCH_BODY_LIMIT, EVENT_BODY_LIMIT, RawBody, json_body};
use super::error::{ApiError, ErrorBody};
use super::views::EventView;
use crate::domain::event::{EventInput, FIELDS, NewEvent};
use crate::domain::ids::TenantId;
use crate::domain::time::now_ms;
use crate::ingest::EventResult;
use crate::store::PublishOutcome;

const MAX_BATCH_EVENTS: usize = 1_000;

/// `POST /v1/events` body.
// Each field holds the JSON sent; `domain::event` checks it and names it in its message.
#[derive(ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PublishRequest {
    /// Tenant name.
    #[schema(value_type = String, pattern = r"^[a-z0-9][a-z0-9_-]{0,62}$")]
    tenant: Option<Value>,
    /// Lowercase dotted type, such as `kyc.status.changed`.
    #[schema(value_type = String, pattern = r"^[a-z0-9_]+(\.[a-z0-9_]+)*$", max_length = 255)]
    event_type: Option<Value>,
    /// JSON object; may not contain the envelope keys (`api_version`, `event_id`,
    /// `event_type`, `event_category`, `user_id`, `occurred_at`).
    #[schema(value_type = BTreeMap<String, Value>)]
    payload: Option<Value>,
    /// Idempotency key; generated when absent.
    #[schema(value_type = Option<Uuid>)]
    event_id: Option<Value>,
    #[schema(value_type = Option<String>, max_length = 255)]
    user_id: Option<Value>,
    #[schema(value_type = Option<String>, max_length = 255)]
    source_service: Option<Value>,
    /// ISO 8601; default now.
    #[schema(value_type = Option<String>, format = DateTime)]
    occurred_at: Option<Value>,
}

impl RawBody for PublishRequest {
    const FIELDS: &'static [&'static str] = &FIELDS;

    fn from_fields(mut object: Map<String, Value>) -> PublishRequest {
        PublishRequest {
            tenant: object.remove("tenant"),
            event_type: object.remove("eventType"),
            payload: object.remove("payload"),
            event_id: object.remove("eventId"),
            user_id: object.remove("userId"),
            source_service: object.remove("sourceService"),
            occurred_at: object.remove("occurredAt"),
        }
    }
}

impl PublishRequest {
    /// The event a publish body describes, validated as received at `now_ms`.
    fn validate(body: Value, now_ms: i64) -> Result<NewEvent, String> {
        let request = PublishRequest::from_body(body)?;
        EventInput {
            tenant: request.tenant,
            event_type: request.event_type,
            payload: request.payload,
            event_id: request.event_id,
            user_id: request.user_id,
            source_service: request.source_service,
            occurred_at: request.occurred_at,
        }
        .validate(now_ms)
    }
}

/// `POST /v1/events/batch` body.
// The field holds the JSON sent; [`BatchRequest::events`] checks it.
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BatchRequest {
    /// 1 to 1000 events; each is answered on its own (an invalid one with its 400).
    #[schema(value_type = Vec<PublishRequest>, min_items = 1, max_items = 1000)]
    events: Option<Value>,
}

impl RawBody for BatchRequest {
    const FIELDS: &'static [&'static str] = &["events"];

    fn from_fields(mut object: Map<String, Value>) -> BatchRequest {
        BatchRequest {
            events: object.remove("events"),
        }
    }
}

impl BatchRequest {
    /// The items: an array of 1 to 1000 values, each validated on its own later.
    fn events(self) -> Result<Vec<Value>, String> {
        match self.events {
            Some(Value::Array(items)) if (1..=MAX_BATCH_EVENTS).contains(&items.len()) => Ok(items),
            _ => Err("events must be an array of 1 to 1000 events".into()),
        }
    }
}

fn unknown_tenant(name: &TenantId) -> ApiError {
    ApiError::Validation(format!("Unknown tenant: {name}"))
}

fn count(outcome: &'static str, n: u64) {
    metrics::counter!("herald_events_published_total", "outcome" => outcome).increment(n);
}

/// Publishes one event. 201 when stored now, 200 with the stored event when its
/// `(tenant, eventId)` was already known.
#[utoipa::path(post, path = "/v1/events", operation_id = "publishEvent", tag = "producer", security(("bearer" = [])),
    request_body(content = PublishRequest, content_type = "application/json"),
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
    let event = PublishRequest::validate(body, now_ms()).map_err(|message| {
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

/// What a batch did, for the publish counters.
#[derive(Default)]
struct Tally {
    created: u64,
    existing: u64,
    rejected: u64,
}

impl Tally {
    fn report(&self) {
        count("created", self.created);
        count("existing", self.existing);
        count("rejected", self.rejected);
    }
}

/// The answer to a valid batch item once the ingest writer has had it, counted in `tally`.
fn stored_item(outcome: EventResult, tally: &mut Tally) -> BatchResult {
    match outcome {
        // Only this item could not be stored; the ingest writer has logged why.
        Err(error) => {
            let error = ApiError::from(error);
            tally.rejected += 1;
            BatchResult::Rejected {
                status: error.status().as_u16(),
                message: error.to_string(),
            }
        }
        Ok(PublishOutcome::Created(event)) => {
            tally.created += 1;
            BatchResult::Stored {
                status: 201,
                event: event.into(),
            }
        }
        Ok(PublishOutcome::Existing(event)) => {
            tally.existing += 1;
            BatchResult::Stored {
                status: 200,
                event: event.into(),
            }
        }
        Ok(PublishOutcome::UnknownTenant(name)) => {
            tally.rejected += 1;
            BatchResult::Rejected {
                status: 400,
                message: unknown_tenant(&name).to_string(),
            }
        }
    }
}

/// Publishes 1 to 1000 events; valid items are stored even when others are not.
#[utoipa::path(post, path = "/v1/events/batch", operation_id = "publishEvents", tag = "producer", security(("bearer" = [])),
    request_body(content = BatchRequest, content_type = "application/json"),
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
    caller.producer()?;
    let body = json_body(&headers, body, BATCH_BODY_LIMIT)?;
    let items = BatchRequest::from_body(body)
        .and_then(BatchRequest::events)
        .map_err(ApiError::Validation)?;
    let now = now_ms();
    let mut results: Vec<Option<BatchResult>> = Vec::with_capacity(items.len());
    let mut valid = Vec::with_capacity(items.len());
    for item in items {
        match PublishRequest::validate(item, now) {
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
    let mut tally = Tally {
        rejected: (results.len() - valid.len()) as u64,
        ..Tally::default()
    };
    let mut outcomes = state.ingest.publish(valid).await?.into_iter();
    for slot in results.iter_mut().filter(|slot| slot.is_none()) {
        let outcome = outcomes
            .next()
            .ok_or_else(|| ApiError::Internal("publish returned too few outcomes".into()))?;
        *slot = Some(stored_item(outcome, &mut tally));
    }
    tally.report();
    Ok(Json(BatchResults {
        results: results.into_iter().flatten().collect(),
    }))
}
