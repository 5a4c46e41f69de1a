//! PalmIDs over HTTP: the owner's view and edits (`GET/PATCH /v1/me`) and
//! the public view (`GET /v1/palm-ids/{id}`). Creation on first sign-in and
//! the anti-sybil rule live in [`crate::store::palm_ids`] and
//! [`crate::store::identities`].

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::extract::{ApiJson, ApiPath};
use super::limits;
use super::openapi::{Always, BadBody, Conflict, NeedsSession, NotFound};
use super::problem::Problem;
use super::session::Session;
use super::state::AppState;
use crate::domain::palm_ids::PalmId;
use crate::store::palm_ids::{self, HandleChange};

/// The PalmID `id`, if it exists.
pub(crate) async fn load(state: &AppState, id: Uuid) -> Result<Option<PalmId>, Problem> {
    Ok(palm_ids::load(state.store(), id).await?)
}

/// A verifier as its owner sees it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct VerifierView {
    /// `wallet`, `discord`, …
    pub kind: String,
    /// The external identity (address, Discord user id).
    pub subject: String,
    /// Name at the provider, when it has one.
    pub display_name: Option<String>,
    /// When it was proven.
    pub verified_at: DateTime<Utc>,
}

/// `GET /v1/me`: the owner's full view.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct MeView {
    /// PalmID.
    pub id: String,
    /// Public handle.
    pub handle: String,
    /// Number of distinct verifier kinds.
    pub level: u32,
    /// Linked wallets (lower-case hex).
    pub wallets: Vec<String>,
    /// Every verifier.
    pub verifiers: Vec<VerifierView>,
    /// Creation time.
    pub created_at: DateTime<Utc>,
}

impl From<PalmId> for MeView {
    fn from(palm: PalmId) -> Self {
        Self {
            level: palm.level(),
            wallets: palm.wallets(),
            verifiers: palm
                .verifiers
                .into_iter()
                .map(|v| VerifierView {
                    kind: v.kind,
                    subject: v.subject,
                    display_name: v.display_name,
                    verified_at: v.verified_at,
                })
                .collect(),
            id: palm.id,
            handle: palm.handle,
            created_at: palm.created_at,
        }
    }
}

/// `GET /v1/palm-ids/{id}`: what anyone may see. Verifier subjects are the
/// owner's private data and stay out.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct PublicView {
    /// PalmID.
    pub id: String,
    /// Public handle.
    pub handle: String,
    /// Number of distinct verifier kinds.
    pub level: u32,
    /// Kinds of verifiers held.
    pub verifier_kinds: Vec<String>,
    /// Creation time.
    pub created_at: DateTime<Utc>,
}

/// The signed-in PalmID.
#[utoipa::path(
    get, path = "/v1/me", operation_id = "getMe", tag = "palm-ids", security(("session" = [])),
    responses((status = 200, description = "The signed-in PalmID, private data included", body = MeView), NeedsSession, NotFound, Always)
)]
#[tracing::instrument(skip_all, fields(palm_id = %session.0))]
pub async fn me(State(state): State<AppState>, session: Session) -> Result<Json<MeView>, Problem> {
    let palm = palm_ids::load(state.store(), session.0)
        .await?
        .ok_or_else(|| Problem::not_found("PalmID"))?;
    Ok(Json(palm.into()))
}

/// `PATCH /v1/me` body.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateMe {
    /// New handle: 3–32 of `a-z`, `0-9`, `-`, `_`; absent or `null` keeps it.
    #[schema(schema_with = handle_schema)]
    pub handle: Option<String>,
}

fn handle_schema() -> utoipa::openapi::schema::Object {
    let mut schema = limits::HANDLE.schema();
    schema.schema_type = utoipa::openapi::schema::SchemaType::from_iter([
        utoipa::openapi::schema::Type::String,
        utoipa::openapi::schema::Type::Null,
    ]);
    schema
}

/// Edits the signed-in PalmID.
#[utoipa::path(
    patch, path = "/v1/me", operation_id = "updateMe", tag = "palm-ids", security(("session" = [])), request_body = UpdateMe,
    responses((status = 200, description = "The PalmID after the change", body = MeView), NeedsSession, BadBody, Conflict, NotFound, Always)
)]
#[tracing::instrument(skip_all, fields(palm_id = %session.0))]
pub async fn update_me(
    State(state): State<AppState>,
    session: Session,
    ApiJson(update): ApiJson<UpdateMe>,
) -> Result<Json<MeView>, Problem> {
    if let Some(handle) = &update.handle {
        limits::HANDLE.check("handle", handle)?;
        match palm_ids::set_handle(state.store(), session.0, handle).await? {
            HandleChange::Set => {}
            HandleChange::NotFound => return Err(Problem::not_found("PalmID")),
            HandleChange::Taken => {
                return Err(Problem::new(
                    StatusCode::CONFLICT,
                    "handle_taken",
                    "The handle is taken",
                ));
            }
        }
    }
    me(State(state), session).await
}

/// Anyone's public view of a PalmID.
#[utoipa::path(
    get, path = "/v1/palm-ids/{id}", operation_id = "getPalmId", tag = "palm-ids",
    params(("id" = String, Path, format = Uuid, description = "PalmID")),
    responses((status = 200, description = "What anyone may see of a PalmID", body = PublicView), NotFound, Always)
)]
#[tracing::instrument(skip_all, fields(%id))]
pub async fn public_view(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<PublicView>, Problem> {
    let id = Uuid::parse_str(&id).map_err(|_| Problem::not_found("PalmID"))?;
    let palm = palm_ids::load(state.store(), id)
        .await?
        .ok_or_else(|| Problem::not_found("PalmID"))?;
    Ok(Json(PublicView {
        level: palm.level(),
        verifier_kinds: palm.verifier_kinds(),
        id: palm.id,
        handle: palm.handle,
        created_at: palm.created_at,
    }))
}
