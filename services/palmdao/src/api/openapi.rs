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

// ---- Swagger UI at /docs (ADR 0026) ------------------------------------------

/// `GET /docs`: Swagger UI over `/openapi.json`, from a pinned copy of
/// swagger-ui-dist vendored into `services/palmdao/assets/swagger-ui/` (by
/// `scripts/vendor-swagger-ui.sh`) and embedded in the binary, so the page
/// works with no network beyond this server. The page has no inline script
/// or style and is served under [`DOCS_CSP`].
pub async fn swagger_ui() -> Response {
    (
        [
            (header::CONTENT_SECURITY_POLICY, DOCS_CSP),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::X_FRAME_OPTIONS, "DENY"),
            (header::REFERRER_POLICY, "no-referrer"),
            // The page names its assets by content hash: it is revalidated
            // on every load, so a new release's assets are picked up at once.
            (header::CACHE_CONTROL, "no-cache"),
        ],
        Html(docs_assets().page.clone()),
    )
        .into_response()
}

/// The route of [`swagger_asset`].
pub const DOCS_ASSETS_ROUTE: &str = "/docs/assets/{file}";

/// `/docs`'s Content-Security-Policy: everything from this origin only, no
/// inline script, no inline `<style>` (Swagger UI sets element styles
/// through the CSSOM, which `style-src` does not govern), `data:` images
/// for the icons swagger-ui.css inlines, no framing, no plugins.
pub const DOCS_CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
img-src 'self' data:; font-src 'self'; connect-src 'self'; form-action 'self'; \
base-uri 'none'; frame-ancestors 'none'";

/// `GET /docs/assets/{file}`: one of the page's files. Their names carry a
/// hash of their content, so they are cached for a year as immutable;
/// Swagger UI's files are sent gzip-encoded to clients that accept it.
pub async fn swagger_asset(
    super::extract::ApiPath(file): super::extract::ApiPath<String>,
    request_headers: axum::http::HeaderMap,
) -> Response {
    let Some(asset) = docs_assets()
        .files
        .iter()
        .find_map(|(name, asset)| (*name == file).then_some(*asset))
    else {
        return Problem::new(
            axum::http::StatusCode::NOT_FOUND,
            "no_route",
            "No such documentation asset",
        )
        .into_response();
    };
    let headers = [
        (header::CONTENT_TYPE, asset.content_type),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::CACHE_CONTROL, "public, max-age=31536000, immutable"),
    ];
    match asset.body {
        Body::Plain(bytes) => (headers, bytes).into_response(),
        Body::Gzip(gzip) if accepts_gzip(&request_headers) => (
            headers,
            [
                (header::CONTENT_ENCODING, "gzip"),
                (header::VARY, "accept-encoding"),
            ],
            gzip,
        )
            .into_response(),
        Body::Gzip(gzip) => match asset.plain.get_or_init(|| gunzip(gzip)) {
            Some(plain) => (
                headers,
                [(header::VARY, "accept-encoding")],
                plain.as_slice(),
            )
                .into_response(),
            None => Problem::internal(&anyhow::anyhow!("embedded asset {file} is not gzip"))
                .into_response(),
        },
    }
}

/// A file of the documentation page, embedded at build time.
#[derive(Debug)]
struct Asset {
    /// Its name before the content hash, and its extension.
    stem: &'static str,
    extension: &'static str,
    content_type: &'static str,
    body: Body,
    /// A [`Body::Gzip`] decompressed, once, for clients without gzip.
    plain: std::sync::OnceLock<Option<Vec<u8>>>,
}

