//! The SQLite backend: one file in WAL mode. Every write goes through a single connection
//! (SQLite has one writer; queuing in the pool beats retrying on `SQLITE_BUSY`), reads through
//! a pool of their own. Commits are `synchronous = FULL`: an acknowledged write survives a
//! crash of the machine, not only of the process.

use std::str::FromStr;
use std::time::Duration;

use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{Sqlite, Transaction};

use super::*;

use super::rows::*;

mod access;
mod deliveries;
mod events;
mod webhooks;
use crate::domain::event_type::any_pattern_matches;
use crate::domain::scope::scopes_to_text;
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
