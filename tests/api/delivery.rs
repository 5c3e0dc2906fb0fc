//! Delivery against real receiving HTTP servers: fan-out, the signed request, signing keys
//! and destination safety, and the helpers the other delivery suites share (outcome rules
//! and the schedule in `delivery_retries.rs`; retry cycles, isolation, retention, metrics and
//! shutdown in `delivery_cycles.rs`).

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;

use crate::helpers::{Partner, TestApp};
use crate::receiver::{Received, TestReceiver};

const DEV: [(&str, &str); 3] = [
    ("HERALD_ALLOW_HTTP", "true"),
    ("HERALD_ALLOW_PRIVATE_TARGETS", "true"),
    ("HERALD_RETRY_SCHEDULE", "100ms,200ms,300ms"),
];
pub(super) const SOON: Duration = Duration::from_secs(10);

pub(super) async fn dev_app(extra: &[(&str, &str)]) -> Option<TestApp> {
    let mut env: Vec<(&str, &str)> = DEV.to_vec();
    env.extend_from_slice(extra);
    super::spawn(&env).await
}

/// An active webhook; returns its create response `data`.
pub(super) async fn subscribe(partner: &Partner<'_>, url: &str, patterns: &[&str]) -> Value {
    partner
        .create_webhook(
            &json!({"name": "receiver", "url": url, "event_types": patterns, "is_active": true}),
        )
        .await
}

pub(super) async fn publish(app: &TestApp, producer: &str, body: Value) -> Value {
    let (status, event) = app.publish(producer, &body).await;
    assert_eq!(status, 201, "{event}");
    event
}

pub(super) fn simple_event(event_type: &str) -> Value {
    json!({"tenant": "acme", "eventType": event_type, "payload": {"status": "approved"}})
}

/// Herald's own scheme: lowercase hex HMAC-SHA256 of "{X-Timestamp}.{body}" keyed by apiKey.
pub(super) fn x_signature_is_valid(request: &Received, api_key: &str) -> bool {
    let mut mac = Hmac::<Sha256>::new_from_slice(api_key.as_bytes()).unwrap();
    mac.update(format!("{}.{}", request.header("x-timestamp"), request.body).as_bytes());
    hex::encode(mac.finalize().into_bytes()) == request.header("x-signature")
}

/// The Standard Webhooks check, written from its specification: the key is the base64 part
/// of `whsec_...`; the signed content is "{webhook-id}.{webhook-timestamp}.{body}"; the header
/// holds space-separated `v1,<base64>` signatures, any of which may match.
pub(super) fn standard_signature_is_valid(request: &Received, signing_secret: &str) -> bool {
    let key = STANDARD
        .decode(signing_secret.strip_prefix("whsec_").unwrap())
        .unwrap();
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).unwrap();
    mac.update(
        format!(
            "{}.{}.{}",
            request.header("webhook-id"),
            request.header("webhook-timestamp"),
            request.body
        )
        .as_bytes(),
    );
    let expected = STANDARD.encode(mac.finalize().into_bytes());
    request
        .header("webhook-signature")
        .split(' ')
        .any(|candidate| candidate.strip_prefix("v1,") == Some(expected.as_str()))
}

