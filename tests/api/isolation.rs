//! One bad item never fails another, shown against the store and the ingest writer with
//! rows the database itself refuses: validation leaves no input that fails a write through
//! the API, so these tests hand the store a record id or an attempt id that is already taken,
//! which the primary keys refuse on both backends.

use std::collections::HashMap;
use std::sync::Arc;

use herald::delivery::Wakeup;
use herald::domain::claim::Capacity;
use herald::domain::event::NewEvent;
use herald::domain::ids::{BusinessEventId, EventId};
use herald::domain::status::NextStep;
use herald::ingest::Ingest;
use herald::store::{
    AttemptRecord, ClaimRequest, ClaimedDelivery, NewWebhook, PublishOutcome, Store,
};
use tempfile::TempDir;
use tokio_util::task::TaskTracker;
use uuid::Uuid;

use crate::helpers::{fresh_database_on, fresh_store_on};

/// A migrated store of this suite's backend, with a tenant `acme`.
pub async fn fresh_store() -> Option<(Arc<dyn Store>, TempDir)> {
    let (store, dir) = fresh_store_on(super::BACKEND).await?;
    store
        .create_tenant(&"acme".into())
        .await
        .expect("tenant created");
    Some((store, dir))
}

pub fn new_event(payload: &str) -> NewEvent {
    NewEvent {
        id: EventId::generate(),
        event_id: BusinessEventId::from(Uuid::new_v4().to_string()),
        tenant: "acme".into(),
        event_type: "a.b".into(),
        payload: payload.into(),
        user_id: None,
        source_service: None,
        occurred_at_ms: 1_767_002_400_000,
    }
}

fn created(result: &Result<PublishOutcome, herald::ingest::IngestError>) -> bool {
    matches!(result, Ok(PublishOutcome::Created(_)))
}

