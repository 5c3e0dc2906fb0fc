//! A database written by an earlier Herald keeps its events, deliveries and logs when the
//! current one migrates it: on SQLite, the events it holds still answer to their business
//! ids; on both backends, the deliveries waiting in it are sent, and those of a webhook
//! deleted before the upgrade still count towards their events' statuses.

use std::path::Path;
use std::time::Duration;

use serde_json::json;
use sqlx::Connection;
use sqlx::postgres::PgConnection;
use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection};

use crate::helpers::{TestApp, fresh_postgres_schema, test_database_url};
use crate::receiver::TestReceiver;

/// Migrations up to this version make the schema the SQLite database is written in.
const OLD_SCHEMA: i64 = 3;
/// The same for PostgreSQL: before deliveries named their webhook by its `seq` (0005).
const OLD_POSTGRES_SCHEMA: i64 = 4;

const EVENT_ID: &str = "4f9c2a1e-7b3d-4c58-9e21-0a6b8d3f5c77";
const WEBHOOK_ID: &str = "018f6d2e-1c3a-7b4d-8e9f-0a1b2c3d4e5f";
/// A webhook deleted before the upgrade: only its finished deliveries are left.
const DELETED_WEBHOOK_ID: &str = "018f6d2e-1c3a-7b4d-8e9f-0a1b2c3d4e60";
/// An event still waiting for its delivery to [`WEBHOOK_ID`] when the old Herald stopped.
const WAITING_EVENT_ID: &str = "7d1e0c4b-2a9f-4e3d-8b6a-5c4d3e2f1a09";

#[tokio::test]
async fn events_written_before_the_key_index_survive_the_upgrade() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("herald.db");
    write_old_database(&path, "https://partner.example/hook").await;

    let url = format!("sqlite://{}", path.display());
    let app = TestApp::spawn_on_database(&url, &[]).await;
    let acme = app.partner_of("acme").await;

    // Found by its business id (through the new key) and by its record id.
    let (status, by_business_id) = acme
        .get(&format!("/v1/webhooks/events/{EVENT_ID}/status"))
        .await;
    assert_eq!(status, 200, "{by_business_id}");
    assert_eq!(by_business_id["status"], "completed");
    let record_id = by_business_id["id"].as_str().unwrap().to_string();
    let (status, _) = acme
        .get(&format!("/v1/webhooks/events/{record_id}/status"))
        .await;
    assert_eq!(status, 200);

    // Its attempt log came through the rebuild of the events table (no cascade).
    let (status, logs) = acme
        .get(&format!("/v1/webhooks/events/{EVENT_ID}/logs"))
        .await;
    assert_eq!(status, 200, "{logs}");
    assert_eq!(logs["logs"].as_array().map(Vec::len), Some(1), "{logs}");
    assert_eq!(logs["logs"][0]["responseStatus"], 200);

    // The old event still holds its business id: publishing it again changes nothing.
    let producer = app.producer_token().await;
    let (status, again) = app
        .publish(
            &producer,
            &json!({"tenant": "acme", "eventType": "kyc.status.changed",
                    "eventId": EVENT_ID, "payload": {"status": "other"}}),
        )
        .await;
    assert_eq!(status, 200, "{again}");
    assert_eq!(again["id"], record_id.as_str());
    assert_eq!(again["payload"], json!({"status": "approved"}));

    // The same business id under the upper-case spelling is the same event too.
    let (status, again) = app
        .publish(
            &producer,
            &json!({"tenant": "acme", "eventType": "kyc.status.changed",
                    "eventId": EVENT_ID.to_uppercase(), "payload": {}}),
        )
        .await;
    assert_eq!(status, 200, "{again}");
    assert_eq!(again["id"], record_id.as_str());
    app.stop().await;
}

#[tokio::test]
async fn deliveries_waiting_in_an_old_database_are_sent_to_their_webhooks() {
    let receiver = TestReceiver::answering(200).await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("herald.db");
    write_old_database(&path, &receiver.url("/hook")).await;

    let url = format!("sqlite://{}", path.display());
    let app = TestApp::spawn_on_database(&url, &DEV).await;
    old_deliveries_are_sent(&app, &receiver).await;
    app.stop().await;
}

#[tokio::test]
async fn deliveries_waiting_in_an_old_postgres_database_are_sent_to_their_webhooks() {
    let Some(base_url) = test_database_url() else {
        return;
    };
    let receiver = TestReceiver::answering(200).await;
    let url = fresh_postgres_schema(&base_url).await;
    write_old_postgres_database(&url, &receiver.url("/hook")).await;

    let app = TestApp::spawn_on_database(&url, &DEV).await;
    old_deliveries_are_sent(&app, &receiver).await;
    app.stop().await;
}

/// Plain HTTP to the local receiver.
const DEV: [(&str, &str); 2] = [
    ("HERALD_ALLOW_HTTP", "true"),
    ("HERALD_ALLOW_PRIVATE_TARGETS", "true"),
];

