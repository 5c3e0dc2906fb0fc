//! The HTTP edge against slow and hostile clients: request head, body and idle timeouts, the
//! connection cap, and shutdown beside idle connections. Raw TCP where a client must
//! misbehave; on SQLite (the store plays no part).

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::helpers::TestApp;

/// Waits for the server to close `stream`; returns the bytes it sent before closing and
/// when it closed. Fails after `within`.
async fn closed_by_server(stream: &mut TcpStream, within: Duration) -> (Vec<u8>, Instant) {
    let mut received = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return (received, Instant::now()),
            Ok(Ok(n)) => received.extend_from_slice(&buf[..n]),
            Err(_) => panic!(
                "the connection is still open after {within:?}; received {:?}",
                String::from_utf8_lossy(&received)
            ),
        }
    }
}

/// Reads one HTTP/1.1 response (with a Content-Length) from `stream`: status and body.
async fn read_response(stream: &mut TcpStream) -> (u16, String) {
    let mut data = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        if let Some(end) = data.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&data[..end]).to_string();
            let length: usize = head
                .lines()
                .find_map(|line| {
                    let (name, value) = line.split_once(':')?;
                    name.eq_ignore_ascii_case("content-length")
                        .then(|| value.trim().parse().ok())?
                })
                .unwrap_or(0);
            if data.len() >= end + 4 + length {
                let status = head[9..12].parse().unwrap();
                let body = String::from_utf8_lossy(&data[end + 4..end + 4 + length]).to_string();
                return (status, body);
            }
        }
        let n = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut buf))
            .await
            .expect("a response within 10 s")
            .unwrap();
        assert!(
            n > 0,
            "closed mid-response: {:?}",
            String::from_utf8_lossy(&data)
        );
        data.extend_from_slice(&buf[..n]);
    }
}

const HEALTHZ: &[u8] = b"GET /healthz HTTP/1.1\r\nHost: herald\r\n\r\n";

#[tokio::test]
async fn a_connection_that_drips_or_withholds_its_request_head_is_closed_after_the_header_timeout()
{
    let app = TestApp::spawn_with(&[("HERALD_HTTP_HEADER_TIMEOUT", "1s")]).await;

    let mut silent = TcpStream::connect(app.address).await.unwrap();
    let opened = Instant::now();
    let mut dripping = TcpStream::connect(app.address).await.unwrap();
    dripping
        .write_all(b"GET /healthz HTTP/1.1\r\n")
        .await
        .unwrap();
    // A header line every 300 ms, for longer than the timeout.
    let dripper = tokio::spawn(async move {
        let mut lines = 0;
        let mut buf = [0u8; 1024];
        loop {
            tokio::select! {
                read = dripping.read(&mut buf) => match read {
                    Ok(0) | Err(_) => return (Instant::now(), lines),
                    Ok(n) => panic!("answered: {:?}", String::from_utf8_lossy(&buf[..n])),
                },
                _ = tokio::time::sleep(Duration::from_millis(300)) => {
                    if dripping.write_all(b"X-Drip: 1\r\n").await.is_err() {
                        return (Instant::now(), lines);
                    }
                    lines += 1;
                    assert!(lines < 30, "still open after {lines} lines");
                }
            }
        }
    });
    // Nothing but the header timeout closes these (the drip stops after 30 lines, 9 s): the
    // deadline of 10 s only bounds the test; closing no earlier than the timeout is the claim.
    let (silent_said, silent_closed) = closed_by_server(&mut silent, Duration::from_secs(10)).await;
    assert!(silent_said.is_empty());
    let (drip_closed, lines) = dripper.await.unwrap();
    assert!(lines >= 2, "only {lines} lines were sent");
    for closed in [silent_closed, drip_closed] {
        let after = closed - opened;
        assert!(
            after >= Duration::from_millis(900),
            "closed after {after:?}"
        );
    }
}

