//! Several `herald serve` processes on one PostgreSQL database share the work: every event
//! published through any node is delivered once (no node attempts what another claimed), the
//! deliveries are spread over the nodes, and when one node is killed its leased work is
//! delivered by the others after the lease.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use reqwest::Client;
use serde_json::{Value, json};
use tokio::sync::Mutex;
use tokio::task::JoinSet;
use uuid::Uuid;

use crate::cli::{Herald, Server};
use crate::helpers::{fresh_postgres_schema, test_database_url};
use crate::receiver::{Reply, TestReceiver};

const NODES: usize = 3;

/// A schema with tenant `acme`, tokens, and `NODES` servers with a short delivery timeout
/// (lease = timeout + 5 s).
struct Cluster {
    herald: Herald,
    nodes: Vec<Option<Server>>,
    producer: String,
    partner: String,
}

async fn cluster() -> Option<Cluster> {
    let url = fresh_postgres_schema(&test_database_url()?).await;
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
            .env("HERALD_DELIVERY_TIMEOUT", "2s");
        nodes.push(Some(Server::start(command).await));
    }
    Some(Cluster {
        herald,
        nodes,
        producer,
        partner,
    })
}

impl Cluster {
    fn addresses(&self) -> Vec<String> {
        self.nodes
            .iter()
            .flatten()
            .map(|n| n.address.to_string())
            .collect()
    }

    async fn subscribe(&self, receiver: &TestReceiver) {
        let node = self.nodes[0].as_ref().unwrap();
        let response = node
            .client
            .post(node.url("/v1/webhooks"))
            .bearer_auth(&self.partner)
            .json(&json!({"name": "r", "url": receiver.url("/"), "event_types": ["*"], "is_active": true}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 201);
    }

    /// Successful attempts each live node has made, from its own `/metrics`.
    async fn successes_per_node(&self) -> Vec<u64> {
        let mut counts = Vec::new();
        for node in self.nodes.iter().flatten() {
            let text = node
                .client
                .get(node.url("/metrics"))
                .send()
                .await
                .unwrap()
                .text()
                .await
                .unwrap();
            let count = text
                .lines()
                .find(|l| l.starts_with(r#"herald_delivery_attempts_total{outcome="success"}"#))
                .and_then(|l| l.split_whitespace().last())
                .and_then(|v| v.parse::<f64>().ok())
                .unwrap_or(0.0);
            counts.push(count as u64);
        }
        counts
    }
}

/// Publishes `count` events round-robin through `addresses` from `workers` clients; returns
/// the acknowledged eventIds. Calls that get no answer (a killed node) are not acknowledged.
async fn publish_round_robin(
    addresses: Arc<Mutex<Vec<String>>>,
    producer: &str,
    count: usize,
    workers: usize,
) -> Vec<String> {
    let next = Arc::new(AtomicUsize::new(0));
    let acknowledged = Arc::new(Mutex::new(Vec::new()));
    let mut tasks = JoinSet::new();
    for _ in 0..workers {
        let (next, acknowledged, addresses) =
            (next.clone(), acknowledged.clone(), addresses.clone());
        let producer = producer.to_string();
        tasks.spawn(async move {
            let client = Client::builder().timeout(Duration::from_secs(10)).build().unwrap();
            loop {
                let n = next.fetch_add(1, Ordering::SeqCst);
                if n >= count {
                    return;
                }
                let address = {
                    let addresses = addresses.lock().await;
                    addresses[n % addresses.len()].clone()
                };
                let id = Uuid::new_v4().to_string();
                let sent = client
                    .post(format!("http://{address}/v1/events"))
                    .bearer_auth(&producer)
                    .json(&json!({"tenant": "acme", "eventType": "a.b", "eventId": id, "payload": {"n": n}}))
                    .send()
                    .await;
                if let Ok(response) = sent {
                    if response.status() == 201 {
                        acknowledged.lock().await.push(id);
                    }
                }
            }
        });
    }
    while tasks.join_next().await.is_some() {}
    Arc::try_unwrap(acknowledged).unwrap().into_inner()
}

/// eventId → how many times it arrived.
fn arrivals(receiver: &TestReceiver) -> HashMap<String, usize> {
    let mut counts = HashMap::new();
    for request in receiver.received() {
        let body: Value = serde_json::from_str(&request.body).unwrap();
        *counts
            .entry(body["event_id"].as_str().unwrap().to_string())
            .or_insert(0) += 1;
    }
    counts
}

async fn wait_for_all(
    receiver: &TestReceiver,
    acknowledged: &[String],
    within: Duration,
) -> HashMap<String, usize> {
    let deadline = Instant::now() + within;
    loop {
        let arrived = arrivals(receiver);
        let missing = acknowledged
            .iter()
            .filter(|id| !arrived.contains_key(*id))
            .count();
        if missing == 0 {
            return arrived;
        }
        assert!(
            Instant::now() < deadline,
            "{missing} of {} acknowledged events never arrived",
            acknowledged.len()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn three_nodes_share_the_work_and_deliver_each_event_once() {
    let Some(cluster) = cluster().await else {
        return;
    };
    let receiver = TestReceiver::answering(200).await;
    cluster.subscribe(&receiver).await;
    let addresses = Arc::new(Mutex::new(cluster.addresses()));
    let acknowledged = publish_round_robin(addresses, &cluster.producer, 3000, 24).await;
    assert_eq!(acknowledged.len(), 3000);
    let arrived = wait_for_all(&receiver, &acknowledged, Duration::from_secs(60)).await;
    let duplicates: usize = arrived.values().map(|n| n - 1).sum();
    assert_eq!(duplicates, 0, "no delivery is attempted by two nodes");
    let per_node = cluster.successes_per_node().await;
    eprintln!("three nodes: 3000 delivered, duplicates 0, successes per node {per_node:?}");
    assert_eq!(per_node.iter().sum::<u64>(), 3000);
    assert!(
        per_node.iter().all(|n| *n > 0),
        "every node delivered some: {per_node:?}"
    );
    let _ = &cluster.herald;
}

#[tokio::test]
async fn a_killed_nodes_leased_work_is_delivered_by_the_others() {
    let Some(mut cluster) = cluster().await else {
        return;
    };
    let receiver =
        TestReceiver::start(|_| Reply::status(200).after(Duration::from_millis(30))).await;
    cluster.subscribe(&receiver).await;
    let addresses = Arc::new(Mutex::new(cluster.addresses()));
    let publishing = {
        let (addresses, producer) = (addresses.clone(), cluster.producer.clone());
        tokio::spawn(async move { publish_round_robin(addresses, &producer, 1500, 24).await })
    };
    // Kill one node once deliveries are flowing, so it dies holding leased work.
    let deadline = Instant::now() + Duration::from_secs(30);
    while receiver.received().len() < 200 {
        assert!(Instant::now() < deadline, "deliveries never started");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let victim = cluster.nodes[1].take().unwrap();
    let victim_address = victim.address.to_string();
    addresses.lock().await.retain(|a| *a != victim_address);
    victim.kill().await;
    let killed_at = Instant::now();
    let acknowledged = publishing.await.unwrap();
    let unique: HashSet<&String> = acknowledged.iter().collect();
    assert_eq!(unique.len(), acknowledged.len());
    let arrived = wait_for_all(&receiver, &acknowledged, Duration::from_secs(60)).await;
    let duplicates: usize = arrived.values().map(|n| n - 1).sum();
    eprintln!(
        "node killed: {} acknowledged, lost 0, duplicates {duplicates}, all delivered {:?} after the kill",
        acknowledged.len(),
        killed_at.elapsed()
    );
}
