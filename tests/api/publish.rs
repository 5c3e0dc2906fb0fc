//! Publishing single events: the stored shape, idempotency by business id, validation and the
//! body limits.

use serde_json::{Value, json};

use crate::helpers::{assert_error, read};

fn event(tenant: &str, event_type: &str) -> Value {
    json!({"tenant": tenant, "eventType": event_type, "payload": {"status": "approved"}})
}

#[tokio::test]
async fn a_published_event_is_stored_pending_with_every_field() {
    let Some(app) = super::spawn(&[]).await else {
        return;
    };
    app.create_tenant("acme").await;
    let producer = app.producer_token().await;
    let event_id = uuid::Uuid::new_v4().to_string();
    let (status, body) = app
        .publish(
            &producer,
            &json!({
                "tenant": "acme", "eventType": "kyc.status.changed", "eventId": event_id,
                "payload": {"zeta": 1, "alpha": {"nested": [1, 2]}}, "userId": "user-42",
                "sourceService": "kyc-service", "occurredAt": "2025-12-29T10:00:00Z"
            }),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let keys: Vec<&str> = body
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        keys,
        [
            "id",
            "eventId",
            "tenant",
            "eventType",
            "payload",
            "userId",
            "sourceService",
            "status",
            "createdAt",
            "queuedAt",
            "processedAt"
        ]
    );
    assert!(uuid::Uuid::parse_str(body["id"].as_str().unwrap()).is_ok());
    assert_ne!(body["id"], event_id.as_str());
    assert_eq!(body["eventId"], event_id.as_str());
    assert_eq!(body["tenant"], "acme");
    assert_eq!(body["eventType"], "kyc.status.changed");
    assert_eq!(
        body["payload"],
        json!({"zeta": 1, "alpha": {"nested": [1, 2]}})
    );
    assert_eq!(body["userId"], "user-42");
    assert_eq!(body["sourceService"], "kyc-service");
    assert_eq!(body["status"], "pending");
    assert_eq!(body["queuedAt"], Value::Null);
    assert_eq!(body["processedAt"], Value::Null);
    // The payload keeps the producer's key order.
    let raw = app
        .request(
            reqwest::Method::GET,
            &format!("/v1/webhooks/events/{event_id}/logs"),
            &app.partner_token("acme", &[]).await,
        )
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        raw.contains(r#""payload":{"zeta":1,"alpha":{"nested":[1,2]}}"#),
        "{raw}"
    );
}

#[tokio::test]
async fn an_absent_event_id_is_generated_and_optional_fields_are_null() {
    let Some(app) = super::spawn(&[]).await else {
        return;
    };
    app.create_tenant("acme").await;
    let producer = app.producer_token().await;
    let (status, body) = app.publish(&producer, &event("acme", "card.issued")).await;
    assert_eq!(status, 201);
    assert!(uuid::Uuid::parse_str(body["eventId"].as_str().unwrap()).is_ok());
    assert_eq!(body["userId"], Value::Null);
    assert_eq!(body["sourceService"], Value::Null);
}

