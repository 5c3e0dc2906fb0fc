//! A throw-away store for one benchmark app: a SQLite file in a temporary directory, or a
//! fresh `bench_<random>` schema in the PostgreSQL database the user names, dropped at the
//! end. It only creates and removes the place; Herald's store fills it.

use std::path::PathBuf;

use anyhow::Context;
use sqlx::postgres::{PgConnectOptions, PgConnection};
use sqlx::{ConnectOptions, Connection};
use uuid::Uuid;

/// Where benchmark apps keep their data.
#[derive(Debug, Clone)]
pub enum DatabaseChoice {
    Sqlite,
    /// A `postgres://` URL; each app gets its own schema in that database.
    Postgres(String),
}

impl DatabaseChoice {
    pub fn from_url(url: Option<&str>) -> anyhow::Result<DatabaseChoice> {
        match url {
            None => Ok(DatabaseChoice::Sqlite),
            Some(url) if url.starts_with("postgres://") || url.starts_with("postgresql://") => {
                Ok(DatabaseChoice::Postgres(url.to_string()))
            }
            Some(url) if url.starts_with("sqlite:") => Err(anyhow::anyhow!(
                "the benchmark makes its own temporary SQLite file; pass --database-url only \
                 for PostgreSQL (got {})",
                redact(url)
            )),
            Some(url) => Err(anyhow::anyhow!(
                "unsupported --database-url {}: expected postgres://...",
                redact(url)
            )),
        }
    }

    /// `SQLite` or `PostgreSQL`, for the report.
    pub fn label(&self) -> &'static str {
        match self {
            DatabaseChoice::Sqlite => "SQLite",
            DatabaseChoice::Postgres(_) => "PostgreSQL",
        }
    }
}

/// One temporary store; call [`TempDatabase::remove`] when done (a SQLite directory is also
/// removed when dropped).
pub struct TempDatabase {
    /// The URL to give Herald.
    pub url: String,
    place: Place,
}

enum Place {
    Sqlite(PathBuf),
    Postgres { admin_url: String, schema: String },
    Removed,
}

impl TempDatabase {
    pub async fn create(choice: &DatabaseChoice) -> anyhow::Result<TempDatabase> {
        match choice {
            DatabaseChoice::Sqlite => {
                let dir = std::env::temp_dir().join(format!("herald-bench-{}", Uuid::new_v4()));
                std::fs::create_dir(&dir)
                    .with_context(|| format!("cannot create {}", dir.display()))?;
                let url = format!("sqlite://{}", dir.join("herald.db").display());
                Ok(TempDatabase {
                    url,
                    place: Place::Sqlite(dir),
                })
            }
            DatabaseChoice::Postgres(admin_url) => {
                let schema = format!("bench_{}", Uuid::new_v4().simple());
                let mut connection = admin_connection(admin_url)
                    .await
                    .with_context(|| format!("cannot connect to {}", redact(admin_url)))?;
                sqlx::query(&format!("CREATE SCHEMA {schema}"))
                    .execute(&mut connection)
                    .await
                    .with_context(|| format!("cannot create schema {schema}"))?;
                let _ = connection.close().await;
                let separator = if admin_url.contains('?') { '&' } else { '?' };
                Ok(TempDatabase {
                    url: format!("{admin_url}{separator}options[search_path]={schema}"),
                    place: Place::Postgres {
                        admin_url: admin_url.clone(),
                        schema,
                    },
                })
            }
        }
    }

    /// Deletes the file or drops the schema (with everything in it).
    pub async fn remove(&mut self) -> anyhow::Result<()> {
        match std::mem::replace(&mut self.place, Place::Removed) {
            Place::Sqlite(dir) => std::fs::remove_dir_all(&dir)
                .with_context(|| format!("cannot remove {}", dir.display()))?,
            Place::Postgres { admin_url, schema } => {
                let mut connection = admin_connection(&admin_url).await?;
                // DROP ... CASCADE lists every dropped object as a notice; they are expected.
                sqlx::query("SET client_min_messages = warning")
                    .execute(&mut connection)
                    .await?;
                sqlx::query(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"))
                    .execute(&mut connection)
                    .await
                    .with_context(|| format!("cannot drop schema {schema}"))?;
                let _ = connection.close().await;
            }
            Place::Removed => {}
        }
        Ok(())
    }
}

impl Drop for TempDatabase {
    fn drop(&mut self) {
        if let Place::Sqlite(dir) = &self.place {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// A connection for creating and dropping schemas (a large DROP may be slow; it is not
/// worth a log line).
async fn admin_connection(url: &str) -> anyhow::Result<PgConnection> {
    let options: PgConnectOptions = url.parse()?;
    Ok(options.disable_statement_logging().connect().await?)
}

/// The URL without its password, for messages.
fn redact(url: &str) -> String {
    herald::config::redact_password(url)
}
