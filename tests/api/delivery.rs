//! Delivery (§2 statuses and logs, §4): fan-out, the signed request, outcome rules and the
//! schedule, manual retry cycles, isolation, destination safety, retention and metrics, all
//! against real receiving HTTP servers.

use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;

use crate::helpers::{Partner, TestApp};
use crate::receiver::{Received, Reply, TestReceiver, black_hole, hanging_up};

const DEV: [(&str, &str); 3] = [
    ("HERALD_ALLOW_HTTP", "true"),
    ("HERALD_ALLOW_PRIVATE_TARGETS", "true"),
    ("HERALD_RETRY_SCHEDULE", "100ms,200ms,300ms"),
];
const SOON: Duration = Duration::from_secs(10);

async fn dev_app(extra: &[(&str, &str)]) -> Option<TestApp> {
    let mut env: Vec<(&str, &str)> = DEV.to_vec();
    env.extend_from_slice(extra);
    super::spawn(&env).await
}

/// An active webhook; returns its create response `data`.
async fn subscribe(partner: &Partner<'_>, url: &str, patterns: &[&str]) -> Value {
    partner
        .create_webhook(
            &json!({"name": "receiver", "url": url, "event_types": patterns, "is_active": true}),
        )
        .await
}

async fn publish(app: &TestApp, producer: &str, body: Value) -> Value {
    let (status, event) = app.publish(producer, &body).await;
    assert_eq!(status, 201, "{event}");
    event
}

fn simple_event(event_type: &str) -> Value {
    json!({"tenant": "acme", "eventType": event_type, "payload": {"status": "approved"}})
}

/// Herald's own scheme: lowercase hex HMAC-SHA256 of "{X-Timestamp}.{body}" keyed by apiKey.
fn x_signature_is_valid(request: &Received, api_key: &str) -> bool {
    let mut mac = Hmac::<Sha256>::new_from_slice(api_key.as_bytes()).unwrap();
    mac.update(format!("{}.{}", request.header("x-timestamp"), request.body).as_bytes());
    hex::encode(mac.finalize().into_bytes()) == request.header("x-signature")
}

/// The Standard Webhooks check, written from its specification: the key is the base64 part
/// of `whsec_...`; the signed content is "{webhook-id}.{webhook-timestamp}.{body}"; the header
/// holds space-separated `v1,<base64>` signatures, any of which may match.
fn standard_signature_is_valid(request: &Received, signing_secret: &str) -> bool {
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
async fn failed_attempts_follow_the_schedule_with_identical_bodies_and_full_logs() {
    let Some(app) = dev_app(&[]).await else {
        return;
    };
    let acme = app.partner("acme").await;
    let producer = app.producer_token().await;
    let receiver = TestReceiver::start(|n| {
        if n < 2 {
            Reply::status(500)
        } else {
            Reply::status(200)
        }
    })
    .await;
    let webhook = subscribe(&acme, &receiver.url("/h"), &["*"]).await;
    let webhook_id = webhook["id"].as_str().unwrap();
    let event = publish(&app, &producer, simple_event("a.b")).await;
    let requests = receiver.wait_for(3, SOON).await;
    assert!(
        requests.iter().all(|r| r.body == requests[0].body),
        "same bytes on every attempt"
    );
    let gaps = [
        requests[1].at - requests[0].at,
        requests[2].at - requests[1].at,
    ];
    assert!(gaps[0] >= Duration::from_millis(85), "{gaps:?}");
    assert!(gaps[1] >= Duration::from_millis(175), "{gaps:?}");
    let id = event["id"].as_str().unwrap();
    acme.wait_for_status(id, "completed").await;

    let (_, logs) = acme
        .get(&format!(
            "/v1/webhooks/events/{}/logs",
            event["eventId"].as_str().unwrap()
        ))
        .await;
    let logs = logs["logs"].as_array().unwrap().clone();
    assert_eq!(logs.len(), 3);
    for (index, log) in logs.iter().enumerate() {
        let keys: Vec<&str> = log
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
                "webhookId",
                "attemptNumber",
                "requestUrl",
                "requestHeaders",
                "requestBody",
                "responseStatus",
                "responseBody",
                "errorMessage",
                "deliveryStatus",
                "durationMs",
                "createdAt",
                "nextRetryAt"
            ]
        );
        assert!(uuid::Uuid::parse_str(log["id"].as_str().unwrap()).is_ok());
        assert_eq!(log["eventId"], event["eventId"]);
        assert_eq!(log["webhookId"], webhook_id);
        assert_eq!(log["attemptNumber"], index + 1);
        assert_eq!(log["requestUrl"], receiver.url("/h"));
        assert_eq!(
            log["requestHeaders"]["x-timestamp"],
            requests[index].header("x-timestamp")
        );
        assert_eq!(
            log["requestHeaders"]["x-signature"],
            requests[index].header("x-signature")
        );
        assert_eq!(
            log["requestHeaders"]["webhook-signature"],
            requests[index].header("webhook-signature")
        );
        assert_eq!(log["requestHeaders"]["content-type"], "application/json");
        assert_eq!(
            log["requestBody"],
            serde_json::from_str::<Value>(&requests[index].body).unwrap()
        );
        assert!(log["durationMs"].is_u64());
        assert_eq!(log["errorMessage"], Value::Null);
        assert!(log["createdAt"].as_str().unwrap().ends_with('Z'));
    }
    assert_eq!(logs[0]["responseStatus"], 500);
    assert_eq!(logs[0]["responseBody"], "answer 500");
    assert_eq!(logs[0]["deliveryStatus"], "failed");
    assert!(logs[0]["nextRetryAt"].is_string());
    assert!(logs[1]["nextRetryAt"].is_string());
    assert_eq!(logs[2]["responseStatus"], 200);
    assert_eq!(logs[2]["deliveryStatus"], "success");
    assert_eq!(logs[2]["nextRetryAt"], Value::Null);

    let (_, by_webhook) = acme
        .get(&format!("/v1/webhooks/{webhook_id}/logs?limit=2"))
        .await;
    assert_eq!(by_webhook["count"], 2);
    assert_eq!(by_webhook["logs"][0]["attemptNumber"], 3, "newest first");
    assert_eq!(by_webhook["logs"][1]["attemptNumber"], 2);
}

