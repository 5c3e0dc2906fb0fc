//! Running the `herald` binary as operators do, as child processes in temporary directories:
//! a clean environment, a CLI runner, a server guard that kills its child on drop. The
//! `cli_*` suites test the commands with them; the process-level suites reuse them.

use std::net::SocketAddr;
use std::path::Path;
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use reqwest::{Client, StatusCode};
use serde_json::Value;
use tempfile::TempDir;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use uuid::Uuid;

/// How long a server may take to announce its address, or to exit when asked.
const PROCESS_DEADLINE: Duration = Duration::from_secs(15);

/// `herald ARGS...` with no inherited `HERALD_*` setting, `RUST_LOG=info` (the address is
/// read from an info line) and `dir` as its working directory.
pub(crate) fn herald_command(dir: &Path, args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_herald"));
    command.args(args);
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("HERALD_") {
            command.env_remove(&name);
        }
    }
    command
        .env("RUST_LOG", "info")
        .current_dir(dir)
        .stdin(Stdio::null())
        .kill_on_drop(true);
    command
}

/// What a finished CLI command printed.
#[derive(Debug)]
pub(crate) struct CliOutput {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl CliOutput {
    pub(crate) fn assert_success(&self) -> &Self {
        assert!(self.status.success(), "expected success, got {self:#?}");
        self
    }

    /// Asserts exit code 1 with a message on stderr and nothing on stdout.
    pub(crate) fn assert_failure(&self) -> &Self {
        assert_eq!(
            self.status.code(),
            Some(1),
            "expected exit code 1, got {self:#?}"
        );
        assert!(
            !self.stderr.trim().is_empty(),
            "expected an error on stderr, got {self:#?}"
        );
        assert!(
            self.stdout.is_empty(),
            "expected nothing on stdout, got {self:#?}"
        );
        self
    }
}

/// Runs a command to completion (at most [`PROCESS_DEADLINE`]).
pub(crate) async fn run_command(mut command: Command) -> CliOutput {
    command.stdout(Stdio::piped()).stderr(Stdio::piped());
    let child = command.spawn().expect("herald starts");
    let output = tokio::time::timeout(PROCESS_DEADLINE, child.wait_with_output())
        .await
        .expect("herald exits in time")
        .expect("herald output is readable");
    CliOutput {
        status: output.status,
        stdout: String::from_utf8(output.stdout).expect("stdout is UTF-8"),
        stderr: String::from_utf8(output.stderr).expect("stderr is UTF-8"),
    }
}

/// A temporary working directory with its own SQLite database, named to every command
/// through `HERALD_DATABASE_URL`.
pub(crate) struct Herald {
    dir: TempDir,
    pub database_url: String,
}

impl Herald {
    pub(crate) fn new() -> Herald {
        let dir = tempfile::tempdir().expect("temporary directory");
        let database_url = format!("sqlite://{}", dir.path().join("herald.db").display());
        Herald { dir, database_url }
    }

    /// Commands on another database (a PostgreSQL schema), run from a temporary directory.
    pub(crate) fn on(database_url: &str) -> Herald {
        let dir = tempfile::tempdir().expect("temporary directory");
        Herald {
            dir,
            database_url: database_url.to_string(),
        }
    }

    pub(crate) fn path(&self) -> &Path {
        self.dir.path()
    }

    /// `herald ARGS...` on this database.
    pub(crate) fn command(&self, args: &[&str]) -> Command {
        let mut command = herald_command(self.path(), args);
        command.env("HERALD_DATABASE_URL", &self.database_url);
        command
    }

    pub(crate) async fn run(&self, args: &[&str]) -> CliOutput {
        run_command(self.command(args)).await
    }

    pub(crate) async fn create_tenant(&self, name: &str) {
        self.run(&["tenant", "create", name]).await.assert_success();
    }

    /// `herald token create ARGS... --json`; returns the id and the token.
    pub(crate) async fn create_token(&self, args: &[&str]) -> (String, String) {
        let mut full = vec!["token", "create"];
        full.extend_from_slice(args);
        full.push("--json");
        let output = self.run(&full).await;
        output.assert_success();
        let created = parse_created_token(&output.stdout);
        (
            created["id"].as_str().unwrap().to_string(),
            created["token"].as_str().unwrap().to_string(),
        )
    }

