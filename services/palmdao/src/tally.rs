//! Vote results and the running tally, applied exactly once.
//!
//! A vote moves `pending` → `valid` or `rejected` once (a conditional update
//! on its status). A valid vote then becomes its PalmID's **ballot** on the
//! proposal, kept inside the proposal document (`ballots.<palm id>`) together
//! with the tally (`ballots.p<palm id hex>`), so replacing a ballot and moving the tally by the
//! difference is one atomic single-document update:
//!
//! - A later vote (by signed timestamp, then vote id) replaces the earlier
//!   ballot; an earlier one arriving late changes nothing (Snapshot's rule).
//! - The update is conditional on the ballot it replaces (compare-and-set),
//!   so concurrent results for one proposal retry instead of double-counting,
//!   and a redelivered result finds its ballot already in place.
//! - The tally is the sum of the ballots' allocations, so it never counts a
//!   PalmID twice and equals a recount of the stored valid votes.
//! - A closed proposal takes no more ballots; its final tally is frozen.
//!
//! The ballot map grows with the number of voters (about 100 bytes each, so
//! ~100k voters per proposal within MongoDB's 16 MiB document limit); see
//! `docs/adr/0007-ballots-inside-the-proposal.md`.

use chrono::{DateTime, Utc};
use palm_amqp::HandlerError;
use palm_core::Envelope;
use palm_core::events::{VoteRejected, VoteValidated};
use palm_mongo::mongodb::Database;
use palm_mongo::mongodb::bson::{Bson, Document, doc};
use palm_mongo::mongodb::options::ReturnDocument;

use crate::store::proposals::{PROPOSALS, VOTES};
use crate::store::to_bson_time;

