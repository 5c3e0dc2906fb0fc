//! `herald events list|show|retry` on the database a running `herald serve` uses, on SQLite
//! and (when configured) PostgreSQL: filters, the API's JSON, attempts, a retry the server
//! picks up and delivers, and errors that exit non-zero with the API's message.

use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::cli_fixture::{Fixture, assert_fails_with, fixture, ids};
use crate::helpers::Backend;
use crate::receiver::TestReceiver;

/// Events `failed`, `first` and `second` of `acme` (oldest first): the receiver refuses the
/// first attempt for good (400) and takes the rest.
struct Published {
    receiver: TestReceiver,
    webhook: String,
    failed: Value,
    first: Value,
    second: Value,
}

async fn publish_three(fixture: &Fixture) -> Published {
    let receiver = TestReceiver::first_then_ok(400).await;
    let webhook = fixture.create_webhook(&receiver.url("/hook"), true).await;
    let failed = fixture.publish("acme", "kyc.status.changed").await;
    fixture
        .wait_for_status(failed["id"].as_str().unwrap(), "failed")
        .await;
    let first = fixture.publish("acme", "card.issued").await;
    let second = fixture.publish("acme", "card.issued").await;
    for event in [&first, &second] {
        fixture
            .wait_for_status(event["id"].as_str().unwrap(), "completed")
            .await;
    }
    Published {
        receiver,
        webhook,
        failed,
        first,
        second,
    }
}

async fn events_are_listed_newest_first_with_their_filters(backend: Backend) {
    let Some(fixture) = fixture(backend).await else {
        return;
    };
    let Published {
        failed,
        first,
        second,
        ..
    } = publish_three(&fixture).await;
    fixture.publish("globex", "card.issued").await;
    let id = |event: &Value| event["id"].as_str().unwrap().to_string();
    let (failed_id, first_id, second_id) = (id(&failed), id(&first), id(&second));

    let text = fixture.run(&["events", "list", "--tenant", "acme"]).await;
    text.assert_success();
    let rows: Vec<&str> = text
        .stdout
        .lines()
        .filter_map(|line| line.split_whitespace().next())
        .filter(|word| Uuid::parse_str(word).is_ok())
        .collect();
    assert_eq!(rows, [&second_id, &first_id, &failed_id], "{text:#?}");
    let row = text
        .stdout
        .lines()
        .find(|l| l.starts_with(&failed_id))
        .unwrap();
    for column in [
        failed["eventId"].as_str().unwrap(),
        "kyc.status.changed",
        "failed",
        failed["createdAt"].as_str().unwrap(),
    ] {
        assert!(row.contains(column), "{column} in {row}");
    }
    assert!(text.stdout.contains("3 of 3 event(s)"), "{text:#?}");

    // --json holds the API's objects, in the API's order.
    let listed = fixture.json(&["events", "list", "--tenant", "acme"]).await;
    assert_eq!(ids(&listed), [&second_id, &first_id, &failed_id]);
    let (_, api) = fixture.api(Method::GET, "/v1/webhooks/events", None).await;
    assert_eq!(listed, api["events"], "the CLI prints what the API renders");

    let by_status = |status: &'static str| {
        let fixture = &fixture;
        async move {
            fixture
                .json(&["events", "list", "--tenant", "acme", "--status", status])
                .await
        }
    };
    assert_eq!(ids(&by_status("failed").await), [&failed_id]);
    assert_eq!(ids(&by_status("completed").await), [&second_id, &first_id]);
    assert_eq!(ids(&by_status("pending").await), Vec::<&str>::new());

    let since = |since: String| {
        let fixture = &fixture;
        async move {
            fixture
                .json(&["events", "list", "--tenant", "acme", "--since", &since])
                .await
        }
    };
    assert_eq!(ids(&since("1h".into()).await).len(), 3);
    // A duration counts back from now: nothing was created in the last 0 s.
    assert_eq!(ids(&since("0s".into()).await), Vec::<&str>::new());
    // An instant is inclusive: from the first completed event on.
    let from_first = since(first["createdAt"].as_str().unwrap().to_string()).await;
    assert_eq!(ids(&from_first), [&second_id, &first_id]);

    let limited = fixture
        .run(&["events", "list", "--tenant", "acme", "--limit", "2"])
        .await;
    limited.assert_success();
    assert!(limited.stdout.contains("2 of 3 event(s)"), "{limited:#?}");
    assert!(!limited.stdout.contains(&failed_id), "{limited:#?}");

    let bad_status = fixture
        .run(&["events", "list", "--tenant", "acme", "--status", "done"])
        .await;
    assert_fails_with(&bad_status, "unknown status \"done\"");
    let bad_since = fixture
        .run(&["events", "list", "--tenant", "acme", "--since", "yesterday"])
        .await;
    assert_fails_with(&bad_since, "--since must be");
    let bad_limit = fixture
        .run(&["events", "list", "--tenant", "acme", "--limit", "0"])
        .await;
    assert_fails_with(&bad_limit, "--limit must be");
    let unknown = fixture
        .run(&["events", "list", "--tenant", "initech"])
        .await;
    assert_fails_with(&unknown, "Unknown tenant: initech");
}

#[tokio::test]
async fn events_are_listed_newest_first_with_their_filters_on_sqlite() {
    events_are_listed_newest_first_with_their_filters(Backend::Sqlite).await;
}

#[tokio::test]
async fn events_are_listed_newest_first_with_their_filters_on_postgres() {
    events_are_listed_newest_first_with_their_filters(Backend::Postgres).await;
}

