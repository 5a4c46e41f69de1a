//! Applies the results the validators send back, exactly once each.
//!
//! `vote.validated` / `vote.rejected`: a vote moves `pending` → `valid` or
//! `rejected` once (a conditional update on its status); a valid vote then
//! becomes its PalmID's ballot on the proposal (`store::ballots`, ADR 0029),
//! a step that is itself idempotent, so a redelivery after a crash between
//! the two finishes the work. Validated votes are applied in groups
//! (`store::results`): the handlers running at once share three commands.
//!
//! `verification.completed`: a verification moves `pending` → `verified` or
//! `rejected` once. A verified identity must first be claimed in
//! `identities` (unique `_id = "<kind>:<subject>"`): if another PalmID holds
//! it, the verification is rejected with `identity_in_use` — the anti-sybil
//! rule, enforced by the unique index, never by a read-then-write. Every step
//! is idempotent, so a redelivery after a crash finishes the work and a
//! duplicate delivery changes nothing.

use palm_amqp::{HandlerError, Incoming};
use palm_core::events::{VerificationCompleted, VerificationOutcome, VoteRejected, VoteValidated};
use palm_core::{Envelope, RawEnvelope};

use crate::domain::palm_ids::normalize_subject;
use crate::store::palm_ids::{self, VerifierAdded};
use crate::store::results::{Applied, ValidatedResults, ValidatedVote};
use crate::store::{Store, identities, verifications, votes};

/// The consumer of the `palmdao.results` queue.
#[derive(Debug, Clone)]
pub struct Results {
    store: Store,
    validated: ValidatedResults,
}

impl Results {
    /// Results applied to `store` (starts the grouping task of validated
    /// votes, so it needs a Tokio runtime).
    pub fn new(store: Store) -> Self {
        let validated = ValidatedResults::start(store.clone());
        Self { store, validated }
    }

    /// Dispatches one message by event type.
    pub async fn handle(&self, message: Incoming) -> Result<(), HandlerError> {
        let raw = RawEnvelope::from_json(&message.body).map_err(HandlerError::permanent)?;
        match raw.event_type.as_str() {
            "verification.completed" => {
                let event = raw
                    .into_typed::<VerificationCompleted>()
                    .map_err(HandlerError::permanent)?;
                self.apply_verification(&event).await
            }
            "vote.validated" => {
                let event = raw
                    .into_typed::<VoteValidated>()
                    .map_err(HandlerError::permanent)?;
                self.apply_validated(&event).await
            }
            "vote.rejected" => {
                let event = raw
                    .into_typed::<VoteRejected>()
                    .map_err(HandlerError::permanent)?;
                self.apply_rejected(&event).await
            }
            other => Err(HandlerError::permanent(anyhow::anyhow!(
                "palmdao does not handle `{other}`"
            ))),
        }
    }

    /// `vote.rejected`: the vote is rejected with its reason, once.
    #[tracing::instrument(skip_all, fields(vote_id = %event.payload.vote_id))]
    async fn apply_rejected(&self, event: &Envelope<VoteRejected>) -> Result<(), HandlerError> {
        let result = &event.payload;
        let vote_id = result.vote_id.to_string();
        match votes::reject(&self.store, &vote_id, &result.reason)
            .await
            .map_err(HandlerError::transient)?
        {
            None => {
                return Err(HandlerError::permanent(anyhow::anyhow!(
                    "unknown vote {vote_id}"
                )));
            }
            Some(false) => tracing::info!("vote result already applied"),
            Some(true) => {}
        }
        palm_service::metrics::counter!("palm_votes_applied_total", "outcome" => "rejected")
            .increment(1);
        Ok(())
    }

