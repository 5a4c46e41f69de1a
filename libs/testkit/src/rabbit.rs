//! A private RabbitMQ node (own node name, port and data directory) for tests
//! that stop and start the broker: restarting the shared broker would break
//! every test running beside them.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use crate::wait::eventually;

/// A running private node; stopped and removed on drop.
#[derive(Debug)]
pub struct PrivateRabbit {
    node: String,
    port: u16,
    dir: PathBuf,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn port_open(port: u16) -> bool {
    std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
}

impl PrivateRabbit {
    /// Boots a node from the installed RabbitMQ (takes about ten seconds).
    pub async fn start() -> Self {
        let port = free_port();
        let dist_port = free_port();
        let node = format!("palmtest-{port}@localhost");
        let dir = std::env::temp_dir().join(format!("palm-rabbit-{port}"));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("mnesia")).unwrap();
        std::fs::create_dir_all(dir.join("log")).unwrap();
        std::fs::write(
            dir.join("rabbitmq.conf"),
            format!("listeners.tcp.default = 127.0.0.1:{port}\nloopback_users = none\n"),
        )
        .unwrap();
        std::fs::write(dir.join("enabled_plugins"), "[].\n").unwrap();
        std::fs::write(dir.join("env.conf"), "").unwrap();
        // The CLI must share the node's Erlang cookie: reuse the system one.
        if let Ok(cookie) = std::fs::read("/var/lib/rabbitmq/.erlang.cookie") {
            let path = dir.join(".erlang.cookie");
            std::fs::write(&path, cookie).unwrap();
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o400)).unwrap();
        }
        let rabbit = Self { node, port, dir };
        let status = rabbit
            .command("rabbitmq-server")
            .env("RABBITMQ_NODE_PORT", port.to_string())
            .env("RABBITMQ_DIST_PORT", dist_port.to_string())
            .env("RABBITMQ_CONFIG_FILE", rabbit.dir.join("rabbitmq.conf"))
            .env("RABBITMQ_MNESIA_BASE", rabbit.dir.join("mnesia"))
            .env("RABBITMQ_LOG_BASE", rabbit.dir.join("log"))
            .env(
                "RABBITMQ_ENABLED_PLUGINS_FILE",
                rabbit.dir.join("enabled_plugins"),
            )
            .env("ERL_EPMD_ADDRESS", "127.0.0.1")
            .arg("-detached")
            .status()
            .expect("rabbitmq-server is installed");
        assert!(status.success(), "rabbitmq-server -detached failed");
        rabbit.wait_listening(true).await;
        rabbit
    }

    fn command(&self, tool: &str) -> Command {
        let mut command = Command::new(format!("/usr/lib/rabbitmq/bin/{tool}"));
        command
            .current_dir(&self.dir)
            .env("HOME", &self.dir)
            .env("RABBITMQ_CONF_ENV_FILE", self.dir.join("env.conf"))
            .env("RABBITMQ_NODENAME", &self.node)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null());
        command
    }

    fn ctl(&self, args: &[&str]) {
        let status = self
            .command("rabbitmqctl")
            .arg("-n")
            .arg(&self.node)
            .args(args)
            .status()
            .unwrap();
        assert!(status.success(), "rabbitmqctl {args:?} failed");
    }

    async fn wait_listening(&self, listening: bool) {
        let port = self.port;
        eventually(
            "the private rabbitmq listener",
            Duration::from_secs(60),
            || async move { (port_open(port) == listening).then_some(()) },
        )
        .await;
    }

    /// `amqp://` URL of this node.
    pub fn url(&self) -> String {
        format!("amqp://guest:guest@127.0.0.1:{}/%2f", self.port)
    }

    /// Stops the broker application: every client connection drops.
    pub async fn stop_app(&self) {
        self.ctl(&["stop_app"]);
        self.wait_listening(false).await;
    }

    /// Starts the broker application again.
    pub async fn start_app(&self) {
        self.ctl(&["start_app"]);
        self.wait_listening(true).await;
    }
}

impl Drop for PrivateRabbit {
    fn drop(&mut self) {
        let _ = self
            .command("rabbitmqctl")
            .arg("-n")
            .arg(&self.node)
            .arg("stop")
            .status();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
