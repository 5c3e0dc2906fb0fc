//! What a benchmark run reports: one [`ScenarioReport`] per scenario, the targets
//! checked against them, rendered as a table for people or one JSON document for machines.
//! Every figure comes from a measurement; only the targets and Svix's published figures are
//! constants, and they are labelled as such.

use serde::Serialize;
use serde_json::{Map, Value};

use super::load::Percentiles;
use super::system::{CpuUse, Machine};

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
    /// together, except in the resources scenario where Herald is a child process).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpu: Option<CpuUse>,
}

impl ScenarioReport {
    fn figure(&self, name: &str) -> Option<f64> {
        self.figures.get(name).and_then(Value::as_f64)
    }
}

/// A scenario that could not run.
#[derive(Debug, Clone, Serialize)]
pub struct Failure {
    pub id: &'static str,
    pub letter: char,
    pub error: String,
}

/// One target of issue 5 against this run.
#[derive(Debug, Clone, Serialize)]
pub struct Target {
    pub what: &'static str,
    pub target: &'static str,
    pub measured: String,
    /// `None` when this run did not measure it (scenario skipped, or too small).
    pub met: Option<bool>,
    /// Svix's figure on the same line, as quoted in issue 5.
    pub svix: &'static str,
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
    pub targets: Vec<Target>,
}

/// Checks the targets of issue 5 against the scenarios that ran. A smoke run's tiny counts
/// measure nothing, so it checks none (`met` is `None`).
pub fn targets(scenarios: &[ScenarioReport], smoke: bool) -> Vec<Target> {
    let mut out = check_targets(scenarios);
    if smoke {
        for target in &mut out {
            target.met = None;
        }
    }
    out
}

fn check_targets(scenarios: &[ScenarioReport]) -> Vec<Target> {
    let find = |id: &str| scenarios.iter().find(|s| s.id == id);
    let rate = |id: &str| find(id).map(|s| s.throughput.value);
    let latency = |id: &str| find(id).and_then(|s| s.latency.clone());
    let at_least = |value: Option<f64>, min: f64| match value {
        Some(v) => (format!("{} /s", thousands(v)), Some(v >= min)),
        None => ("not measured".into(), None),
    };
    let mut out = Vec::new();
    let (measured, met) = at_least(rate("ingest_single"), 10_000.0);
    out.push(Target {
        what: "ingest, single events, 64 connections",
        target: ">= 10,000 events/s",
        measured,
        met,
        svix: "~1,950 events/s",
    });
    let (measured, met) = at_least(rate("ingest_batch"), 50_000.0);
    out.push(Target {
        what: "ingest, batches of 100",
        target: ">= 50,000 events/s",
        measured,
        met,
        svix: "-",
    });
    let (measured, met) = at_least(rate("end_to_end"), 5_000.0);
    out.push(Target {
        what: "end-to-end, 1 webhook, 64 connections",
        target: ">= 5,000 deliveries/s",
        measured,
        met,
        svix: "~1,070 deliveries/s (p99 first attempt 140 ms)",
    });
    let steady = latency("steady_latency");
    out.push(Target {
        what: "first attempt at a steady 1,000 events/s, p50",
        target: "< 2 ms",
        measured: steady
            .as_ref()
            .map_or("not measured".into(), |l| ms(l.percentiles.p50_ms)),
        met: steady.as_ref().map(|l| l.percentiles.p50_ms < 2.0),
        svix: "1.4 ms (at 300 events/s)",
    });
    out.push(Target {
        what: "first attempt at a steady 1,000 events/s, p99",
        target: "< 10 ms",
        measured: steady
            .as_ref()
            .map_or("not measured".into(), |l| ms(l.percentiles.p99_ms)),
        met: steady.as_ref().map(|l| l.percentiles.p99_ms < 10.0),
        svix: "~8 ms (at 300 events/s)",
    });
    let resources = find("resources");
    let waiting = resources.and_then(|r| r.figure("waiting_deliveries"));
    let rss = resources.and_then(|r| r.figure("rss_with_waiting_mib"));
    out.push(Target {
        what: "RSS with 1,000,000 deliveries waiting",
        target: "< 150 MiB",
        measured: match (rss, waiting) {
            (Some(rss), Some(waiting)) => format!("{rss:.1} MiB ({} waiting)", thousands(waiting)),
            _ => "not measured".into(),
        },
        met: match (rss, waiting) {
            (Some(rss), Some(waiting)) if waiting >= 1_000_000.0 => Some(rss < 150.0),
            _ => None,
        },
        svix: "-",
    });
    let idle = resources.and_then(|r| r.figure("idle_cpu_percent_of_a_core"));
    out.push(Target {
        what: "idle CPU (no busy polling)",
        target: "near zero (< 1% of a core)",
        measured: idle.map_or("not measured".into(), |p| format!("{p:.2}% of a core")),
        met: idle.map(|p| p < 1.0),
        svix: "-",
    });
    let isolation = find("isolation").and_then(|s| s.figure("ratio_to_run_without_black_hole"));
    out.push(Target {
        what: "isolation: healthy throughput beside a black hole",
        target: "within 10% of the run without it",
        measured: isolation.map_or("not measured".into(), |r| format!("{:.0}%", r * 100.0)),
        met: isolation.map(|r| r >= 0.9),
        svix: "-",
    });
    let failing = find("failing_receiver");
    out.push(Target {
        what: "failing receiver: every event ends delivered",
        target: "completed = published",
        measured: failing.map_or("not measured".into(), |s| {
            format!(
                "{} / {}",
                thousands(s.figure("completed").unwrap_or(0.0)),
                thousands(s.figure("published").unwrap_or(0.0))
            )
        }),
        met: failing
            .and_then(|s| s.figures.get("all_completed"))
            .and_then(Value::as_bool),
        svix: "-",
    });
    out
}

