//! The bearer extractor: resolves `Authorization: Bearer hrd_...` to the calling token's
//! tenant (or producer) and scopes. Lookups are cached for under a second, so a revoked
//! token is refused within a second and the hot path rarely touches the store.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::extract::FromRequestParts;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;

use super::AppState;
use super::error::ApiError;
use crate::domain::ids::TenantId;
use crate::domain::keys::{looks_like_token, token_hash};
use crate::domain::scope::Scope;
use crate::store::{Token, TokenKind};

const CACHE_TTL: Duration = Duration::from_millis(500);
const CACHE_MAX_ENTRIES: usize = 10_000;

/// Who is calling: a live token's tenant (none for producers) and scopes.
#[derive(Debug, Clone)]
pub struct Caller {
    pub tenant: Option<TenantId>,
    pub kind: TokenKind,
    pub scopes: Vec<Scope>,
}

impl Caller {
    /// The tenant of a partner token holding `scope`; 403 otherwise.
    pub fn partner(&self, scope: Scope) -> Result<&TenantId, ApiError> {
        match (&self.tenant, self.kind) {
            (Some(tenant), TokenKind::Partner) if self.scopes.contains(&scope) => Ok(tenant),
            _ => Err(ApiError::NotAuthorized),
        }
    }

    /// Passes a producer token holding `events:publish`; 403 otherwise.
    pub fn producer(&self) -> Result<(), ApiError> {
        if self.kind == TokenKind::Producer && self.scopes.contains(&Scope::EventsPublish) {
            Ok(())
        } else {
            Err(ApiError::NotAuthorized)
        }
    }
}

/// Recent token lookups by hash, including misses.
#[derive(Default)]
pub struct TokenCache {
    entries: Mutex<HashMap<String, (Instant, Option<Caller>)>>,
}

impl TokenCache {
    fn get(&self, hash: &str) -> Option<Option<Caller>> {
        let entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        entries
            .get(hash)
            .filter(|(at, _)| at.elapsed() < CACHE_TTL)
            .map(|(_, caller)| caller.clone())
    }

    fn put(&self, hash: String, caller: Option<Caller>) {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        if entries.len() >= CACHE_MAX_ENTRIES {
            entries.retain(|_, (at, _)| at.elapsed() < CACHE_TTL);
            if entries.len() >= CACHE_MAX_ENTRIES {
                entries.clear();
            }
        }
        entries.insert(hash, (Instant::now(), caller));
    }
}

fn caller_of(token: Token) -> Option<Caller> {
    if token.revoked_at_ms.is_some() {
        return None;
    }
    Some(Caller {
        tenant: token.tenant,
        kind: token.kind,
        scopes: token.scopes,
    })
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Caller, ApiError> {
        let header = parts
            .headers
            .get(AUTHORIZATION)
            .and_then(|value| value.to_str().ok())
            .ok_or(ApiError::NotAuthenticated)?;
        let (scheme, token) = header.split_once(' ').ok_or(ApiError::NotAuthenticated)?;
        let token = token.trim();
        if !scheme.eq_ignore_ascii_case("bearer") || !looks_like_token(token) {
            return Err(ApiError::NotAuthenticated);
        }
        let hash = token_hash(token);
        let caller = match state.tokens.get(&hash) {
            Some(cached) => cached,
            None => {
                let caller = state.store.find_token(&hash).await?.and_then(caller_of);
                state.tokens.put(hash, caller.clone());
                caller
            }
        };
        caller.ok_or(ApiError::NotAuthenticated)
    }
}
