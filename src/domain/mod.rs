//! Pure types and rules of Herald: ids, event types and patterns, keys and tokens, statuses,
//! the validation of request bodies, timestamps and the delivery envelope. Nothing here does
//! I/O or knows axum or sqlx.

pub mod body;
pub mod claim;
pub mod destination;
pub mod envelope;
pub mod event;
pub mod event_type;
pub mod health;
pub mod ids;
pub mod keys;
pub mod notification;
pub mod outcome;
pub mod page;
pub mod retry;
pub mod scope;
pub mod signature;
pub mod status;
pub mod subscription;
pub mod tenant;
pub mod text;
pub mod time;
pub mod webhook;

#[cfg(test)]
mod arbitrary;
