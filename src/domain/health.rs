//! A webhook's health: derived from its attempts as they finish, and the transitions
//! (failing, disabled, recovered) that tell the operator and start a catch-up.

use serde::Serialize;
use utoipa::ToSchema;

use super::time::format_ms;

/// Where a webhook stands, as `GET /v1/webhooks/{id}/health` shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum HealthState {
    /// Fewer consecutive failures than the threshold.
    Healthy,
    /// At least [`HealthPolicy::failing_after`] attempts in a row ended failed.
    Failing,
    /// Switched off by Herald: the endpoint answered 410 Gone, or failed for too long.
    Disabled,
}

impl HealthState {
    pub fn as_str(self) -> &'static str {
        match self {
            HealthState::Healthy => "healthy",
            HealthState::Failing => "failing",
            HealthState::Disabled => "disabled",
        }
    }

    pub fn parse(text: &str) -> Option<HealthState> {
        [
            HealthState::Healthy,
            HealthState::Failing,
            HealthState::Disabled,
        ]
        .into_iter()
        .find(|s| s.as_str() == text)
    }
}

/// The settings health follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HealthPolicy {
    /// Consecutive failed attempts that make a webhook `failing`.
    pub failing_after: u32,
    /// Continuous failure after which a failing webhook is disabled; `None`: never.
    pub disable_after_ms: Option<i64>,
    /// How far back an automatic catch-up reaches; `None`: no automatic catch-up.
    pub auto_recover_ms: Option<i64>,
    /// The longest a delivery can take from its event's creation to its end (the retry
    /// schedule and every attempt's timeout): a catch-up looks at events created up to this
    /// long before the streak began.
    pub delivery_span_ms: i64,
    /// Whether transitions queue an operator notification.
    pub notify_operator: bool,
}

impl Default for HealthPolicy {
    fn default() -> HealthPolicy {
        HealthPolicy {
            failing_after: 5,
            disable_after_ms: Some(5 * 24 * 3_600_000),
            auto_recover_ms: Some(24 * 3_600_000),
            delivery_span_ms: 16 * 60_000,
            notify_operator: false,
        }
    }
}

impl HealthPolicy {
    /// The range of events a catch-up looks at, after a webhook recovered at `at_ms` from a
    /// streak that began at `streak_since_ms`: created within the catch-up's reach, and early
    /// enough that their delivery could have ended during the streak. `None`: no catch-up.
    pub fn catch_up(&self, streak_since_ms: i64, at_ms: i64) -> Option<(i64, i64)> {
        let reach = self.auto_recover_ms?;
        let since = (at_ms - reach).max(streak_since_ms - self.delivery_span_ms);
        Some((since, at_ms + 1))
    }
}

/// A webhook's health record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Health {
    pub state: HealthState,
    pub consecutive_failures: i64,
    pub failing_since_ms: Option<i64>,
    pub last_attempt_at_ms: Option<i64>,
    pub last_success_at_ms: Option<i64>,
    pub last_failure_at_ms: Option<i64>,
    pub last_response_status: Option<i64>,
    pub disabled_at_ms: Option<i64>,
    pub disabled_reason: Option<String>,
}

impl Default for Health {
    fn default() -> Health {
        Health {
            state: HealthState::Healthy,
            consecutive_failures: 0,
            failing_since_ms: None,
            last_attempt_at_ms: None,
            last_success_at_ms: None,
            last_failure_at_ms: None,
            last_response_status: None,
            disabled_at_ms: None,
            disabled_reason: None,
        }
    }
}

/// A finished attempt, as health sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FinishedAttempt {
    /// When it started.
    pub at_ms: i64,
    pub succeeded: bool,
    pub response_status: Option<i64>,
}

/// A change of state that the operator hears about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transition {
    /// The webhook became `failing`.
    Failing,
    /// Herald switched the webhook off.
    Disabled { reason: String },
    /// A `failing` webhook answered again; the streak it ended began at `streak_since_ms`
    /// and counted `failures`.
    Recovered { streak_since_ms: i64, failures: i64 },
}

impl Transition {
    /// The notification type the operator receives.
    pub fn kind(&self) -> &'static str {
        match self {
            Transition::Failing => "webhook.failing",
            Transition::Disabled { .. } => "webhook.disabled",
            Transition::Recovered { .. } => "webhook.recovered",
        }
    }
}

