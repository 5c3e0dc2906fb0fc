//! The one error type of the HTTP edge. Each variant maps to a status and the contract's
//! message; internal details are logged, never sent to the client.

use axum::Json;
use axum::http::header::RETRY_AFTER;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

use crate::ingest::IngestError;
use crate::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("Not authenticated")]
    NotAuthenticated,
    #[error("Not authorized")]
    NotAuthorized,
    #[error("Webhook not found")]
    WebhookNotFound,
    #[error("Event not found")]
    EventNotFound,
    #[error("Not found")]
    RouteNotFound,
    #[error("Method not allowed")]
    MethodNotAllowed,
    /// A request the contract refuses with 400; the text names the field.
    #[error("{0}")]
    Validation(String),
    #[error("Request body is too large (limit {limit_kib} KiB)")]
    PayloadTooLarge { limit_kib: usize },
    #[error("Content-Type must be application/json")]
    UnsupportedMediaType,
    #[error("Request body did not arrive in time")]
    RequestTimeout,
    /// A partner write beyond the tenant's rate; answered with `Retry-After`.
    #[error("Too many requests")]
    TooManyRequests { retry_after_secs: u64 },
    #[error("Notification service is not configured for this environment")]
    NotificationsDisabled,
    #[error("The database is unavailable; try again shortly")]
    Unavailable,
    #[error("Herald is shutting down; try again shortly")]
    ShuttingDown,
    #[error("Internal server error")]
    Internal(String),
}

/// The body of every error: `{"message": ..., "code": ...}`.
#[derive(Serialize, ToSchema)]
pub struct ErrorBody {
    /// Human-readable message; the contract fixes its text for most errors.
    pub message: String,
    /// Stable machine-readable code.
    pub code: &'static str,
}

impl ApiError {
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::NotAuthenticated => StatusCode::UNAUTHORIZED,
            ApiError::NotAuthorized => StatusCode::FORBIDDEN,
            ApiError::WebhookNotFound | ApiError::EventNotFound | ApiError::RouteNotFound => {
                StatusCode::NOT_FOUND
            }
            ApiError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::Validation(_) => StatusCode::BAD_REQUEST,
            ApiError::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::RequestTimeout => StatusCode::REQUEST_TIMEOUT,
            ApiError::TooManyRequests { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::NotificationsDisabled | ApiError::Unavailable | ApiError::ShuttingDown => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn code(&self) -> &'static str {
        match self {
            ApiError::NotAuthenticated => "not_authenticated",
            ApiError::NotAuthorized => "not_authorized",
            ApiError::WebhookNotFound => "webhook_not_found",
            ApiError::EventNotFound => "event_not_found",
            ApiError::RouteNotFound => "route_not_found",
            ApiError::MethodNotAllowed => "method_not_allowed",
            ApiError::Validation(_) => "validation_failed",
            ApiError::PayloadTooLarge { .. } => "payload_too_large",
            ApiError::UnsupportedMediaType => "unsupported_media_type",
            ApiError::RequestTimeout => "request_timeout",
            ApiError::TooManyRequests { .. } => "too_many_requests",
            ApiError::NotificationsDisabled => "notifications_disabled",
            ApiError::Unavailable => "store_unavailable",
            ApiError::ShuttingDown => "shutting_down",
            ApiError::Internal(_) => "internal_error",
        }
    }

    /// The body of an error response, for callers that embed it (batch results).
    pub fn body(&self) -> ErrorBody {
        ErrorBody {
            message: self.to_string(),
            code: self.code(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if let ApiError::Internal(detail) = &self {
            tracing::error!(%detail, "request failed");
        }
        let mut response = (self.status(), Json(self.body())).into_response();
        if let ApiError::TooManyRequests { retry_after_secs } = self {
            response
                .headers_mut()
                .insert(RETRY_AFTER, HeaderValue::from(retry_after_secs));
        }
        response
    }
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> ApiError {
        if error.is_unavailable() {
            tracing::warn!(%error, "store unavailable");
            ApiError::Unavailable
        } else {
            ApiError::Internal(error.to_string())
        }
    }
}

impl From<IngestError> for ApiError {
    fn from(error: IngestError) -> ApiError {
        match error {
            IngestError::Unavailable(detail) => {
                tracing::warn!(%detail, "store unavailable for publish");
                ApiError::Unavailable
            }
            IngestError::ShuttingDown => ApiError::ShuttingDown,
            IngestError::Store(detail) => ApiError::Internal(detail),
        }
    }
}
