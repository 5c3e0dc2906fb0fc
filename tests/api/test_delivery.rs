//! `POST /v1/webhooks/{id}/test` against real receiving HTTP servers: the test event goes to
//! the webhook named and to no other, signed, and is then an event like any other (listed,
//! logged, retried on a failure, retried by hand).

use std::time::{Duration, Instant};

use herald::domain::scope::Scope;
use reqwest::Method;
use serde_json::{Value, json};

use super::delivery::{
    SOON, dev_app, publish, simple_event, standard_signature_is_valid, subscribe,
    x_signature_is_valid,
};
use crate::helpers::{Partner, assert_error, read, wait_until_idle};
use crate::receiver::TestReceiver;

/// Tests the webhook `id`; returns the status and body.
async fn test_webhook(partner: &Partner<'_>, id: &str) -> (u16, Value) {
    partner
        .post(&format!("/v1/webhooks/{id}/test"), &json!({}))
        .await
}

fn text(value: &Value) -> &str {
    value
        .as_str()
        .unwrap_or_else(|| panic!("not a string: {value}"))
}

#[tokio::test]
async fn the_test_event_reaches_that_webhook_only_signed_and_completes() {
    let Some(app) = dev_app(&[]).await else {
        return;
    };
    let acme = app.partner("acme").await;
    let tested = TestReceiver::answering(200).await;
    let bystander = TestReceiver::answering(200).await;
    // Subscribed to something else: a test is sent whatever the webhook subscribes to.
    let webhook = subscribe(&acme, &tested.url("/hooks"), &["kyc.*"]).await;
    subscribe(&acme, &bystander.url("/"), &["*"]).await;
    let id = text(&webhook["id"]);

    let (status, body) = test_webhook(&acme, id).await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["success"], true);
    let event = &body["data"];
    let keys: Vec<&str> = event
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    for key in [
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
        "processedAt",
    ] {
        assert!(keys.contains(&key), "{key} missing from {event}");
    }
    assert_eq!(event["tenant"], "acme");
    assert_eq!(event["eventType"], "webhook.test");
    assert_eq!(
        event["payload"],
        json!({"message": "Test event from Herald"})
    );
    assert_eq!(event["status"], "processing");
    assert!(event["queuedAt"].is_string(), "{event}");
    assert_eq!(event["processedAt"], Value::Null);
    let event_id = text(&event["id"]);
    let business_id = text(&event["eventId"]);

    let request = &tested.wait_for(1, SOON).await[0];
    assert_eq!(request.path, "/hooks");
    let envelope: Value = serde_json::from_str(&request.body).unwrap();
    assert_eq!(envelope["event_type"], "webhook.test");
    assert_eq!(envelope["event_id"], business_id);
    assert_eq!(envelope["message"], "Test event from Herald");
    assert_eq!(request.header("webhook-id"), business_id);
    assert!(x_signature_is_valid(request, text(&webhook["apiKey"])));
    assert!(standard_signature_is_valid(
        request,
        text(&webhook["signingSecret"])
    ));

    let done = acme.wait_for_status(event_id, "completed").await;
    assert_eq!(done["eventType"], "webhook.test");
    assert!(done["processedAt"].is_string(), "{done}");
    let (status, logs) = acme
        .get(&format!("/v1/webhooks/events/{business_id}/logs"))
        .await;
    assert_eq!(status, 200, "{logs}");
    let attempts = logs["logs"].as_array().unwrap();
    assert_eq!(attempts.len(), 1, "one attempt, to one webhook: {logs}");
    assert_eq!(attempts[0]["webhookId"], id);
    assert_eq!(attempts[0]["deliveryStatus"], "success");
    assert_eq!(attempts[0]["responseStatus"], 200);
    let (_, webhook_logs) = acme.get(&format!("/v1/webhooks/{id}/logs")).await;
    assert_eq!(webhook_logs["count"], 1, "{webhook_logs}");
    let (_, listed) = acme.get("/v1/webhooks/events?eventType=webhook.test").await;
    assert_eq!(listed["total"], 1, "{listed}");
    assert_eq!(listed["events"][0]["id"], event_id);

    // Still found by its business id once later publishes have been stored.
    let producer = app.producer_token().await;
    publish(&app, &producer, simple_event("kyc.status.changed")).await;
    let (status, found) = acme
        .get(&format!("/v1/webhooks/events/{business_id}/status"))
        .await;
    assert_eq!(status, 200, "{found}");
    assert_eq!(found["id"], event_id);

    // The other webhook, subscribed to everything, got the published event only: counted
    // once nothing is left to deliver.
    let received = bystander.wait_for(1, SOON).await;
    wait_until_idle(app.store.as_ref()).await;
    assert_eq!(bystander.received().len(), 1);
    assert!(received[0].body.contains("kyc.status.changed"));
    assert_eq!(tested.received().len(), 2);
}