    /// `herald serve` on port 0 of the loopback interface.
    pub(crate) async fn serve(&self) -> Server {
        let mut command = self.command(&["serve"]);
        command.env("HERALD_LISTEN", "127.0.0.1:0");
        Server::start(command).await
    }
}

/// Checks that `stdout` is exactly one line holding `{"id":<uuid>,"token":"hrd_..."}`.
pub(crate) fn parse_created_token(stdout: &str) -> Value {
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(
        lines.len(),
        1,
        "expected exactly one line on stdout, got {stdout:?}"
    );
    let value: Value = serde_json::from_str(lines[0]).expect("stdout is one JSON object");
    let object = value.as_object().expect("a JSON object");
    let mut keys: Vec<&str> = object.keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(keys, ["id", "token"], "{value}");
    let id = value["id"].as_str().expect("id is a string");
    assert!(Uuid::parse_str(id).is_ok(), "id is a UUID: {id}");
    let token = value["token"].as_str().expect("token is a string");
    let random = token
        .strip_prefix("hrd_")
        .unwrap_or_else(|| panic!("token starts with hrd_: {token}"));
    assert!(
        random.len() >= 40,
        "token has 40+ characters after hrd_: {token}"
    );
    value
}

/// A running `herald serve` child. Dropping it kills the process, so a failed assertion
/// never leaves a server behind.
pub(crate) struct Server {
    child: Child,
    pub address: SocketAddr,
    pub client: Client,
    stderr: Arc<Mutex<String>>,
    stderr_reader: Option<JoinHandle<()>>,
}

impl Server {
    /// Spawns `command` (a `herald serve`) and waits for its "Herald is listening" line.
    pub(crate) async fn start(mut command: Command) -> Server {
        command.stdout(Stdio::null()).stderr(Stdio::piped());
        let mut child = command.spawn().expect("herald serve starts");
        let stderr = Arc::new(Mutex::new(String::new()));
        let (found, address) = oneshot::channel();
        let lines = BufReader::new(child.stderr.take().expect("stderr is piped")).lines();
        let stderr_reader = tokio::spawn(collect_stderr(lines, stderr.clone(), found));
        let address = match tokio::time::timeout(PROCESS_DEADLINE, address).await {
            Ok(Ok(address)) => address,
            outcome => {
                let _ = child.start_kill();
                let status = child.wait().await;
                let _ = stderr_reader.await;
                panic!(
                    "herald serve did not announce its address ({}; exit {status:?}); stderr:\n{}",
                    if outcome.is_err() {
                        "timed out"
                    } else {
                        "stderr closed"
                    },
                    stderr.lock().unwrap()
                );
            }
        };
        let client = Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .expect("HTTP client");
        Server {
            child,
            address,
            client,
            stderr,
            stderr_reader: Some(stderr_reader),
        }
    }

    pub(crate) fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.address, path)
    }

    pub(crate) fn pid(&self) -> u32 {
        self.child.id().expect("the server is still running")
    }

    /// Everything the server has logged so far.
    pub(crate) fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// Polls `/readyz` until it answers 200.
    pub(crate) async fn wait_until_ready(&self) {
        let deadline = Instant::now() + PROCESS_DEADLINE;
        loop {
            if let Ok(response) = self.client.get(self.url("/readyz")).send().await {
                if response.status() == StatusCode::OK {
                    return;
                }
            }
            assert!(
                Instant::now() < deadline,
                "/readyz never answered 200; stderr:\n{}",
                self.stderr()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Sends SIGTERM and waits for the exit; returns the status and the full log.
    pub(crate) async fn terminate(mut self) -> (ExitStatus, String) {
        let pid = self.pid().to_string();
        let sent = std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("kill runs");
        assert!(sent.success(), "kill -TERM {pid} failed");
        self.wait().await
    }

    /// Sends SIGKILL (a crash: nothing runs in the server after it) and waits for the exit.
    pub(crate) async fn kill(mut self) -> (ExitStatus, String) {
        self.child.start_kill().expect("SIGKILL is sent");
        self.wait().await
    }

    async fn wait(&mut self) -> (ExitStatus, String) {
        let status = tokio::time::timeout(PROCESS_DEADLINE, self.child.wait())
            .await
            .unwrap_or_else(|_| panic!("herald did not exit in time; stderr:\n{}", self.stderr()))
            .expect("exit status");
        if let Some(reader) = self.stderr_reader.take() {
            let _ = tokio::time::timeout(PROCESS_DEADLINE, reader).await;
        }
        (status, self.stderr())
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}

/// Copies the server's stderr into `log` and reports the listening address once seen.
async fn collect_stderr(
    mut lines: tokio::io::Lines<BufReader<tokio::process::ChildStderr>>,
    log: Arc<Mutex<String>>,
    found: oneshot::Sender<SocketAddr>,
) {
    let mut found = Some(found);
    while let Ok(Some(line)) = lines.next_line().await {
        if line.contains("Herald is listening") {
            if let Some(address) = listening_address(&line) {
                if let Some(found) = found.take() {
                    let _ = found.send(address);
                }
            }
        }
        let mut log = log.lock().unwrap();
        log.push_str(&line);
        log.push('\n');
    }
}

/// The `address=HOST:PORT` field of a log line.
fn listening_address(line: &str) -> Option<SocketAddr> {
    let start = line.find("address=")? + "address=".len();
    line[start..].split_whitespace().next()?.parse().ok()
}

/// The JSON document `stdout` holds.
pub(crate) fn json_of(stdout: &str) -> Value {
    serde_json::from_str(stdout.trim())
        .unwrap_or_else(|e| panic!("stdout is JSON ({e}): {stdout:?}"))
}