#[tokio::test]
async fn a_publish_the_database_refuses_fails_alone_in_a_shared_commit() {
    let Some((url, _dir)) = fresh_database_on(super::BACKEND).await else {
        return;
    };
    let store = herald::app::open_store(&url).await.expect("store opens");
    store
        .create_tenant(&"acme".into())
        .await
        .expect("tenant created");
    let stored = new_event(r#"{"n":0}"#);
    let taken_id = stored.id;
    store
        .publish_events(vec![stored])
        .await
        .expect("first event stored");
    // A new business id under a record id that is taken: the insert breaks a primary key.
    let refused = || NewEvent {
        id: taken_id,
        ..new_event(r#"{"bad":true}"#)
    };
    let tracker = TaskTracker::new();
    let ingest = Ingest::start(
        store.clone(),
        herald::store::concurrent_publishes(&url),
        Wakeup::default(),
        None,
        &tracker,
    );
    let (single_good, single_bad, batch, other_batch) = (
        new_event(r#"{"n":1}"#),
        refused(),
        vec![new_event(r#"{"n":2}"#), refused(), new_event(r#"{"n":3}"#)],
        (4..40)
            .map(|n| new_event(&format!(r#"{{"n":{n}}}"#)))
            .collect::<Vec<_>>(),
    );
    let names: Vec<BusinessEventId> = [&single_good]
        .into_iter()
        .chain(&other_batch)
        .chain([&batch[0], &batch[2]])
        .map(|e| e.event_id.clone())
        .collect();
    // Queued before the writer runs (this runtime has one thread), so all four requests
    // land in one commit.
    let (a, b, c, d) = tokio::join!(
        ingest.publish(vec![single_good]),
        ingest.publish(vec![single_bad]),
        ingest.publish(batch),
        ingest.publish(other_batch),
    );
    let a = a.expect("a good single publish is answered");
    assert!(a.len() == 1 && created(&a[0]), "{a:?}");
    assert!(b.is_err(), "the refused single publish fails: {b:?}");
    let c = c.expect("the batch is answered item by item");
    assert_eq!(c.len(), 3);
    assert!(created(&c[0]) && c[1].is_err() && created(&c[2]), "{c:?}");
    let d = d.expect("another producer's batch is answered");
    assert!(d.iter().all(created), "{d:?}");
    for name in names {
        let found = store
            .find_event(&"acme".into(), name.as_str())
            .await
            .expect("lookup");
        assert!(found.is_some(), "event {name} was stored");
    }
    drop(ingest);
    tracker.close();
    tracker.wait().await;
}

/// An active webhook of `acme` subscribed to every type.
pub async fn subscribe_to_everything(store: &dyn Store) {
    store
        .create_webhook(
            NewWebhook {
                id: Uuid::new_v4().into(),
                tenant: "acme".into(),
                name: "w".into(),
                url: "https://example.com/h".into(),
                api_key: herald::domain::keys::ApiKey::from("k".to_string()),
                event_types: vec!["*".into()],
                is_active: true,
                metadata: "{}".into(),
            },
            100,
        )
        .await
        .expect("webhook created");
}

/// Two claimed deliveries of a new webhook, of two new events.
async fn two_claimed(store: &dyn Store, node: &str) -> Vec<ClaimedDelivery> {
    subscribe_to_everything(store).await;
    store
        .publish_events(vec![new_event("{}"), new_event("{}")])
        .await
        .expect("events stored");
    let mut claimed = Vec::new();
    for _ in 0..10 {
        let work = store.claim(&claim(node)).await.expect("claim");
        claimed.extend(work.deliveries);
        if claimed.len() == 2 {
            break;
        }
    }
    assert_eq!(claimed.len(), 2, "both deliveries claimed");
    claimed
}

fn claim(node: &str) -> ClaimRequest {
    ClaimRequest {
        node: node.into(),
        now_ms: herald::domain::time::now_ms(),
        lease_ms: 60_000,
        fan_out_limit: 100,
        capacity: Capacity {
            limit: 100,
            per_webhook_limit: 100,
            in_flight: HashMap::new(),
            per_tenant_limit: 100,
            in_flight_per_tenant: HashMap::new(),
        },
    }
}

fn success(delivery: &ClaimedDelivery, node: &str, id: Uuid) -> AttemptRecord {
    AttemptRecord {
        id,
        delivery_id: delivery.delivery_id,
        event_seq: delivery.event_seq,
        webhook_id: delivery.webhook_id,
        node: node.into(),
        attempt_number: delivery.attempt_number,
        request_url: delivery.url.clone(),
        request_headers: "{}".into(),
        response_status: Some(200),
        response_body: Some("ok".into()),
        error_message: None,
        duration_ms: Some(1),
        created_at_ms: herald::domain::time::now_ms(),
        next: NextStep::Succeeded,
    }
}

async fn logs_of(store: &dyn Store, delivery: &ClaimedDelivery) -> usize {
    let event = store
        .find_event(&"acme".into(), delivery.event_id.as_str())
        .await
        .expect("lookup")
        .expect("event exists");
    store
        .event_logs(&"acme".into(), event.id)
        .await
        .expect("logs")
        .len()
}

/// Hands results to the store as attempts do, then has them written.
async fn record(store: &dyn Store, records: Vec<AttemptRecord>) {
    for record in records {
        store.record_result(record);
    }
    store.flush_results().await.expect("recording goes through");
}

#[tokio::test]
async fn an_attempt_result_the_database_refuses_does_not_stop_the_others() {
    let Some((store, _dir)) = fresh_store().await else {
        return;
    };
    let node = "node-a";
    let claimed = two_claimed(store.as_ref(), node).await;
    // Both results carry the same attempt id: together they break the primary key, and the
    // second is refused however it is tried.
    let id = Uuid::new_v4();
    let records = vec![
        success(&claimed[0], node, id),
        success(&claimed[1], node, id),
    ];
    record(store.as_ref(), records).await;
    assert_eq!(logs_of(store.as_ref(), &claimed[0]).await, 1);
    assert_eq!(logs_of(store.as_ref(), &claimed[1]).await, 0);
    let first = store
        .find_event(&"acme".into(), claimed[0].event_id.as_str())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(first.status.as_str(), "completed");
    // The refused one is left to its lease; a later result for it is recorded as usual.
    record(
        store.as_ref(),
        vec![success(&claimed[1], node, Uuid::new_v4())],
    )
    .await;
    assert_eq!(logs_of(store.as_ref(), &claimed[1]).await, 1);
}
