//! The operator's notifications: an outbox that health transitions write to in their own
//! transaction, and that the notifier of any node drains under a lease, as the dispatcher
//! drains deliveries. A notification is `queued` until it is `sent` or ends `failed`; a claim
//! only sets a lease, so one whose node dies is taken again once the lease runs out.

use async_trait::async_trait;

use super::StoreResult;
use crate::domain::ids::NodeId;

/// A notification claimed under a lease, to be sent once and its outcome recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimedNotification {
    /// Also its `webhook-id`, the same on every attempt.
    pub id: String,
    pub kind: String,
    /// The JSON to send, byte for byte as queued.
    pub body: String,
    /// Attempts made before this one.
    pub attempts: u32,
}

/// What became of one attempt to send a notification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NotificationOutcome {
    Sent,
    /// A failed attempt to be tried again at `at_ms`.
    RetryAt {
        at_ms: i64,
        error: String,
    },
    /// A failed attempt after which there is none: the answer said not to, or the schedule
    /// ran out.
    Failed {
        error: String,
    },
}

/// A notification as stored, for operators and tests.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct NotificationRecord {
    pub id: String,
    pub kind: String,
    pub body: String,
    /// `queued`, `sent` or `failed`.
    pub state: String,
    pub attempts: i64,
    pub next_attempt_at: i64,
    pub last_error: Option<String>,
    pub created_at: i64,
}

#[async_trait]
pub trait NotificationStore: Send + Sync {
    /// Queues a notification due at once. Transitions queue theirs inside their own
    /// transaction with the same statement; this is for the rest (the command line, tests).
    async fn queue_notification(
        &self,
        id: &str,
        kind: &str,
        body: &str,
        now_ms: i64,
    ) -> StoreResult<()>;
    /// Takes up to `limit` due notifications that nobody holds, under a lease until
    /// `now_ms + lease_ms`, oldest due first. Two nodes never hold the same one.
    async fn claim_notifications(
        &self,
        node: &NodeId,
        now_ms: i64,
        lease_ms: i64,
        limit: u32,
    ) -> StoreResult<Vec<ClaimedNotification>>;
    /// Records an attempt's outcome and lets the lease go; false (nothing written) when
    /// `node` no longer holds the notification.
    async fn record_notification(
        &self,
        node: &NodeId,
        id: &str,
        outcome: &NotificationOutcome,
        now_ms: i64,
    ) -> StoreResult<bool>;
    /// Every notification, oldest first.
    async fn list_notifications(&self) -> StoreResult<Vec<NotificationRecord>>;
}

/// Records an attempt by the lease holder: `(state, next_attempt_at or NULL, error or NULL,
/// now, id, node)`. A success keeps the last error, which tells what the earlier attempts met.
pub(super) const RECORD_NOTIFICATION: &str = "UPDATE notifications SET state = $1, \
     attempts = attempts + 1, next_attempt_at = COALESCE($2, next_attempt_at), \
     last_error = COALESCE($3, last_error), locked_until = NULL, locked_by = NULL, \
     updated_at = $4 WHERE id = $5 AND state = 'queued' AND locked_by = $6";

pub(super) const LIST_NOTIFICATIONS: &str = "SELECT id, kind, body, state, attempts, \
     next_attempt_at, last_error, created_at FROM notifications ORDER BY created_at, id";

/// The due notifications nobody holds: `$1` = now.
pub(super) const DUE_NOTIFICATIONS: &str = "SELECT id FROM notifications \
     WHERE state = 'queued' AND next_attempt_at <= $1 \
     AND (locked_until IS NULL OR locked_until <= $1) ORDER BY next_attempt_at, id";

/// [`RECORD_NOTIFICATION`]'s first three parameters for an outcome.
pub(super) fn outcome_columns(
    outcome: &NotificationOutcome,
) -> (&'static str, Option<i64>, Option<&str>) {
    match outcome {
        NotificationOutcome::Sent => ("sent", None, None),
        NotificationOutcome::RetryAt { at_ms, error } => ("queued", Some(*at_ms), Some(error)),
        NotificationOutcome::Failed { error } => ("failed", None, Some(error)),
    }
}

/// A claimed row as both backends return it.
#[derive(sqlx::FromRow)]
pub(super) struct ClaimedRow {
    id: String,
    kind: String,
    body: String,
    attempts: i64,
    next_attempt_at: i64,
}

/// Claimed rows in the order they fell due (`RETURNING` promises none).
pub(super) fn claimed_in_order(mut rows: Vec<ClaimedRow>) -> Vec<ClaimedNotification> {
    rows.sort_by(|a, b| (a.next_attempt_at, &a.id).cmp(&(b.next_attempt_at, &b.id)));
    rows.into_iter()
        .map(|row| ClaimedNotification {
            id: row.id,
            kind: row.kind,
            body: row.body,
            attempts: u32::try_from(row.attempts).unwrap_or(u32::MAX),
        })
        .collect()
}
