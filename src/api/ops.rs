//! Operations routes, without auth: liveness, readiness and metrics. (The OpenAPI document's
//! route is in `openapi.rs`, beside the document.)

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use serde::Serialize;
use utoipa::ToSchema;

use super::AppState;

/// The answer of `/healthz` and `/readyz`.
#[derive(Serialize, ToSchema)]
pub struct Health {
    /// `ok`, `ready` or `unavailable`.
    status: &'static str,
    /// Why the store is not ready (503 only).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    message: Option<&'static str>,
}

impl Health {
    fn status(status: &'static str) -> Json<Health> {
        Json(Health {
            status,
            message: None,
        })
    }
}

/// The process is up.
#[utoipa::path(get, path = "/healthz", tag = "operations",
    responses((status = 200, description = "Up", body = Health)))]
pub async fn healthz() -> Json<Health> {
    Health::status("ok")
}

/// The store answers.
#[utoipa::path(get, path = "/readyz", tag = "operations",
    responses((status = 200, description = "Ready", body = Health),
              (status = 503, description = "Store unreachable", body = Health)))]
pub async fn readyz(State(state): State<AppState>) -> (StatusCode, Json<Health>) {
    match state.store.ping().await {
        Ok(()) => (StatusCode::OK, Health::status("ready")),
        Err(error) => {
            tracing::warn!(%error, "readiness check failed");
            let unavailable = Health {
                status: "unavailable",
                message: Some("The database is unreachable"),
            };
            (StatusCode::SERVICE_UNAVAILABLE, Json(unavailable))
        }
    }
}

/// Prometheus text exposition.
#[utoipa::path(get, path = "/metrics", tag = "operations",
    responses((status = 200, description = "Prometheus text", body = String, content_type = "text/plain")))]
pub async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    state.metrics.run_upkeep();
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        state.metrics.render(),
    )
}
