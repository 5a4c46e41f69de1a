//! palmdao's identity and configuration: its service name, the collections
//! whose writes stage outbox events, the routes the suite needs, its queue,
//! and every `palmdao` setting with its defaults and validation. A leaf
//! module: everything else in the crate may use it, it uses none of them.

use std::net::SocketAddr;

use palm_amqp::{AmqpSettings, QueueSpec};
use palm_core::InvalidSetting;
use palm_core::siwe::SiweRules;
use palm_mongo::MongoSettings;
use palm_service::{RuntimeSettings, ServiceSettings};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

/// Service name: binary, image, chart, log and metric label.
pub const SERVICE: &str = "palmdao";

/// Collections whose documents stage outbox events.
pub const OUTBOX_COLLECTIONS: &[&str] = &[
    "palm_ids",
    "communities",
    "memberships",
    "proposals",
    "votes",
    "verifications",
    "discussions",
];

/// Routing keys (or topic patterns) of the events a service of the suite
/// consumes: the bindings of `palmvalidator.jobs`, `palmvalidator-discord.jobs`
/// and `palmdao.results`. The outbox relay never settles such an event while
/// no queue takes it (it waits and is retried); any other event without a
/// subscriber is settled. `tests/tests/outbox_routes.rs` checks this list
/// against every service's queues.
pub const REQUIRED_ROUTES: &[&str] = &[
    "vote.submitted",
    "verification.requested.wallet",
    "verification.requested.discord",
    "vote.validated",
    "vote.rejected",
    "verification.completed",
];

/// Queue of verification and vote results palmdao applies.
pub fn queues() -> Vec<QueueSpec> {
    vec![QueueSpec::new(
        "palmdao.results",
        &["verification.completed", "vote.validated", "vote.rejected"],
    )]
}

/// `palmdao` configuration.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Settings {
    /// `admin.*`, `telemetry.*`, `shutdown.*`.
    #[serde(flatten)]
    pub runtime: RuntimeSettings,
    /// `amqp.*`.
    pub amqp: AmqpSettings,
    /// `mongo.*`.
    pub mongo: MongoSettings,
    /// `outbox.*`.
    pub outbox: OutboxSettings,
    /// `http.*`: the public API listener.
    pub http: HttpSettings,
    /// `auth.*`: Sign-In with Ethereum and sessions.
    pub auth: AuthSettings,
    /// `communities.*`: community rules.
    pub communities: CommunitySettings,
    /// `proposals.*`: the proposal scheduler.
    pub proposals: ProposalSettings,
}

/// `proposals.*`.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ProposalSettings {
    /// How often the scheduler looks for proposals to open or close; a
    /// proposal closes at most this long after its end.
    pub scheduler_interval_ms: u64,
    /// How long closing waits for votes submitted before the end that the
    /// validator has not decided yet.
    pub close_grace_ms: u64,
    /// Lease validity for the scheduler; a dead scheduler's successor takes
    /// over after this.
    pub lease_ttl_ms: u64,
    /// Longest a running tally shown by `GET /v1/proposals/{id}/results`
    /// may lag the ballots. 0 (the default): every read recounts (it reads
    /// every ballot of the proposal, on an index) and is exact; above 0,
    /// each replica recounts a proposal at most this often, for proposals
    /// whose results are read far more often than a recount costs. A
    /// closed proposal's final tally is exact and never lags.
    pub tally_max_age_ms: u64,
}

impl Default for ProposalSettings {
    fn default() -> Self {
        Self {
            // Two small reads per pass on the lease holder; an event of the
            // lifecycle is at most this late.
            scheduler_interval_ms: 5_000,
            close_grace_ms: 30_000,
            lease_ttl_ms: 10_000,
            tally_max_age_ms: 0,
        }
    }
}

/// `communities.*`.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CommunitySettings {
    /// PalmID level needed to create a community (the whitepaper's 3). With
    /// only the wallet and Discord verifiers shipped, level 3 is not yet
    /// reachable; a local or staging deployment may lower it (see
    /// `docs/adr/0006-audit-log-and-community-creation-level.md`).
    pub create_min_level: u32,
}

impl Default for CommunitySettings {
    fn default() -> Self {
        Self {
            create_min_level: 3,
        }
    }
}

/// `http.*`.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpSettings {
    /// Public listen address; port 0 picks one and logs it.
    pub addr: SocketAddr,
    /// Largest accepted request body.
    pub body_limit_bytes: usize,
    /// Longest a request may take before it gets `503`.
    pub request_timeout_ms: u64,
    /// Sustained requests per second per client (per replica).
    pub rate_limit_per_second: u32,
    /// Requests a client may burst above the sustained rate.
    pub rate_limit_burst: u32,
    /// Take the client from `X-Forwarded-For` (only behind a proxy that
    /// appends to it, such as the AWS ALB); otherwise the socket peer.
    pub trust_forwarded_for: bool,
    /// How many proxies in front of palmdao append to `X-Forwarded-For`
    /// (1 for the ALB alone, 2 for CloudFront → ALB): the client is the
    /// entry this many places from the right, since every entry left of it
    /// was written by the client. 1–10.
    pub forwarded_for_trusted_hops: u32,
}

impl Default for HttpSettings {
    fn default() -> Self {
        Self {
            addr: SocketAddr::from(([0, 0, 0, 0], 8080)),
            body_limit_bytes: 64 * 1024,
            request_timeout_ms: 10_000,
            rate_limit_per_second: 20,
            rate_limit_burst: 40,
            trust_forwarded_for: false,
            forwarded_for_trusted_hops: 1,
        }
    }
}

