//! Egress: the real `herald serve` ignores the proxy variables of its environment, sends
//! every attempt through `HERALD_EGRESS_PROXY` when set, and still refuses, before the proxy
//! sees anything, a destination whose name resolves to a forbidden address.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::cli::{Herald, Server};
use crate::helpers::read;
use crate::receiver::TestReceiver;

const PROXY_VARIABLES: [&str; 6] = [
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "ALL_PROXY",
    "http_proxy",
    "https_proxy",
    "all_proxy",
];

/// A proxy that records what reaches it: each connection's request head (or what arrived of
/// it). As a forward proxy it passes absolute-form requests on to their origin; as a mere
/// recorder it answers nothing.
struct TestProxy {
    url: String,
    seen: Arc<Mutex<Vec<String>>>,
}

impl TestProxy {
    async fn start(forward: bool) -> TestProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                let log = log.clone();
                tokio::spawn(async move {
                    let _ = serve_proxy_connection(socket, forward, log).await;
                });
            }
        });
        TestProxy { url, seen }
    }

    fn seen(&self) -> Vec<String> {
        self.seen.lock().unwrap().clone()
    }
}

async fn serve_proxy_connection(
    mut client: TcpStream,
    forward: bool,
    log: Arc<Mutex<Vec<String>>>,
) -> std::io::Result<()> {
    let mut head = Vec::new();
    let mut buffer = [0u8; 4096];
    let end = loop {
        if let Some(at) = head.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
        let n = client.read(&mut buffer).await?;
        if n == 0 {
            log.lock()
                .unwrap()
                .push(String::from_utf8_lossy(&head).into_owned());
            return Ok(());
        }
        head.extend_from_slice(&buffer[..n]);
    };
    let text = String::from_utf8_lossy(&head[..end]).into_owned();
    log.lock().unwrap().push(text.clone());
    if !forward {
        return Ok(());
    }
    // "POST http://host:port/path HTTP/1.1": connect to host:port, send it in origin form.
    let request_line = text.lines().next().unwrap_or_default();
    let mut parts = request_line.split(' ');
    let (method, target, version) = (
        parts.next().unwrap_or_default(),
        parts.next().unwrap_or_default(),
        parts.next().unwrap_or_default(),
    );
    let url = url::Url::parse(target).map_err(std::io::Error::other)?;
    let authority = format!(
        "{}:{}",
        url.host_str().unwrap_or_default(),
        url.port_or_known_default().unwrap_or(80)
    );
    let mut origin = TcpStream::connect(authority).await?;
    let rest = &text[request_line.len()..];
    origin
        .write_all(format!("{method} {} {version}{rest}", url.path()).as_bytes())
        .await?;
    origin.write_all(&head[end..]).await?;
    tokio::io::copy_bidirectional(&mut client, &mut origin).await?;
    Ok(())
}

/// A SQLite Herald with tenant `acme`; its producer and partner tokens.
async fn setup() -> (Herald, String, String) {
    let herald = Herald::new();
    herald.create_tenant("acme").await;
    let (_, producer) = herald.create_token(&["--producer"]).await;
    let (_, partner) = herald.create_token(&["--tenant", "acme"]).await;
    (herald, producer, partner)
}

/// `herald serve` with `env` on top of its clean environment (no proxy variables unless
/// given).
async fn serve(herald: &Herald, env: &[(&str, &str)]) -> Server {
    let mut command = herald.command(&["serve"]);
    command.env("HERALD_LISTEN", "127.0.0.1:0");
    for name in PROXY_VARIABLES.iter().chain(&["NO_PROXY", "no_proxy"]) {
        command.env_remove(name);
    }
    for (name, value) in env {
        command.env(name, value);
    }
    let server = Server::start(command).await;
    server.wait_until_ready().await;
    server
}

async fn create_webhook(server: &Server, partner: &str, url: &str) {
    let response = server
        .client
        .post(server.url("/v1/webhooks"))
        .bearer_auth(partner)
        .json(&json!({"name": "w", "url": url, "event_types": ["*"], "is_active": true}))
        .send()
        .await
        .unwrap();
    let (status, body) = read(response).await;
    assert_eq!(status, 201, "{body}");
}

async fn publish(server: &Server, producer: &str) -> String {
    let response = server
        .client
        .post(server.url("/v1/events"))
        .bearer_auth(producer)
        .json(&json!({"tenant": "acme", "eventType": "a.b", "payload": {}}))
        .send()
        .await
        .unwrap();
    let (status, body) = read(response).await;
    assert_eq!(status, 201, "{body}");
    body["id"].as_str().unwrap().to_string()
}

