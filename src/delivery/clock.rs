//! The dispatcher's clock: the system's, or one a test sets and advances, so that retry
//! schedules, due times and the dispatcher's own timers can be checked without waiting for
//! them.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use tokio::sync::Notify;

use crate::domain::time::now_ms;

/// Where the dispatcher reads the time (Unix milliseconds) and sleeps.
#[derive(Clone, Default)]
pub struct Clock(Option<Arc<Manual>>);

/// A clock that moves only when told to.
struct Manual {
    at_ms: AtomicI64,
    moved: Notify,
}

impl Clock {
    /// The system's clock.
    pub fn system() -> Clock {
        Clock(None)
    }

    /// A clock that stands at `start_ms` until moved.
    pub fn manual(start_ms: i64) -> Clock {
        Clock(Some(Arc::new(Manual {
            at_ms: AtomicI64::new(start_ms),
            moved: Notify::new(),
        })))
    }

    pub fn now_ms(&self) -> i64 {
        match &self.0 {
            None => now_ms(),
            Some(manual) => manual.at_ms.load(Ordering::SeqCst),
        }
    }

    /// Moves a manual clock on by `ms` (the system's clock moves by itself).
    pub fn advance(&self, ms: i64) {
        if let Some(manual) = &self.0 {
            manual.at_ms.fetch_add(ms, Ordering::SeqCst);
            manual.moved.notify_waiters();
        }
    }

    /// Ends once `duration` has passed on this clock, counted from this call (as
    /// `tokio::time::sleep` counts): on a manual clock, once it has been advanced that far,
    /// so a timer never fires in a test that does not move it.
    pub fn sleep(&self, duration: Duration) -> impl Future<Output = ()> + Send + 'static {
        let until = self
            .now_ms()
            .saturating_add(i64::try_from(duration.as_millis()).unwrap_or(i64::MAX));
        let manual = self.0.clone();
        let system = manual.is_none().then(|| tokio::time::sleep(duration));
        async move {
            if let Some(system) = system {
                return system.await;
            }
            let Some(manual) = manual else { return };
            loop {
                let moved = manual.moved.notified();
                tokio::pin!(moved);
                // Registered before the clock is read, so a move in between is not missed.
                moved.as_mut().enable();
                if manual.at_ms.load(Ordering::SeqCst) >= until {
                    return;
                }
                moved.await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_manual_sleep_ends_when_the_clock_is_advanced_past_it() {
        let clock = Clock::manual(1_000);
        let sleeper = tokio::spawn(clock.sleep(Duration::from_millis(500)));
        clock.advance(499);
        tokio::task::yield_now().await;
        assert!(!sleeper.is_finished());
        clock.advance(1);
        sleeper.await.expect("the sleep ends");
    }
}
