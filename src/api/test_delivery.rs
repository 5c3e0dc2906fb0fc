//! `POST /v1/webhooks/{id}/test`: a partner sends a test event to one of its webhooks, to
//! see its endpoint receive, verify and answer a real delivery.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;

use super::AppState;
use super::auth::Caller;
use super::error::{ApiError, ErrorBody};
use super::path::Path;
use super::views::{EventView, Success};
use crate::domain::event::test_event;
use crate::domain::ids::WebhookId;
use crate::domain::scope::Scope;
use crate::domain::time::now_ms;
use crate::store::DirectPublishOutcome;

/// Publishes a `webhook.test` event (payload `{"message": "Test event from Herald"}`) to this
/// webhook only, whatever its event types; it is delivered at once, then logged and retried
/// like any other event. Any request body is ignored.
#[utoipa::path(post, path = "/v1/webhooks/{id}/test", operation_id = "testWebhook", tag = "webhooks", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Webhook id")),
    responses((status = 202, description = "The test event, stored and queued to this webhook",
               body = Success<EventView>),
              (status = 400, description = "`Webhook is not active`", body = ErrorBody),
              (status = 404, body = ErrorBody), (status = 401, body = ErrorBody),
              (status = 403, body = ErrorBody),
              (status = 429, description = "Too many writes for this tenant", body = ErrorBody,
               headers(("Retry-After" = u64, description = "Whole seconds (at least 1) until a write is allowed again"))),
              (status = 503, body = ErrorBody)))]
pub async fn test(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<(StatusCode, Json<Success<EventView>>), ApiError> {
    let tenant = caller.partner(Scope::WebhooksWrite)?;
    state.partner_writes.admit(tenant)?;
    let webhook = WebhookId::parse(&id).ok_or(ApiError::WebhookNotFound)?;
    let event = test_event(tenant, now_ms());
    match state.store.publish_to_webhook(webhook, event).await? {
        DirectPublishOutcome::Queued(event) => {
            // Stored already fanned out, so only the claim is left: the dispatcher may be
            // asleep until its next due time otherwise.
            state.wakeup.wake();
            Ok((StatusCode::ACCEPTED, Json(Success::new((*event).into()))))
        }
        DirectPublishOutcome::WebhookNotFound => Err(ApiError::WebhookNotFound),
        DirectPublishOutcome::WebhookInactive => {
            Err(ApiError::Validation("Webhook is not active".into()))
        }
    }
}
