//! The API and delivery suites on SQLite.

use crate::helpers::{Backend, TestApp};

const BACKEND: Backend = Backend::Sqlite;

/// A fresh app on this module's backend (`None`: skipped, said loudly).
async fn spawn(env: &[(&str, &str)]) -> Option<TestApp> {
    TestApp::spawn_on(BACKEND, env).await
}

#[path = "auth.rs"]
mod auth;
#[path = "delivery.rs"]
mod delivery;
#[path = "events.rs"]
mod events;
#[path = "ops.rs"]
mod ops;
#[path = "publish.rs"]
mod publish;
#[path = "robustness.rs"]
mod robustness;
#[path = "webhooks.rs"]
mod webhooks;

/// On SQLite the dispatcher records finished attempts in its next claim. While another
/// process holds the file's write lock past the busy timeout, that claim fails: the result
/// must be kept and recorded once the file is free, before the expired lease could hand the
/// delivery out again, so the receiver is called once and the log shows one attempt.
#[tokio::test]
async fn an_attempt_result_outlasts_a_locked_database_file() {
    use std::time::Duration;

    use serde_json::json;
    use sqlx::Connection;

    use crate::receiver::{Reply, TestReceiver};

    let app = TestApp::spawn_with(&[
        ("HERALD_ALLOW_HTTP", "true"),
        ("HERALD_ALLOW_PRIVATE_TARGETS", "true"),
        // A lease of 6 s: it runs out while the file is locked.
        ("HERALD_DELIVERY_TIMEOUT", "1s"),
    ])
    .await;
    let acme = app.partner("acme").await;
    let producer = app.producer_token().await;
    let receiver =
        TestReceiver::start(|_| Reply::status(200).after(Duration::from_millis(500))).await;
    acme.create_webhook(
        &json!({"name": "r", "url": receiver.url("/"), "event_types": ["*"], "is_active": true}),
    )
    .await;
    let (status, event) = app
        .publish(
            &producer,
            &json!({"tenant": "acme", "eventType": "a.b", "payload": {}}),
        )
        .await;
    assert_eq!(status, 201, "{event}");
    receiver.wait_for(1, Duration::from_secs(10)).await;

    // The attempt is still waiting for its answer: lock the file before it is recorded, and
    // hold the lock past Herald's 10 s busy timeout and the 6 s lease.
    let mut intruder = sqlx::SqliteConnection::connect(app.database_url())
        .await
        .expect("the database file opens");
    sqlx::raw_sql("BEGIN IMMEDIATE")
        .execute(&mut intruder)
        .await
        .expect("write lock taken");
    tokio::time::sleep(Duration::from_secs(12)).await;
    sqlx::raw_sql("ROLLBACK")
        .execute(&mut intruder)
        .await
        .expect("write lock released");

    let id = event["id"].as_str().unwrap();
    acme.wait_for_status(id, "completed").await;
    let (_, logs) = acme.get(&format!("/v1/webhooks/events/{id}/logs")).await;
    assert_eq!(logs["logs"].as_array().unwrap().len(), 1, "{logs}");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(receiver.received().len(), 1, "attempted once");
}
