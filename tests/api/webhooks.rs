//! Creating partner webhooks: the answer's shape, the key shown once and masked after, the
//! per-tenant cap, and validation of the body.

use base64::Engine;
use serde_json::{Value, json};

use crate::helpers::{assert_error, webhook_body};

fn assert_timestamp(value: &Value) {
    let text = value
        .as_str()
        .unwrap_or_else(|| panic!("timestamp expected, got {value}"));
    assert_eq!(text.len(), 24, "{text}");
    assert!(text.ends_with('Z') && text.as_bytes()[19] == b'.', "{text}");
    assert!(
        herald::domain::time::parse_iso8601_ms(text).is_some(),
        "{text}"
    );
}

#[tokio::test]
async fn creating_a_webhook_returns_the_full_key_and_signing_secret_once() {
    let Some(app) = super::spawn(&[]).await else {
        return;
    };
    let acme = app.partner("acme").await;
    let (status, body) = acme
        .post(
            "/v1/webhooks",
            &json!({"name": "KYC", "url": "https://hooks.example.com/kyc", "event_types": ["kyc.status.changed", "card.*"], "metadata": {"team": "risk"}}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["success"], true);
    let data = &body["data"];
    let keys: Vec<&str> = data
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        keys,
        [
            "id",
            "tenant",
            "name",
            "url",
            "apiKey",
            "signingSecret",
            "eventTypes",
            "isActive",
            "metadata",
            "createdAt",
            "updatedAt"
        ]
    );
    assert!(uuid::Uuid::parse_str(data["id"].as_str().unwrap()).is_ok());
    assert_eq!(data["tenant"], "acme");
    assert_eq!(data["name"], "KYC");
    assert_eq!(data["url"], "https://hooks.example.com/kyc");
    assert_eq!(data["eventTypes"], json!(["kyc.status.changed", "card.*"]));
    assert_eq!(data["isActive"], false, "is_active defaults to false");
    assert_eq!(data["metadata"], json!({"team": "risk"}));
    let api_key = data["apiKey"].as_str().unwrap();
    let random = api_key.strip_prefix("whk_").expect("whk_ prefix");
    assert_eq!(random.len(), 64);
    assert!(
        random
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
    );
    let secret = data["signingSecret"].as_str().unwrap();
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(secret.strip_prefix("whsec_").unwrap())
        .unwrap();
    assert_eq!(decoded, api_key.as_bytes());
    assert_timestamp(&data["createdAt"]);
    assert_eq!(data["createdAt"], data["updatedAt"]);

    // Everywhere else the key is masked and the secret absent.
    let masked = format!("whk_****...****{}", &api_key[api_key.len() - 4..]);
    let (status, list) = acme.get("/v1/webhooks").await;
    assert_eq!(status, 200);
    assert_eq!(list.as_array().unwrap().len(), 1);
    assert_eq!(list[0]["apiKey"], masked.as_str());
    assert!(list[0].get("signingSecret").is_none());
    let (status, one) = acme
        .get(&format!("/v1/webhooks/{}", data["id"].as_str().unwrap()))
        .await;
    assert_eq!(status, 200);
    assert_eq!(one["apiKey"], masked.as_str());
    assert!(one.get("signingSecret").is_none());
    assert_eq!(one["metadata"], json!({"team": "risk"}));
}

#[tokio::test]
async fn metadata_is_an_empty_object_when_unset_and_is_active_can_be_set() {
    let Some(app) = super::spawn(&[]).await else {
        return;
    };
    let acme = app.partner("acme").await;
    let mut body = webhook_body("a", &["*"]);
    body["is_active"] = json!(true);
    let data = acme.create_webhook(&body).await;
    assert_eq!(data["metadata"], json!({}));
    assert_eq!(data["isActive"], true);
}

#[tokio::test]
async fn the_sixth_webhook_is_refused_with_the_exact_message() {
    let Some(app) = super::spawn(&[]).await else {
        return;
    };
    let acme = app.partner("acme").await;
    for i in 0..5 {
        acme.create_webhook(&webhook_body(&format!("w{i}"), &["*"]))
            .await;
    }
    let refused = acme.post("/v1/webhooks", &webhook_body("w5", &["*"])).await;
    assert_error(
        &refused,
        400,
        "Maximum webhook limit (5) reached for this tenant",
    );
    // Another tenant has its own allowance.
    let other = app.partner("other").await;
    other.create_webhook(&webhook_body("x", &["*"])).await;
}

#[tokio::test]
async fn the_webhook_cap_comes_from_configuration_and_counts_inactive_ones() {
    let Some(app) = super::spawn(&[("HERALD_MAX_WEBHOOKS_PER_TENANT", "2")]).await else {
        return;
    };
    let acme = app.partner("acme").await;
    acme.create_webhook(&webhook_body("a", &["*"])).await;
    acme.create_webhook(&webhook_body("b", &["*"])).await;
    let refused = acme.post("/v1/webhooks", &webhook_body("c", &["*"])).await;
    assert_error(
        &refused,
        400,
        "Maximum webhook limit (2) reached for this tenant",
    );
    // Deleting one frees a place.
    let (_, list) = acme.get("/v1/webhooks").await;
    let id = list[0]["id"].as_str().unwrap();
    assert_eq!(acme.delete(&format!("/v1/webhooks/{id}")).await.0, 200);
    acme.create_webhook(&webhook_body("c", &["*"])).await;
}

