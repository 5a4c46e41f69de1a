//! The aggregations one refresh runs, each on the index palmdao declares
//! for it (`palmdao::platform`), named as a `hint`, with a server-side time
//! limit (`maxTimeMS`), and read with the configured read preference
//! (secondaries by default). They run concurrently; one failure fails the
//! refresh, which then keeps the previous snapshot.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use futures_util::TryStreamExt;
use palm_mongo::mongodb::bson::{Bson, DateTime, Document, doc};
use palm_mongo::mongodb::options::Hint;
use palm_mongo::mongodb::{Database, error::Result};
use palmdao::store::{communities, memberships, palm_ids, platform, proposals, verifications};

use crate::snapshot::{Snapshot, VERIFICATION_STATUSES};

/// The aggregations' common shape: `pipeline` on `collection`, through the
/// index named `index`, within `max_time`.
#[derive(Debug, Clone)]
pub struct Aggregation {
    /// Collection.
    pub collection: &'static str,
    /// Index it must run on.
    pub index: &'static str,
    /// Pipeline.
    pub pipeline: Vec<Document>,
}

impl Aggregation {
    fn new(collection: &'static str, index: &'static str, pipeline: Vec<Document>) -> Self {
        Self {
            collection,
            index,
            pipeline,
        }
    }

    #[tracing::instrument(skip_all, fields(collection = self.collection, index = self.index))]
    async fn run(&self, database: &Database, max_time: Duration) -> Result<Vec<Document>> {
        database
            .collection::<Document>(self.collection)
            .aggregate(self.pipeline.clone())
            .hint(Hint::Name(self.index.to_owned()))
            .max_time(max_time)
            .await?
            .try_collect()
            .await
    }
}

fn count_by(field: &str) -> Vec<Document> {
    vec![doc! { "$group": { "_id": format!("${field}"), "n": { "$sum": 1 } } }]
}

fn count_all() -> Vec<Document> {
    vec![doc! { "$group": { "_id": Bson::Null, "n": { "$sum": 1 } } }]
}

/// PalmIDs by their stored level.
pub fn palm_ids_by_level() -> Aggregation {
    Aggregation::new(
        palm_ids::PALM_IDS,
        platform::PALM_IDS_BY_LEVEL,
        count_by("level"),
    )
}

/// Verification requests by kind, one count per status (the statuses are
/// a closed set, so a document per kind carries them all).
pub fn verifications_by_kind_and_status() -> Aggregation {
    let mut group = doc! { "_id": "$kind" };
    for status in VERIFICATION_STATUSES {
        group.insert(
            status,
            doc! { "$sum": { "$cond": [{ "$eq": ["$status", status] }, 1, 0] } },
        );
    }
    Aggregation::new(
        verifications::VERIFICATIONS,
        platform::VERIFICATIONS_BY_KIND_STATUS,
        vec![doc! { "$group": group }],
    )
}

/// Communities.
pub fn communities() -> Aggregation {
    Aggregation::new(communities::COMMUNITIES, platform::ID_INDEX, count_all())
}

/// Memberships.
pub fn memberships() -> Aggregation {
    Aggregation::new(memberships::MEMBERSHIPS, platform::ID_INDEX, count_all())
}

/// Proposals by status.
pub fn proposals_by_status() -> Aggregation {
    Aggregation::new(
        proposals::PROPOSALS,
        platform::PROPOSALS_BY_STATUS,
        count_by("status"),
    )
}

/// Votes by status.
pub fn votes_by_status() -> Aggregation {
    Aggregation::new(
        proposals::VOTES,
        platform::VOTES_BY_PROPOSAL_STATUS,
        count_by("status"),
    )
}

