//! The SQLite backend: one file in WAL mode. Every write goes through a single connection
//! (SQLite has one writer; queuing in the pool beats retrying on `SQLITE_BUSY`), reads through
//! a pool of their own. Commits are `synchronous = FULL`: an acknowledged write survives a
//! crash of the machine, not only of the process.

use std::str::FromStr;
use std::time::Duration;

use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{FromRow, Sqlite, Transaction};
use uuid::Uuid;

use super::*;

mod access;
mod deliveries;
mod events;
mod webhooks;
use crate::domain::envelope::{EnvelopeFields, render_body};
use crate::domain::event_type::any_pattern_matches;
use crate::domain::scope::{scopes_from_text, scopes_to_text};
use crate::domain::status::{DeliveryState, derive_event_status};
use crate::domain::time::now_ms;

const READ_CONNECTIONS: u32 = 4;
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");

pub struct SqliteStore {
    writer: SqlitePool,
    reader: SqlitePool,
}

impl SqliteStore {
    /// Opens (creating if missing) the database file a `sqlite://PATH` URL names.
    pub async fn connect(url: &str) -> StoreResult<SqliteStore> {
        let options = SqliteConnectOptions::from_str(url)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(true)
            .busy_timeout(BUSY_TIMEOUT);
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .min_connections(1)
            .connect_with(options.clone())
            .await?;
        let reader = SqlitePoolOptions::new()
            .max_connections(READ_CONNECTIONS)
            .connect_with(options.read_only(true))
            .await?;
        Ok(SqliteStore { writer, reader })
    }
}

impl SqliteStore {
    /// A write transaction that takes the write lock up front (`BEGIN IMMEDIATE`). A
    /// deferred one that reads first could not upgrade if another process (the CLI) wrote
    /// meanwhile, and would fail with `SQLITE_BUSY` instead of waiting.
    async fn write_transaction(&self) -> StoreResult<Transaction<'static, Sqlite>> {
        Ok(self.writer.begin_with("BEGIN IMMEDIATE").await?)
    }
}

#[derive(FromRow)]
struct TenantRow {
    name: String,
    created_at: i64,
}

impl From<TenantRow> for Tenant {
    fn from(row: TenantRow) -> Tenant {
        Tenant {
            name: row.name,
            created_at_ms: row.created_at,
        }
    }
}

#[derive(FromRow)]
struct TokenRow {
    id: String,
    kind: String,
    tenant: Option<String>,
    scopes: String,
    created_at: i64,
    revoked_at: Option<i64>,
}

impl TryFrom<TokenRow> for Token {
    type Error = StoreError;
    fn try_from(row: TokenRow) -> StoreResult<Token> {
        Ok(Token {
            id: parse_uuid(&row.id)?,
            kind: if row.kind == "producer" {
                TokenKind::Producer
            } else {
                TokenKind::Partner
            },
            tenant: row.tenant,
            scopes: scopes_from_text(&row.scopes),
            created_at_ms: row.created_at,
            revoked_at_ms: row.revoked_at,
        })
    }
}

const WEBHOOK_COLUMNS: &str =
    "id, tenant, name, url, api_key, event_types, is_active, metadata, created_at, updated_at";

#[derive(FromRow)]
struct WebhookRow {
    id: String,
    tenant: String,
    name: String,
    url: String,
    api_key: String,
    event_types: String,
    is_active: bool,
    metadata: String,
    created_at: i64,
    updated_at: i64,
}

impl TryFrom<WebhookRow> for Webhook {
    type Error = StoreError;
    fn try_from(row: WebhookRow) -> StoreResult<Webhook> {
        Ok(Webhook {
            id: parse_uuid(&row.id)?,
            tenant: row.tenant,
            name: row.name,
            url: row.url,
            api_key: row.api_key,
            event_types: serde_json::from_str(&row.event_types)
                .map_err(|e| StoreError::Invalid(format!("stored event_types: {e}")))?,
            is_active: row.is_active,
            metadata: row.metadata,
            created_at_ms: row.created_at,
            updated_at_ms: row.updated_at,
        })
    }
}

const EVENT_COLUMNS: &str = "id, event_id, tenant, event_type, payload, user_id, source_service, \
     occurred_at, status, created_at, queued_at, processed_at";

#[derive(FromRow)]
struct EventRow {
    id: String,
    event_id: String,
    tenant: String,
    event_type: String,
    payload: String,
    user_id: Option<String>,
    source_service: Option<String>,
    occurred_at: i64,
    status: String,
    created_at: i64,
    queued_at: Option<i64>,
    processed_at: Option<i64>,
}

