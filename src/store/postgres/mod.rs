//! The PostgreSQL backend, for several Herald nodes sharing one database. Claims take rows
//! with `FOR UPDATE SKIP LOCKED` under a lease, so nodes never take the same delivery and the
//! work of a node that dies returns to the queue when its lease runs out. `NOTIFY` wakes the
//! idle dispatchers of every node when work arrives. Batches go to the server as arrays
//! (`UNNEST`), one statement per step, not one per row.

mod access;
mod deliveries;
mod direct;
mod events;
mod health;
mod notifications;
mod notify;
mod recoveries;
mod results;
mod webhooks;

use std::str::FromStr;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::{Postgres, Transaction};

use super::results::Unrecorded;
use super::rows::derived_statuses;
use super::{Commit, StoreResult, sql};
use crate::domain::health::HealthPolicy;

const MAX_CONNECTIONS: u32 = 16;
/// Publish commits in flight at once on one node (of the pool's connections): batches commit
/// side by side, one's inserts running while another's commit waits for its WAL flush.
pub(super) const CONCURRENT_PUBLISHES: usize = 4;
/// How long a request waits for a connection before the store counts as unavailable (503).
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(3);

/// A pooled connection idle this long is pinged before it is used again.
const IDLE_BEFORE_PING: Duration = Duration::from_secs(1);

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

pub struct PostgresStore {
    pool: PgPool,
    /// The NOTIFY channel, per schema, so Herald installations sharing a database (and
    /// parallel test runs) do not wake each other.
    channel: String,
    /// Attempt results waiting for the recorder ([`DeliveryStore::background_jobs`]).
    unrecorded: Unrecorded,
    /// How attempt results move webhooks' health.
    health: HealthPolicy,
}

impl PostgresStore {
    /// Connects to the database a `postgres://` URL names (its `options[search_path]`
    /// parameter, if any, picks the schema).
    pub async fn connect(url: &str, health: HealthPolicy) -> StoreResult<PostgresStore> {
        let options = PgConnectOptions::from_str(url)?.application_name("herald");
        let pool = PgPoolOptions::new()
            .max_connections(MAX_CONNECTIONS)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            // sqlx pings every connection it hands out: a round trip before each transaction.
            // A connection in use moments ago is alive; one idle for a while may have been
            // cut (a database restart, a proxy's timeout), and a failed ping makes the pool
            // take another instead of failing the caller's statement.
            .test_before_acquire(false)
            .before_acquire(|connection, meta| {
                Box::pin(async move {
                    if meta.idle_for >= IDLE_BEFORE_PING {
                        sqlx::Connection::ping(connection).await?;
                    }
                    Ok(true)
                })
            })
            .connect_with(options)
            .await?;
        let schema: String = sqlx::query_scalar("SELECT current_schema()")
            .fetch_one(&pool)
            .await?;
        let mut channel = format!("herald_work_{schema}");
        channel.truncate(63);
        Ok(PostgresStore {
            pool,
            channel,
            unrecorded: Unrecorded::default(),
            health,
        })
    }

    /// A transaction from the pool, committed as `commit` says. A relaxed commit returns
    /// before its WAL record is on disk: the database server's own crash can lose the last
    /// few hundred milliseconds of them (its WAL writer flushes every 200 ms by default),
    /// never a publish, which is durable and flushes them with it.
    async fn transaction(&self, commit: Commit) -> StoreResult<Transaction<'static, Postgres>> {
        Ok(match commit {
            Commit::Durable => self.pool.begin().await?,
            // `BEGIN` and the setting in one round trip (sqlx sends a custom begin as a
            // simple query); `SET LOCAL` ends with the transaction.
            Commit::Relaxed => {
                self.pool
                    .begin_with("BEGIN; SET LOCAL synchronous_commit = off")
                    .await?
            }
        })
    }

    /// Tells every node's dispatcher (this one's too) that work is waiting; delivered when
    /// the transaction commits.
    async fn notify_work(&self, tx: &mut Transaction<'_, Postgres>) -> StoreResult<()> {
        sqlx::query("SELECT pg_notify($1, '')")
            .bind(&self.channel)
            .execute(&mut **tx)
            .await?;
        Ok(())
    }
}

/// Locks events in `seq` order before their deliveries change, so two nodes finishing
/// deliveries of one event see each other's results (and never deadlock).
async fn lock_events(tx: &mut Transaction<'_, Postgres>, seqs: &[i64]) -> StoreResult<()> {
    if seqs.is_empty() {
        return Ok(());
    }
    sqlx::query("SELECT seq FROM events WHERE seq = ANY($1) ORDER BY seq FOR UPDATE")
        .bind(seqs)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// Re-derives the statuses of fanned-out events from their deliveries. The caller holds the
/// events' locks ([`lock_events`]). An event whose status stays the same is not updated
/// (an update that changes nothing still writes a new row version).
async fn refresh_event_statuses(
    tx: &mut Transaction<'_, Postgres>,
    seqs: &[i64],
    now: i64,
) -> StoreResult<()> {
    if seqs.is_empty() {
        return Ok(());
    }
    let rows: Vec<(i64, String)> =
        sqlx::query_as("SELECT event_seq, state FROM deliveries WHERE event_seq = ANY($1)")
            .bind(seqs)
            .fetch_all(&mut **tx)
            .await?;
    let (mut ids, mut statuses, mut finals) = (Vec::new(), Vec::new(), Vec::new());
    for (seq, status, is_final) in derived_statuses(rows) {
        ids.push(seq);
        statuses.push(status);
        finals.push(is_final);
    }
    sqlx::query(
        "UPDATE events e SET status = u.status, \
         processed_at = CASE WHEN u.final THEN COALESCE(e.processed_at, $4) ELSE NULL END \
         FROM UNNEST($1::bigint[], $2::text[], $3::bool[]) AS u(seq, status, final) \
         WHERE e.seq = u.seq AND e.status NOT IN ('pending', 'skipped') AND e.status <> u.status",
    )
    .bind(&ids)
    .bind(&statuses)
    .bind(&finals)
    .bind(now)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Fails a webhook's queued and in-flight deliveries (it was deleted or switched off) and
/// re-derives their events' statuses. The caller holds the webhook's row lock, so no new
/// delivery to it can appear meanwhile; the events are locked before their deliveries change.
async fn end_unfinished_deliveries(
    tx: &mut Transaction<'_, Postgres>,
    webhook_seq: i64,
    now: i64,
) -> StoreResult<()> {
    sqlx::query(
        "SELECT seq FROM events WHERE seq IN ( \
           SELECT event_seq FROM deliveries WHERE webhook_seq = $1 AND state = 'queued' \
           UNION ALL \
           SELECT event_seq FROM deliveries WHERE webhook_seq = $1 AND state = 'in_flight') \
         ORDER BY seq FOR UPDATE",
    )
    .bind(webhook_seq)
    .execute(&mut **tx)
    .await?;
    let mut seqs: Vec<i64> = Vec::new();
    for statement in sql::END_UNFINISHED {
        seqs.extend(
            sqlx::query_scalar::<_, i64>(statement)
                .bind(now)
                .bind(webhook_seq)
                .fetch_all(&mut **tx)
                .await?,
        );
    }
    seqs.sort_unstable();
    seqs.dedup();
    refresh_event_statuses(tx, &seqs, now).await
}
