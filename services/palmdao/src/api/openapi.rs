//! The OpenAPI 3.1 document, generated from the handlers' `#[utoipa::path]`
//! annotations and the request/response types, served at `/openapi.json`,
//! with Swagger UI at `/docs`.
//!
//! The router and the document come from one list of routes
//! ([`super::routes`]), so a route cannot be served without being
//! documented. Errors are documented per operation through the response
//! groups below, each a set of RFC 9457 problem responses.

use std::collections::BTreeMap;

use axum::http::header;
use axum::response::{Html, IntoResponse, Response};
use utoipa::openapi::header::HeaderBuilder;
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::openapi::{ContentBuilder, Ref, RefOr, ResponseBuilder};
use utoipa::{IntoResponses, Modify, OpenApi};

use super::problem::Problem;

/// Content type of every error.
pub const PROBLEM_JSON: &str = "application/problem+json";
/// Name of the bearer-session security scheme.
pub const SESSION: &str = "session";

/// The document's fixed parts; operations are added by the router.
#[derive(Debug, OpenApi)]
#[openapi(
    info(
        title = "Palm API",
        description = "Gasless DAO governance: PalmIDs and Sign-In with Ethereum, verifiers, communities, discussions, proposals and signed votes. Errors are RFC 9457 problem details with a stable `code`; lists are cursor-paginated (`limit` 1–100, `cursor` = previous `next_cursor`).",
        license(name = "Apache-2.0")
    ),
    components(schemas(Problem)),
    modifiers(&SessionScheme),
    tags(
        (name = "auth", description = "Sign-In with Ethereum and sessions"),
        (name = "palm-ids", description = "PalmIDs and their verifiers"),
        (name = "communities", description = "Communities and memberships"),
        (name = "discussions", description = "Discussion threads"),
        (name = "proposals", description = "Proposals and signed votes"),
        (name = "audit", description = "The append-only audit log"),
    )
)]
pub struct ApiDoc;

#[derive(Debug)]
struct SessionScheme;

impl Modify for SessionScheme {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        let mut bearer = Http::new(HttpAuthScheme::Bearer);
        bearer.description = Some("The `token` from `POST /v1/auth/siwe`.".to_owned());
        components.add_security_scheme(SESSION, SecurityScheme::Http(bearer));
    }
}

fn problem(description: &str) -> RefOr<utoipa::openapi::Response> {
    ResponseBuilder::new()
        .description(description)
        .content(
            PROBLEM_JSON,
            ContentBuilder::new()
                .schema(Some(Ref::from_schema_name("Problem")))
                .build(),
        )
        .build()
        .into()
}

fn responses(list: &[(&str, &str)]) -> BTreeMap<String, RefOr<utoipa::openapi::Response>> {
    list.iter()
        .map(|(status, description)| ((*status).to_owned(), problem(description)))
        .collect()
}

/// Errors any route may answer: rate limit, time limit, internal.
#[derive(Debug)]
pub struct Always;

impl IntoResponses for Always {
    fn responses() -> BTreeMap<String, RefOr<utoipa::openapi::Response>> {
        let mut all = responses(&[
            ("503", "`timeout`: the request ran past its time limit"),
            (
                "500",
                "`internal`: an internal error (logged with its cause)",
            ),
        ]);
        let limited = ResponseBuilder::new()
            .description("`rate_limited`: too many requests from this client")
            .header(
                "Retry-After",
                HeaderBuilder::new()
                    .description(Some("Seconds to wait before retrying"))
                    .build(),
            )
            .content(
                PROBLEM_JSON,
                ContentBuilder::new()
                    .schema(Some(Ref::from_schema_name("Problem")))
                    .build(),
            )
            .build();
        all.insert("429".to_owned(), limited.into());
        all
    }
}

/// A session is required.
#[derive(Debug)]
pub struct NeedsSession;

impl IntoResponses for NeedsSession {
    fn responses() -> BTreeMap<String, RefOr<utoipa::openapi::Response>> {
        responses(&[(
            "401",
            "`unauthenticated`: no valid, unexpired session token",
        )])
    }
}

/// The body is JSON that may be malformed, too large or invalid.
#[derive(Debug)]
pub struct BadBody;

impl IntoResponses for BadBody {
    fn responses() -> BTreeMap<String, RefOr<utoipa::openapi::Response>> {
        responses(&[
            (
                "400",
                "`malformed_json`, `unreadable_body`: the body is not JSON",
            ),
            ("413", "`body_too_large`: the body exceeds the size limit"),
            ("415", "`unsupported_media_type`: send `application/json`"),
            (
                "422",
                "`invalid_body` (does not match the schema) or `validation_failed` (a value is out of range)",
            ),
        ])
    }
}

/// A query parameter may be out of range (`limit`, `status`).
#[derive(Debug)]
pub struct BadQuery;

impl IntoResponses for BadQuery {
    fn responses() -> BTreeMap<String, RefOr<utoipa::openapi::Response>> {
        responses(&[
            ("400", "the query string cannot be read"),
            ("422", "`validation_failed`: a query value is out of range"),
        ])
    }
}

/// The named resource may not exist.
#[derive(Debug)]
pub struct NotFound;

impl IntoResponses for NotFound {
    fn responses() -> BTreeMap<String, RefOr<utoipa::openapi::Response>> {
        responses(&[("404", "`not_found`: no such resource")])
    }
}

/// Only some callers may do this.
#[derive(Debug)]
pub struct Forbidden;

impl IntoResponses for Forbidden {
    fn responses() -> BTreeMap<String, RefOr<utoipa::openapi::Response>> {
        responses(&[(
            "403",
            "`not_admin`, `not_a_member` or `level_too_low`: the caller may not do this",
        )])
    }
}

/// The change conflicts with the current state.
#[derive(Debug)]
pub struct Conflict;

impl IntoResponses for Conflict {
    fn responses() -> BTreeMap<String, RefOr<utoipa::openapi::Response>> {
        responses(&[(
            "409",
            "`slug_taken`, `handle_taken`, `identity_in_use` or `admin_cannot_leave`",
        )])
    }
}

/// `GET /openapi.json`.
pub async fn document(openapi: utoipa::openapi::OpenApi) -> Response {
    match openapi.to_json() {
        Ok(json) => ([(header::CONTENT_TYPE, "application/json")], json).into_response(),
        Err(error) => Problem::internal(&anyhow::Error::new(error)).into_response(),
    }
}

/// `GET /docs`: Swagger UI over `/openapi.json`. The UI's assets come from a
/// CDN at the reader's browser, so the service ships no front-end files.
pub async fn swagger_ui() -> Html<&'static str> {
    Html(SWAGGER_UI)
}

const SWAGGER_UI: &str = r##"<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <title>Palm API</title>
  <link rel="stylesheet" href="https://unpkg.com/swagger-ui-dist@5/swagger-ui.css">
</head>
<body>
  <div id="swagger-ui"></div>
  <script src="https://unpkg.com/swagger-ui-dist@5/swagger-ui-bundle.js" crossorigin></script>
  <script>
    window.ui = SwaggerUIBundle({ url: "/openapi.json", dom_id: "#swagger-ui" });
  </script>
</body>
</html>
"##;
