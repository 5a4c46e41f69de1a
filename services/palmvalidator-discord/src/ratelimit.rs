//! The process's one rate limiter: every request to Discord takes a
//! [`Ticket`] from it first and reports what the answer said.
//!
//! It follows Discord's rate-limit documentation
//! (<https://discord.com/developers/docs/topics/rate-limits>, "Header
//! Format", "Exceeding A Rate Limit", "Global Rate Limit", "Invalid Request
//! Limit aka Cloudflare bans"). A request goes out only when every limit
//! below allows it:
//!
//! - **Global rate**: at most `max_requests_per_second` request starts in any
//!   window of one second (plus [`JITTER_MARGIN`], since Discord counts
//!   arrivals on its side and the network can bunch requests up). A sliding
//!   log of recent starts, so short bursts use the whole allowance.
//! - **Global pause**: after a global `429` (`X-RateLimit-Global: true`,
//!   `X-RateLimit-Scope: global` or `"global": true`), or a `429` that
//!   carries no `X-RateLimit-*` header at all (not Discord's route limiter
//!   but the edge in front of it: a Cloudflare ban covers the whole IP),
//!   nothing goes out until its retry time.
//! - **Route buckets**: each route's `X-RateLimit-Limit` / `-Remaining` /
//!   `-Reset-After`, grouped by `X-RateLimit-Bucket` (routes sharing a bucket
//!   hash share the limit, per major parameter). Requests reserve a slot
//!   locally, so concurrent ones never overdraw what Discord last reported;
//!   when no request of the bucket is in flight any more, the lowest
//!   `remaining` Discord reported since is taken as it is (Discord's word
//!   beats the local count). A route whose limits are not known yet sends one
//!   request at a time until an answer tells them. A bucket waits for its
//!   reset only when Discord said it is exhausted (`remaining` 0, or a `429`
//!   on it): a route is never parked on the reset of a bucket that still has
//!   requests left, however far away that reset is.
//! - **Hidden buckets**: a `429` whose `X-RateLimit-Bucket` differs from the
//!   hash the route's other answers carry is a limit those answers never
//!   show (a sub-limit). It becomes a bucket of its own, keyed by its hash
//!   and the major parameter, that every later request of the route must
//!   pass too: closed until the `429`'s retry time, then at most its
//!   `X-RateLimit-Limit` requests in any window as long as the
//!   `X-RateLimit-Reset-After` it reported (a sliding log; another `429` from
//!   it lengthens the window to what our own request times prove). The
//!   route's ordinary bucket is left as its own answers describe it.
//! - **Resource limits**: a `429` of the `shared` scope (a per-resource
//!   limit, which does not count against the invalid-request limit), or one
//!   on a bucket that is not exhausted, holds the route for that major
//!   parameter until `Retry-After`; the bucket keeps what its headers say.
//! - **`429` retry time**: `Retry-After` (header or body `retry_after`, the
//!   longer); for an exhausted bucket the longer of that and
//!   `X-RateLimit-Reset-After`. A `429` that gives no retry time waits
//!   [`UNEXPLAINED_WAIT_MIN`], doubling with each such `429` in a row up to
//!   [`UNEXPLAINED_WAIT_MAX`].
//! - **Invalid-request budget**: 401, 403 and 429 answers (except 429s of
//!   the `shared` scope, which Discord does not count) within ten minutes,
//!   plus the requests in flight (each may come back invalid); at the
//!   budget nothing goes out until old ones age out of the window, so this
//!   process can never reach Discord's 10,000 ban threshold.
//!
//! The bookkeeping is a plain state machine ([`State`]) over explicit
//! instants, unit-tested without clocks; [`RateLimiter`] wraps it with a
//! mutex and the waiting.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use palm_service::metrics;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// The global-rate window Discord uses.
pub const GLOBAL_WINDOW: Duration = Duration::from_secs(1);

/// Added to [`GLOBAL_WINDOW`] (and to a hidden bucket's window) so requests
/// sent exactly one window apart are not counted in one window by Discord
/// when the network delays the first more than the last.
pub const JITTER_MARGIN: Duration = Duration::from_millis(50);

/// The window of Discord's invalid-request limit.
pub const INVALID_WINDOW: Duration = Duration::from_secs(600);

/// The wait after a `429` that says neither `Retry-After` nor
/// `retry_after`; doubled for each such `429` in a row.
pub const UNEXPLAINED_WAIT_MIN: Duration = Duration::from_secs(1);

/// The longest wait a `429` without a retry time gets.
pub const UNEXPLAINED_WAIT_MAX: Duration = Duration::from_secs(300);

/// The longest wait taken from an answer (a garbled header cannot park the
/// process for ever, nor overflow the clock).
pub const MAX_WAIT: Duration = Duration::from_secs(7 * 24 * 3600);

/// How long to wait for an answer that should update a bucket before
/// looking again anyway (a lost answer must not block a route forever).
const ANSWER_WAIT: Duration = Duration::from_secs(1);

/// Once the service is stopping, a request still waits for a slot this long
/// (the job may hold an exchanged code, worth finishing); a longer wait (a
/// halted budget, a long global pause) gives the job back to the queue.
const PATIENCE_WHEN_STOPPING: Duration = Duration::from_secs(5);

/// The service is stopping and the request would wait too long, or Discord
/// is unreachable: the job goes back to the queue.
#[derive(Debug, thiserror::Error)]
#[error("stopping before discord could be called")]
pub struct Stopping;

/// A Discord route as its rate limits see it: method and path template,
/// plus the major parameter (a guild id) that splits a shared bucket.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Route {
    /// `GET /users/@me`, `GET /guilds/{guild}/members/{user}`, …
    pub key: String,
    /// The major parameter's value, or empty.
    pub major: String,
}

impl Route {
    /// A route without a major parameter.
    pub fn new(key: &str) -> Self {
        Self {
            key: key.to_owned(),
            major: String::new(),
        }
    }

    /// A route under a guild (major parameter).
    pub fn in_guild(key: &str, guild: &str) -> Self {
        Self {
            key: key.to_owned(),
            major: guild.to_owned(),
        }
    }

    fn resource(&self) -> String {
        format!("{}:{}", self.key, self.major)
    }
}

/// `X-RateLimit-Scope`, sent with `429`s.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// A per-bot (per-token) limit: a route bucket.
    User,
    /// The per-bot global limit.
    Global,
    /// A per-resource limit, shared by everyone calling the resource; not
    /// counted against the invalid-request limit.
    Shared,
}

