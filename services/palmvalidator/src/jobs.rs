//! The consumer of `palmvalidator.jobs`: decodes a job, decides it, and
//! publishes the result before the job is acked.
//!
//! - `vote.submitted` → `vote.validated` or `vote.rejected` ([`crate::votes`]).
//! - `verification.requested.wallet` → `verification.completed`
//!   ([`crate::wallets`]).
//!
//! The result's event id is derived from the job's id and the result type
//! ([`Envelope::derived_from`]), and the decision depends only on the job (and
//! the clock, for a SIWE message's expiry), so a redelivered job yields the
//! same result event, which palmdao applies once. A job is acked only after
//! its result is confirmed by the broker; a failed publish is transient and
//! retried. A job that does not decode (malformed, an unknown schema version,
//! a type this service does not handle) is permanent: it goes to the DLQ
//! with the reason.
//!
//! Signature recovery is CPU work, so the decisions run on the blocking pool
//! and leave the async workers free for the broker connection.

use std::sync::Arc;

use chrono::Utc;
use palm_amqp::{HandlerError, Incoming, OutgoingMessage, Publisher};
use palm_core::events::{
    VerificationCompleted, VoteRejected, VoteSubmitted, VoteValidated, WalletVerificationRequested,
};
use palm_core::siwe::SiweRules;
use palm_core::vote::VoteDomain;
use palm_core::{Envelope, Event, RawEnvelope};
use palm_service::metrics;

use crate::{SERVICE, votes, wallets};

/// Decides jobs and publishes their results. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Jobs {
    publisher: Publisher,
    rules: Arc<Rules>,
}

/// What jobs are decided against, from configuration.
#[derive(Debug)]
struct Rules {
    vote_domain: VoteDomain,
    siwe: SiweRules,
}

impl Jobs {
    /// Jobs whose results go out through `publisher`; votes are checked
    /// against `vote_domain`, wallet proofs against `siwe`.
    pub fn new(publisher: Publisher, vote_domain: VoteDomain, siwe: SiweRules) -> Self {
        Self {
            publisher,
            rules: Arc::new(Rules { vote_domain, siwe }),
        }
    }

    /// Handles one job, dispatching on its event type.
    pub async fn handle(&self, message: Incoming) -> Result<(), HandlerError> {
        let raw = RawEnvelope::from_json(&message.body).map_err(HandlerError::permanent)?;
        match raw.event_type.as_str() {
            VoteSubmitted::TYPE => {
                let job = raw
                    .into_typed::<VoteSubmitted>()
                    .map_err(HandlerError::permanent)?;
                self.validate_vote(&job).await
            }
            WalletVerificationRequested::TYPE => {
                let job = raw
                    .into_typed::<WalletVerificationRequested>()
                    .map_err(HandlerError::permanent)?;
                self.verify_wallet(&job).await
            }
            other => Err(HandlerError::permanent(anyhow::anyhow!(
                "palmvalidator does not handle `{other}`"
            ))),
        }
    }

    #[tracing::instrument(skip_all, fields(
        vote_id = %job.payload.vote_id,
        proposal_id = %job.payload.proposal_id,
    ))]
    async fn validate_vote(&self, job: &Envelope<VoteSubmitted>) -> Result<(), HandlerError> {
        let vote = job.payload.clone();
        let rules = Arc::clone(&self.rules);
        let decision = off_the_reactor(move || votes::decide(&vote, &rules.vote_domain)).await?;
        let vote = &job.payload;
        let outcome = match decision {
            Ok(counted) => {
                let result = VoteValidated {
                    vote_id: vote.vote_id,
                    proposal_id: vote.proposal_id,
                    palm_id: vote.palm_id,
                    voting_power: counted.voting_power,
                    allocation: counted.allocation,
                };
                self.publish(&Envelope::derived_from(SERVICE, result, job))
                    .await?;
                tracing::debug!(voting_power = counted.voting_power, "vote valid");
                "valid"
            }
            Err(rejection) => {
                let result = VoteRejected {
                    vote_id: vote.vote_id,
                    proposal_id: vote.proposal_id,
                    palm_id: vote.palm_id,
                    reason: rejection.code().to_owned(),
                };
                self.publish(&Envelope::derived_from(SERVICE, result, job))
                    .await?;
                tracing::info!(reason = rejection.code(), "vote rejected");
                rejection.code()
            }
        };
        metrics::counter!("palm_votes_decided_total", "outcome" => outcome).increment(1);
        Ok(())
    }

    #[tracing::instrument(skip_all, fields(verification_id = %job.payload.verification_id))]
    async fn verify_wallet(
        &self,
        job: &Envelope<WalletVerificationRequested>,
    ) -> Result<(), HandlerError> {
        let request = job.payload.clone();
        let rules = Arc::clone(&self.rules);
        let outcome =
            off_the_reactor(move || wallets::decide(&request, &rules.siwe, Utc::now())).await?;
        let label = match &outcome {
            palm_core::events::VerificationOutcome::Verified { .. } => "verified".to_owned(),
            palm_core::events::VerificationOutcome::Rejected { reason } => reason.clone(),
        };
        let result = VerificationCompleted {
            verification_id: job.payload.verification_id,
            palm_id: job.payload.palm_id,
            kind: "wallet".to_owned(),
            outcome,
        };
        self.publish(&Envelope::derived_from(SERVICE, result, job))
            .await?;
        tracing::info!(outcome = %label, "wallet verification decided");
        metrics::counter!("palm_verifications_decided_total", "kind" => "wallet", "outcome" => label)
            .increment(1);
        Ok(())
    }

    /// Publishes a result and waits for the broker's confirm.
    async fn publish<P: Event>(&self, result: &Envelope<P>) -> Result<(), HandlerError> {
        let message = OutgoingMessage::event(self.publisher.broker().names(), result);
        self.publisher
            .publish(&message)
            .await
            .map_err(HandlerError::transient)
    }
}

/// Runs CPU-bound `work` on the blocking pool, inside the current span.
async fn off_the_reactor<T: Send + 'static>(
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T, HandlerError> {
    let span = tracing::Span::current();
    tokio::task::spawn_blocking(move || span.in_scope(work))
        .await
        .map_err(HandlerError::transient)
}
