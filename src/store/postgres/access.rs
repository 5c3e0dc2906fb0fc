//! Schema, health, tenants and tokens on PostgreSQL.

use async_trait::async_trait;

use super::{MIGRATOR, PostgresStore};
use crate::domain::ids::{TenantId, TokenId};
use crate::domain::scope::scopes_to_text;
use crate::domain::time::now_ms;
use crate::store::rows::{TenantRow, TokenRow, is_unique_violation};
use crate::store::sql;
use crate::store::{AccessStore, NewToken, StoreError, StoreResult, Tenant, Token};

#[async_trait]
impl AccessStore for PostgresStore {
    async fn migrate(&self) -> StoreResult<()> {
        // sqlx takes an advisory lock, so nodes starting together migrate once.
        MIGRATOR.run(&self.pool).await?;
        Ok(())
    }

    async fn ping(&self) -> StoreResult<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    async fn create_tenant(&self, name: &TenantId) -> StoreResult<Tenant> {
        let created_at = now_ms();
        let result = sqlx::query(sql::INSERT_TENANT)
            .bind(name.as_str())
            .bind(created_at)
            .execute(&self.pool)
            .await;
        match result {
            Ok(_) => Ok(Tenant {
                name: name.clone(),
                created_at_ms: created_at,
            }),
            Err(e) if is_unique_violation(&e) => Err(StoreError::Conflict(format!(
                "tenant {name} already exists"
            ))),
            Err(e) => Err(e.into()),
        }
    }

    async fn list_tenants(&self) -> StoreResult<Vec<Tenant>> {
        let rows: Vec<TenantRow> = sqlx::query_as(sql::LIST_TENANTS)
            .fetch_all(&self.pool)
            .await?;
        Ok(rows.into_iter().map(Tenant::from).collect())
    }

    async fn create_token(&self, token: NewToken) -> StoreResult<Token> {
        let created_at = now_ms();
        let result = sqlx::query(sql::INSERT_TOKEN)
            .bind(token.id.to_string())
            .bind(&token.hash)
            .bind(token.kind.as_str())
            .bind(token.tenant.as_ref().map(TenantId::as_str))
            .bind(scopes_to_text(&token.scopes))
            .bind(created_at)
            .execute(&self.pool)
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
                    token.tenant.map(TenantId::into_string).unwrap_or_default()
                )))
            }
            Err(e) => Err(e.into()),
        }
    }

    async fn list_tokens(&self) -> StoreResult<Vec<Token>> {
        let rows: Vec<TokenRow> = sqlx::query_as(sql::LIST_TOKENS)
            .fetch_all(&self.pool)
            .await?;
        rows.into_iter().map(Token::try_from).collect()
    }

    async fn revoke_token(&self, id: TokenId) -> StoreResult<bool> {
        let result = sqlx::query(sql::REVOKE_TOKEN)
            .bind(now_ms())
            .bind(id.to_string())
            .execute(&self.pool)
            .await?;
        Ok(result.rows_affected() > 0)
    }

    async fn find_token(&self, hash: &str) -> StoreResult<Option<Token>> {
        let row: Option<TokenRow> = sqlx::query_as(sql::FIND_TOKEN)
            .bind(hash)
            .fetch_optional(&self.pool)
            .await?;
        row.map(Token::try_from).transpose()
    }
}