/// Why a 410 disables a webhook.
pub const GONE_REASON: &str = "The endpoint answered 410 Gone";

impl Health {
    /// Applies a finished attempt; returns the transitions it caused, in order.
    pub fn apply(&mut self, attempt: FinishedAttempt, policy: &HealthPolicy) -> Vec<Transition> {
        let mut transitions = Vec::new();
        if self
            .last_attempt_at_ms
            .is_none_or(|last| attempt.at_ms >= last)
        {
            self.last_attempt_at_ms = Some(attempt.at_ms);
            self.last_response_status = attempt.response_status;
        }
        if attempt.succeeded {
            self.last_success_at_ms = latest(self.last_success_at_ms, attempt.at_ms);
            if self.state == HealthState::Failing {
                transitions.push(Transition::Recovered {
                    streak_since_ms: self.failing_since_ms.unwrap_or(attempt.at_ms),
                    failures: self.consecutive_failures,
                });
                self.state = HealthState::Healthy;
            }
            self.consecutive_failures = 0;
            self.failing_since_ms = None;
            return transitions;
        }
        self.last_failure_at_ms = latest(self.last_failure_at_ms, attempt.at_ms);
        self.consecutive_failures += 1;
        // Results reach the store in the order attempts finish, and several nodes write
        // theirs side by side: the streak began at its earliest failure, whichever came first.
        let since = self
            .failing_since_ms
            .map_or(attempt.at_ms, |since| since.min(attempt.at_ms));
        self.failing_since_ms = Some(since);
        if self.state == HealthState::Disabled {
            return transitions;
        }
        if attempt.response_status == Some(410) {
            transitions.push(self.disable(attempt.at_ms, GONE_REASON.to_string()));
            return transitions;
        }
        if self.state == HealthState::Healthy
            && self.consecutive_failures >= i64::from(policy.failing_after.max(1))
        {
            self.state = HealthState::Failing;
            transitions.push(Transition::Failing);
        }
        if let Some(limit) = policy.disable_after_ms
            && self.state == HealthState::Failing
            && attempt.at_ms - since >= limit
        {
            let reason = format!(
                "Every attempt failed since {} ({} in a row)",
                format_ms(since),
                self.consecutive_failures
            );
            transitions.push(self.disable(attempt.at_ms, reason));
        }
        transitions
    }

    fn disable(&mut self, at_ms: i64, reason: String) -> Transition {
        self.state = HealthState::Disabled;
        self.disabled_at_ms = Some(at_ms);
        self.disabled_reason = Some(reason.clone());
        Transition::Disabled { reason }
    }

    /// A partner switched the webhook back on: healthy, with a clean slate.
    pub fn reenabled(&mut self) {
        self.state = HealthState::Healthy;
        self.consecutive_failures = 0;
        self.failing_since_ms = None;
        self.disabled_at_ms = None;
        self.disabled_reason = None;
    }
}