#[derive(Debug, Clone, Copy)]
enum Body {
    Plain(&'static [u8]),
    /// `gzip -9n` output (no name, no time: the header is 10 bytes).
    Gzip(&'static [u8]),
}

impl Asset {
    const fn new(
        stem: &'static str,
        extension: &'static str,
        content_type: &'static str,
        body: Body,
    ) -> Self {
        Self {
            stem,
            extension,
            content_type,
            body,
            plain: std::sync::OnceLock::new(),
        }
    }
}

static BUNDLE: Asset = Asset::new(
    "swagger-ui-bundle",
    "js",
    "text/javascript; charset=utf-8",
    Body::Gzip(include_bytes!(
        "../../assets/swagger-ui/swagger-ui-bundle.js.gz"
    )),
);
static STYLESHEET: Asset = Asset::new(
    "swagger-ui",
    "css",
    "text/css; charset=utf-8",
    Body::Gzip(include_bytes!("../../assets/swagger-ui/swagger-ui.css.gz")),
);
static INITIALIZER: Asset = Asset::new(
    "palm-docs",
    "js",
    "text/javascript; charset=utf-8",
    Body::Plain(include_bytes!("../../assets/palm-docs.js")),
);
static FAVICON: Asset = Asset::new(
    "favicon",
    "png",
    "image/png",
    Body::Plain(include_bytes!("../../assets/swagger-ui/favicon-32x32.png")),
);

/// The page and its files under their content-addressed names.
#[derive(Debug)]
struct DocsAssets {
    page: String,
    files: Vec<(String, &'static Asset)>,
}

fn docs_assets() -> &'static DocsAssets {
    static ASSETS: std::sync::LazyLock<DocsAssets> = std::sync::LazyLock::new(|| {
        let name = |asset: &Asset| {
            let bytes = match asset.body {
                Body::Plain(bytes) | Body::Gzip(bytes) => bytes,
            };
            let digest = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(bytes));
            format!("{}.{}.{}", asset.stem, &digest[..16], asset.extension)
        };
        let [favicon, stylesheet, bundle, initializer] =
            [&FAVICON, &STYLESHEET, &BUNDLE, &INITIALIZER].map(name);
        let page = format!(
            r#"<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <meta name="viewport" content="width=device-width, initial-scale=1">
  <title>Palm API</title>
  <link rel="icon" type="image/png" href="/docs/assets/{favicon}">
  <link rel="stylesheet" href="/docs/assets/{stylesheet}">
</head>
<body>
  <div id="swagger-ui"></div>
  <script src="/docs/assets/{bundle}"></script>
  <script src="/docs/assets/{initializer}"></script>
</body>
</html>
"#
        );
        DocsAssets {
            page,
            files: vec![
                (favicon, &FAVICON),
                (stylesheet, &STYLESHEET),
                (bundle, &BUNDLE),
                (initializer, &INITIALIZER),
            ],
        }
    });
    &ASSETS
}

/// Whether `Accept-Encoding` lists gzip (or `*`) with a non-zero weight.
/// Without the header the file is sent as it is: a plain `curl` gets the
/// file, not its gzip.
fn accepts_gzip(headers: &axum::http::HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT_ENCODING)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .any(|coding| {
            let mut parts = coding.split(';');
            let name = parts.next().unwrap_or_default().trim();
            let weight_zero = parts.any(|param| {
                param
                    .trim()
                    .strip_prefix("q=")
                    .or_else(|| param.trim().strip_prefix("Q="))
                    .and_then(|q| q.trim().parse::<f32>().ok())
                    .is_some_and(|q| q <= 0.0)
            });
            (name.eq_ignore_ascii_case("gzip")
                || name.eq_ignore_ascii_case("x-gzip")
                || name == "*")
                && !weight_zero
        })
}

/// The content of a `gzip -n` member: a 10-byte header with no optional
/// fields, raw deflate, then CRC-32 and the length (checked).
fn gunzip(gzip: &[u8]) -> Option<Vec<u8>> {
    let header_ok = gzip.len() > 18 && gzip[..4] == [0x1f, 0x8b, 8, 0];
    if !header_ok {
        return None;
    }
    let (deflate, trailer) = gzip[10..].split_at(gzip.len() - 18);
    let plain = miniz_oxide::inflate::decompress_to_vec(deflate).ok()?;
    let length = u32::from_le_bytes(trailer[4..8].try_into().ok()?);
    (plain.len() as u64 % (1 << 32) == u64::from(length)).then_some(plain)
}