#[tokio::test]
async fn permanent_failures_are_not_retried() {
    let Some(app) = dev_app(&[]).await else {
        return;
    };
    let acme = app.partner("acme").await;
    let producer = app.producer_token().await;
    for status in [410u16, 400, 404, 422] {
        let receiver = TestReceiver::answering(status).await;
        let webhook = subscribe(&acme, &receiver.url("/"), &[&format!("s{status}.*")]).await;
        let event = publish(&app, &producer, simple_event(&format!("s{status}.x"))).await;
        acme.wait_for_status(event["id"].as_str().unwrap(), "failed")
            .await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(receiver.received().len(), 1, "{status} is final");
        let (_, logs) = acme
            .get(&format!(
                "/v1/webhooks/{}/logs",
                webhook["id"].as_str().unwrap()
            ))
            .await;
        assert_eq!(logs["count"], 1);
        assert_eq!(logs["logs"][0]["responseStatus"], status);
        assert_eq!(logs["logs"][0]["nextRetryAt"], Value::Null);
        assert_eq!(logs["logs"][0]["deliveryStatus"], "failed");
    }
}

#[tokio::test]
async fn retries_end_after_the_last_attempt_of_the_schedule() {
    let Some(app) = dev_app(&[("HERALD_RETRY_SCHEDULE", "50ms,50ms")]).await else {
        return;
    };
    let acme = app.partner("acme").await;
    let producer = app.producer_token().await;
    let receiver = TestReceiver::start(|n| {
        if n % 2 == 0 {
            Reply::status(503)
        } else {
            Reply::status(408)
        }
    })
    .await;
    subscribe(&acme, &receiver.url("/"), &["*"]).await;
    let event = publish(&app, &producer, simple_event("a.b")).await;
    let failed = acme
        .wait_for_status(event["id"].as_str().unwrap(), "failed")
        .await;
    assert!(failed["processedAt"].is_string());
    assert_eq!(receiver.received().len(), 3, "N-1 delays = N attempts");
    let (_, logs) = acme
        .get(&format!(
            "/v1/webhooks/events/{}/logs",
            event["id"].as_str().unwrap()
        ))
        .await;
    let next: Vec<bool> = logs["logs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["nextRetryAt"].is_string())
        .collect();
    assert_eq!(next, [true, true, false]);
}

#[tokio::test]
async fn retry_after_on_429_is_honoured() {
    let Some(app) = dev_app(&[("HERALD_RETRY_SCHEDULE", "50ms,5s")]).await else {
        return;
    };
    let acme = app.partner("acme").await;
    let producer = app.producer_token().await;
    let receiver = TestReceiver::start(|n| {
        if n == 0 {
            Reply::status(429).with_header("retry-after", "1")
        } else {
            Reply::status(200)
        }
    })
    .await;
    subscribe(&acme, &receiver.url("/"), &["*"]).await;
    publish(&app, &producer, simple_event("a.b")).await;
    let requests = receiver.wait_for(2, SOON).await;
    let gap = requests[1].at - requests[0].at;
    assert!(
        gap >= Duration::from_millis(950) && gap < Duration::from_secs(3),
        "{gap:?}"
    );
}

#[tokio::test]
async fn timeouts_are_retried_and_logged_without_a_response() {
    let Some(app) = dev_app(&[("HERALD_DELIVERY_TIMEOUT", "300ms")]).await else {
        return;
    };
    let acme = app.partner("acme").await;
    let producer = app.producer_token().await;
    let receiver = TestReceiver::start(|n| {
        if n == 0 {
            Reply::status(200).after(Duration::from_secs(2))
        } else {
            Reply::status(200)
        }
    })
    .await;
    subscribe(&acme, &receiver.url("/"), &["*"]).await;
    let event = publish(&app, &producer, simple_event("a.b")).await;
    acme.wait_for_status(event["id"].as_str().unwrap(), "completed")
        .await;
    let (_, logs) = acme
        .get(&format!(
            "/v1/webhooks/events/{}/logs",
            event["id"].as_str().unwrap()
        ))
        .await;
    let first = &logs["logs"][0];
    assert_eq!(first["responseStatus"], Value::Null);
    assert_eq!(first["responseBody"], Value::Null);
    assert_eq!(first["durationMs"], Value::Null);
    assert!(
        first["errorMessage"]
            .as_str()
            .unwrap()
            .contains("timed out"),
        "{first}"
    );
    assert!(first["nextRetryAt"].is_string());
    assert_eq!(logs["logs"][1]["deliveryStatus"], "success");
}

#[tokio::test]
async fn redirects_are_never_followed_and_are_retried() {
    let Some(app) = dev_app(&[]).await else {
        return;
    };
    let acme = app.partner("acme").await;
    let producer = app.producer_token().await;
    let receiver = TestReceiver::start(|n| {
        if n == 0 {
            Reply::status(302).with_header("location", "/elsewhere")
        } else {
            Reply::status(200)
        }
    })
    .await;
    subscribe(&acme, &receiver.url("/hook"), &["*"]).await;
    let event = publish(&app, &producer, simple_event("a.b")).await;
    acme.wait_for_status(event["id"].as_str().unwrap(), "completed")
        .await;
    let paths: Vec<String> = receiver.received().into_iter().map(|r| r.path).collect();
    assert_eq!(paths, ["/hook", "/hook"]);
    let (_, logs) = acme
        .get(&format!(
            "/v1/webhooks/events/{}/logs",
            event["id"].as_str().unwrap()
        ))
        .await;
    assert_eq!(logs["logs"][0]["responseStatus"], 302);
    assert!(logs["logs"][0]["nextRetryAt"].is_string());
}

#[tokio::test]
async fn a_dropped_connection_is_a_retried_transport_failure() {
    let Some(app) = dev_app(&[("HERALD_RETRY_SCHEDULE", "50ms")]).await else {
        return;
    };
    let acme = app.partner("acme").await;
    let producer = app.producer_token().await;
    let url = hanging_up().await;
    subscribe(&acme, &format!("{url}/"), &["*"]).await;
    let event = publish(&app, &producer, simple_event("a.b")).await;
    acme.wait_for_status(event["id"].as_str().unwrap(), "failed")
        .await;
    let (_, logs) = acme
        .get(&format!(
            "/v1/webhooks/events/{}/logs",
            event["id"].as_str().unwrap()
        ))
        .await;
    let logs = logs["logs"].as_array().unwrap();
    assert_eq!(logs.len(), 2);
    for log in logs {
        assert_eq!(log["responseStatus"], Value::Null);
        assert!(!log["errorMessage"].as_str().unwrap().is_empty());
    }
    assert!(logs[0]["nextRetryAt"].is_string());
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
async fn a_manual_retry_starts_a_new_cycle_at_attempt_one() {
    let Some(app) = dev_app(&[]).await else {
        return;
    };
    let acme = app.partner("acme").await;
    let producer = app.producer_token().await;
    let receiver = TestReceiver::first_then_ok(410).await;
    subscribe(&acme, &receiver.url("/"), &["*"]).await;
    let event = publish(&app, &producer, simple_event("a.b")).await;
    let id = event["id"].as_str().unwrap();
    acme.wait_for_status(id, "failed").await;
    let (status, body) = acme
        .post(&format!("/v1/webhooks/events/{id}/retry"), &json!({}))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["data"]["message"],
        "Event queued for retry to 1 webhook(s)"
    );
    receiver.wait_for(2, SOON).await;
    let completed = acme.wait_for_status(id, "completed").await;
    assert!(completed["processedAt"].is_string());
    let (_, logs) = acme.get(&format!("/v1/webhooks/events/{id}/logs")).await;
    let attempts: Vec<(Value, Value)> = logs["logs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| (l["attemptNumber"].clone(), l["deliveryStatus"].clone()))
        .collect();
    assert_eq!(
        attempts,
        [(json!(1), json!("failed")), (json!(1), json!("success"))]
    );
}

#[tokio::test]
async fn a_retry_to_a_webhook_still_retrying_replaces_its_cycle() {
    let Some(app) = dev_app(&[("HERALD_RETRY_SCHEDULE", "2s,2s")]).await else {
        return;
    };
    let acme = app.partner("acme").await;
    let producer = app.producer_token().await;
    let receiver = TestReceiver::first_then_ok(500).await;
    let webhook = subscribe(&acme, &receiver.url("/"), &["*"]).await;
    let event = publish(&app, &producer, simple_event("a.b")).await;
    let id = event["id"].as_str().unwrap();
    receiver.wait_for(1, SOON).await;
    let retry = acme
        .post(
            &format!("/v1/webhooks/events/{id}/retry"),
            &json!({"webhookId": webhook["id"]}),
        )
        .await;
    assert_eq!(retry.0, 200);
    let requests = receiver.wait_for(2, SOON).await;
    assert!(
        requests[1].at - requests[0].at < Duration::from_millis(1500),
        "attempted at once"
    );
    acme.wait_for_status(id, "completed").await;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(
        receiver.received().len(),
        2,
        "the replaced cycle made no further attempt"
    );
}

#[tokio::test]
async fn a_slow_endpoint_does_not_delay_deliveries_to_others() {
    let Some(app) = dev_app(&[
        ("HERALD_DELIVERY_TIMEOUT", "20s"),
        ("HERALD_MAX_IN_FLIGHT", "8"),
        ("HERALD_MAX_IN_FLIGHT_PER_WEBHOOK", "4"),
    ])
    .await
    else {
        return;
    };
    let acme = app.partner("acme").await;
    let producer = app.producer_token().await;
    let (hole, accepted) = black_hole().await;
    let healthy = TestReceiver::answering(200).await;
    subscribe(&acme, &format!("{hole}/"), &["*"]).await;
    subscribe(&acme, &healthy.url("/"), &["*"]).await;
    let started = Instant::now();
    for _ in 0..60 {
        publish(&app, &producer, simple_event("a.b")).await;
    }
    healthy.wait_for(60, Duration::from_secs(5)).await;
    let took = started.elapsed();
    assert!(took < Duration::from_secs(5), "{took:?}");
    assert!(
        *accepted.lock().unwrap() <= 4,
        "the black hole holds at most its own limit"
    );
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
                    id: uuid::Uuid::now_v7(),
                    tenant: "acme".into(),
                    name: format!("internal-{i}"),
                    url,
                    api_key: herald::domain::keys::ApiKey::generate().into_exposed(),
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
                id: uuid::Uuid::now_v7(),
                tenant: "acme".into(),
                name: "plain".into(),
                url: receiver.url("/"),
                api_key: herald::domain::keys::ApiKey::generate().into_exposed(),
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

#[tokio::test]
async fn deactivating_a_webhook_ends_its_retries() {
    let Some(app) = dev_app(&[("HERALD_RETRY_SCHEDULE", "1s,1s")]).await else {
        return;
    };
    let acme = app.partner("acme").await;
    let producer = app.producer_token().await;
    let receiver = TestReceiver::answering(500).await;
    let webhook = subscribe(&acme, &receiver.url("/"), &["*"]).await;
    let event = publish(&app, &producer, simple_event("a.b")).await;
    receiver.wait_for(1, SOON).await;
    let (status, _) = acme
        .put(
            &format!("/v1/webhooks/{}", webhook["id"].as_str().unwrap()),
            &json!({"is_active": false}),
        )
        .await;
    assert_eq!(status, 200);
    acme.wait_for_status(event["id"].as_str().unwrap(), "failed")
        .await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(receiver.received().len(), 1);
}

#[tokio::test]
async fn the_first_attempt_is_prompt_on_an_idle_server() {
    let Some(app) = dev_app(&[]).await else {
        return;
    };
    let acme = app.partner("acme").await;
    let producer = app.producer_token().await;
    let receiver = TestReceiver::answering(200).await;
    subscribe(&acme, &receiver.url("/"), &["*"]).await;
    let mut latencies = Vec::new();
    for n in 0..20 {
        tokio::time::sleep(Duration::from_millis(20)).await; // idle between events
        let (status, _) = app.publish(&producer, &simple_event("a.b")).await;
        let acknowledged = Instant::now();
        assert_eq!(status, 201);
        let arrived = receiver.wait_for(n + 1, SOON).await[n].at;
        latencies.push(arrived.saturating_duration_since(acknowledged));
    }
    latencies.sort();
    let median = latencies[latencies.len() / 2];
    assert!(
        median < Duration::from_millis(50),
        "median {median:?}, all {latencies:?}"
    );
}

#[tokio::test]
async fn delivery_logs_older_than_the_retention_are_deleted() {
    let Some(app) = dev_app(&[("HERALD_LOG_RETENTION", "1s")]).await else {
        return;
    };
    let acme = app.partner("acme").await;
    let producer = app.producer_token().await;
    let receiver = TestReceiver::answering(200).await;
    let webhook = subscribe(&acme, &receiver.url("/"), &["*"]).await;
    let event = publish(&app, &producer, simple_event("a.b")).await;
    acme.wait_for_status(event["id"].as_str().unwrap(), "completed")
        .await;
    let path = format!("/v1/webhooks/{}/logs", webhook["id"].as_str().unwrap());
    assert_eq!(acme.get(&path).await.1["count"], 1);
    let deadline = Instant::now() + Duration::from_secs(5);
    while acme.get(&path).await.1["count"] != 0 {
        assert!(Instant::now() < deadline, "logs outlived their retention");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The event itself stays, completed.
    assert_eq!(
        acme.get(&format!(
            "/v1/webhooks/events/{}/status",
            event["id"].as_str().unwrap()
        ))
        .await
        .1["status"],
        "completed"
    );
}

#[tokio::test]
async fn metrics_report_attempts_latencies_and_queue_depth() {
    let Some(app) = dev_app(&[]).await else {
        return;
    };
    let acme = app.partner("acme").await;
    let producer = app.producer_token().await;
    let receiver = TestReceiver::first_then_ok(500).await;
    subscribe(&acme, &receiver.url("/"), &["*"]).await;
    let event = publish(&app, &producer, simple_event("a.b")).await;
    acme.wait_for_status(event["id"].as_str().unwrap(), "completed")
        .await;
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let text = app
            .client
            .get(app.url("/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let wanted = [
            r#"herald_delivery_attempts_total{outcome="success"}"#,
            r#"herald_delivery_attempts_total{outcome="retry"}"#,
            "herald_delivery_first_attempt_delay_seconds_bucket",
            "herald_delivery_success_delay_seconds_bucket",
            "herald_deliveries_queued",
            "herald_deliveries_in_flight",
            "herald_events_pending",
        ];
        if wanted.iter().all(|w| text.contains(w)) {
            break;
        }
        assert!(Instant::now() < deadline, "missing metrics in:\n{text}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn a_graceful_stop_finishes_the_attempt_in_flight() {
    let Some(app) = dev_app(&[]).await else {
        return;
    };
    let acme = app.partner("acme").await;
    let producer = app.producer_token().await;
    let receiver =
        TestReceiver::start(|_| Reply::status(200).after(Duration::from_millis(400))).await;
    subscribe(&acme, &receiver.url("/"), &["*"]).await;
    let event = publish(&app, &producer, simple_event("a.b")).await;
    receiver.wait_for(1, SOON).await;
    let token = acme.token.clone();
    drop(acme);
    let app = app.restart().await;
    let acme = Partner { app: &app, token };
    acme.wait_for_status(event["id"].as_str().unwrap(), "completed")
        .await;
    assert_eq!(
        receiver.received().len(),
        1,
        "finished before stopping, not attempted again"
    );
}
