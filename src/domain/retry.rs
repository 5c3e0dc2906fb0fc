//! The retry policy, a pure function: the attempt that just failed, the schedule, a jitter
//! draw and a `Retry-After` go in; the delay before the next attempt (or none) comes out.

use std::time::Duration;

/// Up to ±10% of each scheduled delay, so retries of many deliveries spread out.
pub const JITTER_FRACTION: f64 = 0.10;

#[derive(Debug, Clone, PartialEq)]
pub struct RetryPolicy {
    /// Delays after attempts 1..N-1; N = `delays.len() + 1` attempts per cycle.
    pub delays: Vec<Duration>,
}

impl RetryPolicy {
    pub fn max_attempts(&self) -> u32 {
        self.delays.len() as u32 + 1
    }

    /// The delay after failed attempt `attempt` (1-based) of a cycle, or `None` when it was
    /// the last. `jitter` is a draw from [-1, 1]. A `Retry-After` from the receiver replaces
    /// the scheduled delay, capped at the schedule's largest delay.
    pub fn next_delay(
        &self,
        attempt: u32,
        jitter: f64,
        retry_after: Option<Duration>,
    ) -> Option<Duration> {
        if attempt == 0 || attempt >= self.max_attempts() {
            return None;
        }
        let scheduled = *self.delays.get(attempt as usize - 1)?;
        if let Some(asked) = retry_after {
            let largest = self.delays.iter().max().copied().unwrap_or_default();
            return Some(asked.min(largest));
        }
        // Never panics: a jitter that is not a number counts as none, and a product too
        // large for a duration keeps the scheduled delay.
        let jitter = if jitter.is_finite() { jitter } else { 0.0 };
        let factor = 1.0 + JITTER_FRACTION * jitter.clamp(-1.0, 1.0);
        Some(Duration::try_from_secs_f64(scheduled.as_secs_f64() * factor).unwrap_or(scheduled))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn default_policy() -> RetryPolicy {
        RetryPolicy {
            delays: [1, 5, 25, 120, 600].map(Duration::from_secs).to_vec(),
        }
    }

    #[test]
    fn the_default_schedule_allows_six_attempts() {
        let policy = default_policy();
        assert_eq!(policy.max_attempts(), 6);
        let delays: Vec<_> = (1..=6).map(|a| policy.next_delay(a, 0.0, None)).collect();
        assert_eq!(
            delays,
            [Some(1), Some(5), Some(25), Some(120), Some(600), None]
                .map(|d| d.map(Duration::from_secs))
                .to_vec()
        );
    }

    #[test]
    fn jitter_stays_within_ten_percent() {
        let policy = default_policy();
        for attempt in 1..=5 {
            let base = policy.delays[attempt as usize - 1].as_secs_f64();
            for jitter in [-1.0, -0.5, 0.0, 0.3, 1.0, 7.0, -7.0] {
                let delay = policy
                    .next_delay(attempt, jitter, None)
                    .unwrap()
                    .as_secs_f64();
                assert!(
                    delay >= base * 0.9 - 1e-9 && delay <= base * 1.1 + 1e-9,
                    "{attempt} {jitter} {delay}"
                );
            }
        }
    }

    #[test]
    fn retry_after_is_honoured_up_to_the_largest_delay() {
        let policy = default_policy();
        assert_eq!(
            policy.next_delay(1, 0.9, Some(Duration::from_secs(3))),
            Some(Duration::from_secs(3))
        );
        assert_eq!(
            policy.next_delay(2, 0.0, Some(Duration::from_secs(3600))),
            Some(Duration::from_secs(600))
        );
        assert_eq!(
            policy.next_delay(6, 0.0, Some(Duration::from_secs(3))),
            None
        );
    }

    #[test]
    fn an_empty_schedule_means_one_attempt() {
        let policy = RetryPolicy { delays: vec![] };
        assert_eq!(policy.max_attempts(), 1);
        assert_eq!(policy.next_delay(1, 0.0, None), None);
    }

    #[test]
    fn no_input_makes_the_policy_panic() {
        let policy = RetryPolicy {
            delays: vec![Duration::from_secs(1), Duration::MAX],
        };
        for jitter in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY, 1.0] {
            assert!(policy.next_delay(1, jitter, None).is_some());
            assert!(policy.next_delay(2, jitter, None).is_some());
        }
        assert_eq!(
            default_policy().next_delay(1, 0.0, Some(Duration::MAX)),
            Some(Duration::from_secs(600))
        );
        assert_eq!(policy.next_delay(u32::MAX, 0.0, None), None);
    }
}

