//! Communities: create (PalmID level ≥ `communities.create_min_level`, 3 by
//! default; the creator becomes admin), list,
//! get, join (level ≥ 1), leave, and list members. Slugs are unique by
//! index; a membership's `_id` is `<community id>:<palm id>`, so joining twice
//! is one membership.

use axum::Json;
use axum::extract::State;

use super::extract::{ApiPath, ApiQuery};
use axum::http::{HeaderMap, StatusCode};
use chrono::{DateTime, Utc};
use futures_util::TryStreamExt;
use palm_core::Envelope;
use palm_core::events::{CommunityCreated, MemberJoined, MemberLeft};
use palm_mongo::mongodb::bson::{DateTime as BsonDateTime, Document, doc};
use palm_mongo::mongodb::options::IndexOptions;
use palm_mongo::mongodb::{Database, IndexModel};
use palm_mongo::outbox::{self, OutboxRecord};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::audit::{community_subject, palm_subject};
use super::extract::ApiJson;
use super::limits;
use super::openapi::{Always, BadBody, BadQuery, Conflict, Forbidden, NeedsSession, NotFound};
use super::pages::{self, Page, Paged};
use super::problem::Problem;
use super::session::Session;
use super::{AppState, from_bson_time, location};
use crate::SERVICE;

/// Community documents.
pub const COMMUNITIES: &str = "communities";
/// Membership documents.
pub const MEMBERSHIPS: &str = "memberships";
/// Level needed to join one.
pub const JOIN_LEVEL: u32 = 1;

/// Declares the unique slug and membership listing indexes.
pub async fn ensure_indexes(database: &Database) -> palm_mongo::mongodb::error::Result<()> {
    let slug = IndexModel::builder()
        .keys(doc! { "slug": 1 })
        .options(
            IndexOptions::builder()
                .unique(true)
                .name("slug_unique".to_owned())
                .build(),
        )
        .build();
    palm_mongo::ensure_indexes(database, COMMUNITIES, vec![slug]).await?;
    let members = IndexModel::builder()
        .keys(doc! { "community_id": 1, "palm_id": 1 })
        .options(
            IndexOptions::builder()
                .name("by_community".to_owned())
                .build(),
        )
        .build();
    palm_mongo::ensure_indexes(database, MEMBERSHIPS, vec![members]).await
}

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
    1
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

fn view(document: &Document) -> CommunityView {
    let text = |key: &str| document.get_str(key).unwrap_or_default().to_owned();
    CommunityView {
        id: text("_id"),
        slug: text("slug"),
        name: text("name"),
        description: text("description"),
        admins: document
            .get_array("admins")
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default(),
        min_vote_level: document
            .get_document("settings")
            .ok()
            .and_then(|s| palm_mongo::integer(s, "min_vote_level"))
            .and_then(|v| u32::try_from(v).ok())
            .unwrap_or(1),
        created_at: document
            .get_datetime("created_at")
            .map(from_bson_time)
            .unwrap_or_default(),
    }
}

async fn level_of(state: &AppState, palm_id: Uuid) -> Result<u32, Problem> {
    let palm = super::palm_ids::load(state.database(), palm_id)
        .await?
        .ok_or_else(|| Problem::not_found("PalmID"))?;
    Ok(palm.level())
}

