//! Validated votes applied in groups: every `vote.validated` waiting when
//! the previous group is done goes into the next one, and a group costs
//! three commands whatever its size:
//!
//! 1. one `update` of `votes` with a statement per vote: `pending` →
//!    `valid` with its power and allocation, once (the filter is the
//!    status, as for a single vote);
//! 2. one `find` of those votes by `_id`: each one's status and signed
//!    timestamp as they are now (valid, or rejected earlier by a
//!    conflicting result: the first decision holds);
//! 3. one unordered `update` of `ballots` with an upsert per valid vote
//!    ([`super::ballots::placement`]: the supersession rule as the filter,
//!    so a duplicate-key error on a statement means "a newer or the same
//!    ballot is there": nothing to do).
//!
//! The ballot is built from the vote as stored (its first decision's power
//! and allocation), read from the primary. Upserts that collide are run once
//! more, since two replicas may race to create one ballot (`place_all`).
//!
//! Every step is idempotent, so a redelivered result, or a group cut off
//! between two steps, finishes the work on its next delivery. Grouping is
//! what MongoDB's bulk writes are for: the per-command cost (a round trip,
//! parsing, the write concern's wait) is paid once per group instead of
//! twice per vote.

use std::collections::{HashMap, HashSet};

use chrono::Utc;
use futures_util::TryStreamExt;
use palm_mongo::mongodb::bson::{Bson, Document, doc};
use palm_mongo::mongodb::options::{ReadPreference, SelectionCriteria};

use super::ballots::{self, BALLOTS};
use super::database::{Result, StatementError, Store, per_request, to_bson_time, update_all};
use super::groups::Groups;
use super::proposals::VOTES;
use crate::domain::tally::Ballot;

/// A `vote.validated` result to apply.
#[derive(Debug, Clone, PartialEq)]
pub struct ValidatedVote {
    /// Vote id.
    pub vote_id: String,
    /// Proposal id.
    pub proposal_id: String,
    /// The voter's PalmID.
    pub palm_id: String,
    /// Voting power under the proposal's strategy.
    pub voting_power: f64,
    /// Power per choice, indexed like the proposal's choices.
    pub allocation: Vec<f64>,
}

/// What applying one result did.
#[derive(Debug, Clone, PartialEq)]
pub enum Applied {
    /// The vote is valid; `true` if its ballot was put in place, `false`
    /// if a later (or the same) ballot of its PalmID was there already, or
    /// the proposal's ballots are frozen.
    Valid {
        /// Whether the ballot was put in place.
        placed: bool,
    },
    /// The vote was decided otherwise before (its status now).
    DecidedOtherwise(String),
    /// There is no such vote.
    Unknown,
}

/// The handle results are applied through; clones share one grouping task,
/// which ends when the last handle is dropped.
#[derive(Debug, Clone)]
pub struct ValidatedResults {
    groups: Groups<ValidatedVote, Result<Applied>>,
}

impl ValidatedResults {
    /// Starts the grouping task on `store` (needs a Tokio runtime).
    pub fn start(store: Store) -> Self {
        let groups = Groups::start(move |votes: Vec<ValidatedVote>| {
            let store = store.clone();
            async move { per_request(votes.len(), apply_group(&store, &votes).await) }
        });
        Self { groups }
    }

    /// Applies `vote` with whatever other results are waiting.
    pub async fn apply(&self, vote: ValidatedVote) -> Result<Applied> {
        self.groups.submit(vote).await?
    }
}

