//! `palmplatformmetrics`: platform usage and user-activity metrics for
//! Grafana (`palm_platform_…`, see `docs/metrics.md`), computed from
//! MongoDB aggregations over palmdao's collections.
//!
//! Expensive reads run once per interval for the whole deployment, not once
//! per replica or per scrape: one replica at a time, holding the lease
//! `palmplatformmetrics.snapshot`, runs the aggregations every
//! `platform.refresh_interval_ms` ([`aggregations`]) and stores the result
//! as one snapshot document ([`snapshot`]). Every replica reads that
//! document on the same interval and serves it on `/metrics`
//! ([`exporter`]), so all replicas show the same values, with
//! `palm_platform_snapshot_age_seconds` computed at scrape time. A slow or
//! failing refresh never blocks `/metrics`: the last snapshot stays served
//! and its age grows.
//!
//! It never writes domain data: its only writes are its lease and the
//! snapshot document. The indexes its aggregations run on are declared and
//! created by palmdao (`palmdao::platform`).
//!
//! # Layout
//! - [`aggregations`]: the pipelines, their indexes and one refresh.
//! - [`snapshot`]: the snapshot document and the series it gives.
//! - [`exporter`]: the gauges on `/metrics`, and storing/reading the snapshot.

pub mod aggregations;
pub mod exporter;
pub mod snapshot;

use std::time::Duration;

use palm_core::InvalidSetting;
use palm_mongo::{Lease, MongoSettings};
use palm_service::{Runtime, RuntimeSettings, ServiceSettings};
use serde::Deserialize;

/// Service name: binary, image, chart, log and metric label.
pub const SERVICE: &str = "palmplatformmetrics";

/// The lease the computing replica holds.
pub const LEASE: &str = "palmplatformmetrics.snapshot";

/// `palmplatformmetrics` configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct Settings {
    /// `admin.*`, `telemetry.*`, `shutdown.*`.
    #[serde(flatten)]
    pub runtime: RuntimeSettings,
    /// `mongo.*`; reads prefer secondaries by default.
    pub mongo: MongoSettings,
    /// `platform.*`: the snapshot refresh.
    pub platform: PlatformSettings,
}

/// `platform.*`.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PlatformSettings {
    /// How often the lease holder refreshes the snapshot, and how often
    /// every replica reads it.
    pub refresh_interval_ms: u64,
    /// Server-side limit (`maxTimeMS`) of each aggregation; one over it
    /// fails the refresh and the previous snapshot stays.
    pub max_time_ms: u64,
    /// Lease validity: a dead computing replica's successor takes over
    /// within this.
    pub lease_ttl_ms: u64,
}

impl Default for PlatformSettings {
    fn default() -> Self {
        Self {
            refresh_interval_ms: 30_000,
            max_time_ms: 10_000,
            lease_ttl_ms: 15_000,
        }
    }
}

impl PlatformSettings {
    /// Checks values that parse but cannot work.
    pub fn validate(&self) -> Result<(), InvalidSetting> {
        let bad = |key: &str, why: &str| Err(InvalidSetting::new("platform", key, why));
        if !(100..=86_400_000).contains(&self.refresh_interval_ms) {
            return bad("refresh_interval_ms", "must be between 100 and 86400000");
        }
        if !(1..=600_000).contains(&self.max_time_ms) {
            return bad("max_time_ms", "must be between 1 and 600000");
        }
        if self.lease_ttl_ms < 300 {
            return bad("lease_ttl_ms", "must be at least 300");
        }
        Ok(())
    }
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            runtime: RuntimeSettings::default(),
            mongo: MongoSettings {
                secondary_preferred: true,
                ..MongoSettings::default()
            },
            platform: PlatformSettings::default(),
        }
    }
}

impl ServiceSettings for Settings {
    fn validate(&self) -> Result<(), InvalidSetting> {
        self.runtime.validate()?;
        self.mongo.validate()?;
        self.platform.validate()
    }

    fn runtime(&self) -> &RuntimeSettings {
        &self.runtime
    }
}

/// Runs the service until `runtime.shutdown`.
pub async fn run(settings: Settings, runtime: Runtime) -> anyhow::Result<()> {
    use anyhow::Context as _;

    runtime.readiness.expect(&["mongo"]);
    let database = palm_mongo::connect(&settings.mongo, SERVICE)
        .await
        .context("failed to configure the MongoDB client")?;
    runtime
        .readiness
        .register("mongo", palm_mongo::readiness_check(&database));
    let platform = &settings.platform;
    let interval = Duration::from_millis(platform.refresh_interval_ms);
    let exporter = exporter::Exporter::new(database.clone());

    let reading = tokio::spawn({
        let exporter = exporter.clone();
        let shutdown = runtime.shutdown.clone();
        async move { exporter.follow(interval, shutdown).await }
    });
    let holder = format!("{SERVICE}-{}", runtime.instance_id());
    // A standby polls at the renewal period rather than the default quarter
    // second: a snapshot a few seconds late costs nothing, and each poll is
    // a command on the primary from every standby replica.
    let lease = Lease::new(
        &database,
        LEASE,
        &holder,
        Duration::from_millis(platform.lease_ttl_ms),
    )
    .with_standby_poll(Duration::from_millis(platform.lease_ttl_ms / 3));
    let max_time = Duration::from_millis(platform.max_time_ms);
    palm_mongo::lease::while_leader(&lease, &runtime.shutdown, |token| {
        let exporter = exporter.clone();
        async move {
            tracing::info!(epoch = token.epoch, "computing the platform snapshot");
            while !token.lost.is_cancelled() {
                tokio::select! {
                    () = exporter.refresh(max_time) => {}
                    () = token.lost.cancelled() => break,
                }
                tokio::select! {
                    () = tokio::time::sleep(interval) => {}
                    () = token.lost.cancelled() => {}
                }
            }
            tracing::info!(epoch = token.epoch, "standing by");
        }
    })
    .await;
    reading.await.context("the snapshot reader failed")?;
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn platform_settings_name_the_bad_key() {
        let mut settings = Settings::default();
        settings.validate().unwrap();
        assert!(settings.mongo.secondary_preferred);
        settings.platform.refresh_interval_ms = 50;
        assert_eq!(
            settings.validate().unwrap_err().key,
            "platform.refresh_interval_ms"
        );
        settings.platform.refresh_interval_ms = 1_000;
        settings.platform.max_time_ms = 0;
        assert_eq!(settings.validate().unwrap_err().key, "platform.max_time_ms");
        settings.platform.max_time_ms = 500;
        settings.platform.lease_ttl_ms = 10;
        assert_eq!(
            settings.validate().unwrap_err().key,
            "platform.lease_ttl_ms"
        );
    }
}
