//! `herald serve` and `herald migrate` as operators run them: the defaults, the README's
//! quick start, a refused configuration, and a fresh database.

use std::path::PathBuf;

use serde_json::{Value, json};
use tokio::process::Command;
use uuid::Uuid;

use crate::cli::{
    CliOutput, Herald, Server, herald_command, json_of, parse_created_token, run_command,
};

#[tokio::test]
async fn serve_with_no_configuration_listens_on_8080_with_herald_db_in_the_working_directory() {
    match std::net::TcpListener::bind("127.0.0.1:8080") {
        Ok(listener) => drop(listener),
        Err(error) => {
            eprintln!(
                "SKIPPED: serve_with_no_configuration...: 127.0.0.1:8080 is not free ({error})"
            );
            return;
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(herald_command(dir.path(), &["serve"])).await;
    assert_eq!(
        server.address,
        "127.0.0.1:8080".parse().unwrap(),
        "{}",
        server.stderr()
    );
    server.wait_until_ready().await;
    assert!(
        dir.path().join("herald.db").is_file(),
        "herald.db is created in the working directory"
    );
    assert!(
        server.stderr().contains("database=sqlite://herald.db"),
        "{}",
        server.stderr()
    );

    let (status, log) = server.terminate().await;
    assert_eq!(
        status.code(),
        Some(0),
        "graceful exit on SIGTERM; stderr:\n{log}"
    );
    assert!(log.contains("Herald stopped"), "{log}");
}

#[tokio::test]
async fn the_quick_start_of_the_readme_works_end_to_end() {
    // As README.md tells it: `herald serve` with no configuration (but port 0 rather than
    // 8080), then, in the same directory while it runs, a tenant, a partner token, a webhook,
    // a producer token and a first event.
    let dir = tempfile::tempdir().unwrap();
    let mut serve = herald_command(dir.path(), &["serve"]);
    serve.env("HERALD_LISTEN", "127.0.0.1:0");
    let server = Server::start(serve).await;
    assert!(
        dir.path().join("herald.db").is_file(),
        "serve creates ./herald.db"
    );

    let herald = |args: &[&str]| run_command(herald_command(dir.path(), args));
    herald(&["tenant", "create", "acme"]).await.assert_success();
    let token_of = |output: CliOutput| {
        output.assert_success();
        parse_created_token(&output.stdout)["token"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let token = token_of(herald(&["token", "create", "--tenant", "acme", "--json"]).await);
    let response = server
        .client
        .post(server.url("/v1/webhooks"))
        .bearer_auth(&token)
        .json(&json!({
            "name": "My receiver",
            "url": "https://example.com/webhooks",
            "event_types": ["*"],
            "is_active": true,
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["success"], true, "{body}");
    assert_eq!(body["data"]["tenant"], "acme", "{body}");
    let api_key = body["data"]["apiKey"].as_str().unwrap_or_default();
    assert!(api_key.starts_with("whk_") && api_key.len() == 68, "{body}");
    assert!(
        body["data"]["signingSecret"]
            .as_str()
            .is_some_and(|s| s.starts_with("whsec_")),
        "{body}"
    );

    let producer = token_of(herald(&["token", "create", "--producer", "--json"]).await);
    let response = server
        .client
        .post(server.url("/v1/events"))
        .bearer_auth(&producer)
        .json(&json!({
            "tenant": "acme",
            "eventType": "kyc.status.changed",
            "payload": {"status": "approved"},
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    let event: Value = response.json().await.unwrap();
    assert_eq!(event["tenant"], "acme", "{event}");
    assert!(
        event["eventId"]
            .as_str()
            .is_some_and(|id| Uuid::parse_str(id).is_ok()),
        "{event}"
    );
}

/// Runs `herald serve` expecting it to refuse to start; returns its stderr.
async fn serve_refuses_to_start(mut command: Command) -> String {
    command.env("HERALD_LISTEN", "127.0.0.1:0");
    let output = run_command(command).await;
    assert_eq!(
        output.status.code(),
        Some(1),
        "serve must refuse to start: {output:#?}"
    );
    output.stderr
}

#[tokio::test]
async fn a_bad_configuration_value_stops_serve_with_a_message_naming_the_setting() {
    let herald = Herald::new();

    let mut from_env = herald.command(&["serve"]);
    from_env.env("HERALD_DELIVERY_TIMEOUT", "soon");
    let stderr = serve_refuses_to_start(from_env).await;
    assert!(
        stderr.contains("delivery_timeout (from HERALD_DELIVERY_TIMEOUT)"),
        "{stderr}"
    );

    let stderr =
        serve_refuses_to_start(herald.command(&["serve", "--max-webhooks-per-tenant", "0"])).await;
    assert!(
        stderr.contains("max_webhooks_per_tenant (from --max-webhooks-per-tenant)"),
        "{stderr}"
    );

    let file: PathBuf = herald.path().join("herald.toml");
    std::fs::write(
        &file,
        "max_webhooks_per_tenant = 7\nlsiten = \"127.0.0.1:9\"\n",
    )
    .unwrap();
    let stderr =
        serve_refuses_to_start(herald.command(&["--config", file.to_str().unwrap(), "serve"]))
            .await;
    assert!(stderr.contains("lsiten"), "{stderr}");
    assert!(
        stderr.contains(file.to_str().unwrap()),
        "names the file: {stderr}"
    );

    // The flag wins over a valid environment value, and its own problem is the one reported.
    let mut both = herald.command(&["serve", "--delivery-timeout", "forever"]);
    both.env("HERALD_DELIVERY_TIMEOUT", "5s");
    let stderr = serve_refuses_to_start(both).await;
    assert!(
        stderr.contains("delivery_timeout (from --delivery-timeout)"),
        "{stderr}"
    );
}

#[tokio::test]
async fn migrate_creates_a_fresh_database_and_can_run_twice() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("fresh.db");
    let url = format!("sqlite://{}", path.display());
    assert!(!path.exists());
    for _ in 0..2 {
        let output = run_command(herald_command(
            dir.path(),
            &["--database-url", &url, "migrate"],
        ))
        .await;
        output.assert_success();
        assert!(output.stdout.contains("up to date"), "{output:#?}");
        assert!(path.is_file(), "migrate creates {}", path.display());
    }
    // The migrated file is usable by the other commands.
    let listed = run_command(herald_command(
        dir.path(),
        &["--database-url", &url, "tenant", "list", "--json"],
    ))
    .await;
    listed.assert_success();
    assert_eq!(json_of(&listed.stdout), json!([]));
}
