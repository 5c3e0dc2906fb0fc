//! What can go wrong in the store itself (never a partner's input), and how callers tell a
//! passing failure from one about the rows.

use super::NewEvent;

/// Failures of the store itself (never of a partner's input).
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("migration failed: {0}")]
    Migration(#[from] sqlx::migrate::MigrateError),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Invalid(String),
}

impl StoreError {
    /// Whether the database could not be reached (as opposed to a query that failed).
    pub fn is_unavailable(&self) -> bool {
        match self {
            StoreError::Database(
                sqlx::Error::Io(_)
                | sqlx::Error::PoolTimedOut
                | sqlx::Error::PoolClosed
                | sqlx::Error::Tls(_)
                | sqlx::Error::WorkerCrashed,
            ) => true,
            // PostgreSQL's connection-exception (08) and operator-intervention (57P) classes:
            // the server went away or is shutting down.
            StoreError::Database(sqlx::Error::Database(db)) => db
                .code()
                .is_some_and(|code| code.starts_with("08") || code.starts_with("57P")),
            _ => false,
        }
    }

    /// Whether the same statement may well succeed if tried again: the database is
    /// unreachable, busy or locked (SQLite), or a transaction lost a serialization conflict
    /// or a deadlock (PostgreSQL's class 40). Anything else is taken to be about the rows.
    pub fn is_transient(&self) -> bool {
        if self.is_unavailable() {
            return true;
        }
        match self {
            StoreError::Database(sqlx::Error::Database(db)) => db.code().is_some_and(|code| {
                // SQLite's codes are numbers whose low byte is the primary code
                // (SQLITE_BUSY 5, SQLITE_LOCKED 6); PostgreSQL's are five characters.
                code.starts_with("40")
                    || (code.len() < 5
                        && code.parse::<u32>().is_ok_and(|n| matches!(n & 0xff, 5 | 6)))
            }),
            _ => false,
        }
    }
}

pub type StoreResult<T> = Result<T, StoreError>;

/// A publish that was not committed, with its events handed back, so that the caller can
/// commit some of them again without having copied them all beforehand.
#[derive(Debug, thiserror::Error)]
#[error("{error}")]
pub struct PublishFailure {
    pub error: StoreError,
    pub events: Vec<NewEvent>,
}

impl From<PublishFailure> for StoreError {
    fn from(failure: PublishFailure) -> StoreError {
        failure.error
    }
}