async fn an_event_is_shown_with_its_attempts(backend: Backend) {
    let Some(fixture) = fixture(backend).await else {
        return;
    };
    let Published {
        webhook, failed, ..
    } = publish_three(&fixture).await;
    let (record_id, event_id) = (
        failed["id"].as_str().unwrap(),
        failed["eventId"].as_str().unwrap(),
    );

    let text = fixture
        .run(&["events", "show", event_id, "--tenant", "acme"])
        .await;
    text.assert_success();
    for expected in [
        record_id,
        event_id,
        "kyc.status.changed",
        "failed",
        "ATTEMPT",
    ] {
        assert!(text.stdout.contains(expected), "{expected} in {text:#?}");
    }
    let attempt = text
        .stdout
        .lines()
        .find(|line| line.contains(&webhook))
        .unwrap_or_else(|| panic!("an attempt to {webhook}: {text:#?}"));
    let columns: Vec<&str> = attempt.split_whitespace().collect();
    assert_eq!(
        &columns[..4],
        ["1", webhook.as_str(), "failed", "400"],
        "{attempt}"
    );

    // --json is the body of GET /v1/webhooks/events/{id}/logs, by either id.
    let path = format!("/v1/webhooks/events/{record_id}/logs");
    let (_, api) = fixture.api(Method::GET, &path, None).await;
    for id in [record_id, event_id] {
        let shown = fixture
            .json(&["events", "show", id, "--tenant", "acme"])
            .await;
        assert_eq!(shown, api, "show {id}");
    }
    assert_eq!(api["logs"].as_array().unwrap().len(), 1, "{api}");
    assert_eq!(api["logs"][0]["responseStatus"], 400, "{api}");

    for unknown in [Uuid::new_v4().to_string().as_str(), "not-an-id"] {
        let output = fixture
            .run(&["events", "show", unknown, "--tenant", "acme"])
            .await;
        assert_fails_with(&output, "Event not found");
    }
    // Another tenant's event is answered like an unknown one.
    let output = fixture
        .run(&["events", "show", record_id, "--tenant", "globex"])
        .await;
    assert_fails_with(&output, "Event not found");
}

#[tokio::test]
async fn an_event_is_shown_with_its_attempts_on_sqlite() {
    an_event_is_shown_with_its_attempts(Backend::Sqlite).await;
}

#[tokio::test]
async fn an_event_is_shown_with_its_attempts_on_postgres() {
    an_event_is_shown_with_its_attempts(Backend::Postgres).await;
}

async fn a_retry_from_the_cli_is_delivered_by_the_running_server(backend: Backend) {
    let Some(fixture) = fixture(backend).await else {
        return;
    };
    let Published {
        receiver,
        webhook,
        failed,
        ..
    } = publish_three(&fixture).await;
    let record_id = failed["id"].as_str().unwrap();
    let inactive = fixture
        .create_webhook("http://127.0.0.1:9/off", false)
        .await;

    let stranger = Uuid::new_v4().to_string();
    let refusals = [
        ("nope", "--webhook must be a valid UUID"),
        (inactive.as_str(), "Webhook is not active"),
        (stranger.as_str(), "Webhook not found"),
    ];
    for (target, message) in refusals {
        let args = [
            "events",
            "retry",
            record_id,
            "--tenant",
            "acme",
            "--webhook",
            target,
        ];
        assert_fails_with(&fixture.run(&args).await, message);
    }
    let unknown = Uuid::new_v4().to_string();
    let output = fixture
        .run(&["events", "retry", &unknown, "--tenant", "acme"])
        .await;
    assert_fails_with(&output, "Event not found");
    assert_eq!(receiver.received().len(), 3, "refused retries send nothing");

    let retried = fixture
        .run(&["events", "retry", record_id, "--tenant", "acme"])
        .await;
    retried.assert_success();
    assert_eq!(
        retried.stdout.trim(),
        "Event queued for retry to 1 webhook(s)"
    );
    // The server learns of it from the database alone (a notification on PostgreSQL, its
    // next look at the queue on SQLite) and delivers the new cycle.
    let requests = receiver.wait_for(4, Duration::from_secs(10)).await;
    assert_eq!(requests[3].header("webhook-id"), failed["eventId"]);
    fixture.wait_for_status(record_id, "completed").await;
    let shown = fixture
        .json(&["events", "show", record_id, "--tenant", "acme"])
        .await;
    let attempts: Vec<(i64, &str)> = shown["logs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|log| {
            (
                log["attemptNumber"].as_i64().unwrap(),
                log["deliveryStatus"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(attempts, [(1, "failed"), (1, "success")], "{shown}");

    let to_one = fixture
        .json(&[
            "events",
            "retry",
            record_id,
            "--tenant",
            "acme",
            "--webhook",
            &webhook,
        ])
        .await;
    assert_eq!(
        to_one,
        json!({"eventId": record_id, "webhookCount": 1,
               "message": "Event queued for retry to 1 webhook(s)"})
    );
    receiver.wait_for(5, Duration::from_secs(10)).await;
}

#[tokio::test]
async fn a_retry_from_the_cli_is_delivered_by_the_running_server_on_sqlite() {
    a_retry_from_the_cli_is_delivered_by_the_running_server(Backend::Sqlite).await;
}

#[tokio::test]
async fn a_retry_from_the_cli_is_delivered_by_the_running_server_on_postgres() {
    a_retry_from_the_cli_is_delivered_by_the_running_server(Backend::Postgres).await;
}
