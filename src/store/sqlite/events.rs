//! Publishing events and the partner's view of them on SQLite.

use std::collections::{HashMap, HashSet};

use async_trait::async_trait;
use sqlx::{QueryBuilder, Sqlite, Transaction};
use uuid::Uuid;

use super::event_keys::{event_key, event_number, id_hex};
use super::{Commit, SqliteStore, chunks, json_list, push_rows};
use crate::domain::ids::{BusinessEventId, EventId, TenantId, WebhookId};
use crate::domain::time::now_ms;
use crate::store::model::Published;
use crate::store::rows::{
    EVENT_COLUMNS, EventRow, KeyedWebhookRow, LOG_SELECT, LogRow, event_page, retry_keys,
};
use crate::store::sql;
use crate::store::{
    ClaimRequest, ClaimedWork, DeliveryLog, DirectPublishOutcome, Event, EventPage, EventQuery,
    EventStore, MAX_EVENT_LOGS, NewEvent, PublishFailure, PublishOutcome, RetryOutcome, StoreError,
    StoreResult, pending_event,
};

impl SqliteStore {
    /// Stores `events` in one transaction, with the claim `claim` if given; see
    /// [`EventStore::publish_and_claim`].
    async fn store_events(
        &self,
        events: &[NewEvent],
        claim: Option<&ClaimRequest>,
    ) -> StoreResult<(Published, Option<ClaimedWork>)> {
        let mut tx = self.write_transaction(Commit::Durable).await?;
        let mut tenants: Vec<&str> = events.iter().map(|e| e.tenant.as_str()).collect();
        tenants.sort_unstable();
        tenants.dedup();
        let keyed: Vec<(&NewEvent, u128)> = events
            .iter()
            .map(|e| (e, event_number(e.event_id.as_str())))
            .collect();
        let mut keys: Vec<u128> = keyed.iter().map(|(_, key)| *key).collect();
        keys.sort_unstable();
        keys.dedup();
        let facts = batch_facts(&mut tx, &tenants, &keys).await?;
        let covered = self
            .recent_keys
            .cover(&mut tx, facts.through, facts.last_seq)
            .await?;
        let mut taken = facts.indexed;
        taken.extend(self.recent_keys.seqs_of(&keys));
        let mut existing = stored_events(&mut tx, &taken, &tenants).await?;
        let (new_rows, repeated) = new_events(&keyed, &facts.known, &existing);
        let stored = insert_events(&mut tx, &new_rows, facts.created_at).await?;
        let inserted: HashSet<String> = new_rows
            .iter()
            .map(|(event, _)| event.id.to_string())
            .collect();
        for first in repeated {
            let (first, _) = new_rows[first];
            let name = (first.tenant.clone(), first.event_id.clone());
            existing
                .entry(name)
                .or_insert_with(|| pending_event(first.clone(), facts.created_at));
        }
        let work = match claim {
            Some(request) => Some(self.claim_in(&mut tx, request, &[]).await?),
            None => None,
        };
        tx.commit().await?;
        self.recent_keys.committed(covered, stored);
        let published = Published {
            known: facts.known,
            inserted,
            existing,
            created_at_ms: facts.created_at,
        };
        Ok((published, work))
    }
}

/// What a publishing transaction reads before it writes; see [`batch_facts`].
struct BatchFacts {
    /// The commit's instant.
    created_at: i64,
    /// The last event stored.
    last_seq: i64,
    /// How far `event_ids` reaches.
    through: i64,
    /// The batch's tenants that exist.
    known: HashSet<String>,
    /// Indexed events holding one of the batch's business ids, under any tenant.
    indexed: Vec<i64>,
}

