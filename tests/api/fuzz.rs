//! Schema fuzzing: Schemathesis generates requests from Herald's own `/openapi.json` and
//! holds every answer to that document (no 5xx, a documented status, content type, body
//! schema and headers), once as a partner, once as a producer and once with a token Herald
//! does not know, on a store that already holds webhooks, events and attempts.
//!
//! The seed is fixed so that a run is repeatable; `HERALD_FUZZ_SEED` picks another and
//! `HERALD_FUZZ_EXAMPLES` the number of cases per operation. Without Schemathesis the tests
//! fail under CI and say SKIPPED elsewhere (`pip install schemathesis`, as `.ci/run` does).

use std::path::Path;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::process::Command;

use crate::helpers::{Backend, TestApp};
use crate::receiver::TestReceiver;

/// What every answer is checked for: the document's promises, plus that auth is enforced,
/// other methods are refused, a deleted webhook is gone and a created one can be read.
/// (Not whether every schema-valid body is accepted: a tenant must exist, a URL must be
/// https, a cursor must come from a page, which no schema says.)
const CHECKS: &str = "not_a_server_error,status_code_conformance,content_type_conformance,\
                      response_schema_conformance,response_headers_conformance,ignored_auth,\
                      unsupported_method,use_after_free,ensure_resource_availability";
const DEFAULT_SEED: &str = "20261203";
const DEFAULT_EXAMPLES: &str = "25";
/// One run of Schemathesis takes about 20 s on two cores; past this it is stuck.
const RUN_DEADLINE: Duration = Duration::from_secs(240);

#[tokio::test]
async fn generated_requests_get_the_answers_the_document_describes_on_sqlite() {
    fuzz(Backend::Sqlite).await;
}

#[tokio::test]
async fn generated_requests_get_the_answers_the_document_describes_on_postgres() {
    fuzz(Backend::Postgres).await;
}

/// The Schemathesis command line (program and leading arguments), when it is installed.
async fn schemathesis() -> Option<Vec<&'static str>> {
    for command in [vec!["st"], vec!["python3", "-m", "schemathesis.cli"]] {
        let found = Command::new(command[0])
            .args(&command[1..])
            .arg("--version")
            .output()
            .await
            .is_ok_and(|output| output.status.success());
        if found {
            return Some(command);
        }
    }
    let ci = std::env::var("CI").is_ok_and(|v| v == "true" || v == "1");
    assert!(
        !ci,
        "Schemathesis is not installed (pip install schemathesis); CI must run the fuzz tests"
    );
    use std::io::Write;
    let _ = writeln!(
        std::io::stderr(),
        "SKIPPED: Schemathesis is not installed, so the fuzz::* tests pass without running \
         (pip install schemathesis)"
    );
    None
}

async fn fuzz(backend: Backend) {
    let Some(command) = schemathesis().await else {
        return;
    };
    let Some(app) = TestApp::spawn_on(
        backend,
        &[
            // Deliveries go to a receiver on this machine, and generated webhooks may only
            // name it (see `body.url` below): the fuzzer must not send Herald elsewhere.
            ("HERALD_ALLOW_HTTP", "true"),
            ("HERALD_ALLOW_PRIVATE_TARGETS", "true"),
            // Generated creates should mostly succeed, not hit the caps of a real tenant.
            ("HERALD_MAX_WEBHOOKS_PER_TENANT", "10000"),
            ("HERALD_PARTNER_WRITE_RATE", "100000/s"),
            ("HERALD_PARTNER_WRITE_BURST", "100000"),
        ],
    )
    .await
    else {
        return;
    };
    let receiver = TestReceiver::answering(200).await;
    let hook = receiver.url("/hook");

    // Two tenants with webhooks, events and attempts. The fuzzer is offered the ids of both:
    // acme's lead it to the answers about stored things, umbrella's to another tenant's 404s.
    let acme = app.partner("acme").await;
    let umbrella = app.partner("umbrella").await;
    let producer = app.producer_token().await;
    let mut webhooks = Vec::new();
    let mut events = Vec::new();
    for (partner, tenant) in [(&acme, "acme"), (&umbrella, "umbrella")] {
        for (name, active) in [("live", true), ("paused", false)] {
            let webhook = partner
                .create_webhook(&json!({"name": name, "url": hook, "event_types": ["*"],
                                        "is_active": active, "metadata": {"team": "core"}}))
                .await;
            webhooks.push(text(&webhook["id"]));
        }
        for n in 0..3 {
            let (status, event) = app
                .publish(
                    &producer,
                    &json!({"tenant": tenant, "eventType": "kyc.status.changed",
                            "payload": {"n": n}, "userId": "u-1"}),
                )
                .await;
            assert_eq!(status, 201, "{event}");
            partner
                .wait_for_status(&text(&event["id"]), "completed")
                .await;
            events.push(text(&event["id"]));
            events.push(text(&event["eventId"]));
        }
    }

    let dir = tempfile::tempdir().expect("temporary directory");
    let config = dir.path().join("schemathesis.toml");
    std::fs::write(&config, config_text(&webhooks, &events, &hook)).unwrap();
    let unknown = format!("hrd_{}", "0".repeat(43));
    for (who, token) in [
        ("a producer", producer.as_str()),
        ("a partner", acme.token.as_str()),
        ("an unknown token", unknown.as_str()),
    ] {
        run(&command, &config, dir.path(), &app, who, token).await;
    }
}

