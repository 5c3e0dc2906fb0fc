//! Getting missed events to an endpoint once it is back: the recover route, and the
//! automatic catch-up when a failing webhook answers again. Receivers are flipped between
//! failing and healthy inside each test.

use std::collections::HashMap;
use std::sync::atomic::Ordering;

use serde_json::{Value, json};

use super::health::{SOON, app, subscribe, switchable};
use crate::helpers::{TestApp, assert_error};
use crate::receiver::Received;

/// Publishes `count` events; returns their (record id, business eventId).
async fn publish(app: &TestApp, producer: &str, count: usize) -> Vec<(String, String)> {
    let mut events = Vec::new();
    for n in 0..count {
        let (status, event) = app
            .publish(
                producer,
                &json!({"tenant": "acme", "eventType": "a.b", "payload": {"n": n}}),
            )
            .await;
        assert_eq!(status, 201, "{event}");
        events.push((
            event["id"].as_str().unwrap().to_string(),
            event["eventId"].as_str().unwrap().to_string(),
        ));
    }
    events
}

/// How many of `requests` carried each business event id.
fn per_event(requests: &[Received]) -> HashMap<String, usize> {
    let mut counts = HashMap::new();
    for request in requests {
        let body: Value = serde_json::from_str(&request.body).unwrap();
        *counts
            .entry(body["event_id"].as_str().unwrap().to_string())
            .or_default() += 1;
    }
    counts
}

fn minutes_ago(minutes: i64) -> String {
    let at = time::OffsetDateTime::now_utc() - time::Duration::minutes(minutes);
    at.format(&time::format_description::well_known::Rfc3339)
        .unwrap()
}

#[tokio::test]
async fn recover_resends_each_failed_event_once_and_a_second_call_finds_nothing() {
    let Some(app) = app(&[("HERALD_AUTO_RECOVER", "0")]).await else {
        return;
    };
    let acme = app.partner("acme").await;
    let producer = app.producer_token().await;
    let (receiver, status) = switchable(500).await;
    let webhook = subscribe(&acme, &receiver.url("/h")).await;
    let events = publish(&app, &producer, 5).await;
    for (id, _) in &events {
        acme.wait_for_status(id, "failed").await;
    }
    let failed_attempts = receiver.received().len();
    assert_eq!(failed_attempts, 15, "three attempts each");

    status.store(200, Ordering::SeqCst);
    let path = format!("/v1/webhooks/{webhook}/recover");
    let (code, body) = acme.post(&path, &json!({"since": minutes_ago(1)})).await;
    assert_eq!(code, 202, "{body}");
    assert_eq!(
        body,
        json!({"success": true, "data": {
            "webhookId": webhook, "eventCount": 5, "message": "5 event(s) queued for recovery"
        }})
    );
    // Again at once, while the new cycles run: nothing is left to queue.
    let (code, again) = acme.post(&path, &json!({"since": minutes_ago(1)})).await;
    assert_eq!(code, 202, "{again}");
    assert_eq!(again["data"]["eventCount"], 0);
    assert_eq!(again["data"]["message"], "0 event(s) queued for recovery");

    for (id, _) in &events {
        acme.wait_for_status(id, "completed").await;
    }
    let resent = per_event(&receiver.received()[failed_attempts..]);
    assert_eq!(resent.len(), 5);
    assert!(resent.values().all(|&n| n == 1), "{resent:?}");
    let (_, logs) = acme
        .get(&format!("/v1/webhooks/events/{}/logs", events[0].1))
        .await;
    let numbers: Vec<&Value> = logs["logs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|log| &log["attemptNumber"])
        .collect();
    assert_eq!(numbers, [1, 2, 3, 1], "a new cycle starts at attempt 1");
}

#[tokio::test]
async fn recover_checks_its_range_and_its_webhook() {
    let Some(app) = app(&[]).await else {
        return;
    };
    let acme = app.partner("acme").await;
    let (receiver, _) = switchable(200).await;
    let webhook = subscribe(&acme, &receiver.url("/h")).await;
    let path = format!("/v1/webhooks/{webhook}/recover");
    assert_error(
        &acme.post(&path, &json!({})).await,
        400,
        "since is required",
    );
    assert_error(
        &acme.post(&path, &json!({"since": "last week"})).await,
        400,
        "since must be an ISO 8601 timestamp",
    );
    assert_error(
        &acme
            .post(
                &path,
                &json!({"since": minutes_ago(1), "until": minutes_ago(2)}),
            )
            .await,
        400,
        "since must be before until",
    );
    let other = app.partner("other").await;
    assert_error(
        &other.post(&path, &json!({"since": minutes_ago(1)})).await,
        404,
        "Webhook not found",
    );
    let (code, _) = acme
        .put(
            &format!("/v1/webhooks/{webhook}"),
            &json!({"is_active": false}),
        )
        .await;
    assert_eq!(code, 200);
    assert_error(
        &acme.post(&path, &json!({"since": minutes_ago(1)})).await,
        400,
        "Webhook is not active",
    );
}

#[tokio::test]
async fn an_endpoint_back_after_the_whole_schedule_gets_every_missed_event_once() {
    let Some(app) = app(&[]).await else {
        return;
    };
    let acme = app.partner("acme").await;
    let producer = app.producer_token().await;
    let (receiver, status) = switchable(503).await;
    let webhook = subscribe(&acme, &receiver.url("/h")).await;
    let missed = publish(&app, &producer, 50).await;
    for (id, _) in &missed {
        acme.wait_for_status(id, "failed").await;
    }
    let (_, health) = acme.get(&format!("/v1/webhooks/{webhook}/health")).await;
    assert_eq!(health["state"], "failing", "{health}");
    let before = receiver.received().len();

    // Back up; the next event's success starts the catch-up, with no call from anyone.
    status.store(200, Ordering::SeqCst);
    let next = publish(&app, &producer, 1).await;
    for (id, _) in missed.iter().chain(&next) {
        acme.wait_for_status(id, "completed").await;
    }
    receiver.wait_for(before + 51, SOON).await;
    let after = per_event(&receiver.received()[before..]);
    assert_eq!(after.len(), 51, "every missed event and the new one");
    assert!(after.values().all(|&n| n == 1), "once each: {after:?}");
    let (_, health) = acme.get(&format!("/v1/webhooks/{webhook}/health")).await;
    assert_eq!(health["state"], "healthy", "{health}");
}
