//! Operator notifications leave the outbox: a queued notification reaches the operator's
//! endpoint signed with the Standard Webhooks headers (checked here with an HMAC of the
//! test's own), is retried with the same id and bytes, ends `sent` or `failed` as the
//! delivery rules say, and never goes to a destination those rules refuse. On both stores.

use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use herald::domain::time::now_ms;
use herald::store::{NotificationOutcome, NotificationRecord, Store};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use uuid::Uuid;

use crate::helpers::{Backend, TestApp, fresh_database_on, fresh_store_on};
use crate::receiver::{Received, TestReceiver};

/// The operator's secret the tests sign with, and its key bytes.
pub const OPERATOR_KEY: &[u8] = b"operator key bytes \x00\xff not UTF-8";

pub fn operator_secret() -> String {
    format!("whsec_{}", STANDARD.encode(OPERATOR_KEY))
}

/// Settings that send notifications to `receiver`, on a development setup (http, loopback)
/// with a fast retry schedule.
pub fn operator_settings(receiver: &TestReceiver) -> Vec<(&'static str, String)> {
    vec![
        ("HERALD_ALLOW_HTTP", "true".into()),
        ("HERALD_ALLOW_PRIVATE_TARGETS", "true".into()),
        ("HERALD_RETRY_SCHEDULE", "100ms,100ms".into()),
        ("HERALD_OPERATOR_WEBHOOK_URL", receiver.url("/operator")),
        ("HERALD_OPERATOR_WEBHOOK_SECRET", operator_secret()),
    ]
}

pub fn as_env<'a>(settings: &'a [(&'static str, String)]) -> Vec<(&'static str, &'a str)> {
    settings.iter().map(|(k, v)| (*k, v.as_str())).collect()
}

/// Checks a received notification's headers against its body, as an operator's Standard
/// Webhooks library would, with an HMAC computed here.
pub fn assert_signed(request: &Received) {
    assert_eq!(request.header("content-type"), "application/json");
    assert!(
        request.header("user-agent").starts_with("Herald/"),
        "{:?}",
        request.headers
    );
    let id = request.header("webhook-id");
    let timestamp = request.header("webhook-timestamp");
    let seconds: i64 = timestamp.parse().expect("Unix seconds");
    assert!(
        (seconds - now_ms() / 1000).abs() < 60,
        "timestamp {seconds} is now"
    );
    let mut mac = Hmac::<Sha256>::new_from_slice(OPERATOR_KEY).unwrap();
    mac.update(format!("{id}.{timestamp}.{}", request.body).as_bytes());
    let expected = format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()));
    assert_eq!(request.header("webhook-signature"), expected);
    assert!(
        !request.headers.contains_key("x-signature"),
        "no partner signature"
    );
}

