//! `proposals`: proposal documents (their rules, status and, once closed,
//! final tally) with the `proposal.created` event their insert stages, the
//! proposal queries of the API, the rules cache of vote intake, and the
//! scheduler's steps (`proposal.opened`, `proposal.closed`). Also the
//! indexes of `votes` (see `store::votes`).

use std::sync::Arc;

use chrono::Utc;
use futures_util::TryStreamExt;
use palm_core::Envelope;
use palm_core::events::{ProposalClosed, ProposalCreated, ProposalOpened};
use palm_mongo::mongodb::bson::{Document, doc};
use palm_mongo::mongodb::options::IndexOptions;
use palm_mongo::mongodb::{Database, IndexModel};
use palm_mongo::outbox::{self, OutboxRecord};
use uuid::Uuid;

use super::database::{Result, Store, from_bson_time, to_bson_time};
use super::pages;
use crate::domain::audit::{community_subject, palm_subject};
use crate::domain::proposals::Proposal;
use crate::domain::tally::Tally;
use crate::settings::SERVICE;

/// Proposal documents.
pub const PROPOSALS: &str = "proposals";
/// Vote documents.
pub const VOTES: &str = "votes";
/// Proposals by status and end (the scheduler; the platform metrics count
/// proposals by status from it).
pub const PROPOSALS_BY_STATUS: &str = "by_status_end";
/// A proposal's votes by status (the scheduler counts undecided ones; the
/// platform metrics count votes by status from it).
pub const VOTES_BY_PROPOSAL_STATUS: &str = "by_proposal_status";
/// One vote per signed message: unique on `digest`.
pub const VOTES_BY_DIGEST: &str = "by_digest";

/// Declares the listing indexes: a community's proposals by status, and a
/// proposal's votes by status (the scheduler counts the undecided ones).
pub async fn ensure_indexes(database: &Database) -> palm_mongo::mongodb::error::Result<()> {
    let by_community = IndexModel::builder()
        .keys(doc! { "community_id": 1, "status": 1, "_id": -1 })
        .options(
            IndexOptions::builder()
                .name("by_community_status".to_owned())
                .build(),
        )
        .build();
    let by_window = IndexModel::builder()
        .keys(doc! { "status": 1, "end": 1 })
        .options(
            IndexOptions::builder()
                .name(PROPOSALS_BY_STATUS.to_owned())
                .build(),
        )
        .build();
    palm_mongo::ensure_indexes(database, PROPOSALS, vec![by_community, by_window]).await?;
    let by_proposal = IndexModel::builder()
        .keys(doc! { "proposal_id": 1, "status": 1 })
        .options(
            IndexOptions::builder()
                .name(VOTES_BY_PROPOSAL_STATUS.to_owned())
                .build(),
        )
        .build();
    let by_digest = IndexModel::builder()
        .keys(doc! { "digest": 1 })
        .options(
            IndexOptions::builder()
                .name(VOTES_BY_DIGEST.to_owned())
                .unique(true)
                // Votes stored before digests existed have none.
                .partial_filter_expression(doc! { "digest": { "$exists": true } })
                .build(),
        )
        .build();
    palm_mongo::ensure_indexes(database, VOTES, vec![by_proposal, by_digest]).await
}

fn chrono_time(document: &Document, key: &str) -> chrono::DateTime<Utc> {
    document
        .get_datetime(key)
        .map(from_bson_time)
        .unwrap_or_default()
}

