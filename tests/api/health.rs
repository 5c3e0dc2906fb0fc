//! Endpoint health against real receiving servers that the tests flip between failing and
//! healthy: the health route, 410 Gone, automatic disable and re-enabling.

use std::sync::Arc;
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::Duration;

use serde_json::{Value, json};

use crate::helpers::{Partner, TestApp, assert_error};
use crate::receiver::{Reply, TestReceiver};

pub(super) const SOON: Duration = Duration::from_secs(10);

pub(super) async fn app(extra: &[(&str, &str)]) -> Option<TestApp> {
    let mut env = vec![
        ("HERALD_ALLOW_HTTP", "true"),
        ("HERALD_ALLOW_PRIVATE_TARGETS", "true"),
        ("HERALD_RETRY_SCHEDULE", "100ms,100ms"),
        ("HERALD_FAILING_AFTER", "3"),
    ];
    env.extend_from_slice(extra);
    super::spawn(&env).await
}

/// A receiver answering whatever status the test sets.
pub(super) async fn switchable(status: u16) -> (TestReceiver, Arc<AtomicU16>) {
    let current = Arc::new(AtomicU16::new(status));
    let answer = current.clone();
    let receiver = TestReceiver::start(move |_| Reply::status(answer.load(Ordering::SeqCst))).await;
    (receiver, current)
}

pub(super) async fn subscribe(partner: &Partner<'_>, url: &str) -> String {
    let webhook = partner
        .create_webhook(&json!({"name": "r", "url": url, "event_types": ["*"], "is_active": true}))
        .await;
    webhook["id"].as_str().unwrap().to_string()
}

async fn publish(app: &TestApp, producer: &str) -> String {
    let (status, event) = app
        .publish(
            producer,
            &json!({"tenant": "acme", "eventType": "a.b", "payload": {"n": 1}}),
        )
        .await;
    assert_eq!(status, 201, "{event}");
    event["id"].as_str().unwrap().to_string()
}

async fn health(partner: &Partner<'_>, webhook: &str) -> Value {
    let (status, body) = partner.get(&format!("/v1/webhooks/{webhook}/health")).await;
    assert_eq!(status, 200, "{body}");
    body
}

#[tokio::test]
async fn failures_make_a_webhook_failing_and_a_success_makes_it_healthy_again() {
    let Some(app) = app(&[]).await else {
        return;
    };
    let acme = app.partner("acme").await;
    let producer = app.producer_token().await;
    let (receiver, status) = switchable(500).await;
    let webhook = subscribe(&acme, &receiver.url("/h")).await;
    let fresh = health(&acme, &webhook).await;
    let keys: Vec<&str> = fresh
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        keys,
        [
            "webhookId",
            "state",
            "consecutiveFailures",
            "failingSince",
            "lastAttemptAt",
            "lastSuccessAt",
            "lastFailureAt",
            "lastResponseStatus",
            "disabledAt",
            "disabledReason"
        ]
    );
    assert_eq!(fresh["webhookId"], webhook.as_str());
    assert_eq!(fresh["state"], "healthy");
    assert_eq!(fresh["consecutiveFailures"], 0);
    assert!(fresh["lastAttemptAt"].is_null());

    // Two attempts fail: below the threshold of three.
    let first = publish(&app, &producer).await;
    receiver.wait_for(2, SOON).await;
    status.store(503, Ordering::SeqCst);
    acme.wait_for_status(&first, "failed").await;
    let failing = health(&acme, &webhook).await;
    assert_eq!(failing["state"], "failing", "{failing}");
    assert_eq!(failing["consecutiveFailures"], 3);
    assert_eq!(failing["lastResponseStatus"], 503);
    assert!(failing["failingSince"].is_string());
    assert!(failing["lastFailureAt"].is_string());
    assert!(failing["lastSuccessAt"].is_null());
    assert!(failing["failingSince"].as_str() < failing["lastFailureAt"].as_str());

    status.store(200, Ordering::SeqCst);
    let second = publish(&app, &producer).await;
    acme.wait_for_status(&second, "completed").await;
    let healthy = health(&acme, &webhook).await;
    assert_eq!(healthy["state"], "healthy", "{healthy}");
    assert_eq!(healthy["consecutiveFailures"], 0);
    assert!(healthy["failingSince"].is_null());
    assert_eq!(healthy["lastResponseStatus"], 200);
    assert_eq!(healthy["lastSuccessAt"], healthy["lastAttemptAt"]);

    // Webhooks by state are gauges on /metrics (process-wide in tests, so only their presence
    // is this test's to check).
    let deadline = std::time::Instant::now() + SOON;
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
        let shown = ["healthy", "failing", "disabled"]
            .iter()
            .all(|state| text.contains(&format!("herald_webhooks{{state=\"{state}\"}}")))
            && text.contains("herald_recoveries_running");
        if shown {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{text}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Not this tenant's, or no webhook at all.
    let other = app.partner("other").await;
    assert_error(
        &other.get(&format!("/v1/webhooks/{webhook}/health")).await,
        404,
        "Webhook not found",
    );
    assert_error(
        &acme
            .get("/v1/webhooks/00000000-0000-4000-8000-000000000000/health")
            .await,
        404,
        "Webhook not found",
    );
}

