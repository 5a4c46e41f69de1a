//! The HTTP client for Discord's API: every request passes the process's
//! [`RateLimiter`], and the answers' rate-limit headers flow back into it.
//!
//! - A `429` is waited out (its `Retry-After`) and the same request sent
//!   again; it is not a failure.
//! - A `5xx`, a timeout or a connection error is retried in-process with
//!   jittered exponential backoff (`discord.max_retries`); after that,
//!   Discord counts as unreachable: [`Availability`] turns down (the service
//!   reports not-ready), a prober asks Discord every
//!   `discord.probe_interval_ms`, and callers wait until it answers again.
//!   Waiting here rather than handing the job back to the queue keeps what
//!   the job has already obtained: an OAuth2 code is single-use, so once it
//!   is exchanged the access token in this process is the only proof left.
//! - Any other answer goes back to the caller, which decides what it means.
//! - Once the service is stopping, a caller waiting for Discord to come back
//!   (or for a long rate-limit wait) gets [`Stopping`], and its job goes
//!   back to the queue.

use std::sync::Arc;
use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};
use palm_service::metrics;
use secrecy::{ExposeSecret, SecretString};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::DiscordSettings;
pub use crate::ratelimit::Stopping;
use crate::ratelimit::{Feedback, Limited, RateLimiter, Route, Scope};

/// Identifies the client to Discord, in the form Discord asks bots to use
/// (`DiscordBot ($url, $version)`), plus this process's instance id.
pub fn user_agent(instance: &str) -> String {
    format!(
        "DiscordBot (https://github.com/palm-dao/palm, {}) {}/{instance}",
        env!("CARGO_PKG_VERSION"),
        crate::SERVICE
    )
}

/// An answer Discord gave (anything but a `429` or a `5xx`).
#[derive(Debug, Clone)]
pub struct Answer {
    /// HTTP status.
    pub status: u16,
    /// Body bytes.
    pub body: Vec<u8>,
}

impl Answer {
    /// Whether the status is 2xx.
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// The body as JSON, if it is.
    pub fn json<T: serde::de::DeserializeOwned>(&self) -> Option<T> {
        serde_json::from_slice(&self.body).ok()
    }
}

/// How a request authenticates.
#[derive(Debug, Clone, Copy)]
pub enum Auth<'a> {
    /// None (the token endpoint authenticates with the client credentials
    /// in its form body; the probe needs none).
    None,
    /// A user's OAuth2 access token.
    Bearer(&'a str),
    /// The bot token.
    Bot,
}

/// One request to send, possibly more than once.
#[derive(Debug, Clone)]
pub struct Call<'a> {
    /// Its route, for the rate limits.
    pub route: Route,
    /// Method.
    pub method: reqwest::Method,
    /// Path under the base URL, starting with `/`.
    pub path: String,
    /// Credentials.
    pub auth: Auth<'a>,
    /// A form-encoded body, if any.
    pub form: Option<String>,
}

/// Whether Discord answers, shared by the callers, the prober and readiness.
#[derive(Debug, Clone)]
pub struct Availability {
    up: Arc<watch::Sender<bool>>,
}

impl Default for Availability {
    fn default() -> Self {
        Self {
            up: Arc::new(watch::Sender::new(true)),
        }
    }
}

impl Availability {
    /// Whether Discord answered last time it was asked.
    pub fn is_up(&self) -> bool {
        *self.up.borrow()
    }

    fn set(&self, up: bool, why: &str) {
        let changed = self.up.send_if_modified(|state| {
            let changed = *state != up;
            *state = up;
            changed
        });
        if changed {
            metrics::gauge!("palm_discord_up").set(if up { 1.0 } else { 0.0 });
            if up {
                tracing::info!("discord answers again");
            } else {
                tracing::error!(
                    reason = why,
                    "discord is unreachable, holding jobs until it answers"
                );
            }
        }
    }

    /// Waits until Discord is up, or `shutdown`.
    pub async fn wait_up(&self, shutdown: &CancellationToken) -> Result<(), Stopping> {
        let mut up = self.up.subscribe();
        tokio::select! {
            result = up.wait_for(|up| *up) => result.map(|_| ()).map_err(|_| Stopping),
            () = shutdown.cancelled() => Err(Stopping),
        }
    }

    async fn wait_down(&self) {
        let mut up = self.up.subscribe();
        let _ = up.wait_for(|up| !*up).await;
    }
}

/// Discord's HTTP API, rate-limited. Cheap to clone.
#[derive(Debug, Clone)]
pub struct DiscordClient {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    http: reqwest::Client,
    base: String,
    bot_token: Option<SecretString>,
    limiter: RateLimiter,
    availability: Availability,
    max_retries: usize,
    retry_min: Duration,
    retry_max: Duration,
    probe_interval: Duration,
}

