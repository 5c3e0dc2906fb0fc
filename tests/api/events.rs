//! Partner event routes: list, status, logs, retry and the status rules that
//! need no delivery.

use serde_json::{Value, json};

use crate::helpers::{Partner, TestApp, assert_error, read, webhook_body};

async fn publish(app: &TestApp, producer: &str, tenant: &str, event_type: &str) -> Value {
    let (status, body) = app
        .publish(
            producer,
            &json!({"tenant": tenant, "eventType": event_type, "payload": {"k": "v"}}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    body
}

async fn active_webhook(partner: &Partner<'_>, name: &str, patterns: &[&str]) -> String {
    let mut body = webhook_body(name, patterns);
    body["is_active"] = json!(true);
    partner.create_webhook(&body).await["id"]
        .as_str()
        .unwrap()
        .to_string()
}

#[tokio::test]
async fn events_are_listed_newest_first_with_total_filters_and_paging() {
    let Some(app) = super::spawn(&[]).await else {
        return;
    };
    let acme = app.partner("acme").await;
    let producer = app.producer_token().await;
    let mut ids = Vec::new();
    for i in 0..7 {
        let event_type = if i % 2 == 0 {
            "even.happened"
        } else {
            "odd.happened"
        };
        ids.push(publish(&app, &producer, "acme", event_type).await["id"].clone());
    }
    let (status, page) = acme.get("/v1/webhooks/events?limit=3").await;
    assert_eq!(status, 200);
    assert_eq!(page["total"], 7);
    let listed: Vec<Value> = page["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].clone())
        .collect();
    assert_eq!(listed, vec![ids[6].clone(), ids[5].clone(), ids[4].clone()]);
    let cursor = page["nextCursor"].as_str().unwrap();
    let (_, next) = acme
        .get(&format!("/v1/webhooks/events?limit=3&cursor={cursor}"))
        .await;
    assert_eq!(next["events"][0]["id"], ids[3]);
    assert_eq!(next["total"], 7);

    let (_, all) = acme.get("/v1/webhooks/events").await;
    assert_eq!(all["events"].as_array().unwrap().len(), 7);
    assert!(all.get("nextCursor").is_none());
    // Nobody subscribes, so each event ends skipped.
    for id in &ids {
        acme.wait_for_status(id.as_str().unwrap(), "skipped").await;
    }
    let (_, skipped) = acme
        .get("/v1/webhooks/events?status=skipped&limit=100")
        .await;
    assert_eq!(skipped["total"], 7);
    let (_, pending) = acme.get("/v1/webhooks/events?status=pending").await;
    assert_eq!(pending["total"], 0);
    let (_, completed) = acme.get("/v1/webhooks/events?status=completed").await;
    assert_eq!(completed, json!({"total": 0, "events": []}));
    let (_, odd) = acme.get("/v1/webhooks/events?eventType=odd.happened").await;
    assert_eq!(odd["total"], 3);

    assert_error(
        &acme.get("/v1/webhooks/events?status=done").await,
        400,
        "status must be one of pending, processing, completed, failed, skipped",
    );
    for bad in ["0", "101", "x"] {
        assert_error(
            &acme.get(&format!("/v1/webhooks/events?limit={bad}")).await,
            400,
            "limit must be an integer between 1 and 100",
        );
    }
}

#[tokio::test]
async fn status_and_logs_accept_the_record_id_or_the_business_event_id() {
    let Some(app) = super::spawn(&[]).await else {
        return;
    };
    let acme = app.partner("acme").await;
    let producer = app.producer_token().await;
    let event = publish(&app, &producer, "acme", "kyc.status.changed").await;
    assert_eq!(
        event["status"], "pending",
        "stored, not fanned out yet when answered"
    );
    let skipped = acme
        .wait_for_status(event["id"].as_str().unwrap(), "skipped")
        .await;
    assert!(skipped["processedAt"].is_string());
    for key in ["id", "eventId"] {
        let id = event[key].as_str().unwrap();
        let (status, body) = acme.get(&format!("/v1/webhooks/events/{id}/status")).await;
        assert_eq!(status, 200);
        assert_eq!(
            body,
            json!({"id": event["id"], "eventId": event["eventId"], "status": "skipped",
                   "eventType": "kyc.status.changed", "createdAt": event["createdAt"],
                   "processedAt": skipped["processedAt"]})
        );
        let (status, body) = acme.get(&format!("/v1/webhooks/events/{id}/logs")).await;
        assert_eq!(status, 200);
        assert_eq!(body["logs"], json!([]));
        assert_eq!(body["event"]["id"], event["id"]);
        assert_eq!(body["event"]["payload"], event["payload"]);
        assert_eq!(body["event"]["status"], "skipped");
        assert_eq!(body["event"]["queuedAt"], skipped["processedAt"]);
    }
    let missing = uuid::Uuid::new_v4();
    assert_error(
        &acme
            .get(&format!("/v1/webhooks/events/{missing}/status"))
            .await,
        404,
        "Event not found",
    );
    assert_error(
        &acme
            .get(&format!("/v1/webhooks/events/{missing}/logs"))
            .await,
        404,
        "Event not found",
    );
    assert_error(
        &acme.get("/v1/webhooks/events/not-a-uuid/status").await,
        404,
        "Event not found",
    );
}

#[tokio::test]
async fn retry_with_no_subscribed_webhook_queues_zero_and_changes_nothing() {
    let Some(app) = super::spawn(&[]).await else {
        return;
    };
    let acme = app.partner("acme").await;
    let producer = app.producer_token().await;
    active_webhook(&acme, "other-types", &["card.*"]).await;
    let event = publish(&app, &producer, "acme", "kyc.status.changed").await;
    let event_id = event["eventId"].as_str().unwrap();
    let before = acme.wait_for_status(event_id, "skipped").await;
    let (status, body) = acme
        .post(&format!("/v1/webhooks/events/{event_id}/retry"), &json!({}))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body,
        json!({"success": true, "data": {"eventId": event_id, "webhookCount": 0, "message": "Event queued for retry to 0 webhook(s)"}})
    );
    let (_, after) = acme
        .get(&format!("/v1/webhooks/events/{event_id}/status"))
        .await;
    assert_eq!(after, before);
}

#[tokio::test]
async fn retry_queues_a_cycle_to_every_active_subscribed_webhook() {
    let Some(app) = super::spawn(&[]).await else {
        return;
    };
    let acme = app.partner("acme").await;
    let producer = app.producer_token().await;
    active_webhook(&acme, "exact", &["kyc.status.changed"]).await;
    active_webhook(&acme, "category", &["kyc.*"]).await;
    active_webhook(&acme, "star", &["*"]).await;
    active_webhook(&acme, "unrelated", &["card.*"]).await;
    acme.create_webhook(&webhook_body("inactive", &["*"])).await;
    let event = publish(&app, &producer, "acme", "kyc.status.changed").await;
    let id = event["id"].as_str().unwrap();
    let (status, body) = acme
        .post(&format!("/v1/webhooks/events/{id}/retry"), &json!({}))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["webhookCount"], 3);
    assert_eq!(body["data"]["eventId"], id, "echoes the path value");
    assert_eq!(
        body["data"]["message"],
        "Event queued for retry to 3 webhook(s)"
    );
    let (_, status_body) = acme.get(&format!("/v1/webhooks/events/{id}/status")).await;
    assert_eq!(status_body["status"], "processing");
    assert_eq!(status_body["processedAt"], Value::Null);
    let (_, listed) = acme.get("/v1/webhooks/events?status=processing").await;
    assert_eq!(listed["total"], 1);
    assert!(listed["events"][0]["queuedAt"].is_string());
}

#[tokio::test]
async fn retry_bodies_may_be_empty_or_absent() {
    let Some(app) = super::spawn(&[]).await else {
        return;
    };
    let acme = app.partner("acme").await;
    let producer = app.producer_token().await;
    active_webhook(&acme, "star", &["*"]).await;
    let event = publish(&app, &producer, "acme", "a.b").await;
    let path = format!(
        "/v1/webhooks/events/{}/retry",
        event["eventId"].as_str().unwrap()
    );
    // No body and no content type.
    let (status, body) = read(
        app.request(reqwest::Method::POST, &path, &acme.token)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        (status, body["data"]["webhookCount"].clone()),
        (200, json!(1))
    );
    // An empty body that claims to be JSON.
    let (status, _) = read(
        app.request(reqwest::Method::POST, &path, &acme.token)
            .header("content-type", "application/json")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200);
    let (status, _) = acme.post(&path, &json!({"webhookId": null})).await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn retry_to_one_webhook_checks_id_owner_and_activity() {
    let Some(app) = super::spawn(&[]).await else {
        return;
    };
    let acme = app.partner("acme").await;
    let other = app.partner("other").await;
    let producer = app.producer_token().await;
    let active = active_webhook(&acme, "active", &["a.*"]).await;
    let inactive = acme.create_webhook(&webhook_body("inactive", &["*"])).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let foreign = active_webhook(&other, "foreign", &["*"]).await;
    let event = publish(&app, &producer, "acme", "a.b").await;
    let path = format!(
        "/v1/webhooks/events/{}/retry",
        event["id"].as_str().unwrap()
    );

    assert_error(
        &acme.post(&path, &json!({"webhookId": "nope"})).await,
        400,
        "webhookId must be a valid UUID",
    );
    assert_error(
        &acme.post(&path, &json!({"webhookId": 12})).await,
        400,
        "webhookId must be a valid UUID",
    );
    assert_error(
        &acme
            .post(&path, &json!({"webhookId": uuid::Uuid::new_v4()}))
            .await,
        404,
        "Webhook not found",
    );
    assert_error(
        &acme.post(&path, &json!({"webhookId": foreign})).await,
        404,
        "Webhook not found",
    );
    assert_error(
        &acme.post(&path, &json!({"webhookId": inactive})).await,
        400,
        "Webhook is not active",
    );
    let (status, body) = acme.post(&path, &json!({"webhookId": active})).await;
    assert_eq!(status, 200);
    assert_eq!(body["data"]["webhookCount"], 1);
    assert_eq!(
        body["data"]["message"],
        "Event queued for retry to 1 webhook(s)"
    );
    let missing = format!("/v1/webhooks/events/{}/retry", uuid::Uuid::new_v4());
    assert_error(
        &acme.post(&missing, &json!({})).await,
        404,
        "Event not found",
    );
}

#[tokio::test]
async fn deleting_a_webhook_fails_its_unfinished_deliveries_so_the_event_ends() {
    let Some(app) = super::spawn(&[]).await else {
        return;
    };
    let acme = app.partner("acme").await;
    let producer = app.producer_token().await;
    let webhook = active_webhook(&acme, "doomed", &["*"]).await;
    let event = publish(&app, &producer, "acme", "a.b").await;
    let id = event["id"].as_str().unwrap();
    assert_eq!(
        acme.post(&format!("/v1/webhooks/events/{id}/retry"), &json!({}))
            .await
            .0,
        200
    );
    assert_eq!(
        acme.get(&format!("/v1/webhooks/events/{id}/status"))
            .await
            .1["status"],
        "processing"
    );
    assert_eq!(acme.delete(&format!("/v1/webhooks/{webhook}")).await.0, 200);
    let (_, status) = acme.get(&format!("/v1/webhooks/events/{id}/status")).await;
    assert_eq!(status["status"], "failed");
    assert!(status["processedAt"].is_string());
}
