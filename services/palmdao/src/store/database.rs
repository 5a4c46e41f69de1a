//! [`Store`]: palmdao's database handle as every collection module takes it
//! — the database, the prompt path its writes hand staged events to
//! (ADR 0030), and the caches of proposal rules and running tallies — with
//! the store's error type and the BSON time helpers. A leaf of the store:
//! the collection modules use it, it uses none of them.

use std::sync::Arc;
use std::time::Duration;

use palm_mongo::mongodb::Database;
use palm_mongo::mongodb::bson::{Bson, DateTime as BsonDateTime};
use palm_mongo::outbox::{OutboxRecord, Prompt};

use crate::domain::proposals::Proposal;
use crate::domain::tally::Tally;

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
    pub(super) database: Database,
    /// Where a write hands the outbox records it staged once it succeeded,
    /// so they are published at once (ADR 0030); disabled until
    /// [`Store::with_prompt`].
    prompt: Prompt,
    /// Proposals' rules, which never change once created (see
    /// [`super::proposals::rules`]).
    pub(super) proposal_rules: moka::sync::Cache<String, Arc<Proposal>>,
    /// Running tallies ([`super::ballots::running`]).
    pub(super) tallies: TallyCache,
}

/// Most proposals whose rules (and running tally) one replica keeps.
const PROPOSALS_CACHED: u64 = 10_000;

impl Store {
    /// A store over `database`.
    pub fn new(database: Database) -> Self {
        Self {
            database,
            prompt: Prompt::disabled(),
            proposal_rules: moka::sync::Cache::builder()
                .max_capacity(PROPOSALS_CACHED)
                .time_to_idle(Duration::from_secs(3600))
                .build(),
            tallies: TallyCache::new(Duration::ZERO, PROPOSALS_CACHED),
        }
    }

    /// The same store, keeping running tallies for `max_age` (zero: every
    /// read recounts).
    pub fn with_tally_max_age(mut self, max_age: Duration) -> Self {
        self.tallies = TallyCache::new(max_age, PROPOSALS_CACHED);
        self
    }

    /// The same store, handing staged records to `prompt` after each write.
    pub fn with_prompt(mut self, prompt: Prompt) -> Self {
        self.prompt = prompt;
        self
    }

    /// Hands `records`, just written to document `id` of `collection`, to
    /// the prompt path.
    pub(super) fn staged(&self, collection: &str, id: impl Into<Bson>, records: &[OutboxRecord]) {
        self.prompt.staged(collection, id, records);
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

/// Running tallies as readers see them. With a `max_age` above zero, a
/// recount at most that old per proposal on this replica, so a busy results
/// page costs one recount per `max_age`, not one per request (bounded by
/// entry count); with zero (the default), every read recounts and is exact.
#[derive(Debug, Clone)]
pub struct TallyCache {
    pub(super) cache: Option<moka::sync::Cache<String, Arc<Tally>>>,
}

impl TallyCache {
    /// Entries live `max_age` (zero: no cache); at most `capacity` proposals
    /// are held.
    pub fn new(max_age: Duration, capacity: u64) -> Self {
        Self {
            cache: (!max_age.is_zero()).then(|| {
                moka::sync::Cache::builder()
                    .max_capacity(capacity)
                    .time_to_live(max_age)
                    .build()
            }),
        }
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
