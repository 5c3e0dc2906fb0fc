//! What a benchmark run reports: one [`ScenarioReport`] per scenario, rendered as a table for
//! people or one JSON document for machines. Every figure comes from a measurement; what they
//! are compared with lives in the README, not here.

use serde::Serialize;
use serde_json::{Map, Value};

use crate::load::Percentiles;
use crate::system::{CpuUse, Machine};

/// A throughput and its unit.
#[derive(Debug, Clone, Serialize)]
pub struct Rate {
    pub value: f64,
    pub unit: &'static str,
}

/// p50/p99 of one kind of latency.
#[derive(Debug, Clone, Serialize)]
pub struct Latency {
    /// What was timed: `publish call` or `first attempt`.
    pub of: &'static str,
    #[serde(flatten)]
    pub percentiles: Percentiles,
}

#[derive(Debug, Clone, Serialize)]
pub struct ScenarioReport {
    pub id: &'static str,
    pub letter: char,
    pub title: &'static str,
    pub throughput: Rate,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub latency: Option<Latency>,
    /// One line for the table.
    pub summary: String,
    /// Scenario-specific figures.
    pub figures: Map<String, Value>,
    pub notes: Vec<String>,
    pub elapsed_s: f64,
    /// CPU used by the benchmark process during the scenario (Herald, clients and receiver
    /// together), except in the scenarios where Herald is a child process (resources and the
    /// steady rates): there it is Herald's alone.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpu: Option<CpuUse>,
}

/// A scenario that could not run.
#[derive(Debug, Clone, Serialize)]
pub struct Failure {
    pub id: &'static str,
    pub letter: char,
    pub error: String,
}

/// The whole run.
#[derive(Debug, Clone, Serialize)]
pub struct Document {
    pub herald_version: &'static str,
    pub database: &'static str,
    pub machine: Machine,
    pub settings: Value,
    pub scenarios: Vec<ScenarioReport>,
    pub failures: Vec<Failure>,
}

/// Scenarios whose throughput is not divided by the raw baseline's.
const NOT_AGAINST_RAW: [&str; 5] = [
    "raw",
    "ingest_batch",
    "steady_latency",
    "steady_300",
    "steady_1000",
];

/// The human-readable report.
pub fn render_table(document: &Document) -> String {
    let mut out = machine_line(document);
    let raw = document
        .scenarios
        .iter()
        .find(|s| s.id == "raw")
        .map(|s| s.throughput.value);
    out.push_str(&format!(
        "{:<3}{:<38}{:>22}{:>10}{:>10}  {:<15}{:>7}  {}\n",
        "", "scenario", "throughput", "p50", "p99", "latency of", "÷ raw", "notes"
    ));
    for scenario in &document.scenarios {
        out.push_str(&scenario_row(scenario, raw));
    }
    for failure in &document.failures {
        out.push_str(&format!(
            "{}. {}: FAILED: {}\n",
            failure.letter, failure.id, failure.error
        ));
    }
    out.push_str(&notes_section(&document.scenarios));
    out.push_str("\nTargets, and figures of other webhook senders: docs/performance.md\n");
    out
}

/// The first line: Herald's version, the database, the machine and the run's settings.
fn machine_line(document: &Document) -> String {
    let machine = &document.machine;
    format!(
        "Herald {} benchmark on {}: {} CPUs ({}), {} MiB RAM, {}\n\n",
        document.herald_version,
        document.database,
        machine.cpus,
        machine.cpu_model,
        machine
            .memory_mib
            .map_or("?".into(), |m| thousands(m as f64)),
        settings_line(&document.settings),
    )
}

/// One scenario's row; `raw` is the raw baseline's throughput, when it ran.
fn scenario_row(s: &ScenarioReport, raw: Option<f64>) -> String {
    let (p50, p99, of) = match &s.latency {
        Some(l) => (ms(l.percentiles.p50_ms), ms(l.percentiles.p99_ms), l.of),
        None => ("-".into(), "-".into(), ""),
    };
    let versus_raw = match raw {
        // Batches carry 100 events a request and the steady rates are set, not measured.
        Some(raw) if raw > 0.0 && !NOT_AGAINST_RAW.contains(&s.id) => {
            format!("{:.0}%", s.throughput.value / raw * 100.0)
        }
        _ => "".into(),
    };
    format!(
        "{:<3}{:<38}{:>22}{:>10}{:>10}  {:<15}{:>7}  {}\n",
        format!("{}.", s.letter),
        s.title,
        format!("{} {}", thousands(s.throughput.value), s.throughput.unit),
        p50,
        p99,
        of,
        versus_raw,
        s.summary
    )
}

/// Every scenario's notes, each marked with its letter; nothing when there are none.
fn notes_section(scenarios: &[ScenarioReport]) -> String {
    let notes: Vec<String> = scenarios
        .iter()
        .flat_map(|s| s.notes.iter().map(move |n| format!("{}. {n}", s.letter)))
        .collect();
    let mut out = String::new();
    if !notes.is_empty() {
        out.push_str("\nNotes:\n");
        for note in notes {
            out.push_str(&format!("  {note}\n"));
        }
    }
    out
}

fn settings_line(settings: &Value) -> String {
    format!(
        "{} connections, {} s per scenario{}",
        settings["connections"],
        settings["duration_s"],
        if settings["smoke"] == true {
            ", SMOKE mode (tiny counts: not a measurement)"
        } else {
            ""
        }
    )
}

/// `12,345` (no decimals) or `12.3` below 100.
pub fn thousands(value: f64) -> String {
    if value.abs() < 100.0 && value.fract() != 0.0 {
        return format!("{value:.1}");
    }
    let digits = format!("{:.0}", value.abs());
    let mut grouped = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            grouped.push(',');
        }
        grouped.push(c);
    }
    if value < 0.0 {
        format!("-{grouped}")
    } else {
        grouped
    }
}

fn ms(value: f64) -> String {
    if value < 10.0 {
        format!("{value:.2} ms")
    } else {
        format!("{value:.1} ms")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thousands_are_grouped() {
        assert_eq!(thousands(1_234_567.4), "1,234,567");
        assert_eq!(thousands(999.0), "999");
        assert_eq!(thousands(12.34), "12.3");
        assert_eq!(thousands(0.0), "0");
    }
}
