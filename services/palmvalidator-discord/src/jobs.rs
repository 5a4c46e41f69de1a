//! The consumer of `palmvalidator-discord.jobs`: decodes a
//! `verification.requested.discord` job, decides it ([`crate::verify`]) and
//! publishes `verification.completed` before the job is acked.
//!
//! The result's event id is derived from the job's
//! ([`Envelope::derived_from`]), so if the process dies after publishing
//! but before acking, the redelivered job's result carries the same id and
//! palmdao applies it once. A job that does not decode is permanent (DLQ);
//! an answer from Discord that says nothing about the user, a failed
//! publish, or a shutdown while Discord is unreachable is transient
//! (delayed retry).

use std::time::SystemTime;

use palm_amqp::{HandlerError, Incoming, OutgoingMessage, Publisher};
use palm_core::events::{DiscordVerificationRequested, VerificationCompleted, VerificationOutcome};
use palm_core::{Envelope, Event, RawEnvelope};
use palm_service::metrics;
use tokio_util::sync::CancellationToken;

use crate::SERVICE;
use crate::verify::Verifier;

/// Decides jobs and publishes their results. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Jobs {
    publisher: Publisher,
    verifier: Verifier,
    shutdown: CancellationToken,
}

impl Jobs {
    /// Jobs decided by `verifier`, results published through `publisher`;
    /// waits for an unreachable Discord end on `shutdown`.
    pub fn new(publisher: Publisher, verifier: Verifier, shutdown: CancellationToken) -> Self {
        Self {
            publisher,
            verifier,
            shutdown,
        }
    }

    /// Handles one job.
    pub async fn handle(&self, message: Incoming) -> Result<(), HandlerError> {
        let raw = RawEnvelope::from_json(&message.body).map_err(HandlerError::permanent)?;
        if raw.event_type != DiscordVerificationRequested::TYPE {
            return Err(HandlerError::permanent(anyhow::anyhow!(
                "palmvalidator-discord does not handle `{}`",
                raw.event_type
            )));
        }
        let job = raw
            .into_typed::<DiscordVerificationRequested>()
            .map_err(HandlerError::permanent)?;
        self.verify(&job).await
    }

    #[tracing::instrument(skip_all, fields(
        verification_id = %job.payload.verification_id,
        palm_id = %job.payload.palm_id,
    ))]
    async fn verify(
        &self,
        job: &Envelope<DiscordVerificationRequested>,
    ) -> Result<(), HandlerError> {
        let outcome = self
            .verifier
            .verify(&job.payload, SystemTime::now(), &self.shutdown)
            .await
            .map_err(|error| {
                tracing::warn!(error = %error, "discord verification not decided, retrying later");
                HandlerError::transient(error)
            })?;
        let label = match &outcome {
            VerificationOutcome::Verified { .. } => "verified".to_owned(),
            VerificationOutcome::Rejected { reason } => reason.clone(),
        };
        let result = VerificationCompleted {
            verification_id: job.payload.verification_id,
            palm_id: job.payload.palm_id,
            kind: "discord".to_owned(),
            outcome,
        };
        let event = Envelope::derived_from(SERVICE, result, job);
        let message = OutgoingMessage::event(self.publisher.broker().names(), &event);
        self.publisher
            .publish(&message)
            .await
            .map_err(HandlerError::transient)?;
        tracing::info!(outcome = %label, "discord verification decided");
        metrics::counter!("palm_verifications_decided_total", "kind" => "discord", "outcome" => label)
            .increment(1);
        Ok(())
    }
}