/// Attempts at the ballot compare-and-set before the message is retried later.
const CAS_ATTEMPTS: usize = 50;

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
/// crash between the two finishes the work).
#[tracing::instrument(skip_all, fields(vote_id = %event.payload.vote_id))]
pub async fn apply_validated(
    database: &Database,
    event: &Envelope<VoteValidated>,
) -> Result<(), HandlerError> {
    let result = &event.payload;
    let vote_id = result.vote_id.to_string();
    let votes = database.collection::<Document>(VOTES);
    let allocation: Vec<Bson> = result.allocation.iter().map(|a| Bson::Double(*a)).collect();
    // One round trip on the common path: the transition returns the vote.
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
        .return_document(ReturnDocument::After)
        .await
        .map_err(HandlerError::transient)?;
    let vote = match transitioned {
        Some(vote) => vote,
        // Decided before (a redelivery): its ballot step may still be due.
        None => votes
            .find_one(doc! { "_id": &vote_id })
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
    place_ballot(
        database,
        &result.proposal_id.to_string(),
        &result.palm_id.to_string(),
        &ballot,
    )
    .await?;
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

/// A PalmID's key in a proposal's `ballots`: `p` and the id's 32 hex
/// digits, a plain identifier in any document path (some MongoDB-compatible
/// servers mistranslate path parts with `-` or a leading digit).
fn ballot_slot(palm_id: &str) -> String {
    format!("p{}", palm_id.replace('-', ""))
}

/// A PalmID's counted vote on a proposal.
#[derive(Debug, Clone, PartialEq)]
pub struct Ballot {
    /// The vote counted.
    pub vote_id: String,
    /// Its signed timestamp: later replaces earlier.
    pub timestamp: i64,
    /// Power per choice.
    pub allocation: Vec<f64>,
    /// Its voting power.
    pub power: f64,
}

impl Ballot {
    fn from_document(document: &Document) -> Option<Self> {
        Some(Self {
            vote_id: document.get_str("vote").ok()?.to_owned(),
            timestamp: palm_mongo::integer(document, "ts").unwrap_or_default(),
            allocation: document
                .get_array("alloc")
                .ok()?
                .iter()
                .map(|a| a.as_f64().unwrap_or_default())
                .collect(),
            power: document.get_f64("power").unwrap_or_default(),
        })
    }

    fn to_document(&self) -> Document {
        let allocation: Vec<Bson> = self.allocation.iter().map(|a| Bson::Double(*a)).collect();
        doc! { "vote": &self.vote_id, "ts": self.timestamp, "alloc": allocation, "power": self.power }
    }

    /// Whether this ballot is newer than `other` (and so replaces it).
    fn supersedes(&self, other: &Ballot) -> bool {
        (self.timestamp, &self.vote_id) > (other.timestamp, &other.vote_id)
    }
}

/// Puts `ballot` in place for `palm_id` unless a newer one is there, moving
/// the tally by the difference in the same atomic update.
async fn place_ballot(
    database: &Database,
    proposal_id: &str,
    palm_id: &str,
    ballot: &Ballot,
) -> Result<(), HandlerError> {
    let proposals = database.collection::<Document>(PROPOSALS);
    let slot = ballot_slot(palm_id);
    let key = format!("ballots.{slot}");
    for _ in 0..CAS_ATTEMPTS {
        let Some(proposal) = proposals
            .find_one(doc! { "_id": proposal_id })
            .projection(doc! { &key: 1, "status": 1, "tally_version": 1 })
            .await
            .map_err(HandlerError::transient)?
        else {
            return Err(HandlerError::permanent(anyhow::anyhow!(
                "unknown proposal {proposal_id}"
            )));
        };
        if proposal.get_str("status") == Ok("closed") {
            tracing::warn!("vote validated after its proposal closed; not counted");
            return Ok(());
        }
        let current = proposal
            .get_document("ballots")
            .ok()
            .and_then(|b| b.get_document(&slot).ok())
            .and_then(Ballot::from_document);
        if current
            .as_ref()
            .is_some_and(|current| !ballot.supersedes(current))
        {
            return Ok(());
        }
        let mut increments = Document::new();
        for (index, power) in ballot.allocation.iter().enumerate() {
            let before = current
                .as_ref()
                .and_then(|c| c.allocation.get(index))
                .copied()
                .unwrap_or(0.0);
            increments.insert(format!("tally.{}", index + 1), power - before);
        }
        let before_power = current.as_ref().map_or(0.0, |c| c.power);
        increments.insert("total_power", ballot.power - before_power);
        increments.insert("voters", i64::from(current.is_none()));
        increments.insert("tally_version", 1_i64);
        let mut filter = doc! { "_id": proposal_id, "status": { "$ne": "closed" } };
        match &current {
            Some(current) => filter.insert(format!("{key}.vote"), &current.vote_id),
            None => filter.insert(&key, doc! { "$exists": false }),
        };
        let placed = proposals
            .update_one(
                filter,
                doc! { "$set": { &key: ballot.to_document() }, "$inc": increments },
            )
            .await
            .map_err(HandlerError::transient)?;
        if placed.matched_count == 1 {
            tracing::info!(replaced = current.is_some(), "ballot counted");
            return Ok(());
        }
        // Another result for this proposal won the race: read again.
        tokio::task::yield_now().await;
    }
    Err(HandlerError::transient(anyhow::anyhow!(
        "ballot for {palm_id} on {proposal_id} kept losing races"
    )))
}

/// A proposal's tally as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct Tally {
    /// Power per choice, indexed from choice 1.
    pub per_choice: Vec<f64>,
    /// Distinct PalmIDs counted.
    pub voters: u64,
    /// Sum of the counted ballots' power.
    pub total_power: f64,
    /// Bumped by every ballot change.
    pub version: i64,
}

impl Tally {
    /// Reads the tally of a proposal document with `choices` choices.
    pub fn of(proposal: &Document, choices: usize) -> Self {
        let stored = proposal.get_document("tally").ok();
        let per_choice = (1..=choices)
            .map(|choice| {
                stored
                    .and_then(|t| t.get(choice.to_string()))
                    .and_then(Bson::as_f64)
                    .unwrap_or(0.0)
            })
            .collect();
        Self {
            per_choice,
            voters: palm_mongo::integer(proposal, "voters")
                .and_then(|v| u64::try_from(v).ok())
                .unwrap_or(0),
            total_power: proposal.get_f64("total_power").unwrap_or(0.0),
            version: palm_mongo::integer(proposal, "tally_version").unwrap_or(0),
        }
    }
}

/// When a stored time is.
pub fn time_of(document: &Document, key: &str) -> Option<DateTime<Utc>> {
    document
        .get_datetime(key)
        .ok()
        .map(crate::store::from_bson_time)
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
    fn a_ballot_round_trips_through_its_document() {
        let original = ballot(7, "v");
        assert_eq!(
            Ballot::from_document(&original.to_document()),
            Some(original)
        );
    }

    #[test]
    fn the_tally_reads_missing_choices_as_zero() {
        let tally = Tally::of(&doc! { "tally": { "2": 3.0 }, "voters": 2_i32 }, 3);
        assert_eq!(tally.per_choice, vec![0.0, 3.0, 0.0]);
        assert_eq!(tally.voters, 2);
    }
}