/// `auth.*`.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthSettings {
    /// The domain sign-in messages must name (the web app's host).
    pub domain: String,
    /// The URI sign-in messages must name.
    pub uri: String,
    /// Accepted EIP-155 chain ids.
    #[serde(deserialize_with = "palm_core::settings::one_or_many")]
    pub chain_ids: Vec<u64>,
    /// Life of a sign-in nonce.
    pub nonce_ttl_secs: u64,
    /// Life of a session token.
    pub session_ttl_secs: u64,
    /// Tolerated clock difference with wallets.
    pub clock_skew_secs: u64,
    /// HMAC key signing session tokens; a secret of at least 32 bytes, from
    /// the environment only.
    pub session_key: SecretString,
}

impl Default for AuthSettings {
    fn default() -> Self {
        Self {
            domain: "localhost:8080".into(),
            uri: "http://localhost:8080/v1/auth/siwe".into(),
            chain_ids: vec![1],
            nonce_ttl_secs: 300,
            session_ttl_secs: 86_400,
            clock_skew_secs: 30,
            session_key: SecretString::from(""),
        }
    }
}

impl AuthSettings {
    /// The sign-in rules, or the bad `auth.*` key.
    pub fn rules(&self) -> Result<SiweRules, InvalidSetting> {
        SiweRules::from_settings(
            "auth",
            &self.domain,
            &self.uri,
            &self.chain_ids,
            self.clock_skew_secs,
        )
    }
}

/// `outbox.*`: the relay.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OutboxSettings {
    /// Documents read per collection per pass (and writes per prompt batch).
    pub batch_size: i64,
    /// Pause after a sweeper pass that found nothing. Events are published
    /// promptly after the write that staged them; the sweeper only catches
    /// what that missed (a crash, a broker outage), so it can be slow.
    pub poll_interval_ms: u64,
    /// How long the sweeper leaves a staged event to the prompt path of the
    /// replica that wrote it.
    pub prompt_grace_ms: u64,
    /// Lease validity; a dead relay's successor takes over after this.
    pub lease_ttl_ms: u64,
    /// How long processed-message records are kept for deduplication.
    pub idempotency_retention_hours: u64,
}

impl Default for OutboxSettings {
    fn default() -> Self {
        Self {
            batch_size: 256,
            poll_interval_ms: 10_000,
            prompt_grace_ms: 2_000,
            lease_ttl_ms: 10_000,
            idempotency_retention_hours: 72,
        }
    }
}

impl ServiceSettings for Settings {
    const LIST_KEYS: &'static [&'static str] = &["amqp.retry_delays_ms", "auth.chain_ids"];

    fn validate(&self) -> Result<(), InvalidSetting> {
        self.runtime.validate()?;
        self.amqp.validate()?;
        self.mongo.validate()?;
        let auth = |field: &str, reason: &str| Err(InvalidSetting::new("auth", field, reason));
        if self.auth.session_key.expose_secret().len() < 32 {
            return auth(
                "session_key",
                "must be a secret of at least 32 bytes (set PALM__AUTH__SESSION_KEY)",
            );
        }
        self.auth.rules()?;
        if self.auth.nonce_ttl_secs == 0 || self.auth.session_ttl_secs == 0 {
            return auth(
                "nonce_ttl_secs",
                "nonce and session lifetimes must be above 0",
            );
        }
        if !(1..=10).contains(&self.http.forwarded_for_trusted_hops) {
            return Err(InvalidSetting::new(
                "http",
                "forwarded_for_trusted_hops",
                "must be between 1 and 10",
            ));
        }
        if self.http.rate_limit_per_second == 0 || self.http.rate_limit_burst == 0 {
            return Err(InvalidSetting::new(
                "http",
                "rate_limit_per_second",
                "rate and burst must be above 0",
            ));
        }
        if self.http.body_limit_bytes < 1024 || self.http.request_timeout_ms == 0 {
            return Err(InvalidSetting::new(
                "http",
                "body_limit_bytes",
                "must be at least 1024, with a request timeout above 0",
            ));
        }
        if !(1..=10).contains(&self.communities.create_min_level) {
            return Err(InvalidSetting::new(
                "communities",
                "create_min_level",
                "must be between 1 and 10",
            ));
        }
        let proposals = &self.proposals;
        if proposals.scheduler_interval_ms == 0 || proposals.lease_ttl_ms < 300 {
            return Err(InvalidSetting::new(
                "proposals",
                "scheduler_interval_ms",
                "must be above 0, with lease_ttl_ms at least 300",
            ));
        }
        let bad = |field: &str, reason: &str| Err(InvalidSetting::new("outbox", field, reason));
        if self.outbox.batch_size < 1 {
            return bad("batch_size", "must be at least 1");
        }
        if self.outbox.lease_ttl_ms < 300 {
            return bad("lease_ttl_ms", "must be at least 300");
        }
        if self.outbox.prompt_grace_ms < 100 {
            return bad("prompt_grace_ms", "must be at least 100");
        }
        if self.outbox.idempotency_retention_hours == 0 {
            return bad("idempotency_retention_hours", "must be above 0");
        }
        Ok(())
    }

    fn runtime(&self) -> &RuntimeSettings {
        &self.runtime
    }
}
