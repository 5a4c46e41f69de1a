//! A local HTTP server playing the parts of Discord's API that
//! palmvalidator-discord calls, bound to `127.0.0.1:0` inside the test
//! process and configured per test:
//!
//! - `POST /oauth2/token`: codes registered with [`FakeDiscord::code_for`]
//!   (single-use unless [`FakeDiscord::reuse_codes`]), checked against the
//!   redirect URI and the client credentials; anything else is
//!   `400 invalid_grant`.
//! - `GET /users/@me`: the user behind a token; users are made with a
//!   chosen age ([`FakeUser::aged_days`]), their id a snowflake carrying it.
//! - `GET /guilds/{guild}/members/{user}` (bot token) and
//!   `PUT /guilds/{guild}/members/{user}/roles/{role}`.
//! - `GET /gateway`, what the service probes while Discord looks down.
//!
//! Rate limits as Discord sends them
//! (<https://discord.com/developers/docs/topics/rate-limits>), headers
//! included (`X-RateLimit-Limit`, `-Remaining`, `-Reset`, `-Reset-After`,
//! `-Bucket`, and on `429`s `-Scope`, `-Global`, `Retry-After`):
//!
//! - per-route buckets, enforced ([`FakeDiscord::limit_routes`]: a request
//!   over the bucket gets a user-scope `429`, marked `enforced` in the log);
//! - a hidden bucket ([`FakeDiscord::hidden_bucket`]): a route whose answers
//!   carry one bucket's headers while another, smaller limit refuses it with
//!   its own hash (the capture of issue 14: [`HiddenBucket::as_captured`]);
//! - every `429` shape, scripted per route ([`FakeDiscord::script`],
//!   [`Shape`]): an exhausted route bucket, a shared-scope resource limit, the
//!   global limit, and the edge's `429`s without any rate-limit header (body
//!   `retry_after` only, `Retry-After` only with an HTML page, or neither);
//! - scripted `429`s every n-th request ([`Throttle`]) alternating global
//!   and shared-scope ones, each with a fractional `Retry-After` header and
//!   `retry_after` in the body.
//!
//! [`FakeDiscord::set_unavailable`] answers `503` to everything.
//!
//! Every request is logged with its arrival time, route, major parameter,
//! credential key and `User-Agent`, and each `429` with its scope and wait,
//! so tests count on Discord's side ([`FakeDiscord::violations`]).
// A stand-in for Discord, not Palm's public API: axum's own extractors do
// (clippy.toml reserves ApiPath/ApiQuery for palmdao).
#![allow(clippy::disallowed_types)]

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Json, Response};
use axum::routing::{get, post, put};
use palm_testkit::process::{ServiceProcess, binary};
use serde_json::{Value, json};

use crate::ServiceEnv;

/// The OAuth2 application id the fake expects (and tests configure).
pub const CLIENT_ID: &str = "100000000000000001";
/// The client secret the fake expects.
pub const CLIENT_SECRET: &str = "fake-client-secret";
/// The bot token the fake expects.
pub const BOT_TOKEN: &str = "fake-bot-token";
/// The one guild the fake knows.
pub const GUILD_ID: &str = "200000000000000002";
/// The role it lets the bot grant.
pub const ROLE_ID: &str = "300000000000000003";
/// The redirect URI codes are issued for.
pub const REDIRECT_URI: &str = "https://palm.test/discord/callback";

const DISCORD_EPOCH_MS: u64 = 1_420_070_400_000;

/// A Discord account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FakeUser {
    /// Snowflake id: its top bits are the creation time.
    pub id: u64,
    /// Username.
    pub username: String,
}

impl FakeUser {
    /// An account created `days` ago, with a unique id.
    pub fn aged_days(days: u64, username: &str) -> Self {
        static SEQUENCE: AtomicU64 = AtomicU64::new(0);
        let now_ms = u64::try_from(
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap()
                .as_millis(),
        )
        .unwrap();
        let created_ms = now_ms - days * 86_400_000 - DISCORD_EPOCH_MS;
        let low = SEQUENCE.fetch_add(1, Ordering::Relaxed) & 0x3f_ffff;
        Self {
            id: (created_ms << 22) | low,
            username: username.to_owned(),
        }
    }

    /// The id as Discord's JSON has it.
    pub fn id_string(&self) -> String {
        self.id.to_string()
    }
}

