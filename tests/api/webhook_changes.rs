//! Changing a partner's existing webhooks: partial updates, key rotation, deletion, its logs,
//! path ids that are not UUIDs, and the switch that turns every webhooks route off.

use base64::Engine;
use serde_json::json;

use crate::helpers::{assert_error, webhook_body};

#[tokio::test]
async fn put_is_a_partial_update_that_replaces_lists_and_advances_updated_at() {
    let Some(app) = super::spawn(&[]).await else {
        return;
    };
    let acme = app.partner("acme").await;
    let mut body = webhook_body("orig", &["a.b", "c.*"]);
    body["metadata"] = json!({"x": 1, "y": 2});
    let created = acme.create_webhook(&body).await;
    let path = format!("/v1/webhooks/{}", created["id"].as_str().unwrap());

    let (status, updated) = acme.put(&path, &json!({"name": "renamed"})).await;
    assert_eq!(status, 200, "{updated}");
    assert_eq!(updated["success"], true);
    let data = &updated["data"];
    assert_eq!(data["name"], "renamed");
    assert_eq!(data["url"], created["url"]);
    assert_eq!(data["eventTypes"], json!(["a.b", "c.*"]));
    assert_eq!(data["metadata"], json!({"x": 1, "y": 2}));
    assert!(
        data["apiKey"]
            .as_str()
            .unwrap()
            .starts_with("whk_****...****")
    );
    assert!(data.get("signingSecret").is_none());
    assert!(data["updatedAt"].as_str().unwrap() > created["updatedAt"].as_str().unwrap());
    assert_eq!(data["createdAt"], created["createdAt"]);

    let (_, replaced) = acme
        .put(&path, &json!({"event_types": ["z"], "metadata": {"only": true}, "is_active": true, "url": "https://other.example.com/h"}))
        .await;
    let data = &replaced["data"];
    assert_eq!(data["eventTypes"], json!(["z"]));
    assert_eq!(data["metadata"], json!({"only": true}));
    assert_eq!(data["isActive"], true);
    assert_eq!(data["url"], "https://other.example.com/h");
    assert_eq!(data["name"], "renamed");
    assert_eq!(acme.get(&path).await.1["eventTypes"], json!(["z"]));

    assert_error(
        &acme
            .put(&path, &json!({"url": "http://x.example.com"}))
            .await,
        400,
        "url must use https",
    );
    assert_error(
        &acme.put(&path, &json!({"event_types": []})).await,
        400,
        "event_types must be a non-empty array of event type patterns",
    );
    let missing = format!("/v1/webhooks/{}", uuid::Uuid::new_v4());
    assert_error(
        &acme.put(&missing, &json!({"name": "x"})).await,
        404,
        "Webhook not found",
    );
}

#[tokio::test]
async fn rotate_key_returns_a_new_full_key_and_secret() {
    let Some(app) = super::spawn(&[]).await else {
        return;
    };
    let acme = app.partner("acme").await;
    let created = acme.create_webhook(&webhook_body("r", &["*"])).await;
    let id = created["id"].as_str().unwrap();
    let (status, rotated) = acme
        .post(&format!("/v1/webhooks/{id}/rotate-key"), &json!({}))
        .await;
    assert_eq!(status, 200, "{rotated}");
    assert_eq!(rotated["success"], true);
    let new_key = rotated["data"]["apiKey"].as_str().unwrap();
    assert_ne!(new_key, created["apiKey"].as_str().unwrap());
    assert_eq!(new_key.len(), 68);
    let secret = rotated["data"]["signingSecret"].as_str().unwrap();
    assert_eq!(
        secret,
        format!(
            "whsec_{}",
            base64::engine::general_purpose::STANDARD.encode(new_key)
        )
    );
    let (_, one) = acme.get(&format!("/v1/webhooks/{id}")).await;
    assert_eq!(one["apiKey"], format!("whk_****...****{}", &new_key[64..]));
    let missing = format!("/v1/webhooks/{}/rotate-key", uuid::Uuid::new_v4());
    assert_error(
        &acme.post(&missing, &json!({})).await,
        404,
        "Webhook not found",
    );
}

