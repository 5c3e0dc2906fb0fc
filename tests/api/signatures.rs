//! The signature-verification examples (Python, Node, Rust) verify a real delivery, refuse a
//! tampered one, and are quoted in `docs/signatures.md` exactly as tested.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use serde_json::{Value, json};

#[path = "../../examples/verify_signature.rs"]
#[allow(dead_code)]
mod rust_example;

use crate::helpers::TestApp;
use crate::receiver::{Received, TestReceiver};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// One real delivery and the webhook's secrets.
async fn a_real_delivery() -> (Received, Value) {
    let app = TestApp::spawn_with(&[
        ("HERALD_ALLOW_HTTP", "true"),
        ("HERALD_ALLOW_PRIVATE_TARGETS", "true"),
    ])
    .await;
    let acme = app.partner("acme").await;
    let producer = app.producer_token().await;
    let receiver = TestReceiver::answering(200).await;
    let webhook = acme
        .create_webhook(&json!({"name": "r", "url": receiver.url("/"), "event_types": ["*"], "is_active": true}))
        .await;
    app.publish(
        &producer,
        &json!({"tenant": "acme", "eventType": "a.b", "payload": {"note": "héllo \"quoted\""}}),
    )
    .await;
    let request = receiver
        .wait_for(1, Duration::from_secs(10))
        .await
        .remove(0);
    (request, webhook)
}

fn fixture(request: &Received, webhook: &Value, body: &str) -> Value {
    json!({
        "headers": request.headers,
        "body": body,
        "apiKey": webhook["apiKey"],
        "signingSecret": webhook["signingSecret"],
    })
}

/// Runs `program example fixture`; `None` (with a loud skip) when the program is missing.
fn run_example(program: &str, example: &str, fixture: &Value) -> Option<bool> {
    if Command::new(program).arg("--version").output().is_err() {
        eprintln!("SKIPPED: {program} is not installed, so its example is not run");
        return None;
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("fixture.json");
    std::fs::write(&path, fixture.to_string()).unwrap();
    let output = Command::new(program)
        .arg(Path::new(ROOT).join(example))
        .arg(&path)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout).trim().to_string();
    assert_eq!(
        stdout,
        if output.status.success() {
            "valid"
        } else {
            "invalid"
        },
        "{program} {example}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    Some(output.status.success())
}

#[tokio::test]
async fn the_python_and_node_examples_verify_a_real_delivery_and_refuse_a_tampered_one() {
    let (request, webhook) = a_real_delivery().await;
    let genuine = fixture(&request, &webhook, &request.body);
    let tampered = fixture(&request, &webhook, &request.body.replace("héllo", "hello"));
    for (program, example) in [
        ("python3", "examples/verify/verify.py"),
        ("node", "examples/verify/verify.js"),
    ] {
        if let Some(valid) = run_example(program, example, &genuine) {
            assert!(valid, "{example} refused a genuine delivery");
            assert_eq!(
                run_example(program, example, &tampered),
                Some(false),
                "{example} accepted a tampered body"
            );
        }
    }
}

#[tokio::test]
async fn the_rust_example_verifies_a_real_delivery_and_refuses_a_tampered_one() {
    let (request, webhook) = a_real_delivery().await;
    let api_key = webhook["apiKey"].as_str().unwrap();
    let secret = webhook["signingSecret"].as_str().unwrap();
    let body = request.body.as_bytes();
    let (ts, signature) = (request.header("x-timestamp"), request.header("x-signature"));
    assert!(rust_example::verify_herald(ts, signature, body, api_key));
    assert!(!rust_example::verify_herald(ts, signature, b"{}", api_key));
    let (id, wts, signatures) = (
        request.header("webhook-id"),
        request.header("webhook-timestamp"),
        request.header("webhook-signature"),
    );
    assert!(rust_example::verify_standard(
        id, wts, signatures, body, secret
    ));
    assert!(!rust_example::verify_standard(
        id, wts, signatures, b"{}", secret
    ));
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    assert!(rust_example::is_fresh(ts, now, 300));
}

#[test]
fn the_signature_docs_quote_each_example_exactly() {
    let docs = std::fs::read_to_string(Path::new(ROOT).join("docs/signatures.md")).unwrap();
    for example in [
        "examples/verify/verify.py",
        "examples/verify/verify.js",
        "examples/verify_signature.rs",
    ] {
        let source = std::fs::read_to_string(Path::new(ROOT).join(example)).unwrap();
        let start = source.find("docs:start").expect("start marker");
        let start = source[start..].find('\n').unwrap() + start + 1;
        let end = source.rfind("docs:end").expect("end marker");
        let end = source[..end].rfind('\n').unwrap() + 1;
        let quoted = &source[start..end];
        assert!(
            docs.contains(quoted),
            "docs/signatures.md does not quote {example} exactly:\n{quoted}"
        );
    }
}
