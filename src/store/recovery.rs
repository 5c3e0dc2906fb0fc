//! Recovering a webhook's failed events, as both backends run it. A recovery walks the
//! events of its range in `seq` order, a window at a time: each window is one transaction
//! that re-queues what failed in it and moves the recovery's cursor, so a large recovery
//! survives a restart, and a second one over the same range finds nothing left to queue (a
//! delivery re-queued is no longer `failed`).

use async_trait::async_trait;
use sqlx::query::{Query, QueryAs};
use sqlx::{Database, Encode, FromRow, Type};
use uuid::Uuid;

use super::StoreResult;

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

/// A recovery's work for one webhook inside one transaction of a backend: the steps both
/// share run through it on either backend's transaction. Re-queuing differs (PostgreSQL
/// locks events first; the two bind lists of ids differently).
#[async_trait]
pub(super) trait Recovering: Send {
    /// The seqs of the tenant's first and last events ([`SEQ_BOUNDS`]).
    async fn seq_bounds(&mut self, tenant: &str) -> StoreResult<Option<(i64, i64)>>;
    /// `created_at` of the tenant's first event from `seq` on ([`FIRST_CREATED_FROM`]).
    async fn created_from(&mut self, tenant: &str, seq: i64) -> StoreResult<Option<i64>>;
    /// The webhook's deliveries that ended failed, of the range's events among seqs
    /// `[first, last]`: `(delivery id, event seq)`.
    async fn failed_between(
        &mut self,
        range: &Range,
        first: i64,
        last: i64,
    ) -> StoreResult<Vec<(i64, i64)>>;
    /// Opens a new cycle (attempt 1, due now) for each of these failed deliveries, which it
    /// supersedes, and reopens their events; returns how many it queued.
    async fn requeue(&mut self, failed: &[(i64, i64)], now: i64) -> StoreResult<u64>;
    /// Writes a recovery's row: [`RecoveryValues::query`] run in the transaction.
    async fn record(&mut self, values: RecoveryValues) -> StoreResult<()>;
}

/// A change to a recovery's row.
pub(super) enum RecoveryValues {
    /// A recovery left to the background.
    Insert {
        range: Range,
        webhook_id: String,
        next: i64,
        last: i64,
        queued: i64,
        now: i64,
    },
    /// A window done.
    Advance {
        id: String,
        next: i64,
        queued: i64,
        done: bool,
        now: i64,
    },
}

impl RecoveryValues {
    /// The statement that makes the change, its values bound.
    pub(super) fn query<'q, DB>(&'q self) -> Query<'q, DB, <DB as Database>::Arguments<'q>>
    where
        DB: Database,
        &'q str: Encode<'q, DB> + Type<DB>,
        i64: Encode<'q, DB> + Type<DB>,
        Option<i64>: Encode<'q, DB> + Type<DB>,
        String: Encode<'q, DB> + Type<DB>,
    {
        match self {
            RecoveryValues::Insert {
                range,
                webhook_id,
                next,
                last,
                queued,
                now,
            } => sqlx::query::<DB>(INSERT_RECOVERY)
                .bind(Uuid::now_v7().to_string())
                .bind(range.tenant.as_str())
                .bind(webhook_id.as_str())
                .bind(range.since)
                .bind(range.until)
                .bind(range.ended_since)
                .bind(*next)
                .bind(*last)
                .bind(*queued)
                .bind(*now),
            RecoveryValues::Advance {
                id,
                next,
                queued,
                done,
                now,
            } => sqlx::query::<DB>(ADVANCE_RECOVERY)
                .bind(*next)
                .bind(*queued)
                .bind(if *done { "done" } else { "running" })
                .bind(*now)
                .bind(id.as_str()),
        }
    }
}

/// The seqs of the range's events to walk, `None` when the tenant has none from `since` on.
async fn seq_span(tx: &mut impl Recovering, range: &Range) -> StoreResult<Option<(i64, i64)>> {
    let Some((low, high)) = tx.seq_bounds(&range.tenant).await? else {
        return Ok(None);
    };
    let mut search = SeqSearch::new(low, high, range.since);
    while let Some(probe) = search.probe() {
        let created = tx.created_from(&range.tenant, probe).await?;
        search.answer(probe, created);
    }
    Ok((search.first() <= high).then_some((search.first(), high)))
}

