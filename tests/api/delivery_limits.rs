//! Delivery limits and hardening: each tenant gets a fair share of a node's slots, absurd
//! `Retry-After`s are capped, refusals name no address, and a shutdown hands back work still in
//! flight. The helpers here are shared with the suite of partners that answer badly.

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

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

fn instant_ms(value: &Value) -> i128 {
    let at = OffsetDateTime::parse(value.as_str().expect("a timestamp"), &Rfc3339).unwrap();
    at.unix_timestamp_nanos() / 1_000_000
}

/// True when some word of `text` is an IP address (v4 or v6).
fn names_an_address(text: &str) -> bool {
    text.split(|c: char| !(c.is_ascii_hexdigit() || c == '.' || c == ':'))
        .flat_map(|word| [word, word.trim_end_matches(['.', ':'])])
        .any(|word| word.parse::<std::net::IpAddr>().is_ok())
}

#[tokio::test]
async fn a_tenant_under_its_share_gets_its_deliveries_while_others_hold_every_slot_they_may() {
    let Some(app) = dev_app(&[
        ("HERALD_MAX_IN_FLIGHT", "8"),
        ("HERALD_MAX_IN_FLIGHT_PER_TENANT", "3"),
        ("HERALD_MAX_IN_FLIGHT_PER_WEBHOOK", "2"),
        ("HERALD_DELIVERY_TIMEOUT", "60s"),
    ])
    .await
    else {
        return;
    };
    let producer = app.producer_token().await;
    // Two tenants, each with two endpoints that answer nothing: without a tenant limit their
    // four webhooks (two slots each) would take all eight of the node's slots.
    let mut holes = Vec::new();
    for tenant in ["dead1", "dead2"] {
        let partner = app.partner(tenant).await;
        let mut accepted = Vec::new();
        for _ in 0..2 {
            let (base, count) = black_hole().await;
            subscribe(&partner, &format!("{base}/hook")).await;
            accepted.push(count);
        }
        for _ in 0..4 {
            publish(&app, &producer, tenant).await;
        }
        holes.push(accepted);
    }
    let held = |tenant: usize| -> usize { holes[tenant].iter().map(|c| *c.lock().unwrap()).sum() };
    let deadline = Instant::now() + Duration::from_secs(10);
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
    let started = Instant::now();
    for _ in 0..3 {
        publish(&app, &producer, "prompt").await;
    }
    receiver.wait_for(3, Duration::from_secs(1)).await;
    assert!(started.elapsed() < Duration::from_secs(1));
    // Each dead tenant holds its share and no more.
    assert_eq!((held(0), held(1)), (3, 3));
}

#[tokio::test]
async fn an_absurd_retry_after_is_capped_at_the_largest_delay_and_frees_its_slot() {
    let Some(app) = dev_app(&[
        ("HERALD_MAX_IN_FLIGHT", "1"),
        ("HERALD_RETRY_SCHEDULE", "1s,2s"),
    ])
    .await
    else {
        return;
    };
    let acme = app.partner("acme").await;
    let producer = app.producer_token().await;
    let receiver = TestReceiver::start(|n| {
        if n == 0 {
            Reply::status(429).with_header("retry-after", "99999999999999999")
        } else {
            Reply::status(200)
        }
    })
    .await;
    let webhook = subscribe(&acme, &receiver.url("/hook")).await;
    let first = publish(&app, &producer, "acme").await;
    let logs = logs_of(&acme, &webhook, 1, Duration::from_secs(5)).await;
    let log = &logs[0];
    assert_eq!(log["responseStatus"], 429, "{log}");
    let delay = instant_ms(&log["nextRetryAt"]) - instant_ms(&log["createdAt"]);
    assert!(
        (2_000..3_000).contains(&delay),
        "retried after {delay} ms: {log}"
    );

    // The one slot is free again: the next event goes at once.
    let started = Instant::now();
    publish(&app, &producer, "acme").await;
    receiver.wait_for(2, Duration::from_secs(1)).await;
    assert!(started.elapsed() < Duration::from_secs(1));
    acme.wait_for_status(&first, "completed").await;
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
    // A lease of 25 s; the grace period at shutdown is 10 s.
    let Some(app) = dev_app(&[("HERALD_DELIVERY_TIMEOUT", "20s")]).await else {
        return;
    };
    let receiver = TestReceiver::start(|n| {
        if n == 0 {
            Reply::status(200).after(Duration::from_secs(60))
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
    let claimed = Instant::now();

    let app = app.restart().await;
    // Well before the 25 s lease runs out, the next start attempts the delivery again.
    receiver.wait_for(2, Duration::from_secs(5)).await;
    assert!(
        claimed.elapsed() < Duration::from_secs(20),
        "{:?}",
        claimed.elapsed()
    );
    let acme = app.partner_of("acme").await;
    acme.wait_for_status(&event, "completed").await;
    let (_, logs) = acme.get(&format!("/v1/webhooks/events/{event}/logs")).await;
    let logs = logs["logs"].as_array().unwrap();
    // The attempt cut short by the shutdown was released untried, not logged.
    assert_eq!(logs.len(), 1, "{logs:?}");
    assert_eq!(logs[0]["deliveryStatus"], "success");
}