impl Scope {
    /// The header's value, case-insensitively; `None` for anything else.
    pub fn parse(value: &str) -> Option<Self> {
        let value = value.trim();
        [
            ("user", Self::User),
            ("global", Self::Global),
            ("shared", Self::Shared),
        ]
        .into_iter()
        .find_map(|(name, scope)| value.eq_ignore_ascii_case(name).then_some(scope))
    }
}

/// What one answer said about the limits.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Feedback {
    /// HTTP status.
    pub status: u16,
    /// `X-RateLimit-Bucket`.
    pub bucket: Option<String>,
    /// `X-RateLimit-Limit`.
    pub limit: Option<u32>,
    /// `X-RateLimit-Remaining`.
    pub remaining: Option<u32>,
    /// `X-RateLimit-Reset-After`.
    pub reset_after: Option<Duration>,
    /// For a `429`: `Retry-After` (header or body, the longer).
    pub retry_after: Option<Duration>,
    /// For a `429`: `X-RateLimit-Global: true` or `"global": true`.
    pub global: bool,
    /// For a `429`: `X-RateLimit-Scope`.
    pub scope: Option<Scope>,
    /// Whether any `X-RateLimit-*` header came with the answer: Discord's
    /// rate limiter answered, not an edge (Cloudflare) in front of it.
    pub limiter_headers: bool,
}

/// What kind of `429` an answer is, and so what it holds back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limited {
    /// The token's global limit: every request waits.
    Global,
    /// No `X-RateLimit-*` header: the edge in front of Discord (a Cloudflare
    /// ban is per IP): every request waits.
    Edge,
    /// `X-RateLimit-Scope: shared`: the resource (route and major
    /// parameter) waits; not an invalid request.
    Shared,
    /// A bucket reported exhausted (`remaining` 0): that bucket waits.
    Exhausted,
    /// A per-route limit on a bucket that is not exhausted (a sub-limit):
    /// the resource waits `Retry-After`, the bucket is left alone.
    Sublimit,
}

impl Limited {
    /// A short name for logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Global => "global",
            Self::Edge => "edge",
            Self::Shared => "shared",
            Self::Exhausted => "bucket",
            Self::Sublimit => "sublimit",
        }
    }

    /// Whether it holds back every request of the process.
    pub fn is_global(self) -> bool {
        matches!(self, Self::Global | Self::Edge)
    }
}

impl Feedback {
    /// Whether Discord counts this answer against the invalid-request limit.
    pub fn is_invalid(&self) -> bool {
        matches!(self.status, 401 | 403)
            || (self.status == 429 && self.scope != Some(Scope::Shared))
    }

    /// For a `429`, its kind.
    pub fn limited(&self) -> Option<Limited> {
        if self.status != 429 {
            return None;
        }
        Some(if self.global || self.scope == Some(Scope::Global) {
            Limited::Global
        } else if !self.limiter_headers {
            Limited::Edge
        } else if self.scope == Some(Scope::Shared) {
            Limited::Shared
        } else if self.remaining == Some(0) {
            Limited::Exhausted
        } else {
            Limited::Sublimit
        })
    }

    fn report(&self) -> Option<(u32, u32, Duration)> {
        let ((limit, remaining), reset_after) =
            self.limit.zip(self.remaining).zip(self.reset_after)?;
        Some((limit, remaining, reset_after.min(MAX_WAIT)))
    }
}

/// Permission to send one request; hand it back with [`RateLimiter::record`]
/// or [`RateLimiter::cancel`].
#[derive(Debug)]
pub struct Ticket {
    route: Route,
    bucket: String,
    epoch: u64,
    started: Instant,
}

/// Why a request cannot go out yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wait {
    /// Not before this instant.
    Until(Instant),
    /// Until an answer in flight on the same bucket tells its limits.
    Answer,
}

/// A bucket whose answers carry its headers.
#[derive(Debug, Default)]
struct Bucket {
    /// Limits known from an answer; until then one request at a time.
    known: bool,
    /// An unknown bucket's single request is in flight.
    probing: bool,
    limit: u32,
    /// Requests left in this window, as far as we may assume: Discord's
    /// report less what we sent since.
    remaining: u32,
    /// Discord said this window is used up (`remaining` 0, or a `429` on
    /// the bucket): only then does the bucket wait for `reset_at`.
    exhausted: bool,
    /// The lowest `remaining` reported since the bucket last had nothing in
    /// flight; becomes `remaining` when the last answer is in.
    lowest_reported: Option<u32>,
    /// When Discord refills it; `None` after a local refill until an answer
    /// of the new window says.
    reset_at: Option<Instant>,
    /// Increases with each refill, so an answer to a request of an earlier
    /// window does not overwrite the current one.
    epoch: u64,
    /// Requests sent and not answered yet: at a refill they may land in the
    /// new window, so they are taken out of it.
    in_flight: u32,
    /// A `429` without limit headers emptied it: after the wait, learn the
    /// limits again (one request) instead of assuming a full window.
    relearn: bool,
}

impl Bucket {
    fn refill_if_due(&mut self, now: Instant) {
        if self.known && self.reset_at.is_some_and(|at| at <= now) {
            self.known = !self.relearn;
            self.relearn = false;
            self.exhausted = false;
            self.lowest_reported = None;
            self.remaining = self.limit.saturating_sub(self.in_flight);
            self.reset_at = None;
            self.epoch += 1;
        }
    }

    /// Takes in what an answer of the current window reported.
    fn apply_report(&mut self, limit: u32, remaining: u32, reset_at: Instant) {
        self.limit = limit.max(1);
        self.reset_at = Some(reset_at);
        if remaining == 0 {
            self.exhausted = true;
        }
        let lowest = self.lowest_reported.map_or(remaining, |l| l.min(remaining));
        if self.in_flight == 0 {
            // Every request we sent is answered: Discord's count is the
            // truth, whether above or below ours.
            self.remaining = lowest;
            self.lowest_reported = None;
        } else {
            // Those still in flight may not be in this report.
            self.remaining = self.remaining.min(remaining.saturating_sub(self.in_flight));
            self.lowest_reported = Some(lowest);
        }
    }
}

/// A limit seen only on a `429` (its hash differs from the one the route's
/// answers carry): what it allows is learned from that `429` alone.
#[derive(Debug)]
struct Hidden {
    limit: u32,
    window: Duration,
    until: Instant,
    /// Starts of the last `limit` requests counted in it.
    starts: VecDeque<Instant>,
}

impl Hidden {
    fn wait(&self, now: Instant) -> Option<Instant> {
        if self.until > now {
            return Some(self.until);
        }
        // At most `limit` starts in any span of the window (plus margin).
        let span = self.window + JITTER_MARGIN;
        let limit = usize::try_from(self.limit).unwrap_or(usize::MAX);
        let len = self.starts.len();
        (len >= limit)
            .then(|| self.starts[len - limit] + span)
            .filter(|free_at| *free_at > now)
    }

