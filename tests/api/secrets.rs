//! Secrets and files: a new SQLite database and its `-wal` and `-shm` files are readable
//! by their owner only, and a password in the database URL is never printed or logged.

use std::os::unix::fs::PermissionsExt;

use crate::cli::{Herald, herald_command, run_command};
use crate::helpers::{fresh_postgres_schema, test_database_url};

const SECRET_URL: &str = "postgres://user:secret@127.0.0.1:1/db";

#[tokio::test]
async fn a_new_sqlite_database_and_its_wal_files_are_readable_by_their_owner_only() {
    let herald = Herald::new();
    let server = herald.serve().await;
    server.wait_until_ready().await;
    // Migrations have written through the WAL: all three files exist while it runs.
    for name in ["herald.db", "herald.db-wal", "herald.db-shm"] {
        let path = herald.path().join(name);
        let mode = std::fs::metadata(&path)
            .unwrap_or_else(|e| panic!("{name}: {e}"))
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "{name} has mode {:o}", mode & 0o777);
    }
    server.terminate().await;
}

fn assert_hidden(output: &str, what: &str) {
    assert!(
        !output.contains("secret"),
        "{what} shows the password:\n{output}"
    );
}

#[tokio::test]
async fn a_database_password_is_never_printed() {
    let dir = tempfile::tempdir().unwrap();
    // Unreachable server: the error names the database, without its password.
    for args in [
        vec!["migrate", "--database-url", SECRET_URL],
        vec!["tenant", "create", "acme", "--database-url", SECRET_URL],
        vec!["serve", "--database-url", SECRET_URL],
    ] {
        let mut command = herald_command(dir.path(), &args);
        command.env("RUST_LOG", "debug");
        let output = run_command(command).await;
        assert!(!output.status.success(), "{output:#?}");
        assert_hidden(&output.stderr, "stderr");
        assert_hidden(&output.stdout, "stdout");
        assert!(
            output.stderr.contains("postgres://user:***@127.0.0.1:1/db"),
            "{output:#?}"
        );
    }
    // From the environment too, and where the URL is refused before any connection.
    for url in [SECRET_URL, "mysql://user:secret@127.0.0.1:1/db"] {
        let mut command = herald_command(dir.path(), &["serve"]);
        command.env("HERALD_DATABASE_URL", url);
        let output = run_command(command).await;
        assert!(!output.status.success(), "{output:#?}");
        assert_hidden(&output.stderr, "stderr");
    }
    // herald-bench's own test checks its `--database-url` the same way.
}

/// PostgreSQL here trusts every local connection, so a URL with any password connects: the
/// server's own log lines about its database show `***`.
#[tokio::test]
async fn a_serving_herald_logs_its_database_without_the_password() {
    let Some(base) = test_database_url() else {
        return;
    };
    let url = fresh_postgres_schema(&base).await;
    let with_password = url.replacen("postgres://postgres@", "postgres://postgres:secret@", 1);
    if with_password == url {
        eprintln!(
            "SKIPPED: HERALD_TEST_DATABASE_URL has no postgres://postgres@ user to add a password to"
        );
        return;
    }
    let herald = Herald::on(&with_password);
    let mut command = herald.command(&["serve"]);
    command
        .env("HERALD_LISTEN", "127.0.0.1:0")
        .env("RUST_LOG", "debug");
    let server = crate::cli::Server::start(command).await;
    server.wait_until_ready().await;
    let (_, log) = server.terminate().await;
    assert_hidden(&log, "the server's log");
    assert!(log.contains("postgres:***@"), "{log}");
    let output = herald.run(&["migrate"]).await;
    output.assert_success();
    assert_hidden(&output.stdout, "migrate's stdout");
    assert!(output.stdout.contains("postgres:***@"), "{output:#?}");
}