    /// `vote.validated`: the vote becomes valid once, then its ballot is put
    /// in place unless a later vote of the same PalmID is counted already.
    #[tracing::instrument(skip_all, fields(vote_id = %event.payload.vote_id))]
    async fn apply_validated(&self, event: &Envelope<VoteValidated>) -> Result<(), HandlerError> {
        let result = &event.payload;
        let vote_id = result.vote_id.to_string();
        let applied = self
            .validated
            .apply(ValidatedVote {
                vote_id: vote_id.clone(),
                proposal_id: result.proposal_id.to_string(),
                palm_id: result.palm_id.to_string(),
                voting_power: result.voting_power,
                allocation: result.allocation.clone(),
            })
            .await
            .map_err(HandlerError::transient)?;
        match applied {
            Applied::Unknown => Err(HandlerError::permanent(anyhow::anyhow!(
                "unknown vote {vote_id}"
            ))),
            Applied::DecidedOtherwise(status) => {
                // Rejected earlier by a conflicting result: the first decision holds.
                tracing::warn!(%status, "validated vote was already decided otherwise");
                Ok(())
            }
            Applied::Valid { placed } => {
                tracing::info!(placed, "vote applied");
                palm_service::metrics::counter!("palm_votes_applied_total", "outcome" => "valid")
                    .increment(1);
                Ok(())
            }
        }
    }

    #[tracing::instrument(skip_all, fields(verification_id = %event.payload.verification_id))]
    async fn apply_verification(
        &self,
        event: &Envelope<VerificationCompleted>,
    ) -> Result<(), HandlerError> {
        let result = &event.payload;
        let id = result.verification_id.to_string();
        let palm_id = result.palm_id.to_string();
        let Some(pending) = verifications::load(&self.store, &id)
            .await
            .map_err(HandlerError::transient)?
        else {
            return Err(HandlerError::permanent(anyhow::anyhow!(
                "unknown verification {id}"
            )));
        };
        if pending.palm_id != palm_id {
            return Err(HandlerError::permanent(anyhow::anyhow!(
                "verification {id} belongs to another PalmID"
            )));
        }
        if pending.status != "pending" {
            tracing::info!("verification result already applied");
            return Ok(());
        }

        let (status, subject, reason) = match &result.outcome {
            VerificationOutcome::Rejected { reason } => ("rejected", None, Some(reason.clone())),
            VerificationOutcome::Verified {
                subject,
                display_name,
            } => {
                let subject = normalize_subject(&result.kind, subject);
                if self
                    .claim_identity(&result.kind, &subject, &palm_id)
                    .await?
                {
                    self.add_verifier(event, &subject, display_name.as_deref())
                        .await?;
                    ("verified", Some(subject), None)
                } else {
                    (
                        "rejected",
                        Some(subject),
                        Some("identity_in_use".to_owned()),
                    )
                }
            }
        };
        // The transition happens once: only a pending verification changes.
        verifications::complete(&self.store, &id, status, subject, reason)
            .await
            .map_err(HandlerError::transient)?;
        tracing::info!(status, "verification result applied");
        Ok(())
    }

    /// Claims `kind:subject` for `palm_id`; false if another PalmID holds it.
    async fn claim_identity(
        &self,
        kind: &str,
        subject: &str,
        palm_id: &str,
    ) -> Result<bool, HandlerError> {
        let key = identities::key(kind, subject);
        if identities::claim(&self.store, &key, palm_id)
            .await
            .map_err(HandlerError::transient)?
        {
            return Ok(true);
        }
        let holder = identities::holder(&self.store, &key)
            .await
            .map_err(HandlerError::transient)?
            .flatten();
        Ok(holder.as_deref() == Some(palm_id))
    }

    /// Adds the verifier unless the PalmID already has it (so a redelivery
    /// changes nothing), staging `palm_id.verifier_added` in the same write.
    async fn add_verifier(
        &self,
        event: &Envelope<VerificationCompleted>,
        subject: &str,
        display_name: Option<&str>,
    ) -> Result<(), HandlerError> {
        let added = palm_ids::add_verifier(&self.store, event, subject, display_name)
            .await
            .map_err(HandlerError::transient)?;
        match added {
            VerifierAdded::Added | VerifierAdded::AlreadyThere => Ok(()),
            VerifierAdded::UnknownPalmId => Err(HandlerError::permanent(anyhow::anyhow!(
                "unknown PalmID {}",
                event.payload.palm_id
            ))),
            VerifierAdded::KeptChanging => Err(HandlerError::transient(anyhow::anyhow!(
                "PalmID kept changing; will retry"
            ))),
        }
    }
}