/// One question for what the batch needs to know, since each statement is a round trip to
/// sqlx's worker thread while the writer is held: the commit's instant (never earlier than
/// the last one, so `createdAt` agrees with the newest-first order of lists), the last event
/// stored and how far `event_ids` reaches, which tenants exist, and which indexed events hold
/// one of the batch's business ids `keys` (under any tenant; the tenant is compared later).
/// Events after `through` are in the writer's memory. The ids are indexed in full, so how
/// producers choose them does not matter: ids sharing a long prefix cost what any others do.
async fn batch_facts(
    tx: &mut Transaction<'_, Sqlite>,
    tenants: &[&str],
    keys: &[u128],
) -> StoreResult<BatchFacts> {
    let keys_hex: Vec<String> = keys.iter().map(|key| id_hex(*key)).collect();
    let (created_at, last_seq, through, known, indexed): (i64, i64, i64, String, String) =
        sqlx::query_as(
            "SELECT MAX(?1, COALESCE(last.created_at, 0)), COALESCE(last.seq, 0), \
             (SELECT through_seq FROM event_keys_merged), \
             (SELECT json_group_array(name) FROM tenants \
              WHERE name IN (SELECT value FROM json_each(?2))), \
             (SELECT json_group_array(seq) FROM event_ids \
              WHERE event_id IN (SELECT unhex(value) FROM json_each(?3))) \
             FROM (SELECT 1) LEFT JOIN \
                  (SELECT seq, created_at FROM events ORDER BY seq DESC LIMIT 1) AS last",
        )
        .bind(now_ms())
        .bind(json_list(tenants))
        .bind(json_list(&keys_hex))
        .fetch_one(&mut **tx)
        .await?;
    Ok(BatchFacts {
        created_at,
        last_seq,
        through,
        known: serde_json::from_str(&known)
            .map_err(|e| StoreError::Invalid(format!("tenant names: {e}")))?,
        indexed: serde_json::from_str(&indexed)
            .map_err(|e| StoreError::Invalid(format!("taken keys: {e}")))?,
    })
}

/// The events among `taken` (seqs) of the batch's `tenants`, by (tenant, eventId): the same
/// id under another tenant is a different event, and its row (payload and all) is not read.
async fn stored_events(
    tx: &mut Transaction<'_, Sqlite>,
    taken: &[i64],
    tenants: &[&str],
) -> StoreResult<HashMap<(TenantId, BusinessEventId), Event>> {
    let mut existing = HashMap::new();
    if taken.is_empty() {
        return Ok(existing);
    }
    let rows: Vec<EventRow> = sqlx::query_as(&format!(
        "SELECT {EVENT_COLUMNS} FROM events WHERE seq IN (SELECT value FROM json_each(?1)) \
         AND +tenant IN (SELECT value FROM json_each(?2))"
    ))
    .bind(json_list(taken))
    .bind(json_list(tenants))
    .fetch_all(&mut **tx)
    .await?;
    for row in rows {
        let event = Event::try_from(row)?;
        existing.insert((event.tenant.clone(), event.event_id.clone()), event);
    }
    Ok(existing)
}

