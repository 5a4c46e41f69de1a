//! Proposals (created by a community admin; listed by community and status)
//! and vote intake: `POST /v1/proposals/{id}/votes` checks the vote's shape,
//! stores it `pending`, and stages `vote.submitted` carrying every fact the
//! stateless validator needs (the voter's wallets, level and membership, and
//! the proposal's rules and window). Signature and eligibility are the
//! validator's to decide. A vote is keyed by the digest of what was signed
//! (as Snapshot keys a vote by its signed message), so a client that sends
//! the same signed vote again — a retry after a dropped connection — gets
//! the first vote back, never a second one.

use super::audit::{community_subject, palm_subject};
use std::sync::Arc;

use axum::Json;
use axum::extract::State;

use super::extract::{ApiPath, ApiQuery};
use axum::http::{HeaderMap, StatusCode};
use chrono::{DateTime, Utc};
use palm_core::Envelope;
use palm_core::eth::{self, AddressText};
use palm_core::events::{ProposalCreated, ProposalRules, VoteSubmitted, VoterFacts};
use palm_core::voting;
use palm_mongo::mongodb::bson::{self, Bson, Document, doc};
use palm_mongo::mongodb::options::IndexOptions;
use palm_mongo::mongodb::{Database, IndexModel};
use palm_mongo::outbox::{self, OutboxRecord};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::openapi::schema::{KnownFormat, ObjectBuilder, SchemaFormat, Type};
use uuid::Uuid;

use super::communities;
use super::extract::ApiJson;
use super::limits;
use super::openapi::{Always, BadBody, BadQuery, Conflict, Forbidden, NeedsSession, NotFound};
use super::pages::{self, Paged};
use super::problem::Problem;
use super::session::Session;
use super::{AppState, from_bson_time, location, to_bson_time};
use crate::SERVICE;

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

/// The digest of what a voter signed: SHA-256 over the signed fields of the
/// EIP-712 `Vote` (proposal, choice as canonical text, timestamp, voter
/// address in lower case, app), as hex. Two submissions of one signed vote
/// have the same digest whatever the signature's encoding or the choice's
/// key order; any change to a signed field changes it.
fn signed_digest(
    proposal_id: &str,
    choice: &Value,
    timestamp: i64,
    address: &str,
    app: &str,
) -> String {
    use sha2::Digest as _;
    let fields = serde_json::json!([
        proposal_id,
        palm_core::vote::canonical_choice(choice),
        timestamp,
        address,
        app,
    ]);
    hex::encode(sha2::Sha256::digest(fields.to_string().as_bytes()))
}

/// `POST /v1/communities/{slug}/proposals` body.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateProposal {
    /// 1–200 characters, not all blank.
    #[schema(schema_with = pages::title_schema)]
    pub title: String,
    /// Up to 20,000 characters.
    #[serde(default)]
    #[schema(schema_with = pages::body_schema)]
    pub body: String,
    /// 2 to 20 labels.
    #[schema(schema_with = choices_schema)]
    pub choices: Vec<String>,
    /// How ballots are read: `single-choice`, `approval`, `weighted`.
    #[schema(schema_with = voting_type_schema)]
    pub voting_type: String,
    /// Voting opens.
    pub start: DateTime<Utc>,
    /// Voting closes; after `start` and in the future (`invalid_window`).
    pub end: DateTime<Utc>,
    /// Voting power needed for the result to count (0: none).
    #[serde(default)]
    #[schema(schema_with = limits::quorum_schema)]
    pub quorum: f64,
    /// Minimum voter level; the community default if omitted.
    #[serde(default, deserialize_with = "limits::optional_integer")]
    #[schema(schema_with = min_level_schema)]
    pub min_level: Option<u32>,
    /// `one-person-one-vote` (default) or `level-weighted`.
    #[serde(default = "default_strategy")]
    #[schema(schema_with = strategy_schema)]
    pub strategy: String,
    /// The discussion of this community it came from
    /// (`discussion_not_in_community` otherwise).
    #[schema(schema_with = discussion_id_schema)]
    pub discussion_id: Option<String>,
}

fn default_strategy() -> String {
    "one-person-one-vote".to_owned()
}