/// The event's attempts once its status is `status`.
async fn logs_when(server: &Server, partner: &str, event: &str, status: &str) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let response = server
            .client
            .get(server.url(&format!("/v1/webhooks/events/{event}/logs")))
            .bearer_auth(partner)
            .send()
            .await
            .unwrap();
        let (_, body) = read(response).await;
        if body["event"]["status"] == status {
            return body["logs"].as_array().unwrap().clone();
        }
        assert!(
            Instant::now() < deadline,
            "event {event} never reached {status}: {body}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn proxy_variables_of_the_environment_are_ignored_for_deliveries() {
    let (herald, producer, partner) = setup().await;
    let trap = TestProxy::start(false).await;
    let mut env: Vec<(&str, &str)> = vec![
        ("HERALD_ALLOW_HTTP", "true"),
        ("HERALD_ALLOW_PRIVATE_TARGETS", "true"),
    ];
    env.extend(
        PROXY_VARIABLES
            .iter()
            .map(|name| (*name, trap.url.as_str())),
    );
    let server = serve(&herald, &env).await;
    let receiver = TestReceiver::answering(200).await;
    create_webhook(&server, &partner, &receiver.url("/hook")).await;

    let event = publish(&server, &producer).await;
    receiver.wait_for(1, Duration::from_secs(10)).await;
    logs_when(&server, &partner, &event, "completed").await;
    assert!(trap.seen().is_empty(), "{:?}", trap.seen());
}

#[tokio::test]
async fn every_attempt_goes_through_the_egress_proxy_when_one_is_set() {
    let (herald, producer, partner) = setup().await;
    let proxy = TestProxy::start(true).await;
    let server = serve(
        &herald,
        &[
            ("HERALD_ALLOW_HTTP", "true"),
            ("HERALD_ALLOW_PRIVATE_TARGETS", "true"),
            ("HERALD_EGRESS_PROXY", &proxy.url),
        ],
    )
    .await;
    let receiver = TestReceiver::answering(200).await;
    let hook = receiver.url("/hook");
    create_webhook(&server, &partner, &hook).await;

    let event = publish(&server, &producer).await;
    let received = receiver.wait_for(1, Duration::from_secs(10)).await;
    assert_eq!(received[0].path, "/hook");
    logs_when(&server, &partner, &event, "completed").await;
    let seen = proxy.seen();
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert!(
        seen[0].starts_with(&format!("POST {hook} HTTP/1.1")),
        "{seen:?}"
    );
}

#[tokio::test]
async fn an_https_destination_is_asked_for_with_connect_through_the_egress_proxy() {
    let (herald, producer, partner) = setup().await;
    // A recorder: it reads the CONNECT and answers nothing, so the attempt fails after it.
    let proxy = TestProxy::start(false).await;
    let server = serve(
        &herald,
        &[
            ("HERALD_ALLOW_PRIVATE_TARGETS", "true"),
            ("HERALD_DELIVERY_TIMEOUT", "1s"),
            ("HERALD_RETRY_SCHEDULE", "1m"),
            ("HERALD_EGRESS_PROXY", &proxy.url),
        ],
    )
    .await;
    create_webhook(&server, &partner, "https://127.0.0.1:9/hook").await;

    publish(&server, &producer).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while proxy.seen().is_empty() {
        assert!(Instant::now() < deadline, "the proxy saw nothing");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let seen = proxy.seen();
    assert!(
        seen[0].starts_with("CONNECT 127.0.0.1:9 HTTP/1.1"),
        "{seen:?}"
    );
}

#[tokio::test]
async fn through_the_egress_proxy_a_name_resolving_to_loopback_is_refused_before_the_proxy_sees_it()
{
    let (herald, producer, partner) = setup().await;
    let proxy = TestProxy::start(true).await;
    let receiver = TestReceiver::answering(200).await;
    let port = receiver.base.rsplit(':').next().unwrap().to_string();
    // The API refuses `localhost`; stored directly, as if the name had resolved elsewhere
    // when the webhook was created.
    let store = herald::store::connect(&herald.database_url).await.unwrap();
    store
        .create_webhook(
            herald::store::NewWebhook {
                id: herald::domain::ids::WebhookId::generate(),
                tenant: "acme".into(),
                name: "internal".into(),
                url: format!("http://localhost:{port}/hook"),
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
    let server = serve(
        &herald,
        &[
            ("HERALD_ALLOW_HTTP", "true"),
            ("HERALD_EGRESS_PROXY", &proxy.url),
        ],
    )
    .await;

    let event = publish(&server, &producer).await;
    let logs = logs_when(&server, &partner, &event, "failed").await;
    assert_eq!(logs.len(), 1, "a refusal is final: {logs:?}");
    let message = logs[0]["errorMessage"].as_str().unwrap();
    assert!(message.contains("not allowed"), "{message}");
    assert!(
        !message.contains("127.0.0.1") && !message.contains("::1"),
        "{message}"
    );
    assert_eq!(logs[0]["responseStatus"], Value::Null);
    assert!(proxy.seen().is_empty(), "{:?}", proxy.seen());
    assert!(receiver.received().is_empty());
    // The operator's log keeps what the partner is not told.
    let log = server.stderr();
    let refused = log
        .lines()
        .find(|line| line.contains("destination refused"))
        .unwrap_or_else(|| panic!("no refusal logged:\n{log}"));
    assert!(
        refused.contains("127.0.0.1") || refused.contains("::1"),
        "{refused}"
    );
}
