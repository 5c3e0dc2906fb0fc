//! A PostgreSQL outage: Herald reaches the database through a proxy the test can cut. While
//! it is cut the API answers 503 with a clear message and `/readyz` says so; once it is back,
//! Herald serves again without a restart, and nothing acknowledged is lost. A restart of the
//! server in the middle of a burst of publishes (every session killed on the server's side,
//! no connection accepted for a while) loses no acknowledged event either.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use sqlx::Connection;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;
use tokio::task::JoinSet;

use crate::helpers::{TestApp, fresh_postgres_schema, read, test_database_url};
use crate::receiver::TestReceiver;

/// A TCP proxy to the database that can be cut (every connection dropped, new ones refused)
/// and restored.
struct Proxy {
    address: SocketAddr,
    cut: Arc<AtomicBool>,
    cutting: Arc<Notify>,
    /// The local ports of its connections to the server: how the server's activity view
    /// tells this proxy's sessions from those of other tests.
    upstream_ports: Arc<Mutex<Vec<i32>>>,
}

impl Proxy {
    async fn start(upstream: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let cut = Arc::new(AtomicBool::new(false));
        let cutting = Arc::new(Notify::new());
        let upstream_ports = Arc::new(Mutex::new(Vec::new()));
        let (is_cut, on_cut, ports) = (cut.clone(), cutting.clone(), upstream_ports.clone());
        tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                if is_cut.load(Ordering::SeqCst) {
                    continue; // dropped at once: the database is "down"
                }
                let (on_cut, ports) = (on_cut.clone(), ports.clone());
                tokio::spawn(async move {
                    let Ok(mut server) = TcpStream::connect(upstream).await else {
                        return;
                    };
                    if let Ok(local) = server.local_addr() {
                        ports.lock().unwrap().push(i32::from(local.port()));
                    }
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                        _ = on_cut.notified() => {}
                    }
                });
            }
        });
        Proxy {
            address,
            cut,
            cutting,
            upstream_ports,
        }
    }

    fn cut(&self) {
        self.cut.store(true, Ordering::SeqCst);
        self.cutting.notify_waiters();
    }

    fn restore(&self) {
        self.cut.store(false, Ordering::SeqCst);
    }

    /// Kills, on the server's side, every session opened through this proxy, as a restart
    /// of the server does; returns how many there were.
    async fn terminate_sessions(&self, admin_url: &str) -> usize {
        let ports = self.upstream_ports.lock().unwrap().clone();
        let mut admin = sqlx::PgConnection::connect(admin_url)
            .await
            .expect("the test PostgreSQL answers");
        let killed: Vec<bool> = sqlx::query_scalar(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
             WHERE client_port = ANY($1) AND pid <> pg_backend_pid()",
        )
        .bind(&ports)
        .fetch_all(&mut admin)
        .await
        .expect("sessions terminated");
        killed.into_iter().filter(|done| *done).count()
    }
}

/// A fresh schema on the test server and a proxy to it; returns the proxy and the URL that
/// reaches the schema through it.
async fn proxied_schema(base: &str) -> (Proxy, String) {
    let direct_url = fresh_postgres_schema(base).await;
    let parsed = url::Url::parse(&direct_url).unwrap();
    let upstream: SocketAddr =
        tokio::net::lookup_host((parsed.host_str().unwrap(), parsed.port().unwrap_or(5432)))
            .await
            .unwrap()
            .next()
            .unwrap();
    let proxy = Proxy::start(upstream).await;
    let mut proxied = parsed.clone();
    proxied.set_host(Some("127.0.0.1")).unwrap();
    proxied.set_port(Some(proxy.address.port())).unwrap();
    (proxy, proxied.to_string())
}