/// Polls the store until the notification `id` satisfies `done`; returns it.
pub async fn wait_for_notification(
    store: &dyn Store,
    id: &str,
    done: impl Fn(&NotificationRecord) -> bool,
) -> NotificationRecord {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let all = store
            .list_notifications()
            .await
            .expect("notifications listed");
        let found = all.iter().find(|n| n.id == id);
        if let Some(record) = found.filter(|n| done(n)) {
            return record.clone();
        }
        assert!(Instant::now() < deadline, "notification {id}: {found:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Queues a notification the way a transition does, due now; returns its id and body.
async fn queue(store: &dyn Store) -> (String, String) {
    let id = Uuid::now_v7().to_string();
    let body = format!(
        r#"{{"type":"webhook.failing","tenant":"acme","webhookId":"{}","reason":"ünïcode"}}"#,
        Uuid::new_v4()
    );
    store
        .queue_notification(&id, "webhook.failing", &body, now_ms())
        .await
        .expect("notification queued");
    (id, body)
}

/// Waits until the app's `/metrics` shows every one of `series`.
async fn wait_for_metrics(app: &TestApp, series: &[&str]) {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let response = app.client.get(app.url("/metrics")).send().await.unwrap();
        let text = response.text().await.unwrap();
        if series.iter().all(|s| text.contains(s)) {
            return;
        }
        assert!(Instant::now() < deadline, "{series:?} missing in:\n{text}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Stops `app` (every send it started has ended with it) and checks the operator got the
/// notification `id` exactly `times` times and the outbox has it ended: nothing was sending
/// it any more and no node would send it again.
async fn assert_sent_no_more(app: TestApp, receiver: &TestReceiver, id: &str, times: usize) {
    let store = app.store.clone();
    app.stop().await;
    assert_eq!(receiver.received().len(), times, "sent {times} time(s)");
    let all = store
        .list_notifications()
        .await
        .expect("notifications listed");
    let record = all
        .iter()
        .find(|n| n.id == id)
        .expect("still in the outbox");
    assert_ne!(record.state, "queued", "{record:?}");
}

async fn app_for(backend: Backend, receiver: &TestReceiver) -> Option<TestApp> {
    TestApp::spawn_on(backend, &as_env(&operator_settings(receiver))).await
}

async fn a_queued_notification_arrives_signed(backend: Backend) {
    let receiver = TestReceiver::answering(204).await;
    let Some(app) = app_for(backend, &receiver).await else {
        return;
    };
    let (id, body) = queue(app.store.as_ref()).await;
    let requests = receiver.wait_for(1, Duration::from_secs(10)).await;
    assert_eq!(requests[0].path, "/operator");
    assert_eq!(requests[0].header("webhook-id"), id);
    assert_eq!(requests[0].body, body, "the bytes as queued");
    assert_signed(&requests[0]);
    let record = wait_for_notification(app.store.as_ref(), &id, |n| n.state != "queued").await;
    assert_eq!((record.state.as_str(), record.attempts), ("sent", 1));
    assert_sent_no_more(app, &receiver, &id, 1).await;
}

async fn a_5xx_is_retried_with_the_same_id_and_bytes(backend: Backend) {
    let receiver = TestReceiver::first_then_ok(500).await;
    let Some(app) = app_for(backend, &receiver).await else {
        return;
    };
    let (id, body) = queue(app.store.as_ref()).await;
    let record = wait_for_notification(app.store.as_ref(), &id, |n| n.state != "queued").await;
    assert_eq!((record.state.as_str(), record.attempts), ("sent", 2));
    assert_eq!(record.last_error.as_deref(), Some("HTTP 500: answer 500"));
    let requests = receiver.received();
    assert_eq!(requests.len(), 2);
    for request in &requests {
        assert_eq!(request.header("webhook-id"), id);
        assert_eq!(request.body, body);
        assert_signed(request);
    }
    wait_for_metrics(
        &app,
        &[
            r#"herald_operator_notifications_total{outcome="sent"}"#,
            "herald_operator_notification_retries_total",
        ],
    )
    .await;
}

async fn a_4xx_ends_failed_without_a_retry(backend: Backend) {
    let receiver = TestReceiver::answering(400).await;
    let Some(app) = app_for(backend, &receiver).await else {
        return;
    };
    let (id, _) = queue(app.store.as_ref()).await;
    let record = wait_for_notification(app.store.as_ref(), &id, |n| n.state != "queued").await;
    assert_eq!((record.state.as_str(), record.attempts), ("failed", 1));
    assert_eq!(record.last_error.as_deref(), Some("HTTP 400: answer 400"));
    wait_for_metrics(
        &app,
        &[r#"herald_operator_notifications_total{outcome="failed"}"#],
    )
    .await;
    assert_sent_no_more(app, &receiver, &id, 1).await;
}

async fn the_schedule_running_out_ends_it_failed(backend: Backend) {
    let receiver = TestReceiver::answering(503).await;
    let Some(app) = app_for(backend, &receiver).await else {
        return;
    };
    let (id, _) = queue(app.store.as_ref()).await;
    let record = wait_for_notification(app.store.as_ref(), &id, |n| n.state != "queued").await;
    // Two delays: three attempts.
    assert_eq!((record.state.as_str(), record.attempts), ("failed", 3));
    assert_eq!(receiver.received().len(), 3);
}

async fn a_private_destination_is_refused(backend: Backend) {
    let receiver = TestReceiver::answering(200).await;
    let mut settings = operator_settings(&receiver);
    settings.retain(|(k, _)| *k != "HERALD_ALLOW_PRIVATE_TARGETS");
    let Some(app) = TestApp::spawn_on(backend, &as_env(&settings)).await else {
        return;
    };
    let (id, _) = queue(app.store.as_ref()).await;
    let record = wait_for_notification(app.store.as_ref(), &id, |n| n.state != "queued").await;
    assert_eq!((record.state.as_str(), record.attempts), ("failed", 1));
    let error = record.last_error.unwrap_or_default();
    assert!(error.starts_with("Destination refused"), "{error}");
    assert!(receiver.received().is_empty());
}

/// Only the lease holder records an outcome, and nobody claims a held notification before
/// its lease runs out.
async fn a_claim_holds_a_notification_until_its_lease_runs_out(backend: Backend) {
    let Some((store, _dir)) = fresh_store_on(backend).await else {
        return;
    };
    let (id, body) = queue(store.as_ref()).await;
    let now = now_ms();
    let first = store
        .claim_notifications(&"a".into(), now, 1_000, 10)
        .await
        .unwrap();
    assert_eq!(first.len(), 1);
    assert_eq!(
        (first[0].id.as_str(), first[0].body.as_str()),
        (id.as_str(), body.as_str())
    );
    assert_eq!(first[0].attempts, 0);
    assert!(
        store
            .claim_notifications(&"b".into(), now, 1_000, 10)
            .await
            .unwrap()
            .is_empty()
    );
    let retry = NotificationOutcome::RetryAt {
        at_ms: now + 1_500,
        error: "HTTP 500".into(),
    };
    assert!(
        !store
            .record_notification(&"b".into(), &id, &retry, now)
            .await
            .unwrap(),
        "not b's"
    );
    // The lease ran out: b takes it over, and a's outcome no longer counts.
    let taken = store
        .claim_notifications(&"b".into(), now + 1_000, 1_000, 10)
        .await
        .unwrap();
    assert_eq!(taken.len(), 1);
    assert!(
        !store
            .record_notification(&"a".into(), &id, &NotificationOutcome::Sent, now)
            .await
            .unwrap()
    );
    assert!(
        store
            .record_notification(&"b".into(), &id, &retry, now + 1_001)
            .await
            .unwrap()
    );
    // Not due before its retry time; then due, and counted as one attempt made.
    assert!(
        store
            .claim_notifications(&"a".into(), now + 1_001, 1_000, 10)
            .await
            .unwrap()
            .is_empty()
    );
    let again = store
        .claim_notifications(&"a".into(), now + 1_500, 1_000, 10)
        .await
        .unwrap();
    assert_eq!(again[0].attempts, 1);
    assert!(
        store
            .record_notification(&"a".into(), &id, &NotificationOutcome::Sent, now + 1_600)
            .await
            .unwrap()
    );
    assert!(
        store
            .claim_notifications(&"c".into(), now + 60_000, 1_000, 10)
            .await
            .unwrap()
            .is_empty()
    );
    let record = &store.list_notifications().await.unwrap()[0];
    assert_eq!((record.state.as_str(), record.attempts), ("sent", 2));
    assert_eq!(record.last_error.as_deref(), Some("HTTP 500"));
}

/// Notifiers of several nodes claiming at the same moment never take the same notification.
async fn concurrent_claims_take_different_notifications(backend: Backend) {
    let Some((store, _dir)) = fresh_store_on(backend).await else {
        return;
    };
    for _ in 0..40 {
        queue(store.as_ref()).await;
    }
    let now = now_ms();
    let claims = (0..6).map(|node| {
        let store = store.clone();
        tokio::spawn(async move {
            store
                .claim_notifications(&format!("node-{node}").as_str().into(), now, 60_000, 16)
                .await
                .unwrap()
        })
    });
    let mut taken: Vec<String> = Vec::new();
    for claim in claims.collect::<Vec<_>>() {
        taken.extend(claim.await.unwrap().into_iter().map(|n| n.id));
    }
    let count = taken.len();
    taken.sort();
    taken.dedup();
    assert_eq!(taken.len(), count, "a notification claimed twice");
    assert_eq!(count, 40, "six claims of 16 take all 40");
}

/// `name_on_sqlite` and `name_on_postgres` for each scenario above.
macro_rules! on_both_stores {
    ($($name:ident),* $(,)?) => {
        mod on_sqlite {
            $(#[tokio::test]
            async fn $name() {
                super::$name(super::Backend::Sqlite).await
            })*
        }
        mod on_postgres {
            $(#[tokio::test]
            async fn $name() {
                super::$name(super::Backend::Postgres).await
            })*
        }
    };
}

on_both_stores!(
    a_queued_notification_arrives_signed,
    a_5xx_is_retried_with_the_same_id_and_bytes,
    a_4xx_ends_failed_without_a_retry,
    the_schedule_running_out_ends_it_failed,
    a_private_destination_is_refused,
    a_claim_holds_a_notification_until_its_lease_runs_out,
    concurrent_claims_take_different_notifications,
);

/// One process owns a SQLite file: at start-up the notifications a stopped run was sending are
/// taken back at once, as its deliveries are, not after their lease.
#[tokio::test]
async fn sqlite_takes_back_at_start_up_the_notifications_a_stopped_run_held() {
    let (url, _dir) = fresh_database_on(Backend::Sqlite)
        .await
        .expect("SQLite needs no server");
    let store = herald::app::open_store(&url).await.unwrap();
    let (id, _) = queue(store.as_ref()).await;
    let now = now_ms();
    let held = store
        .claim_notifications(&"old".into(), now, 60_000, 10)
        .await
        .unwrap();
    assert_eq!(held.len(), 1);
    drop(store);

    let store = herald::app::open_store(&url).await.unwrap();
    let before = store
        .claim_notifications(&"new".into(), now, 60_000, 10)
        .await
        .unwrap();
    assert!(before.is_empty(), "held by the stopped run's lease");
    store.recover(&"new".into(), now).await.unwrap();
    let again = store
        .claim_notifications(&"new".into(), now, 60_000, 10)
        .await
        .unwrap();
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].id, id);
}