/// A proposal document as a [`Proposal`]; missing fields read as empty (the
/// minimum level as 1).
pub(crate) fn proposal(document: &Document) -> Proposal {
    let text = |key: &str| document.get_str(key).unwrap_or_default().to_owned();
    Proposal {
        id: text("_id"),
        community_id: text("community_id"),
        title: text("title"),
        body: text("body"),
        choices: document
            .get_array("choices")
            .map(|a| {
                a.iter()
                    .filter_map(|c| c.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default(),
        voting_type: text("voting_type"),
        start: chrono_time(document, "start"),
        end: chrono_time(document, "end"),
        quorum: document.get_f64("quorum").unwrap_or_default(),
        min_level: palm_mongo::integer(document, "min_level")
            .and_then(|v| u32::try_from(v).ok())
            .unwrap_or(1),
        strategy: text("strategy"),
        status: document.get_str("status").ok().map(str::to_owned),
        created_by: text("created_by"),
        final_tally: final_tally(document),
    }
}

/// The tally stored when the proposal closed (`tally`: power per choice from
/// choice 1, `voters`, `total_power`), if it did.
fn final_tally(document: &Document) -> Option<Tally> {
    let stored = document.get_array("tally").ok()?;
    let choices = document.get_array("choices").map_or(0, Vec::len);
    let mut per_choice: Vec<f64> = stored.iter().map(|p| p.as_f64().unwrap_or(0.0)).collect();
    per_choice.resize(choices, 0.0);
    Some(Tally {
        per_choice,
        voters: palm_mongo::integer(document, "voters")
            .and_then(|v| u64::try_from(v).ok())
            .unwrap_or(0),
        total_power: super::ballots::number(document, "total_power"),
    })
}

/// What a new proposal is made of (its rules already checked).
#[derive(Debug, Clone)]
pub struct NewProposal<'a> {
    /// The community it belongs to.
    pub community_id: &'a str,
    /// Title.
    pub title: &'a str,
    /// Body.
    pub body: &'a str,
    /// Choice labels.
    pub choices: &'a [String],
    /// Voting type.
    pub voting_type: &'a str,
    /// Voting opens.
    pub start: chrono::DateTime<Utc>,
    /// Voting closes.
    pub end: chrono::DateTime<Utc>,
    /// Quorum.
    pub quorum: f64,
    /// Minimum voter level.
    pub min_level: u32,
    /// Strategy.
    pub strategy: &'a str,
    /// The discussion it came from.
    pub discussion_id: Option<&'a str>,
    /// Its creator.
    pub created_by: Uuid,
}

/// Inserts a `pending` proposal with an empty tally, created at `now`,
/// staging `proposal.created`. Opening it (even at once, for a start in the
/// past) is the scheduler's: `proposal.opened` has one writer.
#[tracing::instrument(skip_all, fields(community_id = new.community_id))]
pub async fn insert(
    store: &Store,
    new: &NewProposal<'_>,
    now: chrono::DateTime<Utc>,
) -> Result<Proposal> {
    let id = Uuid::now_v7();
    let event = Envelope::new(
        SERVICE,
        ProposalCreated {
            proposal_id: id,
            community_id: Uuid::parse_str(new.community_id).map_err(anyhow::Error::from)?,
            title: new.title.to_owned(),
            voting_type: new.voting_type.to_owned(),
            choices: new.choices.to_vec(),
            start: new.start,
            end: new.end,
        },
    );
    let mut document = doc! {
        "_id": id.to_string(),
        "community_id": new.community_id,
        "title": new.title,
        "body": new.body,
        "choices": new.choices,
        "voting_type": new.voting_type,
        "start": to_bson_time(new.start),
        "end": to_bson_time(new.end),
        "quorum": new.quorum,
        "min_level": i64::from(new.min_level),
        "strategy": new.strategy,
        "discussion_id": new.discussion_id,
        "created_by": new.created_by.to_string(),
        "created_at": to_bson_time(now),
        "status": "pending",
        "tally": {},
        "voters": 0_i64,
        "total_power": 0.0,
        "tally_version": 0_i64,
    };
    let record = OutboxRecord::from_envelope(&event).concerning([
        community_subject(new.community_id),
        palm_subject(new.created_by),
    ]);
    outbox::attach(&mut document, std::slice::from_ref(&record));
    store
        .database
        .collection::<Document>(PROPOSALS)
        .insert_one(&document)
        .await?;
    if let Some(id) = document.get("_id") {
        store.staged(PROPOSALS, id.clone(), &[record]);
    }
    Ok(proposal(&document))
}

/// Up to `limit + 1` proposals of the community `community_id` (with
/// `status` if given), newest first, older than the id `cursor`.
#[tracing::instrument(skip_all, fields(%community_id))]
pub async fn newest_first(
    store: &Store,
    community_id: &str,
    status: Option<&str>,
    limit: i64,
    cursor: Option<&str>,
) -> Result<Vec<Proposal>> {
    let mut filter = doc! { "community_id": community_id };
    if let Some(status) = status {
        filter.insert("status", status);
    }
    let documents =
        pages::newest_first(store.database.collection(PROPOSALS), filter, limit, cursor).await?;
    Ok(documents.iter().map(proposal).collect())
}

/// The proposal `id`, if any.
#[tracing::instrument(skip_all, fields(%id))]
pub async fn load(store: &Store, id: &str) -> Result<Option<Proposal>> {
    let found = store
        .database
        .collection::<Document>(PROPOSALS)
        .find_one(doc! { "_id": id })
        .await?;
    Ok(found.as_ref().map(proposal))
}

/// The proposal `id`'s rules for vote intake, from the store's cache or read
/// once. The rules (choices, voting type, window, level, strategy,
/// community) never change after creation — no route edits a proposal — so
/// an entry is never stale and needs no invalidation; the cache is bounded
/// by entry count and idle time only to bound memory. Its `status` and
/// `final_tally` may be stale: intake does not read them (the validator
/// judges the window). A missing proposal is not cached.
pub async fn rules(store: &Store, id: &str) -> Result<Option<Arc<Proposal>>> {
    if let Some(rules) = store.proposal_rules.get(id) {
        return Ok(Some(rules));
    }
    let Some(found) = load(store, id).await? else {
        return Ok(None);
    };
    let rules = Arc::new(found);
    store
        .proposal_rules
        .insert(id.to_owned(), Arc::clone(&rules));
    Ok(Some(rules))
}

/// Up to 500 proposals not yet closed whose end is at or before `now`.
#[tracing::instrument(skip_all)]
pub async fn ending(store: &Store, now: chrono::DateTime<Utc>) -> Result<Vec<Proposal>> {
    let found: Vec<Document> = store
        .database
        .collection::<Document>(PROPOSALS)
        .find(doc! { "status": { "$in": ["pending", "active"] }, "end": { "$lte": to_bson_time(now) } })
        .limit(500)
        .await?
        .try_collect()
        .await?;
    Ok(found.iter().map(proposal).collect())
}

/// Closes `proposal` with its final `tally`, staging `proposal.closed`, once
/// (only a proposal not closed yet matches). Returns whether this call
/// closed it.
#[tracing::instrument(skip_all, fields(proposal_id = %proposal.id))]
pub async fn close(
    store: &Store,
    proposal: &Proposal,
    tally: &Tally,
    undecided: u64,
    now: chrono::DateTime<Utc>,
) -> Result<bool> {
    let quorum_met = tally.meets(proposal.quorum);
    let closed = Envelope::new(
        SERVICE,
        ProposalClosed {
            proposal_id: Uuid::parse_str(&proposal.id).map_err(anyhow::Error::from)?,
            community_id: Uuid::parse_str(&proposal.community_id).map_err(anyhow::Error::from)?,
            tally: tally.per_choice.clone(),
            voters: tally.voters,
            quorum_met,
        },
    );
    let mut update = doc! { "$set": {
        "status": "closed",
        "closed_at": to_bson_time(now),
        "quorum_met": quorum_met,
        "undecided_at_close": i64::try_from(undecided).unwrap_or(i64::MAX),
        "tally": tally.per_choice.clone(),
        "voters": i64::try_from(tally.voters).unwrap_or(i64::MAX),
        "total_power": tally.total_power,
    } };
    let record = OutboxRecord::from_envelope(&closed)
        .concerning([community_subject(&proposal.community_id)]);
    outbox::stage(&mut update, std::slice::from_ref(&record));
    let result = store
        .database
        .collection::<Document>(PROPOSALS)
        .update_one(
            doc! { "_id": &proposal.id, "status": { "$in": ["pending", "active"] } },
            update,
        )
        .await?;
    if result.modified_count == 1 {
        store.staged(PROPOSALS, proposal.id.as_str(), &[record]);
    }
    Ok(result.modified_count == 1)
}

/// The ids and community ids of up to 500 `pending` proposals whose start
/// is at or before `now`.
#[tracing::instrument(skip_all)]
pub async fn starting(store: &Store, now: chrono::DateTime<Utc>) -> Result<Vec<(String, String)>> {
    let starting: Vec<Document> = store
        .database
        .collection::<Document>(PROPOSALS)
        .find(doc! { "status": "pending", "start": { "$lte": to_bson_time(now) } })
        .projection(doc! { "_id": 1, "community_id": 1 })
        .limit(500)
        .await?
        .try_collect()
        .await?;
    // A field missing reads as empty, which [`open`] refuses as no id.
    Ok(starting
        .iter()
        .map(|proposal| {
            let text = |key: &str| proposal.get_str(key).unwrap_or_default().to_owned();
            (text("_id"), text("community_id"))
        })
        .collect())
}

/// Opens the proposal `id` of the community `community_id` at `now` if it
/// is still `pending`, staging `proposal.opened`; whether it did.
#[tracing::instrument(skip_all, fields(%id))]
pub async fn open(
    store: &Store,
    id: &str,
    community_id: &str,
    now: chrono::DateTime<Utc>,
) -> Result<bool> {
    let opened = Envelope::new(
        SERVICE,
        ProposalOpened {
            proposal_id: Uuid::parse_str(id).map_err(anyhow::Error::from)?,
            community_id: Uuid::parse_str(community_id).map_err(anyhow::Error::from)?,
        },
    );
    let mut update = doc! { "$set": { "status": "active", "opened_at": to_bson_time(now) } };
    let record = OutboxRecord::from_envelope(&opened).concerning([community_subject(community_id)]);
    outbox::stage(&mut update, std::slice::from_ref(&record));
    let result = store
        .database
        .collection::<Document>(PROPOSALS)
        .update_one(doc! { "_id": id, "status": "pending" }, update)
        .await?;
    if result.modified_count == 1 {
        store.staged(PROPOSALS, id, &[record]);
    }
    Ok(result.modified_count == 1)
}
