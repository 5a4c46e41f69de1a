//! The public HTTP API under `/v1`.
//!
//! # Layout
//! - [`problem`]: RFC 9457 problem responses with stable codes.
//! - [`extract`]: the body, query and path extractors whose rejections are problems.
//! - [`idempotency`]: `Idempotency-Key` on mutating requests.
//! - [`limits`]: each limit on what clients send, as schema and check at once.
//! - [`state`]: [`AppState`], what every handler can reach.
//! - [`session`]: signed, expiring bearer tokens and the [`session::Session`] extractor.
//! - [`auth`]: `GET /v1/auth/nonce`, `POST /v1/auth/siwe`.
//! - [`palm_ids`]: `GET/PATCH /v1/me`, `GET /v1/palm-ids/{id}`.
//! - [`communities`]: create, list, get, join, leave, members.
//! - [`discussions`]: create, list, get.
//! - [`audit`]: `GET /v1/me/audit`, `GET /v1/communities/{slug}/audit`.
//! - [`pages`]: bounded cursor pagination shared by every list.
//! - [`openapi`]: the OpenAPI 3.1 document (`/openapi.json`) and Swagger UI (`/docs`).
//! - [`proposals`]: proposals and vote intake.
//! - [`rate_limit`]: per-client token buckets, `429` + `Retry-After`.
//! - [`verifications`]: `POST /v1/me/verifications`, `GET /v1/me/verifications/{id}`.
//!
//! [`router`] assembles them with the request limits (body size, time) and a
//! trace span per request; it needs no listener, so tests can drive it
//! directly, and [`serve`] runs it on a bound listener until shutdown.

pub mod audit;
pub mod auth;
pub mod communities;
pub mod discussions;
pub mod extract;
pub mod idempotency;
pub mod limits;
pub mod openapi;
pub mod pages;
pub mod palm_ids;
pub mod problem;
pub mod proposals;
pub mod rate_limit;
pub mod session;
pub mod state;
pub mod verifications;

use std::time::Duration;

use axum::Router;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;
use utoipa::OpenApi as _;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use problem::Problem;
pub use state::AppState;

/// Every API route with its documentation: the router and the OpenAPI
/// document are both split from this, so neither can list a route the
/// other lacks.
pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(openapi::ApiDoc::openapi())
        .routes(routes!(auth::nonce))
        .routes(routes!(auth::sign_in))
        .routes(routes!(palm_ids::me, palm_ids::update_me))
        .routes(routes!(palm_ids::public_view))
        .routes(routes!(verifications::request))
        .routes(routes!(verifications::show))
        .routes(routes!(communities::list, communities::create))
        .routes(routes!(communities::get_one))
        .routes(routes!(communities::join))
        .routes(routes!(communities::leave))
        .routes(routes!(communities::members))
        .routes(routes!(audit::community))
        .routes(routes!(discussions::list, discussions::create))
        .routes(routes!(discussions::get_one))
        .routes(routes!(proposals::list, proposals::create))
        .routes(routes!(proposals::get_one))
        .routes(routes!(proposals::results))
        .routes(routes!(proposals::cast))
        .routes(routes!(proposals::vote))
        .routes(routes!(audit::mine))
}

/// The OpenAPI document of [`routes`].
pub fn openapi_document() -> utoipa::openapi::OpenApi {
    routes().into_openapi()
}

/// The public router: the API, its document at `/openapi.json` and Swagger
/// UI at `/docs`.
pub fn router(state: AppState, settings: &crate::settings::HttpSettings) -> Router {
    let timeout = Duration::from_millis(settings.request_timeout_ms);
    let (api, document) = routes().split_for_parts();
    api.route(
        "/openapi.json",
        get(move || openapi::document(document.clone())),
    )
    .route("/docs", get(openapi::swagger_ui))
    .route(openapi::DOCS_ASSETS_ROUTE, get(openapi::swagger_asset))
    .fallback(|| async { Problem::new(StatusCode::NOT_FOUND, "no_route", "No such route") })
    .method_not_allowed_fallback(|| async {
        Problem::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            "Method not allowed",
        )
    })
    .layer(middleware::from_fn_with_state(
        idempotency::Idempotency::new(state.store().clone(), settings.body_limit_bytes),
        idempotency::honour,
    ))
    .layer(middleware::from_fn(errors_as_problems))
    .layer(DefaultBodyLimit::max(settings.body_limit_bytes))
    .layer(middleware::from_fn_with_state(
        rate_limit::RateLimiter::new(
            settings.rate_limit_per_second,
            settings.rate_limit_burst,
            settings
                .trust_forwarded_for
                .then_some(settings.forwarded_for_trusted_hops),
        ),
        rate_limit::limit_rate,
    ))
    .layer(middleware::from_fn_with_state(timeout, limit_time))
    .layer(middleware::from_fn(trace_request))
    .with_state(state)
}

