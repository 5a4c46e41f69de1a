//! The process's one rate limiter: every request to Discord takes a
//! [`Ticket`] from it first and reports what the answer said.
//!
//! It keeps four limits, and a request goes out only when all allow it:
//!
//! - **Global rate**: at most `max_requests_per_second` request starts in any
//!   window of one second (plus [`JITTER_MARGIN`], since Discord counts
//!   arrivals on its side and the network can bunch requests up). A sliding
//!   log of recent starts, so short bursts use the whole allowance.
//! - **Global pause**: after a `429` with `X-RateLimit-Global` (or
//!   `"global": true`), nothing goes out until its `Retry-After` has passed.
//! - **Route buckets**: each route's `X-RateLimit-Limit` / `-Remaining` /
//!   `-Reset-After`, grouped by `X-RateLimit-Bucket` (routes sharing a bucket
//!   hash share the limit, per major parameter). Requests reserve a slot
//!   locally, so concurrent ones never overdraw what Discord last reported;
//!   a route whose limits are not known yet sends one request at a time
//!   until an answer tells them; a `429` empties the bucket until its
//!   `Retry-After`.
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

/// Added to [`GLOBAL_WINDOW`] so requests sent exactly one window apart are
/// not counted in one window by Discord when the network delays the first
/// more than the last.
pub const JITTER_MARGIN: Duration = Duration::from_millis(50);

/// The window of Discord's invalid-request limit.
pub const INVALID_WINDOW: Duration = Duration::from_secs(600);

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
    /// For a `429`: the global limit was hit.
    pub global: bool,
    /// For a `429`: `X-RateLimit-Scope: shared` (not counted as invalid).
    pub shared: bool,
}

impl Feedback {
    /// Whether Discord counts this answer against the invalid-request limit.
    pub fn is_invalid(&self) -> bool {
        matches!(self.status, 401 | 403) || (self.status == 429 && !self.shared)
    }
}

/// Permission to send one request; hand it back with [`RateLimiter::record`]
/// or [`RateLimiter::cancel`].
#[derive(Debug)]
pub struct Ticket {
    route: Route,
    bucket: String,
    epoch: u64,
}

/// Why a request cannot go out yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wait {
    /// Not before this instant.
    Until(Instant),
    /// Until an answer in flight on the same bucket tells its limits.
    Answer,
}

#[derive(Debug, Default)]
struct Bucket {
    /// Limits known from an answer; until then one request at a time.
    known: bool,
    /// An unknown bucket's single request is in flight.
    probing: bool,
    limit: u32,
    remaining: u32,
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
            self.remaining = self.limit.saturating_sub(self.in_flight);
            self.reset_at = None;
            self.epoch += 1;
        }
    }
}

