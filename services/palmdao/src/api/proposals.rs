//! Proposals (created by a community admin; listed by community and status)
//! and vote intake: `POST /v1/proposals/{id}/votes` checks the vote's shape,
//! stores it `pending`, and stages `vote.submitted` carrying every fact the
//! stateless validator needs (the voter's wallets, level and membership, and
//! the proposal's rules and window). Signature and eligibility are the
//! validator's to decide. A vote is keyed by the digest of what was signed
//! (as Snapshot keys a vote by its signed message), so a client that sends
//! the same signed vote again — a retry after a dropped connection — gets
//! the first vote back, never a second one.

use axum::Json;
use axum::extract::State;

use super::extract::{ApiPath, ApiQuery};
use axum::http::{HeaderMap, StatusCode};
use chrono::{DateTime, Utc};
use palm_core::Envelope;
use palm_core::eth::{self, AddressText};
use palm_core::events::{ProposalRules, VoteSubmitted, VoterFacts};
use palm_core::voting;
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
use super::state::{AppState, location};
use crate::domain::proposals::{Proposal, STATUSES, choice_fits, window_is_valid};
use crate::settings::SERVICE;
use crate::store::ballots as ballots_store;
use crate::store::palm_ids as palm_ids_store;
use crate::store::proposals::{self as store, NewProposal};
use crate::store::votes::{self as votes_store, Intake, Vote};

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

impl ProposalView {
    /// `proposal` as shown at `now`.
    fn new(proposal: Proposal, now: DateTime<Utc>) -> Self {
        Self {
            status: proposal.status(now),
            id: proposal.id,
            community_id: proposal.community_id,
            title: proposal.title,
            body: proposal.body,
            choices: proposal.choices,
            voting_type: proposal.voting_type,
            start: proposal.start,
            end: proposal.end,
            quorum: proposal.quorum,
            min_level: proposal.min_level,
            strategy: proposal.strategy,
            created_by: proposal.created_by,
        }
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
    if !window_is_valid(request.start, request.end, now) {
        return Err(Problem::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_window",
            "The voting window is invalid",
        )
        .with_detail("end must be after start and in the future"));
    }
    let min_level = request.min_level.unwrap_or(community.min_vote_level);
    if !(1..=10).contains(&min_level) {
        return Err(Problem::validation("min_level must be between 1 and 10"));
    }

    let community_id = community.id.clone();
    if let Some(discussion_id) = &request.discussion_id {
        let from_here = match super::discussions::load(&state, discussion_id).await {
            Ok(discussion) => discussion.community_id == community_id,
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
    let new = NewProposal {
        community_id: &community_id,
        title: &request.title,
        body: &request.body,
        choices: &request.choices,
        voting_type: &request.voting_type,
        start: request.start,
        end: request.end,
        quorum: request.quorum,
        min_level,
        strategy: &request.strategy,
        discussion_id: request.discussion_id.as_deref(),
        created_by: session.0,
    };
    let proposal = store::insert(state.store(), &new, now).await?;
    let headers = location(&format!("/v1/proposals/{}", proposal.id));
    Ok((
        StatusCode::CREATED,
        headers,
        Json(ProposalView::new(proposal, now)),
    ))
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
    let status = match query.status.as_deref() {
        None => None,
        Some(status) if STATUSES.contains(&status) => Some(status),
        Some(_) => {
            return Err(Problem::validation(
                "status must be pending, active or closed",
            ));
        }
    };
    let limit = pages::limit(query.limit)?;
    let proposals = store::newest_first(
        state.store(),
        &community.id,
        status,
        limit,
        query.cursor.as_deref(),
    )
    .await?;
    let now = Utc::now();
    let views: Vec<ProposalView> = proposals
        .into_iter()
        .map(|proposal| ProposalView::new(proposal, now))
        .collect();
    Ok(Json(Paged::of(views, limit, |view| view.id.clone())))
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
    let proposal = store::load(state.store(), &id)
        .await?
        .ok_or_else(|| Problem::not_found("proposal"))?;
    Ok(Json(ProposalView::new(proposal, Utc::now())))
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
        (status = 422, description = "`invalid_body`, `validation_failed`: a value breaks the schema; `choice_does_not_fit`: the choice is not one of this proposal's voting type over its choices; `signature_not_canonical`: r or s is out of range, or s is in the curve order's upper half (EIP-2)", body = Problem, content_type = "application/problem+json"),
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
    let proposal = store::rules(state.store(), &id)
        .await?
        .ok_or_else(|| Problem::not_found("proposal"))?;
    if !choice_fits(&proposal.voting_type, &vote.choice, proposal.choices.len()) {
        return Err(Problem::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "choice_does_not_fit",
            "The choice does not fit this proposal",
        )
        .with_detail(format!(
            "choice does not fit a {} vote over {} choices",
            proposal.voting_type,
            proposal.choices.len()
        )));
    }
    // Any letter case: EIP-712 signs the address's 20 bytes, so the
    // signature binds it whatever its EIP-55 checksum says.
    let address = eth::parse_address(&vote.address.to_ascii_lowercase())
        .map_err(|_| Problem::validation("address must be an Ethereum address"))?;
    // The schema admits any 65 bytes with a valid v; whether r and s make a
    // secp256k1 signature, with s in the curve's lower half (EIP-2), is a
    // rule beyond it.
    eth::parse_signature(&vote.signature).map_err(|_| {
        Problem::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "signature_not_canonical",
            "The signature is not a canonical secp256k1 signature",
        )
        .with_detail("r and s must be in range and s in the lower half of the curve order (EIP-2)")
    })?;

