//! `herald-bench` as a user runs it. It is a measuring tool, not a test, but its smoke mode
//! runs every scenario for a moment so that the harness keeps working, and its errors must
//! not show a database password.

use std::process::{Command, Output};

use serde_json::Value;

const SCENARIOS: [&str; 12] = [
    "raw",
    "ingest_single",
    "ingest_batch",
    "end_to_end",
    "steady_latency",
    "fan_out",
    "failing_receiver",
    "isolation",
    "resources",
    "colliding_ids",
    "steady_300",
    "steady_1000",
];

/// Runs `herald-bench ARGS...` in a temporary directory with no inherited `HERALD_*`
/// setting.
fn herald_bench(args: &[&str]) -> Output {
    let dir = tempfile::tempdir().expect("temporary directory");
    let mut command = Command::new(env!("CARGO_BIN_EXE_herald-bench"));
    command.args(args).current_dir(dir.path());
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("HERALD_") {
            command.env_remove(&name);
        }
    }
    command
        .env("RUST_LOG", "warn")
        .output()
        .expect("herald-bench runs")
}

#[test]
fn the_benchmark_smoke_run_reports_every_scenario() {
    let output = herald_bench(&["--smoke", "--json"]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "herald-bench failed: {stderr}");
    let report: Value = serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|e| panic!("stdout is not one JSON document ({e}); stderr: {stderr}"));

    assert_eq!(report["failures"], Value::Array(vec![]), "{report:#}");
    assert_eq!(
        report["herald_version"],
        env!("CARGO_PKG_VERSION"),
        "{report:#}"
    );
    let scenarios = report["scenarios"].as_array().expect("a scenarios array");
    for id in SCENARIOS {
        let scenario = scenarios
            .iter()
            .find(|s| s["id"] == id)
            .unwrap_or_else(|| panic!("no {id} scenario in {report:#}"));
        let throughput = scenario["throughput"]["value"].as_f64().unwrap_or(0.0);
        assert!(throughput > 0.0, "{id} throughput: {scenario:#}");
    }
    let failing = scenarios
        .iter()
        .find(|s| s["id"] == "failing_receiver")
        .unwrap();
    let figures = &failing["figures"];
    assert!(figures["published"].as_u64().unwrap() > 0, "{failing:#}");
    assert_eq!(figures["completed"], figures["published"], "{failing:#}");
    assert_eq!(figures["all_completed"], true, "{failing:#}");
    assert!(
        figures["answered_500"].as_u64().unwrap() > 0,
        "the receiver failed nothing: {failing:#}"
    );
    for id in ["steady_latency", "steady_300", "steady_1000"] {
        let steady = scenarios.iter().find(|s| s["id"] == id).unwrap();
        let latency = &steady["latency"];
        assert_eq!(latency["of"], "first attempt", "{steady:#}");
        assert!(latency["samples"].as_u64().unwrap() > 0, "{steady:#}");
        assert!(
            latency["max_ms"].as_f64().unwrap() >= latency["p99_ms"].as_f64().unwrap(),
            "{steady:#}"
        );
    }
    for id in ["steady_300", "steady_1000"] {
        let steady = scenarios.iter().find(|s| s["id"] == id).unwrap();
        let figures = &steady["figures"];
        assert_eq!(steady["throughput"]["unit"], "events/s", "{steady:#}");
        assert_eq!(figures["all_completed"], true, "{steady:#}");
        assert!(
            figures["herald_cpu_s_per_1000_events"].as_f64().unwrap() > 0.0,
            "Herald's CPU was not measured: {steady:#}"
        );
        let busy = figures["machine_cpu_busy_percent"].as_f64().unwrap();
        assert!((0.0..=100.0).contains(&busy), "{steady:#}");
        assert!(
            figures["herald_cpu_per_event_against_saturation"]
                .as_f64()
                .unwrap()
                > 0.0,
            "no comparison with scenario i: {steady:#}"
        );
    }
    // What the figures are compared with is documentation, not output.
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(report.get("targets").is_none(), "{report:#}");
    for text in [&stdout, &stderr] {
        assert!(!names_an_issue(text), "{text}");
        assert!(!text.contains("Svix"), "{text}");
    }
}

/// Whether `text` says `issue` followed by a number, as in "issue 5".
fn names_an_issue(text: &str) -> bool {
    text.match_indices("issue ").any(|(at, found)| {
        text[at + found.len()..]
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_digit())
    })
}

#[test]
fn a_database_password_is_never_printed() {
    // Refused before any connection, and an unreachable server (scenario b needs a store).
    for url in [
        "mysql://user:secret@127.0.0.1:1/db",
        "postgres://user:secret@127.0.0.1:1/db",
    ] {
        let output = herald_bench(&["--database-url", url, "--scenarios", "b"]);
        assert!(!output.status.success(), "{output:#?}");
        for (what, text) in [("stdout", &output.stdout), ("stderr", &output.stderr)] {
            let text = String::from_utf8_lossy(text);
            assert!(
                !text.contains("secret"),
                "herald-bench's {what} shows the password:\n{text}"
            );
        }
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains("user:***@127.0.0.1:1/db"), "{stderr}");
    }
}
