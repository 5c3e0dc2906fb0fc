//! Statements both backends run as they are: `$N` placeholders, which sqlx's SQLite driver
//! binds by number as PostgreSQL does, and nothing either dialect lacks. PostgreSQL appends
//! its row locks to some (` FOR UPDATE`, ` FOR KEY SHARE`). A statement the two need written
//! differently stays with its backend: publishing, claims and recording (batched through
//! arrays on PostgreSQL, multi-row `VALUES` on SQLite), and any statement that takes a list
//! of ids (an array bound as one parameter on PostgreSQL, JSON that `json_each` reads on
//! SQLite).

use sqlx::query::{QueryAs, QueryScalar};
use sqlx::{Database, Encode, FromRow, Type};

use super::EventQuery;
use super::rows::SeqEventRow;

/// The columns of a webhook row, as [`super::rows::WebhookRow`] decodes them.
macro_rules! webhook_columns {
    () => {
        "id, tenant, name, url, api_key, event_types, is_active, metadata, created_at, updated_at, \
         health_state, consecutive_failures, failing_since, last_attempt_at, last_success_at, \
         last_failure_at, last_response_status, disabled_at, disabled_reason"
    };
}

/// The filters of an event list; `CAST` types a parameter that may be NULL for PostgreSQL,
/// and changes nothing for SQLite.
macro_rules! event_filter {
    () => {
        "tenant = $1 AND (CAST($2 AS TEXT) IS NULL OR status = $2) \
         AND (CAST($3 AS TEXT) IS NULL OR event_type = $3) \
         AND (CAST($4 AS BIGINT) IS NULL OR created_at >= $4) \
         AND (CAST($5 AS BIGINT) IS NULL OR created_at <= $5)"
    };
}

/// The CTEs `hooks (seq)` and `queued (seq, first_due)`: each webhook with queued deliveries
/// and its first due time, found by stepping through `deliveries_queued_by_webhook` one
/// webhook at a time (a recursive skip scan, after `WITH RECURSIVE`): a few index reads per
/// webhook, whatever their backlogs. Scanning the queue in due order instead read past every
/// due delivery of a webhook at its in-flight limit on every claim, so one dead endpoint's
/// growing backlog slowed everyone (herald bench h, i).
macro_rules! queued_webhooks {
    () => {
        "hooks (seq) AS ( \
           SELECT (SELECT MIN(webhook_seq) FROM deliveries WHERE state = 'queued') \
           UNION ALL \
           SELECT (SELECT MIN(webhook_seq) FROM deliveries \
                   WHERE state = 'queued' AND webhook_seq > hooks.seq) \
           FROM hooks WHERE hooks.seq IS NOT NULL), \
         queued (seq, first_due) AS ( \
           SELECT seq, (SELECT MIN(next_attempt_at) FROM deliveries \
                        WHERE state = 'queued' AND webhook_seq = hooks.seq) \
           FROM hooks WHERE seq IS NOT NULL)"
    };
}
pub(super) use queued_webhooks;

/// Ends a webhook's unfinished deliveries in one state as failed, returning their events.
macro_rules! end_unfinished {
    ($state:literal) => {
        concat!(
            "UPDATE deliveries SET state = 'failed', locked_until = NULL, locked_by = NULL, \
             updated_at = $1 WHERE webhook_seq = $2 AND state = '",
            $state,
            "' RETURNING event_seq"
        )
    };
}

pub(super) const INSERT_TENANT: &str = "INSERT INTO tenants (name, created_at) VALUES ($1, $2)";
pub(super) const LIST_TENANTS: &str = "SELECT name, created_at FROM tenants ORDER BY name";

pub(super) const INSERT_TOKEN: &str = "INSERT INTO tokens (id, hash, kind, tenant, scopes, \
     created_at) VALUES ($1, $2, $3, $4, $5, $6)";
pub(super) const LIST_TOKENS: &str = "SELECT id, kind, tenant, scopes, created_at, revoked_at \
     FROM tokens ORDER BY created_at, id";
