//! Statements both backends run as they are: `$N` placeholders, which sqlx's SQLite driver
//! binds by number as PostgreSQL does, and nothing either dialect lacks. A statement the two
//! need written differently (publishing, claims, recording, lists of ids) stays with its
//! backend.

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
/// A manual retry opened a new cycle: the event is processing again.
pub(super) const REOPEN_EVENT: &str = "UPDATE events SET status = 'processing', \
     processed_at = NULL, queued_at = COALESCE(queued_at, $1) WHERE seq = $2";

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
