//! The dispatcher driven one tick at a time, with a clock the test moves: what each tick
//! claims, that nothing is attempted before it is due, and what the store recorded, asserted
//! once the dispatcher is idle, without sleeping; and the dispatcher's own loop, whose timers
//! never fire on a clock nobody moves, started by a wake-up alone.

use std::sync::Arc;
use std::time::Duration;

use herald::config::Config;
use herald::delivery::{Claims, Clock, Dispatcher, Tick, Wakeup};
use herald::domain::ids::{EventId, NodeId};
use herald::domain::status::{AttemptStatus, EventStatus};
use herald::domain::time::now_ms;
use herald::ingest::Ingest;
use herald::store::{DeliveryLog, Event, NewWebhook, PublishOutcome, Store};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use uuid::Uuid;

use super::isolation::{fresh_store, new_event};
use crate::receiver::{Reply, TestReceiver};

/// A dispatcher on `store` with the test's clock, allowed to call a local receiver.
pub(super) fn dispatcher(
    store: &Arc<dyn Store>,
    clock: &Clock,
    env: &[(&str, &str)],
) -> Dispatcher {
    woken_by(Wakeup::default(), store, clock, env)
}

/// [`dispatcher`], woken by `wakeup`.
fn woken_by(
    wakeup: Wakeup,
    store: &Arc<dyn Store>,
    clock: &Clock,
    env: &[(&str, &str)],
) -> Dispatcher {
    Dispatcher::new(
        store.clone(),
        test_config(env),
        wakeup,
        NodeId::generate(),
        clock.clone(),
    )
    .expect("dispatcher builds")
}

