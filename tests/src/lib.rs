//! Helpers for Palm's end-to-end tests, which run the real binaries as child
//! processes against the real broker and database.
//!
//! # Layout
//! - [`ServiceEnv`]: the environment that isolates one test's services (own
//!   exchange/queue prefix and database) and the teardown of what they declared.
//! - [`palmdao`]: a palmdao process and a client for its API.
//! - [`fake_discord`]: a local HTTP server playing Discord's API, with a
//!   request log to check rate limits against.
//! - [`prom`]: a `/metrics` page parsed into samples.
//! - [`platform`]: a palmplatformmetrics process.
//! - [`palmctl`]: the development CLI run as a process.
//! - `src/bin/palm-test-worker.rs`: a fixture service with a slow, idempotent
//!   consumer, for shutdown tests of the consumer runner in a real process.

#![allow(clippy::unwrap_used, clippy::expect_used)]

pub mod fake_discord;
pub mod palmctl;
pub mod palmdao;
pub mod platform;
pub mod prom;
pub mod tap;

use palm_amqp::{AmqpSettings, QueueSpec, Topology};

/// Retry delays the services under test use: short, so retries show quickly.
const RETRY_DELAYS_MS: [u64; 2] = [100, 200];

/// Environment for services under test.
#[derive(Debug, Clone)]
pub struct ServiceEnv {
    /// Exchange and queue prefix.
    pub prefix: String,
    /// MongoDB database.
    pub database: String,
    /// RabbitMQ URL.
    pub amqp_url: String,
}

impl Default for ServiceEnv {
    fn default() -> Self {
        Self::new()
    }
}

impl ServiceEnv {
    /// A fresh prefix and database on the test broker and MongoDB.
    pub fn new() -> Self {
        Self {
            prefix: palm_testkit::unique_prefix(),
            database: palm_testkit::unique_database(),
            amqp_url: palm_testkit::amqp_url(),
        }
    }

    /// Variables for a child process; `extra` entries override.
    pub fn vars(&self, extra: &[(&str, &str)]) -> Vec<(String, String)> {
        let mut vars: Vec<(String, String)> = [
            ("PALM__AMQP__URL", self.amqp_url.clone()),
            ("PALM__AMQP__PREFIX", self.prefix.clone()),
            (
                "PALM__AMQP__RETRY_DELAYS_MS",
                RETRY_DELAYS_MS.map(|ms| ms.to_string()).join(","),
            ),
            ("PALM__MONGO__URL", palm_testkit::mongo_url()),
            ("PALM__MONGO__DATABASE", self.database.clone()),
            ("PALM__ADMIN__ADDR", "127.0.0.1:0".to_owned()),
            ("PALM__SHUTDOWN__GRACE_MS", "10000".to_owned()),
            ("PALM_CONFIG_DIR", "/nonexistent".to_owned()),
            ("PALM__HTTP__ADDR", "127.0.0.1:0".to_owned()),
            // Tests fire requests faster than a person; the limiter has its own test.
            ("PALM__HTTP__RATE_LIMIT_PER_SECOND", "10000".to_owned()),
            ("PALM__HTTP__RATE_LIMIT_BURST", "10000".to_owned()),
            (
                "PALM__AUTH__SESSION_KEY",
                "test-session-key-of-at-least-32-bytes!".to_owned(),
            ),
            ("PALM__AUTH__DOMAIN", "palm.test".to_owned()),
            (
                "PALM__AUTH__URI",
                "https://palm.test/v1/auth/siwe".to_owned(),
            ),
            ("PALM__AUTH__CHAIN_IDS", "1,10".to_owned()),
            // palmvalidator-discord requires its OAuth2 application; tests
            // that call Discord point the base URL at a `FakeDiscord`.
            (
                "PALM__DISCORD__CLIENT_ID",
                fake_discord::CLIENT_ID.to_owned(),
            ),
            (
                "PALM__DISCORD__CLIENT_SECRET",
                fake_discord::CLIENT_SECRET.to_owned(),
            ),
            (
                "PALM__DISCORD__BASE_URL",
                "http://127.0.0.1:9/api/v10".to_owned(),
            ),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        for (key, value) in extra {
            vars.retain(|(k, _)| k != key);
            vars.push(((*key).to_owned(), (*value).to_owned()));
        }
        vars
    }

    /// AMQP settings matching what [`ServiceEnv::vars`] gives the services,
    /// for a test that publishes or consumes beside them.
    pub fn amqp_settings(&self) -> AmqpSettings {
        AmqpSettings {
            url: secrecy::SecretString::from(self.amqp_url.clone()),
            prefix: self.prefix.clone(),
            retry_delays_ms: RETRY_DELAYS_MS.to_vec(),
            ..AmqpSettings::default()
        }
    }

    /// Deletes the queues of `specs` (with their delay queues and DLQs) and
    /// the exchanges.
    pub async fn teardown(&self, specs: &[QueueSpec]) {
        let topology = Topology::new(&self.amqp_settings(), specs.to_vec());
        palm_testkit::cleanup::delete(
            &self.amqp_url,
            &topology.queue_names(),
            &topology.exchange_names(),
        )
        .await;
    }
}

/// GETs `http://{addr}{path}` and returns the status code and body.
pub async fn get(addr: &str, path: &str) -> (u16, String) {
    match palm_service::http::client()
        .get(format!("http://{addr}{path}"))
        .send()
        .await
    {
        Ok(response) => {
            let status = response.status().as_u16();
            (status, response.text().await.unwrap_or_default())
        }
        Err(error) => (0, error.to_string()),
    }
}
