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
//! Rate limits as Discord has them: per-route buckets with
//! `X-RateLimit-*` headers, enforced (a request over the bucket gets a
//! `429`, marked `enforced` in the log), and scripted `429`s
//! ([`Throttle`]) alternating global and shared-scope ones, each with a
//! fractional `Retry-After` header and `retry_after` in the body.
//! [`FakeDiscord::set_unavailable`] answers `503` to everything.
//!
//! Every request is logged with its arrival time, route, credential key and
//! `User-Agent`, so tests count on Discord's side.
// A stand-in for Discord, not Palm's public API: axum's own extractors do
// (clippy.toml reserves ApiPath/ApiQuery for palmdao).
#![allow(clippy::disallowed_types)]

use std::collections::{HashMap, HashSet};
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

/// One request as the fake saw it.
#[derive(Debug, Clone)]
pub struct Logged {
    /// Arrival.
    pub at: Instant,
    /// Route template (`POST /oauth2/token`, …).
    pub route: &'static str,
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
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
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

    /// Every request so far, in arrival order.
    pub fn requests(&self) -> Vec<Logged> {
        self.lock().log.clone()
    }

    /// The most requests that arrived within any `window` (half-open).
    pub fn most_in_any(&self, window: Duration) -> usize {
        let times: Vec<Instant> = self.requests().iter().map(|r| r.at).collect();
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

/// The rate-limit and availability layer around every route, and the log.
fn serve(
    state: &Shared,
    route: &'static str,
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
    let mut fake = state.lock().unwrap();
    let mut out = HeaderMap::new();
    let mut entry = Logged {
        at: now,
        route,
        key,
        user_agent,
        status: 0,
        retry_after: None,
        global: false,
        enforced: false,
    };
    let set = |out: &mut HeaderMap, name: &'static str, value: String| {
        out.insert(name, HeaderValue::from_str(&value).unwrap());
    };
    // The current window of this route's bucket, if limited.
    let window = fake.bucket_limit.map(|(limit, length)| {
        let window = fake.windows.entry(route).or_insert((now, 0));
        if now >= window.0 + length {
            *window = (now, 0);
        }
        (limit, window.0 + length)
    });
    let (status, body) = if fake.unavailable {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            json!({ "message": "upstream unavailable" }),
        )
    } else if let Some(throttle) = fake.throttle
        && {
            fake.served += 1;
            fake.served.is_multiple_of(throttle.every)
        }
    {
        let global = (fake.served / throttle.every) % 2 == 1;
        entry.retry_after = Some(throttle.retry_after);
        entry.global = global;
        set(&mut out, "retry-after", secs(throttle.retry_after));
        if global {
            set(&mut out, "x-ratelimit-global", "true".into());
            set(&mut out, "x-ratelimit-scope", "global".into());
        } else {
            set(&mut out, "x-ratelimit-scope", "shared".into());
            if let Some((limit, ends)) = window {
                let used = fake.windows[route].1;
                set(&mut out, "x-ratelimit-limit", limit.to_string());
                set(
                    &mut out,
                    "x-ratelimit-remaining",
                    (limit - used).to_string(),
                );
                set(&mut out, "x-ratelimit-reset-after", secs(ends - now));
                set(&mut out, "x-ratelimit-bucket", format!("fake-{route}"));
            }
        }
        (
            StatusCode::TOO_MANY_REQUESTS,
            json!({ "message": "You are being rate limited.", "retry_after": throttle.retry_after.as_secs_f64(), "global": global }),
        )
    } else if let Some((limit, ends)) = window {
        let used = fake.windows[route].1;
        set(&mut out, "x-ratelimit-limit", limit.to_string());
        set(&mut out, "x-ratelimit-bucket", format!("fake-{route}"));
        set(&mut out, "x-ratelimit-reset-after", secs(ends - now));
        if used >= limit {
            entry.retry_after = Some(ends - now);
            entry.enforced = true;
            set(&mut out, "x-ratelimit-remaining", "0".into());
            set(&mut out, "x-ratelimit-scope", "user".into());
            set(&mut out, "retry-after", secs(ends - now));
            (
                StatusCode::TOO_MANY_REQUESTS,
                json!({ "message": "You are being rate limited.", "retry_after": (ends - now).as_secs_f64(), "global": false }),
            )
        } else {
            fake.windows.get_mut(route).unwrap().1 += 1;
            set(
                &mut out,
                "x-ratelimit-remaining",
                (limit - used - 1).to_string(),
            );
            let answer = handle(&mut fake);
            (answer.status, answer.body)
        }
    } else {
        let answer = handle(&mut fake);
        (answer.status, answer.body)
    };
    entry.status = status.as_u16();
    fake.log.push(entry);
    if status == StatusCode::NO_CONTENT {
        return (status, out).into_response();
    }
    (status, out, Json(body)).into_response()
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
    serve(
        &state,
        "POST /oauth2/token",
        code.clone(),
        &headers,
        |fake| {
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
        },
    )
}

async fn me(State(state): State<Shared>, headers: HeaderMap) -> Response {
    let token = bearer(&headers);
    serve(
        &state,
        "GET /users/@me",
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
    let route = "GET /guilds/{guild}/members/{user}";
    serve(&state, route, user.clone(), &headers, |fake| {
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
    })
}

async fn role(
    State(state): State<Shared>,
    Path((guild, user, role)): Path<(String, String, String)>,
    headers: HeaderMap,
) -> Response {
    let route = "PUT /guilds/{guild}/members/{user}/roles/{role}";
    serve(&state, route, user.clone(), &headers, |fake| {
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
    serve(&state, "GET /gateway", String::new(), &headers, |_| {
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
