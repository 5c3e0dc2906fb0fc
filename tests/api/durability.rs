//! An acknowledged publish is durable: the real `herald serve` is SIGKILLed in the middle of a
//! burst of publishes, restarted on the same SQLite file, and every event it answered 2xx for
//! must be there. Requests cut off by the kill were never acknowledged and do not count.

use std::collections::HashSet;
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
use crate::helpers::{Backend, fresh_postgres_schema, test_database_url};

/// A database with tenant `acme`, a producer token and a partner token for `acme`.
pub(crate) struct Setup {
    pub(crate) herald: Herald,
    pub(crate) producer: String,
    partner: String,
}

/// `None` when the backend is PostgreSQL and no test server is configured (said loudly).
pub(crate) async fn setup(backend: Backend) -> Option<Setup> {
    let herald = match backend {
        Backend::Sqlite => Herald::new(),
        Backend::Postgres => {
            let herald = Herald::on(&fresh_postgres_schema(&test_database_url()?).await);
            herald.run(&["migrate"]).await.assert_success();
            herald
        }
    };
    herald.create_tenant("acme").await;
    let (_, producer) = herald.create_token(&["--producer"]).await;
    let (_, partner) = herald
        .create_token(&["--tenant", "acme", "--scope", "events:read"])
        .await;
    Some(Setup {
        herald,
        producer,
        partner,
    })
}

/// What one request of a publisher came to.
pub(crate) enum Attempt {
    /// The server answered 2xx: these eventIds are acknowledged.
    Acknowledged(Vec<String>),
    /// No answer (the server is gone, or was killed mid-request).
    NoAnswer,
}

/// What the publishers did before and during the kill.
pub(crate) struct Burst {
    pub(crate) acknowledged: Vec<String>,
    /// Events sent, acknowledged or not.
    attempted: usize,
}

/// Runs `publishers` tasks that call `publish(client, "HOST:PORT")` in a loop (each call
/// sends `events_per_request` new events); once `enough` events are acknowledged, SIGKILLs
/// `server` while requests are in flight, then waits for every publisher to notice and
/// returns what was acknowledged.
pub(crate) async fn publish_until_killed<F, Fut>(
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
        let (acknowledged, attempted, reached, killed) = (
            acknowledged.clone(),
            attempted.clone(),
            reached.clone(),
            killed.clone(),
        );
        let (client, url, publish) = (
            server.client.clone(),
            server.address.to_string(),
            publish.clone(),
        );
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
                assert!(
                    started.elapsed() < Duration::from_secs(30),
                    "the publisher never stopped"
                );
            }
        });
    }

    tokio::time::timeout(Duration::from_secs(20), reached.notified())
        .await
        .unwrap_or_else(|_| {
            panic!(
                "{enough} publishes were never acknowledged; stderr:\n{}",
                server.stderr()
            )
        });
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
    Burst {
        acknowledged: all,
        attempted: attempted.load(Ordering::SeqCst),
    }
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
                let response = client
                    .get(format!("{base}/{id}/status"))
                    .bearer_auth(&token)
                    .send()
                    .await
                    .unwrap();
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

    let listed = list_every_event(&server, &setup.partner).await;
    let stored = listed.len();
    eprintln!(
        "after restart: {} of {} acknowledged events found; {stored} stored of {} attempted",
        burst.acknowledged.len() - missing.len(),
        burst.acknowledged.len(),
        burst.attempted
    );
    assert!(
        missing.is_empty(),
        "{} acknowledged events were lost, e.g. {:?}",
        missing.len(),
        &missing[..missing.len().min(5)]
    );
    let unique: HashSet<&str> = listed.iter().map(String::as_str).collect();
    assert_eq!(unique.len(), stored, "the list pages repeat no event");
    assert!(
        burst
            .acknowledged
            .iter()
            .all(|id| unique.contains(id.as_str())),
        "the list holds every acknowledged event"
    );
    assert!(
        stored >= burst.acknowledged.len() && stored <= burst.attempted,
        "{stored} stored"
    );

    let (status, log) = server.terminate().await;
    assert_eq!(
        status.code(),
        Some(0),
        "graceful stop after recovery; stderr:\n{log}"
    );
}

