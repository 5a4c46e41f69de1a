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
//! - [`database`]: [`Store`] itself (the database handle, the prompt path,
//!   the caches), its error type and the BSON time helpers.
//! - [`groups`]: writes applied in groups (the task, the bulk commands).
//! - [`nonces`]: single-use sign-in nonces (`auth_nonces`).
//! - [`identities`]: claimed external identities, the anti-sybil rule.
//! - [`palm_ids`]: PalmIDs, their verifiers and handle.
//! - [`communities`], [`memberships`], [`discussions`].
//! - [`verifications`]: verification requests and their results.
//! - [`proposals`]: proposals (their rules cached), their opening and
//!   closing.
//! - [`votes`]: signed votes taken, deduplicated by digest, decided once.
//! - [`ballots`]: one counted vote per PalmID per proposal, and the tally
//!   as a recount of them (ADR 0029).
//! - [`results`]: validated votes applied in groups (three commands a
//!   group: transitions, their state, ballots).
//! - [`audit`]: the audit log the outbox relay fills, listed by subject.
//! - [`idempotency`]: kept answers of `Idempotency-Key` requests.
//! - [`pages`]: the newest-first page query every list shares.
//! - [`platform`]: the indexes palmplatformmetrics' aggregations need.
//! - [`wiring`]: the outbox relay, leases and message idempotency records
//!   `crate::run` and the jobs need.

pub mod audit;
pub mod ballots;
pub mod communities;
pub mod database;
pub mod discussions;
pub mod groups;
pub mod idempotency;
pub mod identities;
pub mod memberships;
pub mod nonces;
pub mod pages;
pub mod palm_ids;
pub mod platform;
pub mod proposals;
pub mod results;
pub mod verifications;
pub mod votes;
pub mod wiring;

pub use database::{Error, Result, Store};
pub use palm_mongo::MongoSettings;

use palm_mongo::mongodb::Database;

/// Declares the indexes of palmdao's own collections (idempotent); the
/// platform metrics' are [`platform::ensure_indexes`].
pub async fn ensure_indexes(database: &Database) -> palm_mongo::mongodb::error::Result<()> {
    nonces::ensure_indexes(database).await?;
    communities::ensure_indexes(database).await?;
    memberships::ensure_indexes(database).await?;
    discussions::ensure_indexes(database).await?;
    proposals::ensure_indexes(database).await?;
    ballots::ensure_indexes(database).await?;
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