fn choices_schema() -> utoipa::openapi::schema::Array {
    utoipa::openapi::schema::ArrayBuilder::new()
        .items(limits::CHOICE_LABEL.schema())
        .min_items(Some(2))
        .max_items(Some(limits::MAX_CHOICES))
        .description(Some(
            "2 to 20 labels; choice numbers count from 1 in this order",
        ))
        .build()
}

fn nullable(
    mut schema: utoipa::openapi::schema::Object,
    of: Type,
) -> utoipa::openapi::schema::Object {
    schema.schema_type = utoipa::openapi::schema::SchemaType::from_iter([of, Type::Null]);
    schema
}

fn min_level_schema() -> utoipa::openapi::schema::Object {
    nullable(limits::LEVEL.schema(), Type::Integer)
}

fn discussion_id_schema() -> utoipa::openapi::schema::Object {
    nullable(
        ObjectBuilder::new()
            .schema_type(Type::String)
            .format(Some(SchemaFormat::KnownFormat(KnownFormat::Uuid)))
            .build(),
        Type::String,
    )
}

/// The voting types the validator counts, from its own registry.
fn voting_type_schema() -> utoipa::openapi::schema::Object {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .enum_values(Some(voting::VOTING_TYPES.iter().map(|t| t.name())))
        .build()
}

/// The strategies the validator applies, from its own registry.
fn strategy_schema() -> utoipa::openapi::schema::Object {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .enum_values(Some(voting::STRATEGIES.iter().map(|s| s.name())))
        .default(Some(serde_json::json!("one-person-one-vote")))
        .build()
}

/// A proposal.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ProposalView {
    /// Id.
    pub id: String,
    /// Community id.
    pub community_id: String,
    /// Title.
    pub title: String,
    /// Body.
    pub body: String,
    /// Choice labels.
    pub choices: Vec<String>,
    /// Voting type.
    pub voting_type: String,
    /// Voting opens.
    pub start: DateTime<Utc>,
    /// Voting closes.
    pub end: DateTime<Utc>,
    /// Quorum.
    pub quorum: f64,
    /// Minimum voter level.
    pub min_level: u32,
    /// Strategy.
    pub strategy: String,
    /// `pending` until its start, `active` until its end, then `closed`
    /// (set by the scheduler, so it may trail the clock by a moment).
    pub status: String,
    /// Creator.
    pub created_by: String,
}

fn status_at(start: DateTime<Utc>, end: DateTime<Utc>, now: DateTime<Utc>) -> &'static str {
    if now < start {
        "pending"
    } else if now < end {
        "active"
    } else {
        "closed"
    }
}

fn chrono_time(document: &Document, key: &str) -> DateTime<Utc> {
    document
        .get_datetime(key)
        .map(from_bson_time)
        .unwrap_or_default()
}

fn view(document: &Document, now: DateTime<Utc>) -> ProposalView {
    let text = |key: &str| document.get_str(key).unwrap_or_default().to_owned();
    let (start, end) = (chrono_time(document, "start"), chrono_time(document, "end"));
    ProposalView {
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
        start,
        end,
        quorum: document.get_f64("quorum").unwrap_or_default(),
        min_level: palm_mongo::integer(document, "min_level")
            .and_then(|v| u32::try_from(v).ok())
            .unwrap_or(1),
        strategy: text("strategy"),
        status: document
            .get_str("status")
            .map_or_else(|_| status_at(start, end, now).to_owned(), str::to_owned),
        created_by: text("created_by"),
    }
}

