//! The API and delivery suites on SQLite.

use crate::helpers::{Backend, TestApp};

const BACKEND: Backend = Backend::Sqlite;

/// A fresh app on this module's backend (`None`: skipped, said loudly).
async fn spawn(env: &[(&str, &str)]) -> Option<TestApp> {
    TestApp::spawn_on(BACKEND, env).await
}

#[path = "auth.rs"]
mod auth;
#[path = "delivery.rs"]
mod delivery;
#[path = "events.rs"]
mod events;
#[path = "ops.rs"]
mod ops;
#[path = "publish.rs"]
mod publish;
#[path = "robustness.rs"]
mod robustness;
#[path = "webhooks.rs"]
mod webhooks;
