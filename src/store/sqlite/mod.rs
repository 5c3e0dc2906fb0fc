//! The SQLite backend: one file in WAL mode. Every write goes through a single connection
//! (SQLite has one writer; queuing in the pool beats retrying on `SQLITE_BUSY`), reads through
//! a pool of their own. Commits are `synchronous = FULL`: an acknowledged write survives a
//! crash of the machine, not only of the process.
//!
//! Statements that change many rows on the hot paths say `OR IGNORE` where none of their
//! values can break a constraint: a statement that could abort halfway makes SQLite copy
//! every page it changes to a statement journal first, in case it must be undone; one that
//! cannot abort skips that (about a third of the time of inserting a batch of events).

mod access;
mod deliveries;
mod direct;
mod event_keys;
mod events;
mod health;
mod notifications;
mod recoveries;
mod results;
mod webhooks;

use std::str::FromStr;
use std::sync::atomic::AtomicI64;
use std::time::Duration;

use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{QueryBuilder, Sqlite, Transaction};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::results::Unrecorded;
use super::rows::derived_statuses;
use super::{Commit, StoreResult, sql};
use crate::domain::health::HealthPolicy;

const READ_CONNECTIONS: u32 = 4;
/// How long a statement waits for another process's lock on the file (the CLI, a backup)
/// before it fails with `SQLITE_BUSY`; Herald's own writes queue for the one writer instead.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);
/// The writer's page cache. SQLite's default (2 MiB) is smaller than the pages a run of keys
/// touches in the randomly keyed index of business ids (`event_keys`): dirty pages were
/// spilled and re-read within one transaction.
const WRITER_CACHE_KIB: u32 = 32 * 1024;
/// Rows sqlx's SQLite worker thread may hand over before it waits for the task reading them.
/// At sqlx's default (50) a fan-out reading 500 pending events stalled the single writer
/// ten times, each until a busy runtime got round to the reader: 10-20 ms per claim.
const ROW_BUFFER_ROWS: usize = 8_192;
/// WAL size (4 KiB pages) at which the writer checkpoints in its own commit; normally the
/// background checkpointer keeps the WAL far below it.
const WRITER_CHECKPOINT_PAGES: u32 = 16_384;
/// Prepared statements the writer keeps: every chunk size of every multi-row statement
/// (see [`chunks`]) besides the rest, so none is prepared again after being evicted.
const STATEMENT_CACHE: usize = 256;
/// How often claims look for leases that ran out. A lease outlives the delivery timeout by
/// seconds, and on SQLite one process owns every claim, so a lease runs out only if an
/// attempt outlived its own timeout: a safety net, not worth a statement on every claim.
const LEASE_CHECK_EVERY_MS: i64 = 1_000;
/// How long the checkpointer lets writes gather before it copies them.
const CHECKPOINT_DELAY: Duration = Duration::from_millis(100);

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");

pub struct SqliteStore {
    writer: SqlitePool,
    reader: SqlitePool,
    /// Told of every write transaction; see [`SqliteStore::checkpoint_in_background`].
    wrote: Notify,
    /// The connection that checkpoints beside the writer.
    checkpointer: SqlitePool,
    /// Attempt results waiting for the next claim.
    unrecorded: Unrecorded,
    /// How attempt results move webhooks' health.
    health: HealthPolicy,
    /// When claims last looked for expired leases; see [`LEASE_CHECK_EVERY_MS`].
    leases_checked_at: AtomicI64,
    /// The keys of the events not yet in `event_keys`; see [`event_keys`].
    recent_keys: event_keys::RecentKeys,
}

impl SqliteStore {
    /// Opens (creating if missing) the database file a `sqlite://PATH` URL names.
    pub async fn connect(url: &str, health: HealthPolicy) -> StoreResult<SqliteStore> {
        SqliteStore::connect_waiting(url, health, BUSY_TIMEOUT).await
    }

