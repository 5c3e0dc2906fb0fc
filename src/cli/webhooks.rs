//! `herald webhooks list|recover`: a tenant's webhooks with their health, and re-sending a
//! range of events a webhook missed, straight on the store, so that an operator sees which
//! partner endpoints are failing or were disabled and can catch one up once it is back.
//! `--json` prints the API's views: each webhook as `GET /v1/webhooks` shows it (key masked)
//! with a `health` object as `GET /v1/webhooks/{id}/health` shows it, and the `data` of
//! `POST /v1/webhooks/{id}/recover`.

use anyhow::{Context, bail};
use clap::Subcommand;
use serde_json::Value;

use super::ensure_tenant;
use super::instant::parse_instant;
use super::output::{dash, print_json};
use crate::api::health::{HealthView, RecoveryQueued};
use crate::api::views::WebhookView;
use crate::domain::ids::{TenantId, WebhookId};
use crate::domain::time::{format_ms, now_ms};
use crate::store::{RecoverOutcome, Store, Webhook};

#[derive(Subcommand)]
pub enum WebhooksCommand {
    /// List a tenant's webhooks with their health.
    List {
        /// Tenant name.
        #[arg(long)]
        tenant: TenantId,
        /// Print a JSON array: each webhook as the API renders it, with its `health`.
        #[arg(long)]
        json: bool,
    },
    /// Re-send to a webhook every event created in [--since, --until) whose delivery to it
    /// ended failed, as POST /v1/webhooks/{id}/recover does.
    Recover {
        /// Webhook id.
        webhook: String,
        /// Tenant name.
        #[arg(long)]
        tenant: TenantId,
        /// Events created at or after: a duration back from now (1h, 2d) or an ISO 8601
        /// instant.
        #[arg(long, value_name = "DURATION|ISO")]
        since: String,
        /// Events created before (default now): a duration back from now or an ISO 8601
        /// instant.
        #[arg(long, value_name = "DURATION|ISO")]
        until: Option<String>,
        /// Print {"webhookId":...,"eventCount":N,"message":...}.
        #[arg(long)]
        json: bool,
    },
}

/// Runs a `webhooks` command against `store`.
pub async fn webhooks(store: &dyn Store, command: WebhooksCommand) -> anyhow::Result<()> {
    match command {
        WebhooksCommand::List { tenant, json } => list(store, &tenant, json).await,
        WebhooksCommand::Recover {
            webhook,
            tenant,
            since,
            until,
            json,
        } => recover(store, &tenant, &webhook, (&since, until.as_deref()), json).await,
    }
}

async fn list(store: &dyn Store, tenant: &TenantId, json: bool) -> anyhow::Result<()> {
    ensure_tenant(store, tenant).await?;
    let webhooks = store.list_webhooks(tenant).await?;
    if json {
        let rows = webhooks
            .into_iter()
            .map(with_health)
            .collect::<anyhow::Result<Vec<Value>>>()?;
        return print_json(&rows);
    }
    println!(
        "{:<36}  {:<20}  {:<6}  {:<8}  {:<8}  {:<24}  {:<24}  URL",
        "ID", "NAME", "ACTIVE", "STATE", "FAILURES", "LAST ATTEMPT", "LAST SUCCESS"
    );
    for webhook in &webhooks {
        let health = &webhook.health;
        println!(
            "{:<36}  {:<20}  {:<6}  {:<8}  {:<8}  {:<24}  {:<24}  {}",
            webhook.id,
            webhook.name,
            if webhook.is_active { "yes" } else { "no" },
            health.state.as_str(),
            health.consecutive_failures,
            dash(health.last_attempt_at_ms.map(format_ms)),
            dash(health.last_success_at_ms.map(format_ms)),
            webhook.url,
        );
        // Why Herald switched it off matters more to an operator than any column.
        if let Some(reason) = &health.disabled_reason {
            let at = dash(health.disabled_at_ms.map(format_ms));
            println!("{:<36}  disabled at {at}: {reason}", "");
        }
    }
    println!("{} webhook(s)", webhooks.len());
    Ok(())
}

/// The webhook's API object (key masked) with its health view under `health`.
fn with_health(webhook: Webhook) -> anyhow::Result<Value> {
    let health = HealthView::new(webhook.id, webhook.health.clone());
    let mut row = serde_json::to_value(WebhookView::masked(webhook))?;
    let object = row
        .as_object_mut()
        .context("a webhook renders as a JSON object")?;
    object.insert("health".into(), serde_json::to_value(health)?);
    Ok(row)
}

async fn recover(
    store: &dyn Store,
    tenant: &TenantId,
    webhook: &str,
    (since, until): (&str, Option<&str>),
    json: bool,
) -> anyhow::Result<()> {
    // One `now` for both ends, so that `--since 1h --until 0s` is exactly the last hour.
    let now = now_ms();
    let since = parse_instant("--since", since, now)?;
    let until = match until {
        Some(text) => parse_instant("--until", text, now)?,
        None => now,
    };
    if since >= until {
        bail!("--since must be before --until");
    }
    ensure_tenant(store, tenant).await?;
    // Webhook ids are UUIDs; anything else names no webhook, as in the API.
    let Some(id) = WebhookId::parse(webhook.trim()) else {
        bail!("Webhook not found");
    };
    // The store queues the first windows now and wakes a running server (PostgreSQL notifies,
    // SQLite's dispatcher looks within 5 s); a running server's recovery task does the rest.
    let count = match store.recover_webhook(tenant, id, since, until).await? {
        RecoverOutcome::Queued(count) => count,
        RecoverOutcome::WebhookNotFound => bail!("Webhook not found"),
        RecoverOutcome::WebhookInactive => bail!("Webhook is not active"),
    };
    let queued = RecoveryQueued {
        webhook_id: id,
        event_count: count,
        message: format!("{count} event(s) queued for recovery"),
    };
    if json {
        print_json(&queued)
    } else {
        println!("{}", queued.message);
        Ok(())
    }
}