#[cfg(test)]
mod docs_page_tests {
    use super::*;

    /// The sha256 VERSION records for `file` (scripts/vendor-swagger-ui.sh).
    fn vendored_sha256(file: &str) -> String {
        include_str!("../../assets/swagger-ui/VERSION")
            .lines()
            .filter_map(|line| line.strip_prefix("sha256: "))
            .find_map(|line| {
                let (digest, name) = line.split_once("  ")?;
                (name == file).then(|| digest.to_owned())
            })
            .unwrap_or_else(|| panic!("{file} not in VERSION"))
    }

    fn sha256(bytes: &[u8]) -> String {
        hex::encode(<sha2::Sha256 as sha2::Digest>::digest(bytes))
    }

    #[test]
    fn the_embedded_files_are_the_vendored_swagger_ui() {
        for (asset, file) in [
            (&BUNDLE, "swagger-ui-bundle.js"),
            (&STYLESHEET, "swagger-ui.css"),
        ] {
            let Body::Gzip(gzip) = asset.body else {
                panic!("{file} is embedded compressed");
            };
            let plain = gunzip(gzip).unwrap_or_else(|| panic!("{file}.gz inflates"));
            assert_eq!(sha256(&plain), vendored_sha256(file), "{file}");
        }
        let Body::Plain(favicon) = FAVICON.body else {
            panic!("the favicon is embedded as it is");
        };
        assert_eq!(sha256(favicon), vendored_sha256("favicon-32x32.png"));
    }

    #[test]
    fn the_page_has_no_inline_script_or_style_and_names_every_asset() {
        let assets = docs_assets();
        let page = &assets.page;
        assert_eq!(page.matches("<script").count(), 2, "{page}");
        assert_eq!(
            page.matches("<script src=\"/docs/assets/").count(),
            2,
            "{page}"
        );
        assert!(
            !page.contains("<style") && !page.contains("style="),
            "{page}"
        );
        assert!(
            !page.contains("http://") && !page.contains("https://"),
            "{page}"
        );
        for (name, _) in &assets.files {
            assert!(page.contains(&format!("/docs/assets/{name}")), "{name}");
            assert!(!name.contains('/'), "{name}");
        }
        assert_eq!(assets.files.len(), 4);
    }

    #[test]
    fn gzip_is_sent_only_to_clients_that_accept_it() {
        let with = |value: Option<&str>| {
            let mut headers = axum::http::HeaderMap::new();
            if let Some(value) = value {
                headers.insert(
                    header::ACCEPT_ENCODING,
                    axum::http::HeaderValue::from_str(value).unwrap(),
                );
            }
            accepts_gzip(&headers)
        };
        assert!(with(Some("gzip, deflate, br, zstd")));
        assert!(with(Some("br;q=1.0, GZIP;q=0.5")));
        assert!(with(Some("*")));
        assert!(!with(None));
        assert!(!with(Some("identity")));
        assert!(!with(Some("br, gzip;q=0")));
        assert!(!with(Some("gzip; q=0.000")));
    }

    #[test]
    fn gunzip_refuses_what_gzip_n_does_not_write() {
        let Body::Gzip(gzip) = STYLESHEET.body else {
            panic!("compressed");
        };
        assert!(gunzip(&gzip[..9]).is_none());
        let mut named = gzip.to_vec();
        named[3] = 0x08; // FNAME set
        assert!(gunzip(&named).is_none());
        let mut truncated_length = gzip.to_vec();
        let last = truncated_length.len() - 1;
        truncated_length[last] ^= 1;
        assert!(gunzip(&truncated_length).is_none());
    }
}
