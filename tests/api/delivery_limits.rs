//! Delivery limits and hardening: each tenant gets a fair share of a node's slots, absurd
//! `Retry-After`s are capped, refusals name no address, and a shutdown hands back work still in
//! flight. The helpers here are shared with the suite of partners that answer badly.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use herald::delivery::Clock;
use herald::domain::status::EventStatus;
use herald::domain::time::now_ms;

use super::dispatch;
use super::isolation::fresh_store;
use crate::helpers::{Partner, TestApp};
use crate::receiver::{Reply, TestReceiver, black_hole};

const DEV: [(&str, &str); 2] = [
    ("HERALD_ALLOW_HTTP", "true"),
    ("HERALD_ALLOW_PRIVATE_TARGETS", "true"),
];

pub(super) async fn dev_app(extra: &[(&str, &str)]) -> Option<TestApp> {
    let mut env: Vec<(&str, &str)> = DEV.to_vec();
    env.extend_from_slice(extra);
    super::spawn(&env).await
}

/// An active webhook for every event type; returns its id.
pub(super) async fn subscribe(partner: &Partner<'_>, url: &str) -> String {
    let data = partner
        .create_webhook(&json!({"name": "w", "url": url, "event_types": ["*"], "is_active": true}))
        .await;
    data["id"].as_str().unwrap().to_string()
}

pub(super) async fn publish(app: &TestApp, producer: &str, tenant: &str) -> String {
    let (status, event) = app
        .publish(
            producer,
            &json!({"tenant": tenant, "eventType": "a.b", "payload": {"n": 1}}),
        )
        .await;
    assert_eq!(status, 201, "{event}");
    event["id"].as_str().unwrap().to_string()
}