pub(super) const REVOKE_TOKEN: &str =
    "UPDATE tokens SET revoked_at = COALESCE(revoked_at, $1) WHERE id = $2";
pub(super) const FIND_TOKEN: &str =
    "SELECT id, kind, tenant, scopes, created_at, revoked_at FROM tokens WHERE hash = $1";

pub(super) const LIST_WEBHOOKS: &str = concat!(
    "SELECT ",
    webhook_columns!(),
    " FROM webhooks WHERE tenant = $1 ORDER BY created_at, id"
);
pub(super) const FIND_WEBHOOK: &str = concat!(
    "SELECT ",
    webhook_columns!(),
    " FROM webhooks WHERE tenant = $1 AND id = $2"
);
pub(super) const COUNT_WEBHOOKS: &str = "SELECT COUNT(*) FROM webhooks WHERE tenant = $1";
pub(super) const INSERT_WEBHOOK: &str = "INSERT INTO webhooks (id, tenant, name, url, api_key, \
     event_types, is_active, metadata, created_at, updated_at) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)";
pub(super) const UPDATE_WEBHOOK: &str = "UPDATE webhooks SET name = $1, url = $2, api_key = $3, \
     event_types = $4, is_active = $5, metadata = $6, updated_at = $7 WHERE id = $8";

/// Writes a webhook's health: the columns of [`super::rows::HealthRow`] in order, then the id.
pub(super) const UPDATE_HEALTH: &str = "UPDATE webhooks SET health_state = $1, \
     consecutive_failures = $2, failing_since = $3, last_attempt_at = $4, last_success_at = $5, \
     last_failure_at = $6, last_response_status = $7, disabled_at = $8, disabled_reason = $9 \
     WHERE id = $10";
/// Herald switches a webhook off (its health says why): `(now, id)`.
pub(super) const DISABLE_WEBHOOK: &str =
    "UPDATE webhooks SET is_active = FALSE, updated_at = $1 WHERE id = $2";

/// How many events match a list's filters.
pub(super) const COUNT_EVENTS: &str =
    concat!("SELECT COUNT(*) FROM events WHERE ", event_filter!());
/// A page of events matching a list's filters, newest first, from the cursor `$6` on, with
/// one row more than the page (`$7`) when another page follows.
pub(super) const LIST_EVENTS: &str = concat!(
    "SELECT seq, id, event_id, tenant, event_type, payload, user_id, source_service, \
     occurred_at, status, created_at, queued_at, processed_at FROM events WHERE ",
    event_filter!(),
    " AND (CAST($6 AS BIGINT) IS NULL OR seq < $6) ORDER BY seq DESC LIMIT $7"
);
pub(super) const EVENT_POSITION: &str = "SELECT seq FROM events WHERE id = $1 AND tenant = $2";
/// The event a manual retry names: `(record id, tenant)`; PostgreSQL locks it.
pub(super) const RETRY_EVENT: &str =
    "SELECT seq, event_type FROM events WHERE id = $1 AND tenant = $2";
/// The webhooks a manual retry chooses among ([`super::rows::retry_keys`]), keyed, in id
/// order (the order PostgreSQL locks them in): the tenant's, or only `$2` when it names one.
pub(super) const RETRY_WEBHOOKS: &str = concat!(
    "SELECT seq, ",
    webhook_columns!(),
    " FROM webhooks WHERE tenant = $1 AND (CAST($2 AS TEXT) IS NULL OR id = $2) ORDER BY id"
);
/// A manual retry opened a new cycle: the event is processing again.
pub(super) const REOPEN_EVENT: &str = "UPDATE events SET status = 'processing', \
     processed_at = NULL, queued_at = COALESCE(queued_at, $1) WHERE seq = $2";

/// A webhook's key and whether it is active: `(tenant, id)`; PostgreSQL holds it
/// `FOR KEY SHARE` while it queues deliveries to it.
pub(super) const WEBHOOK_KEY: &str =
    "SELECT seq, is_active FROM webhooks WHERE tenant = $1 AND id = $2";

