//! The SQLite backend: one file in WAL mode. Every write goes through a single connection
//! (SQLite has one writer; queuing in the pool beats retrying on `SQLITE_BUSY`), reads through
//! a pool of their own. Commits are `synchronous = FULL`: an acknowledged write survives a
//! crash of the machine, not only of the process.

use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{FromRow, Sqlite, Transaction};
use uuid::Uuid;

use super::*;
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

#[async_trait]
impl Store for SqliteStore {
    async fn migrate(&self) -> StoreResult<()> {
        MIGRATOR.run(&self.writer).await?;
        Ok(())
    }

    async fn ping(&self) -> StoreResult<()> {
        sqlx::query("SELECT 1").execute(&self.reader).await?;
        Ok(())
    }

    async fn create_tenant(&self, name: &str) -> StoreResult<Tenant> {
        let created_at = now_ms();
        let result = sqlx::query("INSERT INTO tenants (name, created_at) VALUES (?, ?)")
            .bind(name)
            .bind(created_at)
            .execute(&self.writer)
            .await;
        match result {
            Ok(_) => Ok(Tenant {
                name: name.to_string(),
                created_at_ms: created_at,
            }),
            Err(e) if is_unique_violation(&e) => Err(StoreError::Conflict(format!(
                "tenant {name} already exists"
            ))),
            Err(e) => Err(e.into()),
        }
    }

    async fn list_tenants(&self) -> StoreResult<Vec<Tenant>> {
        let rows: Vec<TenantRow> =
            sqlx::query_as("SELECT name, created_at FROM tenants ORDER BY name")
                .fetch_all(&self.reader)
                .await?;
        Ok(rows.into_iter().map(Tenant::from).collect())
    }

    async fn create_token(&self, token: NewToken) -> StoreResult<Token> {
        let created_at = now_ms();
        let result = sqlx::query(
            "INSERT INTO tokens (id, hash, kind, tenant, scopes, created_at) \
             VALUES (?, ?, ?, ?, ?, ?)",
        )
        .bind(token.id.to_string())
        .bind(&token.hash)
        .bind(token.kind.as_str())
        .bind(&token.tenant)
        .bind(scopes_to_text(&token.scopes))
        .bind(created_at)
        .execute(&self.writer)
        .await;
        match result {
            Ok(_) => Ok(Token {
                id: token.id,
                kind: token.kind,
                tenant: token.tenant,
                scopes: token.scopes,
                created_at_ms: created_at,
                revoked_at_ms: None,
            }),
            Err(sqlx::Error::Database(db)) if db.is_foreign_key_violation() => {
                Err(StoreError::Conflict(format!(
                    "unknown tenant {}",
                    token.tenant.unwrap_or_default()
                )))
            }
            Err(e) => Err(e.into()),
        }
    }

    async fn list_tokens(&self) -> StoreResult<Vec<Token>> {
        let rows: Vec<TokenRow> = sqlx::query_as(
            "SELECT id, kind, tenant, scopes, created_at, revoked_at FROM tokens \
             ORDER BY created_at, id",
        )
        .fetch_all(&self.reader)
        .await?;
        rows.into_iter().map(Token::try_from).collect()
    }

    async fn revoke_token(&self, id: Uuid) -> StoreResult<bool> {
        let result =
            sqlx::query("UPDATE tokens SET revoked_at = COALESCE(revoked_at, ?) WHERE id = ?")
                .bind(now_ms())
                .bind(id.to_string())
                .execute(&self.writer)
                .await?;
        Ok(result.rows_affected() > 0)
    }

    async fn find_token(&self, hash: &str) -> StoreResult<Option<Token>> {
        let row: Option<TokenRow> = sqlx::query_as(
            "SELECT id, kind, tenant, scopes, created_at, revoked_at FROM tokens WHERE hash = ?",
        )
        .bind(hash)
        .fetch_optional(&self.reader)
        .await?;
        row.map(Token::try_from).transpose()
    }

    async fn list_webhooks(&self, tenant: &str) -> StoreResult<Vec<Webhook>> {
        let rows: Vec<WebhookRow> = sqlx::query_as(&format!(
            "SELECT {WEBHOOK_COLUMNS} FROM webhooks WHERE tenant = ? ORDER BY created_at, id"
        ))
        .bind(tenant)
        .fetch_all(&self.reader)
        .await?;
        rows.into_iter().map(Webhook::try_from).collect()
    }

    async fn find_webhook(&self, tenant: &str, id: Uuid) -> StoreResult<Option<Webhook>> {
        let row: Option<WebhookRow> = sqlx::query_as(&format!(
            "SELECT {WEBHOOK_COLUMNS} FROM webhooks WHERE tenant = ? AND id = ?"
        ))
        .bind(tenant)
        .bind(id.to_string())
        .fetch_optional(&self.reader)
        .await?;
        row.map(Webhook::try_from).transpose()
    }