/// Scripted `429`s: every `every`-th request is answered `429` with
/// `retry_after`, alternately global and shared-scope.
#[derive(Debug, Clone, Copy)]
pub struct Throttle {
    /// One in this many requests.
    pub every: usize,
    /// The `Retry-After` it gives.
    pub retry_after: Duration,
}

/// Route templates as the fake logs them.
pub const TOKEN_ROUTE: &str = "POST /oauth2/token";
/// See [`TOKEN_ROUTE`].
pub const ME_ROUTE: &str = "GET /users/@me";
/// See [`TOKEN_ROUTE`]; its major parameter is the guild.
pub const MEMBER_ROUTE: &str = "GET /guilds/{guild}/members/{user}";
/// See [`TOKEN_ROUTE`]; its major parameter is the guild.
pub const ROLE_ROUTE: &str = "PUT /guilds/{guild}/members/{user}/roles/{role}";
/// See [`TOKEN_ROUTE`].
pub const GATEWAY_ROUTE: &str = "GET /gateway";

/// A `429` as Discord (or the edge in front of it) answers it, scripted
/// with [`FakeDiscord::script`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Shape {
    /// "Example Exceeded User Rate Limit Response": the route's bucket
    /// headers with `remaining` 0, `X-RateLimit-Scope: user`, `Retry-After`
    /// in whole seconds (rounded up), the exact `retry_after` in the body.
    Route {
        /// The exact wait (`retry_after`, `X-RateLimit-Reset-After`).
        retry_after: Duration,
    },
    /// "Example Exceeded Resource Rate Limit Response": the bucket still
    /// has requests left (`remaining` 9 of 10, resetting long before the
    /// resource frees), `X-RateLimit-Scope: shared`.
    Shared {
        /// The exact wait.
        retry_after: Duration,
    },
    /// "Example Exceeded Global Rate Limit Response": `Retry-After`,
    /// `X-RateLimit-Global: true`, `X-RateLimit-Scope: global`, body
    /// `"global": true`; no bucket headers.
    Global {
        /// The exact wait.
        retry_after: Duration,
    },
    /// The edge: no header at all, a JSON body with `retry_after` only.
    EdgeBody {
        /// The exact wait.
        retry_after: Duration,
    },
    /// The edge (Cloudflare): `Retry-After` only, an HTML page.
    EdgeHeader {
        /// The wait.
        retry_after: Duration,
    },
    /// The edge: neither headers nor a retry time, only Discord's
    /// "You are being blocked" message (what a temporary ban answers).
    EdgeBare,
}

/// The headers a bucket's answers carry.
#[derive(Debug, Clone, PartialEq)]
pub struct BucketHeaders {
    /// `X-RateLimit-Bucket`.
    pub hash: String,
    /// `X-RateLimit-Limit`.
    pub limit: u32,
    /// `X-RateLimit-Remaining`.
    pub remaining: u32,
    /// `X-RateLimit-Reset-After`.
    pub reset_after: Duration,
}

/// A limit a route's answers do not show: every answer carries
/// `visible`'s headers, while requests beyond `limit` per `window` (fixed
/// windows, each opened by the first request after the last one ended) get
/// a `429` with this bucket's own hash and headers.
#[derive(Debug, Clone, PartialEq)]
pub struct HiddenBucket {
    /// What the route's answers say (unchanging).
    pub visible: BucketHeaders,
    /// The hidden bucket's `X-RateLimit-Bucket`.
    pub hash: String,
    /// Its `X-RateLimit-Limit`.
    pub limit: u32,
    /// Its window.
    pub window: Duration,
    /// Requests already counted in the window the test starts in (whose end
    /// is first told by the `429` that ends it: `window` after it).
    pub used: u32,
}

impl HiddenBucket {
    /// Issue 14's capture of `GET /users/@me`: three `200`s in bucket
    /// `d124…` (limit 50000, remaining 48773, reset after 102737.719 s),
    /// then a `429` from bucket `1d3c…` (limit 5, remaining 0, reset-after
    /// and `Retry-After` 5.588, not global), then the `d124…` headers again.
    pub fn as_captured() -> Self {
        Self {
            visible: BucketHeaders {
                hash: "d124a0c1b2e3f4a5b6c7d8e9f0a1b2c3".to_owned(),
                limit: 50_000,
                remaining: 48_773,
                reset_after: Duration::from_secs_f64(102_737.719),
            },
            hash: "1d3c4e5f6a7b8c9d0e1f2a3b4c5d6e7f".to_owned(),
            limit: 5,
            window: Duration::from_millis(5_588),
            used: 2,
        }
    }
}