/// Starts a recovery of the range for `webhook_id`: works through up to [`INLINE_WINDOWS`]
/// windows and leaves the rest running in the background. Returns how many deliveries it
/// queues in all, now and later.
pub(super) async fn start(
    tx: &mut impl Recovering,
    webhook_id: &str,
    range: &Range,
    now: i64,
) -> StoreResult<u64> {
    let Some((first, last)) = seq_span(tx, range).await? else {
        return Ok(0);
    };
    let mut next = first;
    let mut queued = 0;
    for _ in 0..INLINE_WINDOWS {
        if next > last {
            return Ok(queued);
        }
        let end = window_end(next, last);
        let failed = tx.failed_between(range, next, end).await?;
        queued += tx.requeue(&failed, now).await?;
        next = end + 1;
    }
    if next > last {
        return Ok(queued);
    }
    // What the background will queue, counted now so the answer says it.
    let later = tx.failed_between(range, next, last).await?.len() as u64;
    if queued + later > 0 {
        tx.record(RecoveryValues::Insert {
            range: range.clone(),
            webhook_id: webhook_id.to_string(),
            next,
            last,
            queued: queued as i64,
            now,
        })
        .await?;
    }
    Ok(queued + later)
}

/// Leaves the whole of a recovery to the background (a catch-up, queued by the transaction
/// that saw its webhook recover).
pub(super) async fn queue(
    tx: &mut impl Recovering,
    webhook_id: &str,
    range: &Range,
    now: i64,
) -> StoreResult<()> {
    if let Some((next, last)) = seq_span(tx, range).await? {
        let values = RecoveryValues::Insert {
            range: range.clone(),
            webhook_id: webhook_id.to_string(),
            next,
            last,
            queued: 0,
            now,
        };
        tx.record(values).await?;
    }
    Ok(())
}

/// One window of a running recovery, or its end when its webhook was deleted or switched
/// off meanwhile (`alive` false). Returns how many deliveries it queued.
pub(super) async fn step(
    tx: &mut impl Recovering,
    job: &RunningRow,
    alive: bool,
    now: i64,
) -> StoreResult<u64> {
    let (queued, next) = if alive {
        let end = window_end(job.next_seq, job.last_seq);
        let failed = tx.failed_between(&job.range(), job.next_seq, end).await?;
        (tx.requeue(&failed, now).await?, end + 1)
    } else {
        (0, job.last_seq + 1)
    };
    let values = RecoveryValues::Advance {
        id: job.id.clone(),
        next,
        queued: queued as i64,
        done: next > job.last_seq,
        now,
    };
    tx.record(values).await?;
    Ok(queued)
}

/// The webhook's deliveries that ended failed, of the range's events among seqs
/// `[first, last]`: `(delivery id, event seq)`, as [`Recovering::failed_between`] answers.
pub(super) fn failed_between<'q, DB>(
    range: &'q Range,
    webhook_seq: i64,
    first: i64,
    last: i64,
) -> QueryAs<'q, DB, (i64, i64), <DB as Database>::Arguments<'q>>
where
    DB: Database,
    &'q str: Encode<'q, DB> + Type<DB>,
    i64: Encode<'q, DB> + Type<DB>,
    Option<i64>: Encode<'q, DB> + Type<DB>,
    (i64, i64): for<'r> FromRow<'r, DB::Row>,
{
    sqlx::query_as::<DB, (i64, i64)>(FAILED_BETWEEN)
        .bind(first)
        .bind(last)
        .bind(webhook_seq)
        .bind(range.tenant.as_str())
        .bind(range.since)
        .bind(range.until)
        .bind(range.ended_since)
}

const FAILED_BETWEEN: &str = "SELECT d.id, d.event_seq FROM deliveries d \
     JOIN events e ON e.seq = d.event_seq \
     WHERE d.event_seq BETWEEN $1 AND $2 AND d.webhook_seq = $3 AND d.state = 'failed' \
     AND e.tenant = $4 AND e.created_at >= $5 AND e.created_at < $6 \
     AND (CAST($7 AS BIGINT) IS NULL OR d.updated_at >= $7)";

/// The probe statement of [`SeqSearch`]: `(tenant, seq)`.
pub(super) const FIRST_CREATED_FROM: &str =
    "SELECT created_at FROM events WHERE tenant = $1 AND seq >= $2 ORDER BY seq LIMIT 1";
/// The seqs of the tenant's first and last events: `(tenant)`.
pub(super) const SEQ_BOUNDS: &str = "SELECT MIN(seq), MAX(seq) FROM events WHERE tenant = $1";

/// A recovery left to the background.
const INSERT_RECOVERY: &str = "INSERT INTO recoveries (id, tenant, webhook_id, \
     since, until, ended_since, next_seq, last_seq, queued, state, created_at, updated_at) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, 'running', $10, $10)";
/// A running recovery's webhook, by id: its key and whether it is active (PostgreSQL holds
/// it `FOR KEY SHARE`).
pub(super) const RECOVERY_WEBHOOK: &str = "SELECT seq, is_active FROM webhooks WHERE id = $1";
/// The oldest recovery still running (PostgreSQL appends its row lock).
pub(super) const RUNNING_RECOVERY: &str = "SELECT id, tenant, webhook_id, since, until, \
     ended_since, next_seq, last_seq FROM recoveries WHERE state = 'running' \
     ORDER BY created_at LIMIT 1";
/// A window done.
const ADVANCE_RECOVERY: &str = "UPDATE recoveries SET next_seq = $1, \
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
