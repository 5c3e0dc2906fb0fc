//! Auth: 401 for bad tokens, 403 for missing scopes, and no route that reveals another
//! tenant's data.

use herald::domain::scope::Scope;
use herald::store::TokenKind;
use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::{TestApp, assert_error, read, webhook_body};

/// Every /v1 route with the scope it needs; `{w}` is a webhook id, `{e}` an event id.
const ROUTES: [(&str, &str, Scope); 13] = [
    ("GET", "/v1/webhooks", Scope::WebhooksRead),
    ("POST", "/v1/webhooks", Scope::WebhooksWrite),
    ("GET", "/v1/webhooks/{w}", Scope::WebhooksRead),
    ("PUT", "/v1/webhooks/{w}", Scope::WebhooksWrite),
    ("DELETE", "/v1/webhooks/{w}", Scope::WebhooksWrite),
    ("POST", "/v1/webhooks/{w}/rotate-key", Scope::WebhooksWrite),
    ("GET", "/v1/webhooks/{w}/logs", Scope::WebhooksRead),
    ("GET", "/v1/webhooks/events", Scope::EventsRead),
    ("GET", "/v1/webhooks/events/{e}/status", Scope::EventsRead),
    ("GET", "/v1/webhooks/events/{e}/logs", Scope::EventsRead),
    ("POST", "/v1/webhooks/events/{e}/retry", Scope::EventsRetry),
    ("POST", "/v1/events", Scope::EventsPublish),
    ("POST", "/v1/events/batch", Scope::EventsPublish),
];

async fn call(app: &TestApp, method: &str, path: &str, token: Option<&str>) -> (u16, Value) {
    let mut request = app.client.request(
        Method::from_bytes(method.as_bytes()).unwrap(),
        app.url(path),
    );
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    if method != "GET" && method != "DELETE" {
        request = request.json(&json!({}));
    }
    read(request.send().await.unwrap()).await
}

fn fill(path: &str, webhook: &str, event: &str) -> String {
    path.replace("{w}", webhook).replace("{e}", event)
}

#[tokio::test]
async fn missing_malformed_unknown_and_revoked_tokens_get_401_on_every_route() {
    let Some(app) = super::spawn(&[]).await else {
        return;
    };
    app.create_tenant("acme").await;
    let (revoked_id, revoked) = app
        .token(
            TokenKind::Partner,
            Some("acme"),
            Scope::PARTNER_DEFAULT.to_vec(),
        )
        .await;
    assert!(app.store.revoke_token(revoked_id).await.unwrap());
    let id = uuid::Uuid::new_v4().to_string();
    let unknown = format!("hrd_{}", "a".repeat(43));
    for (method, path, _) in ROUTES {
        let path = fill(path, &id, &id);
        for token in [
            None,
            Some("garbage"),
            Some(unknown.as_str()),
            Some(revoked.as_str()),
        ] {
            assert_error(
                &call(&app, method, &path, token).await,
                401,
                "Not authenticated",
            );
        }
        let basic = app
            .client
            .request(
                Method::from_bytes(method.as_bytes()).unwrap(),
                app.url(&path),
            )
            .header("authorization", "Basic dXNlcjpwYXNz")
            .send()
            .await
            .unwrap();
        assert_eq!(basic.status(), 401, "{method} {path}");
    }
}

#[tokio::test]
async fn each_route_needs_its_scope() {
    let Some(app) = super::spawn(&[]).await else {
        return;
    };
    app.create_tenant("acme").await;
    let id = uuid::Uuid::new_v4().to_string();
    let all_partner = Scope::PARTNER_DEFAULT;
    for (method, path, needed) in ROUTES {
        let path = fill(path, &id, &id);
        // A partner token with every scope but the one needed.
        let without: Vec<Scope> = all_partner
            .iter()
            .copied()
            .filter(|s| *s != needed)
            .collect();
        let token = app.partner_token("acme", &without).await;
        assert_error(
            &call(&app, method, &path, Some(&token)).await,
            403,
            "Not authorized",
        );
        if needed == Scope::EventsPublish {
            let producer = app.producer_token().await;
            assert_ne!(
                call(&app, method, &path, Some(&producer)).await.0,
                403,
                "{method} {path}"
            );
        } else {
            // A producer token is no partner token.
            let producer = app.producer_token().await;
            assert_error(
                &call(&app, method, &path, Some(&producer)).await,
                403,
                "Not authorized",
            );
            let token = app.partner_token("acme", &[needed]).await;
            let (status, body) = call(&app, method, &path, Some(&token)).await;
            assert!(
                status != 401 && status != 403,
                "{method} {path}: {status} {body}"
            );
        }
    }
}

