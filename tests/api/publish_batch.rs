//! Publishing in batches: per-item answers in order, business ids repeated within a batch,
//! the 1 to 1000 events rule and the 16 MiB body limit.

use serde_json::{Value, json};

use crate::helpers::{assert_error, read};

fn event(tenant: &str, event_type: &str) -> Value {
    json!({"tenant": tenant, "eventType": event_type, "payload": {"status": "approved"}})
}

#[tokio::test]
async fn a_batch_answers_per_item_in_order_and_stores_the_valid_ones() {
    let Some(app) = super::spawn(&[]).await else {
        return;
    };
    app.create_tenant("acme").await;
    let producer = app.producer_token().await;
    let repeated = uuid::Uuid::new_v4().to_string();
    let batch = json!({"events": [
        {"tenant": "acme", "eventType": "a.one", "payload": {"n": 1}, "eventId": repeated},
        {"tenant": "acme", "eventType": "a.two", "payload": "not an object"},
        {"tenant": "ghost", "eventType": "a.three", "payload": {}},
        {"tenant": "acme", "eventType": "a.four", "payload": {"n": 4}, "eventId": repeated},
        {"tenant": "acme", "eventType": "a.five", "payload": {"n": 5}},
    ]});
    let (status, body) = read(
        app.request(reqwest::Method::POST, "/v1/events/batch", &producer)
            .json(&batch)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let results = body["results"].as_array().unwrap();
    assert_eq!(results.len(), 5);
    assert_eq!(results[0]["status"], 201);
    assert_eq!(results[0]["event"]["eventType"], "a.one");
    assert_eq!(
        results[1],
        json!({"status": 400, "message": "payload must be a JSON object"})
    );
    assert_eq!(
        results[2],
        json!({"status": 400, "message": "Unknown tenant: ghost"})
    );
    assert_eq!(results[3]["status"], 200);
    assert_eq!(results[3]["event"], results[0]["event"]);
    assert_eq!(results[4]["status"], 201);
    let acme = app.partner_token("acme", &[]).await;
    let (_, list) = read(
        app.request(reqwest::Method::GET, "/v1/webhooks/events", &acme)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(list["total"], 2);
}

#[tokio::test]
async fn a_batch_repeating_a_business_id_under_two_tenants_stores_one_event_each() {
    let Some(app) = super::spawn(&[]).await else {
        return;
    };
    app.create_tenant("acme").await;
    app.create_tenant("beta").await;
    let producer = app.producer_token().await;
    let shared = uuid::Uuid::new_v4().to_string();
    let item = |tenant: &str, n: u32| json!({"tenant": tenant, "eventType": "a.one", "payload": {"n": n}, "eventId": shared});
    let batch =
        json!({"events": [item("acme", 1), item("beta", 2), item("acme", 3), item("beta", 4)]});
    let (status, body) = read(
        app.request(reqwest::Method::POST, "/v1/events/batch", &producer)
            .json(&batch)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let statuses: Vec<&Value> = body["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| &r["status"])
        .collect();
    assert_eq!(
        statuses,
        [&json!(201), &json!(201), &json!(200), &json!(200)]
    );
    let results = &body["results"];
    assert_ne!(results[0]["event"]["id"], results[1]["event"]["id"]);
    assert_eq!(results[2]["event"], results[0]["event"]);
    assert_eq!(results[3]["event"], results[1]["event"]);
    assert_eq!(results[1]["event"]["payload"], json!({"n": 2}));
    // And in a later commit, each tenant's repeat finds its own event.
    let (status, again) = app.publish(&producer, &item("beta", 5)).await;
    assert_eq!(status, 200, "{again}");
    assert_eq!(again["id"], results[1]["event"]["id"]);
    assert_eq!(again["payload"], json!({"n": 2}));
}

#[tokio::test]
async fn a_batch_must_hold_1_to_1000_events() {
    let Some(app) = super::spawn(&[]).await else {
        return;
    };
    app.create_tenant("acme").await;
    let producer = app.producer_token().await;
    let post = |body: Value| {
        let request = app
            .request(reqwest::Method::POST, "/v1/events/batch", &producer)
            .json(&body);
        async move { read(request.send().await.unwrap()).await }
    };
    let message = "events must be an array of 1 to 1000 events";
    assert_error(&post(json!({"events": []})).await, 400, message);
    assert_error(&post(json!({})).await, 400, message);
    assert_error(&post(json!({"events": {}})).await, 400, message);
    let too_many: Vec<Value> = (0..1001).map(|_| event("acme", "a")).collect();
    assert_error(&post(json!({"events": too_many})).await, 400, message);
    let most: Vec<Value> = (0..1000).map(|_| event("acme", "a")).collect();
    let (status, body) = post(json!({"events": most})).await;
    assert_eq!(status, 200);
    assert!(
        body["results"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["status"] == 201)
    );
}

#[tokio::test]
async fn batch_bodies_over_16_mib_are_refused_with_413() {
    let Some(app) = super::spawn(&[]).await else {
        return;
    };
    app.create_tenant("acme").await;
    let producer = app.producer_token().await;
    let item =
        json!({"tenant": "acme", "eventType": "a", "payload": {"blob": "x".repeat(200 * 1024)}});
    let (status, body) = read(
        app.request(reqwest::Method::POST, "/v1/events/batch", &producer)
            .json(&json!({"events": vec![item; 85]}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 413, "{body}");
}