/// The limiter's bookkeeping, over explicit instants.
#[derive(Debug)]
pub struct State {
    max_per_second: usize,
    budget: usize,
    started: VecDeque<Instant>,
    global_until: Option<Instant>,
    /// Route key → bucket hash, as Discord reported it.
    hashes: HashMap<String, String>,
    buckets: HashMap<String, Bucket>,
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
            hashes: HashMap::new(),
            buckets: HashMap::new(),
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
        let key = self.bucket_key(route);
        let bucket = self.buckets.entry(key.clone()).or_default();
        bucket.refill_if_due(now);
        if !bucket.known {
            if bucket.probing {
                return Err(Wait::Answer);
            }
        } else if bucket.remaining == 0 {
            return Err(match bucket.reset_at {
                Some(at) => Wait::Until(at),
                None => Wait::Answer,
            });
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
        })
    }

    /// Applies what the answer to `ticket`'s request said, received at `now`.
    pub fn record(&mut self, ticket: &Ticket, feedback: &Feedback, now: Instant) {
        self.in_flight = self.in_flight.saturating_sub(1);
        if feedback.is_invalid() {
            self.invalid.push_back(now);
        }
        let mut key = ticket.bucket.clone();
        if let Some(hash) = &feedback.bucket
            && self.hashes.get(&ticket.route.key) != Some(hash)
        {
            self.hashes.insert(ticket.route.key.clone(), hash.clone());
            let new_key = self.bucket_key(&ticket.route);
            // The first route to report a hash brings its state along;
            // later ones join the bucket already there.
            if let Some(state) = self.buckets.remove(&key)
                && !self.buckets.contains_key(&new_key)
            {
                self.buckets.insert(new_key.clone(), state);
            }
            key = new_key;
        }
        let bucket = self.buckets.entry(key).or_default();
        bucket.probing = false;
        bucket.in_flight = bucket.in_flight.saturating_sub(1);
        if feedback.status == 429 {
            let retry_after = feedback.retry_after.unwrap_or(Duration::from_secs(1));
            if feedback.global {
                let until = now + retry_after;
                self.global_until = Some(self.global_until.map_or(until, |u| u.max(until)));
                return;
            }
            // With its limit headers, the wait ends in a fresh window;
            // without them, nothing is known about the window after it.
            let wait = match (feedback.limit, feedback.reset_after) {
                (Some(limit), Some(reset_after)) => {
                    bucket.limit = limit.max(1);
                    bucket.relearn = false;
                    reset_after.max(retry_after)
                }
                _ => {
                    bucket.relearn = true;
                    retry_after
                }
            };
            bucket.known = true;
            bucket.remaining = 0;
            bucket.reset_at = Some(now + wait);
            return;
        }
        let headers = feedback
            .limit
            .zip(feedback.remaining)
            .zip(feedback.reset_after);
        match headers {
            Some(((limit, remaining), reset_after)) => {
                if !bucket.known {
                    bucket.known = true;
                    bucket.limit = limit.max(1);
                    bucket.remaining = remaining.saturating_sub(bucket.in_flight);
                    bucket.reset_at = Some(now + reset_after);
                } else if ticket.epoch == bucket.epoch {
                    bucket.limit = limit.max(1);
                    bucket.remaining = bucket.remaining.min(remaining);
                    bucket.reset_at = Some(now + reset_after);
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
    }

    /// The request of `ticket` got no answer (connection error, timeout).
    pub fn cancel(&mut self, ticket: &Ticket, now: Instant) {
        self.in_flight = self.in_flight.saturating_sub(1);
        if let Some(bucket) = self.buckets.get_mut(&ticket.bucket) {
            bucket.probing = false;
            bucket.in_flight = bucket.in_flight.saturating_sub(1);
            if bucket.known && bucket.remaining == 0 && bucket.reset_at.is_none() {
                // No answer will say when it refills: look again shortly.
                bucket.reset_at = Some(now + ANSWER_WAIT);
            }
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
        self.lock().cancel(ticket, Instant::now());
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
            ..Feedback::default()
        }
    }

    fn too_many(retry_after_ms: u64, global: bool) -> Feedback {
        Feedback {
            status: 429,
            retry_after: Some(ms(retry_after_ms)),
            global,
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
        let mut state = State::new(40, 100);
        let route = Route::new("GET /users/@me");
        let t0 = Instant::now();
        let first = state.try_acquire(&route, t0).unwrap();
        assert_eq!(state.try_acquire(&route, t0).unwrap_err(), Wait::Answer);
        state.record(&first, &ok(3, 2, 1000), t0 + ms(10));
        // Two left in this window, reserved locally.
        let a = state.try_acquire(&route, t0 + ms(20)).unwrap();
        let b = state.try_acquire(&route, t0 + ms(20)).unwrap();
        let reset = t0 + ms(1010);
        assert_eq!(
            state.try_acquire(&route, t0 + ms(30)).unwrap_err(),
            Wait::Until(reset)
        );
        // An answer reporting more remaining (sent before ours were counted)
        // does not overdraw the local reservation.
        state.record(&a, &ok(3, 1, 990), t0 + ms(20));
        assert!(state.try_acquire(&route, t0 + ms(40)).is_err());
        state.record(&b, &ok(3, 0, 980), t0 + ms(30));
        // After the reset, a full window again.
        for _ in 0..3 {
            state.try_acquire(&route, reset).unwrap();
        }
        assert_eq!(state.try_acquire(&route, reset).unwrap_err(), Wait::Answer);
    }

    #[test]
    fn a_late_answer_from_an_earlier_window_does_not_reopen_the_bucket() {
        let mut state = State::new(40, 100);
        let route = Route::new("GET /users/@me");
        let t0 = Instant::now();
        let first = state.try_acquire(&route, t0).unwrap();
        state.record(&first, &ok(2, 1, 100), t0);
        let old = state.try_acquire(&route, t0).unwrap();
        let t1 = t0 + ms(100);
        // The old request is still in flight at the refill: it may land in
        // the new window, so the new window has one slot less.
        let _new = state.try_acquire(&route, t1).unwrap();
        assert_eq!(state.try_acquire(&route, t1).unwrap_err(), Wait::Answer);
        // Its answer arrives after the refill, claiming a reset right away:
        // ignored for the new window.
        state.record(&old, &ok(2, 0, 1), t1);
        assert_eq!(
            state.try_acquire(&route, t1 + ms(5)).unwrap_err(),
            Wait::Answer
        );
    }

    #[test]
    fn a_route_429_waits_its_retry_after_and_a_global_one_stops_everything() {
        let mut state = State::new(40, 100);
        let token = Route::new("POST /oauth2/token");
        let me = Route::new("GET /users/@me");
        let t0 = Instant::now();
        open_routes(&mut state, &[&token, &me], t0);

        let ticket = state.try_acquire(&token, t0).unwrap();
        state.record(&ticket, &too_many(300, false), t0);
        assert_eq!(
            state.try_acquire(&token, t0 + ms(299)).unwrap_err(),
            Wait::Until(t0 + ms(300))
        );
        assert!(state.try_acquire(&me, t0).is_ok(), "other routes go on");
        assert!(state.try_acquire(&token, t0 + ms(300)).is_ok());

        let ticket = state.try_acquire(&me, t0 + ms(300)).unwrap();
        state.record(&ticket, &too_many(500, true), t0 + ms(300));
        for route in [&token, &me] {
            assert_eq!(
                state.try_acquire(route, t0 + ms(799)).unwrap_err(),
                Wait::Until(t0 + ms(800))
            );
        }
        assert!(state.try_acquire(&me, t0 + ms(800)).is_ok());
    }

    #[test]
    fn after_a_429_without_limit_headers_the_bucket_is_learned_again() {
        let mut state = State::new(40, 100);
        let route = Route::new("GET /users/@me");
        let t0 = Instant::now();
        let first = state.try_acquire(&route, t0).unwrap();
        state.record(&first, &ok(5, 4, 1000), t0);
        let ticket = state.try_acquire(&route, t0).unwrap();
        state.record(&ticket, &too_many(200, false), t0);
        let t1 = t0 + ms(200);
        let probe = state.try_acquire(&route, t1).unwrap();
        assert_eq!(state.try_acquire(&route, t1).unwrap_err(), Wait::Answer);
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
        let shared = |remaining| Feedback {
            bucket: Some("abcd".into()),
            ..ok(5, remaining, 1000)
        };
        let ticket = state.try_acquire(&get, t0).unwrap();
        state.record(&ticket, &shared(0), t0);
        let ticket = state.try_acquire(&put, t0).unwrap();
        state.record(&ticket, &shared(0), t0);
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
            let ticket = state.try_acquire(&route, at).unwrap();
            let answer = Feedback {
                status: 401,
                ..Feedback::default()
            };
            state.record(&ticket, &answer, at);
        }
        assert!(state.halted(t0 + ms(30)));
        assert_eq!(
            state.try_acquire(&route, t0 + ms(30)).unwrap_err(),
            Wait::Until(t0 + INVALID_WINDOW)
        );
        assert!(!state.halted(t0 + INVALID_WINDOW));
        assert!(state.try_acquire(&route, t0 + INVALID_WINDOW).is_ok());
        // A shared-scope 429 is not Discord's to count.
        let shared = Feedback {
            shared: true,
            ..too_many(10, false)
        };
        assert!(!shared.is_invalid());
        assert!(too_many(10, false).is_invalid());
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
        let first = state.try_acquire(&a, t0).unwrap();
        state.record(&first, &unauthorized, t0);
        // One invalid answer, one left in the budget: one request at a time.
        let second = state.try_acquire(&b, t0).unwrap();
        assert_eq!(state.try_acquire(&a, t0).unwrap_err(), Wait::Answer);
        state.record(&second, &Feedback::default(), t0);
        assert!(state.try_acquire(&a, t0).is_ok());
    }

    #[test]
    fn a_lost_answer_does_not_block_the_route() {
        let mut state = State::new(40, 100);
        let route = Route::new("GET /users/@me");
        let t0 = Instant::now();
        let ticket = state.try_acquire(&route, t0).unwrap();
        state.cancel(&ticket, t0);
        assert!(state.try_acquire(&route, t0).is_ok());
    }
}