/// Distinct voters of the last 7 days, and of those the ones whose latest
/// vote is from the last 24 hours: one pass over the week's index range.
pub fn active_voters(now: DateTime) -> Aggregation {
    let day = DateTime::from_millis(now.timestamp_millis() - 86_400_000);
    let week = DateTime::from_millis(now.timestamp_millis() - 7 * 86_400_000);
    Aggregation::new(
        proposals::VOTES,
        platform::VOTES_BY_SUBMITTED_VOTER,
        vec![
            doc! { "$match": { "submitted_at": { "$gte": week } } },
            doc! { "$group": { "_id": "$palm_id", "last": { "$max": "$submitted_at" } } },
            doc! { "$group": {
                "_id": Bson::Null,
                "week": { "$sum": 1 },
                "day": { "$sum": { "$cond": [{ "$gte": ["$last", day] }, 1, 0] } },
            } },
        ],
    )
}

/// The newest successful backup record.
pub fn last_backup() -> Aggregation {
    Aggregation::new(
        platform::BACKUPS,
        platform::BACKUPS_BY_STATUS_FINISHED,
        vec![
            doc! { "$match": { "status": "ok" } },
            doc! { "$sort": { "finished_at": -1 } },
            doc! { "$limit": 1 },
            doc! { "$project": { "_id": 0, "finished_at": 1, "size_bytes": 1 } },
        ],
    )
}

/// The oldest pending outbox marker of `collection`.
pub fn oldest_pending(collection: &'static str) -> Aggregation {
    let since = palm_mongo::outbox::SINCE_FIELD;
    Aggregation::new(
        collection,
        palm_mongo::outbox::INDEX_NAME,
        vec![
            doc! { "$match": { since: { "$exists": true } } },
            doc! { "$sort": { since: 1 } },
            doc! { "$limit": 1 },
            doc! { "$project": { "_id": 0, "since": format!("${since}") } },
        ],
    )
}

/// Every aggregation of a refresh at `now`, outbox lag last.
pub fn all(now: DateTime) -> Vec<Aggregation> {
    let mut all = vec![
        palm_ids_by_level(),
        verifications_by_kind_and_status(),
        communities(),
        memberships(),
        proposals_by_status(),
        votes_by_status(),
        active_voters(now),
        last_backup(),
    ];
    all.extend(
        palmdao::OUTBOX_COLLECTIONS
            .iter()
            .map(|c| oldest_pending(c)),
    );
    all
}

fn key_of(document: &Document) -> String {
    match document.get("_id") {
        Some(Bson::String(key)) => key.clone(),
        Some(Bson::Int32(n)) => n.to_string(),
        Some(Bson::Int64(n)) => n.to_string(),
        Some(Bson::Double(n)) if n.fract() == 0.0 => format!("{n:.0}"),
        Some(Bson::Null) | None => "unknown".to_owned(),
        Some(other) => other.to_string(),
    }
}

fn counts(documents: &[Document]) -> BTreeMap<String, i64> {
    let mut counts = BTreeMap::new();
    for document in documents {
        *counts.entry(key_of(document)).or_insert(0) +=
            palm_mongo::integer(document, "n").unwrap_or(0);
    }
    counts
}

fn total(documents: &[Document]) -> i64 {
    documents
        .iter()
        .filter_map(|d| palm_mongo::integer(d, "n"))
        .sum()
}

