//! Storage: one module per MongoDB collection, the only code in palmdao that
//! touches `mongodb`, `bson` or `palm_mongo`.
//!
//! Each module owns its collection's name, document shape, indexes, queries
//! and the outbox records its writes stage (`palm_mongo::outbox`), and hands
//! typed records or domain types to its callers, never documents.
//! [`Store`] (a cheap clone of the database handle) is what the API,
//! the consumers and the jobs hold.
//!
//! # Layout
//! - [`nonces`]: single-use sign-in nonces (`auth_nonces`).
//! - [`identities`]: claimed external identities, the anti-sybil rule.
//! - [`palm_ids`]: PalmIDs, their verifiers and handle.
//! - [`communities`], [`memberships`], [`discussions`].
//! - [`verifications`]: verification requests and their results.
//! - [`proposals`]: proposals and vote documents (the vote path keeps its
//!   own queries in `crate::tally` and `crate::api::proposals`).
//! - [`audit`]: the audit log the outbox relay fills, listed by subject.
//! - [`idempotency`]: kept answers of `Idempotency-Key` requests.
//! - [`pages`]: the newest-first page query every list shares.
//! - [`platform`]: the indexes palmplatformmetrics' aggregations need.
//! - [`wiring`]: the outbox relay, leases and message idempotency records
//!   `crate::run` and the jobs need.

pub mod audit;
pub mod communities;
pub mod discussions;
pub mod idempotency;
pub mod identities;
pub mod memberships;
pub mod nonces;
pub mod pages;
pub mod palm_ids;
pub mod platform;
pub mod proposals;
pub mod verifications;
pub mod wiring;

use palm_mongo::mongodb::Database;
use palm_mongo::mongodb::bson::DateTime as BsonDateTime;

pub use palm_mongo::MongoSettings;

/// A storage failure: the database's, or a stored document that breaks the
/// shape the code relies on.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The database operation failed.
    #[error(transparent)]
    Database(#[from] palm_mongo::mongodb::error::Error),
    /// A stored document is not what its writer wrote.
    #[error(transparent)]
    Inconsistent(#[from] anyhow::Error),
}

/// The result of a store operation.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// palmdao's database: every collection module takes one.
#[derive(Debug, Clone)]
pub struct Store {
    database: Database,
}

impl Store {
    /// A store over `database`.
    pub fn new(database: Database) -> Self {
        Self { database }
    }

    /// Connects with `settings` (the client connects lazily), naming the
    /// connections after `service`.
    pub async fn connect(settings: &MongoSettings, service: &str) -> anyhow::Result<Self> {
        Ok(Self::new(palm_mongo::connect(settings, service).await?))
    }

    /// A store on a client that never connects: for tests that only build
    /// the router.
    pub async fn unconnected() -> anyhow::Result<Self> {
        let client = palm_mongo::mongodb::Client::with_uri_str("mongodb://127.0.0.1:9/").await?;
        Ok(Self::new(client.database("unused")))
    }

    /// The raw handle: for the vote path (`crate::tally`, vote intake and
    /// the scheduler's close step) until its queries move here.
    pub(crate) fn database(&self) -> &Database {
        &self.database
    }

    /// The `mongo` readiness check.
    pub fn readiness_check(
        &self,
    ) -> impl Fn() -> std::pin::Pin<Box<dyn std::future::Future<Output = bool> + Send>>
    + Send
    + Sync
    + 'static {
        palm_mongo::readiness_check(&self.database)
    }
}

/// Declares the indexes of palmdao's own collections (idempotent); the
/// platform metrics' are [`platform::ensure_indexes`].
pub async fn ensure_indexes(database: &Database) -> palm_mongo::mongodb::error::Result<()> {
    nonces::ensure_indexes(database).await?;
    communities::ensure_indexes(database).await?;
    memberships::ensure_indexes(database).await?;
    discussions::ensure_indexes(database).await?;
    proposals::ensure_indexes(database).await?;
    audit::audit_log().ensure_indexes(database).await?;
    idempotency::ensure_indexes(database).await?;
    palm_ids::ensure_indexes(database).await
}

impl Store {
    /// Declares palmdao's own indexes ([`ensure_indexes`]) and the platform
    /// metrics' ([`platform::ensure_indexes`]), with the step that failed.
    pub async fn ensure_indexes(&self) -> anyhow::Result<()> {
        use anyhow::Context as _;
        ensure_indexes(&self.database)
            .await
            .context("failed to create the API indexes")?;
        platform::ensure_indexes(&self.database)
            .await
            .context("failed to create the platform metrics indexes")?;
        Ok(())
    }
}

/// A chrono time as a BSON date (millisecond precision, as MongoDB stores).
pub(crate) fn to_bson_time(time: chrono::DateTime<chrono::Utc>) -> BsonDateTime {
    BsonDateTime::from_millis(time.timestamp_millis())
}

/// A BSON date as chrono time.
pub(crate) fn from_bson_time(time: &BsonDateTime) -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::from_timestamp_millis(time.timestamp_millis()).unwrap_or_default()
}