#[tokio::test]
async fn a_keep_alive_connection_waits_out_the_idle_timeout_not_the_header_timeout() {
    // The two timeouts are told apart by their lengths, so they are far apart: 1 s and 5 s.
    let app = TestApp::spawn_with(&[
        ("HERALD_HTTP_HEADER_TIMEOUT", "1s"),
        ("HERALD_HTTP_IDLE_TIMEOUT", "5s"),
    ])
    .await;
    let mut stream = TcpStream::connect(app.address).await.unwrap();
    stream.write_all(HEALTHZ).await.unwrap();
    assert_eq!(read_response(&mut stream).await.0, 200);
    // Idle for twice the header timeout: the connection still serves the next request.
    tokio::time::sleep(Duration::from_secs(2)).await;
    stream.write_all(HEALTHZ).await.unwrap();
    assert_eq!(read_response(&mut stream).await.0, 200);
    let answered = Instant::now();
    let (said, closed) = closed_by_server(&mut stream, Duration::from_secs(15)).await;
    assert!(said.is_empty());
    let idle = closed - answered;
    assert!(
        idle >= Duration::from_millis(4_900),
        "closed after {idle:?} idle"
    );

    // The head of a request that starts after an idle spell has the header timeout.
    let mut stream = TcpStream::connect(app.address).await.unwrap();
    stream.write_all(HEALTHZ).await.unwrap();
    assert_eq!(read_response(&mut stream).await.0, 200);
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\n")
        .await
        .unwrap();
    let started = Instant::now();
    let (said, closed) = closed_by_server(&mut stream, Duration::from_secs(10)).await;
    assert!(said.is_empty());
    // Closed by the header timeout (1 s), not the idle one (5 s): a bound between the two.
    assert!(
        closed - started < Duration::from_secs(4),
        "{:?}",
        closed - started
    );
}

#[tokio::test]
async fn a_request_body_that_arrives_too_slowly_gets_408_with_a_json_error() {
    let app = TestApp::spawn_with(&[("HERALD_HTTP_BODY_TIMEOUT", "1s")]).await;
    let acme = app.partner("acme").await;
    let producer = app.producer_token().await;
    for (path, token) in [("/v1/webhooks", &acme.token), ("/v1/events", &producer)] {
        let mut stream = TcpStream::connect(app.address).await.unwrap();
        let head = format!(
            "POST {path} HTTP/1.1\r\nHost: herald\r\nAuthorization: Bearer {token}\r\n\
             Content-Type: application/json\r\nContent-Length: 200\r\n\r\n{{\"name\": \""
        );
        stream.write_all(head.as_bytes()).await.unwrap();
        let started = Instant::now();
        // A byte every 200 ms: each arrives well within any per-read timeout, the whole
        // body never within the body timeout.
        let response = async {
            let (mut reader, mut writer) = stream.split();
            let drip = async {
                for _ in 0..40 {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    if writer.write_all(b"a").await.is_err() {
                        break;
                    }
                }
            };
            let mut data = Vec::new();
            let read = async {
                let mut buf = [0u8; 1024];
                while !String::from_utf8_lossy(&data).contains('}') {
                    let n = reader.read(&mut buf).await.unwrap();
                    assert!(n > 0, "closed without an answer");
                    data.extend_from_slice(&buf[..n]);
                }
            };
            tokio::select! {
                _ = read => {}
                _ = drip => panic!("no answer while the body dripped"),
            }
            String::from_utf8(data).unwrap()
        }
        .await;
        let elapsed = started.elapsed();
        assert!(response.starts_with("HTTP/1.1 408"), "{path}: {response}");
        assert!(
            response.contains(r#""message":"Request body did not arrive in time""#),
            "{response}"
        );
        // Not before the body timeout; that it came at all, while the body still dripped
        // (8 s more), is the select above.
        assert!(
            elapsed >= Duration::from_millis(900),
            "{path}: answered after {elapsed:?}"
        );
    }
    // Nothing was created.
    let (_, listed) = acme.get("/v1/webhooks").await;
    assert_eq!(listed, serde_json::json!([]));
}

#[tokio::test]
async fn while_300_connections_sit_silent_or_drip_bytes_other_clients_are_answered_promptly() {
    let app = TestApp::spawn_with(&[("HERALD_HTTP_HEADER_TIMEOUT", "30s")]).await;
    let acme = app.partner("acme").await;
    let mut silent = Vec::new();
    for _ in 0..150 {
        silent.push(TcpStream::connect(app.address).await.unwrap());
    }
    let stop = tokio_util::sync::CancellationToken::new();
    let mut drippers = Vec::new();
    for _ in 0..150 {
        let mut stream = TcpStream::connect(app.address).await.unwrap();
        let stop = stop.clone();
        drippers.push(tokio::spawn(async move {
            let _ = stream.write_all(b"GET /v1/webhooks HTTP/1.1\r\n").await;
            while !stop.is_cancelled() {
                if stream.write_all(b"X").await.is_err() {
                    return;
                }
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep(Duration::from_millis(500)) => {}
                }
            }
        }));
    }
    for _ in 0..20 {
        let started = Instant::now();
        // A fresh client each time: a new connection, as a new client would open.
        let response = reqwest::Client::new()
            .get(app.url("/v1/webhooks"))
            .bearer_auth(&acme.token)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        // Held up by the others, a client would wait for the 30 s header timeout to free
        // them: a bound far below it tells the two apart on any machine. How fast the answer
        // is, is the benchmark's to measure.
        let elapsed = started.elapsed();
        assert!(
            elapsed < Duration::from_secs(5),
            "answered after {elapsed:?}"
        );
    }
    stop.cancel();
    for dripper in drippers {
        dripper.await.unwrap();
    }
    drop(silent);
}

