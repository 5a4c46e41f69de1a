//! `Idempotency-Key` on mutating requests (IETF
//! draft-ietf-httpapi-idempotency-key-header): a client that may retry a
//! `POST`, `PATCH`, `PUT` or `DELETE` (its connection dropped before the
//! answer came) sends a key it made up; the first request with that key is
//! run and its answer kept for [`RETENTION`], and every later request with
//! the same key gets that same answer (`Idempotent-Replayed: true`) without
//! running again.
//!
//! - Keys are scoped to the credentials that sent them (a hash of the
//!   `Authorization` value), so one client's key never answers another's
//!   request; requests without credentials are not keyed (sign-in uses up a
//!   single-use nonce anyway, and its answer is a session token no one else
//!   may be replayed).
//! - The same key with another method, path or body: `422
//!   idempotency_key_reused`. The same key while its first request still
//!   runs: `409 idempotency_key_in_progress` (retry later).
//! - A first request that failed on the server side (`5xx`) keeps nothing,
//!   so a retry runs again.
//! - A key is 1–255 visible ASCII characters (`400 invalid_idempotency_key`
//!   otherwise).
//!
//! The claim is an insert on a unique `_id` (the zero2prod pattern): two
//! racing requests cannot both run. The records are
//! [`crate::store::idempotency`].

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use sha2::{Digest as _, Sha256};

use super::problem::Problem;
use crate::store::{Store, idempotency as keys};

pub use crate::store::idempotency::RETENTION;

/// The request header.
pub const HEADER: &str = "idempotency-key";

/// Set on a replayed answer.
pub const REPLAYED: &str = "idempotent-replayed";

/// Response headers kept with the answer.
const KEPT_HEADERS: [HeaderName; 3] = [header::CONTENT_TYPE, header::LOCATION, header::RETRY_AFTER];

/// What the middleware needs.
#[derive(Debug, Clone)]
pub struct Idempotency {
    store: Store,
    body_limit: usize,
}

impl Idempotency {
    /// Keys in `store`; bodies up to `body_limit` bytes (`http.body_limit_bytes`).
    pub fn new(store: Store, body_limit: usize) -> Self {
        Self { store, body_limit }
    }
}

/// The middleware.
pub async fn honour(State(store): State<Idempotency>, request: Request, next: Next) -> Response {
    let mutating = matches!(
        *request.method(),
        Method::POST | Method::PATCH | Method::PUT | Method::DELETE
    );
    let (Some(key), Some(credentials), true) = (
        request.headers().get(HEADER).cloned(),
        request.headers().get(header::AUTHORIZATION).cloned(),
        mutating,
    ) else {
        return next.run(request).await;
    };
    match run_once(&store, key, &credentials, request, next).await {
        Ok(response) | Err(response) => response,
    }
}

async fn run_once(
    store: &Idempotency,
    key: HeaderValue,
    credentials: &HeaderValue,
    request: Request,
    next: Next,
) -> Result<Response, Response> {
    let key = valid_key(&key).ok_or_else(|| {
        Problem::new(
            StatusCode::BAD_REQUEST,
            "invalid_idempotency_key",
            "The Idempotency-Key header is invalid",
        )
        .with_detail("use 1 to 255 visible ASCII characters")
        .into_response()
    })?;
    let (parts, body) = request.into_parts();
    let body = axum::body::to_bytes(body, store.body_limit)
        .await
        .map_err(|_| {
            Problem::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "body_too_large",
                "The body is too large",
            )
            .into_response()
        })?;
    let id = hex::encode(Sha256::digest(
        [credentials.as_bytes(), b"\n", key.as_bytes()].concat(),
    ));
    let fingerprint = hex::encode(Sha256::digest(
        [
            parts.method.as_str().as_bytes(),
            b" ",
            parts.uri.path().as_bytes(),
            b"\n",
            &body,
        ]
        .concat(),
    ));

    match keys::claim(&store.store, &id, &fingerprint).await {
        Ok(true) => {}
        Ok(false) => return Err(answer_again(store, &id, &fingerprint).await),
        Err(error) => return Err(Problem::from(error).into_response()),
    }

    let response = next.run(Request::from_parts(parts, Body::from(body))).await;
    Ok(keep(store, &id, response).await)
}