    async fn create_webhook(
        &self,
        webhook: NewWebhook,
        max_per_tenant: u32,
    ) -> StoreResult<Option<Webhook>> {
        // The count and the insert share the single writer, so two concurrent creates cannot
        // both slip under the cap.
        let mut tx = self.writer.begin().await?;
        let count: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM webhooks WHERE tenant = ?")
            .bind(&webhook.tenant)
            .fetch_one(&mut *tx)
            .await?;
        if count >= i64::from(max_per_tenant) {
            return Ok(None);
        }
        let now = now_ms();
        let event_types = serde_json::to_string(&webhook.event_types).unwrap_or_default();
        sqlx::query(&format!(
            "INSERT INTO webhooks ({WEBHOOK_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
        ))
        .bind(webhook.id.to_string())
        .bind(&webhook.tenant)
        .bind(&webhook.name)
        .bind(&webhook.url)
        .bind(&webhook.api_key)
        .bind(&event_types)
        .bind(webhook.is_active)
        .bind(&webhook.metadata)
        .bind(now)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(Some(Webhook {
            id: webhook.id,
            tenant: webhook.tenant,
            name: webhook.name,
            url: webhook.url,
            api_key: webhook.api_key,
            event_types: webhook.event_types,
            is_active: webhook.is_active,
            metadata: webhook.metadata,
            created_at_ms: now,
            updated_at_ms: now,
        }))
    }

    async fn change_webhook(
        &self,
        tenant: &str,
        id: Uuid,
        change: WebhookChange,
    ) -> StoreResult<Option<Webhook>> {
        let mut tx = self.writer.begin().await?;
        let row: Option<WebhookRow> = sqlx::query_as(&format!(
            "SELECT {WEBHOOK_COLUMNS} FROM webhooks WHERE tenant = ? AND id = ?"
        ))
        .bind(tenant)
        .bind(id.to_string())
        .fetch_optional(&mut *tx)
        .await?;
        let Some(row) = row else { return Ok(None) };
        let mut webhook = Webhook::try_from(row)?;
        match change {
            WebhookChange::Fields(fields) => {
                if let Some(name) = fields.name {
                    webhook.name = name;
                }
                if let Some(url) = fields.url {
                    webhook.url = url;
                }
                if let Some(event_types) = fields.event_types {
                    webhook.event_types = event_types;
                }
                if let Some(is_active) = fields.is_active {
                    webhook.is_active = is_active;
                }
                if let Some(metadata) = fields.metadata {
                    webhook.metadata = metadata;
                }
            }
            WebhookChange::RotateKey { api_key } => webhook.api_key = api_key,
        }
        // Strictly later than before, even within one millisecond: clients compare it.
        webhook.updated_at_ms = now_ms().max(webhook.updated_at_ms + 1);
        sqlx::query(
            "UPDATE webhooks SET name = ?, url = ?, api_key = ?, event_types = ?, is_active = ?, \
             metadata = ?, updated_at = ? WHERE id = ?",
        )
        .bind(&webhook.name)
        .bind(&webhook.url)
        .bind(&webhook.api_key)
        .bind(serde_json::to_string(&webhook.event_types).unwrap_or_default())
        .bind(webhook.is_active)
        .bind(&webhook.metadata)
        .bind(webhook.updated_at_ms)
        .bind(id.to_string())
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(Some(webhook))
    }

    async fn delete_webhook(&self, tenant: &str, id: Uuid) -> StoreResult<bool> {
        let id = id.to_string();
        let mut tx = self.writer.begin().await?;
        let deleted = sqlx::query("DELETE FROM webhooks WHERE tenant = ? AND id = ?")
            .bind(tenant)
            .bind(&id)
            .execute(&mut *tx)
            .await?;
        if deleted.rows_affected() == 0 {
            return Ok(false);
        }
        let now = now_ms();
        let affected: Vec<i64> = sqlx::query_scalar(
            "UPDATE deliveries SET state = 'failed', locked_until = NULL, locked_by = NULL, \
             updated_at = ? WHERE webhook_id = ? AND state IN ('queued', 'in_flight') \
             RETURNING event_seq",
        )
        .bind(now)
        .bind(&id)
        .fetch_all(&mut *tx)
        .await?;
        let mut events = affected;
        events.sort_unstable();
        events.dedup();
        for event_seq in events {
            refresh_event_status(&mut tx, event_seq, now).await?;
        }
        tx.commit().await?;
        Ok(true)
    }