/// The human-readable report.
pub fn render_table(document: &Document) -> String {
    let mut out = String::new();
    let machine = &document.machine;
    out.push_str(&format!(
        "Herald {} benchmark on {}: {} CPUs ({}), {} MiB RAM, {}\n\n",
        document.herald_version,
        document.database,
        machine.cpus,
        machine.cpu_model,
        machine
            .memory_mib
            .map_or("?".into(), |m| thousands(m as f64)),
        settings_line(&document.settings),
    ));
    let raw = document
        .scenarios
        .iter()
        .find(|s| s.id == "raw")
        .map(|s| s.throughput.value);
    out.push_str(&format!(
        "{:<3}{:<38}{:>22}{:>10}{:>10}  {:<15}{:>7}  {}\n",
        "", "scenario", "throughput", "p50", "p99", "latency of", "÷ raw", "notes"
    ));
    for s in &document.scenarios {
        let (p50, p99, of) = match &s.latency {
            Some(l) => (ms(l.percentiles.p50_ms), ms(l.percentiles.p99_ms), l.of),
            None => ("-".into(), "-".into(), ""),
        };
        let versus_raw = match raw {
            // Batches carry 100 events a request and the steady rate is set, not measured.
            Some(raw)
                if raw > 0.0 && !["raw", "ingest_batch", "steady_latency"].contains(&s.id) =>
            {
                format!("{:.0}%", s.throughput.value / raw * 100.0)
            }
            _ => "".into(),
        };
        out.push_str(&format!(
            "{:<3}{:<38}{:>22}{:>10}{:>10}  {:<15}{:>7}  {}\n",
            format!("{}.", s.letter),
            s.title,
            format!("{} {}", thousands(s.throughput.value), s.throughput.unit),
            p50,
            p99,
            of,
            versus_raw,
            s.summary
        ));
    }
    for failure in &document.failures {
        out.push_str(&format!(
            "{}. {}: FAILED: {}\n",
            failure.letter, failure.id, failure.error
        ));
    }
    let notes: Vec<String> = document
        .scenarios
        .iter()
        .flat_map(|s| s.notes.iter().map(move |n| format!("{}. {n}", s.letter)))
        .collect();
    if !notes.is_empty() {
        out.push_str("\nNotes:\n");
        for note in notes {
            out.push_str(&format!("  {note}\n"));
        }
    }
    out.push_str("\nTargets of issue 5:\n");
    out.push_str(&format!(
        "  {:<52}{:<36}{:<30}{:<6}{}\n",
        "what", "target", "measured", "met", "Svix (issue 5)"
    ));
    for t in &document.targets {
        let met = match t.met {
            Some(true) => "yes",
            Some(false) => "NO",
            None => "-",
        };
        out.push_str(&format!(
            "  {:<52}{:<36}{:<30}{:<6}{}\n",
            t.what, t.target, t.measured, met, t.svix
        ));
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
