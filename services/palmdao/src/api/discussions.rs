//! Discussions: forum threads in a community. Members start them; anyone
//! reads them (communities are public). A proposal may name the discussion
//! it came from.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::communities;
use super::extract::{ApiJson, ApiPath, ApiQuery};
use super::openapi::{Always, BadBody, BadQuery, Forbidden, NeedsSession, NotFound};
use super::pages::{self, Page, Paged};
use super::problem::Problem;
use super::session::Session;
use super::state::{AppState, location};
use crate::store::discussions::{self as store, Discussion};

/// `POST /v1/communities/{slug}/discussions` body.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateDiscussion {
    /// 1–200 characters, not all blank.
    #[schema(schema_with = pages::title_schema)]
    pub title: String,
    /// Up to 20,000 characters.
    #[serde(default)]
    #[schema(schema_with = pages::body_schema)]
    pub body: String,
}

/// A discussion.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct DiscussionView {
    /// Id.
    pub id: String,
    /// Community id.
    pub community_id: String,
    /// Title.
    pub title: String,
    /// Body.
    pub body: String,
    /// PalmID of the author.
    pub author: String,
    /// Creation time.
    pub created_at: DateTime<Utc>,
}

impl From<Discussion> for DiscussionView {
    fn from(discussion: Discussion) -> Self {
        Self {
            id: discussion.id,
            community_id: discussion.community_id,
            title: discussion.title,
            body: discussion.body,
            author: discussion.author,
            created_at: discussion.created_at,
        }
    }
}

/// Starts a discussion; only members may.
#[utoipa::path(
    post, path = "/v1/communities/{slug}/discussions", operation_id = "createDiscussion", tag = "discussions", security(("session" = [])),
    params(("slug" = String, Path, description = "Community slug")), request_body = CreateDiscussion,
    responses(
        (status = 201, description = "Started", body = DiscussionView,
            headers(("Location" = String, description = "The discussion's URL"))),
        NeedsSession, BadBody, Forbidden, NotFound, Always
    )
)]
#[tracing::instrument(skip_all, fields(palm_id = %session.0, %slug))]
pub async fn create(
    State(state): State<AppState>,
    session: Session,
    ApiPath(slug): ApiPath<String>,
    ApiJson(request): ApiJson<CreateDiscussion>,
) -> Result<(StatusCode, HeaderMap, Json<DiscussionView>), Problem> {
    pages::check_title_and_body(&request.title, &request.body)?;
    let community = communities::find(&state, &slug).await?;
    if !communities::is_member(&state, &community.id, session.0).await? {
        return Err(Problem::new(
            StatusCode::FORBIDDEN,
            "not_a_member",
            "Only members may do this",
        ));
    }
    let discussion = store::insert(
        state.store(),
        &community.id,
        session.0,
        &request.title,
        &request.body,
    )
    .await?;
    let headers = location(&format!("/v1/discussions/{}", discussion.id));
    Ok((StatusCode::CREATED, headers, Json(discussion.into())))
}

/// Lists a community's discussions, newest first.
#[utoipa::path(
    get, path = "/v1/communities/{slug}/discussions", operation_id = "listDiscussions", tag = "discussions",
    params(("slug" = String, Path, description = "Community slug"), Page),
    responses((status = 200, description = "Discussions, newest first", body = Paged<DiscussionView>), BadQuery, NotFound, Always)
)]
#[tracing::instrument(skip_all, fields(%slug))]
pub async fn list(
    State(state): State<AppState>,
    ApiPath(slug): ApiPath<String>,
    ApiQuery(page): ApiQuery<Page>,
) -> Result<Json<Paged<DiscussionView>>, Problem> {
    let community = communities::find(&state, &slug).await?;
    let limit = pages::limit(page.limit)?;
    let discussions =
        store::newest_first(state.store(), &community.id, limit, page.cursor.as_deref()).await?;
    Ok(Json(Paged::of(discussions, limit, |d| d.id.clone())))
}

/// The discussion with `id` in any community, or `404`.
pub(crate) async fn load(state: &AppState, id: &str) -> Result<Discussion, Problem> {
    store::load(state.store(), id)
        .await?
        .ok_or_else(|| Problem::not_found("discussion"))
}

/// One discussion.
#[utoipa::path(
    get, path = "/v1/discussions/{id}", operation_id = "getDiscussion", tag = "discussions",
    params(("id" = String, Path, description = "Discussion id")),
    responses((status = 200, description = "The discussion", body = DiscussionView), NotFound, Always)
)]
#[tracing::instrument(skip_all, fields(%id))]
pub async fn get_one(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<DiscussionView>, Problem> {
    Ok(Json(load(&state, &id).await?.into()))
}
