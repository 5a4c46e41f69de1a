//! Verification intake: `POST /v1/me/verifications` stores a pending
//! verification and stages `verification.requested.<kind>` in the same write;
//! `GET /v1/me/verifications/{id}` shows its state to its owner only. The
//! result arrives as `verification.completed` (see
//! `crate::consumers::results`); the documents are
//! [`crate::store::verifications`]'.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::extract::{ApiJson, ApiPath};
use super::limits;
use super::openapi::{Always, BadBody, NeedsSession, NotFound};
use super::problem::Problem;
use super::session::Session;
use super::state::{AppState, location};
use crate::store::verifications::{self, Proof, Verification};

/// `POST /v1/me/verifications` body, by kind. Its schema is written out
/// below ([`utoipa::PartialSchema`]): utoipa's derive leaves a tagged
/// variant open to properties the server refuses.
#[derive(Debug, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum VerificationRequest {
    /// Link another wallet: a SIWE message and its signature.
    Wallet {
        /// EIP-4361 message signed by the wallet.
        message: String,
        /// Its EIP-191 signature.
        signature: String,
    },
    /// Link a Discord account: an OAuth2 authorization code.
    Discord {
        /// Authorization code from Discord's redirect.
        code: String,
        /// The redirect URI the code was issued for.
        redirect_uri: String,
    },
}

impl utoipa::ToSchema for VerificationRequest {}

impl utoipa::PartialSchema for VerificationRequest {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{ObjectBuilder, OneOfBuilder, Type};
        let variant = |kind: &str, description: &str, fields: [(&str, limits::Text); 2]| {
            let mut object = ObjectBuilder::new()
                .schema_type(Type::Object)
                .description(Some(description))
                .property(
                    "kind",
                    ObjectBuilder::new()
                        .schema_type(Type::String)
                        .enum_values(Some([kind])),
                )
                .required("kind")
                .additional_properties(Some(utoipa::openapi::schema::AdditionalProperties::<
                    utoipa::openapi::schema::Schema,
                >::FreeForm(false)));
            for (name, rule) in fields {
                object = object.property(name, rule.schema()).required(name);
            }
            object.build()
        };
        let one_of = OneOfBuilder::new()
            .item(variant(
                "wallet",
                "Link another wallet: a SIWE message (with a fresh nonce) and its EIP-191 signature",
                [("message", limits::SIWE_MESSAGE), ("signature", limits::SIGNATURE)],
            ))
            .item(variant(
                "discord",
                "Link a Discord account: an OAuth2 authorization code and the redirect URI it was issued for",
                [("code", limits::OAUTH_CODE), ("redirect_uri", limits::REDIRECT_URI)],
            ))
            .description(Some("`POST /v1/me/verifications` body, by `kind`."))
            .build();
        utoipa::openapi::RefOr::T(utoipa::openapi::schema::Schema::OneOf(one_of))
    }
}

/// `202` body and `GET` body.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct VerificationView {
    /// Verification id.
    pub id: String,
    /// `wallet`, `discord`.
    pub kind: String,
    /// `pending`, `verified`, `rejected`.
    pub status: String,
    /// Why it was rejected.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The proven identity, once verified.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    /// When it was requested.
    pub requested_at: DateTime<Utc>,
    /// When the result was applied.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub completed_at: Option<DateTime<Utc>>,
}

/// Stores a pending verification and stages its request event.
#[utoipa::path(
    post, path = "/v1/me/verifications", operation_id = "requestVerification", tag = "palm-ids", security(("session" = [])), request_body = VerificationRequest,
    responses(
        (status = 202, description = "Accepted for verification; poll the `Location`", body = VerificationView,
            headers(("Location" = String, description = "The verification's URL"))),
        NeedsSession, BadBody,
        (status = 400, description = "`siwe_malformed`: a wallet link's message breaks EIP-4361's grammar (which a schema cannot state whole); `malformed_json`, `unreadable_body`: the body is not JSON", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "`unauthenticated`: no valid session; `siwe_nonce_invalid`: a wallet link's nonce is unknown, expired or used", body = Problem, content_type = "application/problem+json"),
        Always
    )
)]
#[tracing::instrument(skip_all, fields(palm_id = %session.0))]
pub async fn request(
    State(state): State<AppState>,
    session: Session,
    ApiJson(request): ApiJson<VerificationRequest>,
) -> Result<(StatusCode, HeaderMap, Json<VerificationView>), Problem> {
    let now = Utc::now();
    let proof = match &request {
        VerificationRequest::Wallet { message, signature } => {
            limits::SIWE_MESSAGE.check("message", message)?;
            limits::SIGNATURE.check("signature", signature)?;
            // The proof's nonce is used up here, where the nonces live: a
            // signed link message cannot be replayed (to this PalmID or to
            // another). The validator checks everything else.
            let parsed: palm_core::siwe::SiweMessage =
                message
                    .parse()
                    .map_err(|error: palm_core::siwe::SiweError| {
                        Problem::new(StatusCode::BAD_REQUEST, error.code(), "Not a SIWE message")
                            .with_detail(error.to_string())
                    })?;
            super::auth::consume_nonce(&state, &parsed.nonce, now).await?;
            Proof::Wallet { message, signature }
        }
        VerificationRequest::Discord { code, redirect_uri } => {
            limits::OAUTH_CODE.check("code", code)?;
            limits::REDIRECT_URI.check("redirect_uri", redirect_uri)?;
            Proof::Discord { code, redirect_uri }
        }
    };
    let id = verifications::request(state.store(), session.0, proof, now).await?;

    let headers = location(&format!("/v1/me/verifications/{id}"));
    let view = VerificationView {
        id: id.to_string(),
        kind: proof.kind().to_owned(),
        status: "pending".to_owned(),
        reason: None,
        subject: None,
        requested_at: now,
        completed_at: None,
    };
    Ok((StatusCode::ACCEPTED, headers, Json(view)))
}

/// The owner's view of one verification; another PalmID gets `404`.
#[utoipa::path(
    get, path = "/v1/me/verifications/{id}", operation_id = "getVerification", tag = "palm-ids", security(("session" = [])),
    params(("id" = String, Path, description = "Verification id")),
    responses((status = 200, description = "The verification, to its owner only", body = VerificationView), NeedsSession, NotFound, Always)
)]
#[tracing::instrument(skip_all, fields(palm_id = %session.0, %id))]
pub async fn show(
    State(state): State<AppState>,
    session: Session,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<VerificationView>, Problem> {
    let found = verifications::find_owned(state.store(), &id, session.0)
        .await?
        .ok_or_else(|| Problem::not_found("verification"))?;
    Ok(Json(VerificationView { id, ..found.into() }))
}

impl From<Verification> for VerificationView {
    fn from(found: Verification) -> Self {
        Self {
            id: found.id,
            kind: found.kind,
            status: found.status,
            reason: found.reason,
            subject: found.subject,
            requested_at: found.requested_at,
            completed_at: found.completed_at,
        }
    }
}