/// Keeps `response` as the key's answer (or forgets the key after a `5xx`,
/// so a retry runs again) and returns it.
async fn keep(store: &Idempotency, id: &str, response: Response) -> Response {
    if response.status().is_server_error() {
        if let Err(error) = keys::release(&store.store, id).await {
            tracing::warn!(%error, "failed to release an idempotency key after a server error");
        }
        return response;
    }
    let (parts, body) = response.into_parts();
    // Answers are small JSON documents, kept as text.
    let Ok(bytes) = axum::body::to_bytes(body, 1 << 20).await else {
        let _ = keys::release(&store.store, id).await;
        return Problem::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "Internal error",
        )
        .into_response();
    };
    let Ok(text) = std::str::from_utf8(&bytes) else {
        // Not text: passed on unkept, and the key released.
        let _ = keys::release(&store.store, id).await;
        return Response::from_parts(parts, Body::from(bytes));
    };
    let headers: Vec<(&str, &str)> = KEPT_HEADERS
        .iter()
        .filter_map(|name| {
            let value = parts.headers.get(name).and_then(|v| v.to_str().ok())?;
            Some((name.as_str(), value))
        })
        .collect();
    let kept = keys::keep(&store.store, id, parts.status.as_u16(), &headers, text).await;
    if let Err(error) = kept {
        // The answer still goes out; a retry then finds the key running
        // until it expires, and is told to wait (409), never run twice.
        tracing::warn!(%error, "failed to keep an idempotent answer");
    }
    Response::from_parts(parts, Body::from(bytes))
}

/// The answer to a key seen before: its kept answer, or why there is none.
async fn answer_again(store: &Idempotency, id: &str, fingerprint: &str) -> Response {
    let found = match keys::find(&store.store, id).await {
        Ok(Some(found)) => found,
        // Expired between the insert and the read: ask for a retry.
        Ok(None) => return in_progress(),
        Err(error) => return Problem::from(error).into_response(),
    };
    if found.fingerprint != fingerprint {
        return Problem::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "idempotency_key_reused",
            "This Idempotency-Key was used for another request",
        )
        .into_response();
    }
    if found.state != "done" {
        return in_progress();
    }
    let status = found
        .status
        .and_then(|s| u16::try_from(s).ok())
        .and_then(|s| StatusCode::from_u16(s).ok())
        .unwrap_or(StatusCode::OK);
    let mut headers = HeaderMap::new();
    for (name, value) in &found.headers {
        if let (Ok(name), Ok(value)) = (
            HeaderName::try_from(name.as_str()),
            HeaderValue::from_str(value),
        ) {
            headers.insert(name, value);
        }
    }
    headers.insert(REPLAYED, HeaderValue::from_static("true"));
    let body = Bytes::copy_from_slice(found.body.as_bytes());
    (status, headers, body).into_response()
}

fn in_progress() -> Response {
    let mut problem = Problem::new(
        StatusCode::CONFLICT,
        "idempotency_key_in_progress",
        "A request with this Idempotency-Key is still running",
    )
    .with_detail("retry after the time in Retry-After");
    problem.retry_after = Some(1);
    problem.into_response()
}

/// A key of 1–255 visible ASCII characters, surrounding quotes (the
/// draft's structured-field string form) removed.
fn valid_key(value: &HeaderValue) -> Option<&str> {
    let text = value.to_str().ok()?.trim();
    let text = text
        .strip_prefix('"')
        .and_then(|t| t.strip_suffix('"'))
        .unwrap_or(text);
    let visible = text.bytes().all(|b| b.is_ascii_graphic());
    (visible && (1..=255).contains(&text.len())).then_some(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_is_one_to_255_visible_ascii_characters() {
        let key = |s: &'static str| valid_key(&HeaderValue::from_static(s)).map(str::to_owned);
        let uuid = "8e03978e-40d5-43e8-bc93-6894a57f9324";
        assert_eq!(key(uuid).as_deref(), Some(uuid));
        assert_eq!(key("\"abc\"").as_deref(), Some("abc"));
        assert_eq!(key(""), None);
        assert_eq!(key("\"\""), None);
        assert_eq!(key("a b"), None);
        let long = "k".repeat(256);
        assert_eq!(valid_key(&HeaderValue::from_str(&long).unwrap()), None);
    }
}
