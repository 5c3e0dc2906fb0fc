//! The store conformance suite: the same stories against each backend, through the store
//! interface alone, as the dispatcher and the API drive it. Each backend batches its writes
//! its own way; what the stories observe must not differ.

use std::collections::HashMap;
use std::sync::Arc;

use herald::domain::claim::Capacity;
use herald::domain::ids::{EventId, WebhookId};
use herald::domain::status::{EventStatus, NextStep};
use herald::domain::time::now_ms;
use herald::store::{
    AttemptRecord, ClaimRequest, ClaimedDelivery, EventQuery, NewWebhook, PublishOutcome,
    RetryOutcome, Store,
};
use uuid::Uuid;

use super::isolation::{fresh_store, new_event};

/// An active webhook of `acme` subscribed to every type; returns its id.
async fn webhook(store: &dyn Store) -> WebhookId {
    let id = WebhookId::from(Uuid::new_v4());
    store
        .create_webhook(
            NewWebhook {
                id,
                tenant: "acme".into(),
                name: "w".into(),
                url: "https://hooks.example.com/".into(),
                api_key: herald::domain::keys::ApiKey::from("k".to_string()),
                event_types: vec!["*".into()],
                is_active: true,
                metadata: "{}".into(),
            },
            100,
        )
        .await
        .expect("webhook created");
    id
}

fn request(node: &str, now_ms: i64, limit: usize, in_flight: &[(Uuid, usize)]) -> ClaimRequest {
    ClaimRequest {
        node: node.into(),
        now_ms,
        lease_ms: 60_000,
        fan_out_limit: 100,
        capacity: Capacity {
            limit,
            per_webhook_limit: 2,
            in_flight: in_flight.iter().copied().collect(),
            per_tenant_limit: 100,
            in_flight_per_tenant: HashMap::new(),
        },
    }
}

async fn claim(store: &dyn Store, request: &ClaimRequest) -> Vec<ClaimedDelivery> {
    store.claim(request).await.expect("claim").deliveries
}

fn result(delivery: &ClaimedDelivery, node: &str, next: NextStep) -> AttemptRecord {
    AttemptRecord {
        id: Uuid::now_v7(),
        delivery_id: delivery.delivery_id,
        event_seq: delivery.event_seq,
        webhook_id: delivery.webhook_id,
        node: node.into(),
        attempt_number: delivery.attempt_number,
        request_url: delivery.url.clone(),
        request_headers: "{}".into(),
        response_status: Some(if next == NextStep::Succeeded {
            200
        } else {
            500
        }),
        response_body: None,
        error_message: None,
        duration_ms: Some(1),
        created_at_ms: now_ms(),
        next,
    }
}

async fn record(store: &dyn Store, results: Vec<AttemptRecord>) {
    for result in results {
        store.record_result(result);
    }
    store.flush_results().await.expect("results written");
}

async fn status_of(store: &dyn Store, delivery: &ClaimedDelivery) -> EventStatus {
    let event = store
        .find_event(&"acme".into(), delivery.event_id.as_str())
        .await
        .expect("lookup");
    event.expect("the event exists").status
}

/// A fresh store with a catch-all webhook and `events` published events.
async fn store_with_events(
    events: usize,
) -> Option<(Arc<dyn Store>, tempfile::TempDir, WebhookId)> {
    let (store, dir) = fresh_store().await?;
    let webhook = webhook(store.as_ref()).await;
    let batch = (0..events).map(|_| new_event("{}")).collect();
    store.publish_events(batch).await.expect("stored");
    Some((store, dir, webhook))
}

