//! Sign-In with Ethereum: a single-use nonce, then a signed EIP-4361 message.
//! The first sign-in of a wallet creates its PalmID with the wallet as its
//! first verifier.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use chrono::Utc;
use palm_core::eth::AddressText;
use palm_core::siwe::{self, SiweError};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::extract::ApiJson;
use super::limits;
use super::openapi::{Always, BadBody};
use super::problem::Problem;
use super::state::AppState;
use crate::store::{nonces, palm_ids};

/// `GET /v1/auth/nonce` response.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct NonceResponse {
    /// Put this in the message's `Nonce:` line; usable once.
    pub nonce: String,
    /// After this the nonce is refused.
    pub expires_at: chrono::DateTime<Utc>,
}

/// Issues a single-use nonce.
#[utoipa::path(
    get, path = "/v1/auth/nonce", operation_id = "getNonce", tag = "auth",
    responses((status = 200, description = "A single-use nonce", body = NonceResponse), Always)
)]
#[tracing::instrument(skip_all)]
pub async fn nonce(State(state): State<AppState>) -> Result<Json<NonceResponse>, Problem> {
    let nonce = Uuid::new_v4().simple().to_string();
    let expires_at = Utc::now()
        + chrono::Duration::from_std(state.inner.nonce_ttl).unwrap_or(chrono::Duration::minutes(5));
    nonces::issue(state.store(), &nonce, expires_at).await?;
    Ok(Json(NonceResponse { nonce, expires_at }))
}

/// Uses up `nonce`: single use, so only one request can delete it, and only
/// before it expires. `401 siwe_nonce_invalid` otherwise.
pub(crate) async fn consume_nonce(
    state: &AppState,
    nonce: &str,
    now: chrono::DateTime<Utc>,
) -> Result<(), Problem> {
    if !nonces::consume(state.store(), nonce, now).await? {
        return Err(Problem::new(
            StatusCode::UNAUTHORIZED,
            "siwe_nonce_invalid",
            "Sign-in refused",
        )
        .with_detail("the nonce is unknown, expired or already used"));
    }
    Ok(())
}

/// `POST /v1/auth/siwe` body.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SignInRequest {
    /// The EIP-4361 message exactly as signed.
    #[schema(schema_with = siwe_message_schema)]
    pub message: String,
    /// `0x` hex EIP-191 signature over `message`.
    #[schema(schema_with = signature_schema)]
    pub signature: String,
}

fn siwe_message_schema() -> utoipa::openapi::schema::Object {
    limits::SIWE_MESSAGE.schema()
}

fn signature_schema() -> utoipa::openapi::schema::Object {
    limits::SIGNATURE.schema()
}

/// `POST /v1/auth/siwe` response.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct SignInResponse {
    /// Bearer token for `Authorization: Bearer …`.
    pub token: String,
    /// Always `Bearer`.
    pub token_type: &'static str,
    /// When the token stops working.
    pub expires_at: chrono::DateTime<Utc>,
    /// The signed-in PalmID.
    pub palm_id: Uuid,
    /// Whether this sign-in created the PalmID.
    pub created: bool,
}

fn refused(error: &SiweError) -> Problem {
    let status = match error {
        SiweError::Malformed(_) | SiweError::MalformedSignature => StatusCode::BAD_REQUEST,
        _ => StatusCode::UNAUTHORIZED,
    };
    Problem::new(status, error.code(), "Sign-in refused").with_detail(error.to_string())
}

/// Verifies the message and signature, consumes the nonce, and returns a
/// session for the wallet's PalmID (created on first sign-in).
#[utoipa::path(
    post, path = "/v1/auth/siwe", operation_id = "signIn", tag = "auth", request_body = SignInRequest,
    responses(
        (status = 200, description = "Signed in; the PalmID is created on first sign-in", body = SignInResponse),
        (status = 401, description = "`siwe_*`: the message, nonce or signature is refused (each reason has its own code)", body = Problem, content_type = "application/problem+json"),
        BadBody,
        (status = 400, description = "`siwe_malformed`: the message breaks EIP-4361's grammar (which a schema cannot state whole: an EIP-55 checksummed address, RFC 3986 URIs, RFC 3339 times); `siwe_malformed_signature`: r and s are no secp256k1 signature; `malformed_json`, `unreadable_body`: the body is not JSON", body = Problem, content_type = "application/problem+json"),
        Always
    )
)]
#[tracing::instrument(skip_all)]
pub async fn sign_in(
    State(state): State<AppState>,
    ApiJson(request): ApiJson<SignInRequest>,
) -> Result<Json<SignInResponse>, Problem> {
    limits::SIWE_MESSAGE.check("message", &request.message)?;
    limits::SIGNATURE.check("signature", &request.signature)?;
    let now = Utc::now();
    let message = siwe::verify(&request.message, &request.signature, &state.inner.siwe, now)
        .map_err(|e| refused(&e))?;
    consume_nonce(&state, &message.nonce, now).await?;
    let (palm_id, created) =
        palm_ids::find_or_create_for(state.store(), "wallet", &message.address.to_lower_hex())
            .await?;
    let (token, expires_at) = state.inner.sessions.issue(palm_id, now);
    tracing::info!(%palm_id, created, "signed in");
    Ok(Json(SignInResponse {
        token,
        token_type: "Bearer",
        expires_at,
        palm_id,
        created,
    }))
}
