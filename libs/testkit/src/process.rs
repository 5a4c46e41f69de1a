//! A Palm binary run as a real child process, with its JSON log lines
//! collected so tests can read the admin address it bound and what it said.

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use crate::wait::eventually;

/// Path of a workspace binary, next to the running test executable
/// (`target/<profile>/deps/test-…` → `target/<profile>/<name>`).
pub fn binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let profile_dir = exe.parent().and_then(|deps| deps.parent()).unwrap();
    let path = profile_dir.join(name);
    assert!(
        path.exists(),
        "{} is not built; run the tests with `make test`, which builds every binary first",
        path.display()
    );
    path
}

/// A running child process.
#[derive(Debug)]
pub struct ServiceProcess {
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
}

impl ServiceProcess {
    /// Starts `binary` with `env` added to the environment; stdout and stderr
    /// lines are collected (and echoed to the test's stderr for debugging).
    pub fn spawn(binary: PathBuf, env: &[(String, String)]) -> Self {
        let mut command = Command::new(binary);
        command
            .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut child = command.spawn().unwrap();
        let lines = Arc::new(Mutex::new(Vec::new()));
        let stdout = child.stdout.take().unwrap();
        let stderr = child.stderr.take().unwrap();
        for reader in [
            Box::new(stdout) as Box<dyn tokio::io::AsyncRead + Send + Unpin>,
            Box::new(stderr),
        ] {
            let lines = Arc::clone(&lines);
            tokio::spawn(async move {
                let mut reader = BufReader::new(reader).lines();
                while let Ok(Some(line)) = reader.next_line().await {
                    eprintln!("[child] {line}");
                    lines.lock().unwrap().push(line);
                }
            });
        }
        Self { child, lines }
    }

    /// All lines printed so far.
    pub fn output(&self) -> Vec<String> {
        self.lines.lock().unwrap().clone()
    }

    /// Waits for a line containing `needle` and returns it.
    pub async fn wait_for_line(&self, needle: &str, timeout: Duration) -> String {
        let lines = Arc::clone(&self.lines);
        eventually(
            &format!("a log line containing {needle:?}"),
            timeout,
            || {
                let found = lines
                    .lock()
                    .unwrap()
                    .iter()
                    .find(|l| l.contains(needle))
                    .cloned();
                async move { found }
            },
        )
        .await
    }

    /// The admin server address the service logged at startup.
    pub async fn admin_addr(&self, timeout: Duration) -> String {
        self.logged_addr("admin server listening", timeout).await
    }

    /// The `addr` field of the first log line containing `message`.
    pub async fn logged_addr(&self, message: &str, timeout: Duration) -> String {
        let line = self.wait_for_line(message, timeout).await;
        let json: serde_json::Value = serde_json::from_str(&line).unwrap();
        json["fields"]["addr"]
            .as_str()
            .expect("addr field in the log line")
            .to_owned()
    }

    /// Sends SIGTERM.
    pub fn sigterm(&self) {
        let pid = i32::try_from(self.child.id().unwrap()).unwrap();
        kill(Pid::from_raw(pid), Signal::SIGTERM).unwrap();
    }

    /// Sends SIGKILL.
    pub fn sigkill(&self) {
        if let Some(id) = self.child.id() {
            let _ = kill(Pid::from_raw(i32::try_from(id).unwrap()), Signal::SIGKILL);
        }
    }

    /// Waits for the process to exit and returns its exit code.
    pub async fn wait(&mut self, timeout: Duration) -> Option<i32> {
        let status = tokio::time::timeout(timeout, self.child.wait())
            .await
            .expect("the process did not exit in time")
            .unwrap();
        // Let the reader tasks drain the last lines.
        tokio::time::sleep(Duration::from_millis(50)).await;
        status.code()
    }
}
