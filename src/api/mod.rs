//! The HTTP edge: the only place that knows axum. Builds the router over [`AppState`];
//! handlers authenticate, validate, call the store or ingest, and shape the contract's JSON.

pub mod auth;
pub mod body;
pub mod cursor;
pub mod error;
pub mod events;
pub mod health;
pub mod openapi;
pub mod ops;
pub mod path;
pub mod publish;
pub mod rate;
pub mod serve;
pub mod test_delivery;
pub mod views;
pub mod webhooks;

use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::Method;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use metrics_exporter_prometheus::PrometheusHandle;
use tower_http::trace::TraceLayer;

use self::auth::TokenCache;
use self::body::{BATCH_BODY_LIMIT, EVENT_BODY_LIMIT, RETRY_BODY_LIMIT, WEBHOOK_BODY_LIMIT};
use self::error::ApiError;
use self::rate::WriteLimiter;
use crate::config::Config;
use crate::delivery::Wakeup;
use crate::ingest::Ingest;
use crate::store::Store;

/// What every handler can reach; cheap to clone.
#[derive(Clone)]
pub struct AppState {
    pub store: Arc<dyn Store>,
    pub ingest: Ingest,
    pub config: Arc<Config>,
    pub metrics: PrometheusHandle,
    pub tokens: Arc<TokenCache>,
    /// Wakes the dispatcher when a retry queues work.
    pub wakeup: Wakeup,
    /// The partner write rate, per tenant.
    pub partner_writes: Arc<WriteLimiter>,
}

/// The whole HTTP API.
pub fn router(state: AppState) -> Router {
    // Static segments win over `{id}` in axum's router, so `/v1/webhooks/events...` is never
    // taken for a webhook id.
    let partner = Router::new()
        .route("/v1/webhooks", get(webhooks::list).post(webhooks::create))
        .route("/v1/webhooks/events", get(events::list))
        .route("/v1/webhooks/events/{event_id}/status", get(events::status))
        .route("/v1/webhooks/events/{event_id}/logs", get(events::logs))
        .route(
            "/v1/webhooks/events/{event_id}/retry",
            post(events::retry).layer(DefaultBodyLimit::max(RETRY_BODY_LIMIT)),
        )
        .route(
            "/v1/webhooks/{id}",
            get(webhooks::get)
                .put(webhooks::update)
                .delete(webhooks::delete),
        )
        .route("/v1/webhooks/{id}/rotate-key", post(webhooks::rotate_key))
        .route("/v1/webhooks/{id}/test", post(test_delivery::test))
        .route("/v1/webhooks/{id}/logs", get(webhooks::logs))
        .route("/v1/webhooks/{id}/health", get(health::health))
        .route("/v1/webhooks/{id}/recover", post(health::recover))
        .layer(DefaultBodyLimit::max(WEBHOOK_BODY_LIMIT))
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            require_notifications,
        ));
    let producer = Router::new()
        .route(
            "/v1/events",
            post(publish::publish).layer(DefaultBodyLimit::max(EVENT_BODY_LIMIT)),
        )
        .route(
            "/v1/events/batch",
            post(publish::publish_batch).layer(DefaultBodyLimit::max(BATCH_BODY_LIMIT)),
        );
    let operations = Router::new()
        .route("/healthz", get(ops::healthz))
        .route("/readyz", get(ops::readyz))
        .route("/metrics", get(ops::metrics))
        .route("/openapi.json", get(openapi::openapi_json));
    Router::new()
        .merge(partner)
        .merge(producer)
        .merge(operations)
        .fallback(|| async { ApiError::RouteNotFound })
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
        .layer(middleware::from_fn(record_metrics))
        .layer(TraceLayer::new_for_http())
        .with_state(state)
}

/// The 503 switch: with notifications off, every `/v1/webhooks*` route answers it.
async fn require_notifications(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    if state.config.notifications_enabled {
        next.run(request).await
    } else {
        ApiError::NotificationsDisabled.into_response()
    }
}

async fn record_metrics(request: Request, next: Next) -> Response {
    // Labels come from fixed sets (the routes' templates, the common methods), so made-up
    // methods and paths cannot grow the metrics without bound.
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|path| path.as_str().to_string())
        .unwrap_or_else(|| "unmatched".into());
    let method = method_label(request.method());
    let started = Instant::now();
    let response = next.run(request).await;
    let status = response.status().as_u16().to_string();
    metrics::counter!("herald_http_requests_total", "method" => method, "route" => route.clone(), "status" => status)
        .increment(1);
    metrics::histogram!("herald_http_request_duration_seconds", "method" => method, "route" => route)
        .record(started.elapsed().as_secs_f64());
    response
}

/// The method label: one of the common methods, else `other`.
fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::PATCH => "PATCH",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

/// Query parameters of list routes, decoded leniently (a malformed query is just absent
/// parameters) so every error is ours and names the parameter.
pub struct ListParams(Vec<(String, String)>);

impl ListParams {
    pub fn parse(query: Option<&str>) -> ListParams {
        ListParams(
            url::form_urlencoded::parse(query.unwrap_or("").as_bytes())
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect(),
        )
    }

    /// The last value given for `name`.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// `limit`: an integer from 1 to 100, default 50.
    pub fn limit(&self) -> Result<u32, ApiError> {
        match self.get("limit") {
            None => Ok(50),
            Some(text) => text
                .trim()
                .parse::<u32>()
                .ok()
                .filter(|n| (1..=100).contains(n))
                .ok_or_else(|| {
                    ApiError::Validation("limit must be an integer between 1 and 100".into())
                }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn methods_map_to_a_fixed_set_of_labels() {
        for name in ["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"] {
            assert_eq!(
                method_label(&Method::from_bytes(name.as_bytes()).unwrap()),
                name
            );
        }
        for name in ["CONNECT", "TRACE", "get", "PROPFIND", "XYZZY1234567890"] {
            assert_eq!(
                method_label(&Method::from_bytes(name.as_bytes()).unwrap()),
                "other"
            );
        }
    }
}