#[tokio::test]
async fn no_route_reveals_another_tenants_webhooks_or_events() {
    let Some(app) = super::spawn(&[]).await else {
        return;
    };
    let acme = app.partner("acme").await;
    let rival = app.partner("rival").await;
    let producer = app.producer_token().await;
    let mut body = webhook_body("private", &["*"]);
    body["is_active"] = json!(true);
    let webhook = acme.create_webhook(&body).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let (_, event) = app
        .publish(
            &producer,
            &json!({"tenant": "acme", "eventType": "a.b", "payload": {"secret": 1}}),
        )
        .await;
    let record_id = event["id"].as_str().unwrap().to_string();
    let event_id = event["eventId"].as_str().unwrap().to_string();

    // Lists show nothing of acme.
    assert_eq!(rival.get("/v1/webhooks").await, (200, json!([])));
    assert_eq!(
        rival.get("/v1/webhooks/events").await,
        (200, json!({"total": 0, "events": []}))
    );
    // Ids of acme are unknown to rival, on every route that takes one.
    let w = format!("/v1/webhooks/{webhook}");
    assert_error(&rival.get(&w).await, 404, "Webhook not found");
    assert_error(
        &rival.put(&w, &json!({"name": "stolen"})).await,
        404,
        "Webhook not found",
    );
    assert_error(&rival.delete(&w).await, 404, "Webhook not found");
    assert_error(
        &rival.post(&format!("{w}/rotate-key"), &json!({})).await,
        404,
        "Webhook not found",
    );
    assert_error(
        &rival.get(&format!("{w}/logs")).await,
        404,
        "Webhook not found",
    );
    for id in [&record_id, &event_id] {
        let e = format!("/v1/webhooks/events/{id}");
        assert_error(
            &rival.get(&format!("{e}/status")).await,
            404,
            "Event not found",
        );
        assert_error(
            &rival.get(&format!("{e}/logs")).await,
            404,
            "Event not found",
        );
        assert_error(
            &rival.post(&format!("{e}/retry"), &json!({})).await,
            404,
            "Event not found",
        );
    }
    // Rival's own event cannot be retried to acme's webhook.
    let (_, own) = app
        .publish(
            &producer,
            &json!({"tenant": "rival", "eventType": "a.b", "payload": {}}),
        )
        .await;
    let retry = format!("/v1/webhooks/events/{}/retry", own["id"].as_str().unwrap());
    assert_error(
        &rival.post(&retry, &json!({"webhookId": webhook})).await,
        404,
        "Webhook not found",
    );
    // And acme's webhook is untouched.
    let (_, still) = acme.get(&w).await;
    assert_eq!(still["name"], "private");
    assert_eq!(acme.get("/v1/webhooks/events").await.1["total"], 1);
}

#[tokio::test]
async fn a_revoked_token_is_refused_within_a_second() {
    let Some(app) = super::spawn(&[]).await else {
        return;
    };
    app.create_tenant("acme").await;
    let (id, token) = app
        .token(
            TokenKind::Partner,
            Some("acme"),
            Scope::PARTNER_DEFAULT.to_vec(),
        )
        .await;
    assert_eq!(call(&app, "GET", "/v1/webhooks", Some(&token)).await.0, 200);
    assert!(app.store.revoke_token(id).await.unwrap());
    let revoked_at = std::time::Instant::now();
    loop {
        // The contract's second counts to when a request is sent: the server cannot see it
        // any earlier, so however slowly it answers, one sent a second after the revoke must
        // be refused.
        let sent = revoked_at.elapsed();
        let (status, _) = call(&app, "GET", "/v1/webhooks", Some(&token)).await;
        if status == 401 {
            break;
        }
        assert!(
            sent < std::time::Duration::from_secs(1),
            "a request sent {sent:?} after the revoke was still accepted"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}
