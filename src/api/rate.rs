//! The partner write rate: one token bucket per tenant, shared by every partner route that
//! writes. A route opts in by calling [`WriteLimiter::admit`] right after authorising its
//! caller; reads and producer routes never do.

use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::middleware::NoOpMiddleware;
use governor::state::keyed::DefaultKeyedStateStore;
use governor::{Quota, RateLimiter};

use super::error::ApiError;
use crate::config::WriteRate;
use crate::domain::ids::TenantId;

/// Every this many admissions, tenants whose bucket has refilled are forgotten, so the map
/// holds at most the tenants seen since then plus those still over their rate.
const FORGET_EVERY: u32 = 1_024;

/// Per-tenant limiter of partner writes.
pub struct WriteLimiter<C: Clock = DefaultClock> {
    limiter: RateLimiter<TenantId, DefaultKeyedStateStore<TenantId>, C, NoOpMiddleware<C::Instant>>,
    admitted: AtomicU32,
}

impl WriteLimiter {
    pub fn new(rate: WriteRate, burst: u32) -> WriteLimiter {
        WriteLimiter::with_clock(rate, burst, DefaultClock::default())
    }
}

impl<C: Clock> WriteLimiter<C> {
    fn with_clock(rate: WriteRate, burst: u32, clock: C) -> WriteLimiter<C> {
        // The configuration bounds both (at least one per minute, a burst of at least one).
        let period = (rate.per / rate.count.max(1)).max(Duration::from_nanos(1));
        let quota = Quota::with_period(period)
            .expect("a non-zero period")
            .allow_burst(NonZeroU32::new(burst).unwrap_or(NonZeroU32::MIN));
        WriteLimiter {
            limiter: RateLimiter::new(quota, DefaultKeyedStateStore::default(), clock),
            admitted: AtomicU32::new(0),
        }
    }

    /// Takes one write from `tenant`'s bucket, or refuses it with 429 and the whole seconds
    /// (at least one) until the bucket holds a write again.
    pub fn admit(&self, tenant: &TenantId) -> Result<(), ApiError> {
        if self.admitted.fetch_add(1, Ordering::Relaxed) % FORGET_EVERY == FORGET_EVERY - 1 {
            self.limiter.retain_recent();
            self.limiter.shrink_to_fit();
        }
        match self.limiter.check_key(tenant) {
            Ok(()) => Ok(()),
            Err(not_until) => {
                let wait = not_until.wait_time_from(self.limiter.clock().now());
                Err(ApiError::TooManyRequests {
                    retry_after_secs: whole_seconds(wait),
                })
            }
        }
    }

    /// Tenants the limiter currently remembers.
    #[cfg(test)]
    fn remembered(&self) -> usize {
        self.limiter.len()
    }
}

/// A wait as `Retry-After` whole seconds: rounded up, at least one.
fn whole_seconds(wait: Duration) -> u64 {
    let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    secs.max(1)
}

#[cfg(test)]
mod tests {
    use governor::clock::FakeRelativeClock;

    use super::*;

    fn tenant(name: &str) -> TenantId {
        TenantId::from(name.to_string())
    }

    fn per_minute(count: u32) -> WriteRate {
        WriteRate {
            count,
            per: Duration::from_secs(60),
        }
    }

    fn retry_after(result: Result<(), ApiError>) -> u64 {
        match result {
            Err(ApiError::TooManyRequests { retry_after_secs }) => retry_after_secs,
            other => panic!("expected 429, got {other:?}"),
        }
    }

    #[test]
    fn a_tenant_beyond_its_burst_waits_for_the_rate_and_others_do_not() {
        let clock = FakeRelativeClock::default();
        let limiter = WriteLimiter::with_clock(per_minute(1), 3, clock.clone());
        for _ in 0..3 {
            limiter.admit(&tenant("acme")).expect("within the burst");
        }
        assert_eq!(retry_after(limiter.admit(&tenant("acme"))), 60);
        limiter
            .admit(&tenant("umbrella"))
            .expect("another tenant has its own bucket");
        clock.advance(Duration::from_millis(59_500));
        assert_eq!(retry_after(limiter.admit(&tenant("acme"))), 1, "rounded up");
        clock.advance(Duration::from_millis(500));
        limiter.admit(&tenant("acme")).expect("one write refilled");
        assert_eq!(retry_after(limiter.admit(&tenant("acme"))), 60);
    }

    #[test]
    fn tenants_whose_bucket_refilled_are_forgotten() {
        let clock = FakeRelativeClock::default();
        let limiter = WriteLimiter::with_clock(per_minute(60), 5, clock.clone());
        for n in 0..FORGET_EVERY - 1 {
            limiter.admit(&tenant(&format!("t{n}"))).unwrap();
        }
        assert_eq!(limiter.remembered(), (FORGET_EVERY - 1) as usize);
        clock.advance(Duration::from_secs(60));
        limiter.admit(&tenant("busy")).unwrap();
        assert!(limiter.remembered() <= 1, "{}", limiter.remembered());
    }

    #[test]
    fn waits_become_whole_seconds_of_at_least_one() {
        assert_eq!(whole_seconds(Duration::ZERO), 1);
        assert_eq!(whole_seconds(Duration::from_millis(1)), 1);
        assert_eq!(whole_seconds(Duration::from_secs(2)), 2);
        assert_eq!(whole_seconds(Duration::from_millis(2_001)), 3);
    }
}
