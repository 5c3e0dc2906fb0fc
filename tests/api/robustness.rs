//! Bad input gets a clear 4xx and loses nothing: odd bodies, encodings and paths on every
//! route never produce a 5xx or bring the server down.

use reqwest::Method;
use serde_json::json;

use crate::helpers::read;

#[tokio::test]
async fn odd_input_on_every_route_gets_a_4xx_json_error() {
    let Some(app) = super::spawn(&[]).await else {
        return;
    };
    let acme = app.partner("acme").await;
    let producer = app.producer_token().await;
    let webhook = acme
        .create_webhook(
            &json!({"name": "w", "url": "https://hooks.example.com/w", "event_types": ["*"]}),
        )
        .await;
    let (_, event) = app
        .publish(
            &producer,
            &json!({"tenant": "acme", "eventType": "a.b", "payload": {}}),
        )
        .await;
    let (w, e) = (
        webhook["id"].as_str().unwrap(),
        event["id"].as_str().unwrap(),
    );
    let routes = [
        (Method::POST, "/v1/webhooks".to_string(), &acme.token),
        (Method::PUT, format!("/v1/webhooks/{w}"), &acme.token),
        (
            Method::POST,
            format!("/v1/webhooks/{w}/rotate-key"),
            &acme.token,
        ),
        (
            Method::POST,
            format!("/v1/webhooks/events/{e}/retry"),
            &acme.token,
        ),
        (Method::POST, "/v1/events".to_string(), &producer),
        (Method::POST, "/v1/events/batch".to_string(), &producer),
    ];
    let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
    let bodies: Vec<Vec<u8>> = vec![
        b"".to_vec(),
        b"null".to_vec(),
        b"[]".to_vec(),
        b"\"text\"".to_vec(),
        b"123456789012345678901234567890".to_vec(),
        vec![0xff, 0xfe, 0x00, 0x7b],
        b"{\"name\": \"\\ud800\"}".to_vec(),
        b"{\"a\":1,\"a\":2}".to_vec(),
        deep.into_bytes(),
        b"{\"events\": [null, 1, \"x\", []], \"tenant\": {}}".to_vec(),
        b"{\"payload\": {\"k\": 1e999}}".to_vec(),
    ];
    for (method, path, token) in &routes {
        for body in &bodies {
            let response = app
                .request(method.clone(), path, token)
                .header("content-type", "application/json")
                .body(body.clone())
                .send()
                .await
                .unwrap();
            let status = response.status().as_u16();
            let text = response.text().await.unwrap();
            assert!(
                status < 500,
                "{method} {path} with {:?}: {status} {text}",
                String::from_utf8_lossy(body)
            );
            if status >= 400 {
                let parsed: serde_json::Value = serde_json::from_str(&text).unwrap();
                assert!(parsed["message"].is_string(), "{text}");
            }
        }
    }
    for path in [
        "/v1/webhooks/%00",
        "/v1/webhooks/events/%ff/status",
        "/v1/webhooks/events?limit=%ff&status=%00",
        "/v1/webhooks/../../etc/passwd",
    ] {
        let (status, body) = read(
            app.request(Method::GET, path, &acme.token)
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert!((400..500).contains(&status), "{path}: {status} {body}");
    }
    // Still serving, and nothing of acme was changed by any of it.
    let (status, list) = acme.get("/v1/webhooks").await;
    assert_eq!(status, 200);
    assert_eq!(list[0]["name"], "w");
}