/// What an old database's deliveries become once `app` has migrated it: the waiting one is
/// sent, a retry opens a new cycle to the same webhook, and a webhook created after the
/// upgrade gets deliveries of its own, not those of the webhook deleted before it.
async fn old_deliveries_are_sent(app: &TestApp, receiver: &TestReceiver) {
    let acme = app.partner_of("acme").await;

    // The waiting delivery reaches its webhook. The event ends `failed`: its delivery to the
    // webhook deleted before the upgrade had failed, and still counts.
    let waiting = receiver.wait_for(1, Duration::from_secs(10)).await;
    assert!(
        waiting[0].body.contains(WAITING_EVENT_ID),
        "{}",
        waiting[0].body
    );
    let done = acme.wait_for_status(WAITING_EVENT_ID, "failed").await;
    assert_eq!(done["status"], "failed", "{done}");
    let (status, logs) = acme.get(&format!("/v1/webhooks/{WEBHOOK_ID}/logs")).await;
    assert_eq!(status, 200, "{logs}");
    assert_eq!(logs["logs"].as_array().map(Vec::len), Some(2), "{logs}");

    // A manual retry of the completed event opens a new cycle for the same webhook.
    let (status, retried) = acme
        .post(
            &format!("/v1/webhooks/events/{EVENT_ID}/retry"),
            &json!({"webhookId": WEBHOOK_ID}),
        )
        .await;
    assert_eq!(status, 200, "{retried}");
    let requests = receiver.wait_for(2, Duration::from_secs(10)).await;
    assert!(requests[1].body.contains(EVENT_ID), "{}", requests[1].body);
    acme.wait_for_status(EVENT_ID, "completed").await;

    // A webhook created after the upgrade gets deliveries of its own, not the deleted one's.
    let created = acme
        .create_webhook(&json!({"name": "new", "url": receiver.url("/new"),
                                "event_types": ["*"], "is_active": true}))
        .await;
    let new_id = created["id"].as_str().unwrap().to_string();
    let producer = app.producer_token().await;
    let (status, event) = app
        .publish(
            &producer,
            &json!({"tenant": "acme", "eventType": "kyc.status.changed", "payload": {}}),
        )
        .await;
    assert_eq!(status, 201, "{event}");
    let requests = receiver.wait_for(4, Duration::from_secs(10)).await;
    assert_eq!(
        requests.iter().filter(|r| r.path == "/new").count(),
        1,
        "{:?}",
        requests.iter().map(|r| &r.path).collect::<Vec<_>>()
    );
    acme.wait_for_status(event["id"].as_str().unwrap(), "completed")
        .await;
    let (status, logs) = acme.get(&format!("/v1/webhooks/{new_id}/logs")).await;
    assert_eq!(status, 200, "{logs}");
    assert_eq!(logs["logs"].as_array().map(Vec::len), Some(1), "{logs}");
}

/// The migrations of `backend` (a folder of `migrations/`) up to `version`, in a directory
/// of their own for a migrator to run.
fn migrations_up_to(backend: &str, version: i64) -> tempfile::TempDir {
    let migrations = tempfile::tempdir().unwrap();
    let source = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("migrations")
        .join(backend);
    for entry in std::fs::read_dir(&source).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name().into_string().unwrap();
        let number: i64 = name.split('_').next().unwrap().parse().unwrap();
        if number <= version {
            std::fs::copy(entry.path(), migrations.path().join(&name)).unwrap();
        }
    }
    migrations
}

/// A database at schema version [`OLD_SCHEMA`] of tenant `acme` with one webhook at
/// `webhook_url`: one event completed (delivered once), one waiting for its delivery to the
/// webhook, whose delivery to a webhook deleted since had failed.
async fn write_old_database(path: &Path, webhook_url: &str) {
    let migrations = migrations_up_to("sqlite", OLD_SCHEMA);
    let options = SqliteConnectOptions::new()
        .filename(path)
        .create_if_missing(true)
        .foreign_keys(true);
    let mut connection = SqliteConnection::connect_with(&options).await.unwrap();
    sqlx::migrate::Migrator::new(migrations.path())
        .await
        .unwrap()
        .run(&mut connection)
        .await
        .unwrap();
    for statement in [
        "INSERT INTO tenants (name, created_at) VALUES ('acme', 1767002400000)".to_string(),
        format!(
            "INSERT INTO webhooks (id, tenant, name, url, api_key, event_types, is_active, \
             metadata, created_at, updated_at) VALUES ('{WEBHOOK_ID}', 'acme', 'old', \
             '{webhook_url}', 'whk_old', '[\"*\"]', 1, '{{}}', 1767002400000, 1767002400000)"
        ),
        format!(
            "INSERT INTO events (seq, id, tenant, event_id, event_type, payload, occurred_at, \
             status, created_at, queued_at, processed_at) VALUES (7, \
             '018f6d2e-0000-7000-8000-000000000001', 'acme', '{EVENT_ID}', \
             'kyc.status.changed', '{{\"status\":\"approved\"}}', 1767002400000, 'completed', \
             1767002400000, 1767002400001, 1767002400002)"
        ),
        format!(
            "INSERT INTO deliveries (id, event_seq, webhook_id, cycle, state, attempts, \
             next_attempt_at, created_at, updated_at) VALUES (3, 7, '{WEBHOOK_ID}', 1, \
             'succeeded', 1, 1767002400001, 1767002400001, 1767002400002)"
        ),
        format!(
            "INSERT INTO events (seq, id, tenant, event_id, event_type, payload, occurred_at, \
             status, created_at, queued_at) VALUES (8, \
             '018f6d2e-0000-7000-8000-000000000002', 'acme', '{WAITING_EVENT_ID}', \
             'kyc.status.changed', '{{}}', 1767002400000, 'processing', 1767002400000, \
             1767002400001)"
        ),
        format!(
            "INSERT INTO deliveries (id, event_seq, webhook_id, cycle, state, attempts, \
             next_attempt_at, created_at, updated_at) VALUES \
             (4, 8, '{WEBHOOK_ID}', 1, 'queued', 0, 1767002400001, 1767002400001, \
              1767002400001), \
             (5, 8, '{DELETED_WEBHOOK_ID}', 1, 'failed', 1, 1767002400001, 1767002400001, \
              1767002400002)"
        ),
        format!(
            "INSERT INTO attempts (id, delivery_id, event_seq, webhook_id, attempt_number, \
             request_url, request_headers, response_status, response_body, status, \
             duration_ms, created_at) VALUES ('018f6d2e-0000-7000-8000-0000000000a1', 3, 7, \
             '{WEBHOOK_ID}', 1, 'https://partner.example/hook', '{{}}', 200, 'ok', \
             'success', 4, {now})",
            now = herald::domain::time::now_ms()
        ),
    ] {
        sqlx::query(&statement)
            .execute(&mut connection)
            .await
            .unwrap_or_else(|e| panic!("{statement}: {e}"));
    }
    connection.close().await.unwrap();
}

