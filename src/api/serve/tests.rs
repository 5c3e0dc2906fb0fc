//! The connection watchdog: phases, deadlines and when it fires.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::{Activity, Busy, Phase, ServeLimits};

fn limits(header_ms: u64, idle_ms: u64) -> ServeLimits {
    ServeLimits {
        header_timeout: Duration::from_millis(header_ms),
        body_timeout: Duration::from_secs(30),
        idle_timeout: Duration::from_millis(idle_ms),
        max_connections: 1,
    }
}

/// The deadline of the current phase, checked to lie `after` past some instant between
/// `from` and now.
fn deadline_of(activity: &Activity, from: Instant, after: Duration) -> Instant {
    let at = match *activity.lock() {
        Phase::Head(at) | Phase::Idle(at) => at,
        Phase::Busy(_) => panic!("busy"),
    };
    assert!(at >= from + after && at <= Instant::now() + after);
    at
}

#[test]
fn a_connection_moves_between_head_busy_and_idle_deadlines() {
    let activity = Arc::new(Activity::new(limits(10_000, 60_000)));
    let start = Instant::now();
    let head = deadline_of(
        &activity,
        start - Duration::from_secs(1),
        Duration::from_secs(10),
    );
    assert!(matches!(*activity.lock(), Phase::Head(_)));
    // Bytes of the first head do not move its deadline.
    activity.read();
    assert_eq!(*activity.lock(), Phase::Head(head));
    let busy = Busy::start(&activity);
    assert_eq!(*activity.lock(), Phase::Busy(1));
    activity.read();
    assert_eq!(*activity.lock(), Phase::Busy(1));
    let second = Busy::start(&activity);
    drop(busy);
    assert_eq!(*activity.lock(), Phase::Busy(1));
    let idle_from = Instant::now();
    drop(second);
    assert!(matches!(*activity.lock(), Phase::Idle(_)));
    deadline_of(&activity, idle_from, Duration::from_secs(60));
    // The next request's first byte starts its head deadline.
    let read_from = Instant::now();
    activity.read();
    assert!(matches!(*activity.lock(), Phase::Head(_)));
    deadline_of(&activity, read_from, Duration::from_secs(10));
}

#[tokio::test]
async fn the_watchdog_fires_at_the_deadline_and_never_while_busy() {
    let activity = Arc::new(Activity::new(limits(50, 100)));
    let busy = Busy::start(&activity);
    let waited = tokio::time::timeout(Duration::from_millis(300), activity.expired()).await;
    assert!(waited.is_err(), "fired while busy");
    let idle_from = Instant::now();
    drop(busy);
    tokio::time::timeout(Duration::from_secs(5), activity.expired())
        .await
        .expect("fires once idle too long");
    assert!(idle_from.elapsed() >= Duration::from_millis(100));
}

#[tokio::test(start_paused = true)]
async fn a_head_started_during_a_long_idle_spell_keeps_its_own_deadline() {
    let activity = Arc::new(Activity::new(limits(50, 10_000)));
    drop(Busy::start(&activity));
    let watchdog = tokio::spawn({
        let activity = activity.clone();
        async move { activity.expired().await }
    });
    tokio::time::sleep(Duration::from_millis(20)).await;
    let head_from = Instant::now();
    activity.read();
    watchdog.await.unwrap();
    let waited = head_from.elapsed();
    assert!(
        waited >= Duration::from_millis(50) && waited < Duration::from_millis(100),
        "fired {waited:?} after the head began"
    );
}