#[tokio::test]
async fn delete_is_permanent_and_answers_the_exact_shape() {
    let Some(app) = super::spawn(&[]).await else {
        return;
    };
    let acme = app.partner("acme").await;
    let created = acme.create_webhook(&webhook_body("d", &["*"])).await;
    let id = created["id"].as_str().unwrap();
    let (status, body) = acme.delete(&format!("/v1/webhooks/{id}")).await;
    assert_eq!(status, 200);
    assert_eq!(
        body,
        json!({"success": true, "data": {"id": id, "message": "Webhook deleted"}})
    );
    assert_error(
        &acme.get(&format!("/v1/webhooks/{id}")).await,
        404,
        "Webhook not found",
    );
    assert_error(
        &acme.delete(&format!("/v1/webhooks/{id}")).await,
        404,
        "Webhook not found",
    );
    assert_eq!(acme.get("/v1/webhooks").await.1, json!([]));
}

#[tokio::test]
async fn webhook_logs_are_an_envelope_with_count_and_check_limit() {
    let Some(app) = super::spawn(&[]).await else {
        return;
    };
    let acme = app.partner("acme").await;
    let created = acme.create_webhook(&webhook_body("l", &["*"])).await;
    let path = format!("/v1/webhooks/{}/logs", created["id"].as_str().unwrap());
    assert_eq!(
        acme.get(&path).await,
        (200, json!({"count": 0, "logs": []}))
    );
    assert_eq!(acme.get(&format!("{path}?limit=100")).await.0, 200);
    assert_eq!(acme.get(&format!("{path}?limit=1")).await.0, 200);
    for bad in ["0", "101", "abc", "-1", "1.5", ""] {
        assert_error(
            &acme.get(&format!("{path}?limit={bad}")).await,
            400,
            "limit must be an integer between 1 and 100",
        );
    }
    let missing = format!("/v1/webhooks/{}/logs", uuid::Uuid::new_v4());
    assert_error(&acme.get(&missing).await, 404, "Webhook not found");
}

#[tokio::test]
async fn a_path_id_that_is_not_a_uuid_is_not_found() {
    let Some(app) = super::spawn(&[]).await else {
        return;
    };
    let acme = app.partner("acme").await;
    assert_error(
        &acme.get("/v1/webhooks/not-a-uuid").await,
        404,
        "Webhook not found",
    );
    assert_error(
        &acme.put("/v1/webhooks/123", &json!({"name": "x"})).await,
        404,
        "Webhook not found",
    );
    assert_error(
        &acme.delete("/v1/webhooks/123").await,
        404,
        "Webhook not found",
    );
    assert_error(
        &acme.post("/v1/webhooks/123/rotate-key", &json!({})).await,
        404,
        "Webhook not found",
    );
    assert_error(
        &acme.get("/v1/webhooks/123/logs").await,
        404,
        "Webhook not found",
    );
}

#[tokio::test]
async fn every_webhooks_route_answers_503_when_notifications_are_off() {
    let Some(app) = super::spawn(&[("HERALD_NOTIFICATIONS_ENABLED", "false")]).await else {
        return;
    };
    let acme = app.partner("acme").await;
    let id = uuid::Uuid::new_v4();
    let message = "Notification service is not configured for this environment";
    let body = webhook_body("x", &["*"]);
    assert_error(&acme.get("/v1/webhooks").await, 503, message);
    assert_error(&acme.post("/v1/webhooks", &body).await, 503, message);
    assert_error(&acme.get(&format!("/v1/webhooks/{id}")).await, 503, message);
    assert_error(
        &acme.put(&format!("/v1/webhooks/{id}"), &body).await,
        503,
        message,
    );
    assert_error(
        &acme.delete(&format!("/v1/webhooks/{id}")).await,
        503,
        message,
    );
    assert_error(
        &acme
            .post(&format!("/v1/webhooks/{id}/rotate-key"), &json!({}))
            .await,
        503,
        message,
    );
    assert_error(
        &acme.get(&format!("/v1/webhooks/{id}/logs")).await,
        503,
        message,
    );
    assert_error(&acme.get("/v1/webhooks/events").await, 503, message);
    assert_error(
        &acme.get(&format!("/v1/webhooks/events/{id}/status")).await,
        503,
        message,
    );
    assert_error(
        &acme.get(&format!("/v1/webhooks/events/{id}/logs")).await,
        503,
        message,
    );
    assert_error(
        &acme
            .post(&format!("/v1/webhooks/events/{id}/retry"), &json!({}))
            .await,
        503,
        message,
    );
    // Publishing is not a /v1/webhooks route and still works.
    let producer = app.producer_token().await;
    let (status, _) = app
        .publish(
            &producer,
            &json!({"tenant": "acme", "eventType": "a", "payload": {}}),
        )
        .await;
    assert_eq!(status, 201);
}