/// The three steps for `votes`; one outcome per vote, in order.
#[tracing::instrument(skip_all, fields(results = votes.len()))]
async fn apply_group(store: &Store, votes: &[ValidatedVote]) -> Result<Vec<Result<Applied>>> {
    let decided_at = to_bson_time(Utc::now());
    let transitions = votes
        .iter()
        .map(|vote| {
            let allocation: Vec<Bson> = vote.allocation.iter().map(|a| Bson::Double(*a)).collect();
            doc! {
                "q": { "_id": &vote.vote_id, "status": "pending" },
                "u": { "$set": {
                    "status": "valid",
                    "voting_power": vote.voting_power,
                    "allocation": allocation,
                    "decided_at": decided_at,
                } },
            }
        })
        .collect();
    let transition_failed = update_all(&store.database, VOTES, transitions).await?;
    // A statement's error fails only its own result (retried, and in the
    // end dead-lettered alone), never the rest of the group.

    // Read from the primary whatever the client's read preference: the
    // transitions were just written there, and a lagging secondary could
    // call a vote unknown or still pending.
    let ids: Vec<&str> = votes.iter().map(|v| v.vote_id.as_str()).collect();
    let now: HashMap<String, Stored> = store
        .database
        .collection::<Document>(VOTES)
        .find(doc! { "_id": { "$in": &ids } })
        .projection(doc! {
            "status": 1, "timestamp": 1, "proposal_id": 1, "palm_id": 1,
            "voting_power": 1, "allocation": 1,
        })
        .selection_criteria(SelectionCriteria::ReadPreference(ReadPreference::Primary))
        .await?
        .try_collect::<Vec<Document>>()
        .await?
        .iter()
        .map(Stored::from_document)
        .collect();

    // The ballots of the valid ones, from the votes as stored (the first
    // decision's numbers, whatever a later message says), remembering which
    // statement is whose.
    let mut placements = Vec::new();
    let mut statement_of = vec![None; votes.len()];
    let mut unreadable = HashSet::new();
    for (index, vote) in votes.iter().enumerate() {
        let Some(stored) = now.get(&vote.vote_id) else {
            continue;
        };
        if stored.status != "valid" || transition_failed.contains_key(&index) {
            continue;
        }
        let Some((proposal_id, palm_id, ballot)) = stored.ballot(&vote.vote_id) else {
            unreadable.insert(index);
            continue;
        };
        let (filter, update) = ballots::placement(proposal_id, palm_id, &ballot);
        statement_of[index] = Some(placements.len());
        placements.push(doc! { "q": filter, "u": update, "upsert": true });
    }
    let placement_failed = place_all(store, placements).await?;

    let outcome = |index: usize, vote: &ValidatedVote, statement: Option<usize>| {
        if let Some((code, message)) = transition_failed.get(&index) {
            return Err(anyhow::anyhow!("the vote's transition failed ({code}): {message}").into());
        }
        let Some(stored) = now.get(&vote.vote_id) else {
            return Ok(Applied::Unknown);
        };
        let status = &stored.status;
        if unreadable.contains(&index) {
            return Err(
                anyhow::anyhow!("the valid vote lacks its power, allocation or ids").into(),
            );
        }
        let Some(statement) = statement else {
            if status == "pending" {
                return Err(
                    anyhow::anyhow!("the vote is still pending after its transition").into(),
                );
            }
            return Ok(Applied::DecidedOtherwise(status.clone()));
        };
        match placement_failed.get(&statement) {
            None => Ok(Applied::Valid { placed: true }),
            Some((code, _)) if *code == palm_mongo::DUPLICATE_KEY_CODE => {
                Ok(Applied::Valid { placed: false })
            }
            Some((code, message)) => {
                Err(anyhow::anyhow!("placing the ballot failed ({code}): {message}").into())
            }
        }
    };
    Ok(votes
        .iter()
        .zip(statement_of)
        .enumerate()
        .map(|(index, (vote, statement))| outcome(index, vote, statement))
        .collect())
}

/// A vote as stored, after the transitions.
struct Stored {
    status: String,
    timestamp: i64,
    proposal_id: Option<String>,
    palm_id: Option<String>,
    voting_power: Option<f64>,
    allocation: Option<Vec<f64>>,
}

impl Stored {
    /// (`_id`, the vote) from a found document.
    fn from_document(found: &Document) -> (String, Self) {
        let text = |key: &str| found.get_str(key).ok().map(str::to_owned);
        let allocation = found
            .get_array("allocation")
            .ok()
            .map(|values| values.iter().filter_map(ballots::as_number).collect());
        let stored = Self {
            status: text("status").unwrap_or_default(),
            timestamp: palm_mongo::integer(found, "timestamp").unwrap_or_default(),
            proposal_id: text("proposal_id"),
            palm_id: text("palm_id"),
            voting_power: found.get("voting_power").and_then(ballots::as_number),
            allocation,
        };
        (text("_id").unwrap_or_default(), stored)
    }

    /// The ballot this valid vote places: (proposal id, PalmID, ballot);
    /// `None` if a field is missing.
    fn ballot(&self, vote_id: &str) -> Option<(&str, &str, Ballot)> {
        Some((
            self.proposal_id.as_deref()?,
            self.palm_id.as_deref()?,
            Ballot {
                vote_id: vote_id.to_owned(),
                timestamp: self.timestamp,
                allocation: self.allocation.clone()?,
                power: self.voting_power?,
            },
        ))
    }
}

/// Runs the ballot upserts `placements` (unordered); returns each failed
/// statement's (code, message). A duplicate-key error can mean a race, not
/// a newer ballot: two upserts of one `_id` from two replicas may both find
/// nothing and both insert, and MongoDB retries such an upsert itself only
/// when its filter is a plain equality on the key, which the supersession
/// filter is not. So statements that collided run once more: the ballot
/// exists by then (ballots are never deleted), and a second collision is
/// the filter's answer ("a newer, the same, or a frozen ballot").
async fn place_all(
    store: &Store,
    placements: Vec<Document>,
) -> Result<HashMap<usize, StatementError>> {
    if placements.is_empty() {
        return Ok(HashMap::new());
    }
    let mut failed = update_all(&store.database, BALLOTS, placements.clone()).await?;
    let collided: Vec<usize> = failed
        .iter()
        .filter(|(_, (code, _))| *code == palm_mongo::DUPLICATE_KEY_CODE)
        .map(|(index, _)| *index)
        .collect();
    if collided.is_empty() {
        return Ok(failed);
    }
    let again: Vec<Document> = collided
        .iter()
        .filter_map(|index| placements.get(*index).cloned())
        .collect();
    let second = update_all(&store.database, BALLOTS, again).await?;
    for (position, index) in collided.iter().enumerate() {
        match second.get(&position) {
            Some(error) => failed.insert(*index, error.clone()),
            None => failed.remove(index),
        };
    }
    Ok(failed)
}
