//! Discussions: forum threads in a community. Members start them; anyone
//! reads them (communities are public). A proposal may name the discussion
//! it came from.

use axum::Json;
use axum::extract::State;

use super::extract::{ApiPath, ApiQuery};
use axum::http::{HeaderMap, StatusCode};
use chrono::{DateTime, Utc};
use palm_core::Envelope;
use palm_core::events::DiscussionCreated;
use palm_mongo::mongodb::bson::{Document, doc};
use palm_mongo::mongodb::options::IndexOptions;
use palm_mongo::mongodb::{Database, IndexModel};
use palm_mongo::outbox::{self, OutboxRecord};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::audit::{community_subject, palm_subject};
use super::communities;
use super::extract::ApiJson;
use super::openapi::{Always, BadBody, BadQuery, Forbidden, NeedsSession, NotFound};
use super::pages::{self, Page, Paged};
use super::problem::Problem;
use super::session::Session;
use super::{AppState, from_bson_time, location, to_bson_time};
use crate::SERVICE;

/// Discussion documents.
pub const DISCUSSIONS: &str = "discussions";

/// Declares the per-community listing index.
pub async fn ensure_indexes(database: &Database) -> palm_mongo::mongodb::error::Result<()> {
    let by_community = IndexModel::builder()
        .keys(doc! { "community_id": 1, "_id": -1 })
        .options(
            IndexOptions::builder()
                .name("by_community".to_owned())
                .build(),
        )
        .build();
    palm_mongo::ensure_indexes(database, DISCUSSIONS, vec![by_community]).await
}

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

fn view(document: &Document) -> DiscussionView {
    let text = |key: &str| document.get_str(key).unwrap_or_default().to_owned();
    DiscussionView {
        id: text("_id"),
        community_id: text("community_id"),
        title: text("title"),
        body: text("body"),
        author: text("author"),
        created_at: document
            .get_datetime("created_at")
            .map(from_bson_time)
            .unwrap_or_default(),
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
    let community_id = community.get_str("_id").unwrap_or_default().to_owned();
    if !communities::is_member(&state, &community_id, session.0).await? {
        return Err(Problem::new(
            StatusCode::FORBIDDEN,
            "not_a_member",
            "Only members may do this",
        ));
    }
    let id = Uuid::now_v7();
    let created = Envelope::new(
        SERVICE,
        DiscussionCreated {
            discussion_id: id,
            community_id: Uuid::parse_str(&community_id).map_err(anyhow::Error::from)?,
            author_palm_id: session.0,
            title: request.title.clone(),
        },
    );
    let mut document = doc! {
        "_id": id.to_string(),
        "community_id": &community_id,
        "title": request.title.trim(),
        "body": &request.body,
        "author": session.0.to_string(),
        "created_at": to_bson_time(Utc::now()),
    };
    let record = OutboxRecord::from_envelope(&created)
        .concerning([community_subject(&community_id), palm_subject(session.0)]);
    outbox::attach(&mut document, std::slice::from_ref(&record));
    state
        .database()
        .collection::<Document>(DISCUSSIONS)
        .insert_one(&document)
        .await?;
    state
        .prompt()
        .staged(DISCUSSIONS, id.to_string(), &[record]);
    let headers = location(&format!("/v1/discussions/{id}"));
    Ok((StatusCode::CREATED, headers, Json(view(&document))))
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
    let filter = doc! { "community_id": community.get_str("_id").unwrap_or_default() };
    let page = pages::newest_first(
        state.database().collection(DISCUSSIONS),
        filter,
        None,
        page.limit,
        page.cursor.as_deref(),
        view,
    )
    .await?;
    Ok(Json(page))
}

/// The discussion with `id` in any community, or `404`.
pub(crate) async fn load(state: &AppState, id: &str) -> Result<Document, Problem> {
    state
        .database()
        .collection::<Document>(DISCUSSIONS)
        .find_one(doc! { "_id": id })
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
    Ok(Json(view(&load(&state, &id).await?)))
}
