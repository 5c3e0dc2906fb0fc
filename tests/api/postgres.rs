//! The API and delivery suites on PostgreSQL: each test in a fresh schema of the server
//! `HERALD_TEST_DATABASE_URL` names; skipped, loudly, without it.

use crate::helpers::{Backend, TestApp};

const BACKEND: Backend = Backend::Postgres;

/// A fresh app on this module's backend (`None`: skipped, said loudly).
async fn spawn(env: &[(&str, &str)]) -> Option<TestApp> {
    TestApp::spawn_on(BACKEND, env).await
}

#[path = "auth.rs"]
mod auth;
#[path = "delivery.rs"]
mod delivery;
#[path = "delivery_bad_partners.rs"]
mod delivery_bad_partners;
#[path = "delivery_cycles.rs"]
mod delivery_cycles;
#[path = "delivery_limits.rs"]
mod delivery_limits;
#[path = "delivery_retries.rs"]
mod delivery_retries;
#[path = "dispatch.rs"]
mod dispatch;
#[path = "event_ids.rs"]
mod event_ids;
#[path = "events.rs"]
mod events;
#[path = "health.rs"]
mod health;
#[path = "isolation.rs"]
mod isolation;
#[path = "ops.rs"]
mod ops;
#[path = "partner_limits.rs"]
mod partner_limits;
#[path = "publish.rs"]
mod publish;
#[path = "publish_batch.rs"]
mod publish_batch;
#[path = "recovery.rs"]
mod recovery;
#[path = "robustness.rs"]
mod robustness;
#[path = "store.rs"]
mod store;
#[path = "store_recovery.rs"]
mod store_recovery;
#[path = "test_delivery.rs"]
mod test_delivery;
#[path = "text.rs"]
mod text;
#[path = "wake.rs"]
mod wake;
#[path = "webhook_changes.rs"]
mod webhook_changes;
#[path = "webhooks.rs"]
mod webhooks;
