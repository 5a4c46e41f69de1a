//! Communities: create (PalmID level ≥ `communities.create_min_level`, 3 by
//! default; the creator becomes admin), list,
//! get, join (level ≥ 1), leave, and list members. Slugs are unique by
//! index; a membership's `_id` is `<community id>:<palm id>`, so joining twice
//! is one membership.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::extract::{ApiJson, ApiPath, ApiQuery};
use super::limits;
use super::openapi::{Always, BadBody, BadQuery, Conflict, Forbidden, NeedsSession, NotFound};
use super::pages::{self, Page, Paged};
use super::problem::Problem;
use super::session::Session;
use super::state::{AppState, location};
use crate::domain::communities::{
    self as rules, Community, DEFAULT_VOTE_LEVEL, JOIN_LEVEL, LevelTooLow, Membership,
};
use crate::store::communities::{self as store, NewCommunity};
use crate::store::memberships;

/// `POST /v1/communities` body.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateCommunity {
    /// Unique, URL-safe: 3–40 of `a-z`, `0-9`, `-`.
    #[schema(schema_with = slug_schema)]
    pub slug: String,
    /// Display name, 1–100 characters.
    #[schema(schema_with = name_schema)]
    pub name: String,
    /// Up to 2000 characters.
    #[serde(default)]
    #[schema(schema_with = description_schema)]
    pub description: String,
    /// Default minimum level to vote (1 if omitted).
    #[serde(default = "default_vote_level", deserialize_with = "limits::integer")]
    #[schema(schema_with = level_schema)]
    pub min_vote_level: u32,
}

fn slug_schema() -> utoipa::openapi::schema::Object {
    limits::SLUG.schema()
}

fn name_schema() -> utoipa::openapi::schema::Object {
    limits::COMMUNITY_NAME.schema()
}

fn description_schema() -> utoipa::openapi::schema::Object {
    limits::DESCRIPTION.schema()
}

fn level_schema() -> utoipa::openapi::schema::Object {
    limits::LEVEL.schema()
}

fn default_vote_level() -> u32 {
    DEFAULT_VOTE_LEVEL
}

/// A community.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct CommunityView {
    /// Id.
    pub id: String,
    /// Slug.
    pub slug: String,
    /// Name.
    pub name: String,
    /// Description.
    pub description: String,
    /// PalmIDs of the admins.
    pub admins: Vec<String>,
    /// Default minimum level to vote.
    pub min_vote_level: u32,
    /// Creation time.
    pub created_at: DateTime<Utc>,
}

impl From<Community> for CommunityView {
    fn from(community: Community) -> Self {
        Self {
            id: community.id,
            slug: community.slug,
            name: community.name,
            description: community.description,
            admins: community.admins,
            min_vote_level: community.min_vote_level,
            created_at: community.created_at,
        }
    }
}

async fn level_of(state: &AppState, palm_id: Uuid) -> Result<u32, Problem> {
    let palm = super::palm_ids::load(state, palm_id)
        .await?
        .ok_or_else(|| Problem::not_found("PalmID"))?;
    Ok(palm.level())
}

fn level_too_low(LevelTooLow { needed, has }: LevelTooLow) -> Problem {
    Problem::new(
        StatusCode::FORBIDDEN,
        "level_too_low",
        "Your PalmID level is too low",
    )
    .with_detail(format!(
        "this needs level {needed}; your PalmID has level {has}"
    ))
}

/// The community with `slug`, or `404`.
pub(crate) async fn find(state: &AppState, slug: &str) -> Result<Community, Problem> {
    store::find(state.store(), slug)
        .await?
        .ok_or_else(|| Problem::not_found("community"))
}

/// `403 not_admin` unless `palm_id` administers `community`.
pub(crate) fn require_admin(community: &Community, palm_id: Uuid) -> Result<(), Problem> {
    if community.is_admin(palm_id) {
        Ok(())
    } else {
        Err(Problem::new(
            StatusCode::FORBIDDEN,
            "not_admin",
            "Only community admins may do this",
        ))
    }
}

/// Whether `palm_id` is a member (admins are members too).
pub(crate) async fn is_member(
    state: &AppState,
    community_id: &str,
    palm_id: Uuid,
) -> Result<bool, Problem> {
    Ok(memberships::is_member(state.store(), community_id, palm_id).await?)
}

/// Creates a community; the creator becomes its admin and first member.
#[utoipa::path(
    post, path = "/v1/communities", operation_id = "createCommunity", tag = "communities", security(("session" = [])), request_body = CreateCommunity,
    responses(
        (status = 201, description = "Created; the caller is its admin", body = CommunityView,
            headers(("Location" = String, description = "The community's URL"))),
        NeedsSession, BadBody, Forbidden, Conflict, Always
    )
)]
#[tracing::instrument(skip_all, fields(palm_id = %session.0))]
pub async fn create(
    State(state): State<AppState>,
    session: Session,
    ApiJson(request): ApiJson<CreateCommunity>,
) -> Result<(StatusCode, HeaderMap, Json<CommunityView>), Problem> {
    limits::SLUG.check("slug", &request.slug)?;
    limits::COMMUNITY_NAME.check("name", &request.name)?;
    limits::DESCRIPTION.check("description", &request.description)?;
    limits::LEVEL.check("min_vote_level", i64::from(request.min_vote_level))?;
    let level = level_of(&state, session.0).await?;
    rules::require_level(state.create_community_level(), level).map_err(level_too_low)?;
    let new = NewCommunity {
        slug: &request.slug,
        name: &request.name,
        description: &request.description,
        min_vote_level: request.min_vote_level,
        created_by: session.0,
    };
    let Some(community) = store::insert(state.store(), &new).await? else {
        return Err(Problem::new(
            StatusCode::CONFLICT,
            "slug_taken",
            "The slug is taken",
        ));
    };
    // The admin's membership; the community's `admins` already grants the
    // role, so a crash before this line loses no authority.
    let id = Uuid::parse_str(&community.id).map_err(anyhow::Error::from)?;
    memberships::add(state.store(), id, &request.slug, session.0, "admin").await?;
    let path = format!("/v1/communities/{}", request.slug);
    Ok((StatusCode::CREATED, location(&path), Json(community.into())))
}