/// Makes every error response a problem document, whatever produced it (a
/// layer, or an extractor a handler added without going through
/// [`extract`]): one error contract for every route (RFC 9457). The bare
/// text becomes the `detail`; the status and other headers are kept.
async fn errors_as_problems(request: Request, next: Next) -> Response {
    let response = next.run(request).await;
    let status = response.status();
    let is_problem = response
        .headers()
        .get(axum::http::header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/problem+json"));
    if is_problem || !(status.is_client_error() || status.is_server_error()) {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    let detail = axum::body::to_bytes(body, 4096)
        .await
        .ok()
        .and_then(|bytes| String::from_utf8(bytes.to_vec()).ok())
        .filter(|text| !text.trim().is_empty());
    let code = match status {
        StatusCode::BAD_REQUEST => "bad_request",
        StatusCode::NOT_FOUND => "no_route",
        StatusCode::METHOD_NOT_ALLOWED => "method_not_allowed",
        StatusCode::PAYLOAD_TOO_LARGE => "body_too_large",
        StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported_media_type",
        StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE => "headers_too_large",
        _ if status.is_server_error() => "internal",
        _ => "request_refused",
    };
    let mut problem = Problem::new(status, code, status.canonical_reason().unwrap_or("Error"));
    if let Some(detail) = detail {
        problem = problem.with_detail(detail);
    }
    let mut response = problem.into_response();
    parts.headers.remove(axum::http::header::CONTENT_TYPE);
    parts.headers.remove(axum::http::header::CONTENT_LENGTH);
    for (name, value) in &parts.headers {
        response.headers_mut().entry(name).or_insert(value.clone());
    }
    response
}

/// Answers `503` with a problem when a request runs past its time limit.
async fn limit_time(State(timeout): State<Duration>, request: Request, next: Next) -> Response {
    match tokio::time::timeout(timeout, next.run(request)).await {
        Ok(response) => response,
        Err(_) => Problem::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "timeout",
            "The request took too long",
        )
        .into_response(),
    }
}

/// One span per request, carrying its trace id so every log line of the
/// request names it; then the request's metrics.
async fn trace_request(request: Request, next: Next) -> Response {
    let started = std::time::Instant::now();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let method = request.method().as_str().to_owned();
    let span = tracing::info_span!(
        "http.request",
        method = %method,
        route = %route,
        status = tracing::field::Empty,
        trace_id = tracing::field::Empty,
    );
    if !span.is_disabled() {
        span.record("trace_id", palm_amqp::headers::trace_id(&span));
    }
    let response = next.run(request).instrument(span.clone()).await;
    span.record("status", response.status().as_u16());
    let labels = request_labels(route, method, response.status().as_u16());
    palm_service::metrics::counter!("palm_http_requests_total", &labels).increment(1);
    palm_service::metrics::histogram!("palm_http_request_duration_seconds", &labels)
        .record(started.elapsed().as_secs_f64());
    response
}

fn request_labels(route: String, method: String, status: u16) -> [(&'static str, String); 3] {
    [
        ("route", route),
        ("method", method),
        ("status", status.to_string()),
    ]
}

/// Registers the request series at zero for every documented operation:
/// `palm_http_requests_total` for each status the OpenAPI document lists
/// (so a 5xx ratio reads 0, not "no data", before the first error), and
/// `palm_http_request_duration_seconds` for each success status. Labels a
/// request can take beyond these (undocumented routes, `unmatched`) appear
/// when first seen.
pub fn register_metrics() {
    for (route, method, status) in documented_responses() {
        let labels = request_labels(route, method, status);
        let _ = palm_service::metrics::counter!("palm_http_requests_total", &labels);
        if (200..300).contains(&status) {
            let _ =
                palm_service::metrics::histogram!("palm_http_request_duration_seconds", &labels);
        }
    }
}

/// `(route, METHOD, status)` for every response of every operation in the
/// OpenAPI document.
pub fn documented_responses() -> Vec<(String, String, u16)> {
    let mut found = Vec::new();
    for (path, item) in openapi_document().paths.paths {
        let operations = [
            ("GET", &item.get),
            ("PUT", &item.put),
            ("POST", &item.post),
            ("DELETE", &item.delete),
            ("PATCH", &item.patch),
        ];
        for (method, operation) in operations {
            let Some(operation) = operation else {
                continue;
            };
            for status in operation.responses.responses.keys() {
                if let Ok(status) = status.parse::<u16>() {
                    found.push((path.clone(), method.to_owned(), status));
                }
            }
        }
    }
    found
}

/// Serves `router` on `listener` until `shutdown`, draining open requests.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    axum::serve(
        listener,
        router.into_make_service_with_connect_info::<std::net::SocketAddr>(),
    )
    .with_graceful_shutdown(async move { shutdown.cancelled().await })
    .await
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    /// The paths the served router matches, read from its `Debug` output
    /// (axum has no route listing). The `len` check below makes a change of
    /// that format fail loudly instead of passing vacuously.
    fn served_paths(router: &Router) -> BTreeSet<String> {
        let debug = format!("{router:?}");
        debug
            .split('"')
            .filter(|part| part.starts_with('/'))
            .map(str::to_owned)
            .collect()
    }

    #[tokio::test]
    async fn the_openapi_document_lists_every_route_the_router_serves() {
        // A client that never connects: only the router's shape is read.
        let store = crate::store::Store::unconnected().await.unwrap();
        let settings = crate::settings::Settings::default();
        let router = router(AppState::new(store, &settings).unwrap(), &settings.http);
        let mut served = served_paths(&router);
        // The document's own routes, and the catch-all that answers
        // `no_route`, are not API operations.
        for meta in [
            "/openapi.json",
            "/docs",
            openapi::DOCS_ASSETS_ROUTE,
            "/",
            "/{*__private__axum_fallback}",
        ] {
            assert!(served.remove(meta), "{meta} in {served:?}");
        }
        let documented: BTreeSet<String> = openapi_document().paths.paths.into_keys().collect();
        assert!(served.len() >= 20, "routes found: {served:?}");
        assert_eq!(served, documented);
    }

    #[test]
    fn every_operation_documents_a_success_and_the_request_series_cover_it() {
        let responses = documented_responses();
        let operations: BTreeSet<(String, String)> = responses
            .iter()
            .map(|(route, method, _)| (route.clone(), method.clone()))
            .collect();
        assert!(operations.len() >= 20, "{operations:?}");
        for (route, method) in &operations {
            assert!(
                responses
                    .iter()
                    .any(|(r, m, s)| r == route && m == method && (200..300).contains(s)),
                "{method} {route} has a 2xx"
            );
            assert!(
                responses
                    .iter()
                    .any(|(r, m, s)| r == route && m == method && *s == 500),
                "{method} {route} documents 500"
            );
        }
        // Axum's matched path is the same template as the document's key.
        assert!(operations.contains(&("/v1/communities/{slug}".to_owned(), "GET".to_owned())));
    }

    #[test]
    fn the_document_is_openapi_3_1_with_problem_errors_and_a_session_scheme() {
        let document: serde_json::Value =
            serde_json::from_str(&openapi_document().to_json().unwrap()).unwrap();
        assert_eq!(document["openapi"], "3.1.0");
        assert!(document["components"]["schemas"]["Problem"].is_object());
        assert!(document["components"]["securitySchemes"]["session"].is_object());
        let mut operation_ids = BTreeSet::new();
        let operations = document["paths"]
            .as_object()
            .unwrap()
            .values()
            .flat_map(|item| item.as_object().unwrap().values());
        for operation in operations {
            let id = operation["operationId"].as_str().unwrap();
            assert!(
                operation_ids.insert(id.to_owned()),
                "operationId {id} twice"
            );
            let responses = operation["responses"].as_object().unwrap();
            assert!(
                responses.contains_key("429") && responses.contains_key("500"),
                "{operation}"
            );
            for (status, response) in responses {
                if status.starts_with('4') || status.starts_with('5') {
                    assert!(
                        response["content"]["application/problem+json"].is_object(),
                        "{status} of {operation}"
                    );
                }
            }
        }
    }
}
