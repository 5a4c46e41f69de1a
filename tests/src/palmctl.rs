//! `palmctl`, the development CLI, run as a real process: none of the
//! developer's own palmctl settings reach it, only the variables a test
//! gives.

use palm_testkit::process::binary;
use serde_json::Value;
use tokio::io::AsyncWriteExt;

/// Every variable palmctl reads its settings from.
const SETTINGS: [&str; 12] = [
    "PALMCTL_API",
    "PALMCTL_KEY",
    "PALMCTL_SEED",
    "PALMCTL_TOKEN",
    "PALMCTL_DOMAIN",
    "PALMCTL_URI",
    "PALMCTL_CHAIN_ID",
    "PALMCTL_AMQP_URL",
    "PALMCTL_AMQP_PREFIX",
    "PALMCTL_OPERATOR",
    "PALM__AMQP__URL",
    "PALM__AMQP__PREFIX",
];

/// What one `palmctl` run did.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    /// The stdout as JSON, asserting the run succeeded.
    pub fn json(&self) -> Value {
        assert_eq!(self.code, 0, "palmctl failed: {}", self.stderr);
        serde_json::from_str(&self.stdout).unwrap()
    }

    /// The trimmed stdout, asserting the run succeeded.
    pub fn text(&self) -> String {
        assert_eq!(self.code, 0, "palmctl failed: {}", self.stderr);
        self.stdout.trim().to_owned()
    }
}

/// Runs `palmctl args…` with `env` as its only palmctl settings and `stdin`
/// piped in (closed at once without).
pub async fn run(env: &[(&str, &str)], args: &[&str], stdin: Option<&str>) -> Run {
    let mut command = tokio::process::Command::new(binary("palmctl"));
    for var in SETTINGS {
        command.env_remove(var);
    }
    command
        .envs(env.iter().copied())
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = command.spawn().unwrap();
    let mut input = child.stdin.take().unwrap();
    if let Some(text) = stdin {
        input.write_all(text.as_bytes()).await.unwrap();
    }
    drop(input);
    let output = child.wait_with_output().await.unwrap();
    Run {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8(output.stdout).unwrap(),
        stderr: String::from_utf8(output.stderr).unwrap(),
    }
}
