//! A palmplatformmetrics process under test.

use std::time::Duration;

use palm_testkit::process::{ServiceProcess, binary};

use crate::ServiceEnv;
use crate::prom::Scrape;

/// A running palmplatformmetrics.
#[derive(Debug)]
pub struct PlatformMetrics {
    /// The process.
    pub process: ServiceProcess,
    /// `host:port` of its admin server.
    pub admin: String,
}

impl PlatformMetrics {
    /// Starts one on `env`'s database, refreshing every `interval_ms`, with
    /// every MongoDB command counted; `extra` variables override.
    pub async fn start(env: &ServiceEnv, interval_ms: u64, extra: &[(&str, &str)]) -> Self {
        let interval = interval_ms.to_string();
        let mut vars = vec![
            ("PALM__PLATFORM__REFRESH_INTERVAL_MS", interval.as_str()),
            ("PALM__MONGO__COMMAND_METRICS", "true"),
        ];
        vars.extend_from_slice(extra);
        let process = ServiceProcess::spawn(binary("palmplatformmetrics"), &env.vars(&vars));
        let admin = process.admin_addr(Duration::from_secs(20)).await;
        Self { process, admin }
    }

    /// Its `/metrics`, parsed.
    pub async fn scrape(&self) -> Scrape {
        Scrape::of(&self.admin).await
    }

    /// Aggregate commands it sent so far.
    pub async fn aggregates(&self) -> f64 {
        self.scrape()
            .await
            .value("palm_mongo_commands_total", &[("command", "aggregate")])
            .unwrap_or(0.0)
    }

    /// Whether it holds the snapshot lease now.
    pub async fn holds_lease(&self) -> bool {
        self.scrape()
            .await
            .value("palm_lease_held", &[("lease", palmplatformmetrics::LEASE)])
            == Some(1.0)
    }

    /// Waits until it shows a snapshot whose refreshes counter reached
    /// `ok` on some replica: returns its scrape once
    /// `palm_platform_snapshot_age_seconds` is present.
    pub async fn wait_for_snapshot(&self) -> Scrape {
        let admin = self.admin.clone();
        palm_testkit::eventually("a platform snapshot", Duration::from_secs(30), || {
            let admin = admin.clone();
            async move {
                let scrape = Scrape::of(&admin).await;
                scrape
                    .value("palm_platform_snapshot_age_seconds", &[])
                    .is_some()
                    .then_some(scrape)
            }
        })
        .await
    }
}