#[tokio::test]
async fn with_a_connection_cap_a_client_beyond_it_is_served_once_a_slot_frees() {
    let app = TestApp::spawn_with(&[("HERALD_MAX_CONNECTIONS", "2")]).await;
    // Two keep-alive connections hold both slots (each answered, so each was accepted).
    let mut first = TcpStream::connect(app.address).await.unwrap();
    let mut second = TcpStream::connect(app.address).await.unwrap();
    for stream in [&mut first, &mut second] {
        stream.write_all(HEALTHZ).await.unwrap();
        assert_eq!(read_response(stream).await.0, 200);
    }
    let url = app.url("/healthz");
    let third = tokio::spawn(async move {
        let response = reqwest::Client::new().get(url).send().await.unwrap();
        (response.status().as_u16(), Instant::now())
    });
    // Not answered while both slots are held.
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert!(
        !third.is_finished(),
        "a third connection was served beyond the cap"
    );
    // Both held connections still work.
    second.write_all(HEALTHZ).await.unwrap();
    assert_eq!(read_response(&mut second).await.0, 200);
    drop(first);
    let (status, _) = tokio::time::timeout(Duration::from_secs(30), third)
        .await
        .expect("the third client is served once a slot frees")
        .unwrap();
    assert_eq!(status, 200);
}

#[tokio::test]
async fn shutdown_is_not_held_up_by_connections_without_a_request_in_progress() {
    let app = TestApp::spawn_with(&[("HERALD_HTTP_HEADER_TIMEOUT", "60s")]).await;
    let mut silent = TcpStream::connect(app.address).await.unwrap();
    let mut partial = TcpStream::connect(app.address).await.unwrap();
    partial
        .write_all(b"GET /healthz HTTP/1.1\r\n")
        .await
        .unwrap();
    let mut idle = TcpStream::connect(app.address).await.unwrap();
    idle.write_all(HEALTHZ).await.unwrap();
    assert_eq!(read_response(&mut idle).await.0, 200);
    // Held up by them, the stop would wait for the 60 s header timeout: 30 s tells the two
    // apart on any machine.
    tokio::time::timeout(Duration::from_secs(30), app.stop())
        .await
        .expect("stopped well before the 60 s header timeout");
    for stream in [&mut silent, &mut partial, &mut idle] {
        let (said, _) = closed_by_server(stream, Duration::from_secs(1)).await;
        assert!(said.is_empty());
    }
}
