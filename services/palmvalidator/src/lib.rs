//! `palmvalidator`: the stateless, horizontally scalable validation worker
//! between palmdao requests and results. It talks to RabbitMQ only.
//!
//! It consumes `palmvalidator.jobs` (competing consumers: any number of
//! instances share the queue) and answers every job with one result event
//! whose id is derived from the job's, so a redelivered job yields the same
//! result. It holds no state: palmdao puts every fact a decision needs into
//! the job.
//!
//! # Layout
//! - [`jobs`]: the consumer: decode, decide, publish the result (confirmed)
//!   before the ack.
//! - [`votes`]: `vote.submitted` → valid with power and allocation, or
//!   rejected with a reason (signature, window, eligibility, choice).
//! - [`wallets`]: `verification.requested.wallet` → the SIWE proof verified
//!   or rejected.
//! - Voting types and strategies live in [`palm_core::voting`], shared with
//!   palmdao's intake.

pub mod jobs;
pub mod votes;
pub mod wallets;

use anyhow::Context as _;
use palm_amqp::{AmqpSettings, Broker, Consumer, Incoming, Publisher, QueueSpec, Topology};
use palm_core::InvalidSetting;
use palm_core::siwe::SiweRules;
use palm_core::vote::VoteDomain;
use palm_service::{Runtime, RuntimeSettings, ServiceSettings, metrics};
use serde::Deserialize;

/// Service name: binary, image, chart, log and metric label.
pub const SERVICE: &str = "palmvalidator";

/// Short name of the job queue.
pub const JOBS_QUEUE: &str = "palmvalidator.jobs";

/// The queue this service consumes.
pub fn queues() -> Vec<QueueSpec> {
    vec![QueueSpec::new(
        JOBS_QUEUE,
        &["verification.requested.wallet", "vote.submitted"],
    )]
}

/// `palmvalidator` configuration.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Settings {
    /// `admin.*`, `telemetry.*`, `shutdown.*`.
    #[serde(flatten)]
    pub runtime: RuntimeSettings,
    /// `amqp.*`.
    pub amqp: AmqpSettings,
    /// `votes.*`: the EIP-712 domain votes are signed under.
    pub votes: VoteSettings,
    /// `auth.*`: what a wallet's Sign-In with Ethereum proof must name.
    pub auth: AuthSettings,
}

/// `votes.*`: the EIP-712 domain; it must be the one voters' wallets are
/// asked to sign under, or every vote fails as `signer_mismatch`.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct VoteSettings {
    /// Domain `name`.
    pub domain_name: String,
    /// Domain `version`.
    pub domain_version: String,
    /// Domain `chainId` (EIP-155).
    pub chain_id: u64,
}

impl Default for VoteSettings {
    fn default() -> Self {
        let domain = VoteDomain::default();
        Self {
            domain_name: domain.name,
            domain_version: domain.version,
            chain_id: domain.chain_id,
        }
    }
}

impl VoteSettings {
    /// The domain as the signature check takes it.
    pub fn domain(&self) -> VoteDomain {
        VoteDomain {
            name: self.domain_name.clone(),
            version: self.domain_version.clone(),
            chain_id: self.chain_id,
        }
    }
}

/// `auth.*`: the same keys and defaults as palmdao's sign-in rules, since a
/// wallet link is proven with the same kind of message. Unknown keys are
/// ignored rather than refused: a deployment may give every service one
/// `auth.*` set, including palmdao-only keys such as `auth.session_key`.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct AuthSettings {
    /// The domain the message must name.
    pub domain: String,
    /// The URI the message must name.
    pub uri: String,
    /// Accepted EIP-155 chain ids.
    #[serde(deserialize_with = "palm_core::settings::one_or_many")]
    pub chain_ids: Vec<u64>,
    /// Tolerated clock difference with wallets.
    pub clock_skew_secs: u64,
}

impl Default for AuthSettings {
    fn default() -> Self {
        Self {
            domain: "localhost:8080".into(),
            uri: "http://localhost:8080/v1/auth/siwe".into(),
            chain_ids: vec![1],
            clock_skew_secs: 30,
        }
    }
}

impl AuthSettings {
    /// The rules as the SIWE check takes them, or the bad `auth.*` key.
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

impl ServiceSettings for Settings {
    const LIST_KEYS: &'static [&'static str] = &["amqp.retry_delays_ms", "auth.chain_ids"];

    fn validate(&self) -> Result<(), InvalidSetting> {
        self.runtime.validate()?;
        self.amqp.validate()?;
        let votes = |field: &str, reason: &str| Err(InvalidSetting::new("votes", field, reason));
        if self.votes.domain_name.is_empty() {
            return votes(
                "domain_name",
                "must name the EIP-712 domain votes are signed under",
            );
        }
        if self.votes.domain_version.is_empty() {
            return votes("domain_version", "must not be empty");
        }
        if self.votes.chain_id == 0 {
            return votes("chain_id", "must be an EIP-155 chain id above 0");
        }
        self.auth.rules()?;
        Ok(())
    }

    fn runtime(&self) -> &RuntimeSettings {
        &self.runtime
    }
}

/// Runs the service until `runtime.shutdown`: consumes jobs, publishing each
/// result before acking its job; on shutdown, finishes the jobs in flight.
pub async fn run(settings: Settings, runtime: Runtime) -> anyhow::Result<()> {
    runtime.readiness.expect(&["amqp"]);
    // Every outcome at zero from the start (`palm_votes_decided_total`).
    for outcome in std::iter::once("valid").chain(votes::Rejection::ALL.map(votes::Rejection::code))
    {
        let _ = metrics::counter!("palm_votes_decided_total", "outcome" => outcome);
    }
    let _ = metrics::counter!("palm_verifications_decided_total", "kind" => "wallet", "outcome" => "verified");
    let broker = Broker::start(
        settings.amqp.clone(),
        Topology::new(&settings.amqp, queues()),
    );
    runtime.readiness.register("amqp", broker.readiness_check());
    let publisher = Publisher::new(broker.clone());
    let jobs = jobs::Jobs::new(
        publisher.clone(),
        settings.votes.domain(),
        settings.auth.rules()?,
    );
    let consumer = Consumer::new(&broker, &publisher, JOBS_QUEUE, move |message: Incoming| {
        let jobs = jobs.clone();
        async move { jobs.handle(message).await }
    });
    let consumed = consumer
        .run(runtime.shutdown.clone())
        .await
        .context("the job consumer failed");
    broker.close().await;
    consumed
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn defaults_validate_and_match_palmdao_and_the_vote_signers() {
        let settings = Settings::default();
        settings.validate().unwrap();
        assert_eq!(settings.votes.domain(), VoteDomain::default());
        assert_eq!(settings.auth.rules().unwrap().chain_ids, vec![1]);
    }

    #[test]
    fn bad_values_name_their_key() {
        let key = |change: &dyn Fn(&mut Settings)| {
            let mut settings = Settings::default();
            change(&mut settings);
            settings.validate().unwrap_err().key
        };
        assert_eq!(key(&|s| s.votes.domain_name.clear()), "votes.domain_name");
        assert_eq!(key(&|s| s.votes.chain_id = 0), "votes.chain_id");
        assert_eq!(key(&|s| s.auth.uri = "ftp://x".into()), "auth.uri");
        assert_eq!(key(&|s| s.auth.chain_ids.clear()), "auth.chain_ids");
    }
}
