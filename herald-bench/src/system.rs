//! What Linux says about a process and the machine: CPU seconds and resident memory from
//! `/proc/<pid>/stat` and `/proc/<pid>/status`, how busy the whole machine was from
//! `/proc/stat`, and the CPU model, core count and memory for the report. Read-only; on other
//! systems the figures are absent, not invented.

use std::time::{Duration, Instant};

use serde::Serialize;

/// The machine the benchmark ran on.
#[derive(Debug, Clone, Serialize)]
pub struct Machine {
    pub cpus: usize,
    pub cpu_model: String,
    pub memory_mib: Option<u64>,
    pub os: String,
}

impl Machine {
    pub fn describe() -> Machine {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu_model = cpuinfo
            .lines()
            .find_map(|line| line.strip_prefix("model name"))
            .and_then(|rest| rest.split_once(':'))
            .map(|(_, model)| model.trim().to_string())
            .unwrap_or_else(|| "unknown".into());
        let memory_mib = std::fs::read_to_string("/proc/meminfo")
            .ok()
            .and_then(|text| kib_field(&text, "MemTotal:"))
            .map(|kib| kib / 1024);
        Machine {
            cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
            cpu_model,
            memory_mib,
            os: format!("{} {}", std::env::consts::OS, std::env::consts::ARCH),
        }
    }
}

/// Which process to read: this one or a child.
#[derive(Debug, Clone, Copy)]
pub enum Pid {
    Current,
    Child(u32),
}

impl Pid {
    fn dir(self) -> String {
        match self {
            Pid::Current => "/proc/self".into(),
            Pid::Child(pid) => format!("/proc/{pid}"),
        }
    }
}

/// User plus system CPU time the process has used so far (all its threads).
pub fn cpu_seconds(pid: Pid) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("{}/stat", pid.dir())).ok()?;
    // The command name (field 2) may hold spaces; the fields after its ')' are fixed.
    let after_name = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the line, so 12 and 13 after the name.
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / clock_ticks_per_second())
}

/// Resident memory now and its peak so far, in MiB.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Memory {
    pub rss_mib: f64,
    pub peak_rss_mib: f64,
}

pub fn memory(pid: Pid) -> Option<Memory> {
    let status = std::fs::read_to_string(format!("{}/status", pid.dir())).ok()?;
    Some(Memory {
        rss_mib: kib_field(&status, "VmRSS:")? as f64 / 1024.0,
        peak_rss_mib: kib_field(&status, "VmHWM:")? as f64 / 1024.0,
    })
}

/// CPU used by a process over an interval, as seconds and as cores busy on average.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct CpuUse {
    pub cpu_seconds: f64,
    pub cores: f64,
}

/// Starts measuring CPU use from now.
pub struct CpuClock {
    pid: Pid,
    cpu_at_start: Option<f64>,
    wall_at_start: Instant,
}

impl CpuClock {
    pub fn start(pid: Pid) -> CpuClock {
        CpuClock {
            pid,
            cpu_at_start: cpu_seconds(pid),
            wall_at_start: Instant::now(),
        }
    }

    /// CPU used since [`CpuClock::start`].
    pub fn read(&self) -> Option<CpuUse> {
        let used = cpu_seconds(self.pid)? - self.cpu_at_start?;
        let wall = self.wall_at_start.elapsed().max(Duration::from_millis(1));
        Some(CpuUse {
            cpu_seconds: used,
            cores: used / wall.as_secs_f64(),
        })
    }
}

/// The whole machine's CPU time so far, from the first line of `/proc/stat`, in `USER_HZ`
/// ticks summed over every core.
#[derive(Debug, Clone, Copy)]
struct MachineTicks {
    busy: u64,
    stolen: u64,
    total: u64,
}

fn machine_ticks() -> Option<MachineTicks> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let line = stat.lines().find(|line| line.starts_with("cpu "))?;
    let ticks: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .map(|n| n.parse().ok())
        .collect::<Option<_>>()?;
    // user nice system idle iowait irq softirq steal; guest time is already in user and nice.
    let field = |index: usize| ticks.get(index).copied().unwrap_or(0);
    let busy = field(0) + field(1) + field(2) + field(5) + field(6);
    let stolen = field(7);
    Some(MachineTicks {
        busy,
        stolen,
        total: busy + field(3) + field(4) + stolen,
    })
}

/// How busy the whole machine was over an interval (every process, every core), in percent
/// of all its cores; `stolen` is time the hypervisor gave to other guests.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct MachineCpu {
    pub busy_percent: f64,
    pub stolen_percent: f64,
}

/// Starts measuring the machine's CPU use from now.
pub struct MachineCpuClock(Option<MachineTicks>);

impl MachineCpuClock {
    pub fn start() -> MachineCpuClock {
        MachineCpuClock(machine_ticks())
    }

    /// The machine's CPU use since [`MachineCpuClock::start`].
    pub fn read(&self) -> Option<MachineCpu> {
        let (start, now) = (self.0?, machine_ticks()?);
        let total = now.total.checked_sub(start.total).filter(|t| *t > 0)? as f64;
        let share = |now: u64, start: u64| now.saturating_sub(start) as f64 / total * 100.0;
        Some(MachineCpu {
            busy_percent: share(now.busy, start.busy),
            stolen_percent: share(now.stolen, start.stolen),
        })
    }
}

/// `USER_HZ`, the unit of `/proc/<pid>/stat` times: `getconf CLK_TCK`, else Linux's 100.
fn clock_ticks_per_second() -> f64 {
    static TICKS: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    *TICKS.get_or_init(|| {
        std::process::Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|out| String::from_utf8(out.stdout).ok())
            .and_then(|text| text.trim().parse::<f64>().ok())
            .filter(|ticks| *ticks > 0.0)
            .unwrap_or(100.0)
    })
}

/// The number of a `Name:   1234 kB` line.
fn kib_field(text: &str, name: &str) -> Option<u64> {
    text.lines()
        .find_map(|line| line.strip_prefix(name))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_has_cpu_time_and_memory() {
        if !cfg!(target_os = "linux") {
            return;
        }
        let mut spin = 0u64;
        for i in 0..5_000_000u64 {
            spin = spin.wrapping_add(i * i);
        }
        assert!(spin > 0);
        assert!(cpu_seconds(Pid::Current).unwrap() >= 0.0);
        let memory = memory(Pid::Current).unwrap();
        assert!(memory.rss_mib > 0.0 && memory.peak_rss_mib >= memory.rss_mib);
    }

    #[test]
    fn the_machine_has_a_busy_share() {
        if !cfg!(target_os = "linux") {
            return;
        }
        let clock = MachineCpuClock::start();
        let until = Instant::now() + Duration::from_millis(50);
        let mut spin = 0u64;
        while Instant::now() < until {
            spin = spin.wrapping_add(1);
        }
        assert!(spin > 0);
        let machine = clock.read().expect("/proc/stat moved on");
        assert!((0.0..=100.0).contains(&machine.busy_percent), "{machine:?}");
        assert!(machine.busy_percent > 0.0, "{machine:?}");
    }
}