impl DiscordClient {
    /// A client for `settings`, identifying itself as `instance`.
    pub fn new(settings: &DiscordSettings, instance: &str) -> anyhow::Result<Self> {
        let http = palm_service::http::client_builder()
            .user_agent(user_agent(instance))
            .timeout(Duration::from_millis(settings.request_timeout_ms))
            .build()
            .map_err(|error| anyhow::anyhow!("failed to build the http client: {error}"))?;
        Ok(Self {
            inner: Arc::new(Inner {
                http,
                base: settings.base().to_owned(),
                bot_token: settings.bot_token.clone(),
                limiter: RateLimiter::new(
                    settings.max_requests_per_second,
                    settings.invalid_request_budget,
                ),
                availability: Availability::default(),
                max_retries: usize::try_from(settings.max_retries).unwrap_or(usize::MAX),
                retry_min: Duration::from_millis(settings.retry_min_ms),
                retry_max: Duration::from_millis(settings.retry_max_ms),
                probe_interval: Duration::from_millis(settings.probe_interval_ms),
            }),
        })
    }

    /// Whether Discord can be called now: it answers, and the
    /// invalid-request budget is not used up. Backs the `discord` readiness
    /// check.
    pub fn ready(&self) -> bool {
        self.inner.availability.is_up() && !self.inner.limiter.halted()
    }

    /// Sends `call`, waiting out rate limits and outages; returns Discord's
    /// answer, or [`Stopping`] if `shutdown` comes while Discord is down or
    /// the limits would keep the request waiting long.
    pub async fn send(
        &self,
        call: &Call<'_>,
        shutdown: &CancellationToken,
    ) -> Result<Answer, Stopping> {
        loop {
            self.inner.availability.wait_up(shutdown).await?;
            match self.send_with_retries(call, shutdown).await? {
                Ok(answer) => {
                    self.inner.availability.set(true, "answered");
                    return Ok(answer);
                }
                Err(failure) => self.inner.availability.set(false, &failure),
            }
        }
    }

    /// One logical request: `429`s waited out, failures retried with
    /// backoff `max_retries` times; `Err` says why Discord looks down.
    async fn send_with_retries(
        &self,
        call: &Call<'_>,
        shutdown: &CancellationToken,
    ) -> Result<Result<Answer, String>, Stopping> {
        let mut backoff = ExponentialBuilder::default()
            .with_min_delay(self.inner.retry_min)
            .with_max_delay(self.inner.retry_max)
            .with_max_times(self.inner.max_retries)
            .with_jitter()
            .build();
        loop {
            let failure = match self.send_once(call, shutdown).await? {
                Sent::Answered(answer) => return Ok(Ok(answer)),
                Sent::RateLimited => continue,
                Sent::Failed(failure) => failure,
            };
            match backoff.next() {
                Some(delay) => {
                    tracing::warn!(route = %call.route.key, %failure, ?delay, "discord request failed, retrying");
                    tokio::time::sleep(delay).await;
                }
                None => return Ok(Err(failure)),
            }
        }
    }

    async fn send_once(
        &self,
        call: &Call<'_>,
        shutdown: &CancellationToken,
    ) -> Result<Sent, Stopping> {
        let limiter = &self.inner.limiter;
        let ticket = limiter.acquire(&call.route, shutdown).await?;
        let url = format!("{}{}", self.inner.base, call.path);
        let mut request = self.inner.http.request(call.method.clone(), url);
        match call.auth {
            Auth::None => {}
            Auth::Bearer(token) => request = request.bearer_auth(token),
            Auth::Bot => {
                if let Some(token) = &self.inner.bot_token {
                    request = request.header(
                        reqwest::header::AUTHORIZATION,
                        format!("Bot {}", token.expose_secret()),
                    );
                }
            }
        }
        if let Some(form) = &call.form {
            request = request
                .header(
                    reqwest::header::CONTENT_TYPE,
                    "application/x-www-form-urlencoded",
                )
                .body(form.clone());
        }
        let route = call.route.key.clone();
        let started = std::time::Instant::now();
        let response = match request.send().await {
            Ok(response) => response,
            Err(error) => {
                limiter.cancel(&ticket);
                count(&route, "error");
                observe(&route, started);
                return Ok(Sent::Failed(describe(error)));
            }
        };
        let status = response.status().as_u16();
        let mut feedback = feedback(status, response.headers());
        let body = match response.bytes().await {
            Ok(body) => body.to_vec(),
            Err(error) => {
                limiter.record(&ticket, &feedback);
                count(&route, "error");
                observe(&route, started);
                return Ok(Sent::Failed(describe(error)));
            }
        };
        count(&route, &status.to_string());
        observe(&route, started);
        if status == 429 {
            // Discord's body, when there is one: `retry_after` (seconds,
            // fractional) and `global`. An edge answer may be HTML or empty.
            let body: RateLimitBody = serde_json::from_slice(&body).unwrap_or_default();
            let from_body = body
                .retry_after
                .and_then(|secs| Duration::try_from_secs_f64(secs).ok());
            feedback.retry_after = feedback.retry_after.max(from_body);
            feedback.global |= body.global;
            limiter.record(&ticket, &feedback);
            let kind = feedback.limited().unwrap_or(Limited::Edge);
            metrics::counter!("palm_discord_rate_limited_total", "global" => kind.is_global().to_string())
                .increment(1);
            tracing::warn!(
                route = %route,
                kind = kind.as_str(),
                bucket = feedback.bucket.as_deref().unwrap_or(""),
                retry_after = ?feedback.retry_after,
                reset_after = ?feedback.reset_after,
                "discord rate limited a request, waiting before sending it again"
            );
            return Ok(Sent::RateLimited);
        }
        limiter.record(&ticket, &feedback);
        if status >= 500 {
            return Ok(Sent::Failed(format!("discord answered {status}")));
        }
        Ok(Sent::Answered(Answer { status, body }))
    }

