//! `herald tenant` and `herald token`: creating and listing tenants, creating, listing and
//! revoking bearer tokens. Tokens are printed once and stored only as a hash.

use anyhow::{Context, bail};
use clap::Subcommand;
use serde_json::json;
use uuid::Uuid;

use crate::domain::ids::{TenantId, TokenId};
use crate::domain::keys::{new_token, token_hash};
use crate::domain::scope::Scope;
use crate::domain::time::format_ms;
use crate::store::{NewToken, Store, StoreError, TokenKind};

#[derive(Subcommand)]
pub enum TenantCommand {
    /// Create a tenant; NAME matches [a-z0-9][a-z0-9_-]{0,62}.
    Create {
        name: String,
        #[arg(long)]
        json: bool,
    },
    /// List tenants.
    List {
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
pub enum TokenCommand {
    /// Create a token; it is printed once and stored only as a hash.
    Create {
        /// Partner token for this tenant.
        #[arg(
            long,
            required_unless_present = "producer",
            conflicts_with = "producer"
        )]
        tenant: Option<TenantId>,
        /// Partner scope (repeatable): webhooks:read, webhooks:write, events:read,
        /// events:retry. Default: all four.
        #[arg(long = "scope", value_name = "SCOPE")]
        scopes: Vec<String>,
        /// Producer token (scope events:publish, any tenant).
        #[arg(long, conflicts_with = "scopes")]
        producer: bool,
        /// Print only {"id":...,"token":...}.
        #[arg(long)]
        json: bool,
    },
    /// List tokens (never the tokens themselves).
    List {
        #[arg(long)]
        json: bool,
    },
    /// Revoke a token by id; it is refused within a second.
    Revoke { id: String },
}

/// Runs a `tenant` command against `store`.
pub async fn tenant(store: &dyn Store, command: TenantCommand) -> anyhow::Result<()> {
    match command {
        TenantCommand::Create { name, json } => {
            let Some(name) = TenantId::parse(&name) else {
                bail!("invalid tenant name {name:?}: use [a-z0-9][a-z0-9_-]{{0,62}}");
            };
            let tenant = store
                .create_tenant(&name)
                .await
                .map_err(conflict_as_message)?;
            if json {
                println!(
                    "{}",
                    json!({"name": tenant.name, "createdAt": format_ms(tenant.created_at_ms)})
                );
            } else {
                println!("Created tenant {}", tenant.name);
            }
        }
        TenantCommand::List { json } => {
            let tenants = store.list_tenants().await?;
            if json {
                let rows: Vec<_> = tenants
                    .iter()
                    .map(|t| json!({"name": t.name, "createdAt": format_ms(t.created_at_ms)}))
                    .collect();
                println!("{}", serde_json::Value::Array(rows));
            } else {
                println!("{:<32} CREATED", "NAME");
                for t in tenants {
                    println!("{:<32} {}", t.name, format_ms(t.created_at_ms));
                }
            }
        }
    }
    Ok(())
}

/// Runs a `token` command against `store`.
pub async fn token(store: &dyn Store, command: TokenCommand) -> anyhow::Result<()> {
    match command {
        TokenCommand::Create {
            tenant,
            scopes,
            producer,
            json,
        } => create_token(store, tenant, &scopes, producer, json).await,
        TokenCommand::List { json } => list_tokens(store, json).await,
        TokenCommand::Revoke { id } => {
            let parsed =
                TokenId::parse(&id).with_context(|| format!("{id:?} is not a token id"))?;
            if !store.revoke_token(parsed).await? {
                bail!("no token with id {id}");
            }
            println!("Revoked token {parsed}");
            Ok(())
        }
    }
}

async fn create_token(
    store: &dyn Store,
    tenant: Option<TenantId>,
    scopes: &[String],
    producer: bool,
    json: bool,
) -> anyhow::Result<()> {
    let (kind, scopes) = if producer {
        (TokenKind::Producer, vec![Scope::EventsPublish])
    } else {
        (TokenKind::Partner, partner_scopes(scopes)?)
    };
    let token = new_token();
    let record = store
        .create_token(NewToken {
            id: Uuid::new_v4().into(),
            hash: token_hash(&token),
            kind,
            tenant,
            scopes,
        })
        .await
        .map_err(conflict_as_message)?;
    if json {
        println!("{}", json!({"id": record.id, "token": token}));
    } else {
        let owner = match &record.tenant {
            Some(tenant) => format!("tenant {tenant}"),
            None => "producers (any tenant)".into(),
        };
        println!("Created {} token {} for {owner}.", kind.as_str(), record.id);
        println!("{token}");
        eprintln!("Store it now: it is not shown again.");
    }
    Ok(())
}

async fn list_tokens(store: &dyn Store, json: bool) -> anyhow::Result<()> {
    let tokens = store.list_tokens().await?;
    if json {
        let rows: Vec<_> = tokens
            .iter()
            .map(|t| {
                json!({
                    "id": t.id, "kind": t.kind.as_str(), "tenant": t.tenant,
                    "scopes": t.scopes.iter().map(|s| s.as_str()).collect::<Vec<_>>(),
                    "createdAt": format_ms(t.created_at_ms),
                    "revokedAt": t.revoked_at_ms.map(format_ms),
                })
            })
            .collect();
        println!("{}", serde_json::Value::Array(rows));
        return Ok(());
    }
    println!(
        "{:<36}  {:<8}  {:<16}  {:<24}  {:<24}  SCOPES",
        "ID", "KIND", "TENANT", "CREATED", "REVOKED"
    );
    for t in tokens {
        let scopes: Vec<_> = t.scopes.iter().map(|s| s.as_str()).collect();
        println!(
            "{:<36}  {:<8}  {:<16}  {:<24}  {:<24}  {}",
            t.id,
            t.kind.as_str(),
            t.tenant.as_ref().map_or("-", TenantId::as_str),
            format_ms(t.created_at_ms),
            t.revoked_at_ms.map(format_ms).unwrap_or_else(|| "-".into()),
            scopes.join(",")
        );
    }
    Ok(())
}

fn partner_scopes(names: &[String]) -> anyhow::Result<Vec<Scope>> {
    if names.is_empty() {
        return Ok(Scope::PARTNER_DEFAULT.to_vec());
    }
    let mut scopes = Vec::new();
    for name in names.iter().flat_map(|n| n.split(',')) {
        match Scope::parse(name.trim()) {
            Some(scope) if scope.is_partner_scope() => {
                if !scopes.contains(&scope) {
                    scopes.push(scope);
                }
            }
            _ => bail!(
                "unknown partner scope {name:?}: use webhooks:read, webhooks:write, events:read or events:retry"
            ),
        }
    }
    Ok(scopes)
}

fn conflict_as_message(error: StoreError) -> anyhow::Error {
    match error {
        StoreError::Conflict(message) => anyhow::anyhow!(message),
        other => other.into(),
    }
}