/// The PostgreSQL twin of [`write_old_database`], at schema version [`OLD_POSTGRES_SCHEMA`],
/// in the schema `url` selects.
async fn write_old_postgres_database(url: &str, webhook_url: &str) {
    let migrations = migrations_up_to("postgres", OLD_POSTGRES_SCHEMA);
    let mut connection = PgConnection::connect(url).await.unwrap();
    sqlx::migrate::Migrator::new(migrations.path())
        .await
        .unwrap()
        .run(&mut connection)
        .await
        .unwrap();
    for statement in [
        "INSERT INTO tenants (name, created_at) VALUES ('acme', 1767002400000)".to_string(),
        format!(
            "INSERT INTO webhooks (id, tenant, name, url, api_key, event_types, is_active, \
             metadata, created_at, updated_at) VALUES ('{WEBHOOK_ID}', 'acme', 'old', \
             '{webhook_url}', 'whk_old', '[\"*\"]', TRUE, '{{}}', 1767002400000, 1767002400000)"
        ),
        format!(
            "INSERT INTO events (seq, id, tenant, event_id, event_type, payload, occurred_at, \
             status, created_at, queued_at, processed_at) OVERRIDING SYSTEM VALUE VALUES (7, \
             '018f6d2e-0000-7000-8000-000000000001', 'acme', '{EVENT_ID}', \
             'kyc.status.changed', '{{\"status\":\"approved\"}}', 1767002400000, 'completed', \
             1767002400000, 1767002400001, 1767002400002), (8, \
             '018f6d2e-0000-7000-8000-000000000002', 'acme', '{WAITING_EVENT_ID}', \
             'kyc.status.changed', '{{}}', 1767002400000, 'processing', 1767002400000, \
             1767002400001, NULL)"
        ),
        format!(
            "INSERT INTO deliveries (id, event_seq, webhook_id, cycle, state, attempts, \
             next_attempt_at, created_at, updated_at) OVERRIDING SYSTEM VALUE VALUES \
             (3, 7, '{WEBHOOK_ID}', 1, 'succeeded', 1, 1767002400001, 1767002400001, \
              1767002400002), \
             (4, 8, '{WEBHOOK_ID}', 1, 'queued', 0, 1767002400001, 1767002400001, \
              1767002400001), \
             (5, 8, '{DELETED_WEBHOOK_ID}', 1, 'failed', 1, 1767002400001, 1767002400001, \
              1767002400002)"
        ),
        // Later deliveries must not take the ids of these.
        "SELECT setval(pg_get_serial_sequence('deliveries', 'id'), 5)".to_string(),
        "SELECT setval(pg_get_serial_sequence('events', 'seq'), 8)".to_string(),
        format!(
            "INSERT INTO attempts (id, delivery_id, event_seq, webhook_id, attempt_number, \
             request_url, request_headers, response_status, response_body, status, \
             duration_ms, created_at) VALUES ('018f6d2e-0000-7000-8000-0000000000a1', 3, 7, \
             '{WEBHOOK_ID}', 1, 'https://partner.example/hook', '{{}}', 200, 'ok', \
             'success', 4, {now})",
            now = herald::domain::time::now_ms()
        ),
    ] {
        sqlx::query(&statement)
            .execute(&mut connection)
            .await
            .unwrap_or_else(|e| panic!("{statement}: {e}"));
    }
    connection.close().await.unwrap();
}