    async fn webhook_logs(
        &self,
        tenant: &str,
        id: Uuid,
        limit: u32,
    ) -> StoreResult<Vec<DeliveryLog>> {
        let rows: Vec<LogRow> = sqlx::query_as(&format!(
            "{LOG_SELECT} WHERE a.webhook_id = ? AND e.tenant = ? \
             ORDER BY a.created_at DESC, a.rowid DESC LIMIT ?"
        ))
        .bind(id.to_string())
        .bind(tenant)
        .bind(i64::from(limit))
        .fetch_all(&self.reader)
        .await?;
        rows.into_iter().map(DeliveryLog::try_from).collect()
    }

    async fn publish_events(&self, events: Vec<NewEvent>) -> StoreResult<Vec<PublishOutcome>> {
        let mut tx = self.writer.begin().await?;
        let mut outcomes = Vec::with_capacity(events.len());
        let mut known_tenants: Vec<String> = Vec::new();
        for event in events {
            if !known_tenants.contains(&event.tenant) {
                let exists: Option<i64> =
                    sqlx::query_scalar("SELECT 1 FROM tenants WHERE name = ?")
                        .bind(&event.tenant)
                        .fetch_optional(&mut *tx)
                        .await?;
                if exists.is_none() {
                    outcomes.push(PublishOutcome::UnknownTenant(event.tenant));
                    continue;
                }
                known_tenants.push(event.tenant.clone());
            }
            let inserted = sqlx::query(
                "INSERT INTO events (id, tenant, event_id, event_type, payload, user_id, \
                 source_service, occurred_at, status, created_at) \
                 VALUES (?, ?, ?, ?, ?, ?, ?, ?, 'pending', ?) \
                 ON CONFLICT (tenant, event_id) DO NOTHING",
            )
            .bind(event.id.to_string())
            .bind(&event.tenant)
            .bind(&event.event_id)
            .bind(&event.event_type)
            .bind(&event.payload)
            .bind(&event.user_id)
            .bind(&event.source_service)
            .bind(event.occurred_at_ms)
            .bind(event.created_at_ms)
            .execute(&mut *tx)
            .await?;
            if inserted.rows_affected() == 1 {
                outcomes.push(PublishOutcome::Created(pending_event(event)));
            } else {
                let row: EventRow = sqlx::query_as(&format!(
                    "SELECT {EVENT_COLUMNS} FROM events WHERE tenant = ? AND event_id = ?"
                ))
                .bind(&event.tenant)
                .bind(&event.event_id)
                .fetch_one(&mut *tx)
                .await?;
                outcomes.push(PublishOutcome::Existing(row.try_into()?));
            }
        }
        tx.commit().await?;
        Ok(outcomes)
    }

    async fn list_events(&self, query: &EventQuery) -> StoreResult<EventPage> {
        // Optional filters are written as `(? IS NULL OR ...)` so one statement (prepared
        // once per connection) serves every combination.
        const FILTER: &str = "tenant = ?1 AND (?2 IS NULL OR status = ?2) \
             AND (?3 IS NULL OR event_type = ?3) AND (?4 IS NULL OR created_at >= ?4) \
             AND (?5 IS NULL OR created_at <= ?5)";
        let total: i64 = sqlx::query_scalar(&format!("SELECT COUNT(*) FROM events WHERE {FILTER}"))
            .bind(&query.tenant)
            .bind(query.status.map(|s| s.as_str()))
            .bind(&query.event_type)
            .bind(query.since_ms)
            .bind(query.until_ms)
            .fetch_one(&self.reader)
            .await?;
        let rows: Vec<(i64, EventRow)> = sqlx::query_as::<_, SeqEventRow>(&format!(
            "SELECT seq, {EVENT_COLUMNS} FROM events WHERE {FILTER} \
             AND (?6 IS NULL OR seq < ?6) ORDER BY seq DESC LIMIT ?7"
        ))
        .bind(&query.tenant)
        .bind(query.status.map(|s| s.as_str()))
        .bind(&query.event_type)
        .bind(query.since_ms)
        .bind(query.until_ms)
        .bind(query.before_cursor)
        .bind(i64::from(query.limit))
        .fetch_all(&self.reader)
        .await?
        .into_iter()
        .map(|row| (row.seq, row.event))
        .collect();
        let next_cursor = match rows.last() {
            Some((seq, _)) if rows.len() == query.limit as usize => Some(*seq),
            _ => None,
        };
        let events = rows
            .into_iter()
            .map(|(_, row)| Event::try_from(row))
            .collect::<StoreResult<Vec<_>>>()?;
        Ok(EventPage {
            total,
            events,
            next_cursor,
        })
    }

