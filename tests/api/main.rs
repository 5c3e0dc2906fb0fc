//! Herald's integration tests: each starts the real server on a random port with a fresh
//! database and talks HTTP to it.

mod helpers;
mod receiver;

mod auth;
mod cli;
mod delivery;
mod durability;
mod events;
mod ops;
mod publish;
mod robustness;
mod signatures;
mod webhooks;