/// Creates a proposal; only the community's admins may.
#[utoipa::path(
    post, path = "/v1/communities/{slug}/proposals", operation_id = "createProposal", tag = "proposals", security(("session" = [])),
    params(("slug" = String, Path, description = "Community slug")), request_body = CreateProposal,
    responses(
        (status = 201, description = "Created", body = ProposalView,
            headers(("Location" = String, description = "The proposal's URL"))),
        NeedsSession, BadBody, Forbidden, NotFound,
        (status = 422, description = "`invalid_body`, `validation_failed`: a value breaks the schema; `invalid_window`: `end` is not after `start` or not in the future; `discussion_not_in_community`: `discussion_id` names no discussion of this community", body = Problem, content_type = "application/problem+json"),
        Always
    )
)]
#[tracing::instrument(skip_all, fields(palm_id = %session.0, %slug))]
pub async fn create(
    State(state): State<AppState>,
    session: Session,
    ApiPath(slug): ApiPath<String>,
    ApiJson(request): ApiJson<CreateProposal>,
) -> Result<(StatusCode, HeaderMap, Json<ProposalView>), Problem> {
    let community = communities::find(&state, &slug).await?;
    communities::require_admin(&community, session.0)?;
    pages::check_title_and_body(&request.title, &request.body)?;
    if !(2..=limits::MAX_CHOICES).contains(&request.choices.len()) {
        return Err(Problem::validation("choices: 2 to 20 labels"));
    }
    for label in &request.choices {
        limits::CHOICE_LABEL.check("choices", label)?;
    }
    // The validator decides with the same registries, so what is accepted
    // here is what it can count.
    if voting::voting_type(&request.voting_type).is_none() {
        let known: Vec<&str> = voting::VOTING_TYPES.iter().map(|t| t.name()).collect();
        return Err(Problem::validation(format!(
            "voting_type must be one of {known:?}"
        )));
    }
    if voting::strategy(&request.strategy).is_none() {
        let known: Vec<&str> = voting::STRATEGIES.iter().map(|s| s.name()).collect();
        return Err(Problem::validation(format!(
            "strategy must be one of {known:?}"
        )));
    }
    limits::check_quorum(request.quorum)?;
    if let Some(level) = request.min_level {
        limits::LEVEL.check("min_level", i64::from(level))?;
    }
    let now = Utc::now();
    if request.end <= request.start || request.end <= now {
        return Err(Problem::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_window",
            "The voting window is invalid",
        )
        .with_detail("end must be after start and in the future"));
    }
    let default_level = community
        .get_document("settings")
        .ok()
        .and_then(|s| palm_mongo::integer(s, "min_vote_level"))
        .and_then(|v| u32::try_from(v).ok())
        .unwrap_or(1);
    let min_level = request.min_level.unwrap_or(default_level);
    if !(1..=10).contains(&min_level) {
        return Err(Problem::validation("min_level must be between 1 and 10"));
    }

    let community_id = community.get_str("_id").unwrap_or_default().to_owned();
    if let Some(discussion_id) = &request.discussion_id {
        let from_here = match super::discussions::load(&state, discussion_id).await {
            Ok(discussion) => discussion.get_str("community_id") == Ok(community_id.as_str()),
            Err(problem) if problem.status == StatusCode::NOT_FOUND.as_u16() => false,
            Err(problem) => return Err(problem),
        };
        if !from_here {
            return Err(Problem::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "discussion_not_in_community",
                "No such discussion in this community",
            )
            .with_detail("discussion_id must name a discussion of this community"));
        }
    }
    let id = Uuid::now_v7();
    let event = Envelope::new(
        SERVICE,
        ProposalCreated {
            proposal_id: id,
            community_id: Uuid::parse_str(&community_id).map_err(anyhow::Error::from)?,
            title: request.title.clone(),
            voting_type: request.voting_type.clone(),
            choices: request.choices.clone(),
            start: request.start,
            end: request.end,
        },
    );
    let mut document = doc! {
        "_id": id.to_string(),
        "community_id": &community_id,
        "title": &request.title,
        "body": &request.body,
        "choices": &request.choices,
        "voting_type": &request.voting_type,
        "start": to_bson_time(request.start),
        "end": to_bson_time(request.end),
        "quorum": request.quorum,
        "min_level": i64::from(min_level),
        "strategy": &request.strategy,
        "discussion_id": request.discussion_id.clone(),
        "created_by": session.0.to_string(),
        "created_at": to_bson_time(now),
        "status": "pending",
    };
    // Opening (even at once, for a start in the past) is the scheduler's:
    // `proposal.opened` has one writer.
    let record = OutboxRecord::from_envelope(&event)
        .concerning([community_subject(&community_id), palm_subject(session.0)]);
    outbox::attach(&mut document, std::slice::from_ref(&record));
    state
        .database()
        .collection::<Document>(PROPOSALS)
        .insert_one(&document)
        .await?;
    state.prompt().staged(PROPOSALS, id.to_string(), &[record]);
    let headers = location(&format!("/v1/proposals/{id}"));
    Ok((StatusCode::CREATED, headers, Json(view(&document, now))))
}