impl TryFrom<EventRow> for Event {
    type Error = StoreError;
    fn try_from(row: EventRow) -> StoreResult<Event> {
        Ok(Event {
            id: parse_uuid(&row.id)?,
            event_id: row.event_id,
            tenant: row.tenant,
            event_type: row.event_type,
            payload: row.payload,
            user_id: row.user_id,
            source_service: row.source_service,
            occurred_at_ms: row.occurred_at,
            status: EventStatus::parse(&row.status)
                .ok_or_else(|| StoreError::Invalid(format!("stored status {:?}", row.status)))?,
            created_at_ms: row.created_at,
            queued_at_ms: row.queued_at,
            processed_at_ms: row.processed_at,
        })
    }
}

const LOG_SELECT: &str = "SELECT a.id, e.event_id, a.webhook_id, a.attempt_number, a.request_url, \
     a.request_headers, e.event_type, e.user_id, e.occurred_at, e.payload, a.response_status, \
     a.response_body, a.error_message, a.status, a.duration_ms, a.created_at, a.next_retry_at \
     FROM attempts a JOIN events e ON e.seq = a.event_seq";

#[derive(FromRow)]
struct LogRow {
    id: String,
    event_id: String,
    webhook_id: String,
    attempt_number: i64,
    request_url: String,
    request_headers: String,
    event_type: String,
    user_id: Option<String>,
    occurred_at: i64,
    payload: String,
    response_status: Option<i64>,
    response_body: Option<String>,
    error_message: Option<String>,
    status: String,
    duration_ms: Option<i64>,
    created_at: i64,
    next_retry_at: Option<i64>,
}

impl TryFrom<LogRow> for DeliveryLog {
    type Error = StoreError;
    fn try_from(row: LogRow) -> StoreResult<DeliveryLog> {
        let request_body = render_body(&EnvelopeFields {
            event_id: &row.event_id,
            event_type: &row.event_type,
            user_id: row.user_id.as_deref(),
            occurred_at_ms: row.occurred_at,
            payload_json: &row.payload,
        });
        Ok(DeliveryLog {
            id: parse_uuid(&row.id)?,
            webhook_id: parse_uuid(&row.webhook_id)?,
            event_id: row.event_id,
            attempt_number: row.attempt_number,
            request_url: row.request_url,
            request_headers: row.request_headers,
            request_body,
            response_status: row.response_status,
            response_body: row.response_body,
            error_message: row.error_message,
            delivery_status: row.status,
            duration_ms: row.duration_ms,
            created_at_ms: row.created_at,
            next_retry_at_ms: row.next_retry_at,
        })
    }
}

fn parse_uuid(text: &str) -> StoreResult<Uuid> {
    Uuid::parse_str(text).map_err(|_| StoreError::Invalid(format!("stored id {text:?}")))
}

fn is_unique_violation(error: &sqlx::Error) -> bool {
    matches!(error, sqlx::Error::Database(db) if db.is_unique_violation())
}

/// Fails a webhook's queued and in-flight deliveries (it was deleted or deactivated) and
/// re-derives their events' statuses.
async fn end_unfinished_deliveries(
    tx: &mut Transaction<'_, Sqlite>,
    webhook_id: &str,
    now: i64,
) -> StoreResult<()> {
    let mut events: Vec<i64> = sqlx::query_scalar(
        "UPDATE deliveries SET state = 'failed', locked_until = NULL, locked_by = NULL, \
         updated_at = ? WHERE webhook_id = ? AND state IN ('queued', 'in_flight') \
         RETURNING event_seq",
    )
    .bind(now)
    .bind(webhook_id)
    .fetch_all(&mut **tx)
    .await?;
    events.sort_unstable();
    events.dedup();
    for event_seq in events {
        refresh_event_status(tx, event_seq, now).await?;
    }
    Ok(())
}

/// Re-derives an event's status from its deliveries after some of them changed.
async fn refresh_event_status(
    tx: &mut Transaction<'_, Sqlite>,
    event_seq: i64,
    now: i64,
) -> StoreResult<()> {
    let states: Vec<String> =
        sqlx::query_scalar("SELECT state FROM deliveries WHERE event_seq = ?")
            .bind(event_seq)
            .fetch_all(&mut **tx)
            .await?;
    let Some(status) = derive_event_status(states.iter().filter_map(|s| DeliveryState::parse(s)))
    else {
        return Ok(());
    };
    sqlx::query(
        "UPDATE events SET status = ?1, \
         processed_at = CASE WHEN ?2 THEN COALESCE(processed_at, ?3) ELSE NULL END \
         WHERE seq = ?4 AND status NOT IN ('pending', 'skipped')",
    )
    .bind(status.as_str())
    .bind(status.is_final())
    .bind(now)
    .bind(event_seq)
    .execute(&mut **tx)
    .await?;
    Ok(())
}