/// Runs every aggregation once and assembles the snapshot as of `now`.
#[tracing::instrument(skip_all)]
pub async fn refresh(database: &Database, max_time: Duration) -> Result<Snapshot> {
    let started = Instant::now();
    let now = DateTime::now();
    let aggregations = all(now);
    let results = futures_util::future::try_join_all(
        aggregations
            .iter()
            .map(|aggregation| aggregation.run(database, max_time)),
    )
    .await?;
    let mut results = results.into_iter();
    let mut next = || results.next().unwrap_or_default();

    let palm_ids = counts(&next());
    let mut verifications: BTreeMap<String, BTreeMap<String, i64>> = BTreeMap::new();
    for document in next() {
        let by_status = verifications.entry(key_of(&document)).or_default();
        for status in VERIFICATION_STATUSES {
            *by_status.entry(status.to_owned()).or_insert(0) +=
                palm_mongo::integer(&document, status).unwrap_or(0);
        }
    }
    let communities = total(&next());
    let memberships = total(&next());
    let proposals = counts(&next());
    let votes = counts(&next());
    let voters = next();
    let voters = voters.first();
    let active_voters = BTreeMap::from([
        (
            "24h".to_owned(),
            voters
                .and_then(|d| palm_mongo::integer(d, "day"))
                .unwrap_or(0),
        ),
        (
            "7d".to_owned(),
            voters
                .and_then(|d| palm_mongo::integer(d, "week"))
                .unwrap_or(0),
        ),
    ]);
    let backup = next();
    let backup = backup.first();
    let backup_finished_at = backup.and_then(|d| d.get_datetime("finished_at").ok().copied());
    let backup_size_bytes = backup
        .and_then(|d| palm_mongo::integer(d, "size_bytes"))
        .unwrap_or(0);
    let mut outbox_lag_seconds = BTreeMap::new();
    for collection in palmdao::OUTBOX_COLLECTIONS {
        let oldest = next()
            .first()
            .and_then(|d| d.get_datetime("since").ok().copied());
        let lag = oldest.map_or(0.0, |since| {
            (now.timestamp_millis() - since.timestamp_millis()).max(0) as f64 / 1000.0
        });
        outbox_lag_seconds.insert((*collection).to_owned(), lag);
    }
    Ok(Snapshot {
        taken_at: now,
        refresh_seconds: started.elapsed().as_secs_f64(),
        palm_ids,
        verifications,
        communities,
        memberships,
        proposals,
        votes,
        active_voters,
        outbox_lag_seconds,
        backup_finished_at,
        backup_size_bytes,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::collections::BTreeSet;

    use super::*;

    /// Every index an aggregation names is one palmdao declares on that
    /// collection (MongoDB refuses a hint naming a missing index, so this
    /// is what keeps every aggregation on an index).
    #[test]
    fn every_aggregation_names_an_index_palmdao_declares_on_its_collection() {
        let mut declared: BTreeSet<(String, String)> = palmdao::store::platform::indexes()
            .into_iter()
            .map(|(collection, index)| {
                (collection.to_owned(), index.options.unwrap().name.unwrap())
            })
            .collect();
        for collection in palmdao::OUTBOX_COLLECTIONS {
            declared.insert((
                (*collection).to_owned(),
                palm_mongo::outbox::INDEX_NAME.to_owned(),
            ));
            declared.insert(((*collection).to_owned(), "_id_".to_owned()));
        }
        declared.insert(("proposals".into(), "by_status_end".into()));
        declared.insert(("votes".into(), "by_proposal_status".into()));
        let all = all(DateTime::now());
        assert_eq!(all.len(), 8 + palmdao::OUTBOX_COLLECTIONS.len());
        for aggregation in all {
            assert!(
                declared.contains(&(
                    aggregation.collection.to_owned(),
                    aggregation.index.to_owned()
                )),
                "{} on {} has no declared index {}",
                aggregation.collection,
                aggregation.collection,
                aggregation.index
            );
        }
    }

    #[test]
    fn grouped_keys_read_as_label_values() {
        assert_eq!(key_of(&doc! { "_id": 2_i32 }), "2");
        assert_eq!(key_of(&doc! { "_id": 3_i64 }), "3");
        assert_eq!(key_of(&doc! { "_id": "valid" }), "valid");
        assert_eq!(key_of(&doc! { "_id": Bson::Null }), "unknown");
        let documents = [doc! { "_id": 1, "n": 2 }, doc! { "_id": 1_i64, "n": 3_i64 }];
        assert_eq!(counts(&documents), BTreeMap::from([("1".to_owned(), 5)]));
    }
}