#[tokio::test]
async fn events_fan_out_to_every_active_subscribed_webhook() {
    let Some(app) = dev_app(&[]).await else {
        return;
    };
    let acme = app.partner("acme").await;
    let producer = app.producer_token().await;
    let exact = TestReceiver::answering(200).await;
    let category = TestReceiver::answering(200).await;
    let star = TestReceiver::answering(204).await;
    let other = TestReceiver::answering(200).await;
    let inactive = TestReceiver::answering(200).await;
    subscribe(&acme, &exact.url("/"), &["kyc.status.changed"]).await;
    subscribe(&acme, &category.url("/"), &["kyc.*"]).await;
    subscribe(&acme, &star.url("/"), &["*"]).await;
    subscribe(&acme, &other.url("/"), &["card.*", "kyc.status"]).await;
    acme.create_webhook(&json!({"name": "off", "url": inactive.url("/"), "event_types": ["*"]}))
        .await;

    let event = publish(&app, &producer, simple_event("kyc.status.changed")).await;
    let id = event["id"].as_str().unwrap();
    let done = acme.wait_for_status(id, "completed").await;
    assert!(done["processedAt"].is_string());
    for receiver in [&exact, &category, &star] {
        assert_eq!(receiver.wait_for(1, SOON).await.len(), 1);
    }
    assert!(other.received().is_empty());
    assert!(inactive.received().is_empty());
    let (_, listed) = acme.get("/v1/webhooks/events?status=completed").await;
    assert!(listed["events"][0]["queuedAt"].is_string());
    let (_, logs) = acme.get(&format!("/v1/webhooks/events/{id}/logs")).await;
    assert_eq!(logs["logs"].as_array().unwrap().len(), 3);

    // Nobody subscribes to this one.
    let solo = app.partner("solo").await;
    let lonely = publish(
        &app,
        &producer,
        json!({"tenant": "solo", "eventType": "a.b", "payload": {}}),
    )
    .await;
    let skipped = solo
        .wait_for_status(lonely["id"].as_str().unwrap(), "skipped")
        .await;
    assert!(skipped["processedAt"].is_string());
}

#[tokio::test]
async fn each_request_carries_the_envelope_and_verifiable_signatures() {
    let Some(app) = dev_app(&[]).await else {
        return;
    };
    let acme = app.partner("acme").await;
    let producer = app.producer_token().await;
    let receiver = TestReceiver::answering(200).await;
    let webhook = subscribe(&acme, &receiver.url("/hooks/kyc?x=1"), &["kyc.*"]).await;
    let event = publish(
        &app,
        &producer,
        json!({"tenant": "acme", "eventType": "kyc.status.changed", "userId": "u-7",
               "occurredAt": "2025-12-29T10:00:00.000Z",
               "payload": {"status": "approved", "score": 0.93, "tags": ["a"]}}),
    )
    .await;
    let request = &receiver.wait_for(1, SOON).await[0];
    assert_eq!(request.path, "/hooks/kyc");
    assert_eq!(
        request.body,
        format!(
            r#"{{"api_version":"v1","event_id":"{}","event_type":"kyc.status.changed","event_category":"kyc","user_id":"u-7","occurred_at":"2025-12-29T10:00:00.000Z","status":"approved","score":0.93,"tags":["a"]}}"#,
            event["eventId"].as_str().unwrap()
        )
    );
    assert_eq!(request.header("content-type"), "application/json");
    assert_eq!(
        request.header("user-agent"),
        format!("Herald/{}", env!("CARGO_PKG_VERSION"))
    );
    let timestamp: i64 = request.header("x-timestamp").parse().unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    assert!((now - timestamp).abs() <= 5, "{timestamp} vs {now}");
    assert_eq!(
        request.header("webhook-timestamp"),
        request.header("x-timestamp")
    );
    assert_eq!(
        request.header("webhook-id"),
        event["eventId"].as_str().unwrap()
    );
    assert!(x_signature_is_valid(
        request,
        webhook["apiKey"].as_str().unwrap()
    ));
    assert!(standard_signature_is_valid(
        request,
        webhook["signingSecret"].as_str().unwrap()
    ));
    assert!(!x_signature_is_valid(request, "whk_wrong"));
}

#[tokio::test]
async fn after_rotate_key_new_attempts_are_signed_with_the_new_key() {
    let Some(app) = dev_app(&[("HERALD_RETRY_SCHEDULE", "500ms")]).await else {
        return;
    };
    let acme = app.partner("acme").await;
    let producer = app.producer_token().await;
    let receiver = TestReceiver::first_then_ok(500).await;
    let webhook = subscribe(&acme, &receiver.url("/"), &["*"]).await;
    let id = webhook["id"].as_str().unwrap();
    publish(&app, &producer, simple_event("a.b")).await;
    let first = receiver.wait_for(1, SOON).await.remove(0);
    assert!(x_signature_is_valid(
        &first,
        webhook["apiKey"].as_str().unwrap()
    ));
    let (_, rotated) = acme
        .post(&format!("/v1/webhooks/{id}/rotate-key"), &json!({}))
        .await;
    let second = receiver.wait_for(2, SOON).await.remove(1);
    assert!(x_signature_is_valid(
        &second,
        rotated["data"]["apiKey"].as_str().unwrap()
    ));
    assert!(standard_signature_is_valid(
        &second,
        rotated["data"]["signingSecret"].as_str().unwrap()
    ));
    assert!(!x_signature_is_valid(
        &second,
        webhook["apiKey"].as_str().unwrap()
    ));
}

