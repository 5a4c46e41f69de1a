//! What `crate::run` and the jobs need from `palm_mongo` beyond the
//! collections: the outbox relay over the collections that stage events,
//! the leases that keep the relay and the scheduler single, and the
//! processed-message records of the results consumer.

use std::time::Duration;

use palm_amqp::Publisher;
use palm_mongo::outbox;

pub use palm_mongo::lease::{Lease, while_leader};
pub use palm_mongo::{Idempotency, OutboxRelay};

use super::database::Store;

impl Store {
    /// Declares the processed-message records' indexes (kept for
    /// `retention`) and the outbox index of every collection in
    /// `outbox_collections` (idempotent).
    pub async fn ensure_outbox_indexes(
        &self,
        outbox_collections: &[&str],
        retention: Duration,
    ) -> anyhow::Result<()> {
        use anyhow::Context as _;
        Idempotency::ensure_indexes(&self.database, retention)
            .await
            .context("failed to create the idempotency indexes")?;
        for collection in outbox_collections {
            palm_mongo::ensure_indexes(&self.database, collection, vec![outbox::index()])
                .await
                .with_context(|| format!("failed to create the outbox index on {collection}"))?;
        }
        Ok(())
    }

    /// The relay that publishes what `collections` stage.
    pub fn outbox_relay(&self, collections: &[&str], publisher: Publisher) -> OutboxRelay {
        OutboxRelay::new(self.database.clone(), collections, publisher)
    }

    /// The lease `name`, held as `holder` for `ttl` at a time.
    pub fn lease(&self, name: &str, holder: &str, ttl: Duration) -> Lease {
        Lease::new(&self.database, name, holder, ttl)
    }
}
