//! `herald bench --smoke --json`: the benchmark is not a test, but its smoke mode runs every
//! scenario for a moment so that the harness keeps working.

use std::process::Command;

use serde_json::Value;

const SCENARIOS: [&str; 10] = [
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
];

#[test]
fn the_benchmark_smoke_run_reports_every_scenario() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let mut command = Command::new(env!("CARGO_BIN_EXE_herald"));
    command
        .args(["bench", "--smoke", "--json"])
        .current_dir(dir.path());
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("HERALD_") {
            command.env_remove(&name);
        }
    }
    let output = command
        .env("RUST_LOG", "warn")
        .output()
        .expect("herald runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "bench failed: {stderr}");
    let report: Value = serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|e| panic!("stdout is not one JSON document ({e}); stderr: {stderr}"));

    assert_eq!(report["failures"], Value::Array(vec![]), "{report:#}");
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
    let targets = report["targets"].as_array().expect("a targets array");
    assert!(!targets.is_empty());
}