#[tokio::test]
async fn destinations_are_checked_after_resolution_on_every_attempt() {
    let Some(app) = super::spawn(&[
        ("HERALD_ALLOW_HTTP", "true"),
        ("HERALD_RETRY_SCHEDULE", "50ms"),
    ])
    .await
    else {
        return;
    };
    let acme = app.partner("acme").await;
    let producer = app.producer_token().await;
    let receiver = TestReceiver::answering(200).await;
    let port = receiver.base.rsplit(':').next().unwrap().to_string();
    // Created behind the API's back, as if DNS had changed since: the attempt must refuse.
    for (i, url) in [
        format!("http://127.0.0.1:{port}/"),
        format!("http://[::ffff:127.0.0.1]:{port}/"),
        format!("http://localhost:{port}/"),
        format!("http://[::1]:{port}/"),
    ]
    .into_iter()
    .enumerate()
    {
        app.store
            .create_webhook(
                herald::store::NewWebhook {
                    id: herald::domain::ids::WebhookId::generate(),
                    tenant: "acme".into(),
                    name: format!("internal-{i}"),
                    url,
                    api_key: herald::domain::keys::ApiKey::generate(),
                    event_types: vec![format!("t{i}")],
                    is_active: true,
                    metadata: "{}".into(),
                },
                10,
            )
            .await
            .unwrap()
            .unwrap();
        let event = publish(&app, &producer, simple_event(&format!("t{i}"))).await;
        let id = event["id"].as_str().unwrap();
        acme.wait_for_status(id, "failed").await;
        let (_, logs) = acme.get(&format!("/v1/webhooks/events/{id}/logs")).await;
        let log = &logs["logs"][0];
        assert_eq!(
            logs["logs"].as_array().unwrap().len(),
            1,
            "refusals are final"
        );
        let message = log["errorMessage"].as_str().unwrap();
        assert!(message.starts_with("Destination refused"), "{message}");
        assert!(message.contains("loopback"), "{message}");
        assert_eq!(log["responseStatus"], Value::Null);
    }
    assert!(receiver.received().is_empty());
}

#[tokio::test]
async fn plain_http_is_refused_at_attempt_time_unless_allowed() {
    let Some(app) = super::spawn(&[("HERALD_ALLOW_PRIVATE_TARGETS", "true")]).await else {
        return;
    };
    let acme = app.partner("acme").await;
    let producer = app.producer_token().await;
    let receiver = TestReceiver::answering(200).await;
    app.store
        .create_webhook(
            herald::store::NewWebhook {
                id: herald::domain::ids::WebhookId::generate(),
                tenant: "acme".into(),
                name: "plain".into(),
                url: receiver.url("/"),
                api_key: herald::domain::keys::ApiKey::generate(),
                event_types: vec!["*".into()],
                is_active: true,
                metadata: "{}".into(),
            },
            10,
        )
        .await
        .unwrap();
    let event = publish(&app, &producer, simple_event("a.b")).await;
    let id = event["id"].as_str().unwrap();
    acme.wait_for_status(id, "failed").await;
    let (_, logs) = acme.get(&format!("/v1/webhooks/events/{id}/logs")).await;
    assert!(
        logs["logs"][0]["errorMessage"]
            .as_str()
            .unwrap()
            .contains("http:// URLs are not allowed")
    );
    assert!(receiver.received().is_empty());
    // And the API refuses such a URL up front.
    let refused = acme
        .post(
            "/v1/webhooks",
            &json!({"name": "x", "url": receiver.url("/"), "event_types": ["*"]}),
        )
        .await;
    assert_eq!(refused.1["message"], "url must use https");
}
