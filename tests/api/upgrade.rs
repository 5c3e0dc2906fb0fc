//! A SQLite database written by an earlier Herald keeps its events, deliveries and logs when
//! the current one migrates it, and the events it holds still answer to their business ids.

use serde_json::json;
use sqlx::Connection;
use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection};

use crate::helpers::TestApp;

/// Migrations up to this version make the schema the database is written in.
const OLD_SCHEMA: i64 = 3;

const EVENT_ID: &str = "4f9c2a1e-7b3d-4c58-9e21-0a6b8d3f5c77";
const WEBHOOK_ID: &str = "018f6d2e-1c3a-7b4d-8e9f-0a1b2c3d4e5f";

#[tokio::test]
async fn events_written_before_the_key_index_survive_the_upgrade() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("herald.db");
    write_old_database(&path).await;

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

/// A database at schema version [`OLD_SCHEMA`] holding one completed event of tenant `acme`,
/// delivered once to one webhook.
async fn write_old_database(path: &std::path::Path) {
    let migrations = tempfile::tempdir().unwrap();
    let source = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations/sqlite");
    for entry in std::fs::read_dir(&source).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name().into_string().unwrap();
        let version: i64 = name.split('_').next().unwrap().parse().unwrap();
        if version <= OLD_SCHEMA {
            std::fs::copy(entry.path(), migrations.path().join(&name)).unwrap();
        }
    }
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
             'https://partner.example/hook', 'whk_old', '[\"*\"]', 1, '{{}}', \
             1767002400000, 1767002400000)"
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
