//! Partners that answer badly (a huge body, bytes that are not HTTP, a reset mid-body, a
//! trickle, a NUL in the body) each cost one failed attempt and nothing else: the raw TCP
//! partners here misbehave on purpose, and a healthy webhook next to them is served at once.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::delivery_limits::{dev_app, logs_of, publish, subscribe};
use crate::receiver::TestReceiver;

/// How a raw TCP partner answers each connection, after reading the request head.
#[derive(Clone, Copy)]
enum Misbehaviour {
    /// A 500 whose body is 64 MiB.
    Huge,
    /// Bytes that are not HTTP, then a close.
    Garbage,
    /// A 200 promising 100,000 bytes, a few of them, then a reset.
    ResetMidBody,
    /// A 200 sent one byte a second.
    Trickle,
    /// A 400 whose body holds a NUL and an invalid UTF-8 byte.
    Nul,
}

/// A partner speaking raw TCP; counts the bytes it managed to write and whether it is done.
struct RawPartner {
    base: String,
    written: Arc<AtomicUsize>,
    done: Arc<AtomicBool>,
}

const HUGE: usize = 64 * 1024 * 1024;

impl RawPartner {
    async fn start(behaviour: Misbehaviour) -> RawPartner {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let written = Arc::new(AtomicUsize::new(0));
        let done = Arc::new(AtomicBool::new(false));
        let (count, finished) = (written.clone(), done.clone());
        tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                let (count, finished) = (count.clone(), finished.clone());
                tokio::spawn(async move {
                    misbehave(socket, behaviour, &count).await;
                    finished.store(true, Ordering::SeqCst);
                });
            }
        });
        RawPartner {
            base,
            written,
            done,
        }
    }

    async fn wait_done(&self, within: Duration) {
        let deadline = Instant::now() + within;
        while !self.done.load(Ordering::SeqCst) {
            assert!(Instant::now() < deadline, "the partner never finished");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

async fn misbehave(mut socket: TcpStream, behaviour: Misbehaviour, written: &AtomicUsize) {
    let mut head = Vec::new();
    let mut buffer = [0u8; 4096];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        match socket.read(&mut buffer).await {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&buffer[..n]),
        }
    }
    match behaviour {
        Misbehaviour::Huge => {
            let head =
                format!("HTTP/1.1 500 Internal Server Error\r\nContent-Length: {HUGE}\r\n\r\n");
            if socket.write_all(head.as_bytes()).await.is_err() {
                return;
            }
            let chunk = vec![b'x'; 64 * 1024];
            while written.load(Ordering::SeqCst) < HUGE {
                match socket.write(&chunk).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => {
                        written.fetch_add(n, Ordering::SeqCst);
                    }
                }
            }
        }
        Misbehaviour::Garbage => {
            let _ = socket
                .write_all(b"\x00\xffTHIS IS NOT HTTP\r\n\r\n\x01\x02")
                .await;
        }
        Misbehaviour::ResetMidBody => {
            let _ = socket
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\npartial")
                .await;
            let _ = socket.flush().await;
            // Give Herald the head before the reset, so the reset lands mid-body.
            tokio::time::sleep(Duration::from_millis(200)).await;
            let _ = socket.set_zero_linger();
        }
        Misbehaviour::Trickle => {
            for byte in b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok" {
                if socket.write_all(&[*byte]).await.is_err() {
                    return;
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
        Misbehaviour::Nul => {
            let body = b"bad\x00byte\xff";
            let head = format!(
                "HTTP/1.1 400 Bad Request\r\nContent-Length: {}\r\n\r\n",
                body.len()
            );
            let _ = socket.write_all(head.as_bytes()).await;
            let _ = socket.write_all(body).await;
            // Wait for Herald to close, so the answer is read whole.
            let _ = socket.read(&mut buffer).await;
        }
    }
}

#[tokio::test]
async fn partners_that_answer_badly_cost_one_failed_attempt_each_and_nothing_else() {
    let Some(app) = dev_app(&[
        // The trickle's attempt lasts this long: the healthy delivery arriving before it
        // ended shows it did not wait for it.
        ("HERALD_DELIVERY_TIMEOUT", "5s"),
        ("HERALD_RETRY_SCHEDULE", "1m"),
        ("HERALD_MAX_WEBHOOKS_PER_TENANT", "10"),
    ])
    .await
    else {
        return;
    };
    let acme = app.partner("acme").await;
    let producer = app.producer_token().await;
    let healthy = TestReceiver::answering(200).await;
    let mut partners = Vec::new();
    for behaviour in [
        Misbehaviour::Huge,
        Misbehaviour::Garbage,
        Misbehaviour::ResetMidBody,
        Misbehaviour::Trickle,
        Misbehaviour::Nul,
    ] {
        let partner = RawPartner::start(behaviour).await;
        let webhook = subscribe(&acme, &format!("{}/hook", partner.base)).await;
        partners.push((behaviour, partner, webhook));
    }
    let healthy_webhook = subscribe(&acme, &healthy.url("/hook")).await;

    publish(&app, &producer, "acme").await;
    healthy.wait_for(1, Duration::from_secs(30)).await;
    let trickle = &partners[3];
    assert!(matches!(trickle.0, Misbehaviour::Trickle));
    assert!(
        !trickle.1.done.load(Ordering::SeqCst),
        "the healthy delivery waited for the trickle's attempt to end"
    );

    for (behaviour, partner, webhook) in &partners {
        let logs = logs_of(&acme, webhook, 1, Duration::from_secs(30)).await;
        assert_eq!(logs.len(), 1, "one attempt: {logs:?}");
        let log = &logs[0];
        assert_eq!(log["deliveryStatus"], "failed", "{log}");
        let error = log["errorMessage"].as_str().unwrap_or_default();
        match behaviour {
            Misbehaviour::Huge => {
                assert_eq!(log["responseStatus"], 500, "{log}");
                let body = log["responseBody"].as_str().unwrap();
                assert_eq!(body.len(), 64 * 1024);
                assert!(body.bytes().all(|b| b == b'x'));
                // Herald stopped reading at the limit: the partner could not push it all.
                partner.wait_done(Duration::from_secs(10)).await;
                let sent = partner.written.load(Ordering::SeqCst);
                assert!(sent < HUGE / 2, "the partner wrote {sent} bytes");
            }
            Misbehaviour::Garbage => {
                assert_eq!(log["responseStatus"], Value::Null, "{log}");
                assert!(error.starts_with("Request failed"), "{log}");
            }
            Misbehaviour::ResetMidBody => {
                assert_eq!(log["responseStatus"], 200, "{log}");
                assert!(error.starts_with("Response body incomplete"), "{log}");
                assert!(
                    log["nextRetryAt"].is_string(),
                    "a cut reply is retried: {log}"
                );
            }
            Misbehaviour::Trickle => {
                assert_eq!(error, "Request timed out after 5000 ms", "{log}");
                assert!(log["nextRetryAt"].is_string(), "{log}");
            }
            Misbehaviour::Nul => {
                assert_eq!(log["responseStatus"], 400, "{log}");
                assert_eq!(log["responseBody"], "bad\u{FFFD}byte\u{FFFD}", "{log}");
            }
        }
    }
    let logs = logs_of(&acme, &healthy_webhook, 1, Duration::from_secs(5)).await;
    assert_eq!(logs[0]["deliveryStatus"], "success", "{logs:?}");

    // Nothing was left behind: no delivery is still claimed, and the next event reaches the
    // healthy endpoint (at once, woken as `dispatch.rs` shows; not waiting for any slot).
    let queue = app.store.queue_depth().await.expect("queue depth");
    assert_eq!(queue.in_flight, 0);
    publish(&app, &producer, "acme").await;
    healthy.wait_for(2, Duration::from_secs(30)).await;
}
