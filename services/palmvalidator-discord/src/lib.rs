//! `palmvalidator-discord`: the singleton that verifies Discord accounts
//! within the bot token's rate limits. It talks to RabbitMQ and Discord's
//! HTTP API only.
//!
//! It consumes `palmvalidator-discord.jobs` (`verification.requested.discord`)
//! and answers each job with `verification.completed`: verified with the
//! Discord user id and username, or rejected with a `discord_*` reason.
//!
//! Why one instance: every request counts against one application's and
//! one bot token's limits, and too many invalid requests get the IP banned.
//! One active consumer owns one [`ratelimit::RateLimiter`]. The queue is
//! single-active-consumer, so the guarantee does not rest on `replicas: 1`:
//! a second instance (a rolling update, a standby) subscribes but receives
//! nothing until the active one's channel closes, then takes over; the
//! unacked jobs of a dead instance are redelivered to it.
//!
//! # Layout
//! - [`settings`]: the `discord.*` section.
//! - [`ratelimit`]: the process's limiter (global rate, route buckets,
//!   `429`s, the invalid-request budget).
//! - [`client`]: HTTP calls through the limiter; retries, outage detection
//!   and the prober.
//! - [`verify`]: code → token → user → age → guild → role, and the reasons.
//! - [`jobs`]: the consumer: decode, verify, publish (confirmed) before the ack.

pub mod client;
pub mod jobs;
pub mod ratelimit;
pub mod settings;
pub mod verify;

use anyhow::Context as _;
use palm_amqp::{AmqpSettings, Broker, Consumer, Incoming, Publisher, QueueSpec, Topology};
use palm_core::InvalidSetting;
use palm_service::{Runtime, RuntimeSettings, ServiceSettings};
use serde::Deserialize;

pub use settings::DiscordSettings;

/// Service name: binary, image, chart, log and metric label.
pub const SERVICE: &str = "palmvalidator-discord";

/// Short name of the job queue.
pub const JOBS_QUEUE: &str = "palmvalidator-discord.jobs";

/// The queue this service consumes.
pub fn queues() -> Vec<QueueSpec> {
    vec![QueueSpec::new(JOBS_QUEUE, &["verification.requested.discord"]).single_active_consumer()]
}

/// `palmvalidator-discord` configuration.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Settings {
    /// `admin.*`, `telemetry.*`, `shutdown.*`.
    #[serde(flatten)]
    pub runtime: RuntimeSettings,
    /// `amqp.*`.
    pub amqp: AmqpSettings,
    /// `discord.*`.
    pub discord: DiscordSettings,
}

impl ServiceSettings for Settings {
    fn validate(&self) -> Result<(), InvalidSetting> {
        self.runtime.validate()?;
        self.amqp.validate()?;
        self.discord.validate()
    }

    fn runtime(&self) -> &RuntimeSettings {
        &self.runtime
    }
}

/// Runs the service until `runtime.shutdown`: consumes jobs (as the active
/// consumer, or waiting as a standby), publishing each result before acking
/// its job; on shutdown, finishes the jobs in flight.
pub async fn run(settings: Settings, runtime: Runtime) -> anyhow::Result<()> {
    runtime.readiness.expect(&["amqp", "discord"]);
    let instance = runtime.instance_id();
    let client = client::DiscordClient::new(&settings.discord, &instance)?;
    client::register_metrics(settings.discord.invalid_request_budget);
    let _ = palm_service::metrics::counter!(
        "palm_verifications_decided_total",
        "kind" => "discord",
        "outcome" => "verified"
    );
    let broker = Broker::start(
        settings.amqp.clone(),
        Topology::new(&settings.amqp, queues()),
    );
    runtime.readiness.register("amqp", broker.readiness_check());
    {
        let client = client.clone();
        runtime
            .readiness
            .register("discord", move || std::future::ready(client.ready()));
    }
    let prober = tokio::spawn({
        let client = client.clone();
        let shutdown = runtime.shutdown.clone();
        async move { client.probe_while_down(shutdown).await }
    });
    let publisher = Publisher::new(broker.clone());
    let verifier = verify::Verifier::new(client, &settings.discord);
    let jobs = jobs::Jobs::new(publisher.clone(), verifier, runtime.shutdown.clone());
    let consumer = Consumer::new(&broker, &publisher, JOBS_QUEUE, move |message: Incoming| {
        let jobs = jobs.clone();
        async move { jobs.handle(message).await }
    });
    tracing::info!(
        %instance,
        base_url = %settings.discord.base(),
        max_requests_per_second = settings.discord.max_requests_per_second,
        "discord verifier starting (single active consumer; a standby waits)"
    );
    let consumed = consumer
        .run(runtime.shutdown.clone())
        .await
        .context("the job consumer failed");
    let _ = prober.await;
    broker.close().await;
    consumed
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn the_job_queue_is_single_active_consumer() {
        let queues = queues();
        assert_eq!(queues.len(), 1);
        assert_eq!(queues[0].short_name, JOBS_QUEUE);
        assert!(queues[0].single_active_consumer);
    }

    #[test]
    fn settings_name_the_discord_keys() {
        let mut settings = Settings::default();
        assert_eq!(settings.validate().unwrap_err().key, "discord.client_id");
        settings.discord.client_id = "1".into();
        settings.discord.client_secret = secrecy::SecretString::from("s");
        settings.discord.base_url = "http://127.0.0.1:9/api/v10".into();
        settings.validate().unwrap();
    }
}
