//! [`Store`]: palmdao's database handle as every collection module takes it
//! — the database, the prompt path its writes hand staged events to
//! (ADR 0030), the caches of proposal rules and running tallies, and the
//! grouped inserts (ADR 0032) — with the store's error type, the bulk
//! commands of grouped writes and the BSON time helpers. The collection
//! modules use it; it uses none of them (only the generic `groups` task).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use palm_mongo::mongodb::Database;
use palm_mongo::mongodb::bson::{Bson, DateTime as BsonDateTime, Document};
use palm_mongo::mongodb::error::ErrorKind;
use palm_mongo::outbox::{OutboxRecord, Prompt};

use super::groups::Groups;
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
    /// Grouped inserts per collection ([`Store::grouped_insert`]), each
    /// task started on first use.
    insert_groups: Arc<Mutex<HashMap<String, InsertGroups>>>,
}

/// Documents inserted in groups; each gets its own statement error, if any.
type InsertGroups = Groups<Document, Result<Option<StatementError>>>;

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
            insert_groups: Arc::default(),
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

    /// Inserts `document` into `collection` together with whatever other
    /// inserts into it are waiting: one unordered `insert` per group (ADR
    /// 0032). `Some` is this document's own error (e.g. a duplicate key);
    /// `Err` is the group's failure. Needs a Tokio runtime.
    pub(super) async fn grouped_insert(
        &self,
        collection: &str,
        document: Document,
    ) -> Result<Option<StatementError>> {
        let groups = {
            let mut groups = self
                .insert_groups
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            groups
                .entry(collection.to_owned())
                .or_insert_with(|| {
                    let (database, collection) = (self.database.clone(), collection.to_owned());
                    Groups::start(move |documents: Vec<Document>| {
                        let (database, collection) = (database.clone(), collection.clone());
                        async move {
                            let count = documents.len();
                            let inserted =
                                insert_all(&database, &collection, documents)
                                    .await
                                    .map(|errors| {
                                        (0..count).map(|i| Ok(errors.get(&i).cloned())).collect()
                                    });
                            per_request(count, inserted)
                        }
                    })
                })
                .clone()
        };
        groups.submit(document).await?
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

// Bulk writes of grouped requests (`super::groups`, ADR 0032).

/// A group's outcomes, one per request: the group's own when it ran, its
/// failure for each of its `count` requests when it did not.
pub(crate) fn per_request<R>(count: usize, outcome: Result<Vec<Result<R>>>) -> Vec<Result<R>> {
    match outcome {
        Ok(outcomes) => outcomes,
        Err(error) => (0..count)
            .map(|_| {
                Err(match &error {
                    Error::Database(error) => Error::Database(error.clone()),
                    Error::Inconsistent(error) => Error::Inconsistent(anyhow::anyhow!("{error:#}")),
                })
            })
            .collect(),
    }
}

/// A statement's error in a bulk command's reply: (code, message).
pub(crate) type StatementError = (i32, String);

/// Runs `statements` as one unordered `update` of `collection` (majority
/// write concern); returns each failed statement's (code, message) by index.
pub(crate) async fn update_all(
    database: &Database,
    collection: &str,
    statements: Vec<Document>,
) -> Result<HashMap<usize, StatementError>> {
    let reply = palm_mongo::update_command(database, collection, statements, false).await?;
    if let Ok(error) = reply.get_document("writeConcernError") {
        return Err(anyhow::anyhow!("write concern not met: {error}").into());
    }
    Ok(statement_errors(&reply))
}

/// Inserts `documents` into `collection` in one unordered `insert_many`
/// (a retryable write, with the client's majority write concern); returns
/// each failed document's (code, message) by index.
pub(crate) async fn insert_all(
    database: &Database,
    collection: &str,
    documents: Vec<Document>,
) -> Result<HashMap<usize, StatementError>> {
    let inserted = database
        .collection::<Document>(collection)
        .insert_many(documents)
        .ordered(false)
        .await;
    let Err(error) = inserted else {
        return Ok(HashMap::new());
    };
    match error.kind.as_ref() {
        ErrorKind::InsertMany(failure) if failure.write_concern_error.is_none() => Ok(failure
            .write_errors
            .iter()
            .flatten()
            .map(|e| (e.index, (e.code, e.message.clone())))
            .collect()),
        _ => Err(error.into()),
    }
}

/// The per-statement errors of a bulk command's reply: statement index →
/// (code, message).
fn statement_errors(reply: &Document) -> HashMap<usize, StatementError> {
    let mut errors = HashMap::new();
    for error in reply.get_array("writeErrors").into_iter().flatten() {
        let Some(error) = error.as_document() else {
            continue;
        };
        let index = palm_mongo::integer(error, "index").and_then(|i| usize::try_from(i).ok());
        let code = palm_mongo::integer(error, "code").and_then(|c| i32::try_from(c).ok());
        if let (Some(index), Some(code)) = (index, code) {
            let message = error.get_str("errmsg").unwrap_or_default().to_owned();
            errors.insert(index, (code, message));
        }
    }
    errors
}
