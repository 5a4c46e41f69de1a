//! The indexes behind the platform metrics.
//!
//! palmplatformmetrics never writes domain data, so the indexes its
//! aggregations need are declared here, beside palmdao's own, and created
//! by palmdao at start-up. Each aggregation names its index (a `hint`), so
//! on MongoDB it can only run as an index scan, covered where the index
//! holds every field it reads: none of them scans a collection, and a
//! missing index is an error rather than a silent collection scan.
//!
//! | aggregation | collection | index |
//! |---|---|---|
//! | PalmIDs by level | `palm_ids` | [`PALM_IDS_BY_LEVEL`] `{level: 1}` |
//! | verifications by kind and status | `verifications` | [`VERIFICATIONS_BY_KIND_STATUS`] `{kind: 1, status: 1}` |
//! | communities, memberships | `communities`, `memberships` | `_id_` |
//! | proposals by status | `proposals` | [`PROPOSALS_BY_STATUS`] `{status: 1, end: 1}` |
//! | votes by status | `votes` | [`VOTES_BY_PROPOSAL_STATUS`] `{proposal_id: 1, status: 1}` |
//! | active voters (24 h, 7 d) | `votes` | [`VOTES_BY_SUBMITTED_VOTER`] `{submitted_at: 1, palm_id: 1}` |
//! | newest successful backup | `backups` | [`BACKUPS_BY_STATUS_FINISHED`] `{status: 1, finished_at: -1}` |
//! | oldest unpublished event | each of [`crate::OUTBOX_COLLECTIONS`] | `outbox_pending` `{_outbox_since: 1}` (sparse) |

use palm_mongo::mongodb::bson::doc;
use palm_mongo::mongodb::options::IndexOptions;
use palm_mongo::mongodb::{Database, IndexModel};

pub use super::proposals::{PROPOSALS_BY_STATUS, VOTES_BY_PROPOSAL_STATUS};

/// Backup records, one per successful run of the backup CronJob
/// (`docs/metrics.md`).
pub const BACKUPS: &str = "backups";
/// The index every collection has.
pub const ID_INDEX: &str = "_id_";
/// `palm_ids {level: 1}`.
pub const PALM_IDS_BY_LEVEL: &str = "platform_by_level";
/// `verifications {kind: 1, status: 1}`.
pub const VERIFICATIONS_BY_KIND_STATUS: &str = "platform_by_kind_status";
/// `votes {submitted_at: 1, palm_id: 1}`.
pub const VOTES_BY_SUBMITTED_VOTER: &str = "platform_by_submitted_voter";
/// `backups {status: 1, finished_at: -1}`.
pub const BACKUPS_BY_STATUS_FINISHED: &str = "platform_by_status_finished";

fn named(keys: palm_mongo::mongodb::bson::Document, name: &str) -> IndexModel {
    IndexModel::builder()
        .keys(keys)
        .options(IndexOptions::builder().name(name.to_owned()).build())
        .build()
}

/// The indexes this module adds, by collection (the others it relies on
/// are declared by their own modules).
pub fn indexes() -> Vec<(&'static str, IndexModel)> {
    vec![
        (
            super::palm_ids::PALM_IDS,
            named(doc! { "level": 1 }, PALM_IDS_BY_LEVEL),
        ),
        (
            super::verifications::VERIFICATIONS,
            named(
                doc! { "kind": 1, "status": 1 },
                VERIFICATIONS_BY_KIND_STATUS,
            ),
        ),
        (
            super::proposals::VOTES,
            named(
                doc! { "submitted_at": 1, "palm_id": 1 },
                VOTES_BY_SUBMITTED_VOTER,
            ),
        ),
        (
            BACKUPS,
            named(
                doc! { "status": 1, "finished_at": -1 },
                BACKUPS_BY_STATUS_FINISHED,
            ),
        ),
    ]
}

/// Creates [`indexes`] (idempotent).
#[tracing::instrument(skip_all)]
pub async fn ensure_indexes(database: &Database) -> palm_mongo::mongodb::error::Result<()> {
    for (collection, index) in indexes() {
        palm_mongo::ensure_indexes(database, collection, vec![index]).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn each_platform_index_has_its_declared_name() {
        let names: Vec<String> = indexes()
            .into_iter()
            .map(|(_, index)| index.options.unwrap().name.unwrap())
            .collect();
        assert_eq!(
            names,
            [
                PALM_IDS_BY_LEVEL,
                VERIFICATIONS_BY_KIND_STATUS,
                VOTES_BY_SUBMITTED_VOTER,
                BACKUPS_BY_STATUS_FINISHED
            ]
        );
    }
}
