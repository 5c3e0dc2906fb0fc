//! Health on several `herald serve` processes sharing one PostgreSQL database: attempts of
//! one webhook finish on every node at once, and its counters still count each exactly once;
//! the catch-up after it recovers sends each missed event once.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::task::JoinSet;

use crate::cli::{Herald, Server};
use crate::helpers::{fresh_postgres_schema, test_database_url, wait_until_idle};
use crate::receiver::{Reply, TestReceiver};

const NODES: usize = 3;
const EVENTS: usize = 90;

/// eventId → how many requests carried it.
fn arrivals(requests: &[crate::receiver::Received]) -> HashMap<String, usize> {
    let mut counts = HashMap::new();
    for request in requests {
        let body: Value = serde_json::from_str(&request.body).unwrap();
        *counts
            .entry(body["event_id"].as_str().unwrap().to_string())
            .or_insert(0) += 1;
    }
    counts
}

async fn health(node: &Server, partner: &str, webhook: &str) -> Value {
    node.client
        .get(node.url(&format!("/v1/webhooks/{webhook}/health")))
        .bearer_auth(partner)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// Publishes `count` events, spread over the nodes and sent concurrently.
async fn publish(nodes: &[Server], producer: &str, count: usize) {
    let mut calls = JoinSet::new();
    for n in 0..count {
        let node = &nodes[n % nodes.len()];
        let (client, url, producer) = (
            node.client.clone(),
            node.url("/v1/events"),
            producer.to_string(),
        );
        calls.spawn(async move {
            let response = client
                .post(url)
                .bearer_auth(producer)
                .json(&json!({"tenant": "acme", "eventType": "a.b", "payload": {"n": n}}))
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), 201);
        });
    }
    while let Some(call) = calls.join_next().await {
        call.unwrap();
    }
}

#[tokio::test]
async fn three_nodes_count_one_webhooks_failures_exactly_and_catch_up_once() {
    let Some(base) = test_database_url() else {
        return;
    };
    let url = fresh_postgres_schema(&base).await;
    let herald = Herald::on(&url);
    herald.run(&["migrate"]).await.assert_success();
    herald.create_tenant("acme").await;
    let (_, producer) = herald.create_token(&["--producer"]).await;
    let (_, partner) = herald.create_token(&["--tenant", "acme"]).await;
    let mut nodes = Vec::new();
    for _ in 0..NODES {
        let mut command = herald.command(&["serve"]);
        command
            .env("HERALD_LISTEN", "127.0.0.1:0")
            .env("HERALD_ALLOW_HTTP", "true")
            .env("HERALD_ALLOW_PRIVATE_TARGETS", "true")
            // One attempt per event: every event adds exactly one failure.
            .env("HERALD_RETRY_SCHEDULE", "")
            .env("HERALD_FAILING_AFTER", "10");
        nodes.push(Server::start(command).await);
    }
    let status = Arc::new(AtomicU16::new(500));
    let answer = status.clone();
    // A slow answer keeps attempts of every node in flight together.
    let receiver = TestReceiver::start(move |_| {
        Reply::status(answer.load(Ordering::SeqCst)).after(Duration::from_millis(20))
    })
    .await;
    let created: Value = nodes[0]
        .client
        .post(nodes[0].url("/v1/webhooks"))
        .bearer_auth(&partner)
        .json(&json!({"name": "r", "url": receiver.url("/"), "event_types": ["*"], "is_active": true}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let webhook = created["data"]["id"].as_str().unwrap().to_string();

    publish(&nodes, &producer, EVENTS).await;
    receiver.wait_for(EVENTS, Duration::from_secs(30)).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    let failing = loop {
        let health = health(&nodes[1], &partner, &webhook).await;
        if health["consecutiveFailures"] == EVENTS || Instant::now() > deadline {
            break health;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(failing["consecutiveFailures"], EVENTS, "{failing}");
    assert_eq!(failing["state"], "failing");

    // Back up: one more event's success recovers it, and each missed event arrives once.
    status.store(200, Ordering::SeqCst);
    let before = receiver.received().len();
    publish(&nodes[2..], &producer, 1).await;
    receiver
        .wait_for(before + EVENTS + 1, Duration::from_secs(30))
        .await;
    // Counted once no node has anything left to send: no delivery queued or in flight, no
    // catch-up running.
    let store = herald::store::connect(&url).await.expect("store opens");
    wait_until_idle(store.as_ref()).await;
    let after = arrivals(&receiver.received()[before..]);
    assert_eq!(after.len(), EVENTS + 1);
    assert!(after.values().all(|&n| n == 1), "once each: {after:?}");
    let healthy = health(&nodes[0], &partner, &webhook).await;
    assert_eq!(healthy["state"], "healthy", "{healthy}");
    assert_eq!(healthy["consecutiveFailures"], 0);
}