/// `GET /v1/communities/{slug}/proposals` query.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ProposalQuery {
    /// `pending`, `active` or `closed`.
    #[param(schema_with = status_schema)]
    pub status: Option<String>,
    /// Page size, 1–100 (default 20).
    #[param(schema_with = pages::limit_schema)]
    pub limit: Option<u32>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

/// The statuses a proposal goes through.
const STATUSES: [&str; 3] = ["pending", "active", "closed"];

fn status_schema() -> utoipa::openapi::schema::Object {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .enum_values(Some(STATUSES))
        .build()
}

/// Lists a community's proposals, newest first, optionally by status.
#[utoipa::path(
    get, path = "/v1/communities/{slug}/proposals", operation_id = "listProposals", tag = "proposals",
    params(("slug" = String, Path, description = "Community slug"), ProposalQuery),
    responses((status = 200, description = "Proposals, newest first", body = Paged<ProposalView>), BadQuery, NotFound, Always)
)]
#[tracing::instrument(skip_all, fields(%slug))]
pub async fn list(
    State(state): State<AppState>,
    ApiPath(slug): ApiPath<String>,
    ApiQuery(query): ApiQuery<ProposalQuery>,
) -> Result<Json<Paged<ProposalView>>, Problem> {
    let community = communities::find(&state, &slug).await?;
    let mut filter = doc! { "community_id": community.get_str("_id").unwrap_or_default() };
    match query.status.as_deref() {
        None => {}
        Some(status) if STATUSES.contains(&status) => {
            filter.insert("status", status);
        }
        Some(_) => {
            return Err(Problem::validation(
                "status must be pending, active or closed",
            ));
        }
    }
    let now = Utc::now();
    let page = pages::newest_first(
        state.database().collection(PROPOSALS),
        filter,
        None,
        query.limit,
        query.cursor.as_deref(),
        |d| view(d, now),
    )
    .await?;
    Ok(Json(page))
}

async fn load(database: &Database, id: &str) -> Result<Document, Problem> {
    database
        .collection::<Document>(PROPOSALS)
        .find_one(doc! { "_id": id })
        .await?
        .ok_or_else(|| Problem::not_found("proposal"))
}

/// A proposal's rules as vote intake needs them, from `cache` or read once:
/// the rules (choices, voting type, window, level, strategy, community)
/// never change after creation — no route edits them — so an entry is
/// never stale and needs no invalidation; the cache is bounded by entry
/// count and idle time only to bound memory. Its `status` may be stale,
/// and intake does not read it (the validator judges the window). A
/// missing proposal is not cached.
async fn rules(state: &AppState, id: &str) -> Result<Arc<Document>, Problem> {
    if let Some(rules) = state.proposal_rules().get(id) {
        return Ok(rules);
    }
    let rules = Arc::new(load(state.database(), id).await?);
    state
        .proposal_rules()
        .insert(id.to_owned(), Arc::clone(&rules));
    Ok(rules)
}

/// One proposal.
#[utoipa::path(
    get, path = "/v1/proposals/{id}", operation_id = "getProposal", tag = "proposals",
    params(("id" = String, Path, description = "Proposal id")),
    responses((status = 200, description = "The proposal", body = ProposalView), NotFound, Always)
)]
#[tracing::instrument(skip_all, fields(%id))]
pub async fn get_one(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<ProposalView>, Problem> {
    Ok(Json(view(&load(state.database(), &id).await?, Utc::now())))
}

/// `POST /v1/proposals/{id}/votes` body: the EIP-712 `Vote` as signed.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CastVote {
    /// The choice; its shape is the proposal's voting type's
    /// (`choice_does_not_fit` otherwise).
    #[schema(schema_with = limits::choice_schema)]
    pub choice: Value,
    /// Unix seconds when the voter signed.
    #[serde(deserialize_with = "limits::integer")]
    #[schema(schema_with = timestamp_schema)]
    pub timestamp: i64,
    /// The signing wallet (any letter case: the signature binds it).
    #[schema(schema_with = address_schema)]
    pub address: String,
    /// `0x` hex EIP-712 signature.
    #[schema(schema_with = signature_schema)]
    pub signature: String,
}

