//! An acknowledged publish is durable: the real `herald serve` is SIGKILLed in the middle of a
//! burst of publishes, restarted on the same SQLite file, and every event it answered 2xx for
//! must be there. Requests cut off by the kill were never acknowledged and do not count.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use reqwest::Client;
use serde_json::{Value, json};
use tokio::sync::Notify;
use tokio::task::JoinSet;
use uuid::Uuid;

use super::cli::{Herald, Server};

/// A database with tenant `acme`, a producer token and a partner token for `acme`.
struct Setup {
    herald: Herald,
    producer: String,
    partner: String,
}

async fn setup() -> Setup {
    let herald = Herald::new();
    herald.create_tenant("acme").await;
    let (_, producer) = herald.create_token(&["--producer"]).await;
    let (_, partner) = herald.create_token(&["--tenant", "acme", "--scope", "events:read"]).await;
    Setup { herald, producer, partner }
}

/// What one request of a publisher came to.
enum Attempt {
    /// The server answered 2xx: these eventIds are acknowledged.
    Acknowledged(Vec<String>),
    /// No answer (the server is gone, or was killed mid-request).
    NoAnswer,
}

/// What the publishers did before and during the kill.
struct Burst {
    acknowledged: Vec<String>,
    /// Events sent, acknowledged or not.
    attempted: usize,
}

/// Runs `publishers` tasks that call `publish(client, events_sent_so_far)` in a loop; once
/// `enough` events are acknowledged, SIGKILLs `server` while requests are in flight, then
/// waits for every publisher to notice and returns what was acknowledged.
async fn publish_until_killed<F, Fut>(
    server: Server,
    publishers: usize,
    events_per_request: usize,
    enough: usize,
    publish: F,
) -> Burst
where
    F: Fn(Client, String) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = Attempt> + Send,
{
    let acknowledged = Arc::new(AtomicUsize::new(0));
    let attempted = Arc::new(AtomicUsize::new(0));
    let reached = Arc::new(Notify::new());
    let killed = Arc::new(AtomicBool::new(false));
    let mut tasks = JoinSet::new();
    for _ in 0..publishers {
        let (acknowledged, attempted, reached, killed) =
            (acknowledged.clone(), attempted.clone(), reached.clone(), killed.clone());
        let (client, url, publish) = (server.client.clone(), server.address.to_string(), publish.clone());
        tasks.spawn(async move {
            let mut mine = Vec::new();
            let started = Instant::now();
            loop {
                attempted.fetch_add(events_per_request, Ordering::SeqCst);
                match publish(client.clone(), url.clone()).await {
                    Attempt::Acknowledged(ids) => {
                        let before = acknowledged.fetch_add(ids.len(), Ordering::SeqCst);
                        if before < enough && before + ids.len() >= enough {
                            reached.notify_one();
                        }
                        mine.extend(ids);
                    }
                    Attempt::NoAnswer if killed.load(Ordering::SeqCst) => return mine,
                    Attempt::NoAnswer => panic!("a publish failed before the kill"),
                }
                assert!(started.elapsed() < Duration::from_secs(30), "the publisher never stopped");
            }
        });
    }

    tokio::time::timeout(Duration::from_secs(20), reached.notified())
        .await
        .unwrap_or_else(|_| panic!("{enough} publishes were never acknowledged; stderr:\n{}", server.stderr()));
    killed.store(true, Ordering::SeqCst);
    let acknowledged_at_kill = acknowledged.load(Ordering::SeqCst);
    let in_flight_at_kill = attempted.load(Ordering::SeqCst) - acknowledged_at_kill;
    let (status, _) = server.kill().await;
    assert!(!status.success(), "SIGKILL ends the server: {status:?}");

    let mut all = Vec::new();
    while let Some(result) = tasks.join_next().await {
        all.extend(result.expect("publisher task"));
    }
    eprintln!(
        "SIGKILL with {acknowledged_at_kill} events acknowledged and about {in_flight_at_kill} in flight; \
         {} acknowledged in all",
        all.len()
    );
    Burst { acknowledged: all, attempted: attempted.load(Ordering::SeqCst) }
}