    fn started(&mut self, now: Instant) {
        self.starts.push_back(now);
        // The last `limit` before any request still in flight are enough.
        let keep = usize::try_from(self.limit)
            .unwrap_or(usize::MAX)
            .saturating_mul(2);
        while self.starts.len() > keep {
            self.starts.pop_front();
        }
    }

    /// The oldest of the last `limit` requests sent before `before`: the
    /// window that refused a request sent at `before` counted them all.
    fn oldest_counted(&self, before: Instant) -> Option<Instant> {
        let limit = usize::try_from(self.limit).unwrap_or(usize::MAX);
        let earlier = self.starts.iter().filter(|at| **at < before).count();
        (earlier >= limit).then(|| self.starts[earlier - limit])
    }
}

/// The limiter's bookkeeping, over explicit instants.
#[derive(Debug)]
pub struct State {
    max_per_second: usize,
    budget: usize,
    started: VecDeque<Instant>,
    global_until: Option<Instant>,
    /// `429`s in a row that gave no retry time.
    unexplained: u32,
    /// Route key → bucket hash, as the route's answers (not its `429`s)
    /// reported it.
    hashes: HashMap<String, String>,
    buckets: HashMap<String, Bucket>,
    /// Route key → hashes of the hidden buckets its `429`s revealed.
    hidden_of: HashMap<String, Vec<String>>,
    /// `hash:major` → hidden bucket.
    hidden: HashMap<String, Hidden>,
    /// `route:major` → held until (shared-scope and sub-limit `429`s).
    resources: HashMap<String, Instant>,
    invalid: VecDeque<Instant>,
    /// Requests sent and not answered yet, on any route: each may come back
    /// invalid, so they count against the budget until they do not.
    in_flight: usize,
}

impl State {
    /// At most `max_per_second` requests per second; stop at `budget`
    /// invalid answers in [`INVALID_WINDOW`].
    pub fn new(max_per_second: u32, budget: u32) -> Self {
        Self {
            max_per_second: usize::try_from(max_per_second.max(1)).unwrap_or(1),
            budget: usize::try_from(budget.max(1)).unwrap_or(1),
            started: VecDeque::new(),
            global_until: None,
            unexplained: 0,
            hashes: HashMap::new(),
            buckets: HashMap::new(),
            hidden_of: HashMap::new(),
            hidden: HashMap::new(),
            resources: HashMap::new(),
            invalid: VecDeque::new(),
            in_flight: 0,
        }
    }

    fn bucket_key(&self, route: &Route) -> String {
        match self.hashes.get(&route.key) {
            Some(hash) => format!("{hash}:{}", route.major),
            None => format!("{}:{}", route.key, route.major),
        }
    }