    async fn find_event(&self, tenant: &str, id: &str) -> StoreResult<Option<Event>> {
        // A record id wins over a business id that happens to be equal to it.
        let row: Option<EventRow> = sqlx::query_as(&format!(
            "SELECT {EVENT_COLUMNS} FROM events WHERE tenant = ?1 AND (id = ?2 OR event_id = ?2) \
             ORDER BY id = ?2 DESC LIMIT 1"
        ))
        .bind(tenant)
        .bind(id)
        .fetch_optional(&self.reader)
        .await?;
        row.map(Event::try_from).transpose()
    }

    async fn event_logs(&self, tenant: &str, event: Uuid) -> StoreResult<Vec<DeliveryLog>> {
        let rows: Vec<LogRow> = sqlx::query_as(&format!(
            "{LOG_SELECT} WHERE e.id = ? AND e.tenant = ? ORDER BY a.created_at, a.rowid"
        ))
        .bind(event.to_string())
        .bind(tenant)
        .fetch_all(&self.reader)
        .await?;
        rows.into_iter().map(DeliveryLog::try_from).collect()
    }

    async fn retry_event(
        &self,
        tenant: &str,
        event: Uuid,
        webhook: Option<Uuid>,
    ) -> StoreResult<RetryOutcome> {
        let mut tx = self.writer.begin().await?;
        let found: Option<(i64, String)> =
            sqlx::query_as("SELECT seq, event_type FROM events WHERE id = ? AND tenant = ?")
                .bind(event.to_string())
                .bind(tenant)
                .fetch_optional(&mut *tx)
                .await?;
        let Some((event_seq, event_type)) = found else {
            return Err(StoreError::Invalid(format!(
                "event {event} vanished during retry"
            )));
        };
        let webhooks: Vec<WebhookRow> = sqlx::query_as(&format!(
            "SELECT {WEBHOOK_COLUMNS} FROM webhooks WHERE tenant = ? AND (? IS NULL OR id = ?)"
        ))
        .bind(tenant)
        .bind(webhook.map(|id| id.to_string()))
        .bind(webhook.map(|id| id.to_string()))
        .fetch_all(&mut *tx)
        .await?;
        let webhooks: Vec<Webhook> = webhooks
            .into_iter()
            .map(Webhook::try_from)
            .collect::<StoreResult<_>>()?;
        let targets: Vec<&Webhook> = match webhook {
            Some(_) => match webhooks.first() {
                None => return Ok(RetryOutcome::WebhookNotFound),
                Some(w) if !w.is_active => return Ok(RetryOutcome::WebhookInactive),
                Some(w) => vec![w],
            },
            None => webhooks
                .iter()
                .filter(|w| w.is_active && any_pattern_matches(&w.event_types, &event_type))
                .collect(),
        };
        if targets.is_empty() {
            return Ok(RetryOutcome::Queued(0));
        }
        let now = now_ms();
        for target in &targets {
            let webhook_id = target.id.to_string();
            // The new cycle replaces every earlier one of this event and webhook, finished or
            // not, so the event's status reflects each delivery's latest cycle.
            sqlx::query(
                "UPDATE deliveries SET state = 'superseded', locked_until = NULL, \
                 locked_by = NULL, updated_at = ? \
                 WHERE event_seq = ? AND webhook_id = ? AND state <> 'superseded'",
            )
            .bind(now)
            .bind(event_seq)
            .bind(&webhook_id)
            .execute(&mut *tx)
            .await?;
            let last_cycle: i64 = sqlx::query_scalar(
                "SELECT COALESCE(MAX(cycle), 0) FROM deliveries \
                 WHERE event_seq = ? AND webhook_id = ?",
            )
            .bind(event_seq)
            .bind(&webhook_id)
            .fetch_one(&mut *tx)
            .await?;
            sqlx::query(
                "INSERT INTO deliveries (event_seq, webhook_id, cycle, state, next_attempt_at, \
                 created_at, updated_at) VALUES (?, ?, ?, 'queued', ?, ?, ?)",
            )
            .bind(event_seq)
            .bind(&webhook_id)
            .bind(last_cycle + 1)
            .bind(now)
            .bind(now)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        }
        sqlx::query(
            "UPDATE events SET status = 'processing', processed_at = NULL, \
             queued_at = COALESCE(queued_at, ?) WHERE seq = ?",
        )
        .bind(now)
        .bind(event_seq)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(RetryOutcome::Queued(targets.len() as u32))
    }
}

#[derive(FromRow)]
struct SeqEventRow {
    seq: i64,
    #[sqlx(flatten)]
    event: EventRow,
}