/// Waits until the webhook's log holds `count` attempts; returns them, newest first.
pub(super) async fn logs_of(
    partner: &Partner<'_>,
    webhook: &str,
    count: usize,
    within: Duration,
) -> Vec<Value> {
    let deadline = Instant::now() + within;
    loop {
        let (status, body) = partner.get(&format!("/v1/webhooks/{webhook}/logs")).await;
        assert_eq!(status, 200, "{body}");
        let logs = body["logs"].as_array().unwrap().clone();
        if logs.len() >= count {
            return logs;
        }
        assert!(
            Instant::now() < deadline,
            "expected {count} attempts of {webhook} within {within:?}, got {logs:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// True when some word of `text` is an IP address (v4 or v6).
fn names_an_address(text: &str) -> bool {
    text.split(|c: char| !(c.is_ascii_hexdigit() || c == '.' || c == ':'))
        .flat_map(|word| [word, word.trim_end_matches(['.', ':'])])
        .any(|word| word.parse::<std::net::IpAddr>().is_ok())
}

#[tokio::test]
async fn a_tenant_under_its_share_gets_its_deliveries_while_others_hold_every_slot_they_may() {
    // Endpoints that answer nothing hold their slots until the delivery timeout, ten minutes
    // away: what the prompt tenant gets while they hold them, it got without waiting for one.
    let Some(app) = dev_app(&[
        ("HERALD_MAX_IN_FLIGHT", "8"),
        ("HERALD_MAX_IN_FLIGHT_PER_TENANT", "3"),
        ("HERALD_MAX_IN_FLIGHT_PER_WEBHOOK", "2"),
        ("HERALD_DELIVERY_TIMEOUT", "600s"),
    ])
    .await
    else {
        return;
    };
    let producer = app.producer_token().await;
    // Two tenants, each with two endpoints that answer nothing: without a tenant limit their
    // four webhooks (two slots each) would take all eight of the node's slots.
    let mut holes = Vec::new();
    let mut dead = Vec::new();
    for tenant in ["dead1", "dead2"] {
        let partner = app.partner(tenant).await;
        let mut accepted = Vec::new();
        for _ in 0..2 {
            let (base, count) = black_hole().await;
            let webhook = subscribe(&partner, &format!("{base}/hook")).await;
            accepted.push(count);
            dead.push((partner.token.clone(), webhook));
        }
        for _ in 0..4 {
            publish(&app, &producer, tenant).await;
        }
        holes.push(accepted);
    }
    let held = |tenant: usize| -> usize { holes[tenant].iter().map(|c| *c.lock().unwrap()).sum() };
    let deadline = Instant::now() + Duration::from_secs(30);
    while held(0) + held(1) < 6 {
        assert!(
            Instant::now() < deadline,
            "held {} and {}",
            held(0),
            held(1)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let prompt = app.partner("prompt").await;
    let receiver = TestReceiver::answering(200).await;
    subscribe(&prompt, &receiver.url("/hook")).await;
    for _ in 0..3 {
        publish(&app, &producer, "prompt").await;
    }
    receiver.wait_for(3, Duration::from_secs(30)).await;
    // Each dead tenant holds its share and no more, and none of its attempts has ended.
    assert_eq!((held(0), held(1)), (3, 3));
    for (token, webhook) in dead {
        let partner = Partner { app: &app, token };
        let (_, logs) = partner.get(&format!("/v1/webhooks/{webhook}/logs")).await;
        assert!(logs["logs"].as_array().unwrap().is_empty(), "{logs}");
    }
}

#[tokio::test]
async fn an_absurd_retry_after_is_capped_at_the_largest_delay_and_frees_its_slot() {
    // Driven tick by tick with a clock the test moves: the delay is exact, and "at once" means
    // in the next tick, before the clock has moved at all.
    let Some((store, _dir)) = fresh_store().await else {
        return;
    };
    let receiver = TestReceiver::start(|n| {
        if n == 0 {
            Reply::status(429).with_header("retry-after", "99999999999999999")
        } else {
            Reply::status(200)
        }
    })
    .await;
    dispatch::subscribe(store.as_ref(), receiver.url("/hook")).await;
    let first = dispatch::publish(store.as_ref()).await;
    let start = now_ms();
    let clock = Clock::manual(start);
    let mut dispatcher = dispatch::dispatcher(
        &store,
        &clock,
        &[
            ("HERALD_MAX_IN_FLIGHT", "1"),
            ("HERALD_RETRY_SCHEDULE", "1s,2s"),
        ],
    );
    assert_eq!(
        dispatch::step(&mut dispatcher, store.as_ref())
            .await
            .claimed,
        1
    );
    let (_, logs) = dispatch::state(store.as_ref(), first).await;
    assert_eq!(logs.len(), 1, "{logs:?}");
    assert_eq!(logs[0].response_status, Some(429));
    assert_eq!(
        logs[0].next_retry_at_ms,
        Some(start + 2_000),
        "retried after the schedule's largest delay, not the partner's"
    );

    // The one slot is free again: the next event goes in the next tick.
    let second = dispatch::publish(store.as_ref()).await;
    assert_eq!(
        dispatch::step(&mut dispatcher, store.as_ref())
            .await
            .claimed,
        1
    );
    let (event, _) = dispatch::state(store.as_ref(), second).await;
    assert_eq!(event.status, EventStatus::Completed);
    assert_eq!(receiver.received().len(), 2);

    clock.advance(2_000);
    assert_eq!(
        dispatch::step(&mut dispatcher, store.as_ref())
            .await
            .claimed,
        1
    );
    let (event, logs) = dispatch::state(store.as_ref(), first).await;
    assert_eq!(event.status, EventStatus::Completed);
    assert_eq!(logs.len(), 2, "{logs:?}");
}

#[tokio::test]
async fn a_refused_attempt_says_the_destination_is_not_allowed_without_any_address() {
    let Some(app) = super::spawn(&[("HERALD_ALLOW_HTTP", "true")]).await else {
        return;
    };
    let acme = app.partner("acme").await;
    let producer = app.producer_token().await;
    let receiver = TestReceiver::answering(200).await;
    let port = receiver.base.rsplit(':').next().unwrap().to_string();
    // Stored behind the API's back, as if DNS had changed since the webhook was created.
    for url in [
        format!("http://localhost:{port}/"),
        format!("http://127.0.0.1:{port}/"),
        format!("http://[::ffff:127.0.0.1]:{port}/"),
    ] {
        app.store
            .create_webhook(
                herald::store::NewWebhook {
                    id: herald::domain::ids::WebhookId::generate(),
                    tenant: "acme".into(),
                    name: "internal".into(),
                    url: url.clone(),
                    api_key: herald::domain::keys::ApiKey::generate(),
                    event_types: vec!["*".into()],
                    is_active: true,
                    metadata: "{}".into(),
                },
                10,
            )
            .await
            .unwrap()
            .unwrap();
    }
    let event = publish(&app, &producer, "acme").await;
    acme.wait_for_status(&event, "failed").await;
    let (_, logs) = acme.get(&format!("/v1/webhooks/events/{event}/logs")).await;
    let logs = logs["logs"].as_array().unwrap();
    assert_eq!(logs.len(), 3, "{logs:?}");
    for log in logs {
        let message = log["errorMessage"].as_str().unwrap();
        assert!(message.contains("not allowed"), "{message}");
        assert!(!names_an_address(message), "{message}");
        assert!(
            !message.contains("127.0.0") && !message.contains("::1"),
            "{message}"
        );
    }
    assert!(receiver.received().is_empty());
}

#[tokio::test]
async fn work_in_flight_at_shutdown_is_released_for_the_next_start_before_its_lease_ends() {
    // A lease of 605 s; the grace period at shutdown is 10 s.
    let Some(app) = dev_app(&[("HERALD_DELIVERY_TIMEOUT", "600s")]).await else {
        return;
    };
    let receiver = TestReceiver::start(|n| {
        if n == 0 {
            Reply::status(200).after(Duration::from_secs(600))
        } else {
            Reply::status(200)
        }
    })
    .await;
    let event = {
        let acme = app.partner("acme").await;
        let producer = app.producer_token().await;
        subscribe(&acme, &receiver.url("/hook")).await;
        publish(&app, &producer, "acme").await
    };
    receiver.wait_for(1, Duration::from_secs(5)).await;

    let stopped = app.halt().await;
    // Released at the shutdown, not left to its lease: queued again, claimed by no one.
    let store = herald::store::connect(stopped.database_url())
        .await
        .expect("store opens");
    let queue = store.queue_depth().await.expect("queue depth");
    assert_eq!((queue.queued, queue.in_flight), (1, 0));
    drop(store);
    let app = stopped.start().await;
    // So the next start attempts it again at once.
    receiver.wait_for(2, Duration::from_secs(30)).await;
    let acme = app.partner_of("acme").await;
    acme.wait_for_status(&event, "completed").await;
    let (_, logs) = acme.get(&format!("/v1/webhooks/events/{event}/logs")).await;
    let logs = logs["logs"].as_array().unwrap();
    // The attempt cut short by the shutdown was released untried, not logged.
    assert_eq!(logs.len(), 1, "{logs:?}");
    assert_eq!(logs[0]["deliveryStatus"], "success");
}
