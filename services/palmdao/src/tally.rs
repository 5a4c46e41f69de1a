//! Vote results, ballots and the tally (ADR 0029, which supersedes 0007).
//!
//! A vote moves `pending` → `valid` or `rejected` once (a conditional update
//! on its status). A valid vote then becomes its PalmID's **ballot** on the
//! proposal: one document per (proposal, PalmID) in `ballots`, `_id =
//! "<proposal id>:<palm id>"`, holding the counted vote. Placing it is one
//! conditional upsert whose cost does not depend on how many others voted:
//!
//! - A later vote (by signed timestamp, then vote id) replaces the earlier
//!   ballot; an earlier one arriving late changes nothing (Snapshot's rule).
//!   The condition is in the upsert's filter, so a ballot that is newer,
//!   or the same vote again, makes the upsert collide with the existing
//!   `_id` (E11000), which means "nothing to do": duplicates and reordering
//!   change nothing, and one PalmID has one ballot by the unique `_id`.
//! - The tally is a **recount**: the sum of the ballots' allocations, their
//!   number and their power, computed by aggregation over the proposal's
//!   ballots (index `by_proposal`). It always equals a recount because it is
//!   one; readers see it through a short per-replica cache
//!   ([`TallyCache`]).
//! - Closing freezes the ballots (`closed: true` on every one of the
//!   proposal's ballots) before counting them: a frozen ballot is never
//!   replaced, and the final tally counts frozen ballots only, so a ballot
//!   placed while the proposal was closing (its upsert creates a new,
//!   unfrozen document) is not counted — a vote decided after the close.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures_util::TryStreamExt;
use palm_amqp::HandlerError;
use palm_core::Envelope;
use palm_core::events::{VoteRejected, VoteValidated};
use palm_mongo::mongodb::bson::{Bson, Document, doc};
use palm_mongo::mongodb::options::{IndexOptions, ReturnDocument};
use palm_mongo::mongodb::{Database, IndexModel};

use crate::api::proposals::VOTES;
use crate::api::to_bson_time;

/// Collection of ballots: one per (proposal, PalmID).
pub const BALLOTS: &str = "ballots";
/// Name of the index the recount runs on.
pub const BALLOTS_BY_PROPOSAL: &str = "by_proposal";
/// Set on a ballot when its proposal closes; a frozen ballot never changes.
pub const FROZEN_FIELD: &str = "closed";

/// Declares the ballots' recount index.
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

/// Applies `vote.rejected`: the vote is rejected with its reason, once.
#[tracing::instrument(skip_all, fields(vote_id = %event.payload.vote_id))]
pub async fn apply_rejected(
    database: &Database,
    event: &Envelope<VoteRejected>,
) -> Result<(), HandlerError> {
    let result = &event.payload;
    let changed = database
        .collection::<Document>(VOTES)
        .update_one(
            doc! { "_id": result.vote_id.to_string(), "status": "pending" },
            doc! { "$set": {
                "status": "rejected",
                "reason": &result.reason,
                "decided_at": to_bson_time(Utc::now()),
            } },
        )
        .await
        .map_err(HandlerError::transient)?;
    if changed.matched_count == 0 {
        ensure_vote_exists(database, &result.vote_id.to_string()).await?;
        tracing::info!("vote result already applied");
    }
    palm_service::metrics::counter!("palm_votes_applied_total", "outcome" => "rejected")
        .increment(1);
    Ok(())
}

/// Applies `vote.validated`: the vote becomes valid once, then its ballot is
/// put in place (a step that is itself idempotent, so a redelivery after a
/// crash between the two finishes the work). Two commands on the common
/// path: the transition, which returns the vote, and the ballot's upsert.
#[tracing::instrument(skip_all, fields(vote_id = %event.payload.vote_id))]
pub async fn apply_validated(
    database: &Database,
    event: &Envelope<VoteValidated>,
) -> Result<(), HandlerError> {
    let result = &event.payload;
    let vote_id = result.vote_id.to_string();
    let votes = database.collection::<Document>(VOTES);
    let allocation: Vec<Bson> = result.allocation.iter().map(|a| Bson::Double(*a)).collect();
    let transitioned = votes
        .find_one_and_update(
            doc! { "_id": &vote_id, "status": "pending" },
            doc! { "$set": {
                "status": "valid",
                "voting_power": result.voting_power,
                "allocation": allocation,
                "decided_at": to_bson_time(Utc::now()),
            } },
        )
        .projection(doc! { "status": 1, "timestamp": 1 })
        .return_document(ReturnDocument::After)
        .await
        .map_err(HandlerError::transient)?;
    let vote = match transitioned {
        Some(vote) => vote,
        // Decided before (a redelivery): its ballot step may still be due.
        None => votes
            .find_one(doc! { "_id": &vote_id })
            .projection(doc! { "status": 1, "timestamp": 1 })
            .await
            .map_err(HandlerError::transient)?
            .ok_or_else(|| HandlerError::permanent(anyhow::anyhow!("unknown vote {vote_id}")))?,
    };
    if vote.get_str("status") != Ok("valid") {
        // Rejected earlier by a conflicting result: the first decision holds.
        tracing::warn!(status = ?vote.get_str("status"), "validated vote was already decided otherwise");
        return Ok(());
    }
    let ballot = Ballot {
        vote_id,
        timestamp: palm_mongo::integer(&vote, "timestamp").unwrap_or_default(),
        allocation: result.allocation.clone(),
        power: result.voting_power,
    };
    let placed = place_ballot(
        database,
        &result.proposal_id.to_string(),
        &result.palm_id.to_string(),
        &ballot,
    )
    .await?;
    tracing::info!(placed, "vote applied");
    palm_service::metrics::counter!("palm_votes_applied_total", "outcome" => "valid").increment(1);
    Ok(())
}

