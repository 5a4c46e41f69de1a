//! `palmvalidator-discord`: the singleton that verifies Discord accounts
//! within the bot token's rate limits. Its queue is single-active-consumer,
//! so a standby instance is safe and takes over when the active one dies.
//!
//! This crate currently wires the foundation: the job queue and readiness.
//! The Discord client arrives with its issue; nothing here pretends to do it.

use palm_amqp::{AmqpSettings, Broker, QueueSpec, Topology};
use palm_core::InvalidSetting;
use palm_service::{Runtime, RuntimeSettings, ServiceSettings};
use serde::Deserialize;

/// Service name: binary, image, chart, log and metric label.
pub const SERVICE: &str = "palmvalidator-discord";

/// The queue this service consumes.
pub fn queues() -> Vec<QueueSpec> {
    vec![
        QueueSpec::new(
            "palmvalidator-discord.jobs",
            &["verification.requested.discord"],
        )
        .single_active_consumer(),
    ]
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
}

impl ServiceSettings for Settings {
    fn validate(&self) -> Result<(), InvalidSetting> {
        self.runtime.validate()?;
        self.amqp.validate()
    }

    fn runtime(&self) -> &RuntimeSettings {
        &self.runtime
    }
}

/// Runs the service until `runtime.shutdown`.
pub async fn run(settings: Settings, runtime: Runtime) -> anyhow::Result<()> {
    let broker = Broker::start(
        settings.amqp.clone(),
        Topology::new(&settings.amqp, queues()),
    );
    runtime.readiness.register("amqp", broker.readiness_check());
    runtime.shutdown.cancelled().await;
    broker.close().await;
    Ok(())
}
