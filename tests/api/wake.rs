//! The dispatcher sleeps until the store's next due instant: the store must always be able to
//! say what that is, for pending events, queued deliveries and leases alike. (A failing query
//! here does not fail a delivery test: the dispatcher falls back to polling every second.)

use std::collections::HashMap;

use herald::domain::claim::Capacity;
use herald::domain::time::now_ms;
use herald::store::ClaimRequest;

use super::isolation::{fresh_store, new_event, subscribe_to_everything};

#[tokio::test]
async fn the_store_names_the_next_instant_the_dispatcher_has_work() {
    let Some((store, _dir)) = fresh_store().await else {
        return;
    };
    assert_eq!(store.next_wake_at().await.expect("nothing to do"), None);

    subscribe_to_everything(store.as_ref()).await;
    store
        .publish_events(vec![new_event("{}")])
        .await
        .expect("event stored");
    let pending = store.next_wake_at().await.expect("a pending event");
    assert!(
        pending.is_some_and(|at| at <= now_ms()),
        "a pending event is due now: {pending:?}"
    );

    // Fan out without claiming: the delivery waits in the queue, due at once.
    let before = now_ms();
    store
        .claim(&ClaimRequest {
            node: "n1".into(),
            now_ms: before,
            lease_ms: 60_000,
            fan_out_limit: 100,
            capacity: Capacity {
                limit: 0,
                per_webhook_limit: 100,
                in_flight: HashMap::new(),
                per_tenant_limit: 100,
                in_flight_per_tenant: HashMap::new(),
            },
        })
        .await
        .expect("fanned out");
    let queued = store.next_wake_at().await.expect("a queued delivery");
    assert!(
        queued.is_some_and(|at| at > 0 && at <= now_ms()),
        "the queued delivery is due now: {queued:?} (fanned out at {before})"
    );
}
