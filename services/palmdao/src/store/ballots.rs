//! `ballots`: one document per (proposal, PalmID), `_id = "<proposal
//! id>:<palm id>"`, holding the PalmID's counted vote (ADR 0029), and the
//! tally as a recount of them.
//!
//! - Placing a ballot is one upsert ([`placement`], applied in groups by
//!   [`super::results`]) whose filter is the supersession rule
//!   ([`Ballot::supersedes`]) and "not frozen": if the existing ballot is
//!   newer, the same vote, or frozen, the filter matches nothing and the
//!   upsert's insert collides with the existing `_id` (E11000), which means
//!   "nothing to do". So duplicates and reordering change nothing, one
//!   PalmID has one ballot, and the cost does not depend on how many others
//!   voted.
//! - The tally is a recount: two aggregations on the `by_proposal` index.
//! - Closing freezes a proposal's ballots (`closed: true`) before counting
//!   them; a frozen ballot never changes, and the final count takes frozen
//!   ballots only, so one placed while the close runs (a new, unfrozen
//!   document) is not counted: a vote decided after the close.

use std::sync::Arc;

use chrono::Utc;
use futures_util::TryStreamExt;
use palm_mongo::mongodb::bson::{Bson, Document, doc};
use palm_mongo::mongodb::options::IndexOptions;
use palm_mongo::mongodb::{Database, IndexModel};

use super::database::{Result, Store, to_bson_time};
use crate::domain::tally::{Ballot, Tally};

/// Collection of ballots.
pub const BALLOTS: &str = "ballots";
/// The index the recount runs on.
pub const BALLOTS_BY_PROPOSAL: &str = "by_proposal";
/// Set on a ballot when its proposal closes; a frozen ballot never changes.
pub const FROZEN_FIELD: &str = "closed";

/// Declares the recount index.
pub async fn ensure_indexes(database: &Database) -> palm_mongo::mongodb::error::Result<()> {
    let by_proposal = IndexModel::builder()
        .keys(doc! { "proposal_id": 1 })
        .options(
            IndexOptions::builder()
                .name(BALLOTS_BY_PROPOSAL.to_owned())
                .build(),
        )
        .build();
    palm_mongo::ensure_indexes(database, BALLOTS, vec![by_proposal]).await
}

/// A ballot's `_id`.
pub fn ballot_id(proposal_id: &str, palm_id: &str) -> String {
    format!("{proposal_id}:{palm_id}")
}

/// The upsert that puts `ballot` in place for `palm_id` on `proposal_id`
/// unless a newer one (or this one) is there or the proposal's ballots are
/// frozen: its filter is [`Ballot::supersedes`] as a query on the stored
/// ballot, so when it matches nothing the upsert's insert collides with the
/// existing `_id` (E11000), which means "nothing to do". Returns (filter,
/// update).
pub fn placement(proposal_id: &str, palm_id: &str, ballot: &Ballot) -> (Document, Document) {
    let allocation: Vec<Bson> = ballot.allocation.iter().map(|a| Bson::Double(*a)).collect();
    let filter = doc! {
        "_id": ballot_id(proposal_id, palm_id),
        FROZEN_FIELD: { "$exists": false },
        "$or": [
            { "timestamp": { "$lt": ballot.timestamp } },
            { "timestamp": ballot.timestamp, "vote_id": { "$lt": &ballot.vote_id } },
        ],
    };
    let update = doc! { "$set": {
        "proposal_id": proposal_id,
        "palm_id": palm_id,
        "vote_id": &ballot.vote_id,
        "timestamp": ballot.timestamp,
        "allocation": allocation,
        "power": ballot.power,
        "counted_at": to_bson_time(Utc::now()),
    } };
    (filter, update)
}

/// Freezes a closing proposal's ballots: none changes from now on.
#[tracing::instrument(skip_all, fields(%proposal_id))]
pub async fn freeze(store: &Store, proposal_id: &str) -> Result<()> {
    store
        .database
        .collection::<Document>(BALLOTS)
        .update_many(
            doc! { "proposal_id": proposal_id, FROZEN_FIELD: { "$exists": false } },
            doc! { "$set": { FROZEN_FIELD: true } },
        )
        .await?;
    Ok(())
}

/// Counts the ballots of `proposal_id` (only the frozen ones when
/// `frozen_only`) over `choices` choices: two aggregations on the
/// `by_proposal` index, one for voters and power, one per choice.
#[tracing::instrument(skip_all, fields(%proposal_id))]
pub async fn recount(
    store: &Store,
    proposal_id: &str,
    choices: usize,
    frozen_only: bool,
) -> Result<Tally> {
    let ballots = store.database.collection::<Document>(BALLOTS);
    let mut filter = doc! { "proposal_id": proposal_id };
    if frozen_only {
        filter.insert(FROZEN_FIELD, true);
    }
    let totals: Vec<Document> = ballots
        .aggregate([
            doc! { "$match": filter.clone() },
            doc! { "$group": {
                "_id": Bson::Null,
                "voters": { "$sum": 1_i32 },
                "total_power": { "$sum": "$power" },
            } },
        ])
        .await?
        .try_collect()
        .await?;
    let sums: Vec<Document> = ballots
        .aggregate([
            doc! { "$match": filter },
            doc! { "$project": { "allocation": 1 } },
            doc! { "$unwind": { "path": "$allocation", "includeArrayIndex": "choice" } },
            doc! { "$group": { "_id": "$choice", "power": { "$sum": "$allocation" } } },
        ])
        .await?
        .try_collect()
        .await?;
    let mut per_choice = vec![0.0; choices];
    for sum in &sums {
        let index = palm_mongo::integer(sum, "_id")
            .and_then(|i| usize::try_from(i).ok())
            .unwrap_or(usize::MAX);
        if let Some(slot) = per_choice.get_mut(index) {
            *slot = number(sum, "power");
        }
    }
    let totals = totals.first();
    Ok(Tally {
        per_choice,
        voters: totals
            .and_then(|t| palm_mongo::integer(t, "voters"))
            .and_then(|v| u64::try_from(v).ok())
            .unwrap_or(0),
        total_power: totals.map_or(0.0, |t| number(t, "total_power")),
    })
}

/// A BSON number however it was stored, as `f64`.
pub(super) fn as_number(value: &Bson) -> Option<f64> {
    match value {
        Bson::Double(value) => Some(*value),
        Bson::Int32(value) => Some(f64::from(*value)),
        Bson::Int64(value) => Some(*value as f64),
        _ => None,
    }
}

/// The number at `key` however it was stored (a `$sum` of nothing is an
/// integer 0); 0 if there is none.
pub(super) fn number(document: &Document, key: &str) -> f64 {
    document.get(key).and_then(as_number).unwrap_or(0.0)
}

/// The running tally of the open proposal `proposal_id`: recounted, or the
/// cached recount while it is younger than the store's tally max age.
pub async fn running(store: &Store, proposal_id: &str, choices: usize) -> Result<Arc<Tally>> {
    let cache = store.tallies.cache.as_ref();
    if let Some(tally) = cache.and_then(|c| c.get(proposal_id)) {
        return Ok(tally);
    }
    let tally = Arc::new(recount(store, proposal_id, choices, false).await?);
    if let Some(cache) = cache {
        cache.insert(proposal_id.to_owned(), Arc::clone(&tally));
    }
    Ok(tally)
}