/// Every eventId of `acme`, paging `GET /v1/webhooks/events` with its cursor; checks that
/// `total` matches. The list is in commit order, while `createdAt` is taken when a request
/// is validated, so concurrent publishes may be listed a millisecond out of `createdAt` order:
/// that is reported, not failed.
async fn list_every_event(server: &Server, partner: &str) -> Vec<String> {
    let mut ids = Vec::new();
    let mut cursor: Option<String> = None;
    let mut total = None;
    let mut last_created_at = String::from("9");
    let (mut pages, mut inversions) = (0, 0);
    loop {
        let mut url = server.url("/v1/webhooks/events?limit=100");
        if let Some(cursor) = &cursor {
            url.push_str(&format!("&cursor={cursor}"));
        }
        let response = server
            .client
            .get(url)
            .bearer_auth(partner)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        let page: Value = response.json().await.unwrap();
        pages += 1;
        assert!(
            total.is_none_or(|total| page["total"] == total),
            "total changes between pages: {}",
            page["total"]
        );
        total = Some(page["total"].clone());
        for event in page["events"].as_array().expect("events") {
            let created_at = event["createdAt"].as_str().expect("createdAt").to_string();
            if created_at > last_created_at {
                inversions += 1;
            }
            last_created_at = created_at;
            ids.push(event["eventId"].as_str().expect("eventId").to_string());
        }
        match page.get("nextCursor") {
            Some(next) => cursor = Some(next.as_str().expect("nextCursor is a string").to_string()),
            None => break,
        }
        assert!(ids.len() <= 100_000, "the cursor never ends");
    }
    assert_eq!(
        total,
        Some(json!(ids.len())),
        "total is the number of events listed"
    );
    eprintln!(
        "listed {} events in {pages} pages; {inversions} listed after an older one",
        ids.len()
    );
    ids
}

fn event(event_id: &str) -> Value {
    json!({
        "tenant": "acme",
        "eventType": "kyc.status.changed",
        "eventId": event_id,
        "payload": {"applicantId": Uuid::new_v4(), "status": "approved"},
    })
}

/// Publishes one new event; a 201 acknowledges it.
pub(crate) async fn publish_one(client: Client, address: String, producer: String) -> Attempt {
    let id = Uuid::new_v4().to_string();
    let sent = client
        .post(format!("http://{address}/v1/events"))
        .bearer_auth(&producer)
        .json(&event(&id))
        .send()
        .await;
    let Ok(response) = sent else {
        return Attempt::NoAnswer;
    };
    // The status line is sent only after the commit: a 201 acknowledges the event even if
    // the kill then cuts off the body.
    assert_eq!(response.status(), 201, "publish of {id}");
    if let Ok(body) = response.json::<Value>().await {
        assert_eq!(body["eventId"], id.as_str(), "{body}");
        assert_eq!(body["status"], "pending", "{body}");
    }
    Attempt::Acknowledged(vec![id])
}

#[tokio::test]
async fn acknowledged_publishes_survive_sigkill_on_sqlite() {
    acknowledged_publishes_survive_sigkill(Backend::Sqlite).await;
}

#[tokio::test]
async fn acknowledged_publishes_survive_sigkill_on_postgres() {
    acknowledged_publishes_survive_sigkill(Backend::Postgres).await;
}

async fn acknowledged_publishes_survive_sigkill(backend: Backend) {
    let Some(setup) = setup(backend).await else {
        return;
    };
    let server = setup.herald.serve().await;
    let producer = setup.producer.clone();
    let burst = publish_until_killed(
        server,
        32,
        1,
        400,
        move |client: Client, address: String| publish_one(client, address, producer.clone()),
    )
    .await;
    assert!(burst.acknowledged.len() >= 400);
    assert_all_survived(&setup, &burst).await;
}

#[tokio::test]
async fn acknowledged_batches_survive_sigkill_on_sqlite() {
    acknowledged_batches_survive_sigkill(Backend::Sqlite).await;
}

#[tokio::test]
async fn acknowledged_batches_survive_sigkill_on_postgres() {
    acknowledged_batches_survive_sigkill(Backend::Postgres).await;
}

async fn acknowledged_batches_survive_sigkill(backend: Backend) {
    const BATCH: usize = 100;
    let Some(setup) = setup(backend).await else {
        return;
    };
    let server = setup.herald.serve().await;
    let producer = setup.producer.clone();
    let burst = publish_until_killed(
        server,
        8,
        BATCH,
        10 * BATCH,
        move |client: Client, address: String| {
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
                let Ok(response) = sent else {
                    return Attempt::NoAnswer;
                };
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
        },
    )
    .await;
    assert!(burst.acknowledged.len() >= 10 * BATCH);
    assert_all_survived(&setup, &burst).await;
}