#[tokio::test]
async fn gone_disables_at_once_and_ends_what_was_queued_and_reenabling_heals() {
    let Some(app) = app(&[("HERALD_MAX_IN_FLIGHT_PER_WEBHOOK", "1")]).await else {
        return;
    };
    let acme = app.partner("acme").await;
    let producer = app.producer_token().await;
    let receiver =
        TestReceiver::start(|_| Reply::status(410).after(Duration::from_millis(300))).await;
    let webhook = subscribe(&acme, &receiver.url("/h")).await;
    let mut events = Vec::new();
    for _ in 0..3 {
        events.push(publish(&app, &producer).await);
    }
    for event in &events {
        acme.wait_for_status(event, "failed").await;
    }
    // The first answer disables it; on PostgreSQL, whose results are written beside the
    // claims, the next delivery may already have been sent by then.
    let sent = receiver.received().len();
    assert!((1..=2).contains(&sent), "{sent} attempts");
    let gone = health(&acme, &webhook).await;
    assert_eq!(gone["state"], "disabled", "{gone}");
    assert_eq!(gone["lastResponseStatus"], 410);
    assert!(gone["disabledAt"].is_string());
    assert!(
        gone["disabledReason"].as_str().unwrap().contains("410"),
        "{gone}"
    );
    let (_, shown) = acme.get(&format!("/v1/webhooks/{webhook}")).await;
    assert_eq!(shown["isActive"], false);

    let (status, body) = acme
        .put(
            &format!("/v1/webhooks/{webhook}"),
            &json!({"is_active": true}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let healed = health(&acme, &webhook).await;
    assert_eq!(healed["state"], "healthy", "{healed}");
    assert_eq!(healed["consecutiveFailures"], 0);
    assert!(healed["disabledAt"].is_null());
    assert!(healed["disabledReason"].is_null());
}

#[tokio::test]
async fn failing_for_longer_than_disable_after_disables() {
    let Some(app) = app(&[
        ("HERALD_FAILING_AFTER", "1"),
        ("HERALD_DISABLE_AFTER", "1s"),
        ("HERALD_RETRY_SCHEDULE", "400ms,400ms,400ms,400ms,400ms"),
    ])
    .await
    else {
        return;
    };
    let acme = app.partner("acme").await;
    let producer = app.producer_token().await;
    let (receiver, _) = switchable(500).await;
    let webhook = subscribe(&acme, &receiver.url("/h")).await;
    let event = publish(&app, &producer).await;
    acme.wait_for_status(&event, "failed").await;
    let disabled = health(&acme, &webhook).await;
    assert_eq!(disabled["state"], "disabled", "{disabled}");
    assert!(
        disabled["disabledReason"]
            .as_str()
            .unwrap()
            .contains("failed since"),
        "{disabled}"
    );
    // Disabled by the first failure a second or more into the streak: attempt 4 (due at
    // about 1,200 ms) or, on a slow machine, attempt 3; the fifth and sixth are never made.
    let sent = receiver.received().len();
    assert!((3..=4).contains(&sent), "{sent} attempts");
    let (_, shown) = acme.get(&format!("/v1/webhooks/{webhook}")).await;
    assert_eq!(shown["isActive"], false);
}