    fn hidden_keys(&self, route: &Route) -> Vec<String> {
        self.hidden_of
            .get(&route.key)
            .map(|hashes| {
                hashes
                    .iter()
                    .map(|hash| format!("{hash}:{}", route.major))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Invalid answers within the window ending at `now`.
    pub fn invalid_in_window(&mut self, now: Instant) -> usize {
        while self
            .invalid
            .front()
            .is_some_and(|at| now.saturating_duration_since(*at) >= INVALID_WINDOW)
        {
            self.invalid.pop_front();
        }
        self.invalid.len()
    }

    /// Whether the invalid-request budget is used up at `now`.
    pub fn halted(&mut self, now: Instant) -> bool {
        self.invalid_in_window(now) >= self.budget
    }

    /// Takes a ticket for `route` at `now`, or says how long to wait.
    pub fn try_acquire(&mut self, route: &Route, now: Instant) -> Result<Ticket, Wait> {
        let invalid = self.invalid_in_window(now);
        if invalid >= self.budget {
            // Resumes when enough of them have aged out.
            let oldest_that_must_go = self.invalid[invalid - self.budget];
            return Err(Wait::Until(oldest_that_must_go + INVALID_WINDOW));
        }
        if invalid + self.in_flight >= self.budget {
            // The answers in flight could use up what is left.
            return Err(Wait::Answer);
        }
        if let Some(until) = self.global_until {
            if until > now {
                return Err(Wait::Until(until));
            }
            self.global_until = None;
        }
        let resource = route.resource();
        if let Some(until) = self.resources.get(&resource).copied() {
            if until > now {
                return Err(Wait::Until(until));
            }
            self.resources.remove(&resource);
        }
        let key = self.bucket_key(route);
        let bucket = self.buckets.entry(key.clone()).or_default();
        bucket.refill_if_due(now);
        if bucket.known && bucket.remaining == 0 && !bucket.exhausted && bucket.in_flight == 0 {
            // Our count ran out but Discord never said so, and no answer
            // is coming (one was lost): ask once instead of waiting for a
            // reset that may be a day away.
            bucket.known = false;
        }
        if !bucket.known {
            if bucket.probing || bucket.in_flight > 0 {
                return Err(Wait::Answer);
            }
        } else if bucket.remaining == 0 {
            return Err(match bucket.reset_at {
                Some(at) if bucket.exhausted => Wait::Until(at),
                _ => Wait::Answer,
            });
        }
        let hidden_keys = self.hidden_keys(route);
        for hidden_key in &hidden_keys {
            if let Some(at) = self.hidden.get(hidden_key).and_then(|h| h.wait(now)) {
                return Err(Wait::Until(at));
            }
        }
        let window = GLOBAL_WINDOW + JITTER_MARGIN;
        while self
            .started
            .front()
            .is_some_and(|at| now.saturating_duration_since(*at) >= window)
        {
            self.started.pop_front();
        }
        if self.started.len() >= self.max_per_second
            && let Some(oldest) = self.started.front()
        {
            return Err(Wait::Until(*oldest + window));
        }
        self.started.push_back(now);
        for hidden_key in &hidden_keys {
            if let Some(hidden) = self.hidden.get_mut(hidden_key) {
                hidden.started(now);
            }
        }
        let bucket = self.buckets.entry(key.clone()).or_default();
        if bucket.known {
            bucket.remaining -= 1;
        } else {
            bucket.probing = true;
        }
        bucket.in_flight += 1;
        self.in_flight += 1;
        Ok(Ticket {
            route: route.clone(),
            bucket: key,
            epoch: bucket.epoch,
            started: now,
        })
    }

    /// Applies what the answer to `ticket`'s request said, received at `now`.
    pub fn record(&mut self, ticket: &Ticket, feedback: &Feedback, now: Instant) {
        self.in_flight = self.in_flight.saturating_sub(1);
        if feedback.is_invalid() {
            self.invalid.push_back(now);
        }
        let limited = feedback.limited();
        let route = &ticket.route;
        // Only an answer that is not a 429 says which bucket the route is
        // in; a 429 with another hash is a hidden bucket (below).
        let mut key = ticket.bucket.clone();
        if limited.is_none()
            && let Some(hash) = &feedback.bucket
            && self.hashes.get(&route.key) != Some(hash)
        {
            self.hashes.insert(route.key.clone(), hash.clone());
            let new_key = self.bucket_key(route);
            // The first route to report a hash brings its state along;
            // later ones join the bucket already there.
            if let Some(state) = self.buckets.remove(&key)
                && !self.buckets.contains_key(&new_key)
            {
                self.buckets.insert(new_key.clone(), state);
            }
            key = new_key;
            // A limit this route's answers now describe is no longer hidden.
            if let Some(hidden) = self.hidden_of.get_mut(&route.key) {
                hidden.retain(|h| h != hash);
            }
        }
        let main_hash = self.hashes.get(&route.key).cloned();
        let bucket = self.buckets.entry(key).or_default();
        bucket.probing = false;
        bucket.in_flight = bucket.in_flight.saturating_sub(1);
        let Some(limited) = limited else {
            self.unexplained = 0;
            match feedback.report() {
                Some((limit, remaining, reset_after)) => {
                    if !bucket.known {
                        bucket.known = true;
                        bucket.exhausted = false;
                        bucket.lowest_reported = None;
                        bucket.remaining = u32::MAX;
                        bucket.apply_report(limit, remaining, now + reset_after);
                    } else if ticket.epoch == bucket.epoch {
                        bucket.apply_report(limit, remaining, now + reset_after);
                    }
                }
                None if !bucket.known => {
                    // A route Discord does not limit: nothing to keep.
                    bucket.known = true;
                    bucket.limit = u32::MAX;
                    bucket.remaining = u32::MAX;
                    bucket.reset_at = None;
                }
                None => {}
            }
            return;
        };
        let told = feedback.retry_after.map(|d| d.min(MAX_WAIT));
        let reset_after = feedback.reset_after.map(|d| d.min(MAX_WAIT));
        let retry = match (told, limited) {
            (Some(told), Limited::Exhausted) => Some(told.max(reset_after.unwrap_or_default())),
            (Some(told), _) => Some(told),
            (None, Limited::Exhausted) => reset_after,
            (None, _) => None,
        };
        let wait = match retry {
            Some(wait) => {
                self.unexplained = 0;
                wait
            }
            None => {
                let wait = UNEXPLAINED_WAIT_MIN
                    .saturating_mul(1 << self.unexplained.min(16))
                    .min(UNEXPLAINED_WAIT_MAX);
                self.unexplained += 1;
                wait
            }
        };
        let until = now + wait;
        let hidden_hash = feedback
            .bucket
            .as_ref()
            .filter(|hash| main_hash.as_ref() != Some(*hash));
        match limited {
            Limited::Global | Limited::Edge => {
                self.global_until = Some(self.global_until.map_or(until, |u| u.max(until)));
            }
            Limited::Shared | Limited::Sublimit => {
                // The bucket is not exhausted: hold this resource for the
                // retry time only; the bucket keeps what its headers say.
                if hidden_hash.is_none()
                    && let Some((limit, remaining, reset_after)) = feedback.report()
                    && bucket.known
                    && ticket.epoch == bucket.epoch
                {
                    bucket.apply_report(limit, remaining, now + reset_after);
                }
                let resource = self.resources.entry(route.resource()).or_insert(until);
                *resource = (*resource).max(until);
            }
            Limited::Exhausted => match hidden_hash {
                None => {
                    match feedback.limit.zip(feedback.reset_after) {
                        Some((limit, _)) => {
                            bucket.limit = limit.max(1);
                            bucket.relearn = false;
                        }
                        // Nothing known about the window after the wait.
                        None => bucket.relearn = true,
                    }
                    bucket.known = true;
                    bucket.exhausted = true;
                    bucket.remaining = 0;
                    bucket.lowest_reported = None;
                    bucket.reset_at = Some(until);
                }
                Some(hash) => {
                    let hashes = self.hidden_of.entry(route.key.clone()).or_default();
                    if !hashes.contains(hash) {
                        hashes.push(hash.clone());
                    }
                    let hidden = self
                        .hidden
                        .entry(format!("{hash}:{}", route.major))
                        .or_insert_with(|| Hidden {
                            limit: 1,
                            window: Duration::ZERO,
                            until,
                            starts: VecDeque::new(),
                        });
                    if let Some(limit) = feedback.limit {
                        hidden.limit = limit.max(1);
                    }
                    // Its window is at least what it said was left of it,
                    // and at least the span from the oldest request it
                    // counted (the last `limit` we sent through it) to its
                    // end.
                    let mut window = hidden.window.max(reset_after.unwrap_or(wait));
                    if let Some(reset_after) = reset_after
                        && let Some(oldest) = hidden.oldest_counted(ticket.started)
                    {
                        window = window.max((now + reset_after).saturating_duration_since(oldest));
                    }
                    hidden.window = window.min(MAX_WAIT);
                    hidden.until = hidden.until.max(until);
                    hidden.starts.clear();
                }
            },
        }
    }

    /// The request of `ticket` got no answer (connection error, timeout).
    /// Its slot stays used (Discord may have counted it); once nothing of
    /// the bucket is in flight and the count says empty without Discord
    /// having said so, the next request asks (see [`State::try_acquire`]).
    pub fn cancel(&mut self, ticket: &Ticket) {
        self.in_flight = self.in_flight.saturating_sub(1);
        if let Some(bucket) = self.buckets.get_mut(&ticket.bucket) {
            bucket.probing = false;
            bucket.in_flight = bucket.in_flight.saturating_sub(1);
        }
    }
}

/// [`State`] shared by every request of the process, with waiting.
#[derive(Debug)]
pub struct RateLimiter {
    state: Mutex<State>,
    answered: Notify,
}

impl RateLimiter {
    /// See [`State::new`].
    pub fn new(max_per_second: u32, budget: u32) -> Self {
        Self {
            state: Mutex::new(State::new(max_per_second, budget)),
            answered: Notify::new(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // The state stays consistent across a panic (every update is a few
        // plain assignments), so a poisoned lock is still usable.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Waits until a request on `route` may go out and takes its ticket;
    /// once `shutdown` is cancelled, gives up on a wait longer than a few
    /// seconds.
    pub async fn acquire(
        &self,
        route: &Route,
        shutdown: &CancellationToken,
    ) -> Result<Ticket, Stopping> {
        let mut halted_logged = false;
        loop {
            let answered = self.answered.notified();
            tokio::pin!(answered);
            answered.as_mut().enable();
            let now = Instant::now();
            let wait = {
                let mut state = self.lock();
                match state.try_acquire(route, now) {
                    Ok(ticket) => {
                        if halted_logged {
                            metrics::gauge!("palm_discord_halted").set(0.0);
                            tracing::info!(
                                "discord invalid-request budget recovered, calling discord again"
                            );
                        }
                        return Ok(ticket);
                    }
                    Err(wait) => {
                        if !halted_logged && state.halted(now) {
                            halted_logged = true;
                            tracing::error!(
                                invalid_requests = state.invalid_in_window(now),
                                "discord invalid-request budget exhausted: no request goes out until the ten-minute window allows"
                            );
                        }
                        wait
                    }
                }
            };
            let stopping = shutdown.is_cancelled();
            match wait {
                Wait::Until(at) if stopping && at > now + PATIENCE_WHEN_STOPPING => {
                    return Err(Stopping);
                }
                Wait::Until(at) => {
                    tokio::select! {
                        () = tokio::time::sleep_until(tokio::time::Instant::from_std(at)) => {}
                        () = shutdown.cancelled(), if !stopping => {}
                    }
                }
                Wait::Answer => {
                    tokio::select! {
                        () = &mut answered => {}
                        () = tokio::time::sleep(ANSWER_WAIT) => {}
                    }
                }
            }
        }
    }

    /// Reports the answer to a ticket's request.
    pub fn record(&self, ticket: &Ticket, feedback: &Feedback) {
        let now = Instant::now();
        let (invalid, halted) = {
            let mut state = self.lock();
            state.record(ticket, feedback, now);
            let invalid = state.invalid_in_window(now);
            (invalid, state.halted(now))
        };
        self.answered.notify_waiters();
        metrics::gauge!("palm_discord_invalid_requests_window").set(invalid as f64);
        metrics::gauge!("palm_discord_halted").set(if halted { 1.0 } else { 0.0 });
        if feedback.is_invalid() && halted {
            tracing::error!(
                invalid_requests = invalid,
                status = feedback.status,
                "discord invalid-request budget exhausted: stopping calls to discord"
            );
        }
    }

    /// Reports that a ticket's request got no answer.
    pub fn cancel(&self, ticket: &Ticket) {
        self.lock().cancel(ticket);
        self.answered.notify_waiters();
    }

    /// Whether the invalid-request budget is used up now.
    pub fn halted(&self) -> bool {
        self.lock().halted(Instant::now())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn ok(limit: u32, remaining: u32, reset_after_ms: u64) -> Feedback {
        Feedback {
            status: 200,
            limit: Some(limit),
            remaining: Some(remaining),
            reset_after: Some(ms(reset_after_ms)),
            limiter_headers: true,
            ..Feedback::default()
        }
    }

    fn in_bucket(hash: &str, feedback: Feedback) -> Feedback {
        Feedback {
            bucket: Some(hash.into()),
            ..feedback
        }
    }

    /// A route `429` as Discord documents it ("Example Exceeded User Rate
    /// Limit Response"): the bucket's headers with `remaining` 0, scope
    /// `user`.
    fn exhausted(limit: u32, reset_after_ms: u64, retry_after_ms: u64) -> Feedback {
        Feedback {
            status: 429,
            remaining: Some(0),
            retry_after: Some(ms(retry_after_ms)),
            scope: Some(Scope::User),
            ..ok(limit, 0, reset_after_ms)
        }
    }

    /// A global `429` as Discord documents it: `Retry-After`,
    /// `X-RateLimit-Global: true`, `X-RateLimit-Scope: global`.
    fn global(retry_after_ms: u64) -> Feedback {
        Feedback {
            status: 429,
            retry_after: Some(ms(retry_after_ms)),
            global: true,
            scope: Some(Scope::Global),
            limiter_headers: true,
            ..Feedback::default()
        }
    }

    /// A `429` without any rate-limit header (the edge, e.g. a Cloudflare
    /// ban), with a retry time from its body or none.
    fn bare(retry_after_ms: Option<u64>) -> Feedback {
        Feedback {
            status: 429,
            retry_after: retry_after_ms.map(ms),
            ..Feedback::default()
        }
    }

    /// Every route known and unlimited, so only the global rate is at play.
    fn open_routes(state: &mut State, routes: &[&Route], now: Instant) {
        for route in routes {
            let ticket = state.try_acquire(route, now).unwrap();
            state.record(&ticket, &Feedback::default(), now);
        }
        state.started.clear();
    }

    fn send(state: &mut State, route: &Route, at: Instant, answer: &Feedback) {
        let ticket = state.try_acquire(route, at).unwrap();
        state.record(&ticket, answer, at);
    }

    /// A limiter with room to spare (40/s, a budget of 100), the
    /// `GET /users/@me` route, and the start time.
    fn fresh() -> (State, Route, Instant) {
        (
            State::new(40, 100),
            Route::new("GET /users/@me"),
            Instant::now(),
        )
    }

    /// Why a request on `route` at `at` may not go.
    fn refused(state: &mut State, route: &Route, at: Instant) -> Wait {
        state.try_acquire(route, at).unwrap_err()
    }

    /// `route` is held from `from` until exactly `until`, then goes.
    fn held_until(state: &mut State, route: &Route, from: Instant, until: Instant) {
        assert_eq!(refused(state, route, from), Wait::Until(until));
        assert!(state.try_acquire(route, until).is_ok());
    }

    #[test]
    fn never_more_than_the_rate_in_any_window() {
        let mut state = State::new(5, 100);
        let routes: Vec<Route> = (0..4).map(|i| Route::new(&format!("GET /r{i}"))).collect();
        let t0 = Instant::now();
        open_routes(&mut state, &routes.iter().collect::<Vec<_>>(), t0);
        // Greedy clients: each asks as soon as it may.
        let mut starts = Vec::new();
        let mut now = t0;
        while starts.len() < 40 {
            let route = &routes[starts.len() % routes.len()];
            match state.try_acquire(route, now) {
                Ok(ticket) => {
                    state.record(&ticket, &Feedback::default(), now);
                    starts.push(now);
                }
                Err(Wait::Until(at)) => now = at,
                Err(Wait::Answer) => panic!("known routes never wait for an answer"),
            }
        }
        for (i, first) in starts.iter().enumerate() {
            let in_window = starts[i..]
                .iter()
                .take_while(|at| at.duration_since(*first) < GLOBAL_WINDOW + JITTER_MARGIN)
                .count();
            assert!(in_window <= 5, "{in_window} starts within a window");
        }
        // And it does use the allowance: 40 requests take about 8 windows.
        let span = starts.last().unwrap().duration_since(t0);
        assert!(span < (GLOBAL_WINDOW + JITTER_MARGIN) * 8, "{span:?}");
    }

    #[test]
    fn an_unknown_route_sends_one_request_until_its_answer_tells_the_limits() {
        let (mut state, route, t0) = fresh();
        let first = state.try_acquire(&route, t0).unwrap();
        assert_eq!(refused(&mut state, &route, t0), Wait::Answer);
        state.record(&first, &ok(3, 2, 1000), t0 + ms(10));
        // Two left in this window, reserved locally.
        let a = state.try_acquire(&route, t0 + ms(20)).unwrap();
        let b = state.try_acquire(&route, t0 + ms(20)).unwrap();
        // Used up by our count, not (yet) by Discord's word: wait for the
        // answers, not for the reset.
        assert_eq!(refused(&mut state, &route, t0 + ms(30)), Wait::Answer);
        // An answer reporting more remaining (sent before ours were counted)
        // does not overdraw the local reservation.
        state.record(&a, &ok(3, 1, 990), t0 + ms(20));
        assert_eq!(refused(&mut state, &route, t0 + ms(40)), Wait::Answer);
        state.record(&b, &ok(3, 0, 980), t0 + ms(30));
        // Discord said it is exhausted: now the reset is the wait.
        let reset = t0 + ms(1010);
        assert_eq!(refused(&mut state, &route, t0 + ms(40)), Wait::Until(reset));
        // After the reset, a full window again.
        for _ in 0..3 {
            state.try_acquire(&route, reset).unwrap();
        }
        assert_eq!(refused(&mut state, &route, reset), Wait::Answer);
    }

    #[test]
    fn a_late_answer_from_an_earlier_window_does_not_reopen_the_bucket() {
        let (mut state, route, t0) = fresh();
        let first = state.try_acquire(&route, t0).unwrap();
        state.record(&first, &ok(2, 1, 100), t0);
        let old = state.try_acquire(&route, t0).unwrap();
        let t1 = t0 + ms(100);
        // The old request is still in flight at the refill: it may land in
        // the new window, so the new window has one slot less.
        let _new = state.try_acquire(&route, t1).unwrap();
        assert_eq!(refused(&mut state, &route, t1), Wait::Answer);
        // Its answer arrives after the refill, claiming a reset right away:
        // ignored for the new window.
        state.record(&old, &ok(2, 0, 1), t1);
        assert_eq!(refused(&mut state, &route, t1 + ms(5)), Wait::Answer);
    }

    /// The capture: three `200`s on `GET /users/@me` in bucket
    /// `d124…` (limit 50000, remaining 48773, reset in 102737.719 s), a
    /// `429` from bucket `1d3c…` (limit 5, remaining 0, reset-after and
    /// `Retry-After` 5.588, not global), then `200`s with the `d124…`
    /// headers again.
    #[test]
    fn a_hidden_bucket_is_waited_out_then_learned_and_never_parks_the_route_on_the_visible_reset() {
        const VISIBLE: &str = "d124d6e8e4fdb8a3f0e2b0e5a8e7a4c1";
        const HIDDEN: &str = "1d3c5e6f7a8b9c0d1e2f3a4b5c6d7e8f";
        let visible = || {
            in_bucket(
                VISIBLE,
                Feedback {
                    reset_after: Some(Duration::from_secs_f64(102_737.719)),
                    ..ok(50_000, 48_773, 0)
                },
            )
        };
        let hidden_429 = in_bucket(
            HIDDEN,
            Feedback {
                reset_after: Some(ms(5_588)),
                retry_after: Some(ms(5_588)),
                ..exhausted(5, 5_588, 5_588)
            },
        );
        let (mut state, route, t0) = fresh();
        for i in 0..3 {
            send(&mut state, &route, t0 + ms(i * 10), &visible());
        }
        let t429 = t0 + ms(30);
        send(&mut state, &route, t429, &hidden_429);
        let retry_at = t429 + ms(5_588);
        assert_eq!(
            refused(&mut state, &route, t429 + ms(1)),
            Wait::Until(retry_at),
            "nothing before the 429's retry time"
        );
        // Then Discord's hidden bucket as the capture implies it: five per
        // window of 5.588 s from the first request after a reset; the
        // visible headers stay the same.
        let mut window: Option<(Instant, u32)> = None;
        let mut now = retry_at;
        let mut starts = Vec::new();
        let mut longest_wait = Duration::ZERO;
        while starts.len() < 60 {
            match state.try_acquire(&route, now) {
                Ok(ticket) => {
                    let (opened, used) = match window {
                        Some((opened, used)) if now < opened + ms(5_588) => (opened, used),
                        _ => (now, 0),
                    };
                    assert!(used < 5, "the hidden bucket was overdrawn at {starts:?}");
                    window = Some((opened, used + 1));
                    state.record(&ticket, &visible(), now);
                    starts.push(now);
                }
                Err(Wait::Until(at)) => {
                    longest_wait = longest_wait.max(at.duration_since(now));
                    now = at;
                }
                Err(Wait::Answer) => panic!("every answer is in"),
            }
        }
        // Never parked on the visible bucket's 28.5-hour reset.
        assert!(longest_wait < Duration::from_secs(6), "{longest_wait:?}");
        // About 5 per 5.6 s: eleven batches of five took eleven windows.
        let period = starts[55].duration_since(starts[0]) / 11;
        assert!(
            ms(5_588) <= period && period <= ms(5_700),
            "five requests every {period:?}"
        );
    }

    #[test]
    fn a_bucket_with_requests_left_is_never_parked_on_its_reset() {
        let (mut state, route, t0) = fresh();
        let day = 86_400_000;
        send(&mut state, &route, t0, &in_bucket("b", ok(50_000, 3, day)));
        let tickets: Vec<_> = (0..3)
            .map(|_| state.try_acquire(&route, t0).unwrap())
            .collect();
        // Our count is used up; Discord has not said so: wait for answers.
        assert_eq!(refused(&mut state, &route, t0), Wait::Answer);
        // Discord says plenty is left: the route goes on.
        for ticket in &tickets {
            state.record(ticket, &in_bucket("b", ok(50_000, 40_000, day)), t0);
        }
        assert!(state.try_acquire(&route, t0).is_ok());
        // A lost answer does not leave the route waiting for the reset
        // either: with nothing in flight, the next request asks.
        let mut state = State::new(40, 100);
        send(&mut state, &route, t0, &in_bucket("b", ok(50_000, 1, day)));
        let lost = state.try_acquire(&route, t0).unwrap();
        state.cancel(&lost);
        let probe = state.try_acquire(&route, t0).unwrap();
        assert_eq!(refused(&mut state, &route, t0), Wait::Answer);
        state.record(&probe, &in_bucket("b", ok(50_000, 7, day)), t0);
        assert!(state.try_acquire(&route, t0).is_ok());
    }

    #[test]
    fn a_route_429_waits_the_longer_of_retry_after_and_the_reset_for_that_bucket_only() {
        let mut state = State::new(40, 100);
        let token = Route::new("POST /oauth2/token");
        let me = Route::new("GET /users/@me");
        let t0 = Instant::now();
        send(&mut state, &token, t0, &in_bucket("t", ok(5, 4, 1000)));
        send(&mut state, &me, t0, &in_bucket("m", ok(5, 4, 1000)));
        // Retry-After rounded up to whole seconds, as Discord's example.
        send(
            &mut state,
            &token,
            t0,
            &in_bucket("t", exhausted(5, 640, 1000)),
        );
        assert_eq!(
            refused(&mut state, &token, t0 + ms(700)),
            Wait::Until(t0 + ms(1000))
        );
        assert!(state.try_acquire(&me, t0).is_ok(), "other routes go on");
        let t1 = t0 + ms(1000);
        let ticket = state.try_acquire(&token, t1).unwrap();
        // A reset later than the Retry-After.
        state.record(&ticket, &in_bucket("t", exhausted(5, 2500, 300)), t1);
        held_until(&mut state, &token, t1 + ms(300), t1 + ms(2500));
    }

    #[test]
    fn a_global_429_in_any_of_its_forms_stops_everything() {
        let token = Route::new("POST /oauth2/token");
        let me = Route::new("GET /users/@me");
        let header_only = Feedback {
            scope: None,
            ..global(500)
        };
        let scope_only = Feedback {
            global: false,
            ..global(500)
        };
        // The body's `"global": true` (the client folds it into `global`)
        // with no rate-limit header at all.
        let body_only = Feedback {
            global: true,
            ..bare(Some(500))
        };
        for answer in [global(500), header_only, scope_only, body_only] {
            assert_eq!(answer.limited(), Some(Limited::Global), "{answer:?}");
            let mut state = State::new(40, 100);
            let t0 = Instant::now();
            open_routes(&mut state, &[&token, &me], t0);
            send(&mut state, &me, t0, &answer);
            for route in [&token, &me] {
                assert_eq!(
                    refused(&mut state, route, t0 + ms(499)),
                    Wait::Until(t0 + ms(500))
                );
            }
            assert!(state.try_acquire(&token, t0 + ms(500)).is_ok());
            assert_eq!(state.invalid_in_window(t0 + ms(500)), 1);
        }
    }

    #[test]
    fn a_shared_429_holds_the_resource_for_retry_after_and_is_not_invalid() {
        // Discord's "Example Exceeded Resource Rate Limit Response":
        // remaining 9, reset-after 64.57, Retry-After 1337, scope shared.
        let shared = Feedback {
            status: 429,
            retry_after: Some(Duration::from_secs(1337)),
            scope: Some(Scope::Shared),
            ..in_bucket("abcd1234", ok(10, 9, 64_570))
        };
        assert_eq!(shared.limited(), Some(Limited::Shared));
        assert!(!shared.is_invalid());
        let mut state = State::new(40, 100);
        let key = "GET /guilds/{guild}/members/{user}";
        let (guild, other_guild) = (Route::in_guild(key, "1"), Route::in_guild(key, "2"));
        let me = Route::new("GET /users/@me");
        let t0 = Instant::now();
        send(
            &mut state,
            &guild,
            t0,
            &in_bucket("abcd1234", ok(10, 9, 64_570)),
        );
        send(&mut state, &guild, t0, &shared);
        assert_eq!(
            refused(&mut state, &guild, t0 + ms(64_570)),
            Wait::Until(t0 + Duration::from_secs(1337)),
            "held for Retry-After, not the bucket's reset"
        );
        assert!(state.try_acquire(&other_guild, t0).is_ok());
        assert!(state.try_acquire(&me, t0).is_ok());
        assert_eq!(state.invalid_in_window(t0), 0);
        let after = t0 + Duration::from_secs(1337);
        assert!(state.try_acquire(&guild, after).is_ok());
    }

    #[test]
    fn a_user_429_on_a_bucket_with_requests_left_holds_the_resource_not_the_bucket() {
        let mut state = State::new(40, 100);
        let route = Route::new("POST /oauth2/token");
        let t0 = Instant::now();
        let day = 86_400_000;
        send(&mut state, &route, t0, &in_bucket("t", ok(100, 50, day)));
        let sublimit = Feedback {
            status: 429,
            retry_after: Some(ms(2000)),
            scope: Some(Scope::User),
            ..in_bucket("t", ok(100, 49, day))
        };
        assert_eq!(sublimit.limited(), Some(Limited::Sublimit));
        send(&mut state, &route, t0, &sublimit);
        held_until(&mut state, &route, t0 + ms(1), t0 + ms(2000));
    }

    #[test]
    fn a_429_without_rate_limit_headers_pauses_everything_and_backs_off_without_a_retry_time() {
        let token = Route::new("POST /oauth2/token");
        let me = Route::new("GET /users/@me");
        let mut state = State::new(40, 100);
        let t0 = Instant::now();
        open_routes(&mut state, &[&token, &me], t0);
        // Body `retry_after` only: that long, for every route.
        let answer = bare(Some(3000));
        assert_eq!(answer.limited(), Some(Limited::Edge));
        send(&mut state, &me, t0, &answer);
        assert_eq!(
            refused(&mut state, &token, t0 + ms(2999)),
            Wait::Until(t0 + ms(3000))
        );
        // Neither header nor body: 1 s, then 2 s, 4 s … while they last.
        let mut now = t0 + ms(3000);
        for expected in [1000, 2000, 4000, 8000] {
            send(&mut state, &token, now, &bare(None));
            assert_eq!(
                refused(&mut state, &me, now),
                Wait::Until(now + ms(expected))
            );
            now += ms(expected);
        }
        // An answer resets the doubling.
        send(&mut state, &me, now, &Feedback::default());
        send(&mut state, &me, now, &bare(None));
        assert_eq!(refused(&mut state, &me, now), Wait::Until(now + ms(1000)));
        // Each counts against the invalid-request budget.
        assert_eq!(state.invalid_in_window(now), 6);
        // The doubling stops at the ceiling.
        let mut state = State::new(40, 100);
        for _ in 0..20 {
            send(&mut state, &me, now, &bare(None));
            let Err(Wait::Until(at)) = state.try_acquire(&me, now) else {
                panic!("paused")
            };
            assert!(at - now <= UNEXPLAINED_WAIT_MAX);
            now = at;
        }
    }

    #[test]
    fn a_hidden_window_grows_to_what_our_own_request_times_prove() {
        let (mut state, route, t0) = fresh();
        let visible = || in_bucket("v", ok(1000, 999, 60_000));
        send(&mut state, &route, t0, &visible());
        send(
            &mut state,
            &route,
            t0,
            &in_bucket("h", exhausted(2, 1000, 1000)),
        );
        let t1 = t0 + ms(1000);
        // Two per second, as learned.
        send(&mut state, &route, t1, &visible());
        send(&mut state, &route, t1, &visible());
        assert_eq!(refused(&mut state, &route, t1), Wait::Until(t1 + ms(1050)));
        // The next one is refused with 3 s left: the window holding our two
        // requests of t1 lasts at least until t1 + 1.05 s + 3 s.
        let t2 = t1 + ms(1050);
        send(
            &mut state,
            &route,
            t2,
            &in_bucket("h", exhausted(2, 3000, 3000)),
        );
        let t3 = t2 + ms(3000);
        assert_eq!(refused(&mut state, &route, t2), Wait::Until(t3));
        send(&mut state, &route, t3, &visible());
        send(&mut state, &route, t3, &visible());
        assert_eq!(
            refused(&mut state, &route, t3),
            Wait::Until(t3 + ms(4050) + JITTER_MARGIN)
        );
    }

    #[test]
    fn a_429_hash_the_route_later_reports_in_its_answers_is_an_ordinary_bucket() {
        let (mut state, route, t0) = fresh();
        // The first answer ever is a 429: its bucket is held as hidden.
        send(
            &mut state,
            &route,
            t0,
            &in_bucket("x", exhausted(1, 500, 500)),
        );
        assert!(state.try_acquire(&route, t0 + ms(499)).is_err());
        let t1 = t0 + ms(500);
        // Then the route's answers carry the same hash: its headers rule.
        send(&mut state, &route, t1, &in_bucket("x", ok(3, 2, 1000)));
        assert!(state.try_acquire(&route, t1).is_ok());
        assert!(state.try_acquire(&route, t1).is_ok());
    }

    #[test]
    fn after_a_429_without_limit_headers_the_bucket_is_learned_again() {
        let (mut state, route, t0) = fresh();
        let first = state.try_acquire(&route, t0).unwrap();
        state.record(&first, &ok(5, 4, 1000), t0);
        let ticket = state.try_acquire(&route, t0).unwrap();
        let empty = Feedback {
            status: 429,
            remaining: Some(0),
            retry_after: Some(ms(200)),
            scope: Some(Scope::User),
            limiter_headers: true,
            ..Feedback::default()
        };
        state.record(&ticket, &empty, t0);
        let t1 = t0 + ms(200);
        let probe = state.try_acquire(&route, t1).unwrap();
        assert_eq!(refused(&mut state, &route, t1), Wait::Answer);
        state.record(&probe, &ok(5, 1, 800), t1);
        assert!(state.try_acquire(&route, t1).is_ok());
        assert!(state.try_acquire(&route, t1).is_err());
    }

    #[test]
    fn routes_sharing_a_bucket_hash_share_its_limit_per_major_parameter() {
        let mut state = State::new(40, 100);
        let get = Route::in_guild("GET /guilds/{guild}/members/{user}", "1");
        let put = Route::in_guild("PUT /guilds/{guild}/members/{user}/roles/{role}", "1");
        let other_guild = Route::in_guild("GET /guilds/{guild}/members/{user}", "2");
        let t0 = Instant::now();
        let shared = |remaining| in_bucket("abcd", ok(5, remaining, 1000));
        send(&mut state, &get, t0, &shared(0));
        send(&mut state, &put, t0, &shared(0));
        assert!(state.try_acquire(&get, t0).is_err());
        assert!(state.try_acquire(&put, t0).is_err());
        assert!(state.try_acquire(&other_guild, t0).is_ok());
    }

    #[test]
    fn the_invalid_request_budget_halts_until_the_window_slides() {
        let mut state = State::new(40, 3);
        let route = Route::new("GET /users/@me");
        let t0 = Instant::now();
        for i in 0..3 {
            let at = t0 + ms(i * 10);
            let answer = Feedback {
                status: 401,
                ..Feedback::default()
            };
            send(&mut state, &route, at, &answer);
        }
        assert!(state.halted(t0 + ms(30)));
        assert_eq!(
            refused(&mut state, &route, t0 + ms(30)),
            Wait::Until(t0 + INVALID_WINDOW)
        );
        assert!(!state.halted(t0 + INVALID_WINDOW));
        assert!(state.try_acquire(&route, t0 + INVALID_WINDOW).is_ok());
        // A shared-scope 429 is not Discord's to count; every other is.
        let shared = Feedback {
            scope: Some(Scope::Shared),
            ..exhausted(5, 10, 10)
        };
        assert!(!shared.is_invalid());
        for answer in [exhausted(5, 10, 10), global(10), bare(None)] {
            assert!(answer.is_invalid(), "{answer:?}");
        }
    }

    #[test]
    fn requests_in_flight_count_against_what_is_left_of_the_budget() {
        let mut state = State::new(40, 2);
        let (a, b) = (Route::new("GET /a"), Route::new("GET /b"));
        let t0 = Instant::now();
        let unauthorized = Feedback {
            status: 401,
            ..Feedback::default()
        };
        send(&mut state, &a, t0, &unauthorized);
        // One invalid answer, one left in the budget: one request at a time.
        let second = state.try_acquire(&b, t0).unwrap();
        assert_eq!(refused(&mut state, &a, t0), Wait::Answer);
        state.record(&second, &Feedback::default(), t0);
        assert!(state.try_acquire(&a, t0).is_ok());
    }

    #[test]
    fn a_lost_answer_does_not_block_the_route() {
        let (mut state, route, t0) = fresh();
        let ticket = state.try_acquire(&route, t0).unwrap();
        state.cancel(&ticket);
        assert!(state.try_acquire(&route, t0).is_ok());
    }

    #[test]
    fn a_garbled_reset_cannot_overflow_the_clock() {
        let (mut state, route, t0) = fresh();
        let forever = Feedback {
            reset_after: Some(Duration::from_secs(u64::MAX / 4)),
            retry_after: Some(Duration::from_secs(u64::MAX / 4)),
            ..exhausted(1, 0, 0)
        };
        send(&mut state, &route, t0, &forever);
        assert_eq!(refused(&mut state, &route, t0), Wait::Until(t0 + MAX_WAIT));
    }
}
