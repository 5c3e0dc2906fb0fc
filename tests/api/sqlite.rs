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
#[path = "delivery_bad_partners.rs"]
mod delivery_bad_partners;
#[path = "delivery_cycles.rs"]
mod delivery_cycles;
#[path = "delivery_limits.rs"]
mod delivery_limits;
#[path = "delivery_retries.rs"]
mod delivery_retries;
#[path = "dispatch.rs"]
mod dispatch;
#[path = "event_ids.rs"]
mod event_ids;
#[path = "events.rs"]
mod events;
#[path = "health.rs"]
mod health;
#[path = "isolation.rs"]
mod isolation;
#[path = "ops.rs"]
mod ops;
#[path = "partner_limits.rs"]
mod partner_limits;
#[path = "publish.rs"]
mod publish;
#[path = "publish_batch.rs"]
mod publish_batch;
#[path = "recovery.rs"]
mod recovery;
#[path = "robustness.rs"]
mod robustness;
#[path = "store.rs"]
mod store;
#[path = "store_recovery.rs"]
mod store_recovery;
#[path = "test_delivery.rs"]
mod test_delivery;
#[path = "text.rs"]
mod text;
#[path = "wake.rs"]
mod wake;
#[path = "webhook_changes.rs"]
mod webhook_changes;
#[path = "webhooks.rs"]
mod webhooks;

/// On SQLite the dispatcher records finished attempts in its next claim. While another
/// process holds the file's write lock past the busy timeout, that claim fails: the result
/// must be kept and recorded once the file is free, before the lease that ran out meanwhile
/// could hand the delivery out again, so the receiver is called once and the log shows one
/// attempt. The store waits 100 ms for a lock (Herald's 10 s otherwise) and the lease runs
/// out on the dispatcher's manual clock, so the test waits for neither.
#[tokio::test]
async fn an_attempt_result_outlasts_a_locked_database_file() {
    use std::sync::Arc;
    use std::time::Duration;

    use herald::delivery::Clock;
    use herald::domain::health::HealthPolicy;
    use herald::domain::status::{AttemptStatus, EventStatus};
    use herald::domain::time::now_ms;
    use herald::store::{SqliteStore, Store};
    use sqlx::Connection;

    use crate::receiver::TestReceiver;

    let dir = tempfile::tempdir().expect("temporary directory");
    let url = format!("sqlite://{}", dir.path().join("herald.db").display());
    let store: Arc<dyn Store> = Arc::new(
        SqliteStore::connect_waiting(&url, HealthPolicy::default(), Duration::from_millis(100))
            .await
            .expect("store opens"),
    );
    store.migrate().await.expect("migrated");
    store
        .create_tenant(&"acme".into())
        .await
        .expect("tenant created");
    let receiver = TestReceiver::answering(200).await;
    dispatch::subscribe(store.as_ref(), receiver.url("/")).await;
    let id = dispatch::publish(store.as_ref()).await;
    let clock = Clock::manual(now_ms());
    let mut dispatcher = dispatch::dispatcher(&store, &clock, &[]);

    assert_eq!(dispatcher.tick().await.expect("claimed").claimed, 1);
    // The attempt is under way: lock the file before its result is recorded.
    let mut intruder = sqlx::SqliteConnection::connect(&url)
        .await
        .expect("the database file opens");
    sqlx::raw_sql("BEGIN IMMEDIATE")
        .execute(&mut intruder)
        .await
        .expect("write lock taken");
    dispatcher.settle().await;
    assert_eq!(receiver.received().len(), 1);
    assert!(
        dispatcher.tick().await.is_err(),
        "the claim that would record the result waits out the busy timeout and fails"
    );
    // An hour passes with the file still locked: far past the 35 s lease.
    clock.advance(3_600_000);
    assert!(dispatcher.tick().await.is_err(), "still locked");
    sqlx::raw_sql("ROLLBACK")
        .execute(&mut intruder)
        .await
        .expect("write lock released");

    // The first claim on the free file records the kept result before it looks for leases
    // that ran out: the delivery is over, not handed out again.
    let tick = dispatch::step(&mut dispatcher, store.as_ref()).await;
    assert_eq!(tick.claimed, 0, "not attempted again");
    let (event, logs) = dispatch::state(store.as_ref(), id).await;
    assert_eq!(event.status, EventStatus::Completed);
    assert_eq!(logs.len(), 1, "{logs:?}");
    assert_eq!(logs[0].delivery_status, AttemptStatus::Success);
    // Nothing is left that could call the receiver again.
    let queue = store.queue_depth().await.expect("queue depth");
    assert_eq!(
        (queue.pending_events, queue.queued, queue.in_flight),
        (0, 0, 0)
    );
    assert_eq!(store.next_wake_at().await.expect("next due"), None);
    clock.advance(86_400_000);
    assert_eq!(
        dispatch::step(&mut dispatcher, store.as_ref())
            .await
            .claimed,
        0
    );
    assert_eq!(receiver.received().len(), 1, "attempted once");
}

