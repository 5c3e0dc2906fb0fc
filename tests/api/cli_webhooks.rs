//! `herald webhooks list` on the database a running `herald serve` uses, on SQLite and (when
//! configured) PostgreSQL: each webhook with its health, as a table and as the API's JSON.

use reqwest::Method;
use serde_json::Value;

use crate::cli_fixture::{assert_fails_with, fixture_with, ids};
use crate::helpers::Backend;
use crate::receiver::TestReceiver;

async fn webhooks_are_listed_with_their_health(backend: Backend) {
    // One failure makes a webhook failing, so that one event shows every state.
    let Some(fixture) = fixture_with(backend, &[("HERALD_FAILING_AFTER", "1")]).await else {
        return;
    };
    let (ok, refusing, gone) = (
        TestReceiver::answering(200).await,
        TestReceiver::answering(400).await,
        TestReceiver::answering(410).await,
    );
    let healthy = fixture.create_webhook(&ok.url("/ok"), true).await;
    let failing = fixture.create_webhook(&refusing.url("/no"), true).await;
    let disabled = fixture.create_webhook(&gone.url("/gone"), true).await;
    let event = fixture.publish("acme", "card.issued").await;
    fixture
        .wait_for_status(event["id"].as_str().unwrap(), "failed")
        .await;

    let text = fixture.run(&["webhooks", "list", "--tenant", "acme"]).await;
    text.assert_success();
    let row = |id: &str| -> Vec<String> {
        let line = text
            .stdout
            .lines()
            .find(|line| line.starts_with(id))
            .unwrap_or_else(|| panic!("a row for {id}: {text:#?}"));
        line.split_whitespace().map(str::to_string).collect()
    };
    // ID, NAME, ACTIVE, STATE, FAILURES, LAST ATTEMPT, LAST SUCCESS, URL
    let healthy_row = row(&healthy);
    assert_eq!(&healthy_row[2..5], ["yes", "healthy", "0"], "{text:#?}");
    assert_ne!(healthy_row[6], "-", "a last success: {text:#?}");
    assert_eq!(healthy_row[7], ok.url("/ok"));
    let failing_row = row(&failing);
    assert_eq!(&failing_row[2..5], ["yes", "failing", "1"], "{text:#?}");
    assert_eq!(failing_row[6], "-", "no success yet: {text:#?}");
    assert_eq!(&row(&disabled)[2..5], ["no", "disabled", "1"], "{text:#?}");
    assert!(
        text.stdout
            .lines()
            .any(|l| l.contains("disabled at") && l.contains("410")),
        "the reason Herald disabled it: {text:#?}"
    );
    assert!(text.stdout.contains("3 webhook(s)"), "{text:#?}");

    // --json: the API's webhook objects, each with the API's health view.
    let listed = fixture
        .json(&["webhooks", "list", "--tenant", "acme"])
        .await;
    let (_, api) = fixture.api(Method::GET, "/v1/webhooks", None).await;
    assert_eq!(ids(&listed), ids(&api));
    for (mut row, webhook) in listed
        .as_array()
        .unwrap()
        .clone()
        .into_iter()
        .zip(api.as_array().unwrap())
    {
        let id = webhook["id"].as_str().unwrap();
        let health = row
            .as_object_mut()
            .unwrap()
            .remove("health")
            .expect("a health object");
        assert_eq!(&row, webhook, "the webhook as GET /v1/webhooks shows it");
        let path = format!("/v1/webhooks/{id}/health");
        let (_, expected) = fixture.api(Method::GET, &path, None).await;
        assert_eq!(health, expected, "{id}'s health as {path} shows it");
    }
    let state = |id: &str| -> Value {
        listed
            .as_array()
            .unwrap()
            .iter()
            .find(|w| w["id"] == id)
            .unwrap()["health"]["state"]
            .clone()
    };
    assert_eq!(state(&healthy), "healthy");
    assert_eq!(state(&failing), "failing");
    assert_eq!(state(&disabled), "disabled");

    let empty = fixture
        .run(&["webhooks", "list", "--tenant", "globex"])
        .await;
    empty.assert_success();
    assert!(empty.stdout.contains("0 webhook(s)"), "{empty:#?}");
    let empty = fixture
        .json(&["webhooks", "list", "--tenant", "globex"])
        .await;
    assert_eq!(empty, Value::Array(Vec::new()));
    let unknown = fixture
        .run(&["webhooks", "list", "--tenant", "initech"])
        .await;
    assert_fails_with(&unknown, "Unknown tenant: initech");
}

#[tokio::test]
async fn webhooks_are_listed_with_their_health_on_sqlite() {
    webhooks_are_listed_with_their_health(Backend::Sqlite).await;
}

#[tokio::test]
async fn webhooks_are_listed_with_their_health_on_postgres() {
    webhooks_are_listed_with_their_health(Backend::Postgres).await;
}
