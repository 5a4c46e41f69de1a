//! The request extractors of the public API: axum's JSON body, query string
//! and path extractors with every rejection turned into a problem response,
//! so a malformed body, query or path gets a clear 4xx with a stable `code`,
//! never a bare text. Handlers use only these (clippy's `disallowed-types`
//! refuses axum's own `Query` and `Path` in this crate).
//!
//! - [`ApiJson`]: `400 malformed_json`, `422 invalid_body`,
//!   `415 unsupported_media_type`, `413 body_too_large`.
//! - [`ApiQuery`]: `400 invalid_query`.
//! - [`ApiPath`]: `400 invalid_path`.

use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::StatusCode;
use axum::http::request::Parts;

use super::problem::Problem;

/// A JSON request body of type `T`.
#[derive(Debug, Clone)]
pub struct ApiJson<T>(pub T);

impl<S, T> FromRequest<S> for ApiJson<T>
where
    axum::Json<T>: FromRequest<S, Rejection = JsonRejection>,
    S: Send + Sync,
{
    type Rejection = Problem;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        match axum::Json::<T>::from_request(request, state).await {
            Ok(axum::Json(value)) => Ok(Self(value)),
            Err(rejection) => Err(problem_for(&rejection)),
        }
    }
}

fn problem_for(rejection: &JsonRejection) -> Problem {
    let detail = rejection.body_text();
    match rejection {
        JsonRejection::JsonDataError(_) => Problem::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_body",
            "The body does not match the schema",
        ),
        JsonRejection::JsonSyntaxError(_) => Problem::new(
            StatusCode::BAD_REQUEST,
            "malformed_json",
            "The body is not valid JSON",
        ),
        JsonRejection::MissingJsonContentType(_) => Problem::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "Send the body as application/json",
        ),
        _ if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE => Problem::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "body_too_large",
            "The body is too large",
        ),
        _ => Problem::new(
            StatusCode::BAD_REQUEST,
            "unreadable_body",
            "The body could not be read",
        ),
    }
    .with_detail(detail)
}

/// A query string deserialized into `T` (serde_urlencoded, as axum's `Query`).
#[derive(Debug, Clone)]
pub struct ApiQuery<T>(pub T);

#[allow(
    clippy::disallowed_types,
    reason = "the one wrapper around axum's Query"
)]
impl<S, T> FromRequestParts<S> for ApiQuery<T>
where
    axum::extract::Query<T>: FromRequestParts<S, Rejection = QueryRejection>,
    S: Send + Sync,
{
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Query(value)) => Ok(Self(value)),
            Err(rejection) => Err(Problem::new(
                StatusCode::BAD_REQUEST,
                "invalid_query",
                "The query string is invalid",
            )
            .with_detail(rejection.body_text())),
        }
    }
}

/// Path parameters deserialized into `T`.
#[derive(Debug, Clone)]
pub struct ApiPath<T>(pub T);

#[allow(
    clippy::disallowed_types,
    reason = "the one wrapper around axum's Path"
)]
impl<S, T> FromRequestParts<S> for ApiPath<T>
where
    axum::extract::Path<T>: FromRequestParts<S, Rejection = PathRejection>,
    S: Send + Sync,
{
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match axum::extract::Path::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(value)) => Ok(Self(value)),
            Err(rejection) => Err(Problem::new(
                StatusCode::BAD_REQUEST,
                "invalid_path",
                "A path parameter is invalid",
            )
            .with_detail(rejection.body_text())),
        }
    }
}