async fn ensure_vote_exists(database: &Database, vote_id: &str) -> Result<(), HandlerError> {
    let found = database
        .collection::<Document>(VOTES)
        .find_one(doc! { "_id": vote_id })
        .projection(doc! { "_id": 1 })
        .await
        .map_err(HandlerError::transient)?;
    found
        .map(|_| ())
        .ok_or_else(|| HandlerError::permanent(anyhow::anyhow!("unknown vote {vote_id}")))
}

/// A PalmID's counted vote on a proposal.
#[derive(Debug, Clone, PartialEq)]
pub struct Ballot {
    /// The vote counted.
    pub vote_id: String,
    /// Its signed timestamp (Unix seconds): later replaces earlier.
    pub timestamp: i64,
    /// Power per choice, from choice 1.
    pub allocation: Vec<f64>,
    /// Its voting power.
    pub power: f64,
}

impl Ballot {
    /// Whether this ballot is newer than `other` (and so replaces it).
    pub fn supersedes(&self, other: &Ballot) -> bool {
        (self.timestamp, &self.vote_id) > (other.timestamp, &other.vote_id)
    }
}

/// A ballot's `_id`.
pub fn ballot_id(proposal_id: &str, palm_id: &str) -> String {
    format!("{proposal_id}:{palm_id}")
}

/// Puts `ballot` in place for `palm_id` unless a newer one (or this one) is
/// there or the proposal's ballots are frozen, in one upsert: the filter
/// matches an existing ballot only if `ballot` supersedes it and it is not
/// frozen; when it matches nothing, the upsert inserts, which collides with
/// an existing `_id` — the signal that there is nothing to do. Returns
/// whether the ballot was placed.
async fn place_ballot(
    database: &Database,
    proposal_id: &str,
    palm_id: &str,
    ballot: &Ballot,
) -> Result<bool, HandlerError> {
    let allocation: Vec<Bson> = ballot.allocation.iter().map(|a| Bson::Double(*a)).collect();
    let placed = database
        .collection::<Document>(BALLOTS)
        .update_one(
            doc! {
                "_id": ballot_id(proposal_id, palm_id),
                FROZEN_FIELD: { "$exists": false },
                "$or": [
                    { "timestamp": { "$lt": ballot.timestamp } },
                    { "timestamp": ballot.timestamp, "vote_id": { "$lt": &ballot.vote_id } },
                ],
            },
            doc! { "$set": {
                "proposal_id": proposal_id,
                "palm_id": palm_id,
                "vote_id": &ballot.vote_id,
                "timestamp": ballot.timestamp,
                "allocation": allocation,
                "power": ballot.power,
                "counted_at": to_bson_time(Utc::now()),
            } },
        )
        .upsert(true)
        .await;
    match placed {
        Ok(_) => Ok(true),
        Err(error) if palm_mongo::is_duplicate_key(&error) => Ok(false),
        Err(error) => Err(HandlerError::transient(error)),
    }
}

/// Freezes a closing proposal's ballots: none changes from now on.
pub async fn freeze(
    database: &Database,
    proposal_id: &str,
) -> palm_mongo::mongodb::error::Result<()> {
    database
        .collection::<Document>(BALLOTS)
        .update_many(
            doc! { "proposal_id": proposal_id, FROZEN_FIELD: { "$exists": false } },
            doc! { "$set": { FROZEN_FIELD: true } },
        )
        .await?;
    Ok(())
}

/// A proposal's tally.
#[derive(Debug, Clone, PartialEq)]
pub struct Tally {
    /// Power per choice, indexed from choice 1.
    pub per_choice: Vec<f64>,
    /// Distinct PalmIDs counted.
    pub voters: u64,
    /// Sum of the counted ballots' power.
    pub total_power: f64,
}