/// Fails a webhook's queued and in-flight deliveries (it was deleted or switched off) and
/// returns their events: `(now, webhook seq)`. One statement per state, so each finds its rows
/// through its own partial index (the queue per webhook, the leases) instead of scanning
/// every delivery.
pub(super) const END_UNFINISHED: [&str; 2] =
    [end_unfinished!("queued"), end_unfinished!("in_flight")];

/// When the dispatcher next has something to do: 0 if events await fan-out, else the
/// earliest due delivery or lease expiry; NULL when there is nothing at all.
pub(super) const NEXT_WAKE_AT: &str = concat!(
    "WITH RECURSIVE ",
    queued_webhooks!(),
    " SELECT MIN(at) FROM ( \
       SELECT (SELECT CAST(0 AS BIGINT) FROM events WHERE status = 'pending' LIMIT 1) AS at \
       UNION ALL SELECT MIN(first_due) FROM queued \
       UNION ALL SELECT MIN(locked_until) FROM deliveries WHERE state = 'in_flight') AS t"
);

pub(super) const QUEUE_DEPTH: &str = "SELECT \
     (SELECT COUNT(*) FROM events WHERE status = 'pending') AS pending_events, \
     (SELECT COUNT(*) FROM deliveries WHERE state = 'queued') AS queued, \
     (SELECT COUNT(*) FROM deliveries WHERE state = 'in_flight') AS in_flight, \
     (SELECT COUNT(*) FROM webhooks WHERE health_state = 'healthy') AS webhooks_healthy, \
     (SELECT COUNT(*) FROM webhooks WHERE health_state = 'failing') AS webhooks_failing, \
     (SELECT COUNT(*) FROM webhooks WHERE health_state = 'disabled') AS webhooks_disabled, \
     (SELECT COUNT(*) FROM recoveries WHERE state = 'running') AS recoveries_running";

/// Queues an operator notification, in the transaction of the transition it tells of:
/// `(id, kind, body, now)`.
pub(super) const QUEUE_NOTIFICATION: &str = "INSERT INTO notifications \
     (id, kind, body, state, attempts, next_attempt_at, created_at, updated_at) \
     VALUES ($1, $2, $3, 'queued', 0, $4, $4, $4)";

/// An event list's statements with the query's values bound: the count of every match
/// ([`COUNT_EVENTS`]) and the page ([`LIST_EVENTS`]), which reads one row more than the page
/// when another page follows ([`super::rows::event_page`] cuts it). Filters left out are
/// bound as NULL, so one statement (prepared once per connection) serves every combination.
#[allow(clippy::type_complexity)]
pub(super) fn list_events<'q, DB>(
    query: &'q EventQuery,
) -> (
    QueryScalar<'q, DB, i64, <DB as Database>::Arguments<'q>>,
    QueryAs<'q, DB, SeqEventRow, <DB as Database>::Arguments<'q>>,
)
where
    DB: Database,
    &'q str: Encode<'q, DB> + Type<DB>,
    Option<&'q str>: Encode<'q, DB> + Type<DB>,
    Option<i64>: Encode<'q, DB> + Type<DB>,
    i64: Encode<'q, DB> + Type<DB>,
    (i64,): for<'r> FromRow<'r, DB::Row>,
    SeqEventRow: for<'r> FromRow<'r, DB::Row>,
{
    let status = query.status.map(|s| s.as_str());
    let count = sqlx::query_scalar::<DB, i64>(COUNT_EVENTS)
        .bind(query.tenant.as_str())
        .bind(status)
        .bind(query.event_type.as_deref())
        .bind(query.since_ms)
        .bind(query.until_ms);
    let page = sqlx::query_as::<DB, SeqEventRow>(LIST_EVENTS)
        .bind(query.tenant.as_str())
        .bind(status)
        .bind(query.event_type.as_deref())
        .bind(query.since_ms)
        .bind(query.until_ms)
        .bind(query.before_cursor)
        .bind(i64::from(query.limit) + 1);
    (count, page)
}