    /// Asks Discord something cheap until it answers, whenever it is down;
    /// returns on `shutdown`.
    pub async fn probe_while_down(&self, shutdown: CancellationToken) {
        let probe = Call {
            route: Route::new("GET /gateway"),
            method: reqwest::Method::GET,
            path: "/gateway".into(),
            auth: Auth::None,
            form: None,
        };
        loop {
            tokio::select! {
                () = self.inner.availability.wait_down() => {}
                () = shutdown.cancelled() => return,
            }
            tokio::select! {
                () = tokio::time::sleep(self.inner.probe_interval) => {}
                () = shutdown.cancelled() => return,
            }
            if let Ok(Sent::Answered(_)) = self.send_once(&probe, &shutdown).await {
                self.inner.availability.set(true, "probe answered");
            }
        }
    }
}

enum Sent {
    Answered(Answer),
    RateLimited,
    Failed(String),
}

#[derive(Debug, Default, serde::Deserialize)]
struct RateLimitBody {
    #[serde(default)]
    retry_after: Option<f64>,
    #[serde(default)]
    global: bool,
}

/// The routes this client calls, for series registered before the first
/// call.
pub const ROUTES: &[&str] = &[
    "POST /oauth2/token",
    "GET /users/@me",
    "GET /guilds/{guild}/members/{user}",
    "PUT /guilds/{guild}/members/{user}/roles/{role}",
    "GET /gateway",
];

/// Registers the Discord series at their starting values: the request
/// latency per route (empty), the rate-limit counters, the invalid-request
/// budget, and Discord as up.
pub fn register_metrics(invalid_request_budget: u32) {
    for route in ROUTES {
        let _ = metrics::histogram!("palm_discord_request_duration_seconds", "route" => *route);
    }
    for global in ["true", "false"] {
        let _ = metrics::counter!("palm_discord_rate_limited_total", "global" => global);
    }
    metrics::gauge!("palm_discord_invalid_request_budget").set(f64::from(invalid_request_budget));
    metrics::gauge!("palm_discord_invalid_requests_window").set(0.0);
    metrics::gauge!("palm_discord_halted").set(0.0);
    metrics::gauge!("palm_discord_up").set(1.0);
}

/// Records one request's time, from sending to the whole answer read.
fn observe(route: &str, started: std::time::Instant) {
    metrics::histogram!("palm_discord_request_duration_seconds", "route" => route.to_owned())
        .record(started.elapsed().as_secs_f64());
}

fn count(route: &str, status: &str) {
    metrics::counter!(
        "palm_discord_requests_total",
        "route" => route.to_owned(),
        "status" => status.to_owned()
    )
    .increment(1);
}

/// A transport error with its causes, without the URL (logs stay the same
/// for every request of a route).
fn describe(error: reqwest::Error) -> String {
    let kind = if error.is_timeout() {
        "timed out"
    } else if error.is_connect() {
        "could not connect"
    } else {
        "transport error"
    };
    format!("{kind}: {:#}", anyhow::Error::from(error.without_url()))
}

