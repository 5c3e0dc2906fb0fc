//! Herald's integration tests: each starts the real server on a random port with a fresh
//! database and talks HTTP to it. The API and delivery suites run once per backend: on SQLite
//! always, on PostgreSQL when `HERALD_TEST_DATABASE_URL` names a server (each test in a schema
//! of its own).

// Each backend module includes the same suite files, on purpose: one suite, two backends.
#![allow(clippy::duplicate_mod)]

mod helpers;
mod receiver;

mod postgres;
mod sqlite;

// Process-level and one-backend suites.
mod cli;
mod cli_events;
mod cli_fixture;
mod cli_serve;
mod cli_tenants;
mod cli_tokens;
mod cli_webhooks;
mod connections;
mod document;
mod durability;
mod durability_delivery;
mod egress;
mod fuzz;
mod metric_labels;
mod multinode;
mod multinode_health;
mod notifications;
mod notifications_health;
mod outage;
mod secrets;
mod signatures;
mod upgrade;