fn timestamp_schema() -> utoipa::openapi::schema::Object {
    limits::TIMESTAMP.schema()
}

fn address_schema() -> utoipa::openapi::schema::Object {
    limits::ADDRESS.schema()
}

fn signature_schema() -> utoipa::openapi::schema::Object {
    limits::SIGNATURE.schema()
}

/// `202` body and `GET /v1/votes/{id}` body.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct VoteView {
    /// Vote id.
    pub id: String,
    /// Proposal.
    pub proposal_id: String,
    /// The choice as signed.
    pub choice: Value,
    /// `pending`, `valid`, `rejected`.
    pub status: String,
    /// Why it was rejected.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// Whether `choice` fits `voting_type` with `count` choices (numbered from
/// 1), by the voting type's own rule in `palm_core::voting`.
fn choice_fits(voting_type: &str, choice: &Value, count: usize) -> bool {
    voting::voting_type(voting_type).is_some_and(|t| t.fits(choice, count))
}

/// Takes a signed vote for validation.
#[utoipa::path(
    post, path = "/v1/proposals/{id}/votes", operation_id = "castVote", tag = "proposals", security(("session" = [])),
    params(("id" = String, Path, description = "Proposal id")), request_body = CastVote,
    responses(
        (status = 202, description = "Taken for validation: `pending` until the validator decides", body = VoteView,
            headers(("Location" = String, description = "The vote's URL"))),
        (status = 200, description = "This signed vote was already taken: the first vote, as it is now", body = VoteView,
            headers(("Location" = String, description = "The vote's URL"))),
        NeedsSession, BadBody, NotFound, Conflict,
        (status = 422, description = "`invalid_body`, `validation_failed`: a value breaks the schema; `choice_does_not_fit`: the choice is not one of this proposal's voting type over its choices", body = Problem, content_type = "application/problem+json"),
        Always
    )
)]
#[tracing::instrument(skip_all, fields(palm_id = %session.0, %id))]
pub async fn cast(
    State(state): State<AppState>,
    session: Session,
    ApiPath(id): ApiPath<String>,
    ApiJson(mut vote): ApiJson<CastVote>,
) -> Result<(StatusCode, HeaderMap, Json<VoteView>), Problem> {
    vote.choice = limits::whole_numbers_as_integers(vote.choice);
    if !limits::choice_has_a_shape(&vote.choice) {
        return Err(Problem::validation(
            "choice: a choice number, distinct choice numbers, or weights by choice number",
        ));
    }
    limits::TIMESTAMP.check("timestamp", vote.timestamp)?;
    limits::ADDRESS.check("address", &vote.address)?;
    limits::SIGNATURE.check("signature", &vote.signature)?;
    let database = state.database();
    let proposal = rules(&state, &id).await?;
    let rules_view = view(&proposal, Utc::now());
    if !choice_fits(
        &rules_view.voting_type,
        &vote.choice,
        rules_view.choices.len(),
    ) {
        return Err(Problem::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "choice_does_not_fit",
            "The choice does not fit this proposal",
        )
        .with_detail(format!(
            "choice does not fit a {} vote over {} choices",
            rules_view.voting_type,
            rules_view.choices.len()
        )));
    }
    // Any letter case: EIP-712 signs the address's 20 bytes, so the
    // signature binds it whatever its EIP-55 checksum says.
    let address = eth::parse_address(&vote.address.to_ascii_lowercase())
        .map_err(|_| Problem::validation("address must be an Ethereum address"))?;
    eth::parse_signature(&vote.signature)
        .map_err(|_| Problem::validation("signature must be 65 bytes of 0x hex"))?;

    // The facts the validator decides on, as of now: the voter and their
    // membership, in one round trip.
    let (voter, is_member) =
        super::palm_ids::load_as_member(database, session.0, &rules_view.community_id)
            .await?
            .ok_or_else(|| Problem::not_found("PalmID"))?;

    let vote_id = Uuid::now_v7();
    let submitted_at = Utc::now();
    let proposal_id = Uuid::parse_str(&id).map_err(|_| Problem::not_found("proposal"))?;
    let event = Envelope::new(
        SERVICE,
        VoteSubmitted {
            vote_id,
            proposal_id,
            palm_id: session.0,
            choice: vote.choice.clone(),
            timestamp: vote.timestamp,
            address: address.to_lower_hex(),
            signature: vote.signature.clone(),
            app: state.inner.siwe.domain.clone(),
            submitted_at,
            voter: VoterFacts {
                wallets: voter.wallets(),
                level: voter.level(),
                is_member,
            },
            proposal: ProposalRules {
                voting_type: rules_view.voting_type.clone(),
                choice_count: u32::try_from(rules_view.choices.len()).unwrap_or(u32::MAX),
                start: rules_view.start,
                end: rules_view.end,
                min_level: rules_view.min_level,
                strategy: rules_view.strategy.clone(),
            },
        },
    );
    // The voting type bounds every number in a choice; a value BSON still
    // cannot hold is the client's error, never a 5xx.
    let choice = bson::to_bson(&vote.choice)
        .map_err(|_| Problem::validation("the choice holds a number out of range"))?;
    let digest = signed_digest(
        &id,
        &vote.choice,
        vote.timestamp,
        &address.to_lower_hex(),
        &state.inner.siwe.domain,
    );
    let mut document = doc! {
        "_id": vote_id.to_string(),
        "digest": &digest,
        "proposal_id": &id,
        "palm_id": session.0.to_string(),
        "choice": choice,
        "timestamp": vote.timestamp,
        "address": address.to_lower_hex(),
        "status": "pending",
        "submitted_at": to_bson_time(submitted_at),
    };
    let votes = database.collection::<Document>(VOTES);
    let record = OutboxRecord::from_envelope(&event).concerning([palm_subject(session.0)]);
    outbox::attach(&mut document, std::slice::from_ref(&record));
    match votes.insert_one(document).await {
        Ok(_) => state.prompt().staged(VOTES, vote_id.to_string(), &[record]),
        Err(error) if palm_mongo::is_duplicate_key(&error) => {
            return already_taken(&votes, &digest, session.0).await;
        }
        Err(error) => return Err(error.into()),
    }
    let headers = location(&format!("/v1/votes/{vote_id}"));
    let view = VoteView {
        id: vote_id.to_string(),
        proposal_id: id,
        choice: vote.choice,
        status: "pending".into(),
        reason: None,
    };
    Ok((StatusCode::ACCEPTED, headers, Json(view)))
}

