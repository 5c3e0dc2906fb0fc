//! `herald events list|show|retry`: a tenant's events, one event with its attempts, and a
//! manual retry, straight on the store. The rules and messages are the partner API's
//! (`GET /v1/webhooks/events`, `.../{eventId}/logs`, `.../{eventId}/retry`) and `--json`
//! prints the API's own views, so that an operator and a partner see the same thing.

use anyhow::{Context, bail};
use clap::{Args, Subcommand};

use super::ensure_tenant;
use super::instant::parse_instant;
use super::output::{dash, print_json};
use crate::api::events::{EventLogs, RetryQueued};
use crate::api::views::{DeliveryLogView, EventView};
use crate::domain::ids::{BusinessEventId, TenantId, WebhookId};
use crate::domain::status::EventStatus;
use crate::domain::time::{format_ms, now_ms};
use crate::store::{DeliveryLog, Event, EventQuery, RetryOutcome, Store};

/// Most events one `events list` prints.
const MAX_LIST: u32 = 1_000;

#[derive(Subcommand)]
pub enum EventsCommand {
    /// List a tenant's events, newest first.
    List(ListArgs),
    /// Show an event and its delivery attempts (the newest 1,000 at most), oldest first.
    Show {
        /// Record id or business eventId.
        id: String,
        /// Tenant name.
        #[arg(long)]
        tenant: TenantId,
        /// Print {"event":...,"logs":[...]} as GET /v1/webhooks/events/{id}/logs does.
        #[arg(long)]
        json: bool,
    },
    /// Start a new delivery cycle for an event, to every active subscribed webhook or to one.
    Retry {
        /// Record id or business eventId.
        id: String,
        /// Tenant name.
        #[arg(long)]
        tenant: TenantId,
        /// Retry to this webhook only; it must be active.
        #[arg(long, value_name = "WEBHOOK_ID")]
        webhook: Option<String>,
        /// Print {"eventId":...,"webhookCount":N,"message":...}.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Args)]
pub struct ListArgs {
    /// Tenant name.
    #[arg(long)]
    tenant: TenantId,
    /// Only events with this status: pending, processing, completed, failed or skipped.
    #[arg(long)]
    status: Option<String>,
    /// Only events created since then: a duration back from now (1h, 7d) or an ISO 8601
    /// instant.
    #[arg(long, value_name = "DURATION|ISO")]
    since: Option<String>,
    /// How many events to print, 1 to 1000.
    #[arg(long, default_value_t = 50)]
    limit: u32,
    /// Print a JSON array of events as the API renders them.
    #[arg(long)]
    json: bool,
}

/// Runs an `events` command against `store`.
pub async fn events(store: &dyn Store, command: EventsCommand) -> anyhow::Result<()> {
    match command {
        EventsCommand::List(args) => list(store, args).await,
        EventsCommand::Show { id, tenant, json } => show(store, &tenant, &id, json).await,
        EventsCommand::Retry {
            id,
            tenant,
            webhook,
            json,
        } => retry(store, &tenant, &id, webhook.as_deref(), json).await,
    }
}

async fn list(store: &dyn Store, args: ListArgs) -> anyhow::Result<()> {
    let status = args
        .status
        .as_deref()
        .map(|text| {
            EventStatus::parse(text).with_context(|| {
                format!(
                    "unknown status {text:?}: use pending, processing, completed, failed or skipped"
                )
            })
        })
        .transpose()?;
    let since_ms = args
        .since
        .as_deref()
        .map(|text| parse_instant("--since", text, now_ms()))
        .transpose()?;
    if !(1..=MAX_LIST).contains(&args.limit) {
        bail!("--limit must be an integer between 1 and {MAX_LIST}");
    }
    ensure_tenant(store, &args.tenant).await?;
    let page = store
        .list_events(&EventQuery {
            tenant: args.tenant,
            status,
            event_type: None,
            since_ms,
            until_ms: None,
            before_cursor: None,
            limit: args.limit,
        })
        .await?;
    if args.json {
        let views: Vec<EventView> = page.events.into_iter().map(EventView::from).collect();
        return print_json(&views);
    }
    println!(
        "{:<36}  {:<36}  {:<28}  {:<10}  {:<24}  PROCESSED",
        "ID", "EVENT ID", "TYPE", "STATUS", "CREATED"
    );
    for event in &page.events {
        println!(
            "{:<36}  {:<36}  {:<28}  {:<10}  {:<24}  {}",
            event.id,
            event.event_id,
            event.event_type,
            event.status.as_str(),
            format_ms(event.created_at_ms),
            dash(event.processed_at_ms.map(format_ms)),
        );
    }
    println!("{} of {} event(s)", page.events.len(), page.total);
    Ok(())
}

/// The tenant's event named by record id or business eventId, as the API finds it.
async fn find_event(store: &dyn Store, tenant: &TenantId, id: &str) -> anyhow::Result<Event> {
    ensure_tenant(store, tenant).await?;
    // Both ids are UUIDs, stored in lowercase hyphenated form; anything else names no event.
    let Some(id) = BusinessEventId::parse(id.trim()) else {
        bail!("Event not found");
    };
    match store.find_event(tenant, id.as_str()).await? {
        Some(event) => Ok(event),
        None => bail!("Event not found"),
    }
}

async fn show(store: &dyn Store, tenant: &TenantId, id: &str, json: bool) -> anyhow::Result<()> {
    let event = find_event(store, tenant, id).await?;
    let logs = store.event_logs(tenant, event.id).await?;
    if json {
        return print_json(&EventLogs {
            event: event.into(),
            logs: logs.into_iter().map(DeliveryLogView::from).collect(),
        });
    }
    print_event(&event);
    println!();
    print_attempts(&logs);
    Ok(())
}

fn print_event(event: &Event) {
    let rows = [
        ("ID", event.id.to_string()),
        ("Event ID", event.event_id.to_string()),
        ("Tenant", event.tenant.to_string()),
        ("Type", event.event_type.clone()),
        ("Status", event.status.as_str().to_string()),
        ("User", dash(event.user_id.clone())),
        ("Source", dash(event.source_service.clone())),
        ("Occurred", format_ms(event.occurred_at_ms)),
        ("Created", format_ms(event.created_at_ms)),
        ("Queued", dash(event.queued_at_ms.map(format_ms))),
        ("Processed", dash(event.processed_at_ms.map(format_ms))),
        ("Payload", event.payload.clone()),
    ];
    for (name, value) in rows {
        println!("{name:<10} {value}");
    }
}

fn print_attempts(logs: &[DeliveryLog]) {
    if logs.is_empty() {
        println!("No attempts yet.");
        return;
    }
    println!(
        "{:<7}  {:<36}  {:<10}  {:<4}  {:<8}  {:<24}  {:<24}  ERROR",
        "ATTEMPT", "WEBHOOK", "STATUS", "HTTP", "MS", "AT", "NEXT RETRY"
    );
    for log in logs {
        println!(
            "{:<7}  {:<36}  {:<10}  {:<4}  {:<8}  {:<24}  {:<24}  {}",
            log.attempt_number,
            log.webhook_id,
            log.delivery_status.as_str(),
            dash(log.response_status),
            dash(log.duration_ms),
            format_ms(log.created_at_ms),
            dash(log.next_retry_at_ms.map(format_ms)),
            dash(log.error_message.as_deref()),
        );
    }
}

async fn retry(
    store: &dyn Store,
    tenant: &TenantId,
    id: &str,
    webhook: Option<&str>,
    json: bool,
) -> anyhow::Result<()> {
    let webhook = webhook
        .map(|text| WebhookId::parse(text.trim()).context("--webhook must be a valid UUID"))
        .transpose()?;
    let event = find_event(store, tenant, id).await?;
    // The store wakes a running server itself: PostgreSQL notifies every node; on SQLite the
    // server's dispatcher looks at the queue again within 5 s.
    let count = match store.retry_event(tenant, event.id, webhook).await? {
        RetryOutcome::Queued(count) => count,
        RetryOutcome::WebhookNotFound => bail!("Webhook not found"),
        RetryOutcome::WebhookInactive => bail!("Webhook is not active"),
    };
    let queued = RetryQueued {
        event_id: id.to_string(),
        webhook_count: count,
        message: format!("Event queued for retry to {count} webhook(s)"),
    };
    if json {
        print_json(&queued)
    } else {
        println!("{}", queued.message);
        Ok(())
    }
}
