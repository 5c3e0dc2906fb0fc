//! Statuses and the rule that derives an event's status from its deliveries.

use serde::Serialize;
use utoipa::ToSchema;

/// An event's lifecycle, as the partner API shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum EventStatus {
    /// Stored, not fanned out to webhooks yet.
    Pending,
    /// At least one delivery of its latest cycle is not final.
    Processing,
    /// Every delivery succeeded.
    Completed,
    /// No delivery pending, at least one failed for good.
    Failed,
    /// No active webhook was subscribed to its type when it was fanned out.
    Skipped,
}

impl EventStatus {
    pub const ALL: [EventStatus; 5] = [
        EventStatus::Pending,
        EventStatus::Processing,
        EventStatus::Completed,
        EventStatus::Failed,
        EventStatus::Skipped,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            EventStatus::Pending => "pending",
            EventStatus::Processing => "processing",
            EventStatus::Completed => "completed",
            EventStatus::Failed => "failed",
            EventStatus::Skipped => "skipped",
        }
    }

    pub fn parse(text: &str) -> Option<EventStatus> {
        EventStatus::ALL.into_iter().find(|s| s.as_str() == text)
    }

    /// Final statuses carry a `processedAt`.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            EventStatus::Completed | EventStatus::Failed | EventStatus::Skipped
        )
    }
}

/// A delivery's state in the queue (one row per event, webhook and cycle).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryState {
    /// Waiting for its next attempt (`next_attempt_at`).
    Queued,
    /// Claimed by a node under a lease; an attempt is in flight.
    InFlight,
    Succeeded,
    Failed,
    /// Replaced by a newer cycle for the same event and webhook (manual retry); ignored when
    /// the event's status is derived, so the status reflects each delivery's latest cycle.
    Superseded,
}

impl DeliveryState {
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryState::Queued => "queued",
            DeliveryState::InFlight => "in_flight",
            DeliveryState::Succeeded => "succeeded",
            DeliveryState::Failed => "failed",
            DeliveryState::Superseded => "superseded",
        }
    }

    pub fn parse(text: &str) -> Option<DeliveryState> {
        [
            DeliveryState::Queued,
            DeliveryState::InFlight,
            DeliveryState::Succeeded,
            DeliveryState::Failed,
            DeliveryState::Superseded,
        ]
        .into_iter()
        .find(|s| s.as_str() == text)
    }
}

/// Where a delivery goes after an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NextStep {
    Succeeded,
    /// Queued again, due at this instant (Unix milliseconds).
    RetryAt(i64),
    Failed,
}

impl NextStep {
    /// The state the delivery moves to, and when it is due again.
    pub fn delivery_state(self) -> (DeliveryState, Option<i64>) {
        match self {
            NextStep::Succeeded => (DeliveryState::Succeeded, None),
            NextStep::RetryAt(at) => (DeliveryState::Queued, Some(at)),
            NextStep::Failed => (DeliveryState::Failed, None),
        }
    }
}

/// How one attempt went, as its delivery log says: a retried attempt failed too.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttemptStatus {
    Success,
    Failed,
}

impl AttemptStatus {
    pub fn of(next: NextStep) -> AttemptStatus {
        match next {
            NextStep::Succeeded => AttemptStatus::Success,
            NextStep::RetryAt(_) | NextStep::Failed => AttemptStatus::Failed,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            AttemptStatus::Success => "success",
            AttemptStatus::Failed => "failed",
        }
    }

    pub fn parse(text: &str) -> Option<AttemptStatus> {
        [AttemptStatus::Success, AttemptStatus::Failed]
            .into_iter()
            .find(|s| s.as_str() == text)
    }
}

/// The status of a fanned-out event given the states of its deliveries (all cycles).
/// `None` when there is nothing to derive from (no current delivery): the caller keeps the
/// event's status as it is.
pub fn derive_event_status(states: impl IntoIterator<Item = DeliveryState>) -> Option<EventStatus> {
    let (mut unfinished, mut failed, mut succeeded) = (false, false, false);
    for state in states {
        match state {
            DeliveryState::Queued | DeliveryState::InFlight => unfinished = true,
            DeliveryState::Failed => failed = true,
            DeliveryState::Succeeded => succeeded = true,
            DeliveryState::Superseded => {}
        }
    }
    if unfinished {
        Some(EventStatus::Processing)
    } else if failed {
        Some(EventStatus::Failed)
    } else if succeeded {
        Some(EventStatus::Completed)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::DeliveryState::*;
    use super::*;

    #[test]
    fn any_unfinished_delivery_keeps_the_event_processing() {
        assert_eq!(
            derive_event_status([Succeeded, Queued]),
            Some(EventStatus::Processing)
        );
        assert_eq!(
            derive_event_status([Failed, InFlight]),
            Some(EventStatus::Processing)
        );
    }

    #[test]
    fn one_failure_fails_a_finished_event() {
        assert_eq!(
            derive_event_status([Succeeded, Failed]),
            Some(EventStatus::Failed)
        );
    }

    #[test]
    fn all_successes_complete_it() {
        assert_eq!(
            derive_event_status([Succeeded, Succeeded]),
            Some(EventStatus::Completed)
        );
    }

    #[test]
    fn superseded_cycles_are_ignored() {
        assert_eq!(
            derive_event_status([Superseded, Succeeded]),
            Some(EventStatus::Completed)
        );
        assert_eq!(derive_event_status([Superseded]), None);
        assert_eq!(derive_event_status([]), None);
    }

    #[test]
    fn a_retried_attempt_is_logged_as_failed_and_queues_its_delivery_again() {
        assert_eq!(
            AttemptStatus::of(NextStep::RetryAt(5)),
            AttemptStatus::Failed
        );
        assert_eq!(NextStep::RetryAt(5).delivery_state(), (Queued, Some(5)));
        assert_eq!(
            AttemptStatus::of(NextStep::Succeeded),
            AttemptStatus::Success
        );
        assert_eq!(NextStep::Failed.delivery_state(), (Failed, None));
    }

    #[test]
    fn statuses_round_trip_through_text() {
        for status in EventStatus::ALL {
            assert_eq!(EventStatus::parse(status.as_str()), Some(status));
        }
        assert_eq!(EventStatus::parse("done"), None);
        for state in [Queued, InFlight, Succeeded, Failed, Superseded] {
            assert_eq!(DeliveryState::parse(state.as_str()), Some(state));
        }
        for status in [AttemptStatus::Success, AttemptStatus::Failed] {
            assert_eq!(AttemptStatus::parse(status.as_str()), Some(status));
        }
    }
}
