//! `herald token create`, `list` and `revoke`: a token is printed once, its scopes are
//! enforced by the running server, and a revoked token is refused within a second.

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use uuid::Uuid;

use crate::cli::{Herald, json_of, parse_created_token};

#[tokio::test]
async fn token_create_json_prints_only_the_id_and_token_and_list_never_shows_the_token() {
    let herald = Herald::new();
    herald.create_tenant("acme").await;
    let output = herald
        .run(&["token", "create", "--tenant", "acme", "--json"])
        .await;
    output.assert_success();
    let created = parse_created_token(&output.stdout);
    let (id, token) = (
        created["id"].as_str().unwrap(),
        created["token"].as_str().unwrap(),
    );
    assert!(
        !output.stderr.contains(token),
        "the token is printed once, on stdout"
    );

    let text = herald.run(&["token", "create", "--tenant", "acme"]).await;
    text.assert_success();
    assert!(text.stdout.contains("Created partner token"), "{text:#?}");
    assert!(
        text.stdout.lines().any(|l| l.starts_with("hrd_")),
        "{text:#?}"
    );

    for args in [&["token", "list"][..], &["token", "list", "--json"][..]] {
        let listed = herald.run(args).await;
        listed.assert_success();
        assert!(
            listed.stdout.contains(id),
            "{args:?} shows the id: {listed:#?}"
        );
        assert!(
            !listed.stdout.contains("hrd_"),
            "{args:?} never shows a token: {listed:#?}"
        );
        assert!(
            !listed.stdout.contains(&token[4..20]),
            "{args:?} never shows a token: {listed:#?}"
        );
    }
    let listed = json_of(&herald.run(&["token", "list", "--json"]).await.stdout);
    let row = listed
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["id"] == id)
        .expect("the token is listed");
    assert_eq!(row["kind"], "partner");
    assert_eq!(row["tenant"], "acme");
    assert_eq!(
        row["scopes"],
        json!([
            "webhooks:read",
            "webhooks:write",
            "events:read",
            "events:retry"
        ])
    );
    assert_eq!(row["revokedAt"], Value::Null);
}

#[tokio::test]
async fn token_scopes_are_stored_and_enforced_by_the_server() {
    let herald = Herald::new();
    herald.create_tenant("acme").await;
    let (reader_id, reader) = herald
        .create_token(&["--tenant", "acme", "--scope", "events:read"])
        .await;
    let (pair_id, _) = herald
        .create_token(&[
            "--tenant",
            "acme",
            "--scope",
            "webhooks:read,webhooks:write",
            "--scope",
            "webhooks:read",
        ])
        .await;
    let (producer_id, producer) = herald.create_token(&["--producer"]).await;

    let listed = json_of(&herald.run(&["token", "list", "--json"]).await.stdout);
    let row = |id: &str| {
        listed
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["id"] == id)
            .unwrap()
            .clone()
    };
    assert_eq!(row(&reader_id)["scopes"], json!(["events:read"]));
    assert_eq!(
        row(&pair_id)["scopes"],
        json!(["webhooks:read", "webhooks:write"])
    );
    let producer_row = row(&producer_id);
    assert_eq!(producer_row["kind"], "producer");
    assert_eq!(producer_row["tenant"], Value::Null);
    assert_eq!(producer_row["scopes"], json!(["events:publish"]));

    let server = herald.serve().await;
    let get = |path: &str, token: &str| {
        server
            .client
            .get(server.url(path))
            .bearer_auth(token)
            .send()
    };
    assert_eq!(
        get("/v1/webhooks/events", &reader).await.unwrap().status(),
        200
    );
    let refused = get("/v1/webhooks", &reader).await.unwrap();
    assert_eq!(refused.status(), 403);
    assert_eq!(
        refused.json::<Value>().await.unwrap()["message"],
        "Not authorized"
    );
    let published = server
        .client
        .post(server.url("/v1/events"))
        .bearer_auth(&producer)
        .json(
            &json!({"tenant": "acme", "eventType": "kyc.status.changed", "payload": {"ok": true}}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(published.status(), 201);
    assert_eq!(
        get("/v1/webhooks/events", &producer)
            .await
            .unwrap()
            .status(),
        403
    );
}

#[tokio::test]
async fn token_create_rejects_an_unknown_tenant_and_an_unknown_scope() {
    let herald = Herald::new();
    herald.create_tenant("acme").await;
    let unknown_tenant = herald
        .run(&["token", "create", "--tenant", "nope", "--json"])
        .await;
    unknown_tenant.assert_failure();
    assert!(
        unknown_tenant.stderr.contains("nope"),
        "{unknown_tenant:#?}"
    );
    for scope in ["events:publish", "webhooks:admin", "", "events:read,bogus"] {
        let output = herald
            .run(&[
                "token", "create", "--tenant", "acme", "--scope", scope, "--json",
            ])
            .await;
        output.assert_failure();
        assert!(output.stderr.contains("scope"), "{scope:?}: {output:#?}");
    }
    let both = herald
        .run(&["token", "create", "--tenant", "acme", "--producer"])
        .await;
    assert!(
        !both.status.success() && both.stdout.is_empty(),
        "{both:#?}"
    );
    let listed = herald.run(&["token", "list", "--json"]).await;
    assert_eq!(json_of(&listed.stdout), json!([]), "no token was created");
}

#[tokio::test]
async fn a_revoked_token_is_refused_by_the_running_server_within_a_second() {
    let herald = Herald::new();
    herald.create_tenant("acme").await;
    let (id, token) = herald.create_token(&["--tenant", "acme"]).await;
    let (_, other) = herald.create_token(&["--tenant", "acme"]).await;
    let server = herald.serve().await;
    let status_of = |token: &str| {
        let request = server
            .client
            .get(server.url("/v1/webhooks"))
            .bearer_auth(token)
            .send();
        async move { request.await.unwrap().status() }
    };
    // Used just before the revoke, so any cache holds it as valid.
    assert_eq!(status_of(&token).await, 200);

    herald.run(&["token", "revoke", &id]).await.assert_success();
    let revoked_at = Instant::now();
    // "Within a second" counts to when a request is sent: the server cannot see it any
    // earlier, so however slowly it answers, one sent a second after the revoke returned must
    // be refused.
    let refused_after = loop {
        let sent = revoked_at.elapsed();
        let response = server
            .client
            .get(server.url("/v1/webhooks"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        if response.status() == 401 {
            assert_eq!(
                response.json::<Value>().await.unwrap()["message"],
                "Not authenticated"
            );
            break revoked_at.elapsed();
        }
        assert_eq!(response.status(), 200);
        assert!(
            sent < Duration::from_secs(1),
            "a request sent {sent:?} after the revoke was still accepted"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    eprintln!("revoked token refused {refused_after:?} after `herald token revoke` returned");
    assert_eq!(status_of(&other).await, 200, "other tokens keep working");

    let listed = json_of(&herald.run(&["token", "list", "--json"]).await.stdout);
    let row = listed
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["id"] == id.as_str())
        .unwrap()
        .clone();
    assert!(row["revokedAt"].is_string(), "{row}");
    let unknown = herald
        .run(&["token", "revoke", &Uuid::new_v4().to_string()])
        .await;
    unknown.assert_failure();
    herald
        .run(&["token", "revoke", "not-a-uuid"])
        .await
        .assert_failure();
}