/// The events of the batch (`keyed`) to insert: the first of each new name of a `known`
/// tenant; and `repeated`, the indexes among them of names seen again later in the batch,
/// which are answered with that first one.
fn new_events<'e>(
    keyed: &[(&'e NewEvent, u128)],
    known: &HashSet<String>,
    existing: &HashMap<(TenantId, BusinessEventId), Event>,
) -> (Vec<(&'e NewEvent, u128)>, Vec<usize>) {
    let is_stored = |event: &NewEvent| {
        !existing.is_empty()
            && existing.contains_key(&(event.tenant.clone(), event.event_id.clone()))
    };
    let mut first_of: HashMap<(&str, &str), usize> = HashMap::with_capacity(keyed.len());
    let mut new_rows: Vec<(&NewEvent, u128)> = Vec::with_capacity(keyed.len());
    let mut repeated: Vec<usize> = Vec::new();
    for &(event, key) in keyed
        .iter()
        .filter(|(e, _)| known.contains(e.tenant.as_str()))
    {
        let name = (event.tenant.as_str(), event.event_id.as_str());
        if let Some(&first) = first_of.get(&name) {
            repeated.push(first);
        } else if !is_stored(event) {
            first_of.insert(name, new_rows.len());
            new_rows.push((event, key));
        }
    }
    (new_rows, repeated)
}

/// Inserts the new events, `pending` and created at `created_at`: a few statements for the
/// whole batch, in order (so `seq` follows it). Returns each one's `(business id, seq)`.
/// `OR IGNORE` (see [`super`]): nothing here can break a constraint, the names were checked
/// and record ids are fresh, and a row refused anyway shows in the count.
async fn insert_events(
    tx: &mut Transaction<'_, Sqlite>,
    new_rows: &[(&NewEvent, u128)],
    created_at: i64,
) -> StoreResult<Vec<(u128, i64)>> {
    let mut stored: Vec<(u128, i64)> = Vec::with_capacity(new_rows.len());
    for chunk in chunks(new_rows) {
        let mut insert = QueryBuilder::<Sqlite>::new(
            "INSERT OR IGNORE INTO events (id, tenant, event_id, event_key, event_type, \
             payload, user_id, source_service, occurred_at, status, created_at) \
             SELECT * FROM (",
        );
        let rows = chunk.iter().flatten().count();
        push_rows(&mut insert, &chunk, 11, |row, (event, key)| {
            row.push_bind(event.id.to_string())
                .push_bind(event.tenant.as_str())
                .push_bind(event.event_id.as_str())
                .push_bind(event_key(*key))
                .push_bind(event.event_type.as_str())
                .push_bind(event.payload.as_str())
                .push_bind(event.user_id.as_deref())
                .push_bind(event.source_service.as_deref())
                .push_bind(event.occurred_at_ms)
                .push_bind("pending")
                .push_bind(created_at);
        });
        insert.push(") WHERE column1 IS NOT NULL RETURNING seq");
        let mut seqs: Vec<i64> = insert
            .build_query_scalar::<i64>()
            .fetch_all(&mut **tx)
            .await?;
        let refused = rows - seqs.len();
        if refused > 0 {
            return Err(StoreError::Invalid(format!(
                "{refused} of {rows} new events were refused by the database",
            )));
        }
        // Every row was inserted, in order: their `seq`s, sorted, are theirs in order.
        seqs.sort_unstable();
        stored.extend(chunk.iter().flatten().map(|(_, key)| *key).zip(seqs));
    }
    Ok(stored)
}

/// Opens a new cycle of the event for each webhook of `targets` (keys): it replaces every
/// earlier one of this event and webhook, finished or not, so the event's status reflects
/// each delivery's latest cycle; and the event is processing again.
async fn open_cycles(
    tx: &mut Transaction<'_, Sqlite>,
    event_seq: i64,
    targets: &[i64],
    now: i64,
) -> StoreResult<()> {
    for &webhook_seq in targets {
        sqlx::query(
            "UPDATE deliveries SET state = 'superseded', locked_until = NULL, \
             locked_by = NULL, updated_at = $1 \
             WHERE event_seq = $2 AND webhook_seq = $3 AND state <> 'superseded'",
        )
        .bind(now)
        .bind(event_seq)
        .bind(webhook_seq)
        .execute(&mut **tx)
        .await?;
        sqlx::query(
            "INSERT INTO deliveries (event_seq, webhook_seq, cycle, state, next_attempt_at, \
             created_at, updated_at) \
             SELECT $1, $2, COALESCE(MAX(cycle), 0) + 1, 'queued', $3, $3, $3 \
             FROM deliveries WHERE event_seq = $1 AND webhook_seq = $2",
        )
        .bind(event_seq)
        .bind(webhook_seq)
        .bind(now)
        .execute(&mut **tx)
        .await?;
    }
    sqlx::query(sql::REOPEN_EVENT)
        .bind(now)
        .bind(event_seq)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

#[async_trait]
impl EventStore for SqliteStore {
    async fn publish_events(
        &self,
        events: Vec<NewEvent>,
    ) -> Result<Vec<PublishOutcome>, PublishFailure> {
        match self.store_events(&events, None).await {
            Ok((published, _)) => Ok(published.outcomes(events)),
            Err(error) => Err(PublishFailure { error, events }),
        }
    }

    /// The claim runs after the inserts, in the publish's transaction: it fans the new
    /// events out and may claim them at once. It leaves the results waiting to the
    /// dispatcher, which gathers them for a few milliseconds into one write: carried by
    /// each publishing commit, they lengthened it (first-attempt p50 at 300 events/s rose
    /// by 0.4 ms) and saved less.
    async fn publish_and_claim(
        &self,
        events: Vec<NewEvent>,
        claim: &ClaimRequest,
    ) -> Result<(Vec<PublishOutcome>, Option<ClaimedWork>), PublishFailure> {
        match self.store_events(&events, Some(claim)).await {
            Ok((published, work)) => Ok((published.outcomes(events), work)),
            Err(error) => Err(PublishFailure { error, events }),
        }
    }

    async fn list_events(&self, query: &EventQuery) -> StoreResult<EventPage> {
        let (count, page) = sql::list_events::<Sqlite>(query);
        let total = count.fetch_one(&self.reader).await?;
        event_page(total, page.fetch_all(&self.reader).await?, query.limit)
    }

    async fn find_event(&self, tenant: &TenantId, id: &str) -> StoreResult<Option<Event>> {
        // A record id wins over a business id that happens to be equal to it. Only a UUID
        // can be either; a business id is found through its key.
        let Ok(id) = Uuid::parse_str(id) else {
            return Ok(None);
        };
        let id = id.to_string();
        // The lookups in that order, each through its own index (`+tenant` keeps SQLite from
        // walking the tenant's events instead): the record id, then the business id in
        // `event_ids`, in the tail this process knows, and in the rows after that (see
        // [`super::event_keys`]). The memory is read before the statement starts, so an event
        // it no longer holds has been merged into `event_ids` by then.
        let key = event_number(&id);
        let (recent, known) = self.recent_keys.lookup(key);
        let row: Option<EventRow> = sqlx::query_as(&format!(
            "SELECT {EVENT_COLUMNS} FROM events WHERE id = ?2 AND +tenant = ?1 \
             UNION ALL \
             SELECT {EVENT_COLUMNS} FROM events \
             WHERE seq IN (SELECT seq FROM event_ids WHERE event_id = unhex(?3) \
                           UNION ALL SELECT value FROM json_each(?4)) \
             AND event_id = ?2 AND +tenant = ?1 \
             UNION ALL \
             SELECT {EVENT_COLUMNS} FROM events \
             WHERE seq > COALESCE(?5, (SELECT through_seq FROM event_keys_merged)) \
             AND event_id = ?2 AND +tenant = ?1 \
             LIMIT 1"
        ))
        .bind(tenant.as_str())
        .bind(&id)
        .bind(id_hex(key))
        .bind(json_list(&recent))
        .bind(known)
        .fetch_optional(&self.reader)
        .await?;
        row.map(Event::try_from).transpose()
    }

    async fn event_logs(&self, tenant: &TenantId, event: EventId) -> StoreResult<Vec<DeliveryLog>> {
        let rows: Vec<LogRow> = sqlx::query_as(&format!(
            "{LOG_SELECT} WHERE e.id = ? AND e.tenant = ? \
             ORDER BY a.created_at DESC, a.rowid DESC LIMIT ?"
        ))
        .bind(event.to_string())
        .bind(tenant.as_str())
        .bind(i64::from(MAX_EVENT_LOGS))
        .fetch_all(&self.reader)
        .await?;
        // Read newest first to keep the newest; answered oldest first.
        rows.into_iter().rev().map(DeliveryLog::try_from).collect()
    }

    async fn event_position(&self, tenant: &TenantId, event: EventId) -> StoreResult<Option<i64>> {
        Ok(sqlx::query_scalar(sql::EVENT_POSITION)
            .bind(event.to_string())
            .bind(tenant.as_str())
            .fetch_optional(&self.reader)
            .await?)
    }

    async fn retry_event(
        &self,
        tenant: &TenantId,
        event: EventId,
        webhook: Option<WebhookId>,
    ) -> StoreResult<RetryOutcome> {
        let mut tx = self.write_transaction(Commit::Durable).await?;
        let found: Option<(i64, String)> = sqlx::query_as(sql::RETRY_EVENT)
            .bind(event.to_string())
            .bind(tenant.as_str())
            .fetch_optional(&mut *tx)
            .await?;
        let Some((event_seq, event_type)) = found else {
            return Err(StoreError::Invalid(format!(
                "event {event} vanished during retry"
            )));
        };
        let rows: Vec<KeyedWebhookRow> = sqlx::query_as(sql::RETRY_WEBHOOKS)
            .bind(tenant.as_str())
            .bind(webhook.map(|id| id.to_string()))
            .fetch_all(&mut *tx)
            .await?;
        let targets = match retry_keys(rows, webhook.is_some(), &event_type)? {
            Ok(targets) => targets,
            Err(outcome) => return Ok(outcome),
        };
        open_cycles(&mut tx, event_seq, &targets, now_ms()).await?;
        tx.commit().await?;
        Ok(RetryOutcome::Queued(targets.len() as u32))
    }

    async fn publish_to_webhook(
        &self,
        webhook: WebhookId,
        event: NewEvent,
    ) -> StoreResult<DirectPublishOutcome> {
        self.store_direct(&webhook.to_string(), event).await
    }
}
