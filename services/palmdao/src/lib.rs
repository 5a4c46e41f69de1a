//! `palmdao`: the public HTTP API and the only writer of domain data.
//!
//! This crate currently wires the service's foundation: MongoDB with its
//! indexes, the RabbitMQ topology it consumes results from, and the outbox
//! relay that publishes the events its domain writes stage (active on one
//! replica at a time under a lease). The API and the result handlers arrive
//! with their issues; nothing here pretends to do them.

use std::time::Duration;

use palm_amqp::{AmqpSettings, Broker, Publisher, QueueSpec, Topology};
use palm_core::InvalidSetting;
use palm_mongo::{Idempotency, Lease, MongoSettings, OutboxRelay, outbox};
use palm_service::{Runtime, RuntimeSettings, ServiceSettings};
use serde::Deserialize;

/// Service name: binary, image, chart, log and metric label.
pub const SERVICE: &str = "palmdao";

/// Collections whose documents stage outbox events.
pub const OUTBOX_COLLECTIONS: &[&str] = &[
    "palm_ids",
    "communities",
    "memberships",
    "proposals",
    "votes",
    "verifications",
];

/// Queue of verification and vote results palmdao applies.
pub fn queues() -> Vec<QueueSpec> {
    vec![QueueSpec::new(
        "palmdao.results",
        &["verification.completed", "vote.validated", "vote.rejected"],
    )]
}

/// `palmdao` configuration.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Settings {
    /// `admin.*`, `telemetry.*`, `shutdown.*`.
    #[serde(flatten)]
    pub runtime: RuntimeSettings,
    /// `amqp.*`.
    pub amqp: AmqpSettings,
    /// `mongo.*`.
    pub mongo: MongoSettings,
    /// `outbox.*`.
    pub outbox: OutboxSettings,
}

/// `outbox.*`: the relay.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OutboxSettings {
    /// Documents read per collection per pass.
    pub batch_size: i64,
    /// Pause after a pass that found nothing.
    pub poll_interval_ms: u64,
    /// Lease validity; a dead relay's successor takes over after this.
    pub lease_ttl_ms: u64,
    /// How long processed-message records are kept for deduplication.
    pub idempotency_retention_hours: u64,
}

impl Default for OutboxSettings {
    fn default() -> Self {
        Self {
            batch_size: 256,
            poll_interval_ms: 200,
            lease_ttl_ms: 10_000,
            idempotency_retention_hours: 72,
        }
    }
}

impl ServiceSettings for Settings {
    fn validate(&self) -> Result<(), InvalidSetting> {
        self.runtime.validate()?;
        self.amqp.validate()?;
        self.mongo.validate()?;
        let bad = |field: &str, reason: &str| Err(InvalidSetting::new("outbox", field, reason));
        if self.outbox.batch_size < 1 {
            return bad("batch_size", "must be at least 1");
        }
        if self.outbox.lease_ttl_ms < 300 {
            return bad("lease_ttl_ms", "must be at least 300");
        }
        if self.outbox.idempotency_retention_hours == 0 {
            return bad("idempotency_retention_hours", "must be above 0");
        }
        Ok(())
    }

    fn runtime(&self) -> &RuntimeSettings {
        &self.runtime
    }
}

/// Runs palmdao until `runtime.shutdown`.
pub async fn run(settings: Settings, runtime: Runtime) -> anyhow::Result<()> {
    use anyhow::Context as _;

    let database = palm_mongo::connect(&settings.mongo, SERVICE)
        .await
        .context("failed to configure the MongoDB client")?;
    runtime
        .readiness
        .register("mongo", palm_mongo::readiness_check(&database));
    let retention = Duration::from_secs(settings.outbox.idempotency_retention_hours * 3600);
    Idempotency::ensure_indexes(&database, retention)
        .await
        .context("failed to create the idempotency indexes")?;
    for collection in OUTBOX_COLLECTIONS {
        palm_mongo::ensure_indexes(&database, collection, vec![outbox::index()])
            .await
            .with_context(|| format!("failed to create the outbox index on {collection}"))?;
    }

    let broker = Broker::start(
        settings.amqp.clone(),
        Topology::new(&settings.amqp, queues()),
    );
    runtime.readiness.register("amqp", broker.readiness_check());
    let publisher = Publisher::new(broker.clone());

    let relay = OutboxRelay::new(database.clone(), OUTBOX_COLLECTIONS, publisher)
        .with_batch_size(settings.outbox.batch_size)
        .with_poll_interval(Duration::from_millis(settings.outbox.poll_interval_ms));
    let holder = format!("{SERVICE}-{}", runtime.instance_id());
    let lease = Lease::new(
        &database,
        "palmdao.outbox",
        &holder,
        Duration::from_millis(settings.outbox.lease_ttl_ms),
    );
    relay.run(lease, runtime.shutdown.clone()).await;

    broker.close().await;
    Ok(())
}