impl From<Membership> for MemberView {
    fn from(membership: Membership) -> Self {
        Self {
            palm_id: membership.palm_id,
            role: membership.role,
            joined_at: membership.joined_at,
        }
    }
}

/// Lists communities by slug.
#[utoipa::path(
    get, path = "/v1/communities", operation_id = "listCommunities", tag = "communities", params(Page),
    responses((status = 200, description = "Communities by slug", body = Paged<CommunityView>), BadQuery, Always)
)]
#[tracing::instrument(skip_all)]
pub async fn list(
    State(state): State<AppState>,
    ApiQuery(page): ApiQuery<Page>,
) -> Result<Json<Paged<CommunityView>>, Problem> {
    let limit = pages::limit(page.limit)?;
    let communities = store::list_by_slug(state.store(), page.cursor.as_deref(), limit).await?;
    Ok(Json(Paged::of(communities, limit, |c| c.slug.clone())))
}

/// One community.
#[utoipa::path(
    get, path = "/v1/communities/{slug}", operation_id = "getCommunity", tag = "communities",
    params(("slug" = String, Path, description = "Community slug")),
    responses((status = 200, description = "The community", body = CommunityView), NotFound, Always)
)]
#[tracing::instrument(skip_all, fields(%slug))]
pub async fn get_one(
    State(state): State<AppState>,
    ApiPath(slug): ApiPath<String>,
) -> Result<Json<CommunityView>, Problem> {
    Ok(Json(find(&state, &slug).await?.into()))
}

/// A membership.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct MemberView {
    /// The member.
    pub palm_id: String,
    /// `admin` or `member`.
    pub role: String,
    /// When they joined.
    pub joined_at: DateTime<Utc>,
}

/// Joins a community (level ≥ 1); joining again changes nothing.
#[utoipa::path(
    post, path = "/v1/communities/{slug}/join", operation_id = "joinCommunity", tag = "communities", security(("session" = [])),
    params(("slug" = String, Path, description = "Community slug")),
    responses(
        (status = 201, description = "Joined", body = MemberView),
        (status = 200, description = "Already a member", body = MemberView),
        NeedsSession, Forbidden, NotFound, Always
    )
)]
#[tracing::instrument(skip_all, fields(palm_id = %session.0, %slug))]
pub async fn join(
    State(state): State<AppState>,
    session: Session,
    ApiPath(slug): ApiPath<String>,
) -> Result<(StatusCode, Json<MemberView>), Problem> {
    let community = find(&state, &slug).await?;
    let level = level_of(&state, session.0).await?;
    rules::require_level(JOIN_LEVEL, level).map_err(level_too_low)?;
    let id = Uuid::parse_str(&community.id).map_err(anyhow::Error::from)?;
    let (created, membership) =
        memberships::add(state.store(), id, &slug, session.0, "member").await?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(membership.into())))
}

/// Leaves a community; its admins cannot (hand over first).
#[utoipa::path(
    post, path = "/v1/communities/{slug}/leave", operation_id = "leaveCommunity", tag = "communities", security(("session" = [])),
    params(("slug" = String, Path, description = "Community slug")),
    responses(
        (status = 204, description = "Left"),
        NeedsSession, NotFound, Conflict, Always
    )
)]
#[tracing::instrument(skip_all, fields(palm_id = %session.0, %slug))]
pub async fn leave(
    State(state): State<AppState>,
    session: Session,
    ApiPath(slug): ApiPath<String>,
) -> Result<StatusCode, Problem> {
    let community = find(&state, &slug).await?;
    if community.is_admin(session.0) {
        return Err(Problem::new(
            StatusCode::CONFLICT,
            "admin_cannot_leave",
            "An admin cannot leave their community",
        ));
    }
    if !memberships::remove(state.store(), &community.id, session.0).await? {
        return Err(Problem::new(
            StatusCode::NOT_FOUND,
            "not_a_member",
            "You are not a member",
        ));
    }
    Ok(StatusCode::NO_CONTENT)
}

/// Lists a community's members, oldest first.
#[utoipa::path(
    get, path = "/v1/communities/{slug}/members", operation_id = "listMembers", tag = "communities",
    params(("slug" = String, Path, description = "Community slug"), Page),
    responses((status = 200, description = "Members by PalmID", body = Paged<MemberView>), BadQuery, NotFound, Always)
)]
#[tracing::instrument(skip_all, fields(%slug))]
pub async fn members(
    State(state): State<AppState>,
    ApiPath(slug): ApiPath<String>,
    ApiQuery(page): ApiQuery<Page>,
) -> Result<Json<Paged<MemberView>>, Problem> {
    let limit = pages::limit(page.limit)?;
    let community = find(&state, &slug).await?;
    let members =
        memberships::list(state.store(), &community.id, page.cursor.as_deref(), limit).await?;
    Ok(Json(Paged::of(members, limit, |m| m.palm_id.clone())))
}