#[tokio::test]
async fn invalid_create_bodies_get_a_400_naming_the_field() {
    let Some(app) = super::spawn(&[]).await else {
        return;
    };
    let acme = app.partner("acme").await;
    let url = "https://hooks.example.com/x";
    let cases = [
        (
            json!({"url": url, "event_types": ["a"]}),
            "name is required",
        ),
        (
            json!({"name": "n", "event_types": ["a"]}),
            "url is required",
        ),
        (json!({"name": "n", "url": url}), "event_types is required"),
        (
            json!({"name": "", "url": url, "event_types": ["a"]}),
            "name must be between 1 and 255 characters",
        ),
        (
            json!({"name": "x".repeat(256), "url": url, "event_types": ["a"]}),
            "name must be between 1 and 255 characters",
        ),
        (
            json!({"name": "n", "url": "http://hooks.example.com/x", "event_types": ["a"]}),
            "url must use https",
        ),
        (
            json!({"name": "n", "url": "not a url", "event_types": ["a"]}),
            "url must be an absolute URL",
        ),
        (
            json!({"name": "n", "url": "https://127.0.0.1/x", "event_types": ["a"]}),
            "url must not point to a loopback address",
        ),
        (
            json!({"name": "n", "url": "https://169.254.169.254/latest", "event_types": ["a"]}),
            "url must not point to a link-local address",
        ),
        (
            json!({"name": "n", "url": url, "event_types": []}),
            "event_types must be a non-empty array of event type patterns",
        ),
        (
            json!({"name": "n", "url": url, "event_types": "a"}),
            "event_types must be a non-empty array of event type patterns",
        ),
        (
            json!({"name": "n", "url": url, "event_types": ["a"], "is_active": "yes"}),
            "is_active must be a boolean",
        ),
        (
            json!({"name": "n", "url": url, "event_types": ["a"], "metadata": "x"}),
            "metadata must be a JSON object",
        ),
        (
            json!({"name": "n", "url": url, "event_types": ["a"], "metadata": {"k": "v".repeat(8200)}}),
            "metadata must be at most 8 KiB",
        ),
        (json!([1, 2]), "Request body must be a JSON object"),
    ];
    for (body, message) in cases {
        assert_error(&acme.post("/v1/webhooks", &body).await, 400, message);
    }
    let bad_pattern = acme
        .post(
            "/v1/webhooks",
            &json!({"name": "n", "url": url, "event_types": ["Card.*"]}),
        )
        .await;
    assert_eq!(bad_pattern.0, 400);
    assert!(
        bad_pattern.1["message"]
            .as_str()
            .unwrap()
            .starts_with("event_types contains an invalid pattern")
    );
    let camel = acme
        .post(
            "/v1/webhooks",
            &json!({"name": "n", "url": url, "eventTypes": ["a"]}),
        )
        .await;
    assert_eq!(camel.0, 400);
    assert!(
        camel.1["message"]
            .as_str()
            .unwrap()
            .starts_with("Unknown field: eventTypes"),
        "{}",
        camel.1
    );
    // Nothing was stored by any of them.
    assert_eq!(acme.get("/v1/webhooks").await.1, json!([]));
}

#[tokio::test]
async fn malformed_json_wrong_content_type_and_oversize_bodies_are_refused_clearly() {
    let Some(app) = super::spawn(&[]).await else {
        return;
    };
    let acme = app.partner("acme").await;
    let post = |body: &'static str, content_type: Option<&'static str>| {
        let mut request = app
            .request(reqwest::Method::POST, "/v1/webhooks", &acme.token)
            .body(body);
        if let Some(content_type) = content_type {
            request = request.header("content-type", content_type);
        }
        async move { crate::helpers::read(request.send().await.unwrap()).await }
    };
    let malformed = post("{\"name\": ", Some("application/json")).await;
    assert_eq!(malformed.0, 400);
    assert!(
        malformed.1["message"]
            .as_str()
            .unwrap()
            .starts_with("Malformed JSON"),
        "{}",
        malformed.1
    );
    assert_error(
        &post("{}", None).await,
        415,
        "Content-Type must be application/json",
    );
    assert_error(
        &post("name=x", Some("application/x-www-form-urlencoded")).await,
        415,
        "Content-Type must be application/json",
    );
    let huge = format!("{{\"name\":\"{}\"}}", "x".repeat(100 * 1024));
    let response = app
        .request(reqwest::Method::POST, "/v1/webhooks", &acme.token)
        .header("content-type", "application/json")
        .body(huge)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 413);
    let body: Value = response.json().await.unwrap();
    assert!(
        body["message"].as_str().unwrap().contains("too large"),
        "{body}"
    );
}
