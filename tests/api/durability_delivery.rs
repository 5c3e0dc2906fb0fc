//! Delivery survives a crash: `herald serve` is SIGKILLed while it is still delivering a burst
//! of events to two receivers and restarted on the same database; every event it acknowledged
//! must still reach every receiver, because claims held by the killed process come back.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use reqwest::Client;
use serde_json::{Value, json};

use crate::cli::Server;
use crate::durability::{Setup, publish_one, publish_until_killed, setup};
use crate::helpers::Backend;
use crate::receiver::{Reply, TestReceiver};

/// `herald serve` as delivery tests run it: plain HTTP to loopback receivers, short retries.
async fn serve_for_delivery(setup: &Setup) -> Server {
    let mut command = setup.herald.command(&["serve"]);
    command
        .env("HERALD_LISTEN", "127.0.0.1:0")
        .env("HERALD_ALLOW_HTTP", "true")
        .env("HERALD_ALLOW_PRIVATE_TARGETS", "true")
        .env("HERALD_RETRY_SCHEDULE", "100ms,200ms,500ms,1s,2s")
        // A short lease (timeout + 5 s): on PostgreSQL the claims of a killed node come back
        // when it runs out, not at restart.
        .env("HERALD_DELIVERY_TIMEOUT", "2s");
    Server::start(command).await
}

fn delivered_event_ids(receiver: &TestReceiver) -> Vec<String> {
    receiver
        .received()
        .iter()
        .map(|r| {
            let body: Value = serde_json::from_str(&r.body).expect("JSON body");
            body["event_id"].as_str().expect("event_id").to_string()
        })
        .collect()
}

#[tokio::test]
async fn every_acknowledged_event_reaches_every_receiver_after_a_sigkill_mid_delivery_on_sqlite() {
    every_acknowledged_event_reaches_every_receiver_after_a_sigkill_mid_delivery(Backend::Sqlite)
        .await;
}

#[tokio::test]
async fn every_acknowledged_event_reaches_every_receiver_after_a_sigkill_mid_delivery_on_postgres()
{
    every_acknowledged_event_reaches_every_receiver_after_a_sigkill_mid_delivery(Backend::Postgres)
        .await;
}

async fn every_acknowledged_event_reaches_every_receiver_after_a_sigkill_mid_delivery(
    backend: Backend,
) {
    let Some(setup) = setup(backend).await else {
        return;
    };
    let (_, admin) = setup.herald.create_token(&["--tenant", "acme"]).await;
    let slow = || Reply::status(200).after(Duration::from_millis(20));
    let receivers = [
        TestReceiver::start(move |_| slow()).await,
        TestReceiver::start(move |_| slow()).await,
    ];
    let server = serve_for_delivery(&setup).await;
    for receiver in &receivers {
        let response = server
            .client
            .post(server.url("/v1/webhooks"))
            .bearer_auth(&admin)
            .json(&json!({"name": "r", "url": receiver.url("/"), "event_types": ["*"], "is_active": true}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 201);
    }
    let producer = setup.producer.clone();
    let burst = publish_until_killed(
        server,
        16,
        1,
        300,
        move |client: Client, address: String| publish_one(client, address, producer.clone()),
    )
    .await;
    let in_flight_at_kill: usize = receivers.iter().map(|r| r.received().len()).sum();
    assert!(
        in_flight_at_kill > 0,
        "the kill came after deliveries had started"
    );

    let server = serve_for_delivery(&setup).await;
    let acknowledged: HashSet<&String> = burst.acknowledged.iter().collect();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let lost: Vec<usize> = receivers
            .iter()
            .map(|receiver| {
                let delivered: HashSet<String> =
                    delivered_event_ids(receiver).into_iter().collect();
                acknowledged
                    .iter()
                    .filter(|id| !delivered.contains(id.as_str()))
                    .count()
            })
            .collect();
        if lost.iter().all(|n| *n == 0) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "after 20 s, acknowledged events not delivered per receiver: {lost:?} of {}",
            acknowledged.len()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let duplicates: Vec<usize> = receivers
        .iter()
        .map(|receiver| {
            let ids = delivered_event_ids(receiver);
            let distinct: HashSet<&String> = ids.iter().collect();
            ids.len() - distinct.len()
        })
        .collect();
    eprintln!(
        "sigkill mid-delivery: {} acknowledged, lost 0, duplicates per receiver {duplicates:?}",
        acknowledged.len()
    );
    let (status, log) = server.terminate().await;
    assert!(status.success(), "{log}");
}
