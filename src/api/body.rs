//! Reading JSON request bodies with the contract's errors: 415 for a non-JSON content type,
//! 413 over the route's limit, 400 for malformed JSON or a body that is not an object of the
//! route's fields ([`RawBody`]).

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::http::header::CONTENT_TYPE;
use axum::http::{HeaderMap, StatusCode};
use serde_json::{Map, Value};

use super::error::ApiError;
use crate::domain::body::known_fields;

/// Body limit of `POST /v1/events`.
pub const EVENT_BODY_LIMIT: usize = 256 * 1024;
/// Body limit of `POST /v1/events/batch`.
pub const BATCH_BODY_LIMIT: usize = 16 * 1024 * 1024;
/// Body limit of an event retry (`{"webhookId": ...}` needs far less).
pub const RETRY_BODY_LIMIT: usize = 16 * 1024;
/// Body limit of webhook create/update (metadata is at most 8 KiB of it).
pub const WEBHOOK_BODY_LIMIT: usize = 64 * 1024;

/// Whether the request says its body is JSON (`application/json` or `application/*+json`).
/// `None` when it names no content type at all.
pub fn declares_json(headers: &HeaderMap) -> Option<bool> {
    let value = headers.get(CONTENT_TYPE)?;
    let essence = value
        .to_str()
        .unwrap_or("")
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    Some(
        essence == "application/json"
            || (essence.starts_with("application/") && essence.ends_with("+json")),
    )
}

/// The error of a request body that did not arrive within `http_body_timeout`.
#[derive(Debug, thiserror::Error)]
#[error("the request body did not arrive in time")]
pub struct BodyTimedOut;

/// Whether reading the body failed because it came too slowly (the error is wrapped by
/// axum's rejection, hence the walk down the chain).
fn timed_out(rejection: &BytesRejection) -> bool {
    let mut source = std::error::Error::source(rejection);
    while let Some(error) = source {
        if error.is::<BodyTimedOut>() {
            return true;
        }
        source = error.source();
    }
    false
}

/// The buffered body, with an oversize body turned into 413 and a late one into 408.
pub fn bytes_within_limit(
    body: Result<Bytes, BytesRejection>,
    limit: usize,
) -> Result<Bytes, ApiError> {
    body.map_err(|rejection| {
        if timed_out(&rejection) {
            ApiError::RequestTimeout
        } else if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::PayloadTooLarge {
                limit_kib: limit / 1024,
            }
        } else {
            ApiError::Validation(format!(
                "Could not read the request body: {}",
                rejection.body_text()
            ))
        }
    })
}

/// Parses a required JSON body.
pub fn json_body(
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
    limit: usize,
) -> Result<Value, ApiError> {
    let bytes = bytes_within_limit(body, limit)?;
    if declares_json(headers) != Some(true) {
        return Err(ApiError::UnsupportedMediaType);
    }
    parse_json(&bytes)
}

/// Parses JSON text, with a 400 that says where it went wrong.
pub fn parse_json(bytes: &[u8]) -> Result<Value, ApiError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::Validation(
            "Request body is empty; expected a JSON object".into(),
        ));
    }
    serde_json::from_slice(bytes)
        .map_err(|e| ApiError::Validation(format!("Malformed JSON in request body: {e}")))
}

/// A route's request body as sent: the fields of a JSON object, each still any JSON, so that
/// validation can name the field of every problem in the contract's words.
pub trait RawBody: Sized {
    /// The fields the route knows, in the order its messages list them.
    const FIELDS: &'static [&'static str];

    /// Takes the fields out of an object that holds no others.
    fn from_fields(object: Map<String, Value>) -> Self;

    /// `body` as this shape; a 400 for anything but an object or for a field not in
    /// [`RawBody::FIELDS`].
    fn from_body(body: Value) -> Result<Self, String> {
        known_fields(body, Self::FIELDS).map(Self::from_fields)
    }
}