fn text(value: &Value) -> String {
    value.as_str().expect("a string").to_string()
}

/// Schemathesis's settings: the known ids and names offered beside generated ones, and the
/// only webhook URL it may use.
fn config_text(webhooks: &[String], events: &[String], hook: &str) -> String {
    let list = |values: &[String]| {
        values
            .iter()
            .map(|v| format!("{v:?}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    format!(
        r#"
[dictionaries.webhooks]
values = [{webhooks}]
[dictionaries.events]
values = [{events}]
[dictionaries.tenants]
values = ["acme", "umbrella"]
[dictionaries.urls]
values = [{hook:?}]

[parameters]
"path.id" = {{ dictionary = "webhooks", probability = 0.5 }}
"path.eventId" = {{ dictionary = "events", probability = 0.5 }}
"body.webhookId" = {{ dictionary = "webhooks", probability = 0.5 }}
"body.tenant" = {{ dictionary = "tenants", probability = 0.7 }}
"body.events[*].tenant" = {{ dictionary = "tenants", probability = 0.7 }}
# Always: a generated URL could name a real host, and Herald would deliver to it.
"body.url" = {{ dictionary = "urls", probability = 1.0 }}
"#,
        webhooks = list(webhooks),
        events = list(events),
    )
}

/// One Schemathesis run with `token`; panics with its report when a check failed.
async fn run(st: &[&str], config: &Path, dir: &Path, app: &TestApp, who: &str, token: &str) {
    let seed = std::env::var("HERALD_FUZZ_SEED").unwrap_or_else(|_| DEFAULT_SEED.into());
    let examples =
        std::env::var("HERALD_FUZZ_EXAMPLES").unwrap_or_else(|_| DEFAULT_EXAMPLES.into());
    let mut command = Command::new(st[0]);
    command
        .args(&st[1..])
        .current_dir(dir)
        .arg("--config-file")
        .arg(config)
        .arg("run")
        .arg(app.url("/openapi.json"))
        .args(["--checks", CHECKS])
        .args(["--max-examples", &examples])
        .args(["--seed", &seed])
        .args(["--request-timeout", "10"])
        .args(["--generation-database", "none"])
        .arg("--no-color")
        .arg("--header")
        .arg(format!("Authorization: Bearer {token}"))
        .kill_on_drop(true);
    let output = tokio::time::timeout(RUN_DEADLINE, command.output())
        .await
        .unwrap_or_else(|_| panic!("Schemathesis as {who} ran past {RUN_DEADLINE:?}"))
        .expect("Schemathesis runs");
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    let failures = report
        .find("FAILURES")
        .map_or(report.as_str(), |at| &report[at..]);
    assert!(
        output.status.success(),
        "Schemathesis as {who} (seed {seed}) found answers the document does not describe:\n{}",
        failures
    );
    // A run that tested nothing (no operations, a schema it could not load) proves nothing.
    let generated = report
        .lines()
        .find_map(|line| {
            line.trim()
                .split_once(" generated, ")?
                .0
                .parse::<u64>()
                .ok()
        })
        .unwrap_or(0);
    assert!(
        generated > 100,
        "Schemathesis as {who} ran only {generated} cases:\n{report}"
    );
}
