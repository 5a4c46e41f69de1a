//! Per-client rate limiting: a token bucket per client IP, refilled at
//! `http.rate_limit_per_second` up to `http.rate_limit_burst`. Over the limit
//! a request gets `429` with `Retry-After`.
//!
//! The buckets live in each replica, so N replicas allow N times the rate;
//! the load balancer's (WAF) rules are the global cap. The client is the
//! socket peer, or, when `http.trust_forwarded_for` is set (only behind a
//! proxy that appends to it), the `X-Forwarded-For` entry
//! `http.forwarded_for_trusted_hops` places from the right: each trusted
//! proxy appends the address it received the request from, so the entries
//! to the left of those were written by the client and prove nothing
//! (MDN, "X-Forwarded-For: selecting an IP address"; the AWS ALB appends
//! the client's address).

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::problem::Problem;

/// Buckets kept before idle ones are swept.
const SWEEP_ABOVE: usize = 10_000;

/// The limiter shared by all requests of one replica.
#[derive(Debug, Clone)]
pub struct RateLimiter {
    per_second: f64,
    burst: f64,
    /// `Some(hops)`: the client is the `X-Forwarded-For` entry `hops`
    /// places from the right.
    forwarded_for_hops: Option<u32>,
    buckets: Arc<Mutex<HashMap<IpAddr, Bucket>>>,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    updated: Instant,
}

impl RateLimiter {
    /// A limiter of `per_second` with bursts up to `burst`, keyed on the
    /// socket peer, or on the `X-Forwarded-For` entry `forwarded_for_hops`
    /// places from the right when given.
    pub fn new(per_second: u32, burst: u32, forwarded_for_hops: Option<u32>) -> Self {
        Self {
            per_second: f64::from(per_second.max(1)),
            burst: f64::from(burst.max(1)),
            forwarded_for_hops,
            buckets: Arc::default(),
        }
    }

    /// Takes a token for `client`, or says how long until one is free.
    pub fn check(&self, client: IpAddr, now: Instant) -> Result<(), Duration> {
        let Ok(mut buckets) = self.buckets.lock() else {
            return Ok(());
        };
        if buckets.len() > SWEEP_ABOVE {
            let idle = Duration::from_secs_f64(self.burst / self.per_second);
            buckets.retain(|_, bucket| now.duration_since(bucket.updated) < idle);
        }
        let bucket = buckets.entry(client).or_insert(Bucket {
            tokens: self.burst,
            updated: now,
        });
        let refill = now.duration_since(bucket.updated).as_secs_f64() * self.per_second;
        bucket.tokens = (bucket.tokens + refill).min(self.burst);
        bucket.updated = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64(
                (1.0 - bucket.tokens) / self.per_second,
            ))
        }
    }

    fn client(&self, request: &Request) -> Option<IpAddr> {
        if let Some(hops) = self.forwarded_for_hops
            && let Some(client) = forwarded_client(
                request
                    .headers()
                    .get_all("x-forwarded-for")
                    .iter()
                    .filter_map(|v| v.to_str().ok()),
                hops,
            )
        {
            return Some(client);
        }
        request
            .extensions()
            .get::<ConnectInfo<SocketAddr>>()
            .map(|info| info.0.ip())
    }
}

/// The client address in `X-Forwarded-For` values (several header lines
/// read as one list, in order): the entry `hops` places from the right, or
/// the left-most when the list is shorter than that. `None` when there is
/// no entry or the chosen one is not an IP address.
fn forwarded_client<'a>(values: impl Iterator<Item = &'a str>, hops: u32) -> Option<IpAddr> {
    let entries: Vec<&str> = values
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|e| !e.is_empty())
        .collect();
    let hops = usize::try_from(hops.max(1)).ok()?;
    let index = entries.len().saturating_sub(hops);
    entries.get(index)?.parse().ok()
}

/// The middleware.
pub async fn limit_rate(
    State(limiter): State<RateLimiter>,
    request: Request,
    next: Next,
) -> Response {
    let Some(client) = limiter.client(&request) else {
        return next.run(request).await;
    };
    match limiter.check(client, Instant::now()) {
        Ok(()) => next.run(request).await,
        Err(wait) => {
            let mut problem = Problem::new(
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limited",
                "Too many requests",
            )
            .with_detail("slow down and retry after the time in Retry-After");
            problem.retry_after = Some(wait.as_secs().max(1));
            problem.into_response()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client(values: &[&'static str], hops: u32) -> Option<IpAddr> {
        forwarded_client(values.iter().copied(), hops)
    }

    #[test]
    fn the_client_is_the_entry_the_trusted_proxies_appended() {
        let ip = |s: &str| s.parse::<IpAddr>().ok();
        // The client wrote the left entry; the ALB appended the right one.
        assert_eq!(client(&["198.51.100.7, 203.0.113.7"], 1), ip("203.0.113.7"));
        assert_eq!(
            client(&["198.51.100.7, 203.0.113.7"], 2),
            ip("198.51.100.7")
        );
        assert_eq!(
            client(&["198.51.100.7", "203.0.113.7"], 1),
            ip("203.0.113.7")
        );
        assert_eq!(client(&["203.0.113.7"], 2), ip("203.0.113.7"));
        assert_eq!(client(&["2001:db8::1"], 1), ip("2001:db8::1"));
        assert_eq!(client(&["garbage, not-an-ip"], 1), None);
        assert_eq!(client(&[""], 1), None);
    }

    #[test]
    fn allows_the_burst_then_refills_at_the_rate() {
        let limiter = RateLimiter::new(2, 3, None);
        let client: IpAddr = "10.0.0.1".parse().unwrap();
        let start = Instant::now();
        for _ in 0..3 {
            assert!(limiter.check(client, start).is_ok());
        }
        let wait = limiter.check(client, start).unwrap_err();
        assert!(
            wait <= Duration::from_millis(500) && wait > Duration::ZERO,
            "{wait:?}"
        );
        assert!(
            limiter
                .check(client, start + Duration::from_millis(500))
                .is_ok()
        );
        let other: IpAddr = "10.0.0.2".parse().unwrap();
        assert!(
            limiter.check(other, start).is_ok(),
            "clients are limited separately"
        );
    }
}