#[tokio::test]
async fn a_failed_test_delivery_is_retried_on_schedule_and_by_hand() {
    let Some(app) = dev_app(&[("HERALD_RETRY_SCHEDULE", "100ms")]).await else {
        return;
    };
    let acme = app.partner("acme").await;
    let receiver = TestReceiver::first_then_ok(500).await;
    let webhook = subscribe(&acme, &receiver.url("/"), &["kyc.*"]).await;
    let id = text(&webhook["id"]);
    let (status, body) = test_webhook(&acme, id).await;
    assert_eq!(status, 202, "{body}");
    let event_id = text(&body["data"]["id"]);

    let requests = receiver.wait_for(2, SOON).await;
    assert_eq!(
        requests[0].body, requests[1].body,
        "every attempt sends the same bytes"
    );
    acme.wait_for_status(event_id, "completed").await;
    let (_, logs) = acme
        .get(&format!("/v1/webhooks/events/{event_id}/logs"))
        .await;
    let attempts = logs["logs"].as_array().unwrap();
    assert_eq!(attempts.len(), 2, "{logs}");
    assert_eq!(attempts[0]["responseStatus"], 500);
    assert_eq!(attempts[0]["deliveryStatus"], "failed");
    assert!(attempts[0]["nextRetryAt"].is_string());
    assert_eq!(attempts[1]["attemptNumber"], 2);
    assert_eq!(attempts[1]["deliveryStatus"], "success");

    // A manual retry naming the webhook sends it again (it need not subscribe to the type).
    let (status, body) = acme
        .post(
            &format!("/v1/webhooks/events/{event_id}/retry"),
            &json!({"webhookId": id}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["webhookCount"], 1);
    receiver.wait_for(3, SOON).await;
    acme.wait_for_status(event_id, "completed").await;
}

#[tokio::test]
async fn the_test_delivery_is_attempted_at_once_on_an_idle_server() {
    let Some(app) = dev_app(&[]).await else {
        return;
    };
    let acme = app.partner("acme").await;
    let receiver = TestReceiver::answering(200).await;
    let webhook = subscribe(&acme, &receiver.url("/"), &["kyc.*"]).await;
    // Unwoken, the idle dispatcher would find each test event by its idle timer, 5 s after
    // its last look (just after the attempt before): an attempt within half of that, however
    // loaded the machine, was woken by the route. (That a wake-up starts it at once is shown
    // without a clock in `dispatch.rs`.)
    for n in 0..3 {
        // Idle, so the dispatcher is asleep when the test event comes.
        tokio::time::sleep(Duration::from_millis(300)).await;
        let (status, body) = test_webhook(&acme, text(&webhook["id"])).await;
        let answered = Instant::now();
        assert_eq!(status, 202, "{body}");
        let arrived = receiver.wait_for(n + 1, SOON).await[n].at;
        let latency = arrived.saturating_duration_since(answered);
        assert!(
            latency < Duration::from_millis(2_500),
            "attempt {n} after {latency:?}"
        );
    }
}

#[tokio::test]
async fn unknown_foreign_and_inactive_webhooks_and_missing_scopes_are_refused() {
    let Some(app) = dev_app(&[]).await else {
        return;
    };
    let acme = app.partner("acme").await;
    let umbrella = app.partner("umbrella").await;
    let receiver = TestReceiver::answering(200).await;
    let foreign = subscribe(&umbrella, &receiver.url("/"), &["*"]).await;
    let inactive = acme
        .create_webhook(&json!({"name": "off", "url": receiver.url("/"), "event_types": ["*"]}))
        .await;

    let not_found = "Webhook not found";
    assert_error(
        &test_webhook(&acme, text(&foreign["id"])).await,
        404,
        not_found,
    );
    let unknown = uuid::Uuid::new_v4().to_string();
    assert_error(&test_webhook(&acme, &unknown).await, 404, not_found);
    assert_error(&test_webhook(&acme, "not-a-uuid").await, 404, not_found);
    assert_error(
        &test_webhook(&acme, text(&inactive["id"])).await,
        400,
        "Webhook is not active",
    );
    let reader = app
        .partner_token("acme", &[Scope::WebhooksRead, Scope::EventsRetry])
        .await;
    let response = app
        .request(
            Method::POST,
            &format!("/v1/webhooks/{}/test", text(&inactive["id"])),
            &reader,
        )
        .send()
        .await
        .unwrap();
    assert_error(&read(response).await, 403, "Not authorized");

    // None of them stored an event.
    let (_, listed) = acme.get("/v1/webhooks/events").await;
    assert_eq!(listed["total"], 0, "{listed}");
    let (_, listed) = umbrella.get("/v1/webhooks/events").await;
    assert_eq!(listed["total"], 0, "{listed}");
    wait_until_idle(app.store.as_ref()).await;
    assert!(receiver.received().is_empty());
}

#[tokio::test]
async fn tests_count_against_the_partner_write_rate() {
    let Some(app) = dev_app(&[
        ("HERALD_PARTNER_WRITE_RATE", "1/m"),
        ("HERALD_PARTNER_WRITE_BURST", "2"),
    ])
    .await
    else {
        return;
    };
    let acme = app.partner("acme").await;
    let receiver = TestReceiver::answering(200).await;
    let webhook = subscribe(&acme, &receiver.url("/"), &["*"]).await;
    let path = format!("/v1/webhooks/{}/test", text(&webhook["id"]));
    assert_eq!(test_webhook(&acme, text(&webhook["id"])).await.0, 202);
    let response = app
        .request(Method::POST, &path, &acme.token)
        .send()
        .await
        .unwrap();
    assert!(response.headers().get("retry-after").is_some());
    assert_error(&read(response).await, 429, "Too many requests");
}

#[tokio::test]
async fn the_route_answers_503_when_notifications_are_off() {
    let Some(app) = dev_app(&[("HERALD_NOTIFICATIONS_ENABLED", "false")]).await else {
        return;
    };
    let acme = app.partner("acme").await;
    let id = uuid::Uuid::new_v4().to_string();
    assert_error(
        &test_webhook(&acme, &id).await,
        503,
        "Notification service is not configured for this environment",
    );
}
