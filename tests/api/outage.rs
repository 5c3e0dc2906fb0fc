//! A PostgreSQL outage: Herald reaches the database through a proxy the test can cut. While
//! it is cut the API answers 503 with a clear message and `/readyz` says so; once it is back,
//! Herald serves again without a restart, and nothing acknowledged is lost.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde_json::json;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;

use crate::helpers::{TestApp, fresh_postgres_schema, read, test_database_url};
use crate::receiver::TestReceiver;

/// A TCP proxy to the database that can be cut (every connection dropped, new ones refused)
/// and restored.
struct Proxy {
    address: SocketAddr,
    cut: Arc<AtomicBool>,
    cutting: Arc<Notify>,
}

impl Proxy {
    async fn start(upstream: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let cut = Arc::new(AtomicBool::new(false));
        let cutting = Arc::new(Notify::new());
        let (is_cut, on_cut) = (cut.clone(), cutting.clone());
        tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                if is_cut.load(Ordering::SeqCst) {
                    continue; // dropped at once: the database is "down"
                }
                let on_cut = on_cut.clone();
                tokio::spawn(async move {
                    let Ok(mut server) = TcpStream::connect(upstream).await else {
                        return;
                    };
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
        }
    }

    fn cut(&self) {
        self.cut.store(true, Ordering::SeqCst);
        self.cutting.notify_waiters();
    }

    fn restore(&self) {
        self.cut.store(false, Ordering::SeqCst);
    }
}

#[tokio::test]
async fn a_database_outage_answers_503_and_heals_without_a_restart() {
    let Some(base) = test_database_url() else {
        return;
    };
    let direct_url = fresh_postgres_schema(&base).await;
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
    let app = TestApp::spawn_on_database(
        proxied.as_str(),
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
