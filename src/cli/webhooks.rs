//! `herald webhooks list`: a tenant's webhooks with their health, straight on the store, so
//! that an operator sees which partner endpoints are failing or were disabled. `--json` prints
//! the API's views: each webhook as `GET /v1/webhooks` shows it (key masked) with a `health`
//! object as `GET /v1/webhooks/{id}/health` shows it.

use anyhow::Context;
use clap::Subcommand;
use serde_json::Value;

use super::ensure_tenant;
use super::output::{dash, print_json};
use crate::api::health::HealthView;
use crate::api::views::WebhookView;
use crate::domain::time::format_ms;
use crate::store::{Store, Webhook};

#[derive(Subcommand)]
pub enum WebhooksCommand {
    /// List a tenant's webhooks with their health.
    List {
        /// Tenant name.
        #[arg(long)]
        tenant: String,
        /// Print a JSON array: each webhook as the API renders it, with its `health`.
        #[arg(long)]
        json: bool,
    },
}

/// Runs a `webhooks` command against `store`.
pub async fn webhooks(store: &dyn Store, command: WebhooksCommand) -> anyhow::Result<()> {
    match command {
        WebhooksCommand::List { tenant, json } => list(store, &tenant, json).await,
    }
}

async fn list(store: &dyn Store, tenant: &str, json: bool) -> anyhow::Result<()> {
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
    let health = HealthView::new(webhook.id.into(), webhook.health.clone());
    let mut row = serde_json::to_value(WebhookView::masked(webhook))?;
    let object = row
        .as_object_mut()
        .context("a webhook renders as a JSON object")?;
    object.insert("health".into(), serde_json::to_value(health)?);
    Ok(row)
}