#[cfg(test)]
mod properties {
    use proptest::prelude::*;

    use super::*;

    /// Any draw, including the ones a broken random source could give.
    fn jitter() -> impl Strategy<Value = f64> {
        prop_oneof![
            any::<f64>(),
            Just(f64::NAN),
            Just(f64::INFINITY),
            Just(f64::NEG_INFINITY),
            Just(f64::MAX),
        ]
    }

    /// Schedules as configuration allows them: up to 20 delays of up to 7 days.
    fn policy() -> impl Strategy<Value = RetryPolicy> {
        prop::collection::vec(0u64..=7 * 86_400_000, 0..=20).prop_map(|ms| RetryPolicy {
            delays: ms.into_iter().map(Duration::from_millis).collect(),
        })
    }

    proptest! {
        #[test]
        fn each_delay_is_within_ten_percent_of_the_schedule(
            policy in policy(),
            attempt in 1u32..=21,
            jitter in -1.0f64..=1.0,
        ) {
            prop_assume!(attempt < policy.max_attempts());
            let scheduled = policy.delays[attempt as usize - 1].as_secs_f64();
            let delay = policy.next_delay(attempt, jitter, None).unwrap().as_secs_f64();
            // Durations are whole nanoseconds: allow one for rounding.
            prop_assert!(delay >= scheduled * (1.0 - JITTER_FRACTION) - 1e-9, "{delay} {scheduled}");
            prop_assert!(delay <= scheduled * (1.0 + JITTER_FRACTION) + 1e-9, "{delay} {scheduled}");
        }

        #[test]
        fn attempts_past_the_last_have_no_delay(
            policy in policy(),
            past in 0u32..1000,
            jitter in jitter(),
            retry_after in prop::option::of(any::<u64>()),
        ) {
            let retry_after = retry_after.map(Duration::from_millis);
            let last = policy.max_attempts();
            prop_assert_eq!(policy.next_delay(last + past, jitter, retry_after), None);
            prop_assert_eq!(policy.next_delay(0, jitter, retry_after), None);
        }

        #[test]
        fn retry_after_is_followed_up_to_the_largest_delay(
            policy in policy(),
            attempt in 1u32..=21,
            asked_ms in any::<u64>(),
        ) {
            prop_assume!(attempt < policy.max_attempts());
            let asked = Duration::from_millis(asked_ms);
            let largest = *policy.delays.iter().max().unwrap();
            prop_assert_eq!(
                policy.next_delay(attempt, 0.0, Some(asked)),
                Some(asked.min(largest))
            );
        }

        #[test]
        fn any_jitter_gives_a_delay_without_panicking(
            policy in policy(),
            attempt in prop_oneof![1u32..=21, any::<u32>()],
            jitter in jitter(),
        ) {
            let delay = policy.next_delay(attempt, jitter, None);
            prop_assert_eq!(delay.is_some(), attempt >= 1 && attempt < policy.max_attempts());
            if let Some(delay) = delay {
                let scheduled = policy.delays[attempt as usize - 1];
                prop_assert!(delay <= scheduled.mul_f64(1.0 + JITTER_FRACTION) + Duration::from_nanos(1));
            }
        }
    }
}
