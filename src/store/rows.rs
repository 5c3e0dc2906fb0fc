//! Row shapes shared by both backends: the SQL column lists and how a row becomes a record.
//! Integers are `BIGINT` on PostgreSQL so one decoding serves both.

use sqlx::FromRow;
use uuid::Uuid;

use super::*;
use crate::domain::envelope::{EnvelopeFields, render_body};
use crate::domain::event_type::any_pattern_matches;
use crate::domain::scope::scopes_from_text;
use crate::domain::status::DeliveryState;

#[derive(FromRow)]
pub(super) struct TenantRow {
    pub(super) name: String,
    pub(super) created_at: i64,
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
pub(super) struct TokenRow {
    pub(super) id: String,
    pub(super) kind: String,
    pub(super) tenant: Option<String>,
    pub(super) scopes: String,
    pub(super) created_at: i64,
    pub(super) revoked_at: Option<i64>,
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

pub(super) const WEBHOOK_COLUMNS: &str =
    "id, tenant, name, url, api_key, event_types, is_active, metadata, created_at, updated_at";

#[derive(FromRow)]
pub(super) struct WebhookRow {
    pub(super) id: String,
    pub(super) tenant: String,
    pub(super) name: String,
    pub(super) url: String,
    pub(super) api_key: String,
    pub(super) event_types: String,
    pub(super) is_active: bool,
    pub(super) metadata: String,
    pub(super) created_at: i64,
    pub(super) updated_at: i64,
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

pub(super) const EVENT_COLUMNS: &str = "id, event_id, tenant, event_type, payload, user_id, source_service, \
     occurred_at, status, created_at, queued_at, processed_at";

#[derive(FromRow)]
pub(super) struct EventRow {
    pub(super) id: String,
    pub(super) event_id: String,
    pub(super) tenant: String,
    pub(super) event_type: String,
    pub(super) payload: String,
    pub(super) user_id: Option<String>,
    pub(super) source_service: Option<String>,
    pub(super) occurred_at: i64,
    pub(super) status: String,
    pub(super) created_at: i64,
    pub(super) queued_at: Option<i64>,
    pub(super) processed_at: Option<i64>,
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

pub(super) const LOG_SELECT: &str = "SELECT a.id, e.event_id, a.webhook_id, a.attempt_number, a.request_url, \
     a.request_headers, e.event_type, e.user_id, e.occurred_at, e.payload, a.response_status, \
     a.response_body, a.error_message, a.status, a.duration_ms, a.created_at, a.next_retry_at \
     FROM attempts a JOIN events e ON e.seq = a.event_seq";

#[derive(FromRow)]
pub(super) struct LogRow {
    pub(super) id: String,
    pub(super) event_id: String,
    pub(super) webhook_id: String,
    pub(super) attempt_number: i64,
    pub(super) request_url: String,
    pub(super) request_headers: String,
    pub(super) event_type: String,
    pub(super) user_id: Option<String>,
    pub(super) occurred_at: i64,
    pub(super) payload: String,
    pub(super) response_status: Option<i64>,
    pub(super) response_body: Option<String>,
    pub(super) error_message: Option<String>,
    pub(super) status: String,
    pub(super) duration_ms: Option<i64>,
    pub(super) created_at: i64,
    pub(super) next_retry_at: Option<i64>,
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

pub(super) fn parse_uuid(text: &str) -> StoreResult<Uuid> {
    Uuid::parse_str(text).map_err(|_| StoreError::Invalid(format!("stored id {text:?}")))
}

pub(super) fn is_unique_violation(error: &sqlx::Error) -> bool {
    matches!(error, sqlx::Error::Database(db) if db.is_unique_violation())
}

#[derive(FromRow)]
pub(super) struct PendingEvent {
    pub(super) seq: i64,
    pub(super) tenant: String,
    pub(super) event_type: String,
}

/// What fanning out decides for a batch of pending events: a delivery for each active
/// webhook of the event's tenant with a pattern matching its type; an event with at least
/// one is `processing`, the others are `skipped`. `W` is how the backend's deliveries name
/// their webhook (its id on PostgreSQL, its integer key on SQLite).
#[derive(Debug, PartialEq)]
pub(super) struct FanOutPlan<W> {
    /// (event seq, webhook)
    pub(super) deliveries: Vec<(i64, W)>,
    pub(super) processing: Vec<i64>,
    pub(super) skipped: Vec<i64>,
}

impl<W> Default for FanOutPlan<W> {
    fn default() -> Self {
        FanOutPlan {
            deliveries: Vec::new(),
            processing: Vec::new(),
            skipped: Vec::new(),
        }
    }
}

impl<W> FanOutPlan<W> {
    /// How many events the plan fans out.
    pub(super) fn events(&self) -> usize {
        self.processing.len() + self.skipped.len()
    }
}

/// Plans the fan-out of `pending` to `webhooks`: (tenant, webhook, event type patterns as a
/// JSON array), the active webhooks of the pending events' tenants.
pub(super) fn plan_fan_out<W: Clone>(
    pending: &[PendingEvent],
    webhooks: Vec<(String, W, String)>,
) -> FanOutPlan<W> {
    let mut subscribers: HashMap<String, Vec<(W, Vec<String>)>> = HashMap::new();
    for (tenant, id, patterns) in webhooks {
        let patterns: Vec<String> = serde_json::from_str(&patterns).unwrap_or_default();
        subscribers.entry(tenant).or_default().push((id, patterns));
    }
    let mut plan = FanOutPlan::default();
    for event in pending {
        let before = plan.deliveries.len();
        for (webhook_id, patterns) in subscribers.get(&event.tenant).into_iter().flatten() {
            if any_pattern_matches(patterns, &event.event_type) {
                plan.deliveries.push((event.seq, webhook_id.clone()));
            }
        }
        if plan.deliveries.len() > before {
            plan.processing.push(event.seq);
        } else {
            plan.skipped.push(event.seq);
        }
    }
    plan
}

#[derive(FromRow)]
pub(super) struct Candidate {
    pub(super) id: i64,
    pub(super) event_seq: i64,
    pub(super) webhook_id: String,
    pub(super) tenant: String,
    pub(super) attempts: i64,
    pub(super) cycle: i64,
    pub(super) event_id: String,
    pub(super) event_type: String,
    pub(super) user_id: Option<String>,
    pub(super) occurred_at: i64,
    pub(super) payload: String,
    pub(super) created_at: i64,
    pub(super) url: String,
    pub(super) api_key: String,
}

impl Candidate {
    /// The claimed delivery, with its body rendered from the event.
    pub(super) fn into_claimed(self, webhook_id: Uuid) -> ClaimedDelivery {
        let body = render_body(&EnvelopeFields {
            event_id: &self.event_id,
            event_type: &self.event_type,
            user_id: self.user_id.as_deref(),
            occurred_at_ms: self.occurred_at,
            payload_json: &self.payload,
        });
        ClaimedDelivery {
            delivery_id: self.id,
            event_seq: self.event_seq,
            event_id: self.event_id,
            event_created_at_ms: self.created_at,
            webhook_id,
            tenant: self.tenant,
            url: self.url,
            api_key: self.api_key,
            attempt_number: self.attempts as u32 + 1,
            cycle: self.cycle,
            body,
        }
    }
}

#[derive(FromRow)]
pub(super) struct SeqEventRow {
    pub(super) seq: i64,
    #[sqlx(flatten)]
    pub(super) event: EventRow,
}

/// Picks, in order, the candidates this node may claim: at most `request.limit`, and per
/// webhook and per tenant no more than their free in-flight slots. A candidate over a limit
/// is passed over, not waited for, so the others behind it are still taken.
pub(super) fn within_limits(
    candidates: Vec<Candidate>,
    request: &ClaimRequest,
) -> StoreResult<Vec<ClaimedDelivery>> {
    let mut taken: HashMap<Uuid, usize> = HashMap::new();
    let mut taken_by_tenant: HashMap<String, usize> = HashMap::new();
    let mut deliveries = Vec::with_capacity(candidates.len().min(request.limit));
    for candidate in candidates {
        if deliveries.len() >= request.limit {
            break;
        }
        let webhook_id = parse_uuid(&candidate.webhook_id)?;
        let busy = request.in_flight.get(&webhook_id).copied().unwrap_or(0);
        let count = taken.entry(webhook_id).or_insert(0);
        if busy + *count >= request.per_webhook_limit {
            continue;
        }
        let tenant_busy = request
            .in_flight_per_tenant
            .get(&candidate.tenant)
            .copied()
            .unwrap_or(0);
        let tenant_taken = taken_by_tenant.get(&candidate.tenant).copied().unwrap_or(0);
        if tenant_busy + tenant_taken >= request.per_tenant_limit {
            continue;
        }
        *count += 1;
        match taken_by_tenant.get_mut(&candidate.tenant) {
            Some(taken) => *taken += 1,
            None => {
                taken_by_tenant.insert(candidate.tenant.clone(), 1);
            }
        }
        deliveries.push(candidate.into_claimed(webhook_id));
    }
    Ok(deliveries)
}

/// The tenants with no free slot on this node: their webhooks are left out of the claim, so
/// that it reads only work it may take.
pub(super) fn saturated_tenants(request: &ClaimRequest) -> Vec<&str> {
    request
        .in_flight_per_tenant
        .iter()
        .filter(|(_, count)| **count >= request.per_tenant_limit)
        .map(|(tenant, _)| tenant.as_str())
        .collect()
}

/// Of the webhooks with queued deliveries (id, first due time, tenant), those with one due
/// by the claim's time and room under their own and their tenant's in-flight limits on this
/// node.
pub(super) fn webhooks_ready(
    queued: Vec<(String, i64, String)>,
    request: &ClaimRequest,
) -> Vec<String> {
    let saturated = saturated_tenants(request);
    queued
        .into_iter()
        .filter(|(id, first_due, tenant)| {
            let busy = Uuid::parse_str(id)
                .ok()
                .and_then(|id| request.in_flight.get(&id).copied())
                .unwrap_or(0);
            *first_due <= request.now_ms
                && busy < request.per_webhook_limit
                && !saturated.contains(&tenant.as_str())
        })
        .map(|(id, _, _)| id)
        .collect()
}

/// How many due deliveries a claim reads per ready webhook: each webhook's whole share when
/// few are ready, fewer as more are (at least one each), so a tick reads about four times
/// what it may claim however many webhooks have work.
pub(super) fn per_webhook_quota(request: &ClaimRequest, ready_webhooks: usize) -> usize {
    let QuotaBounds { reads, most } = QuotaBounds::of(request);
    reads.div_ceil(ready_webhooks.max(1)).clamp(1, most)
}

/// The two numbers [`per_webhook_quota`] divides and caps by, for a backend that does the
/// division in SQL (PostgreSQL counts the ready webhooks in the claim statement itself).
pub(super) struct QuotaBounds {
    /// Due deliveries one claim reads in all.
    pub reads: usize,
    /// The most one webhook gives.
    pub most: usize,
}

impl QuotaBounds {
    pub(super) fn of(request: &ClaimRequest) -> QuotaBounds {
        QuotaBounds {
            reads: request.limit * 4,
            most: request.per_webhook_limit.min(request.limit).max(1),
        }
    }
}

/// The state each attempt moves its delivery to, and when it is due again.
pub(super) fn next_states(records: &[AttemptRecord]) -> Vec<(DeliveryState, Option<i64>)> {
    records
        .iter()
        .map(|r| match r.next {
            NextStep::Succeeded => (DeliveryState::Succeeded, None),
            NextStep::RetryAt(at) => (DeliveryState::Queued, Some(at)),
            NextStep::Failed => (DeliveryState::Failed, None),
        })
        .collect()
}

/// The events (sorted, once each) whose delivery this batch finished, among those it moved:
/// their statuses need deriving again.
pub(super) fn finished_events(
    records: &[AttemptRecord],
    states: &[(DeliveryState, Option<i64>)],
    moved: &std::collections::HashSet<i64>,
) -> Vec<i64> {
    let mut seqs: Vec<i64> = records
        .iter()
        .zip(states)
        .filter(|(r, (state, _))| moved.contains(&r.delivery_id) && *state != DeliveryState::Queued)
        .map(|(r, _)| r.event_seq)
        .collect();
    seqs.sort_unstable();
    seqs.dedup();
    seqs
}

/// The instant a batch of attempt results is recorded at (events' `processedAt` when their
/// status becomes final): the start of its latest attempt.
pub(super) fn latest_attempt_at(records: &[AttemptRecord]) -> i64 {
    records
        .iter()
        .map(|r| r.created_at_ms)
        .max()
        .unwrap_or_default()
}

/// Logs an attempt result the database refused and that is therefore not recorded: its
/// delivery stays claimed until its lease runs out, and is then tried again.
pub(super) fn skip(record: &AttemptRecord, error: &StoreError) {
    tracing::error!(%error, attempt = %record.id, delivery = record.delivery_id,
        "attempt result refused by the database; skipped, its delivery is left to its lease");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(limit: usize, per_webhook_limit: usize, busy: &[(Uuid, usize)]) -> ClaimRequest {
        ClaimRequest {
            node: "node".into(),
            now_ms: 1_000,
            lease_ms: 35_000,
            fan_out_limit: 500,
            limit,
            per_webhook_limit,
            in_flight: busy.iter().copied().collect(),
            per_tenant_limit: 128,
            in_flight_per_tenant: HashMap::new(),
            finished: Vec::new(),
        }
    }

    fn candidate(id: i64, webhook: Uuid, tenant: &str) -> Candidate {
        Candidate {
            id,
            event_seq: id,
            webhook_id: webhook.to_string(),
            tenant: tenant.into(),
            attempts: 0,
            cycle: 1,
            event_id: format!("e{id}"),
            event_type: "a.b".into(),
            user_id: None,
            occurred_at: 0,
            payload: "{}".into(),
            created_at: 0,
            url: "https://hooks.example.com/".into(),
            api_key: "k".into(),
        }
    }

    #[test]
    fn a_claim_gives_no_tenant_more_than_its_free_share_and_takes_the_others_work() {
        let (dead_a, dead_b, live) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
        let mut request = request(128, 128, &[(dead_a, 2)]);
        request.per_tenant_limit = 3;
        request.in_flight_per_tenant = [("acme".to_string(), 2)].into();
        // acme's two webhooks come first in due order; globex's work is behind them.
        let mut candidates: Vec<Candidate> = (1..=6)
            .map(|id| candidate(id, if id % 2 == 0 { dead_a } else { dead_b }, "acme"))
            .collect();
        candidates.extend((7..=9).map(|id| candidate(id, live, "globex")));
        let claimed: Vec<i64> = within_limits(candidates, &request)
            .unwrap()
            .iter()
            .map(|d| d.delivery_id)
            .collect();
        assert_eq!(claimed, vec![1, 7, 8, 9]);
    }

    #[test]
    fn ready_webhooks_have_due_work_and_room() {
        let (full, partly, idle, later) = (
            Uuid::now_v7(),
            Uuid::now_v7(),
            Uuid::now_v7(),
            Uuid::now_v7(),
        );
        let saturated = Uuid::now_v7();
        let mut request = request(128, 4, &[(full, 4), (partly, 3)]);
        request.per_tenant_limit = 5;
        request.in_flight_per_tenant = [("acme".to_string(), 7), ("globex".to_string(), 5)].into();
        let queued = vec![
            (full.to_string(), 10, "acme".to_string()),
            (partly.to_string(), 10, "initech".to_string()),
            (idle.to_string(), 1_000, "initech".to_string()),
            (later.to_string(), 1_001, "initech".to_string()),
            (saturated.to_string(), 10, "globex".to_string()),
        ];
        assert_eq!(
            webhooks_ready(queued, &request),
            vec![partly.to_string(), idle.to_string()]
        );
    }

    #[test]
    fn quota_shares_four_times_the_claim_between_ready_webhooks() {
        // Few webhooks: each may fill its in-flight limit (bounded by the claim).
        assert_eq!(per_webhook_quota(&request(128, 128, &[]), 1), 128);
        assert_eq!(per_webhook_quota(&request(128, 32, &[]), 2), 32);
        assert_eq!(per_webhook_quota(&request(10, 128, &[]), 1), 10);
        // Many webhooks: a share each, never less than one.
        assert_eq!(per_webhook_quota(&request(128, 128, &[]), 64), 8);
        assert_eq!(per_webhook_quota(&request(128, 128, &[]), 10_000), 1);
        // A claim with no room reads nothing more than one row per webhook.
        assert_eq!(per_webhook_quota(&request(0, 128, &[]), 3), 1);
    }

    #[test]
    fn fan_out_plans_a_delivery_per_matching_webhook_of_the_tenant() {
        let event = |seq: i64, tenant: &str, event_type: &str| PendingEvent {
            seq,
            tenant: tenant.into(),
            event_type: event_type.into(),
        };
        let pending = [
            event(1, "acme", "card.issued"),
            event(2, "acme", "kyc.approved"),
            event(3, "globex", "card.issued"),
            event(4, "initech", "card.issued"),
        ];
        let webhook = |tenant: &str, id: &str, patterns: &str| {
            (tenant.to_string(), id.to_string(), patterns.to_string())
        };
        let webhooks = vec![
            webhook("acme", "cards", r#"["card.*"]"#),
            webhook("acme", "all", r#"["*"]"#),
            webhook("globex", "kyc", r#"["kyc.approved"]"#),
        ];
        assert_eq!(
            plan_fan_out(&pending, webhooks),
            FanOutPlan {
                deliveries: vec![(1, "cards".into()), (1, "all".into()), (2, "all".into())],
                processing: vec![1, 2],
                // globex subscribes to another type; initech has no webhook.
                skipped: vec![3, 4],
            }
        );
    }
}
