//! Idempotency whatever ids producers choose: business ids that share a long prefix are as
//! cheap to publish and to look up as any others, and each still answers to itself.

use herald::store::PublishOutcome;
use reqwest::Method;
use serde_json::{Value, json};

use super::isolation::{fresh_store, new_event};
use crate::helpers::read;

/// The `n`th of a family of ids that share their first 104 bits.
fn colliding(n: u32) -> String {
    format!("4f9c2a1e-7b3d-4c58-9e21-0a6b8d{n:06x}")
}

#[tokio::test]
async fn ids_sharing_a_long_prefix_each_keep_their_own_event() {
    let Some(app) = super::spawn(&[]).await else {
        return;
    };
    app.create_tenant("acme").await;
    let producer = app.producer_token().await;
    for first in (0..3_000).step_by(1_000) {
        let events: Vec<Value> = (first..first + 1_000)
            .map(|n| {
                json!({"tenant": "acme", "eventType": "a.b", "eventId": colliding(n),
                       "payload": {"n": n, "padding": "x".repeat(2_000)}})
            })
            .collect();
        let (status, body) = read(
            app.request(Method::POST, "/v1/events/batch", &producer)
                .json(&json!({ "events": events }))
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(status, 200, "{body}");
        let results = body["results"].as_array().unwrap();
        assert!(results.iter().all(|r| r["status"] == 201), "{body}");
    }
    let (status, again) = app
        .publish(
            &producer,
            &json!({"tenant": "acme", "eventType": "c.d", "eventId": colliding(1_234),
                    "payload": {"other": true}}),
        )
        .await;
    assert_eq!(status, 200, "{again}");
    assert_eq!(again["eventId"], colliding(1_234));
    assert_eq!(again["eventType"], "a.b");
    assert_eq!(again["payload"]["n"], 1_234);
    let (status, new) = app
        .publish(
            &producer,
            &json!({"tenant": "acme", "eventType": "a.b", "eventId": colliding(3_000),
                    "payload": {}}),
        )
        .await;
    assert_eq!(status, 201, "{new}");
    let acme = app.partner_of("acme").await;
    let (status, found) = acme
        .get(&format!("/v1/webhooks/events/{}/status", colliding(2_999)))
        .await;
    assert_eq!(status, 200, "{found}");
}

/// Past the tail the writer keeps in memory (32,768 events on SQLite), the ids are found in
/// the index on disk.
#[tokio::test]
async fn ids_sharing_a_long_prefix_are_found_after_the_index_is_written() {
    let Some((store, _dir)) = fresh_store().await else {
        return;
    };
    let total = 40_000;
    for first in (0..total).step_by(8_000) {
        let events = (first..first + 8_000)
            .map(|n| herald::store::NewEvent {
                event_id: colliding(n).into(),
                ..new_event("{}")
            })
            .collect();
        let outcomes = store.publish_events(events).await.expect("stored");
        assert!(
            outcomes
                .iter()
                .all(|o| matches!(o, PublishOutcome::Created(_)))
        );
    }
    // This publish moves the tail into the index; the next ones look there.
    store
        .publish_events(vec![new_event("{}")])
        .await
        .expect("stored");
    let repeated = vec![
        herald::store::NewEvent {
            event_id: colliding(7).into(),
            ..new_event(r#"{"other":true}"#)
        },
        herald::store::NewEvent {
            event_id: colliding(total - 1).into(),
            ..new_event(r#"{"other":true}"#)
        },
        herald::store::NewEvent {
            event_id: colliding(total).into(),
            ..new_event(r#"{"new":true}"#)
        },
    ];
    let outcomes = store.publish_events(repeated).await.expect("published");
    match &outcomes[..] {
        [
            PublishOutcome::Existing(old),
            PublishOutcome::Existing(last),
            PublishOutcome::Created(new),
        ] => {
            assert_eq!(old.event_id.as_str(), colliding(7));
            assert_eq!(old.payload, "{}");
            assert_eq!(last.event_id.as_str(), colliding(total - 1));
            assert_eq!(new.event_id.as_str(), colliding(total));
        }
        other => panic!("unexpected outcomes {other:?}"),
    }
    for n in [0, 7, 20_000, total - 1, total] {
        let found = store
            .find_event(&"acme".into(), &colliding(n))
            .await
            .expect("lookup");
        assert_eq!(
            found.map(|e| e.event_id.into_string()),
            Some(colliding(n)),
            "event {n} is found by its business id"
        );
    }
}