#[tokio::test]
async fn a_publish_is_idempotent_per_tenant_and_event_id() {
    let Some((store, _dir)) = fresh_store().await else {
        return;
    };
    let first = new_event(r#"{"n":1}"#);
    let again = herald::store::NewEvent {
        id: EventId::generate(),
        payload: r#"{"n":2}"#.into(),
        ..first.clone()
    };
    let stranger = herald::store::NewEvent {
        tenant: "nobody".into(),
        ..new_event("{}")
    };
    let outcomes = store
        .publish_events(vec![first.clone(), again, stranger])
        .await
        .expect("stored");
    assert!(matches!(&outcomes[0], PublishOutcome::Created(e) if e.id == first.id));
    assert!(matches!(&outcomes[1], PublishOutcome::Existing(e) if e.payload == r#"{"n":1}"#));
    assert!(matches!(&outcomes[2], PublishOutcome::UnknownTenant(t) if t.as_str() == "nobody"));
}

#[tokio::test]
async fn a_claim_fans_out_and_takes_no_more_than_the_node_has_room_for() {
    let Some((store, _dir, webhook)) = store_with_events(5).await else {
        return;
    };
    let now = now_ms();
    let work = store
        .claim(&request("a", now, 1, &[]))
        .await
        .expect("claim");
    assert_eq!((work.fanned_out, work.deliveries.len()), (5, 1));
    assert!(work.due_left, "four more are due");
    // One in flight, two at most per webhook: one more.
    let more = claim(
        store.as_ref(),
        &request("a", now, 10, &[(webhook.as_uuid(), 1)]),
    )
    .await;
    assert_eq!(more.len(), 1);
    let none = store
        .claim(&request("a", now, 10, &[(webhook.as_uuid(), 2)]))
        .await
        .expect("claim");
    assert!(none.deliveries.is_empty(), "the webhook is at its limit");
    assert!(
        none.due_left,
        "three are due, held back by the webhook's limit"
    );
    let queue = store.queue_depth().await.expect("depth");
    assert_eq!(
        (queue.pending_events, queue.queued, queue.in_flight),
        (0, 3, 2)
    );
}

#[tokio::test]
async fn a_publish_claims_in_its_own_commit_on_sqlite_and_leaves_it_to_the_dispatcher_elsewhere() {
    let Some((store, _dir)) = fresh_store().await else {
        return;
    };
    let webhook = webhook(store.as_ref()).await;
    // A result waiting to be written, from an earlier claim: a publish's claim leaves it to
    // the dispatcher, which gathers results into writes of their own.
    store
        .publish_events(vec![new_event("{}")])
        .await
        .expect("stored");
    let earlier = claim(store.as_ref(), &request("a", now_ms(), 10, &[])).await;
    store.record_result(result(&earlier[0], "a", NextStep::Succeeded));
    let event = new_event("{}");
    let (outcomes, work) = store
        .publish_and_claim(vec![event.clone()], &request("a", now_ms(), 10, &[]))
        .await
        .expect("stored");
    assert!(matches!(&outcomes[0], PublishOutcome::Created(e) if e.id == event.id));
    let claimed = match super::BACKEND {
        super::Backend::Sqlite => {
            let work = work.expect("SQLite claims in the publishing commit");
            assert_eq!(work.fanned_out, 1);
            assert!(!work.due_left, "the claim took every due delivery");
            assert_eq!(store.results_waiting(), 1);
            assert_eq!(
                status_of(store.as_ref(), &earlier[0]).await,
                EventStatus::Processing
            );
            store.flush_results().await.expect("results written");
            work.deliveries
        }
        super::Backend::Postgres => {
            assert!(
                work.is_none(),
                "PostgreSQL's dispatchers claim on notification"
            );
            assert_eq!(
                store.results_waiting(),
                0,
                "its recorder writes them itself"
            );
            store.flush_results().await.expect("results written");
            claim(store.as_ref(), &request("a", now_ms(), 10, &[])).await
        }
    };
    assert_eq!(claimed.len(), 1);
    assert_eq!(
        (claimed[0].event_id.as_str(), claimed[0].webhook_id),
        (event.event_id.as_str(), webhook)
    );
    assert_eq!(
        status_of(store.as_ref(), &claimed[0]).await,
        EventStatus::Processing
    );
    assert_eq!(
        status_of(store.as_ref(), &earlier[0]).await,
        EventStatus::Completed
    );
    let queue = store.queue_depth().await.expect("depth");
    assert_eq!(
        (queue.pending_events, queue.queued, queue.in_flight),
        (0, 0, 1)
    );
}

#[tokio::test]
async fn only_the_claim_holder_releases_and_a_released_delivery_is_claimed_afresh() {
    let Some((store, _dir, _)) = store_with_events(1).await else {
        return;
    };
    let now = now_ms();
    let taken = claim(store.as_ref(), &request("a", now, 1, &[])).await;
    store
        .release(&"b".into(), &[taken[0].delivery_id])
        .await
        .expect("released");
    assert!(
        claim(store.as_ref(), &request("b", now, 1, &[]))
            .await
            .is_empty()
    );
    store
        .release(&"a".into(), &[taken[0].delivery_id])
        .await
        .expect("released");
    let again = claim(store.as_ref(), &request("b", now, 1, &[])).await;
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].attempt_number, 1, "released untried");
}

#[tokio::test]
async fn an_expired_lease_hands_the_delivery_to_another_node_whose_result_alone_counts() {
    let Some((store, _dir, _)) = store_with_events(1).await else {
        return;
    };
    let now = now_ms();
    let mut short = request("a", now, 1, &[]);
    short.lease_ms = 10;
    let lost = claim(store.as_ref(), &short).await;
    let taken = claim(store.as_ref(), &request("b", now + 2_000, 1, &[])).await;
    assert_eq!(taken.len(), 1, "the lease ran out");
    // The first node's late result is logged but moves nothing.
    record(
        store.as_ref(),
        vec![result(&lost[0], "a", NextStep::Succeeded)],
    )
    .await;
    assert_eq!(
        status_of(store.as_ref(), &taken[0]).await,
        EventStatus::Processing
    );
    record(
        store.as_ref(),
        vec![result(&taken[0], "b", NextStep::Failed)],
    )
    .await;
    assert_eq!(
        status_of(store.as_ref(), &taken[0]).await,
        EventStatus::Failed
    );
    let event = store
        .find_event(&"acme".into(), taken[0].event_id.as_str())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        store
            .event_logs(&"acme".into(), event.id)
            .await
            .unwrap()
            .len(),
        2
    );
}