/// Restarts the server on the same database and checks that every acknowledged eventId is
/// found by `GET /v1/webhooks/events/{eventId}/status`.
async fn assert_all_survived(setup: &Setup, burst: &Burst) {
    let server = setup.herald.serve().await;
    let mut checks = JoinSet::new();
    let chunk = burst.acknowledged.len().div_ceil(16).max(1);
    for ids in burst.acknowledged.chunks(chunk) {
        let (ids, client, token) = (ids.to_vec(), server.client.clone(), setup.partner.clone());
        let base = server.url("/v1/webhooks/events");
        checks.spawn(async move {
            let mut missing = Vec::new();
            for id in ids {
                let response =
                    client.get(format!("{base}/{id}/status")).bearer_auth(&token).send().await.unwrap();
                let status = response.status();
                let body: Value = response.json().await.unwrap_or(Value::Null);
                if status != 200 || body["eventId"] != id.as_str() {
                    missing.push(format!("{id}: {status} {body}"));
                }
            }
            missing
        });
    }
    let mut missing = Vec::new();
    while let Some(result) = checks.join_next().await {
        missing.extend(result.expect("check task"));
    }

    let listed: Value = server
        .client
        .get(server.url("/v1/webhooks/events?limit=1"))
        .bearer_auth(&setup.partner)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let stored = listed["total"].as_u64().expect("total") as usize;
    eprintln!(
        "after restart: {} of {} acknowledged events found; {stored} stored of {} attempted",
        burst.acknowledged.len() - missing.len(),
        burst.acknowledged.len(),
        burst.attempted
    );
    assert!(missing.is_empty(), "{} acknowledged events were lost, e.g. {:?}", missing.len(), &missing[..missing.len().min(5)]);
    assert!(stored >= burst.acknowledged.len() && stored <= burst.attempted, "{stored} stored");

    let (status, log) = server.terminate().await;
    assert_eq!(status.code(), Some(0), "graceful stop after recovery; stderr:\n{log}");
}

fn event(event_id: &str) -> Value {
    json!({
        "tenant": "acme",
        "eventType": "kyc.status.changed",
        "eventId": event_id,
        "payload": {"applicantId": Uuid::new_v4(), "status": "approved"},
    })
}

#[tokio::test]
async fn acknowledged_publishes_survive_sigkill() {
    let setup = setup().await;
    let server = setup.herald.serve().await;
    let producer = setup.producer.clone();
    let burst = publish_until_killed(server, 32, 1, 400, move |client: Client, address: String| {
        let producer = producer.clone();
        async move {
            let id = Uuid::new_v4().to_string();
            let sent = client
                .post(format!("http://{address}/v1/events"))
                .bearer_auth(&producer)
                .json(&event(&id))
                .send()
                .await;
            let Ok(response) = sent else { return Attempt::NoAnswer };
            // The status line is sent only after the commit: a 201 acknowledges the event even
            // if the kill then cuts off the body.
            assert_eq!(response.status(), 201, "publish of {id}");
            if let Ok(body) = response.json::<Value>().await {
                assert_eq!(body["eventId"], id.as_str(), "{body}");
                assert_eq!(body["status"], "pending", "{body}");
            }
            Attempt::Acknowledged(vec![id])
        }
    })
    .await;
    assert!(burst.acknowledged.len() >= 400);
    assert_all_survived(&setup, &burst).await;
}

#[tokio::test]
async fn acknowledged_batches_survive_sigkill() {
    const BATCH: usize = 100;
    let setup = setup().await;
    let server = setup.herald.serve().await;
    let producer = setup.producer.clone();
    let burst = publish_until_killed(server, 8, BATCH, 10 * BATCH, move |client: Client, address: String| {
        let producer = producer.clone();
        async move {
            let ids: Vec<String> = (0..BATCH).map(|_| Uuid::new_v4().to_string()).collect();
            let events: Vec<Value> = ids.iter().map(|id| event(id)).collect();
            let sent = client
                .post(format!("http://{address}/v1/events/batch"))
                .bearer_auth(&producer)
                .json(&json!({ "events": events }))
                .send()
                .await;
            let Ok(response) = sent else { return Attempt::NoAnswer };
            assert_eq!(response.status(), 200, "batch publish");
            if let Ok(body) = response.json::<Value>().await {
                let results = body["results"].as_array().expect("results");
                assert_eq!(results.len(), BATCH);
                for (result, id) in results.iter().zip(&ids) {
                    assert_eq!(result["status"], 201, "{result}");
                    assert_eq!(result["event"]["eventId"], id.as_str(), "{result}");
                    assert_eq!(result["event"]["status"], "pending", "{result}");
                }
            }
            Attempt::Acknowledged(ids)
        }
    })
    .await;
    assert!(burst.acknowledged.len() >= 10 * BATCH);
    assert_all_survived(&setup, &burst).await;
}