/// The answer to a signed vote sent again: the first vote as it is now
/// (`200`), or `409` when another PalmID sent it first (a copied signature
/// tells its sender nothing about someone else's vote).
async fn already_taken(
    votes: &palm_mongo::mongodb::Collection<Document>,
    digest: &str,
    palm_id: Uuid,
) -> Result<(StatusCode, HeaderMap, Json<VoteView>), Problem> {
    let first = votes
        .find_one(doc! { "digest": digest })
        .await?
        .ok_or_else(|| anyhow::anyhow!("a duplicate vote digest that cannot be found"))?;
    if first.get_str("palm_id").unwrap_or_default() != palm_id.to_string() {
        return Err(Problem::new(
            StatusCode::CONFLICT,
            "vote_already_submitted",
            "This signed vote was already submitted",
        ));
    }
    let view = vote_view(&first);
    let headers = location(&format!("/v1/votes/{}", view.id));
    Ok((StatusCode::OK, headers, Json(view)))
}

/// A vote, to its voter only.
#[utoipa::path(
    get, path = "/v1/votes/{id}", operation_id = "getVote", tag = "proposals", security(("session" = [])),
    params(("id" = String, Path, description = "Vote id")),
    responses((status = 200, description = "The vote, to its voter only", body = VoteView), NeedsSession, NotFound, Always)
)]
#[tracing::instrument(skip_all, fields(palm_id = %session.0, %id))]
pub async fn vote(
    State(state): State<AppState>,
    session: Session,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<VoteView>, Problem> {
    let found = state
        .database()
        .collection::<Document>(VOTES)
        .find_one(doc! { "_id": &id, "palm_id": session.0.to_string() })
        .await?
        .ok_or_else(|| Problem::not_found("vote"))?;
    Ok(Json(vote_view(&found)))
}

/// A stored vote as its voter sees it.
fn vote_view(found: &Document) -> VoteView {
    let choice = found
        .get("choice")
        .cloned()
        .map(Bson::into_relaxed_extjson)
        .unwrap_or(Value::Null);
    VoteView {
        id: found.get_str("_id").unwrap_or_default().to_owned(),
        proposal_id: found.get_str("proposal_id").unwrap_or_default().to_owned(),
        choice,
        status: found.get_str("status").unwrap_or_default().to_owned(),
        reason: found.get_str("reason").ok().map(str::to_owned),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::choice_fits;

    #[test]
    fn choices_fit_their_voting_type() {
        assert!(choice_fits("single-choice", &json!(2), 3));
        assert!(!choice_fits("single-choice", &json!(4), 3));
        assert!(!choice_fits("single-choice", &json!([1]), 3));
        assert!(choice_fits("approval", &json!([1, 3]), 3));
        assert!(!choice_fits("approval", &json!([1, 1]), 3));
        assert!(!choice_fits("approval", &json!([]), 3));
        assert!(choice_fits("weighted", &json!({ "1": 2, "3": 1 }), 3));
        assert!(!choice_fits("weighted", &json!({ "1": 2, "3": 0.5 }), 3));
        assert!(!choice_fits("weighted", &json!({ "4": 1 }), 3));
        assert!(!choice_fits("weighted", &json!({ "1": -1 }), 3));
        assert!(!choice_fits("weighted", &json!({ "01": 1 }), 3));
        assert!(!choice_fits("quadratic", &json!(1), 3));
    }
}

/// `GET /v1/proposals/{id}/results`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ResultsView {
    /// Proposal id.
    pub proposal_id: String,
    /// `pending`, `active` or `closed`.
    pub status: String,
    /// Whether the tally is final (the proposal closed).
    #[serde(rename = "final")]
    pub is_final: bool,
    /// Power per choice, in the proposal's choice order.
    pub choices: Vec<ChoiceResult>,
    /// Distinct PalmIDs whose vote counts.
    pub voters: u64,
    /// Sum of the counted voting power.
    pub total_power: f64,
    /// Power needed for the result to count.
    pub quorum: f64,
    /// Whether `total_power` reaches `quorum`.
    pub quorum_met: bool,
}

/// One choice's result.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ChoiceResult {
    /// Choice number, from 1.
    pub choice: u32,
    /// Its label.
    pub label: String,
    /// Voting power it received.
    pub power: f64,
}

