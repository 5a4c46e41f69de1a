//! Audit routes over the append-only audit log, which the outbox relay
//! fills with a copy of every event palmdao stages
//! ([`crate::store::audit`]). Each staged record names its subjects with
//! [`palm_subject`] and [`community_subject`]; the routes list by subject:
//! `GET /v1/me/audit` (the caller's own events) and
//! `GET /v1/communities/{slug}/audit` (community admins only). Votes are
//! audited under their voter only: the event carries the voter's wallets,
//! which are not the community's to read.

use axum::Json;
use axum::extract::State;

use super::extract::{ApiPath, ApiQuery};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::communities;
use super::openapi::{Always, BadQuery, Forbidden, NeedsSession, NotFound};
use super::pages::{self, Paged};
use super::problem::Problem;
use super::session::Session;
use super::state::AppState;
use crate::domain::audit::{community_subject, palm_subject};
use crate::store::audit as store;

/// `?limit&cursor&type` of the audit routes.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AuditQuery {
    /// Items per page, 1–100 (default 20).
    #[param(schema_with = pages::limit_schema)]
    pub limit: Option<u32>,
    /// The `next_cursor` of the previous page.
    pub cursor: Option<String>,
    /// Only events of this type (e.g. `member.joined`).
    #[serde(rename = "type")]
    pub event_type: Option<String>,
}

/// One audit entry.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct AuditEntry {
    /// Event id.
    pub id: String,
    /// Event type.
    #[serde(rename = "type")]
    pub event_type: String,
    /// When it happened.
    pub occurred_at: DateTime<Utc>,
    /// The event's payload (credentials redacted).
    pub payload: serde_json::Value,
}

impl From<store::AuditEntry> for AuditEntry {
    fn from(entry: store::AuditEntry) -> Self {
        Self {
            id: entry.id,
            event_type: entry.event_type,
            occurred_at: entry.occurred_at,
            payload: entry.payload,
        }
    }
}

async fn list_for(
    state: &AppState,
    subject: String,
    query: &AuditQuery,
) -> Result<Json<Paged<AuditEntry>>, Problem> {
    let limit = pages::limit(query.limit)?;
    let entries = store::newest_first(
        state.store(),
        subject,
        query.event_type.as_deref(),
        limit,
        query.cursor.as_deref(),
    )
    .await?;
    Ok(Json(Paged::of(entries, limit, |entry| entry.id.clone())))
}

/// The caller's own events, newest first.
#[utoipa::path(
    get, path = "/v1/me/audit", operation_id = "listMyAudit", tag = "audit", security(("session" = [])), params(AuditQuery),
    responses((status = 200, description = "The caller's events, newest first", body = Paged<AuditEntry>), NeedsSession, BadQuery, Always)
)]
#[tracing::instrument(skip_all, fields(palm_id = %session.0))]
pub async fn mine(
    State(state): State<AppState>,
    session: Session,
    ApiQuery(query): ApiQuery<AuditQuery>,
) -> Result<Json<Paged<AuditEntry>>, Problem> {
    list_for(&state, palm_subject(session.0), &query).await
}

/// A community's events, newest first; admins only.
#[utoipa::path(
    get, path = "/v1/communities/{slug}/audit", operation_id = "listCommunityAudit", tag = "audit", security(("session" = [])),
    params(("slug" = String, Path, description = "Community slug"), AuditQuery),
    responses((status = 200, description = "The community's events, newest first (admins only)", body = Paged<AuditEntry>), NeedsSession, Forbidden, NotFound, BadQuery, Always)
)]
#[tracing::instrument(skip_all, fields(palm_id = %session.0, %slug))]
pub async fn community(
    State(state): State<AppState>,
    session: Session,
    ApiPath(slug): ApiPath<String>,
    ApiQuery(query): ApiQuery<AuditQuery>,
) -> Result<Json<Paged<AuditEntry>>, Problem> {
    let community = communities::find(&state, &slug).await?;
    communities::require_admin(&community, session.0)?;
    let subject = community_subject(&community.id);
    list_for(&state, subject, &query).await
}