#[tokio::test]
async fn a_database_outage_answers_503_and_heals_without_a_restart() {
    let Some(base) = test_database_url() else {
        return;
    };
    let (proxy, proxied) = proxied_schema(&base).await;
    let app = TestApp::spawn_on_database(
        &proxied,
        &[
            ("HERALD_ALLOW_HTTP", "true"),
            ("HERALD_ALLOW_PRIVATE_TARGETS", "true"),
            ("HERALD_RETRY_SCHEDULE", "200ms,500ms,1s,2s,5s"),
            // A claim whose commit reply was lost in the cut stays leased until the lease
            // (timeout + 5 s) runs out; keep it short so the test sees that recovery.
            ("HERALD_DELIVERY_TIMEOUT", "2s"),
        ],
    )
    .await;
    let acme = app.partner("acme").await;
    let producer = app.producer_token().await;
    let receiver = TestReceiver::answering(200).await;
    acme.create_webhook(
        &json!({"name": "r", "url": receiver.url("/"), "event_types": ["*"], "is_active": true}),
    )
    .await;
    let mut acknowledged = Vec::new();
    for n in 0..20 {
        let (status, event) = app
            .publish(
                &producer,
                &json!({"tenant": "acme", "eventType": "a.b", "payload": {"n": n}}),
            )
            .await;
        assert_eq!(status, 201);
        acknowledged.push(event["eventId"].as_str().unwrap().to_string());
    }

    proxy.cut();
    let (status, body) = app
        .publish(
            &producer,
            &json!({"tenant": "acme", "eventType": "a.b", "payload": {}}),
        )
        .await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(
        body["message"],
        "The database is unavailable; try again shortly"
    );
    let (status, body) = read(app.client.get(app.url("/readyz")).send().await.unwrap()).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["message"], "The database is unreachable");
    let (status, _) = acme.get("/v1/webhooks/events").await;
    assert_eq!(status, 503);

    proxy.restore();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (status, _) = read(app.client.get(app.url("/readyz")).send().await.unwrap()).await;
        if status == 200 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "Herald never recovered from the outage"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (status, event) = app
        .publish(
            &producer,
            &json!({"tenant": "acme", "eventType": "a.b", "payload": {"after": true}}),
        )
        .await;
    assert_eq!(status, 201, "{event}");
    acknowledged.push(event["eventId"].as_str().unwrap().to_string());

    // Every acknowledged event is stored, and every one reaches the receiver.
    let (_, listed) = acme.get("/v1/webhooks/events?limit=100").await;
    assert_eq!(listed["total"], acknowledged.len());
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let delivered: std::collections::HashSet<String> = receiver
            .received()
            .iter()
            .map(|r| {
                serde_json::from_str::<serde_json::Value>(&r.body).unwrap()["event_id"]
                    .as_str()
                    .unwrap()
                    .to_string()
            })
            .collect();
        let missing = acknowledged
            .iter()
            .filter(|id| !delivered.contains(*id))
            .count();
        if missing == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{missing} acknowledged events were not delivered after the outage"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// What the publishers of a burst saw.
#[derive(Default)]
struct Tally {
    /// eventIds answered 201.
    acknowledged: Mutex<Vec<String>>,
    acknowledged_count: AtomicUsize,
    /// Publishes answered 503 (the database was gone).
    refused: AtomicUsize,
    /// Publishes with no answer at all.
    unanswered: AtomicUsize,
}

