//! Recovering a webhook's failed events, as both backends run it. A recovery walks the
//! events of its range in `seq` order, a window at a time: each window is one transaction
//! that re-queues what failed in it and moves the recovery's cursor, so a large recovery
//! survives a restart, and a second one over the same range finds nothing left to queue (a
//! delivery re-queued is no longer `failed`).

/// Event seqs looked at per transaction.
pub(super) const WINDOW: i64 = 2_000;
/// Windows a recover request works through itself before leaving the rest to the
/// background (the recovery job of each node).
pub(super) const INLINE_WINDOWS: i64 = 10;
/// How far an event's `created_at` may run ahead of a later `seq` (concurrent commits): the
/// search for a range's first event starts this much earlier.
const SEQ_ORDER_SLACK_MS: i64 = 60_000;

/// The events a recovery looks at: the tenant's, created in `[since, until)`, whose delivery
/// to the webhook ended failed (at or after `ended_since`, for a catch-up).
#[derive(Debug, Clone)]
pub(super) struct Range {
    pub(super) tenant: String,
    pub(super) since: i64,
    pub(super) until: i64,
    pub(super) ended_since: Option<i64>,
}

/// A binary search for the first event seq of a tenant created at or after an instant, one
/// probe (an indexed lookup) at a time: [`SeqSearch::probe`] names the seq to look at, the
/// caller answers with the `created_at` of the tenant's first event from there on.
pub(super) struct SeqSearch {
    low: i64,
    high: i64,
    since: i64,
}

impl SeqSearch {
    /// Searches `[low, high]`, the seqs of the tenant's first and last events.
    pub(super) fn new(low: i64, high: i64, since: i64) -> SeqSearch {
        SeqSearch {
            low,
            high: high + 1,
            since: since.saturating_sub(SEQ_ORDER_SLACK_MS),
        }
    }

    pub(super) fn probe(&self) -> Option<i64> {
        (self.low < self.high).then(|| self.low + (self.high - self.low) / 2)
    }

    pub(super) fn answer(&mut self, probed: i64, created_at: Option<i64>) {
        match created_at {
            Some(at) if at < self.since => self.low = probed + 1,
            _ => self.high = probed,
        }
    }

    /// The first seq to look at.
    pub(super) fn first(&self) -> i64 {
        self.low
    }
}

/// The last seq of a window that starts at `next`.
pub(super) fn window_end(next: i64, last: i64) -> i64 {
    next.saturating_add(WINDOW - 1).min(last)
}

/// The probe statement of [`SeqSearch`]: `(tenant, seq)`.
pub(super) const FIRST_CREATED_FROM: &str =
    "SELECT created_at FROM events WHERE tenant = $1 AND seq >= $2 ORDER BY seq LIMIT 1";
/// The seqs of the tenant's first and last events: `(tenant)`.
pub(super) const SEQ_BOUNDS: &str = "SELECT MIN(seq), MAX(seq) FROM events WHERE tenant = $1";

/// A recovery left to the background: `(id, tenant, webhook id, since, until, ended_since,
/// next_seq, last_seq, queued so far, now)`.
pub(super) const INSERT_RECOVERY: &str = "INSERT INTO recoveries (id, tenant, webhook_id, \
     since, until, ended_since, next_seq, last_seq, queued, state, created_at, updated_at) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, 'running', $10, $10)";
/// The oldest recovery still running (PostgreSQL appends its row lock).
pub(super) const RUNNING_RECOVERY: &str = "SELECT id, tenant, webhook_id, since, until, \
     ended_since, next_seq, last_seq FROM recoveries WHERE state = 'running' \
     ORDER BY created_at LIMIT 1";
/// A window done: `(next_seq, queued in it, state, now, id)`.
pub(super) const ADVANCE_RECOVERY: &str = "UPDATE recoveries SET next_seq = $1, \
     queued = queued + $2, state = $3, updated_at = $4 WHERE id = $5";

/// A running recovery, as [`RUNNING_RECOVERY`] reads it.
#[derive(sqlx::FromRow)]
pub(super) struct RunningRow {
    pub(super) id: String,
    pub(super) tenant: String,
    pub(super) webhook_id: String,
    pub(super) since: i64,
    pub(super) until: i64,
    pub(super) ended_since: Option<i64>,
    pub(super) next_seq: i64,
    pub(super) last_seq: i64,
}

impl RunningRow {
    pub(super) fn range(&self) -> Range {
        Range {
            tenant: self.tenant.clone(),
            since: self.since,
            until: self.until,
            ended_since: self.ended_since,
        }
    }
}

/// What one background step did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RecoveryStep {
    /// Deliveries queued again.
    pub queued: u64,
    /// A recovery is still running: step again.
    pub more: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_search_finds_the_first_event_from_a_minute_before_the_instant() {
        // Event seq n was created at n seconds.
        let created = |seq: i64| (seq <= 1_000).then_some(seq * 1_000);
        for since_s in [0, 1, 59, 60, 61, 500, 1_000, 2_000] {
            let mut search = SeqSearch::new(1, 1_000, since_s * 1_000);
            while let Some(probe) = search.probe() {
                search.answer(probe, created(probe));
            }
            let expected = (since_s - 60).clamp(1, 1_001);
            assert_eq!(search.first(), expected, "since {since_s}s");
        }
    }

    #[test]
    fn windows_cover_the_range_without_overlap() {
        assert_eq!(window_end(1, 10_000), WINDOW);
        assert_eq!(window_end(WINDOW + 1, 10_000), 2 * WINDOW);
        assert_eq!(window_end(9_999, 10_000), 10_000);
    }
}