fn level_too_low(needed: u32, has: u32) -> Problem {
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
pub(crate) async fn find(state: &AppState, slug: &str) -> Result<Document, Problem> {
    state
        .database()
        .collection::<Document>(COMMUNITIES)
        .find_one(doc! { "slug": slug })
        .await?
        .ok_or_else(|| Problem::not_found("community"))
}

/// Whether `palm_id` administers `community`.
pub(crate) fn is_admin(community: &Document, palm_id: Uuid) -> bool {
    let palm_id = palm_id.to_string();
    community
        .get_array("admins")
        .is_ok_and(|admins| admins.iter().any(|a| a.as_str() == Some(&palm_id)))
}

/// `403 not_admin` unless `palm_id` administers `community`.
pub(crate) fn require_admin(community: &Document, palm_id: Uuid) -> Result<(), Problem> {
    if is_admin(community, palm_id) {
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
    Ok(state
        .database()
        .collection::<Document>(MEMBERSHIPS)
        .find_one(doc! { "_id": format!("{community_id}:{palm_id}") })
        .projection(doc! { "_id": 1 })
        .await?
        .is_some())
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
    let needed = state.create_community_level();
    if level < needed {
        return Err(level_too_low(needed, level));
    }

    let id = Uuid::now_v7();
    let created = Envelope::new(
        SERVICE,
        CommunityCreated {
            community_id: id,
            slug: request.slug.clone(),
            name: request.name.clone(),
            admin_palm_id: session.0,
        },
    );
    let mut community = doc! {
        "_id": id.to_string(),
        "slug": &request.slug,
        "name": &request.name,
        "description": &request.description,
        "admins": [session.0.to_string()],
        "settings": { "min_vote_level": i64::from(request.min_vote_level) },
        "created_by": session.0.to_string(),
        "created_at": BsonDateTime::now(),
    };
    let record = OutboxRecord::from_envelope(&created)
        .concerning([community_subject(&id.to_string()), palm_subject(session.0)]);
    outbox::attach(&mut community, std::slice::from_ref(&record));
    match state
        .database()
        .collection::<Document>(COMMUNITIES)
        .insert_one(&community)
        .await
    {
        Ok(_) => state
            .prompt()
            .staged(COMMUNITIES, id.to_string(), &[record]),
        Err(error) if palm_mongo::is_duplicate_key(&error) => {
            return Err(Problem::new(
                StatusCode::CONFLICT,
                "slug_taken",
                "The slug is taken",
            ));
        }
        Err(error) => return Err(error.into()),
    }
    // The admin's membership; the community's `admins` already grants the
    // role, so a crash before this line loses no authority.
    add_member(&state, id, &request.slug, session.0, "admin").await?;
    let path = format!("/v1/communities/{}", request.slug);
    Ok((StatusCode::CREATED, location(&path), Json(view(&community))))
}

/// Inserts the membership with its `member.joined` event; `false` if it existed.
/// Adds `palm_id` to the community with `role`, unless already a member.
/// Returns whether it was added and the membership as stored: joining again
/// answers with the existing membership (its role and `joined_at`), never a
/// made-up one.
async fn add_member(
    state: &AppState,
    community_id: Uuid,
    slug: &str,
    palm_id: Uuid,
    role: &str,
) -> Result<(bool, Document), Problem> {
    let joined = Envelope::new(
        SERVICE,
        MemberJoined {
            community_id,
            community_slug: slug.to_owned(),
            palm_id,
        },
    );
    let mut membership = doc! {
        "_id": format!("{community_id}:{palm_id}"),
        "community_id": community_id.to_string(),
        "palm_id": palm_id.to_string(),
        "role": role,
        "joined_at": BsonDateTime::now(),
    };
    let record = OutboxRecord::from_envelope(&joined).concerning([
        community_subject(&community_id.to_string()),
        palm_subject(palm_id),
    ]);
    let id = membership.get_str("_id").unwrap_or_default().to_owned();
    let stored = membership.clone();
    outbox::attach(&mut membership, std::slice::from_ref(&record));
    let memberships = state.database().collection::<Document>(MEMBERSHIPS);
    match memberships.insert_one(membership).await {
        Ok(_) => {
            state.prompt().staged(MEMBERSHIPS, id.as_str(), &[record]);
            Ok((true, stored))
        }
        Err(error) if palm_mongo::is_duplicate_key(&error) => {
            let existing = memberships
                .find_one(doc! { "_id": &id })
                .projection(doc! { "palm_id": 1, "role": 1, "joined_at": 1 })
                .await?
                // Left between the insert and the read: nothing to report
                // but what was asked for.
                .unwrap_or(stored);
            Ok((false, existing))
        }
        Err(error) => Err(error.into()),
    }
}

fn member_view(membership: &Document) -> MemberView {
    MemberView {
        palm_id: membership.get_str("palm_id").unwrap_or_default().to_owned(),
        role: membership.get_str("role").unwrap_or_default().to_owned(),
        joined_at: membership
            .get_datetime("joined_at")
            .map(from_bson_time)
            .unwrap_or_default(),
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
    let filter = match &page.cursor {
        Some(after) => doc! { "slug": { "$gt": after } },
        None => doc! {},
    };
    let documents: Vec<Document> = state
        .database()
        .collection::<Document>(COMMUNITIES)
        .find(filter)
        .sort(doc! { "slug": 1 })
        .limit(limit + 1)
        .await?
        .try_collect()
        .await?;
    Ok(Json(Paged::from_documents(&documents, limit, view, |d| {
        d.get_str("slug").unwrap_or_default().to_owned()
    })))
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
    Ok(Json(view(&find(&state, &slug).await?)))
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
    if level < JOIN_LEVEL {
        return Err(level_too_low(JOIN_LEVEL, level));
    }
    let id = Uuid::parse_str(community.get_str("_id").unwrap_or_default())
        .map_err(anyhow::Error::from)?;
    let (created, membership) = add_member(&state, id, &slug, session.0, "member").await?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(member_view(&membership))))
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
    if is_admin(&community, session.0) {
        return Err(Problem::new(
            StatusCode::CONFLICT,
            "admin_cannot_leave",
            "An admin cannot leave their community",
        ));
    }
    let id = community.get_str("_id").unwrap_or_default().to_owned();
    let removed = state
        .database()
        .collection::<Document>(MEMBERSHIPS)
        .find_one_and_delete(doc! { "_id": format!("{id}:{}", session.0) })
        .await?
        .ok_or_else(|| {
            Problem::new(
                StatusCode::NOT_FOUND,
                "not_a_member",
                "You are not a member",
            )
        })?;
    // The membership document is gone, so its events ride on the community:
    // any it still held (a `member.joined` the relay had not published yet),
    // then `member.left`.
    let mut records = outbox::pending_records(&removed);
    let left = Envelope::new(
        SERVICE,
        MemberLeft {
            community_id: Uuid::parse_str(&id).map_err(anyhow::Error::from)?,
            palm_id: session.0,
        },
    );
    let mut update = doc! {};
    records.push(
        OutboxRecord::from_envelope(&left)
            .concerning([community_subject(&id), palm_subject(session.0)]),
    );
    outbox::stage(&mut update, &records);
    state
        .database()
        .collection::<Document>(COMMUNITIES)
        .update_one(doc! { "_id": &id }, update)
        .await?;
    state.prompt().staged(COMMUNITIES, id.as_str(), &records);
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
    let id = community.get_str("_id").unwrap_or_default().to_owned();
    let mut filter = doc! { "community_id": &id };
    if let Some(after) = &page.cursor {
        filter.insert("palm_id", doc! { "$gt": after });
    }
    let documents: Vec<Document> = state
        .database()
        .collection::<Document>(MEMBERSHIPS)
        .find(filter)
        .sort(doc! { "palm_id": 1 })
        .limit(limit + 1)
        .await?
        .try_collect()
        .await?;
    Ok(Json(Paged::from_documents(
        &documents,
        limit,
        member_view,
        |d| d.get_str("palm_id").unwrap_or_default().to_owned(),
    )))
}
