//! Recoveries through the store interface alone, on each backend: a catch-up is queued by the
//! result that recovers a failing webhook, is still there after a restart, and queues each
//! failed delivery once.

use herald::domain::ids::WebhookId;
use herald::domain::status::NextStep;
use herald::domain::time::now_ms;
use herald::store::{AttemptRecord, ClaimRequest, ClaimedDelivery, NewWebhook, Store};
use uuid::Uuid;

use super::isolation::new_event;
use crate::helpers::fresh_database_on;

fn request(now_ms: i64) -> ClaimRequest {
    ClaimRequest {
        node: "n".into(),
        now_ms,
        lease_ms: 60_000,
        fan_out_limit: 100,
        capacity: herald::domain::claim::Capacity {
            limit: 100,
            per_webhook_limit: 100,
            in_flight: Default::default(),
            per_tenant_limit: 100,
            in_flight_per_tenant: Default::default(),
        },
    }
}

fn result(delivery: &ClaimedDelivery, next: NextStep, at_ms: i64) -> AttemptRecord {
    AttemptRecord {
        id: Uuid::now_v7(),
        delivery_id: delivery.delivery_id,
        event_seq: delivery.event_seq,
        webhook_id: delivery.webhook_id,
        node: "n".into(),
        attempt_number: delivery.attempt_number,
        request_url: delivery.url.clone(),
        request_headers: "{}".into(),
        response_status: Some(if next == NextStep::Succeeded {
            200
        } else {
            503
        }),
        response_body: None,
        error_message: None,
        duration_ms: Some(1),
        created_at_ms: at_ms,
        next,
    }
}

/// Publishes `count` events, claims their deliveries and records each attempt as `next`.
async fn attempt_all(store: &dyn Store, count: usize, next: NextStep) -> Vec<ClaimedDelivery> {
    let events = (0..count).map(|_| new_event("{}")).collect();
    store.publish_events(events).await.expect("stored");
    let now = now_ms();
    let claimed = store.claim(&request(now)).await.expect("claim").deliveries;
    assert_eq!(claimed.len(), count);
    for delivery in &claimed {
        store.record_result(result(delivery, next, now));
    }
    store.flush_results().await.expect("results written");
    claimed
}

#[tokio::test]
async fn a_catch_up_outlives_a_restart_and_queues_each_failed_delivery_once() {
    let Some((url, _dir)) = fresh_database_on(super::BACKEND).await else {
        return;
    };
    let store = herald::app::open_store(&url).await.expect("store opens");
    store.create_tenant(&"acme".into()).await.expect("tenant");
    let webhook = WebhookId::from(Uuid::new_v4());
    store
        .create_webhook(
            NewWebhook {
                id: webhook,
                tenant: "acme".into(),
                name: "w".into(),
                url: "https://hooks.example.com/".into(),
                api_key: herald::domain::keys::ApiKey::from("k".to_string()),
                event_types: vec!["*".into()],
                is_active: true,
                metadata: "{}".into(),
            },
            10,
        )
        .await
        .expect("webhook");
    // Six deliveries fail for good (five in a row make it failing), then one succeeds.
    let failed = attempt_all(store.as_ref(), 6, NextStep::Failed).await;
    attempt_all(store.as_ref(), 1, NextStep::Succeeded).await;
    let health = store
        .find_webhook(&"acme".into(), webhook)
        .await
        .unwrap()
        .unwrap()
        .health;
    assert_eq!(health.consecutive_failures, 0);
    assert_eq!(
        store
            .claim(&request(now_ms()))
            .await
            .unwrap()
            .deliveries
            .len(),
        0
    );
    drop(store);

    // The catch-up was queued with the success and waits for a node to run it.
    let store = herald::app::open_store(&url)
        .await
        .expect("store opens again");
    let mut queued = 0;
    loop {
        let step = store.continue_recoveries(now_ms()).await.expect("step");
        queued += step.queued;
        if !step.more {
            break;
        }
    }
    assert_eq!(queued, 6);
    let again = store.claim(&request(now_ms())).await.unwrap().deliveries;
    let mut resent: Vec<i64> = again.iter().map(|d| d.event_seq).collect();
    let mut expected: Vec<i64> = failed.iter().map(|d| d.event_seq).collect();
    resent.sort_unstable();
    expected.sort_unstable();
    assert_eq!(resent, expected, "each failed event once, nothing else");
    assert!(again.iter().all(|d| d.attempt_number == 1));
    // Nothing is left to recover.
    let step = store.continue_recoveries(now_ms()).await.expect("step");
    assert_eq!(step.queued, 0);
    assert!(!step.more);
}
