//! `votes`: one document per signed vote taken, keyed for deduplication by
//! the digest of what was signed, with the `vote.submitted` event its insert
//! stages; its one-time transition to `rejected` (to `valid`: in groups, by
//! [`super::results`]).
//! (The collection's indexes are declared with the proposals'.)

use chrono::{DateTime, Utc};
use palm_core::Envelope;
use palm_core::events::VoteSubmitted;
use palm_mongo::mongodb::bson::{self, Bson, Document, doc};
use palm_mongo::outbox::{self, OutboxRecord};
use serde_json::Value;
use uuid::Uuid;

use super::database::{Result, Store, to_bson_time};
use super::proposals::VOTES;
use crate::domain::audit::palm_subject;

/// A vote as its voter sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct Vote {
    /// Vote id.
    pub id: String,
    /// Proposal id.
    pub proposal_id: String,
    /// The voter's PalmID.
    pub palm_id: String,
    /// The choice as signed.
    pub choice: Value,
    /// `pending`, `valid`, `rejected`.
    pub status: String,
    /// Why it was rejected.
    pub reason: Option<String>,
}

fn vote(document: &Document) -> Vote {
    let text = |key: &str| document.get_str(key).unwrap_or_default().to_owned();
    Vote {
        id: text("_id"),
        proposal_id: text("proposal_id"),
        palm_id: text("palm_id"),
        choice: document
            .get("choice")
            .cloned()
            .map(Bson::into_relaxed_extjson)
            .unwrap_or(Value::Null),
        status: text("status"),
        reason: document.get_str("reason").ok().map(str::to_owned),
    }
}

/// What storing a vote did.
#[derive(Debug, Clone, PartialEq)]
pub enum Intake {
    /// Stored `pending`, its event staged.
    Taken,
    /// The same signed vote was stored before: that first vote, as it is now.
    Duplicate(Vote),
    /// The choice holds a number BSON cannot store.
    ChoiceOutOfRange,
}

/// Stores the vote `event` describes `pending`, keyed for deduplication by
/// `digest` (of what was signed), with the event staged in the same insert
/// (grouped with the votes taken at the same moment), then hands the event
/// to the prompt path.
#[tracing::instrument(skip_all, fields(vote_id = %event.payload.vote_id))]
pub async fn insert(
    store: &Store,
    digest: &str,
    event: &Envelope<VoteSubmitted>,
) -> Result<Intake> {
    let submitted = &event.payload;
    let Ok(choice) = bson::to_bson(&submitted.choice) else {
        return Ok(Intake::ChoiceOutOfRange);
    };
    let id = submitted.vote_id.to_string();
    let mut document = doc! {
        "_id": &id,
        "digest": digest,
        "proposal_id": submitted.proposal_id.to_string(),
        "palm_id": submitted.palm_id.to_string(),
        "choice": choice,
        "timestamp": submitted.timestamp,
        "address": &submitted.address,
        "status": "pending",
        "submitted_at": to_bson_time(submitted.submitted_at),
    };
    let record = OutboxRecord::from_envelope(event).concerning([palm_subject(submitted.palm_id)]);
    outbox::attach(&mut document, std::slice::from_ref(&record));
    // With the other votes being taken at the same moment: one `insert`
    // per group (ADR 0032).
    match store.grouped_insert(VOTES, document).await? {
        None => {
            store.staged(VOTES, id, &[record]);
            Ok(Intake::Taken)
        }
        Some((code, _)) if code == palm_mongo::DUPLICATE_KEY_CODE => {
            let first = store
                .database
                .collection::<Document>(VOTES)
                .find_one(doc! { "digest": digest })
                .await?
                .ok_or_else(|| anyhow::anyhow!("a duplicate vote digest that cannot be found"))?;
            Ok(Intake::Duplicate(vote(&first)))
        }
        Some((code, message)) => {
            Err(anyhow::anyhow!("inserting the vote failed ({code}): {message}").into())
        }
    }
}

/// The vote `id`, if it is `palm_id`'s.
#[tracing::instrument(skip_all, fields(%id))]
pub async fn find_owned(store: &Store, id: &str, palm_id: Uuid) -> Result<Option<Vote>> {
    let found = store
        .database
        .collection::<Document>(VOTES)
        .find_one(doc! { "_id": id, "palm_id": palm_id.to_string() })
        .await?;
    Ok(found.as_ref().map(vote))
}

/// Rejects the `pending` vote `id` with `reason`. `Some(true)` if this call
/// decided it, `Some(false)` if it was decided before, `None` if there is no
/// such vote.
#[tracing::instrument(skip_all, fields(%id))]
pub async fn reject(store: &Store, id: &str, reason: &str) -> Result<Option<bool>> {
    let votes = store.database.collection::<Document>(VOTES);
    let changed = votes
        .update_one(
            doc! { "_id": id, "status": "pending" },
            doc! { "$set": {
                "status": "rejected",
                "reason": reason,
                "decided_at": to_bson_time(Utc::now()),
            } },
        )
        .await?;
    if changed.matched_count == 1 {
        return Ok(Some(true));
    }
    let exists = votes
        .find_one(doc! { "_id": id })
        .projection(doc! { "_id": 1 })
        .await?
        .is_some();
    Ok(exists.then_some(false))
}

/// How many of `proposal_id`'s votes submitted before `end` are still
/// undecided.
#[tracing::instrument(skip_all, fields(%proposal_id))]
pub async fn undecided_before(store: &Store, proposal_id: &str, end: DateTime<Utc>) -> Result<u64> {
    Ok(store
        .database
        .collection::<Document>(VOTES)
        .count_documents(doc! {
            "proposal_id": proposal_id,
            "status": "pending",
            "submitted_at": { "$lt": to_bson_time(end) },
        })
        .await?)
}
