//! The OpenAPI document at `/openapi.json` against what Herald sends: each operation lists
//! the error answers it can give, and answers the fuzzer once found undescribed stay JSON
//! errors of the documented kind. (`fuzz.rs` checks the document with generated requests.)

use std::collections::HashSet;

use reqwest::Method;
use serde_json::Value;

use crate::helpers::{TestApp, assert_error, read};

async fn document(app: &TestApp) -> Value {
    let (status, document) = read(
        app.client
            .get(app.url("/openapi.json"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200);
    document
}

/// Every `(method, path, operation)` of the document.
fn operations(document: &Value) -> Vec<(String, String, Value)> {
    let mut all = Vec::new();
    for (path, item) in document["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            all.push((method.clone(), path.clone(), operation.clone()));
        }
    }
    all
}

#[tokio::test]
async fn every_operation_lists_the_error_answers_herald_gives_it() {
    let app = TestApp::spawn_with(&[]).await;
    let document = document(&app).await;
    let operations = operations(&document);
    assert!(
        operations.len() >= 17,
        "the routes of the contract are described"
    );
    for (method, path, operation) in &operations {
        let responses = operation["responses"].as_object().unwrap();
        let listed = |status: &str| responses.contains_key(status);
        let mut expected = Vec::new();
        if path.starts_with("/v1/") {
            expected.extend(["401", "403", "503"]);
        }
        if path.starts_with("/v1/") && path.contains('{') {
            expected.push("404");
        }
        if operation.get("requestBody").is_some() {
            expected.extend(["400", "413", "415"]);
        }
        if path.starts_with("/v1/webhooks") && method != "get" {
            expected.push("429");
        }
        for status in expected {
            assert!(listed(status), "{method} {path} does not list {status}");
        }
        for (status, response) in responses {
            if path.starts_with("/v1/") && (status.starts_with('4') || status.starts_with('5')) {
                assert_eq!(
                    response["content"]["application/json"]["schema"]["$ref"],
                    "#/components/schemas/ErrorBody",
                    "{method} {path} {status}"
                );
                assert_ne!(response["description"], "", "{method} {path} {status}");
            }
            if status == "429" {
                assert!(
                    response["headers"].get("Retry-After").is_some(),
                    "{method} {path} 429 lists Retry-After"
                );
            }
        }
    }
}

#[tokio::test]
async fn operation_ids_are_unique() {
    let app = TestApp::spawn_with(&[]).await;
    let document = document(&app).await;
    let mut seen = HashSet::new();
    for (method, path, operation) in operations(&document) {
        let id = operation["operationId"].as_str().unwrap().to_string();
        assert!(seen.insert(id.clone()), "{method} {path} reuses {id}");
    }
}

#[tokio::test]
async fn a_path_id_that_is_not_utf8_names_nothing() {
    let app = TestApp::spawn_with(&[]).await;
    let acme = app.partner("acme").await;
    for (method, path, message) in [
        (Method::GET, "/v1/webhooks/%FF", "Webhook not found"),
        (Method::PUT, "/v1/webhooks/%FF", "Webhook not found"),
        (Method::DELETE, "/v1/webhooks/%C3%28", "Webhook not found"),
        (
            Method::POST,
            "/v1/webhooks/%FF/rotate-key",
            "Webhook not found",
        ),
        (Method::GET, "/v1/webhooks/%FF/logs", "Webhook not found"),
        (
            Method::GET,
            "/v1/webhooks/events/%FF/status",
            "Event not found",
        ),
        (
            Method::GET,
            "/v1/webhooks/events/%FF/logs",
            "Event not found",
        ),
        (
            Method::POST,
            "/v1/webhooks/events/%FF/retry",
            "Event not found",
        ),
    ] {
        let response = app
            .request(method.clone(), path, &acme.token)
            .header("content-type", "application/json")
            .body("{}")
            .send()
            .await
            .unwrap();
        assert_eq!(
            response.headers()["content-type"],
            "application/json",
            "{method} {path}"
        );
        assert_error(&read(response).await, 404, message);
    }
}

/// With the notification service switched off, every `/v1/webhooks*` operation of the
/// document answers the 503 it lists, with the contract's message, whoever asks.
#[tokio::test]
async fn with_notifications_off_every_webhooks_operation_answers_its_documented_503() {
    let app = TestApp::spawn_with(&[("HERALD_NOTIFICATIONS_ENABLED", "false")]).await;
    let acme = app.partner("acme").await;
    let document = document(&app).await;
    let id = uuid::Uuid::new_v4().to_string();
    let mut checked = 0;
    for (method, path, operation) in operations(&document) {
        if !path.starts_with("/v1/webhooks") {
            continue;
        }
        assert!(
            operation["responses"].get("503").is_some(),
            "{method} {path} does not list 503"
        );
        let concrete = path.replace("{id}", &id).replace("{eventId}", &id);
        let method = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
        for token in [acme.token.as_str(), "hrd_unknown"] {
            let response = app
                .request(method.clone(), &concrete, token)
                .json(&serde_json::json!({}))
                .send()
                .await
                .unwrap();
            assert_error(
                &read(response).await,
                503,
                "Notification service is not configured for this environment",
            );
        }
        checked += 1;
    }
    assert_eq!(
        checked, 14,
        "the eleven partner operations, health, recover and test"
    );
}

/// The retry body may be left out, but when sent it is an object: the document says so
/// (not "object or null"), and a `null` body is the 400 it lists.
#[tokio::test]
async fn the_optional_retry_body_is_described_as_absent_or_an_object() {
    let app = TestApp::spawn_with(&[]).await;
    let document = document(&app).await;
    let body = &document["paths"]["/v1/webhooks/events/{eventId}/retry"]["post"]["requestBody"];
    assert_ne!(body["required"], true, "{body}");
    assert_eq!(
        body["content"]["application/json"]["schema"]["$ref"], "#/components/schemas/RetryRequest",
        "{body}"
    );
    let acme = app.partner("acme").await;
    let producer = app.producer_token().await;
    let (status, event) = app
        .publish(
            &producer,
            &serde_json::json!({"tenant": "acme", "eventType": "a.b", "payload": {}}),
        )
        .await;
    assert_eq!(status, 201, "{event}");
    let retry = format!(
        "/v1/webhooks/events/{}/retry",
        event["id"].as_str().unwrap()
    );
    let (status, answer) = read(
        app.request(Method::POST, &retry, &acme.token)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200, "no body: {answer}");
    let (status, answer) = acme.post(&retry, &Value::Null).await;
    assert_eq!(status, 400, "a null body: {answer}");
}
