//! Configuration sections every service has. Flatten [`RuntimeSettings`] into
//! a service's settings to get `admin.*`, `telemetry.*` and `shutdown.*`.

use std::net::SocketAddr;

use palm_core::InvalidSetting;
use serde::Deserialize;

/// Sections shared by all services.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct RuntimeSettings {
    /// The admin HTTP server.
    pub admin: AdminSettings,
    /// Logs and traces.
    pub telemetry: TelemetrySettings,
    /// Graceful shutdown.
    pub shutdown: ShutdownSettings,
}

impl RuntimeSettings {
    /// Checks every runtime section.
    pub fn validate(&self) -> Result<(), InvalidSetting> {
        self.telemetry.validate()?;
        self.shutdown.validate()
    }
}

/// `admin.*`: health, readiness and metrics, apart from public traffic.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AdminSettings {
    /// Listen address; port 0 picks a free port (tests), logged at startup.
    pub addr: SocketAddr,
}

impl Default for AdminSettings {
    fn default() -> Self {
        Self {
            addr: SocketAddr::from(([0, 0, 0, 0], 9090)),
        }
    }
}

/// `telemetry.*`.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TelemetrySettings {
    /// `tracing` filter directive (`info`, `palm_amqp=debug,info`);
    /// `RUST_LOG` overrides it when set.
    pub log_level: String,
    /// OTLP/HTTP endpoint (`http://otel-collector:4318`); no export when unset.
    pub otlp_endpoint: Option<String>,
    /// Fraction of traces exported, 0.0–1.0.
    pub sample_ratio: f64,
}

impl Default for TelemetrySettings {
    fn default() -> Self {
        Self {
            log_level: "info".into(),
            otlp_endpoint: None,
            sample_ratio: 1.0,
        }
    }
}

impl TelemetrySettings {
    fn validate(&self) -> Result<(), InvalidSetting> {
        if tracing_subscriber::EnvFilter::try_new(&self.log_level).is_err() {
            return Err(InvalidSetting::new(
                "telemetry",
                "log_level",
                "not a valid tracing filter",
            ));
        }
        if let Some(endpoint) = &self.otlp_endpoint
            && !(endpoint.starts_with("http://") || endpoint.starts_with("https://"))
        {
            return Err(InvalidSetting::new(
                "telemetry",
                "otlp_endpoint",
                "must be an http(s) URL",
            ));
        }
        if !(0.0..=1.0).contains(&self.sample_ratio) {
            return Err(InvalidSetting::new(
                "telemetry",
                "sample_ratio",
                "must be between 0 and 1",
            ));
        }
        Ok(())
    }
}

/// `shutdown.*`.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ShutdownSettings {
    /// Time to drain after SIGTERM before giving up; keep it below the pod's
    /// `terminationGracePeriodSeconds`.
    pub grace_ms: u64,
}

impl Default for ShutdownSettings {
    fn default() -> Self {
        Self { grace_ms: 25_000 }
    }
}

impl ShutdownSettings {
    fn validate(&self) -> Result<(), InvalidSetting> {
        if self.grace_ms == 0 {
            return Err(InvalidSetting::new(
                "shutdown",
                "grace_ms",
                "must be above 0",
            ));
        }
        Ok(())
    }
}