/// On SQLite the index of business ids is written in runs (every 32,768 events); the events
/// since the last run are found through the writer's memory, and after a restart by a scan of
/// them. A repeated eventId must be answered with the stored event wherever it sits: in the
/// index, in the tail the writer knows, or in a tail read back after a restart.
#[tokio::test]
async fn a_repeated_event_id_is_found_in_the_index_and_in_the_tail_after_a_restart() {
    use serde_json::{Value, json};

    use crate::helpers::read;

    let app = TestApp::spawn_with(&[]).await;
    let acme = app.partner("acme").await;
    app.create_tenant("umbrella").await;
    let producer = app.producer_token().await;
    let batch = |app: &TestApp, events: Vec<Value>| {
        let request = app
            .request(reqwest::Method::POST, "/v1/events/batch", &producer)
            .json(&json!({ "events": events }));
        async move {
            let (status, body) = read(request.send().await.unwrap()).await;
            assert_eq!(status, 200, "{body}");
            body["results"].as_array().unwrap().clone()
        }
    };
    let event = |tenant: &str, n: usize, id: &str| json!({"tenant": tenant, "eventType": "a.b", "payload": {"n": n}, "eventId": id});
    // 34 batches of 1,000: the first 32,768 events go into the index in one run, the rest
    // stay in the tail.
    let ids: Vec<String> = (0..34_000)
        .map(|_| uuid::Uuid::new_v4().to_string())
        .collect();
    let mut records = Vec::with_capacity(ids.len());
    for (n, chunk) in ids.chunks(1_000).enumerate() {
        let events = chunk
            .iter()
            .enumerate()
            .map(|(i, id)| event("acme", n * 1_000 + i, id))
            .collect();
        let results = batch(&app, events).await;
        assert!(results.iter().all(|r| r["status"] == 201));
        records.extend(results.into_iter().map(|r| r["event"]["id"].clone()));
    }

    let (early, late) = (&ids[5], &ids[33_999]);
    let repeat = || {
        vec![
            event("acme", 0, early),
            event("acme", 0, late),
            // The same business id under another tenant is another event.
            event("umbrella", 0, early),
        ]
    };
    let results = batch(&app, repeat()).await;
    assert_eq!(results[0]["status"], 200);
    assert_eq!(results[0]["event"]["payload"], json!({"n": 5}));
    assert_eq!(results[1]["status"], 200);
    assert_eq!(results[1]["event"]["payload"], json!({"n": 33_999}));
    assert_eq!(results[2]["status"], 201);

    for (id, n) in [(early, 5), (late, 33_999)] {
        let (status, found) = acme.get(&format!("/v1/webhooks/events/{id}/status")).await;
        assert_eq!(status, 200, "{found}");
        assert_eq!(found["id"], records[n], "{found}");
    }

    // A new process knows nothing of the tail until its first publish reads it; a lookup
    // before that scans it.
    let app = app.restart().await;
    let acme = app.partner_of("acme").await;
    let (status, found) = acme
        .get(&format!("/v1/webhooks/events/{late}/status"))
        .await;
    assert_eq!(status, 200, "{found}");
    assert_eq!(found["id"], records[33_999], "{found}");
    let results = batch(&app, repeat()).await;
    let statuses: Vec<&Value> = results.iter().map(|r| &r["status"]).collect();
    assert_eq!(statuses, [200, 200, 200], "{results:?}");
    assert_eq!(results[1]["event"]["payload"], json!({"n": 33_999}));
    let (_, list) = acme.get("/v1/webhooks/events?limit=1").await;
    assert_eq!(list["total"], 34_000, "{list}");
}