#[tokio::test]
async fn publishing_the_same_event_id_again_returns_the_first_event_with_200() {
    let Some(app) = super::spawn(&[]).await else {
        return;
    };
    app.create_tenant("acme").await;
    app.create_tenant("other").await;
    let producer = app.producer_token().await;
    let event_id = uuid::Uuid::new_v4().to_string();
    let first =
        json!({"tenant": "acme", "eventType": "a.b", "eventId": event_id, "payload": {"v": 1}});
    let (status, created) = app.publish(&producer, &first).await;
    assert_eq!(status, 201);
    let second = json!({"tenant": "acme", "eventType": "a.c", "eventId": event_id.to_uppercase(), "payload": {"v": 2}});
    let (status, again) = app.publish(&producer, &second).await;
    assert_eq!(status, 200);
    for field in ["id", "eventId", "eventType", "payload", "createdAt"] {
        assert_eq!(
            again[field], created[field],
            "the first one wins, unchanged: {field}"
        );
    }
    // Same business id under another tenant: a different event.
    let (status, elsewhere) = app
        .publish(
            &producer,
            &json!({"tenant": "other", "eventType": "a.b", "eventId": event_id, "payload": {}}),
        )
        .await;
    assert_eq!(status, 201);
    assert_ne!(elsewhere["id"], created["id"]);
    let acme = app.partner_token("acme", &[]).await;
    let (_, list) = read(
        app.request(reqwest::Method::GET, "/v1/webhooks/events", &acme)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(list["total"], 1);
}

#[tokio::test]
async fn concurrent_duplicates_store_one_event() {
    let Some(app) = super::spawn(&[]).await else {
        return;
    };
    app.create_tenant("acme").await;
    let producer = app.producer_token().await;
    let event_id = uuid::Uuid::new_v4().to_string();
    let body = json!({"tenant": "acme", "eventType": "a", "eventId": event_id, "payload": {}});
    let results =
        futures_util::future::join_all((0..20).map(|_| app.publish(&producer, &body))).await;
    let created = results.iter().filter(|(s, _)| *s == 201).count();
    let repeated = results.iter().filter(|(s, _)| *s == 200).count();
    assert_eq!((created, repeated), (1, 19));
    assert!(results.iter().all(|(_, b)| b["id"] == results[0].1["id"]));
}

#[tokio::test]
async fn invalid_events_get_a_400_naming_the_problem_and_store_nothing() {
    let Some(app) = super::spawn(&[]).await else {
        return;
    };
    app.create_tenant("acme").await;
    let producer = app.producer_token().await;
    assert_error(
        &app.publish(&producer, &event("nope", "a")).await,
        400,
        "Unknown tenant: nope",
    );
    assert_error(
        &app.publish(&producer, &json!({"eventType": "a", "payload": {}}))
            .await,
        400,
        "tenant is required",
    );
    assert_error(
        &app.publish(&producer, &json!({"tenant": "acme", "payload": {}}))
            .await,
        400,
        "eventType is required",
    );
    assert_error(
        &app.publish(&producer, &json!({"tenant": "acme", "eventType": "a"}))
            .await,
        400,
        "payload is required",
    );
    assert_error(
        &app.publish(
            &producer,
            &json!({"tenant": "acme", "eventType": "a", "payload": "x"}),
        )
        .await,
        400,
        "payload must be a JSON object",
    );
    assert_error(
        &app.publish(
            &producer,
            &json!({"tenant": "acme", "eventType": "a", "payload": {}, "eventId": "123"}),
        )
        .await,
        400,
        "eventId must be a valid UUID",
    );
    let bad_type = app.publish(&producer, &event("acme", "Bad Type")).await;
    assert_eq!(bad_type.0, 400);
    assert!(
        bad_type.1["message"]
            .as_str()
            .unwrap()
            .starts_with("eventType must be")
    );
    let bad_time = app
        .publish(
            &producer,
            &json!({"tenant": "acme", "eventType": "a", "payload": {}, "occurredAt": "yesterday"}),
        )
        .await;
    assert_eq!(bad_time.0, 400);
    assert!(
        bad_time.1["message"]
            .as_str()
            .unwrap()
            .starts_with("occurredAt must be")
    );
    for key in [
        "api_version",
        "event_id",
        "event_type",
        "event_category",
        "user_id",
        "occurred_at",
    ] {
        let (status, body) = app
            .publish(
                &producer,
                &json!({"tenant": "acme", "eventType": "a", "payload": {key: 1}}),
            )
            .await;
        assert_eq!(status, 400);
        let message = body["message"].as_str().unwrap();
        assert!(message.contains(key), "{message}");
    }
    let acme = app.partner_token("acme", &[]).await;
    let (_, list) = read(
        app.request(reqwest::Method::GET, "/v1/webhooks/events", &acme)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(list["total"], 0);
}

#[tokio::test]
async fn bodies_over_256_kib_are_refused_with_413() {
    let Some(app) = super::spawn(&[]).await else {
        return;
    };
    app.create_tenant("acme").await;
    let producer = app.producer_token().await;
    let (status, body) = app
        .publish(&producer, &json!({"tenant": "acme", "eventType": "a", "payload": {"blob": "x".repeat(257 * 1024)}}))
        .await;
    assert_eq!(status, 413, "{body}");
    assert!(
        body["message"].as_str().unwrap().contains("256 KiB"),
        "{body}"
    );
    let (status, _) = app
        .publish(&producer, &json!({"tenant": "acme", "eventType": "a", "payload": {"blob": "x".repeat(200 * 1024)}}))
        .await;
    assert_eq!(status, 201);
}

#[tokio::test]
async fn wrong_content_type_and_malformed_json_are_refused() {
    let Some(app) = super::spawn(&[]).await else {
        return;
    };
    app.create_tenant("acme").await;
    let producer = app.producer_token().await;
    let send = |content_type: &'static str, body: &'static str| {
        let request = app
            .request(reqwest::Method::POST, "/v1/events", &producer)
            .header("content-type", content_type)
            .body(body);
        async move { read(request.send().await.unwrap()).await }
    };
    assert_error(
        &send("text/plain", r#"{"tenant":"acme"}"#).await,
        415,
        "Content-Type must be application/json",
    );
    let malformed = send("application/json", r#"{"tenant":"#).await;
    assert_eq!(malformed.0, 400);
    assert!(
        malformed.1["message"]
            .as_str()
            .unwrap()
            .starts_with("Malformed JSON")
    );
    let ok = send(
        "application/json; charset=utf-8",
        r#"{"tenant":"acme","eventType":"a","payload":{}}"#,
    )
    .await;
    assert_eq!(ok.0, 201);
}
