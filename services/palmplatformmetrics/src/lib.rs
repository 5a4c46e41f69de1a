//! `palmplatformmetrics`: platform usage and user-activity metrics for
//! Grafana, read from MongoDB (secondaries preferred, never written).
//!
//! This crate currently wires the foundation: the read-only database
//! connection, readiness and the admin `/metrics` endpoint. The aggregations
//! arrive with their issue; nothing here pretends to compute them.

use palm_core::InvalidSetting;
use palm_mongo::MongoSettings;
use palm_service::{Runtime, RuntimeSettings, ServiceSettings};
use serde::Deserialize;

/// Service name: binary, image, chart, log and metric label.
pub const SERVICE: &str = "palmplatformmetrics";

/// `palmplatformmetrics` configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct Settings {
    /// `admin.*`, `telemetry.*`, `shutdown.*`.
    #[serde(flatten)]
    pub runtime: RuntimeSettings,
    /// `mongo.*`; reads prefer secondaries by default.
    pub mongo: MongoSettings,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            runtime: RuntimeSettings::default(),
            mongo: MongoSettings {
                secondary_preferred: true,
                ..MongoSettings::default()
            },
        }
    }
}

impl ServiceSettings for Settings {
    fn validate(&self) -> Result<(), InvalidSetting> {
        self.runtime.validate()?;
        self.mongo.validate()
    }

    fn runtime(&self) -> &RuntimeSettings {
        &self.runtime
    }
}

/// Runs the service until `runtime.shutdown`.
pub async fn run(settings: Settings, runtime: Runtime) -> anyhow::Result<()> {
    use anyhow::Context as _;

    let database = palm_mongo::connect(&settings.mongo, SERVICE)
        .await
        .context("failed to configure the MongoDB client")?;
    runtime
        .readiness
        .register("mongo", palm_mongo::readiness_check(&database));
    runtime.shutdown.cancelled().await;
    Ok(())
}