fn latest(known: Option<i64>, at_ms: i64) -> Option<i64> {
    Some(known.map_or(at_ms, |known| known.max(at_ms)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> HealthPolicy {
        HealthPolicy {
            failing_after: 3,
            disable_after_ms: Some(10_000),
            auto_recover_ms: Some(60_000),
            delivery_span_ms: 5_000,
            notify_operator: true,
        }
    }

    fn failed(at_ms: i64, status: Option<i64>) -> FinishedAttempt {
        FinishedAttempt {
            at_ms,
            succeeded: false,
            response_status: status,
        }
    }

    fn succeeded(at_ms: i64) -> FinishedAttempt {
        FinishedAttempt {
            at_ms,
            succeeded: true,
            response_status: Some(200),
        }
    }

    #[test]
    fn the_threshold_failure_makes_it_failing_once_and_a_success_recovers_it() {
        let mut health = Health::default();
        assert!(health.apply(failed(100, Some(500)), &policy()).is_empty());
        assert!(health.apply(failed(200, None), &policy()).is_empty());
        assert_eq!(
            health.apply(failed(300, Some(503)), &policy()),
            [Transition::Failing]
        );
        assert!(health.apply(failed(400, Some(503)), &policy()).is_empty());
        assert_eq!(health.state, HealthState::Failing);
        assert_eq!(health.consecutive_failures, 4);
        assert_eq!(health.failing_since_ms, Some(100));
        assert_eq!(health.last_response_status, Some(503));
        assert_eq!(
            health.apply(succeeded(500), &policy()),
            [Transition::Recovered {
                streak_since_ms: 100,
                failures: 4
            }]
        );
        assert_eq!(health.state, HealthState::Healthy);
        assert_eq!(health.consecutive_failures, 0);
        assert_eq!(health.failing_since_ms, None);
        assert_eq!(health.last_success_at_ms, Some(500));
        assert_eq!(health.last_failure_at_ms, Some(400));
    }

    #[test]
    fn a_streak_begins_at_its_earliest_failure_whatever_order_results_come_in() {
        let mut health = Health::default();
        health.apply(failed(300, Some(500)), &policy());
        health.apply(failed(100, Some(500)), &policy());
        health.apply(failed(200, Some(500)), &policy());
        assert_eq!(health.failing_since_ms, Some(100));
        assert_eq!(health.consecutive_failures, 3);
        assert_eq!(health.last_failure_at_ms, Some(300));
        assert_eq!(health.last_attempt_at_ms, Some(300));
    }

    #[test]
    fn a_success_below_the_threshold_is_no_transition() {
        let mut health = Health::default();
        health.apply(failed(100, Some(500)), &policy());
        assert!(health.apply(succeeded(200), &policy()).is_empty());
        assert_eq!(health.consecutive_failures, 0);
    }

    #[test]
    fn gone_disables_at_once() {
        let mut health = Health::default();
        let transitions = health.apply(failed(100, Some(410)), &policy());
        assert_eq!(
            transitions,
            [Transition::Disabled {
                reason: GONE_REASON.into()
            }]
        );
        assert_eq!(health.state, HealthState::Disabled);
        assert_eq!(health.disabled_at_ms, Some(100));
        // Attempts still in flight when it was disabled change no state.
        assert!(health.apply(failed(150, Some(410)), &policy()).is_empty());
        assert!(health.apply(succeeded(200), &policy()).is_empty());
        assert_eq!(health.state, HealthState::Disabled);
    }

    #[test]
    fn failing_for_longer_than_the_limit_disables() {
        let mut health = Health::default();
        for at in [0, 1_000, 2_000] {
            health.apply(failed(at, Some(500)), &policy());
        }
        assert_eq!(health.state, HealthState::Failing);
        assert!(health.apply(failed(9_999, Some(500)), &policy()).is_empty());
        let transitions = health.apply(failed(10_000, Some(500)), &policy());
        assert!(
            matches!(&transitions[..], [Transition::Disabled { reason }] if reason.contains("1970-01-01T00:00:00.000Z"))
        );
        assert_eq!(health.state, HealthState::Disabled);
    }

    #[test]
    fn without_a_limit_failing_never_disables() {
        let policy = HealthPolicy {
            disable_after_ms: None,
            ..policy()
        };
        let mut health = Health::default();
        for at in 0..10 {
            health.apply(failed(at * 1_000_000, Some(500)), &policy);
        }
        assert_eq!(health.state, HealthState::Failing);
    }

    #[test]
    fn a_catch_up_reaches_back_to_the_streak_but_no_further_than_allowed() {
        // A short streak: from a delivery span before it began.
        assert_eq!(policy().catch_up(100_000, 110_000), Some((95_000, 110_001)));
        // A streak longer than the reach: the reach.
        assert_eq!(policy().catch_up(0, 100_000), Some((40_000, 100_001)));
        let off = HealthPolicy {
            auto_recover_ms: None,
            ..policy()
        };
        assert_eq!(off.catch_up(0, 100_000), None);
    }

    #[test]
    fn reenabling_starts_from_a_clean_slate() {
        let mut health = Health::default();
        health.apply(failed(100, Some(410)), &policy());
        health.reenabled();
        assert_eq!(health.state, HealthState::Healthy);
        assert_eq!(health.consecutive_failures, 0);
        assert_eq!(health.disabled_reason, None);
        assert_eq!(health.last_failure_at_ms, Some(100));
    }
}
