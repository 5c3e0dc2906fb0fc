//! Outcome rules and the retry schedule against real receiving HTTP servers: which answers
//! are retried and when, what each attempt's log holds. (Absences and exact due times are
//! shown one tick at a time in `dispatch.rs`.)

use std::time::Duration;

use serde_json::Value;

use super::delivery::{SOON, dev_app, publish, simple_event, subscribe};
use crate::receiver::{Reply, TestReceiver, hanging_up};

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
        // Nothing is left to attempt (`dispatch.rs` shows no retry comes however long).
        let queue = app.store.queue_depth().await.expect("queue depth");
        assert_eq!((queue.queued, queue.in_flight), (0, 0), "{status} is final");
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