#[derive(Debug)]
struct HiddenState {
    bucket: HiddenBucket,
    used: u32,
    /// The current window's end, once known.
    ends: Option<Instant>,
    /// Still in the window the test started in.
    first: bool,
}

/// One request as the fake saw it.
#[derive(Debug, Clone)]
pub struct Logged {
    /// Arrival.
    pub at: Instant,
    /// Route template ([`TOKEN_ROUTE`], …).
    pub route: &'static str,
    /// The major parameter (the guild), or empty.
    pub major: String,
    /// The credential or resource it was about (the code, the token, the
    /// member), so a retried request can be matched with its first try.
    pub key: String,
    /// `User-Agent` header.
    pub user_agent: String,
    /// Status answered.
    pub status: u16,
    /// For a `429`: the `Retry-After` given.
    pub retry_after: Option<Duration>,
    /// For a `429`: global.
    pub global: bool,
    /// For a `429`: the bucket was over its limit (not scripted).
    pub enforced: bool,
    /// For a `429`: whose wait it is: `user` (the route's bucket), `shared`
    /// (the resource: route and major parameter), `global`, or `edge` (no
    /// rate-limit header: every request).
    pub scope: Option<&'static str>,
    /// `X-RateLimit-Bucket` answered.
    pub bucket: Option<String>,
}

#[derive(Debug, Clone)]
struct Grant {
    user: FakeUser,
    scope: String,
}

#[derive(Debug, Default)]
struct Fake {
    codes: HashMap<String, Grant>,
    reusable_codes: bool,
    used_codes: HashSet<String>,
    tokens: HashMap<String, FakeUser>,
    members: HashSet<u64>,
    roles: Vec<(u64, String)>,
    unavailable: bool,
    throttle: Option<Throttle>,
    bucket_limit: Option<(u32, Duration)>,
    windows: HashMap<&'static str, (Instant, u32)>,
    served: usize,
    hidden: HashMap<&'static str, HiddenState>,
    scripted: HashMap<&'static str, VecDeque<Shape>>,
    log: Vec<Logged>,
}

type Shared = Arc<Mutex<Fake>>;

