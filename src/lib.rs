//! Herald: a self-hosted webhook notification service. See ARCHITECTURE.md for the map.

pub mod api;
pub mod app;
pub mod cli;
pub mod config;
pub mod delivery;
pub mod domain;
pub mod ingest;
pub mod store;
pub mod telemetry;
