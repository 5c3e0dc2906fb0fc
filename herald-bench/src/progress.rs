//! The progress indication on stderr: on a terminal, one self-updating line (`\r`) showing
//! the running scenario, its elapsed time and live counts; otherwise one line when each
//! scenario starts and one when it ends. It never writes to stdout.

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// What the progress line shows next to the elapsed time.
pub type Status = Box<dyn Fn() -> String + Send + Sync>;

pub struct Progress {
    label: String,
    started: Instant,
    stop: CancellationToken,
    ticker: Option<JoinHandle<()>>,
}

impl Progress {
    /// Announces `label` and, on a terminal, refreshes the line every 200 ms.
    pub fn start(label: &str) -> Progress {
        let stop = CancellationToken::new();
        let started = Instant::now();
        if !std::io::stderr().is_terminal() {
            eprintln!("{label} ...");
        }
        Progress {
            label: label.to_string(),
            started,
            stop,
            ticker: None,
        }
    }

    /// Shows `status()` live from now on (on a terminal); replaces an earlier status.
    pub fn watch(&mut self, status: Status) {
        if !std::io::stderr().is_terminal() {
            return;
        }
        self.stop_ticker();
        self.stop = CancellationToken::new();
        let stop = self.stop.clone();
        let label = self.label.clone();
        let started = self.started;
        self.ticker = Some(tokio::spawn(async move {
            let mut ticker = tokio::time::interval(Duration::from_millis(200));
            loop {
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = ticker.tick() => {}
                }
                let line = format!(
                    "{label}  {:>5.1} s  {}",
                    started.elapsed().as_secs_f64(),
                    status()
                );
                let mut stderr = std::io::stderr().lock();
                let _ = write!(stderr, "\r\x1b[2K{line}");
                let _ = stderr.flush();
            }
        }));
    }

    fn stop_ticker(&mut self) {
        self.stop.cancel();
        if let Some(ticker) = self.ticker.take() {
            ticker.abort();
        }
    }

    /// Replaces the live line with a closing one.
    pub fn finish(mut self, summary: &str) {
        self.stop_ticker();
        let elapsed = self.started.elapsed().as_secs_f64();
        let clear = if std::io::stderr().is_terminal() {
            "\r\x1b[2K"
        } else {
            ""
        };
        eprintln!("{clear}{}: {summary} ({elapsed:.1} s)", self.label);
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.stop_ticker();
    }
}