/// The running tally, final once the proposal closed.
#[utoipa::path(
    get, path = "/v1/proposals/{id}/results", operation_id = "getResults", tag = "proposals",
    params(("id" = String, Path, description = "Proposal id")),
    responses((status = 200, description = "The tally (running until the proposal closes)", body = ResultsView), NotFound, Always)
)]
#[tracing::instrument(skip_all, fields(%id))]
pub async fn results(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<ResultsView>, Problem> {
    let proposal = load(state.database(), &id).await?;
    let proposal_view = view(&proposal, Utc::now());
    let choices = proposal_view.choices.len();
    let tally = match crate::tally::Tally::frozen(&proposal, choices) {
        Some(frozen) => Arc::new(frozen),
        None => {
            state
                .tallies()
                .running(state.database(), &id, choices)
                .await?
        }
    };
    Ok(Json(ResultsView {
        proposal_id: id,
        is_final: proposal_view.status == "closed",
        status: proposal_view.status,
        choices: proposal_view
            .choices
            .iter()
            .zip(&tally.per_choice)
            .enumerate()
            .map(|(index, (label, power))| ChoiceResult {
                choice: u32::try_from(index + 1).unwrap_or(u32::MAX),
                label: label.clone(),
                power: *power,
            })
            .collect(),
        voters: tally.voters,
        total_power: tally.total_power,
        quorum: proposal_view.quorum,
        quorum_met: tally.total_power >= proposal_view.quorum,
    }))
}