#[tokio::test]
async fn a_retry_result_requeues_the_delivery_until_it_falls_due() {
    let Some((store, _dir, _)) = store_with_events(1).await else {
        return;
    };
    let now = now_ms();
    let first = claim(store.as_ref(), &request("a", now, 1, &[])).await;
    record(
        store.as_ref(),
        vec![result(&first[0], "a", NextStep::RetryAt(now + 5_000))],
    )
    .await;
    assert_eq!(store.next_wake_at().await.unwrap(), Some(now + 5_000));
    assert!(
        claim(store.as_ref(), &request("a", now + 4_999, 1, &[]))
            .await
            .is_empty()
    );
    let second = claim(store.as_ref(), &request("a", now + 5_000, 1, &[])).await;
    assert_eq!(second[0].attempt_number, 2);
    record(
        store.as_ref(),
        vec![result(&second[0], "a", NextStep::Succeeded)],
    )
    .await;
    assert_eq!(
        status_of(store.as_ref(), &second[0]).await,
        EventStatus::Completed
    );
    assert_eq!(store.next_wake_at().await.unwrap(), None);
}

#[tokio::test]
async fn a_manual_retry_opens_a_new_cycle_and_a_deleted_webhook_ends_it() {
    let Some((store, _dir, webhook)) = store_with_events(1).await else {
        return;
    };
    let now = now_ms();
    let first = claim(store.as_ref(), &request("a", now, 1, &[])).await;
    record(
        store.as_ref(),
        vec![result(&first[0], "a", NextStep::Failed)],
    )
    .await;
    let event = store
        .find_event(&"acme".into(), first[0].event_id.as_str())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(event.status, EventStatus::Failed);
    let retried = store
        .retry_event(&"acme".into(), event.id, Some(webhook))
        .await;
    assert_eq!(retried.unwrap(), RetryOutcome::Queued(1));
    let other = store
        .retry_event(
            &"acme".into(),
            event.id,
            Some(WebhookId::from(Uuid::new_v4())),
        )
        .await;
    assert_eq!(other.unwrap(), RetryOutcome::WebhookNotFound);
    let cycle = claim(store.as_ref(), &request("a", now_ms(), 1, &[])).await;
    assert_eq!((cycle[0].cycle, cycle[0].attempt_number), (2, 1));
    assert_eq!(
        status_of(store.as_ref(), &cycle[0]).await,
        EventStatus::Processing
    );
    assert!(store.delete_webhook(&"acme".into(), webhook).await.unwrap());
    assert_eq!(
        status_of(store.as_ref(), &cycle[0]).await,
        EventStatus::Failed
    );
}

#[tokio::test]
async fn event_lists_page_newest_first_through_cursors() {
    let Some((store, _dir, _)) = store_with_events(5).await else {
        return;
    };
    let mut query = EventQuery {
        tenant: "acme".into(),
        status: None,
        event_type: None,
        since_ms: None,
        until_ms: None,
        before_cursor: None,
        limit: 2,
    };
    let mut pages = Vec::new();
    loop {
        let page = store.list_events(&query).await.expect("page");
        assert_eq!(page.total, 5);
        pages.push(page.events.len());
        match page.next_cursor {
            Some(cursor) => query.before_cursor = Some(cursor),
            None => break,
        }
    }
    assert_eq!(pages, [2, 2, 1]);
    query.before_cursor = None;
    query.status = Some(EventStatus::Completed);
    let none = store.list_events(&query).await.expect("page");
    assert_eq!(
        (none.total, none.events.len(), none.next_cursor),
        (0, 0, None)
    );
}