    // The facts the validator decides on, as of now: the voter and their
    // membership, in one round trip.
    let (voter, is_member) =
        palm_ids_store::load_as_member(state.store(), session.0, &proposal.community_id)
            .await?
            .ok_or_else(|| Problem::not_found("PalmID"))?;

    let vote_id = Uuid::now_v7();
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
            submitted_at: Utc::now(),
            voter: VoterFacts {
                wallets: voter.wallets(),
                level: voter.level(),
                is_member,
            },
            proposal: ProposalRules {
                voting_type: proposal.voting_type.clone(),
                choice_count: u32::try_from(proposal.choices.len()).unwrap_or(u32::MAX),
                start: proposal.start,
                end: proposal.end,
                min_level: proposal.min_level,
                strategy: proposal.strategy.clone(),
            },
        },
    );
    let digest = signed_digest(
        &id,
        &vote.choice,
        vote.timestamp,
        &address.to_lower_hex(),
        &state.inner.siwe.domain,
    );
    match votes_store::insert(state.store(), &digest, &event).await? {
        Intake::Taken => {}
        // The voting type bounds every number in a choice; a value BSON
        // still cannot hold is the client's error, never a 5xx.
        Intake::ChoiceOutOfRange => {
            return Err(Problem::validation(
                "the choice holds a number out of range",
            ));
        }
        Intake::Duplicate(first) => return already_taken(first, session.0),
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
fn already_taken(
    first: Vote,
    palm_id: Uuid,
) -> Result<(StatusCode, HeaderMap, Json<VoteView>), Problem> {
    if first.palm_id != palm_id.to_string() {
        return Err(Problem::new(
            StatusCode::CONFLICT,
            "vote_already_submitted",
            "This signed vote was already submitted",
        ));
    }
    let view = VoteView::from(first);
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
    let found = votes_store::find_owned(state.store(), &id, session.0)
        .await?
        .ok_or_else(|| Problem::not_found("vote"))?;
    Ok(Json(VoteView::from(found)))
}

impl From<Vote> for VoteView {
    fn from(vote: Vote) -> Self {
        Self {
            id: vote.id,
            proposal_id: vote.proposal_id,
            choice: vote.choice,
            status: vote.status,
            reason: vote.reason,
        }
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
    let proposal = store::load(state.store(), &id)
        .await?
        .ok_or_else(|| Problem::not_found("proposal"))?;
    let choices = proposal.choices.len();
    let tally = match &proposal.final_tally {
        Some(frozen) => std::sync::Arc::new(frozen.clone()),
        None => ballots_store::running(state.store(), &id, choices).await?,
    };
    let proposal_view = ProposalView::new(proposal, Utc::now());
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
        quorum_met: tally.meets(proposal_view.quorum),
    }))
}
