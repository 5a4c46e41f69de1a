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
//! Every step is idempotent, so a redelivered result, or a group cut off
//! between two steps, finishes the work on its next delivery. Grouping is
//! what MongoDB's bulk writes are for: the per-command cost (a round trip,
//! parsing, the write concern's wait) is paid once per group instead of
//! twice per vote.

use std::collections::HashMap;

use chrono::Utc;
use futures_util::TryStreamExt;
use palm_mongo::mongodb::bson::{Bson, Document, doc};
use tokio::sync::{mpsc, oneshot};

use super::ballots::{self, BALLOTS};
use super::database::{Error, Result, Store, to_bson_time};
use super::proposals::VOTES;
use crate::domain::tally::Ballot;

/// Most results one group applies.
const MAX_GROUP: usize = 128;
/// Results waiting for a group, beyond which `apply` waits for room.
const QUEUE: usize = 1024;

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

type Request = (ValidatedVote, oneshot::Sender<Result<Applied>>);

/// The handle results are applied through; clones share one grouping task,
/// which ends when the last handle is dropped.
#[derive(Debug, Clone)]
pub struct ValidatedResults {
    sender: mpsc::Sender<Request>,
}

impl ValidatedResults {
    /// Starts the grouping task on `store` (needs a Tokio runtime).
    pub fn start(store: Store) -> Self {
        let (sender, mut receiver) = mpsc::channel::<Request>(QUEUE);
        tokio::spawn(async move {
            while let Some(first) = receiver.recv().await {
                let mut group = vec![first];
                while group.len() < MAX_GROUP {
                    match receiver.try_recv() {
                        Ok(next) => group.push(next),
                        Err(_) => break,
                    }
                }
                let (votes, replies): (Vec<ValidatedVote>, Vec<_>) = group.into_iter().unzip();
                match apply_group(&store, &votes).await {
                    Ok(outcomes) => {
                        for (reply, outcome) in replies.into_iter().zip(outcomes) {
                            reply.send(outcome).ok();
                        }
                    }
                    Err(error) => {
                        for reply in replies {
                            reply.send(Err(shared(&error))).ok();
                        }
                    }
                }
            }
        });
        Self { sender }
    }

    /// Applies `vote` with whatever other results are waiting.
    pub async fn apply(&self, vote: ValidatedVote) -> Result<Applied> {
        let (reply, outcome) = oneshot::channel();
        self.sender
            .send((vote, reply))
            .await
            .map_err(|_| anyhow::anyhow!("the result grouping task has stopped"))?;
        outcome
            .await
            .map_err(|_| anyhow::anyhow!("the result grouping task dropped a result"))?
    }
}

/// A group's failure, for each of its results.
fn shared(error: &Error) -> Error {
    match error {
        Error::Database(error) => Error::Database(error.clone()),
        Error::Inconsistent(error) => Error::Inconsistent(anyhow::anyhow!("{error:#}")),
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
    let reply = run_updates(store, VOTES, transitions).await?;
    // A statement's error fails only its own result (retried, and in the
    // end dead-lettered alone), never the rest of the group.
    let transition_failed = statement_errors(&reply);

    let ids: Vec<&str> = votes.iter().map(|v| v.vote_id.as_str()).collect();
    let now: HashMap<String, (String, i64)> = store
        .database
        .collection::<Document>(VOTES)
        .find(doc! { "_id": { "$in": &ids } })
        .projection(doc! { "status": 1, "timestamp": 1 })
        .await?
        .try_collect::<Vec<Document>>()
        .await?
        .into_iter()
        .map(|found| {
            let id = found.get_str("_id").unwrap_or_default().to_owned();
            let status = found.get_str("status").unwrap_or_default().to_owned();
            let timestamp = palm_mongo::integer(&found, "timestamp").unwrap_or_default();
            (id, (status, timestamp))
        })
        .collect();

    // The ballots of the valid ones, remembering which statement is whose.
    let mut placements = Vec::new();
    let mut statement_of = vec![None; votes.len()];
    for (index, vote) in votes.iter().enumerate() {
        let Some((status, timestamp)) = now.get(&vote.vote_id) else {
            continue;
        };
        if status != "valid" || transition_failed.contains_key(&index) {
            continue;
        }
        let ballot = Ballot {
            vote_id: vote.vote_id.clone(),
            timestamp: *timestamp,
            allocation: vote.allocation.clone(),
            power: vote.voting_power,
        };
        let (filter, update) = ballots::placement(&vote.proposal_id, &vote.palm_id, &ballot);
        statement_of[index] = Some(placements.len());
        placements.push(doc! { "q": filter, "u": update, "upsert": true });
    }
    let placement_failed = if placements.is_empty() {
        HashMap::new()
    } else {
        statement_errors(&run_updates(store, BALLOTS, placements).await?)
    };

    let outcome = |index: usize, vote: &ValidatedVote, statement: Option<usize>| {
        if let Some((code, message)) = transition_failed.get(&index) {
            return Err(anyhow::anyhow!("the vote's transition failed ({code}): {message}").into());
        }
        let Some((status, _)) = now.get(&vote.vote_id) else {
            return Ok(Applied::Unknown);
        };
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

/// The per-statement errors of an `update` reply: statement index → (code,
/// message).
fn statement_errors(reply: &Document) -> HashMap<usize, (i32, String)> {
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

/// One unordered `update` command of `statements` on `collection`, with
/// the majority write concern; its reply (per-statement errors included).
async fn run_updates(
    store: &Store,
    collection: &str,
    statements: Vec<Document>,
) -> Result<Document> {
    let reply = store
        .database
        .run_command(doc! {
            "update": collection,
            "updates": statements,
            "ordered": false,
            "writeConcern": { "w": "majority" },
        })
        .await?;
    if let Ok(error) = reply.get_document("writeConcernError") {
        return Err(anyhow::anyhow!("write concern not met: {error}").into());
    }
    Ok(reply)
}