/// A running fake Discord.
#[derive(Debug)]
pub struct FakeDiscord {
    /// `http://127.0.0.1:port/api/v10`: `discord.base_url`.
    pub base_url: String,
    state: Shared,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for FakeDiscord {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl FakeDiscord {
    /// Starts a fake with no codes, no members and no rate limits.
    pub async fn start() -> Self {
        Self::start_on("127.0.0.1:0").await
    }

    /// Starts one listening on `addr` (the `fake-discord` binary).
    pub async fn start_on(addr: &str) -> Self {
        let state: Shared = Arc::default();
        let api = Router::new()
            .route("/oauth2/token", post(token))
            .route("/users/@me", get(me))
            .route("/guilds/{guild}/members/{user}", get(member))
            .route("/guilds/{guild}/members/{user}/roles/{role}", put(role))
            .route("/gateway", get(gateway));
        let app = Router::new()
            .nest("/api/v10", api)
            .with_state(Arc::clone(&state));
        let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        Self {
            base_url: format!("http://{addr}/api/v10"),
            state,
            server,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Fake> {
        self.state.lock().unwrap()
    }

    /// Environment for a palmvalidator-discord using this fake.
    pub fn vars(&self) -> Vec<(&'static str, String)> {
        vec![
            ("PALM__DISCORD__BASE_URL", self.base_url.clone()),
            ("PALM__DISCORD__CLIENT_ID", CLIENT_ID.to_owned()),
            ("PALM__DISCORD__CLIENT_SECRET", CLIENT_SECRET.to_owned()),
            ("PALM__DISCORD__BOT_TOKEN", BOT_TOKEN.to_owned()),
        ]
    }

    /// Starts a palmvalidator-discord process in `env` calling this fake,
    /// with `extra` variables on top, and waits until it is ready; returns
    /// it with its admin address.
    pub async fn start_validator(
        &self,
        env: &ServiceEnv,
        extra: &[(&str, &str)],
    ) -> (ServiceProcess, String) {
        let fake_vars = self.vars();
        let mut vars: Vec<(&str, &str)> = fake_vars.iter().map(|(k, v)| (*k, v.as_str())).collect();
        vars.extend_from_slice(extra);
        let process = ServiceProcess::spawn(binary("palmvalidator-discord"), &env.vars(&vars));
        let admin = process.admin_addr(Duration::from_secs(20)).await;
        palm_testkit::eventually(
            "palmvalidator-discord ready",
            Duration::from_secs(30),
            || {
                let admin = admin.clone();
                async move { (crate::get(&admin, "/readyz").await.0 == 200).then_some(()) }
            },
        )
        .await;
        (process, admin)
    }

    /// A fresh code that logs in as `user` with the `identify` scope.
    pub fn code_for(&self, user: &FakeUser) -> String {
        self.code_with_scope(user, "identify")
    }

    /// A fresh code that logs in as `user` with `scope`.
    pub fn code_with_scope(&self, user: &FakeUser, scope: &str) -> String {
        let code = format!("code-{}", uuid::Uuid::new_v4().simple());
        self.lock().codes.insert(
            code.clone(),
            Grant {
                user: user.clone(),
                scope: scope.to_owned(),
            },
        );
        code
    }

    /// Lets a code be exchanged more than once (Discord does not: a job
    /// redelivered after its code was exchanged is then rejected).
    pub fn reuse_codes(&self) {
        self.lock().reusable_codes = true;
    }

    /// Makes `user` a member of [`GUILD_ID`].
    pub fn add_member(&self, user: &FakeUser) {
        self.lock().members.insert(user.id);
    }

    /// `(user id, role id)` of every role granted.
    pub fn granted_roles(&self) -> Vec<(u64, String)> {
        self.lock().roles.clone()
    }

    /// Answers `503` to everything while `down`.
    pub fn set_unavailable(&self, down: bool) {
        self.lock().unavailable = down;
    }

    /// Scripts `429`s.
    pub fn throttle(&self, throttle: Throttle) {
        self.lock().throttle = Some(throttle);
    }

    /// Gives every route a bucket of `limit` requests per `window`.
    pub fn limit_routes(&self, limit: u32, window: Duration) {
        self.lock().bucket_limit = Some((limit, window));
    }

    /// Puts `route` ([`ME_ROUTE`], …) behind a hidden bucket.
    pub fn hidden_bucket(&self, route: &'static str, bucket: HiddenBucket) {
        let used = bucket.used;
        self.lock().hidden.insert(
            route,
            HiddenState {
                bucket,
                used,
                ends: None,
                first: true,
            },
        );
    }

    /// Answers the next requests on `route`, one each, with `shapes`.
    pub fn script(&self, route: &'static str, shapes: &[Shape]) {
        self.lock()
            .scripted
            .entry(route)
            .or_default()
            .extend(shapes.iter().copied());
    }

    /// Every request so far, in arrival order.
    pub fn requests(&self) -> Vec<Logged> {
        self.lock().log.clone()
    }

    /// The most requests that arrived within any `window` (half-open).
    pub fn most_in_any(&self, window: Duration) -> usize {
        self.most_in_any_of(window, |_| true)
    }

    /// [`FakeDiscord::most_in_any`], counting only the requests `counted`.
    pub fn most_in_any_of(&self, window: Duration, counted: impl Fn(&Logged) -> bool) -> usize {
        let times: Vec<Instant> = self
            .requests()
            .iter()
            .filter(|r| counted(r))
            .map(|r| r.at)
            .collect();
        (0..times.len())
            .map(|i| {
                times[i..]
                    .iter()
                    .take_while(|at| at.duration_since(times[i]) < window)
                    .count()
            })
            .max()
            .unwrap_or(0)
    }

    /// Requests that arrived inside a `429`'s wait and within its reach, as
    /// descriptions: the same request sent again (matched by route and key)
    /// at any time before the wait ended; another request in the `429`'s
    /// scope (`global`, `edge`: every request; `user`, `shared`: the same
    /// route and major parameter) arriving more than [`IN_FLIGHT`] after
    /// the `429` (those before were already on their way when it was sent).
    pub fn violations(&self) -> Vec<String> {
        self.violations_allowing(IN_FLIGHT)
    }

    /// [`FakeDiscord::violations`], excusing other requests that arrive
    /// within `in_flight` of a `429` (a client with many requests in flight
    /// on a loaded machine).
    pub fn violations_allowing(&self, in_flight: Duration) -> Vec<String> {
        let log = self.requests();
        let mut found = Vec::new();
        for (i, limited) in log.iter().enumerate() {
            let (Some(wait), Some(scope)) = (limited.retry_after, limited.scope) else {
                continue;
            };
            let ends = limited.at + wait;
            for later in log[i + 1..].iter().take_while(|r| r.at < ends) {
                let same_request = later.route == limited.route && later.key == limited.key;
                let in_scope = match scope {
                    "global" | "edge" => true,
                    _ => later.route == limited.route && later.major == limited.major,
                };
                if same_request || (in_scope && later.at >= limited.at + in_flight) {
                    found.push(format!(
                        "{} {} ({}) arrived {:?} after a {scope} 429 on {} that said wait {wait:?}",
                        later.route,
                        later.key,
                        later.major,
                        later.at - limited.at,
                        limited.route
                    ));
                }
            }
        }
        found
    }

    /// Requests sent again before the `Retry-After` of the `429` their
    /// previous try got (matched by route and key), as descriptions.
    pub fn early_retries(&self) -> Vec<String> {
        let log = self.requests();
        let mut early = Vec::new();
        for (i, limited) in log.iter().enumerate() {
            let Some(retry_after) = limited.retry_after else {
                continue;
            };
            let retry = log[i + 1..]
                .iter()
                .find(|r| r.route == limited.route && r.key == limited.key);
            if let Some(retry) = retry {
                let waited = retry.at.duration_since(limited.at);
                if waited < retry_after {
                    early.push(format!(
                        "{} {} retried after {waited:?}, told {retry_after:?}",
                        limited.route, limited.key
                    ));
                }
            }
        }
        early
    }
}

/// How long after a `429` another request in its reach may still arrive
/// without being a violation: it was sent before the `429` was received.
pub const IN_FLIGHT: Duration = Duration::from_millis(50);

/// What a route handler decided, before the rate-limit layer.
struct Answer {
    status: StatusCode,
    body: Value,
}

fn answer(status: StatusCode, body: Value) -> Answer {
    Answer { status, body }
}

fn secs(duration: Duration) -> String {
    format!("{:.3}", duration.as_secs_f64())
}

fn secs_rounded_up(duration: Duration) -> String {
    format!("{}", duration.as_secs_f64().ceil())
}

fn set(out: &mut HeaderMap, name: &'static str, value: &str) {
    out.insert(name, HeaderValue::from_str(value).unwrap());
}

/// A bucket's `X-RateLimit-*` headers, as Discord sends them on every
/// answer of a limited route.
fn bucket_headers(out: &mut HeaderMap, bucket: &BucketHeaders) {
    let reset_at = SystemTime::now() + bucket.reset_after;
    let epoch = reset_at.duration_since(UNIX_EPOCH).unwrap();
    set(out, "x-ratelimit-limit", &bucket.limit.to_string());
    set(out, "x-ratelimit-remaining", &bucket.remaining.to_string());
    set(
        out,
        "x-ratelimit-reset",
        &format!("{:.3}", epoch.as_secs_f64()),
    );
    set(out, "x-ratelimit-reset-after", &secs(bucket.reset_after));
    set(out, "x-ratelimit-bucket", &bucket.hash);
}

fn rate_limited(retry_after: Duration, global: bool) -> Value {
    json!({ "message": "You are being rate limited.", "retry_after": retry_after.as_secs_f64(), "global": global })
}

/// What is answered instead of the route's own answer.
enum Limited {
    Json(StatusCode, Value),
    Html(StatusCode, &'static str),
}

/// The answer a scripted shape gives on `route`.
fn scripted(shape: Shape, route: &'static str, out: &mut HeaderMap, entry: &mut Logged) -> Limited {
    let bucket = |limit, remaining, reset_after| BucketHeaders {
        hash: format!("fake-{route}"),
        limit,
        remaining,
        reset_after,
    };
    let too_many = StatusCode::TOO_MANY_REQUESTS;
    match shape {
        Shape::Route { retry_after } => {
            entry.retry_after = Some(retry_after);
            entry.scope = Some("user");
            bucket_headers(out, &bucket(5, 0, retry_after));
            set(out, "x-ratelimit-scope", "user");
            set(out, "retry-after", &secs_rounded_up(retry_after));
            Limited::Json(too_many, rate_limited(retry_after, false))
        }
        Shape::Shared { retry_after } => {
            entry.retry_after = Some(retry_after);
            entry.scope = Some("shared");
            bucket_headers(out, &bucket(10, 9, retry_after.mul_f64(0.05)));
            set(out, "x-ratelimit-scope", "shared");
            set(out, "retry-after", &secs_rounded_up(retry_after));
            Limited::Json(
                too_many,
                json!({ "message": "The resource is being rate limited.", "retry_after": retry_after.as_secs_f64(), "global": false }),
            )
        }
        Shape::Global { retry_after } => {
            entry.retry_after = Some(retry_after);
            entry.scope = Some("global");
            entry.global = true;
            set(out, "retry-after", &secs_rounded_up(retry_after));
            set(out, "x-ratelimit-global", "true");
            set(out, "x-ratelimit-scope", "global");
            Limited::Json(too_many, rate_limited(retry_after, true))
        }
        Shape::EdgeBody { retry_after } => {
            entry.retry_after = Some(retry_after);
            entry.scope = Some("edge");
            Limited::Json(too_many, rate_limited(retry_after, false))
        }
        Shape::EdgeHeader { retry_after } => {
            entry.retry_after = Some(retry_after);
            entry.scope = Some("edge");
            set(out, "retry-after", &secs_rounded_up(retry_after));
            Limited::Html(
                too_many,
                "<!DOCTYPE html><html><head><title>Access denied | discord.com used Cloudflare to restrict access</title></head><body><h1>Error 1015</h1><p>You are being rate limited</p></body></html>",
            )
        }
        Shape::EdgeBare => {
            entry.scope = Some("edge");
            Limited::Json(
                too_many,
                json!({ "message": "You are being blocked from accessing our API temporarily due to exceeding our rate limits frequently. Please read our docs at https://discord.com/developers/docs/topics/rate-limits to prevent this moving forward.", "code": 0 }),
            )
        }
    }
}

/// The hidden bucket of a route at `now`: its `429` when it refuses; when
/// it counts the request, `None` and the visible headers in `out`.
fn hidden(
    state: &mut HiddenState,
    now: Instant,
    out: &mut HeaderMap,
    entry: &mut Logged,
) -> Option<Limited> {
    if state.ends.is_some_and(|ends| now >= ends) {
        state.ends = None;
        state.used = 0;
        state.first = false;
    }
    let bucket = &state.bucket;
    if state.used < bucket.limit {
        state.used += 1;
        if state.ends.is_none() && !state.first {
            state.ends = Some(now + bucket.window);
        }
        bucket_headers(out, &bucket.visible);
        return None;
    }
    let ends = *state.ends.get_or_insert(now + bucket.window);
    let wait = ends - now;
    entry.retry_after = Some(wait);
    entry.scope = Some("user");
    entry.enforced = true;
    bucket_headers(
        out,
        &BucketHeaders {
            hash: bucket.hash.clone(),
            limit: bucket.limit,
            remaining: 0,
            reset_after: wait,
        },
    );
    set(out, "x-ratelimit-scope", "user");
    set(out, "retry-after", &secs(wait));
    Some(Limited::Json(
        StatusCode::TOO_MANY_REQUESTS,
        rate_limited(Duration::from_secs_f64(secs(wait).parse().unwrap()), false),
    ))
}

/// The rate-limit and availability layer around every route, and the log.
fn serve(
    state: &Shared,
    route: &'static str,
    major: &str,
    key: String,
    headers: &HeaderMap,
    handle: impl FnOnce(&mut Fake) -> Answer,
) -> Response {
    let now = Instant::now();
    let user_agent = headers
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let mut guard = state.lock().unwrap();
    let fake = &mut *guard;
    let mut out = HeaderMap::new();
    let mut entry = Logged {
        at: now,
        route,
        major: major.to_owned(),
        key,
        user_agent,
        status: 0,
        retry_after: None,
        global: false,
        enforced: false,
        scope: None,
        bucket: None,
    };
    // The current window of this route's bucket, if limited.
    let window = fake.bucket_limit.map(|(limit, length)| {
        let window = fake.windows.entry(route).or_insert((now, 0));
        if now >= window.0 + length {
            *window = (now, 0);
        }
        (limit, window.0 + length)
    });
    let script = fake.scripted.get_mut(route).and_then(VecDeque::pop_front);
    let limited = if fake.unavailable {
        Some(Limited::Json(
            StatusCode::SERVICE_UNAVAILABLE,
            json!({ "message": "upstream unavailable" }),
        ))
    } else if let Some(shape) = script {
        Some(scripted(shape, route, &mut out, &mut entry))
    } else if let Some(hidden_state) = fake.hidden.get_mut(route) {
        hidden(hidden_state, now, &mut out, &mut entry)
    } else if let Some(throttle) = fake.throttle
        && {
            fake.served += 1;
            fake.served.is_multiple_of(throttle.every)
        }
    {
        let global = (fake.served / throttle.every) % 2 == 1;
        entry.retry_after = Some(throttle.retry_after);
        entry.global = global;
        set(&mut out, "retry-after", &secs(throttle.retry_after));
        if global {
            entry.scope = Some("global");
            set(&mut out, "x-ratelimit-global", "true");
            set(&mut out, "x-ratelimit-scope", "global");
        } else {
            entry.scope = Some("shared");
            set(&mut out, "x-ratelimit-scope", "shared");
            if let Some((limit, ends)) = window {
                let used = fake.windows[route].1;
                bucket_headers(
                    &mut out,
                    &BucketHeaders {
                        hash: format!("fake-{route}"),
                        limit,
                        remaining: limit - used,
                        reset_after: ends - now,
                    },
                );
            }
        }
        Some(Limited::Json(
            StatusCode::TOO_MANY_REQUESTS,
            rate_limited(throttle.retry_after, global),
        ))
    } else if let Some((limit, ends)) = window {
        let used = fake.windows[route].1;
        let over = used >= limit;
        if !over {
            fake.windows.get_mut(route).unwrap().1 += 1;
        }
        bucket_headers(
            &mut out,
            &BucketHeaders {
                hash: format!("fake-{route}"),
                limit,
                remaining: if over { 0 } else { limit - used - 1 },
                reset_after: ends - now,
            },
        );
        over.then(|| {
            entry.retry_after = Some(ends - now);
            entry.enforced = true;
            entry.scope = Some("user");
            set(&mut out, "x-ratelimit-scope", "user");
            set(&mut out, "retry-after", &secs(ends - now));
            Limited::Json(
                StatusCode::TOO_MANY_REQUESTS,
                rate_limited(ends - now, false),
            )
        })
    } else {
        None
    };
    entry.bucket = out
        .get("x-ratelimit-bucket")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let response = match limited {
        Some(Limited::Json(status, body)) => {
            entry.status = status.as_u16();
            (status, out, Json(body)).into_response()
        }
        Some(Limited::Html(status, page)) => {
            entry.status = status.as_u16();
            (status, out, axum::response::Html(page)).into_response()
        }
        None => {
            let answer = handle(fake);
            entry.status = answer.status.as_u16();
            if answer.status == StatusCode::NO_CONTENT {
                (answer.status, out).into_response()
            } else {
                (answer.status, out, Json(answer.body)).into_response()
            }
        }
    };
    fake.log.push(entry);
    response
}

fn bearer(headers: &HeaderMap) -> String {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default()
        .to_owned()
}

fn is_bot(headers: &HeaderMap) -> bool {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        == Some(format!("Bot {BOT_TOKEN}").as_str())
}

fn user_json(user: &FakeUser) -> Value {
    json!({ "id": user.id_string(), "username": user.username, "global_name": null, "discriminator": "0", "avatar": null })
}

/// Decodes an `application/x-www-form-urlencoded` body.
fn form(body: &str) -> HashMap<String, String> {
    fn decode(text: &str) -> String {
        let bytes = text.as_bytes();
        let mut out = Vec::new();
        let mut i = 0;
        while i < bytes.len() {
            match bytes[i] {
                b'+' => out.push(b' '),
                b'%' if i + 2 < bytes.len() => {
                    let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("");
                    out.push(u8::from_str_radix(hex, 16).unwrap_or(b'?'));
                    i += 2;
                }
                byte => out.push(byte),
            }
            i += 1;
        }
        String::from_utf8_lossy(&out).into_owned()
    }
    body.split('&')
        .filter_map(|pair| pair.split_once('='))
        .map(|(k, v)| (decode(k), decode(v)))
        .collect()
}

async fn token(State(state): State<Shared>, headers: HeaderMap, body: String) -> Response {
    let fields = form(&body);
    let field = |name: &str| fields.get(name).cloned().unwrap_or_default();
    let code = field("code");
    serve(&state, TOKEN_ROUTE, "", code.clone(), &headers, |fake| {
        let content_type = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok());
        if content_type != Some("application/x-www-form-urlencoded") {
            return answer(
                StatusCode::BAD_REQUEST,
                json!({ "error": "invalid_request" }),
            );
        }
        if field("client_id") != CLIENT_ID || field("client_secret") != CLIENT_SECRET {
            return answer(
                StatusCode::UNAUTHORIZED,
                json!({ "error": "invalid_client" }),
            );
        }
        if field("grant_type") != "authorization_code" {
            return answer(
                StatusCode::BAD_REQUEST,
                json!({ "error": "unsupported_grant_type" }),
            );
        }
        let grant = fake.codes.get(&code).cloned();
        let reused = !fake.reusable_codes && fake.used_codes.contains(&code);
        match grant {
            Some(grant) if !reused && field("redirect_uri") == REDIRECT_URI => {
                fake.used_codes.insert(code.clone());
                let access_token = format!("token-{code}");
                fake.tokens.insert(access_token.clone(), grant.user);
                answer(
                    StatusCode::OK,
                    json!({ "access_token": access_token, "token_type": "Bearer", "expires_in": 604_800, "refresh_token": "refresh", "scope": grant.scope }),
                )
            }
            _ => answer(
                StatusCode::BAD_REQUEST,
                json!({ "error": "invalid_grant", "error_description": "Invalid \"code\" in request." }),
            ),
        }
    })
}

async fn me(State(state): State<Shared>, headers: HeaderMap) -> Response {
    let token = bearer(&headers);
    serve(
        &state,
        ME_ROUTE,
        "",
        token.clone(),
        &headers,
        |fake| match fake.tokens.get(&token) {
            Some(user) => answer(StatusCode::OK, user_json(user)),
            None => answer(
                StatusCode::UNAUTHORIZED,
                json!({ "message": "401: Unauthorized", "code": 0 }),
            ),
        },
    )
}

async fn member(
    State(state): State<Shared>,
    Path((guild, user)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    serve(
        &state,
        MEMBER_ROUTE,
        &guild,
        user.clone(),
        &headers,
        |fake| {
            if !is_bot(&headers) {
                return answer(
                    StatusCode::UNAUTHORIZED,
                    json!({ "message": "401: Unauthorized", "code": 0 }),
                );
            }
            if guild != GUILD_ID {
                return answer(
                    StatusCode::NOT_FOUND,
                    json!({ "message": "Unknown Guild", "code": 10004 }),
                );
            }
            match user.parse::<u64>() {
                Ok(id) if fake.members.contains(&id) => answer(
                    StatusCode::OK,
                    json!({ "user": { "id": user }, "roles": [], "joined_at": "2020-01-01T00:00:00Z" }),
                ),
                _ => answer(
                    StatusCode::NOT_FOUND,
                    json!({ "message": "Unknown Member", "code": 10007 }),
                ),
            }
        },
    )
}

async fn role(
    State(state): State<Shared>,
    Path((guild, user, role)): Path<(String, String, String)>,
    headers: HeaderMap,
) -> Response {
    serve(&state, ROLE_ROUTE, &guild, user.clone(), &headers, |fake| {
        let id = user.parse::<u64>().unwrap_or_default();
        if !is_bot(&headers) {
            answer(
                StatusCode::UNAUTHORIZED,
                json!({ "message": "401: Unauthorized", "code": 0 }),
            )
        } else if guild != GUILD_ID || role != ROLE_ID || !fake.members.contains(&id) {
            answer(
                StatusCode::NOT_FOUND,
                json!({ "message": "Unknown Member", "code": 10007 }),
            )
        } else {
            if !fake.roles.contains(&(id, role.clone())) {
                fake.roles.push((id, role));
            }
            answer(StatusCode::NO_CONTENT, Value::Null)
        }
    })
}

async fn gateway(State(state): State<Shared>, headers: HeaderMap) -> Response {
    serve(&state, GATEWAY_ROUTE, "", String::new(), &headers, |_| {
        answer(StatusCode::OK, json!({ "url": "wss://gateway.discord.gg" }))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_bodies_decode() {
        let fields = form("a=1&redirect_uri=https%3A%2F%2Fx.test%2Fcb&name=b+c");
        assert_eq!(fields["redirect_uri"], "https://x.test/cb");
        assert_eq!(fields["name"], "b c");
    }

    #[test]
    fn a_users_id_carries_its_age() {
        let user = FakeUser::aged_days(10, "u");
        let created_ms = (user.id >> 22) + DISCORD_EPOCH_MS;
        let now_ms = u64::try_from(
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap()
                .as_millis(),
        )
        .unwrap();
        let age_days = (now_ms - created_ms) / 86_400_000;
        assert_eq!(age_days, 10);
    }
}