impl Tally {
    /// Counts the ballots of `proposal_id` (only the frozen ones when
    /// `frozen_only`) over `choices` choices: two aggregations on the
    /// `by_proposal` index, one for voters and power, one per choice.
    pub async fn recount(
        database: &Database,
        proposal_id: &str,
        choices: usize,
        frozen_only: bool,
    ) -> palm_mongo::mongodb::error::Result<Self> {
        let ballots = database.collection::<Document>(BALLOTS);
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
        let per_choice_sums: Vec<Document> = ballots
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
        for sum in &per_choice_sums {
            let index = palm_mongo::integer(sum, "_id")
                .and_then(|i| usize::try_from(i).ok())
                .unwrap_or(usize::MAX);
            if let Some(slot) = per_choice.get_mut(index) {
                *slot = number(sum, "power");
            }
        }
        let totals = totals.first();
        Ok(Self {
            per_choice,
            voters: totals
                .and_then(|t| palm_mongo::integer(t, "voters"))
                .and_then(|v| u64::try_from(v).ok())
                .unwrap_or(0),
            total_power: totals.map_or(0.0, |t| number(t, "total_power")),
        })
    }

    /// The tally frozen in a closed proposal's document.
    pub fn frozen(proposal: &Document, choices: usize) -> Option<Self> {
        let stored = proposal.get_array("tally").ok()?;
        let mut per_choice: Vec<f64> = stored.iter().map(|p| p.as_f64().unwrap_or(0.0)).collect();
        per_choice.resize(choices, 0.0);
        Some(Self {
            per_choice,
            voters: palm_mongo::integer(proposal, "voters")
                .and_then(|v| u64::try_from(v).ok())
                .unwrap_or(0),
            total_power: number(proposal, "total_power"),
        })
    }
}

/// A number however it was stored (a `$sum` of nothing is an integer 0).
fn number(document: &Document, key: &str) -> f64 {
    match document.get(key) {
        Some(Bson::Double(value)) => *value,
        Some(Bson::Int32(value)) => f64::from(*value),
        Some(Bson::Int64(value)) => *value as f64,
        _ => 0.0,
    }
}

/// Running tallies as readers see them. With a `max_age` above zero, a
/// recount at most that old per proposal on this replica, so a busy results
/// page costs the database one recount per `max_age`, not one per request
/// (bounded by entry count); with zero (the default), every read recounts
/// and is exact.
#[derive(Debug, Clone)]
pub struct TallyCache {
    cache: Option<moka::sync::Cache<String, Arc<Tally>>>,
}

impl TallyCache {
    /// Entries live `max_age` (zero: no cache); at most `capacity`
    /// proposals are held.
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

    /// The running tally of an open proposal: recounted, or the cached
    /// recount while it is younger than `max_age`.
    pub async fn running(
        &self,
        database: &Database,
        proposal_id: &str,
        choices: usize,
    ) -> palm_mongo::mongodb::error::Result<Arc<Tally>> {
        if let Some(tally) = self.cache.as_ref().and_then(|c| c.get(proposal_id)) {
            return Ok(tally);
        }
        let tally = Arc::new(Tally::recount(database, proposal_id, choices, false).await?);
        if let Some(cache) = &self.cache {
            cache.insert(proposal_id.to_owned(), Arc::clone(&tally));
        }
        Ok(tally)
    }
}

/// When a stored time is.
pub fn time_of(document: &Document, key: &str) -> Option<DateTime<Utc>> {
    document
        .get_datetime(key)
        .ok()
        .map(crate::api::from_bson_time)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ballot(timestamp: i64, vote: &str) -> Ballot {
        Ballot {
            vote_id: vote.into(),
            timestamp,
            allocation: vec![1.0, 0.0],
            power: 1.0,
        }
    }

    #[test]
    fn a_later_vote_supersedes_and_an_earlier_one_does_not() {
        assert!(ballot(2, "a").supersedes(&ballot(1, "z")));
        assert!(!ballot(1, "z").supersedes(&ballot(2, "a")));
        assert!(ballot(1, "b").supersedes(&ballot(1, "a")));
        assert!(!ballot(1, "a").supersedes(&ballot(1, "a")));
    }

    #[test]
    fn a_frozen_tally_reads_missing_choices_as_zero() {
        let tally = Tally::frozen(
            &doc! { "tally": [0.0, 3.0], "voters": 2_i32, "total_power": 3.0 },
            3,
        )
        .unwrap();
        assert_eq!(tally.per_choice, vec![0.0, 3.0, 0.0]);
        assert_eq!(tally.voters, 2);
        assert!(Tally::frozen(&doc! {}, 3).is_none());
    }
}
