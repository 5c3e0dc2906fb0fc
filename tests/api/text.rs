//! Text that databases refuse: control characters in stored string fields are a 400
//! naming the field, and a payload holding `\u0000` is stored and delivered byte-exact.

use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::{TestApp, assert_error, read};
use crate::receiver::{Reply, TestReceiver};

async fn publish_batch(app: &TestApp, producer: &str, events: Value) -> Vec<Value> {
    let (status, body) = read(
        app.request(Method::POST, "/v1/events/batch", producer)
            .json(&json!({ "events": events }))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    body["results"].as_array().unwrap().clone()
}

#[tokio::test]
async fn control_characters_in_event_fields_are_refused_naming_the_field() {
    let Some(app) = super::spawn(&[]).await else {
        return;
    };
    app.create_tenant("acme").await;
    let producer = app.producer_token().await;
    let bad = [
        ("tenant", "ac\u{0}me"),
        ("eventId", "0b7e8a59-5d4c-4a0e-9a43-2f9d0c1e8b11\u{0}"),
        ("eventType", "a.b\u{0}"),
        ("userId", "user\u{0}42"),
        ("sourceService", "kyc\u{1b}[31m"),
        ("userId", "line\nbreak"),
    ];
    for (field, text) in bad {
        let mut event = json!({"tenant": "acme", "eventType": "a.b", "payload": {}});
        event[field] = json!(text);
        let message = format!("{field} must not contain control characters");
        assert_error(&app.publish(&producer, &event).await, 400, &message);
        // In a batch only that item is refused; the others are stored.
        let results = publish_batch(
            &app,
            &producer,
            json!([
                {"tenant": "acme", "eventType": "a.b", "payload": {"n": 1}},
                event,
                {"tenant": "acme", "eventType": "a.b", "payload": {"n": 2}},
            ]),
        )
        .await;
        assert_eq!(results[0]["status"], 201, "{results:?}");
        assert_eq!(results[1], json!({"status": 400, "message": message}));
        assert_eq!(results[2]["status"], 201, "{results:?}");
    }
    let acme = app.partner_of("acme").await;
    let (_, list) = acme.get("/v1/webhooks/events").await;
    assert_eq!(list["total"], 2 * bad.len(), "{list}");
}

#[tokio::test]
async fn control_characters_in_webhook_fields_are_refused_naming_the_field() {
    let Some(app) = super::spawn(&[]).await else {
        return;
    };
    let acme = app.partner("acme").await;
    let good = json!({"name": "n", "url": "https://hooks.example.com/h", "event_types": ["*"]});
    let bad = [
        ("name", json!("hook\u{0}")),
        ("url", json!("https://hooks.example.com/\u{0}")),
        ("url", json!("https://hooks.exa\tmple.com/h")),
        ("metadata", json!({"team": "a\u{0}b"})),
        ("metadata", json!({"deep": [{"list": ["ok", "bell\u{7}"]}]})),
        ("metadata", json!({"key\u{0}": 1})),
    ];
    let webhook = acme.create_webhook(&good).await;
    let path = format!("/v1/webhooks/{}", webhook["id"].as_str().unwrap());
    for (field, value) in bad {
        let message = format!("{field} must not contain control characters");
        let mut create = good.clone();
        create[field] = value.clone();
        assert_error(&acme.post("/v1/webhooks", &create).await, 400, &message);
        let update = json!({ field: value });
        assert_error(&acme.put(&path, &update).await, 400, &message);
    }
    // Nothing was changed by the refused updates, and nothing else was created.
    let (_, list) = acme.get("/v1/webhooks").await;
    assert_eq!(list.as_array().map(Vec::len), Some(1), "{list}");
    let (_, shown) = acme.get(&path).await;
    assert_eq!(shown["name"], "n");
    assert_eq!(shown["metadata"], json!({}));
}

#[tokio::test]
async fn a_payload_holding_nul_is_stored_and_delivered_byte_exact() {
    let Some(app) = super::spawn(&[
        ("HERALD_ALLOW_HTTP", "true"),
        ("HERALD_ALLOW_PRIVATE_TARGETS", "true"),
    ])
    .await
    else {
        return;
    };
    let acme = app.partner("acme").await;
    let producer = app.producer_token().await;
    let receiver = TestReceiver::start(|_| Reply::status(200)).await;
    acme.create_webhook(
        &json!({"name": "r", "url": receiver.url("/"), "event_types": ["*"], "is_active": true}),
    )
    .await;
    let payload = json!({"text": "a\u{0}b", "k\u{0}": ["\u{1}\u{1f}"], "plain": "x"});
    let (status, single) = app
        .publish(
            &producer,
            &json!({"tenant": "acme", "eventType": "a.b", "payload": payload}),
        )
        .await;
    assert_eq!(status, 201, "{single}");
    assert_eq!(single["payload"], payload);
    let results = publish_batch(
        &app,
        &producer,
        json!([{"tenant": "acme", "eventType": "a.c", "payload": payload}]),
    )
    .await;
    assert_eq!(results[0]["status"], 201, "{results:?}");
    let (_, list) = acme.get("/v1/webhooks/events").await;
    let listed = list["events"].as_array().unwrap();
    assert_eq!(listed.len(), 2, "{list}");
    for event in listed {
        assert_eq!(event["payload"], payload, "{event}");
    }
    let delivered = receiver.wait_for(2, Duration::from_secs(10)).await;
    for request in delivered {
        // The JSON escape itself reaches the receiver, and means the same string.
        assert!(
            request
                .body
                .contains(r#""text":"a\u0000b","k\u0000":["\u0001\u001f"]"#),
            "{}",
            request.body
        );
        let body: Value = serde_json::from_str(&request.body).unwrap();
        assert_eq!(body["text"], "a\u{0}b", "{body}");
    }
}