/// The settings with `env`, allowed to call a local receiver.
fn test_config(env: &[(&str, &str)]) -> Arc<Config> {
    let mut vars = vec![
        ("HERALD_ALLOW_HTTP".to_string(), "true".to_string()),
        (
            "HERALD_ALLOW_PRIVATE_TARGETS".to_string(),
            "true".to_string(),
        ),
    ];
    vars.extend(env.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    Arc::new(Config::load(None, vars, &[]).expect("test configuration is valid"))
}

pub(super) async fn subscribe(store: &dyn Store, url: String) {
    store
        .create_webhook(
            NewWebhook {
                id: Uuid::new_v4().into(),
                tenant: "acme".into(),
                name: "w".into(),
                url,
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

pub(super) async fn publish(store: &dyn Store) -> EventId {
    let event = new_event("{}");
    let id = event.id;
    store.publish_events(vec![event]).await.expect("stored");
    id
}

/// One tick, then every attempt it started finished and its result written.
pub(super) async fn step(dispatcher: &mut Dispatcher, store: &dyn Store) -> Tick {
    let tick = dispatcher.tick().await.expect("the tick goes through");
    dispatcher.settle().await;
    store.flush_results().await.expect("results written");
    tick
}

pub(super) async fn state(store: &dyn Store, id: EventId) -> (Event, Vec<DeliveryLog>) {
    let event = store
        .find_event(&"acme".into(), &id.to_string())
        .await
        .expect("lookup")
        .expect("the event exists");
    let logs = store.event_logs(&"acme".into(), id).await.expect("logs");
    (event, logs)
}

#[tokio::test]
async fn a_failed_attempt_is_tried_again_when_due_and_not_a_moment_before() {
    let Some((store, _dir)) = fresh_store().await else {
        return;
    };
    let receiver = TestReceiver::start(|n| Reply::status(if n == 0 { 500 } else { 200 })).await;
    subscribe(store.as_ref(), receiver.url("/h")).await;
    let id = publish(store.as_ref()).await;
    let start = now_ms();
    let clock = Clock::manual(start);
    let mut dispatcher = dispatcher(&store, &clock, &[("HERALD_RETRY_SCHEDULE", "10s")]);

    let first = step(&mut dispatcher, store.as_ref()).await;
    assert_eq!((first.fanned_out, first.claimed), (1, 1));
    let (event, logs) = state(store.as_ref(), id).await;
    assert_eq!(event.status, EventStatus::Processing);
    assert_eq!(logs.len(), 1);
    assert_eq!(logs[0].delivery_status, AttemptStatus::Failed);
    // Ten seconds, give or take the jitter of a tenth.
    let due = logs[0].next_retry_at_ms.expect("a retry is scheduled");
    assert!(
        (start + 9_000..=start + 11_000).contains(&due),
        "{due} after {start}"
    );

    clock.advance(due - start - 1);
    assert_eq!(
        step(&mut dispatcher, store.as_ref()).await.claimed,
        0,
        "not due yet"
    );
    assert_eq!(receiver.received().len(), 1);

    clock.advance(1);
    assert_eq!(
        step(&mut dispatcher, store.as_ref()).await.claimed,
        1,
        "due now"
    );
    let (event, logs) = state(store.as_ref(), id).await;
    assert_eq!(event.status, EventStatus::Completed);
    let attempts: Vec<(i64, AttemptStatus)> = logs
        .iter()
        .map(|log| (log.attempt_number, log.delivery_status))
        .collect();
    assert_eq!(
        attempts,
        [(1, AttemptStatus::Failed), (2, AttemptStatus::Success)]
    );
    assert_eq!(logs[1].next_retry_at_ms, None);
    assert_eq!(receiver.received().len(), 2);
    assert_eq!(receiver.received()[0].body, receiver.received()[1].body);
}

#[tokio::test]
async fn a_permanent_failure_is_never_tried_again() {
    let Some((store, _dir)) = fresh_store().await else {
        return;
    };
    let receiver = TestReceiver::answering(410).await;
    subscribe(store.as_ref(), receiver.url("/")).await;
    let id = publish(store.as_ref()).await;
    let clock = Clock::manual(now_ms());
    let mut dispatcher = dispatcher(&store, &clock, &[]);

    assert_eq!(step(&mut dispatcher, store.as_ref()).await.claimed, 1);
    // A day later, past every delay of the default schedule.
    clock.advance(86_400_000);
    assert_eq!(step(&mut dispatcher, store.as_ref()).await.claimed, 0);
    let (event, logs) = state(store.as_ref(), id).await;
    assert_eq!(event.status, EventStatus::Failed);
    assert_eq!(logs.len(), 1);
    assert_eq!(logs[0].response_status, Some(410));
    assert_eq!(logs[0].next_retry_at_ms, None);
    assert_eq!(receiver.received().len(), 1);
}

#[tokio::test]
async fn retries_end_with_the_last_attempt_of_the_schedule() {
    let Some((store, _dir)) = fresh_store().await else {
        return;
    };
    let receiver = TestReceiver::answering(503).await;
    subscribe(store.as_ref(), receiver.url("/")).await;
    let id = publish(store.as_ref()).await;
    let clock = Clock::manual(now_ms());
    let mut dispatcher = dispatcher(&store, &clock, &[("HERALD_RETRY_SCHEDULE", "1s,2s")]);

    let mut claimed = Vec::new();
    for _ in 0..6 {
        claimed.push(step(&mut dispatcher, store.as_ref()).await.claimed);
        clock.advance(2_500);
    }
    assert_eq!(claimed, [1, 1, 1, 0, 0, 0], "three attempts, then none");
    let (event, logs) = state(store.as_ref(), id).await;
    assert_eq!(event.status, EventStatus::Failed);
    let numbers: Vec<i64> = logs.iter().map(|log| log.attempt_number).collect();
    assert_eq!(numbers, [1, 2, 3]);
    assert!(logs[2].next_retry_at_ms.is_none());
    assert_eq!(receiver.received().len(), 3);
}

#[tokio::test]
async fn a_manual_retry_is_attempted_at_once_and_replaces_the_scheduled_retry() {
    let Some((store, _dir)) = fresh_store().await else {
        return;
    };
    let receiver = TestReceiver::start(|n| Reply::status(if n == 0 { 500 } else { 200 })).await;
    subscribe(store.as_ref(), receiver.url("/h")).await;
    let id = publish(store.as_ref()).await;
    let start = now_ms();
    let clock = Clock::manual(start);
    let mut dispatcher = dispatcher(&store, &clock, &[("HERALD_RETRY_SCHEDULE", "10s")]);
    assert_eq!(step(&mut dispatcher, store.as_ref()).await.claimed, 1);

    let retried = store
        .retry_event(&"acme".into(), id, None)
        .await
        .expect("retry queued");
    assert_eq!(retried, herald::store::RetryOutcome::Queued(1));
    // The clock only catches up with the instant the retry was queued at, far short of the
    // ten seconds the first cycle waits for: the new cycle is due at once.
    clock.advance(now_ms() - start);
    assert_eq!(step(&mut dispatcher, store.as_ref()).await.claimed, 1);
    let (event, logs) = state(store.as_ref(), id).await;
    assert_eq!(event.status, EventStatus::Completed);
    let attempts: Vec<(i64, AttemptStatus)> = logs
        .iter()
        .map(|log| (log.attempt_number, log.delivery_status))
        .collect();
    assert_eq!(
        attempts,
        [(1, AttemptStatus::Failed), (1, AttemptStatus::Success)]
    );

    // The first cycle's scheduled retry never comes.
    clock.advance(86_400_000);
    assert_eq!(step(&mut dispatcher, store.as_ref()).await.claimed, 0);
    assert_eq!(receiver.received().len(), 2);
}

#[tokio::test]
async fn a_retry_after_on_a_429_replaces_the_scheduled_delay() {
    let Some((store, _dir)) = fresh_store().await else {
        return;
    };
    let receiver = TestReceiver::start(|n| {
        if n == 0 {
            Reply::status(429).with_header("retry-after", "1")
        } else {
            Reply::status(200)
        }
    })
    .await;
    subscribe(store.as_ref(), receiver.url("/")).await;
    let id = publish(store.as_ref()).await;
    let start = now_ms();
    let clock = Clock::manual(start);
    let mut dispatcher = dispatcher(&store, &clock, &[("HERALD_RETRY_SCHEDULE", "50ms,5s")]);

    assert_eq!(step(&mut dispatcher, store.as_ref()).await.claimed, 1);
    let (_, logs) = state(store.as_ref(), id).await;
    assert_eq!(logs[0].response_status, Some(429));
    // The second of `Retry-After`, exactly: neither the 50 ms scheduled nor the cap of 5 s.
    assert_eq!(logs[0].next_retry_at_ms, Some(start + 1_000));
    clock.advance(999);
    assert_eq!(step(&mut dispatcher, store.as_ref()).await.claimed, 0);
    clock.advance(1);
    assert_eq!(step(&mut dispatcher, store.as_ref()).await.claimed, 1);
    let (event, _) = state(store.as_ref(), id).await;
    assert_eq!(event.status, EventStatus::Completed);
    assert_eq!(receiver.received().len(), 2);
}

#[tokio::test]
async fn an_idle_dispatcher_attempts_new_work_as_soon_as_it_is_woken() {
    let Some((store, _dir)) = fresh_store().await else {
        return;
    };
    let receiver = TestReceiver::answering(200).await;
    subscribe(store.as_ref(), receiver.url("/")).await;
    // The dispatcher's timers run on this clock, which never moves here: only a wake-up can
    // start an attempt, however long it takes. The store's own jobs (PostgreSQL writes
    // results in one) wake no one.
    let clock = Clock::manual(now_ms());
    let wakeup = Wakeup::default();
    let shutdown = CancellationToken::new();
    let mut tasks = JoinSet::new();
    for job in store
        .clone()
        .background_jobs(Arc::new(|| {}), shutdown.clone())
    {
        tasks.spawn(job);
    }
    tasks.spawn(woken_by(wakeup.clone(), &store, &clock, &[]).run(shutdown.clone()));
    for n in 1..=3 {
        // Idle: the last attempt's result is written, the tick that followed it found nothing.
        let id = publish(store.as_ref()).await;
        wakeup.wake();
        receiver.wait_for(n, Duration::from_secs(30)).await;
        completed(store.as_ref(), id).await;
    }
    shutdown.cancel();
    while tasks.join_next().await.is_some() {}
    assert_eq!(receiver.received().len(), 3);
}

/// Waits until the event `id` is completed.
async fn completed(store: &dyn Store, id: EventId) {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let (event, _) = state(store, id).await;
        if event.status == EventStatus::Completed {
            return;
        }
        assert!(std::time::Instant::now() < deadline, "{:?}", event.status);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_publish_to_an_idle_node_is_claimed_by_its_own_commit_on_sqlite() {
    let Some((store, _dir)) = fresh_store().await else {
        return;
    };
    let receiver = TestReceiver::answering(200).await;
    subscribe(store.as_ref(), receiver.url("/hook")).await;
    let (clock, config) = (Clock::manual(now_ms()), test_config(&[]));
    let claims = Claims::new(store.clone(), config.clone(), NodeId::generate(), clock)
        .expect("claims build");
    let mut dispatcher =
        Dispatcher::with_claims(store.clone(), config, Wakeup::default(), claims.clone());
    let tracker = TaskTracker::new();
    // PostgreSQL's publishes commit side by side and leave the claims to the dispatchers.
    let claiming = matches!(super::BACKEND, super::Backend::Sqlite);
    let ingest = Ingest::start(store.clone(), 1, Wakeup::default(), Some(claims), &tracker);
    let published = ingest
        .publish(vec![new_event("{}")])
        .await
        .expect("published");
    let Some(Ok(PublishOutcome::Created(event))) = published.first() else {
        panic!("the event is created: {published:?}");
    };
    if claiming {
        // The dispatcher has not ticked: the publishing commit claimed the delivery and
        // started its attempt; the next tick only writes its result.
        receiver.wait_for(1, Duration::from_secs(10)).await;
        dispatcher.settle().await;
        let tick = step(&mut dispatcher, store.as_ref()).await;
        assert_eq!((tick.fanned_out, tick.claimed), (0, 0));
    } else {
        let queue = store.queue_depth().await.expect("depth");
        assert_eq!((queue.pending_events, queue.in_flight), (1, 0));
        let tick = step(&mut dispatcher, store.as_ref()).await;
        assert_eq!((tick.fanned_out, tick.claimed), (1, 1));
    }
    let (event, logs) = state(store.as_ref(), event.id).await;
    assert_eq!((event.status, logs.len()), (EventStatus::Completed, 1));
    assert_eq!(receiver.received().len(), 1);
}