    /// [`SqliteStore::connect`], with statements that wait at most `busy_timeout` for
    /// another process's lock on the file (10 s otherwise): tests lock the file for less.
    pub async fn connect_waiting(
        url: &str,
        health: HealthPolicy,
        busy_timeout: Duration,
    ) -> StoreResult<SqliteStore> {
        let options = SqliteConnectOptions::from_str(url)?;
        create_owner_only(options.get_filename());
        let options = options
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(true)
            .busy_timeout(busy_timeout)
            .row_buffer_size(ROW_BUFFER_ROWS)
            .statement_cache_capacity(STATEMENT_CACHE);
        // A connection to a file does not go stale, and sqlx's check before handing one out
        // is a round trip to its worker thread: a share of every transaction at a steady rate.
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .min_connections(1)
            .test_before_acquire(false)
            .connect_with(
                options
                    .clone()
                    .pragma("cache_size", format!("-{}", WRITER_CACHE_KIB))
                    .pragma("temp_store", "memory")
                    .pragma("wal_autocheckpoint", WRITER_CHECKPOINT_PAGES.to_string()),
            )
            .await?;
        let checkpointer = SqlitePoolOptions::new()
            .max_connections(1)
            .test_before_acquire(false)
            .connect_with(options.clone())
            .await?;
        let reader = SqlitePoolOptions::new()
            .max_connections(READ_CONNECTIONS)
            .test_before_acquire(false)
            .connect_with(options.read_only(true))
            .await?;
        Ok(SqliteStore {
            writer,
            reader,
            wrote: Notify::new(),
            checkpointer,
            unrecorded: Unrecorded::default(),
            health,
            leases_checked_at: AtomicI64::new(0),
            recent_keys: event_keys::RecentKeys::default(),
        })
    }
}

/// Creates a missing database file readable and writable by its owner only, before SQLite
/// would create it with the process's default mode: it holds every payload and the webhooks'
/// keys, and SQLite gives the `-wal` and `-shm` files the mode of the database file. An
/// existing file is left as it is; a file that cannot be created here is SQLite's to report.
fn create_owner_only(path: &std::path::Path) {
    let name = path.to_string_lossy();
    if name.is_empty() || name == ":memory:" || name.starts_with("file:") {
        return;
    }
    let mut file = std::fs::OpenOptions::new();
    file.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut file, 0o600);
    let _ = file.open(path);
}

impl SqliteStore {
    /// Copies committed pages from the WAL into the database file on a connection of its
    /// own, a moment after writes, so that work (a read of the WAL, a write and an fsync of
    /// the file) runs beside the writer instead of inside one of its commits. Idle when
    /// nothing is written. The writer still checkpoints by itself if the WAL ever outgrows
    /// [`WRITER_CHECKPOINT_PAGES`] (or nothing runs this: the command line), which bounds
    /// the file if this task falls behind.
    async fn checkpoint_in_background(&self, stop: CancellationToken) {
        loop {
            tokio::select! {
                _ = self.wrote.notified() => {}
                _ = stop.cancelled() => break,
            }
            tokio::select! {
                _ = tokio::time::sleep(CHECKPOINT_DELAY) => {}
                _ = stop.cancelled() => break,
            }
            if let Err(error) = sqlx::query("PRAGMA wal_checkpoint(PASSIVE)")
                .execute(&self.checkpointer)
                .await
            {
                tracing::warn!(%error, "background WAL checkpoint failed");
            }
        }
    }
}

impl SqliteStore {
    /// A write transaction that takes the write lock up front (`BEGIN IMMEDIATE`). A
    /// deferred one that reads first could not upgrade if another process (the CLI) wrote
    /// meanwhile, and would fail with `SQLITE_BUSY` instead of waiting.
    async fn write_transaction(&self, commit: Commit) -> StoreResult<Transaction<'static, Sqlite>> {
        // SQLite refuses to change the safety level inside a transaction, so it is set on the
        // (single) writer connection first; holding that connection, nothing can slip in
        // between. `Transaction::begin` is what `Pool::begin_with` does with a connection.
        // Both in one call to sqlx's worker thread: each call is a round trip between threads,
        // a noticeable share of a claim's time at a low publish rate.
        let connection = self.writer.acquire().await?;
        self.wrote.notify_one();
        let begin = match commit {
            Commit::Durable => "PRAGMA synchronous = FULL; BEGIN IMMEDIATE",
            Commit::Relaxed => "PRAGMA synchronous = NORMAL; BEGIN IMMEDIATE",
        };
        Ok(Transaction::begin(connection, Some(begin.into())).await?)
    }
}

/// A list as the JSON array `json_each` reads: how one statement takes a whole list of ids.
fn json_list<T: serde::Serialize>(items: &[T]) -> String {
    serde_json::to_string(items).unwrap_or_else(|_| "[]".into())
}

/// The most rows one multi-row statement takes.
const CHUNK_ROWS: usize = 256;