/// What the rate-limit headers of an answer say.
pub fn feedback(status: u16, headers: &reqwest::header::HeaderMap) -> Feedback {
    let text = |name: &str| headers.get(name).and_then(|value| value.to_str().ok());
    let seconds = |name: &str| {
        text(name)
            .and_then(|value| value.trim().parse::<f64>().ok())
            .and_then(|secs| Duration::try_from_secs_f64(secs).ok())
    };
    Feedback {
        status,
        bucket: text("x-ratelimit-bucket").map(str::to_owned),
        limit: text("x-ratelimit-limit").and_then(|v| v.trim().parse().ok()),
        remaining: text("x-ratelimit-remaining").and_then(|v| v.trim().parse().ok()),
        reset_after: seconds("x-ratelimit-reset-after"),
        retry_after: seconds("retry-after"),
        global: text("x-ratelimit-global").is_some_and(|v| v.trim().eq_ignore_ascii_case("true")),
        scope: text("x-ratelimit-scope").and_then(Scope::parse),
        limiter_headers: headers
            .keys()
            .any(|name| name.as_str().starts_with("x-ratelimit-")),
    }
}

/// `application/x-www-form-urlencoded` for `pairs` (the WHATWG rules: bytes
/// outside `*-._` and alphanumerics are percent-encoded, space as `+`).
pub fn form_urlencoded(pairs: &[(&str, &str)]) -> String {
    fn encode(out: &mut String, value: &str) {
        for byte in value.bytes() {
            match byte {
                b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'*' | b'-' | b'.' | b'_' => {
                    out.push(char::from(byte));
                }
                b' ' => out.push('+'),
                _ => out.push_str(&format!("%{byte:02X}")),
            }
        }
    }
    let mut out = String::new();
    for (i, (name, value)) in pairs.iter().enumerate() {
        if i > 0 {
            out.push('&');
        }
        encode(&mut out, name);
        out.push('=');
        encode(&mut out, value);
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use reqwest::header::{HeaderMap, HeaderValue};

    #[test]
    fn form_encoding_escapes_what_it_must() {
        assert_eq!(
            form_urlencoded(&[
                ("grant_type", "authorization_code"),
                ("redirect_uri", "https://palm.test/cb?a=1&b=é x"),
            ]),
            "grant_type=authorization_code&redirect_uri=https%3A%2F%2Fpalm.test%2Fcb%3Fa%3D1%26b%3D%C3%A9+x"
        );
    }

    #[test]
    fn rate_limit_headers_are_read_with_fractional_seconds() {
        let mut headers = HeaderMap::new();
        for (name, value) in [
            ("x-ratelimit-bucket", "abcd1234"),
            ("x-ratelimit-limit", "5"),
            ("x-ratelimit-remaining", "0"),
            ("x-ratelimit-reset-after", "0.250"),
            ("retry-after", "1.5"),
            ("x-ratelimit-global", "true"),
            ("x-ratelimit-scope", "shared"),
        ] {
            headers.insert(name, HeaderValue::from_static(value));
        }
        let feedback = feedback(429, &headers);
        assert_eq!(feedback.bucket.as_deref(), Some("abcd1234"));
        assert_eq!((feedback.limit, feedback.remaining), (Some(5), Some(0)));
        assert_eq!(feedback.reset_after, Some(Duration::from_millis(250)));
        assert_eq!(feedback.retry_after, Some(Duration::from_millis(1500)));
        assert_eq!(feedback.scope, Some(Scope::Shared));
        assert!(feedback.global && feedback.limiter_headers && !feedback.is_invalid());
    }

    #[test]
    fn a_429_without_rate_limit_headers_is_the_edge_and_other_headers_do_not_count() {
        let mut headers = HeaderMap::new();
        headers.insert("retry-after", HeaderValue::from_static("7"));
        headers.insert("cf-ray", HeaderValue::from_static("8a1b2c3d4e5f-AMS"));
        headers.insert("content-type", HeaderValue::from_static("text/html"));
        let feedback = feedback(429, &headers);
        assert!(!feedback.limiter_headers);
        assert_eq!(feedback.retry_after, Some(Duration::from_secs(7)));
        assert_eq!(feedback.limited(), Some(Limited::Edge));
        // Only the scope header: Discord's limiter, a resource limit.
        headers.insert("x-ratelimit-scope", HeaderValue::from_static("Shared"));
        assert_eq!(feedback_of(&headers).limited(), Some(Limited::Shared));
    }

    fn feedback_of(headers: &HeaderMap) -> Feedback {
        feedback(429, headers)
    }

    #[test]
    fn the_user_agent_follows_discords_form_and_names_the_instance() {
        let agent = user_agent("pod-7");
        assert!(agent.starts_with("DiscordBot (https://"), "{agent}");
        assert!(agent.ends_with("palmvalidator-discord/pod-7"), "{agent}");
    }
}
