//! `herald webhooks list|recover` on the database a running `herald serve` uses, on SQLite
//! and (when configured) PostgreSQL: each webhook with its health, as a table and as the API's
//! JSON; a recovery the server delivers; errors that exit non-zero with the API's message.

use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::cli::{CliOutput, json_of};
use crate::cli_fixture::{Fixture, assert_fails_with, fixture_with, ids};
use crate::helpers::Backend;
use crate::receiver::{Reply, TestReceiver};

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

/// `herald webhooks recover WEBHOOK --tenant acme EXTRA...`.
async fn recover(fixture: &Fixture, webhook: &str, extra: &[&str]) -> CliOutput {
    let mut args = vec!["webhooks", "recover", webhook, "--tenant", "acme"];
    args.extend_from_slice(extra);
    fixture.run(&args).await
}

async fn a_recovery_from_the_cli_is_delivered_by_the_running_server(backend: Backend) {
    // No automatic catch-up: only the command re-sends anything.
    let Some(fixture) = fixture_with(backend, &[("HERALD_AUTO_RECOVER", "0")]).await else {
        return;
    };
    // Down for the first three events (400: failed for good at once), back after.
    let receiver = TestReceiver::start(|n| Reply::status(if n < 3 { 400 } else { 200 })).await;
    let webhook = fixture.create_webhook(&receiver.url("/hook"), true).await;
    let mut events = Vec::new();
    for _ in 0..3 {
        let event = fixture.publish("acme", "card.issued").await;
        fixture
            .wait_for_status(event["id"].as_str().unwrap(), "failed")
            .await;
        events.push(event);
    }
    let created = |i: usize| events[i]["createdAt"].as_str().unwrap().to_string();

    // [since, until) holds the second event only.
    let (from, to) = (created(1), created(2));
    let one = recover(&fixture, &webhook, &["--since", &from, "--until", &to]).await;
    one.assert_success();
    assert_eq!(one.stdout.trim(), "1 event(s) queued for recovery");
    let requests = receiver.wait_for(4, Duration::from_secs(10)).await;
    assert_eq!(requests[3].header("webhook-id"), events[1]["eventId"]);
    fixture
        .wait_for_status(events[1]["id"].as_str().unwrap(), "completed")
        .await;

    let rest = recover(&fixture, &webhook, &["--since", "1h", "--json"]).await;
    rest.assert_success();
    let rest = json_of(&rest.stdout);
    assert_eq!(
        rest,
        json!({"webhookId": webhook, "eventCount": 2,
               "message": "2 event(s) queued for recovery"})
    );
    receiver.wait_for(6, Duration::from_secs(10)).await;
    for event in [&events[0], &events[2]] {
        fixture
            .wait_for_status(event["id"].as_str().unwrap(), "completed")
            .await;
    }
    let again = recover(&fixture, &webhook, &["--since", "1h"]).await;
    again.assert_success();
    assert_eq!(again.stdout.trim(), "0 event(s) queued for recovery");

    let inactive = fixture
        .create_webhook("http://127.0.0.1:9/off", false)
        .await;
    let stranger = Uuid::new_v4().to_string();
    for (target, message) in [
        (inactive.as_str(), "Webhook is not active"),
        (stranger.as_str(), "Webhook not found"),
        ("nope", "Webhook not found"),
    ] {
        let output = recover(&fixture, target, &["--since", "1h"]).await;
        assert_fails_with(&output, message);
    }
    for (extra, message) in [
        (&["--since", "0s"][..], "--since must be before --until"),
        (
            &["--since", "1h", "--until", "2h"][..],
            "--since must be before --until",
        ),
        (&["--since", "yesterday"][..], "--since must be"),
        (&["--since", "1h", "--until", "soon"][..], "--until must be"),
    ] {
        assert_fails_with(&recover(&fixture, &webhook, extra).await, message);
    }
    let unknown = fixture
        .run(&[
            "webhooks", "recover", &webhook, "--tenant", "initech", "--since", "1h",
        ])
        .await;
    assert_fails_with(&unknown, "Unknown tenant: initech");
    // --since is required (a usage error, from the argument parser).
    let output = recover(&fixture, &webhook, &[]).await;
    assert!(!output.status.success(), "{output:#?}");
    assert!(output.stderr.contains("--since"), "{output:#?}");
    assert_eq!(
        receiver.received().len(),
        6,
        "refused recoveries send nothing"
    );
}

#[tokio::test]
async fn a_recovery_from_the_cli_is_delivered_by_the_running_server_on_sqlite() {
    a_recovery_from_the_cli_is_delivered_by_the_running_server(Backend::Sqlite).await;
}

#[tokio::test]
async fn a_recovery_from_the_cli_is_delivered_by_the_running_server_on_postgres() {
    a_recovery_from_the_cli_is_delivered_by_the_running_server(Backend::Postgres).await;
}