/// A batch of rows cut for multi-row `VALUES` statements: chunks of [`CHUNK_ROWS`], the last
/// one filled up with `None` to the next power of two. Each row count is one statement
/// text, which sqlx prepares once per connection and then reuses, and a batch of n rows is
/// n / 256 + 1 statements at most. Every statement is a round trip to sqlx's worker thread
/// while the writer is held: cut exactly into powers of two, a batch of 63 rows took six;
/// one statement with a few rows of NULLs, which the statements skip, costs less. Bound
/// parameters cost SQLite much less than decoding rows of several columns out of JSON
/// (`json_each` with `->>` took about a tenth of Herald's CPU under end-to-end load).
fn chunks<T>(rows: &[T]) -> Vec<Vec<Option<&T>>> {
    rows.chunks(CHUNK_ROWS)
        .map(|chunk| {
            let mut padded: Vec<Option<&T>> = chunk.iter().map(Some).collect();
            padded.resize(chunk.len().next_power_of_two(), None);
            padded
        })
        .collect()
}

/// Pushes one chunk from [`chunks`] as a `VALUES` list: `bind` binds the columns of each real
/// row, and a padding row gets `columns` NULLs.
fn push_rows<'args, T>(
    query: &mut QueryBuilder<'args, Sqlite>,
    chunk: &[Option<&'args T>],
    columns: usize,
    mut bind: impl FnMut(&mut sqlx::query_builder::Separated<'_, 'args, Sqlite, &'static str>, &'args T),
) {
    query.push_values(chunk, |mut row, item| match item {
        Some(item) => bind(&mut row, item),
        None => {
            for _ in 0..columns {
                row.push_bind(None::<i64>);
            }
        }
    });
}

/// Fails a webhook's queued and in-flight deliveries (it was deleted or switched off) and
/// re-derives their events' statuses.
async fn end_unfinished_deliveries(
    tx: &mut Transaction<'_, Sqlite>,
    webhook_seq: i64,
    now: i64,
) -> StoreResult<()> {
    let mut events: Vec<i64> = Vec::new();
    for statement in sql::END_UNFINISHED {
        events.extend(
            sqlx::query_scalar::<_, i64>(statement)
                .bind(now)
                .bind(webhook_seq)
                .fetch_all(&mut **tx)
                .await?,
        );
    }
    events.sort_unstable();
    events.dedup();
    refresh_event_statuses(tx, &events, now).await
}

/// Re-derives the statuses of fanned-out events from their deliveries after some of them
/// changed: two statements for the whole batch. An event whose status stays the same (one
/// delivery of several ended) is not written again: its row, payload and all, would be
/// copied to the WAL for nothing (herald bench h, where every event waits on a black hole).
async fn refresh_event_statuses(
    tx: &mut Transaction<'_, Sqlite>,
    seqs: &[i64],
    now: i64,
) -> StoreResult<()> {
    if seqs.is_empty() {
        return Ok(());
    }
    let rows: Vec<(i64, String)> = sqlx::query_as(
        "SELECT event_seq, state FROM deliveries WHERE event_seq IN (SELECT value FROM json_each(?))",
    )
    .bind(json_list(seqs))
    .fetch_all(&mut **tx)
    .await?;
    let updates = derived_statuses(rows);
    for chunk in chunks(&updates) {
        let mut update = QueryBuilder::<Sqlite>::new("WITH u (seq, status, final) AS (");
        push_rows(&mut update, &chunk, 3, |row, (seq, status, is_final)| {
            row.push_bind(*seq).push_bind(*status).push_bind(*is_final);
        });
        update
            .push(
                ") UPDATE OR IGNORE events SET status = u.status, processed_at = CASE WHEN u.final \
                 THEN COALESCE(events.processed_at, ",
            )
            .push_bind(now)
            .push(
                ") ELSE NULL END FROM u WHERE events.seq = u.seq \
                 AND events.status NOT IN ('pending', 'skipped') AND events.status <> u.status",
            );
        update.build().execute(&mut **tx).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_cover_the_rows_in_order_and_pad_the_last_to_a_power_of_two() {
        let rows: Vec<usize> = (0..600).collect();
        let cut = chunks(&rows);
        let sizes: Vec<usize> = cut.iter().map(|c| c.len()).collect();
        assert_eq!(sizes, [256, 256, 128]);
        let real: Vec<usize> = cut.iter().flatten().flatten().copied().copied().collect();
        assert_eq!(real, rows);
        assert!(cut[2][88..].iter().all(Option::is_none));
        assert_eq!(chunks(&[1, 2, 3])[0], [Some(&1), Some(&2), Some(&3), None]);
        assert_eq!(chunks(&[7; 32]).concat().len(), 32);
        assert!(chunks::<u8>(&[]).is_empty());
    }
}