/// PostgreSQL restarted mid-burst, as Herald sees it: every session is killed on the
/// server's side and no connection is accepted until the server is back. Publishes meanwhile
/// are refused with 503 (not acknowledged); every event acknowledged before, during or after
/// is stored and delivered.
#[tokio::test]
async fn a_postgres_restart_mid_burst_loses_no_acknowledged_event() {
    let Some(base) = test_database_url() else {
        return;
    };
    let (proxy, proxied) = proxied_schema(&base).await;
    let app = TestApp::spawn_on_database(
        &proxied,
        &[
            ("HERALD_ALLOW_HTTP", "true"),
            ("HERALD_ALLOW_PRIVATE_TARGETS", "true"),
            ("HERALD_RETRY_SCHEDULE", "200ms,500ms,1s,2s,5s"),
            // Claims whose commit reply was lost stay leased for the timeout plus 5 s.
            ("HERALD_DELIVERY_TIMEOUT", "2s"),
        ],
    )
    .await;
    let acme = app.partner("acme").await;
    let producer = app.producer_token().await;
    let receiver = TestReceiver::answering(200).await;
    acme.create_webhook(
        &json!({"name": "r", "url": receiver.url("/"), "event_types": ["*"], "is_active": true}),
    )
    .await;

    let tally = Arc::new(Tally::default());
    let stop = Arc::new(AtomicBool::new(false));
    let mut publishers = JoinSet::new();
    for _ in 0..16 {
        let (tally, stop, client) = (tally.clone(), stop.clone(), app.client.clone());
        let (url, producer) = (app.url("/v1/events"), producer.clone());
        publishers.spawn(async move {
            let started = Instant::now();
            while !stop.load(Ordering::SeqCst) {
                assert!(
                    started.elapsed() < Duration::from_secs(60),
                    "the burst never ended"
                );
                let id = uuid::Uuid::new_v4().to_string();
                let sent = client
                    .post(&url)
                    .bearer_auth(&producer)
                    .json(&json!({"tenant": "acme", "eventType": "a.b", "eventId": id,
                                  "payload": {"n": 1}}))
                    .send()
                    .await;
                match sent.map(|response| response.status().as_u16()) {
                    Ok(201) => {
                        tally.acknowledged.lock().unwrap().push(id);
                        tally.acknowledged_count.fetch_add(1, Ordering::SeqCst);
                    }
                    Ok(503) => {
                        tally.refused.fetch_add(1, Ordering::SeqCst);
                    }
                    Ok(other) => panic!("publish of {id} answered {other}"),
                    Err(_) => {
                        tally.unanswered.fetch_add(1, Ordering::SeqCst);
                    }
                }
            }
        });
    }
    let acknowledged = || tally.acknowledged_count.load(Ordering::SeqCst);
    let refused = || tally.refused.load(Ordering::SeqCst);
    wait_for("300 events acknowledged before the restart", || {
        acknowledged() >= 300
    })
    .await;

    // The restart: every session killed by the server, then no connection accepted until
    // publishes have been refused for a while.
    let killed = proxy.terminate_sessions(&base).await;
    assert!(killed > 0, "Herald had sessions open");
    proxy.cut();
    let refused_before = refused();
    wait_for("publishes refused while the database is down", || {
        refused() >= refused_before + 50
    })
    .await;
    proxy.restore();
    let after_restart = acknowledged();
    wait_for("300 events acknowledged after the restart", || {
        acknowledged() >= after_restart + 300
    })
    .await;
    stop.store(true, Ordering::SeqCst);
    while let Some(result) = publishers.join_next().await {
        result.expect("publisher");
    }
    let acknowledged: Vec<String> = tally.acknowledged.lock().unwrap().clone();
    eprintln!(
        "restart with {killed} sessions killed: {} acknowledged, {} refused with 503, {} \
         unanswered",
        acknowledged.len(),
        refused(),
        tally.unanswered.load(Ordering::SeqCst)
    );

    // Every acknowledged event is stored and reaches the receiver.
    let mut missing = Vec::new();
    for id in &acknowledged {
        let (status, body) = acme.get(&format!("/v1/webhooks/events/{id}/status")).await;
        if status != 200 {
            missing.push(format!("{id}: {status} {body}"));
        }
    }
    assert!(
        missing.is_empty(),
        "{} acknowledged events were lost, e.g. {:?}",
        missing.len(),
        &missing[..missing.len().min(5)]
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let delivered: HashSet<String> = receiver
            .received()
            .iter()
            .map(|r| {
                serde_json::from_str::<Value>(&r.body).unwrap()["event_id"]
                    .as_str()
                    .unwrap()
                    .to_string()
            })
            .collect();
        let undelivered = acknowledged
            .iter()
            .filter(|id| !delivered.contains(*id))
            .count();
        if undelivered == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{undelivered} of {} acknowledged events were not delivered after the restart",
            acknowledged.len()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Polls `done` until it holds, for at most 30 s.
async fn wait_for(what: &str, done: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !done() {
        assert!(Instant::now() < deadline, "never: {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
