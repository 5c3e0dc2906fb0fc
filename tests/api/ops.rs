//! Operations routes: health, readiness, metrics and the OpenAPI document.

use serde_json::json;

use crate::helpers::read;

#[tokio::test]
async fn health_and_readiness_answer_without_auth() {
    let Some(app) = super::spawn(&[]).await else {
        return;
    };
    let (status, body) = read(app.client.get(app.url("/healthz")).send().await.unwrap()).await;
    assert_eq!((status, body), (200, json!({"status": "ok"})));
    let (status, body) = read(app.client.get(app.url("/readyz")).send().await.unwrap()).await;
    assert_eq!((status, body), (200, json!({"status": "ready"})));
    app.stop().await;
}

#[tokio::test]
async fn metrics_count_requests_and_their_latency_in_prometheus_text() {
    let Some(app) = super::spawn(&[]).await else {
        return;
    };
    app.client.get(app.url("/healthz")).send().await.unwrap();
    app.client
        .get(app.url("/v1/webhooks"))
        .send()
        .await
        .unwrap();
    let response = app.client.get(app.url("/metrics")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );
    let text = response.text().await.unwrap();
    assert!(
        text.contains("# TYPE herald_http_requests_total counter"),
        "{text}"
    );
    assert!(
        text.contains(r#"herald_http_requests_total{method="GET",route="/healthz",status="200"}"#),
        "{text}"
    );
    assert!(
        text.contains(r#"route="/v1/webhooks",status="401""#),
        "{text}"
    );
    assert!(
        text.contains("# TYPE herald_http_request_duration_seconds histogram"),
        "{text}"
    );
    assert!(
        text.contains("herald_http_request_duration_seconds_bucket{"),
        "{text}"
    );
}

#[tokio::test]
async fn openapi_document_covers_every_route_with_schemas() {
    let Some(app) = super::spawn(&[]).await else {
        return;
    };
    let (status, doc) = read(
        app.client
            .get(app.url("/openapi.json"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200);
    assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"));
    let expected = [
        ("/v1/webhooks", "get"),
        ("/v1/webhooks", "post"),
        ("/v1/webhooks/{id}", "get"),
        ("/v1/webhooks/{id}", "put"),
        ("/v1/webhooks/{id}", "delete"),
        ("/v1/webhooks/{id}/rotate-key", "post"),
        ("/v1/webhooks/{id}/logs", "get"),
        ("/v1/webhooks/events", "get"),
        ("/v1/webhooks/events/{eventId}/status", "get"),
        ("/v1/webhooks/events/{eventId}/logs", "get"),
        ("/v1/webhooks/events/{eventId}/retry", "post"),
        ("/v1/events", "post"),
        ("/v1/events/batch", "post"),
        ("/healthz", "get"),
        ("/readyz", "get"),
        ("/metrics", "get"),
        ("/openapi.json", "get"),
    ];
    for (path, method) in expected {
        assert!(
            doc["paths"][path][method].is_object(),
            "{method} {path} missing"
        );
    }
    for schema in [
        "WebhookView",
        "EventView",
        "DeliveryLogView",
        "ErrorBody",
        "WebhookCreate",
        "PublishRequest",
        "EventList",
    ] {
        assert!(
            doc["components"]["schemas"][schema].is_object(),
            "schema {schema} missing"
        );
    }
    assert!(doc["components"]["securitySchemes"]["bearer"].is_object());
}

#[tokio::test]
async fn unknown_routes_and_methods_answer_json_errors() {
    let Some(app) = super::spawn(&[]).await else {
        return;
    };
    let (status, body) = read(app.client.get(app.url("/v2/nothing")).send().await.unwrap()).await;
    assert_eq!(status, 404);
    assert!(body["message"].is_string());
    let (status, body) = read(
        app.client
            .patch(app.url("/v1/webhooks"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 405);
    assert!(body["message"].is_string());
}
