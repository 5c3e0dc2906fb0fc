//! The hardening limits that involve the store: the partner write rate, bounded answers (an
//! event's logs, the retry body) and the opaque event cursor.

use std::time::Duration;

use base64::Engine;
use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::{TestApp, assert_error, read, webhook_body};
use crate::receiver::TestReceiver;

async fn publish(app: &TestApp, producer: &str, tenant: &str) -> Value {
    let (status, body) = app
        .publish(
            producer,
            &json!({"tenant": tenant, "eventType": "a.b", "payload": {}}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    body
}

#[tokio::test]
async fn partner_writes_beyond_the_rate_get_429_while_reads_producers_and_other_tenants_go_on() {
    let Some(app) = super::spawn(&[
        ("HERALD_PARTNER_WRITE_RATE", "1/m"),
        ("HERALD_PARTNER_WRITE_BURST", "3"),
    ])
    .await
    else {
        return;
    };
    let acme = app.partner("acme").await;
    let umbrella = app.partner("umbrella").await;
    let producer = app.producer_token().await;
    let event = publish(&app, &producer, "acme").await;
    let event_id = event["id"].as_str().unwrap();

    // The burst: three writes of three kinds.
    let webhook = acme.create_webhook(&webhook_body("w", &["*"])).await;
    let id = webhook["id"].as_str().unwrap();
    let (status, body) = acme
        .put(&format!("/v1/webhooks/{id}"), &json!({"name": "renamed"}))
        .await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = acme
        .post(&format!("/v1/webhooks/{id}/rotate-key"), &json!({}))
        .await;
    assert_eq!(status, 200, "{body}");

    // Every write route is refused now, with the exact message and a Retry-After.
    let writes = [
        (
            Method::POST,
            "/v1/webhooks".to_string(),
            webhook_body("x", &["*"]),
        ),
        (
            Method::PUT,
            format!("/v1/webhooks/{id}"),
            json!({"name": "again"}),
        ),
        (Method::DELETE, format!("/v1/webhooks/{id}"), Value::Null),
        (
            Method::POST,
            format!("/v1/webhooks/{id}/rotate-key"),
            json!({}),
        ),
        (
            Method::POST,
            format!("/v1/webhooks/events/{event_id}/retry"),
            json!({}),
        ),
    ];
    for (method, path, body) in writes {
        let mut request = app.request(method.clone(), &path, &acme.token);
        if !body.is_null() {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        let retry_after = response
            .headers()
            .get("retry-after")
            .map(|v| v.to_str().unwrap().to_string());
        let answer = read(response).await;
        assert_error(&answer, 429, "Too many requests");
        let seconds: u64 = retry_after
            .unwrap_or_else(|| panic!("{method} {path}: no Retry-After"))
            .parse()
            .expect("Retry-After is whole seconds");
        assert!((1..=60).contains(&seconds), "Retry-After {seconds}");
    }

    // Nothing refused was done.
    let (status, listed) = acme.get(&format!("/v1/webhooks/{id}")).await;
    assert_eq!(status, 200, "{listed}");
    assert_eq!(listed["name"], "renamed");

    // Reads and producers are not limited by it.
    for path in [
        "/v1/webhooks".to_string(),
        format!("/v1/webhooks/{id}/logs"),
        "/v1/webhooks/events".to_string(),
        format!("/v1/webhooks/events/{event_id}/status"),
        format!("/v1/webhooks/events/{event_id}/logs"),
    ] {
        let (status, body) = acme.get(&path).await;
        assert_eq!(status, 200, "{path}: {body}");
    }
    for _ in 0..5 {
        publish(&app, &producer, "acme").await;
    }

    // Another tenant has a bucket of its own.
    let other = umbrella.create_webhook(&webhook_body("u", &["*"])).await;
    let (status, body) = umbrella
        .delete(&format!("/v1/webhooks/{}", other["id"].as_str().unwrap()))
        .await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test]
async fn a_retry_body_over_16_kib_is_refused_with_413() {
    let Some(app) = super::spawn(&[]).await else {
        return;
    };
    let acme = app.partner("acme").await;
    let producer = app.producer_token().await;
    let event = publish(&app, &producer, "acme").await;
    let path = format!(
        "/v1/webhooks/events/{}/retry",
        event["id"].as_str().unwrap()
    );
    let padded = |size: usize| {
        let mut body = b"{\"webhookId\": null}".to_vec();
        body.resize(size, b' ');
        body
    };
    let send = |body: Vec<u8>| {
        app.request(Method::POST, &path, &acme.token)
            .header("content-type", "application/json")
            .body(body)
            .send()
    };
    // Just under the limit: a valid (if padded) body.
    let (status, body) = read(send(padded(16 * 1024)).await.unwrap()).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["webhookCount"], 0);
    for size in [16 * 1024 + 1, 20 * 1024, 60 * 1024] {
        let (status, body) = read(send(padded(size)).await.unwrap()).await;
        assert_eq!(status, 413, "{size} bytes: {body}");
        assert!(body["message"].is_string(), "{body}");
    }
}

/// Adds `copies` attempts to the store beside the event's one logged attempt, each a
/// millisecond newer than the last, numbered from 2 on.
async fn copy_attempts(app: &TestApp, copies: usize) {
    use sqlx::Connection;

    let values: Vec<String> = (1..=copies)
        .map(|n| format!("('{}', {n})", uuid::Uuid::new_v4()))
        .collect();
    // VALUES columns are column1, column2 on both backends.
    let sql = format!(
        "INSERT INTO attempts (id, delivery_id, event_seq, webhook_id, attempt_number, \
         request_url, request_headers, response_status, response_body, error_message, status, \
         duration_ms, created_at, next_retry_at) \
         SELECT v.column1, a.delivery_id, a.event_seq, a.webhook_id, v.column2 + 1, \
         a.request_url, a.request_headers, a.response_status, a.response_body, a.error_message, \
         a.status, a.duration_ms, a.created_at + v.column2, a.next_retry_at \
         FROM attempts a, (VALUES {}) AS v",
        values.join(", ")
    );
    let url = app.database_url();
    if url.starts_with("postgres") {
        let mut connection = sqlx::PgConnection::connect(url).await.unwrap();
        sqlx::raw_sql(&sql).execute(&mut connection).await.unwrap();
    } else {
        let mut connection = sqlx::SqliteConnection::connect(url).await.unwrap();
        sqlx::raw_sql(&sql).execute(&mut connection).await.unwrap();
    }
}

#[tokio::test]
async fn the_logs_of_an_event_hold_its_newest_1000_attempts_oldest_first() {
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
    let receiver = TestReceiver::answering(200).await;
    acme.create_webhook(
        &json!({"name": "r", "url": receiver.url("/"), "event_types": ["*"], "is_active": true}),
    )
    .await;
    let event = publish(&app, &producer, "acme").await;
    let id = event["id"].as_str().unwrap();
    acme.wait_for_status(id, "completed").await;
    receiver.wait_for(1, Duration::from_secs(10)).await;

    // Attempts 1..=1101: the answer holds 102..=1101.
    copy_attempts(&app, 1_100).await;
    let (status, body) = acme.get(&format!("/v1/webhooks/events/{id}/logs")).await;
    assert_eq!(status, 200, "{body}");
    let numbers: Vec<i64> = body["logs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|log| log["attemptNumber"].as_i64().unwrap())
        .collect();
    assert_eq!(numbers, (102..=1101).collect::<Vec<i64>>());
    assert_eq!(body["event"]["id"], id);
}

/// Every event of the partner's list, page by page with `limit`; returns the ids in order
/// and the cursors seen.
async fn page_through(
    partner: &crate::helpers::Partner<'_>,
    limit: u32,
) -> (Vec<String>, Vec<String>) {
    let (mut ids, mut cursors) = (Vec::new(), Vec::new());
    let mut cursor: Option<String> = None;
    loop {
        let mut path = format!("/v1/webhooks/events?limit={limit}");
        if let Some(cursor) = &cursor {
            path.push_str(&format!("&cursor={cursor}"));
        }
        let (status, page) = partner.get(&path).await;
        assert_eq!(status, 200, "{path}: {page}");
        let events = page["events"].as_array().unwrap();
        ids.extend(events.iter().map(|e| e["id"].as_str().unwrap().to_string()));
        match page.get("nextCursor") {
            Some(next) => {
                let next = next.as_str().unwrap().to_string();
                // The cursor says no more than the page did: its last event's id.
                let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
                    .decode(&next)
                    .expect("base64url");
                let last = uuid::Uuid::from_slice(&bytes).expect("a record id");
                assert_eq!(Some(&last.to_string()), ids.last(), "{page}");
                cursors.push(next.clone());
                cursor = Some(next);
            }
            None => return (ids, cursors),
        }
        assert!(ids.len() < 1_000, "the cursor never ends");
    }
}

#[tokio::test]
async fn paging_with_the_opaque_cursor_returns_each_event_once_whatever_other_tenants_publish() {
    let Some(app) = super::spawn(&[]).await else {
        return;
    };
    let acme = app.partner("acme").await;
    app.create_tenant("umbrella").await;
    let producer = app.producer_token().await;
    let mut published = Vec::new();
    for n in 0..7 {
        published.push(
            publish(&app, &producer, "acme").await["id"]
                .as_str()
                .unwrap()
                .to_string(),
        );
        for _ in 0..n {
            publish(&app, &producer, "umbrella").await;
        }
    }
    let (ids, cursors) = page_through(&acme, 2).await;
    published.reverse();
    assert_eq!(ids, published, "newest first, each once");
    assert_eq!(cursors.len(), 3);

    // Other tenants' events published meanwhile change nothing of acme's cursors.
    for _ in 0..10 {
        publish(&app, &producer, "umbrella").await;
    }
    let (again, cursors_again) = page_through(&acme, 2).await;
    assert_eq!(again, ids);
    assert_eq!(cursors_again, cursors);
}

#[tokio::test]
async fn an_altered_undecodable_or_foreign_cursor_is_a_400_naming_cursor() {
    let Some(app) = super::spawn(&[]).await else {
        return;
    };
    let acme = app.partner("acme").await;
    let umbrella = app.partner("umbrella").await;
    let producer = app.producer_token().await;
    for _ in 0..3 {
        publish(&app, &producer, "acme").await;
        publish(&app, &producer, "umbrella").await;
    }
    let (_, page) = umbrella.get("/v1/webhooks/events?limit=1").await;
    let foreign = page["nextCursor"].as_str().unwrap().to_string();
    let (_, page) = acme.get("/v1/webhooks/events?limit=1").await;
    let own = page["nextCursor"].as_str().unwrap().to_string();
    let (status, body) = acme
        .get(&format!("/v1/webhooks/events?limit=1&cursor={own}"))
        .await;
    assert_eq!(status, 200, "{body}");

    let mut altered = own.clone().into_bytes();
    altered[3] = if altered[3] == b'A' { b'B' } else { b'A' };
    let altered = String::from_utf8(altered).unwrap();
    for cursor in [
        foreign.as_str(),
        altered.as_str(),
        "not-a-cursor",
        "12",
        &own[..own.len() - 1],
        "",
    ] {
        let (status, body) = acme
            .get(&format!("/v1/webhooks/events?limit=1&cursor={cursor}"))
            .await;
        assert_eq!(status, 400, "{cursor:?}: {body}");
        let message = body["message"].as_str().unwrap();
        assert!(message.contains("cursor"), "{cursor:?}: {message}");
    }
}
