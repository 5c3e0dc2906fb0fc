//! Herald as a child process: `herald serve` on port 0 with the benchmark settings, so that
//! its CPU time and memory, read from `/proc/<pid>`, are its own and not the benchmark's
//! clients' and receiver's. The child is this binary started again as `herald-bench serve`
//! (see [`crate::SERVE`]), so it runs exactly the code being benchmarked.

use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context as _, bail};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use crate::app::settings;

/// A running `herald serve`; killed when stopped or dropped.
pub struct HeraldProcess {
    child: Child,
    pub pid: u32,
    /// `http://127.0.0.1:PORT`
    pub base: String,
}

impl HeraldProcess {
    /// Starts Herald on `database_url` with the benchmark settings plus `extra` `HERALD_*`
    /// pairs, and waits until it listens.
    pub async fn start(
        database_url: &str,
        extra: &[(&str, &str)],
    ) -> anyhow::Result<HeraldProcess> {
        let exe = std::env::current_exe().context("cannot find the herald-bench binary")?;
        let mut command = Command::new(exe);
        command.arg(crate::SERVE);
        for (name, _) in std::env::vars_os() {
            if name.to_string_lossy().starts_with("HERALD_") {
                command.env_remove(&name);
            }
        }
        command
            .envs(settings(database_url, extra))
            .env("HERALD_LOG_FORMAT", "json")
            .env("RUST_LOG", "warn,herald::cli=info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut child = command.spawn().context("cannot start herald serve")?;
        let pid = child.id().context("the child has no pid")?;
        let stderr = child.stderr.take().context("no stderr pipe")?;
        let mut lines = BufReader::new(stderr).lines();
        let mut seen = Vec::new();
        let address = tokio::time::timeout(Duration::from_secs(30), async {
            while let Ok(Some(line)) = lines.next_line().await {
                let parsed: Value = serde_json::from_str(&line).unwrap_or(Value::Null);
                if let Some(address) = parsed["fields"]["address"].as_str() {
                    return Some(address.to_string());
                }
                seen.push(line);
            }
            None
        })
        .await
        .ok()
        .flatten();
        let Some(address) = address else {
            let _ = child.start_kill();
            bail!("herald serve did not start: {}", seen.join("\n"));
        };
        // Keep draining its logs so the pipe never fills.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Ok(HeraldProcess {
            child,
            pid,
            base: format!("http://{address}"),
        })
    }

    pub async fn stop(mut self) {
        let _ = self.child.start_kill();
        let _ = self.child.wait().await;
    }
}
