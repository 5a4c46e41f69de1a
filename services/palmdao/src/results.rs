//! Applies the results the validators send back, exactly once each.
//!
//! `vote.validated` / `vote.rejected`: see [`crate::tally`].
//!
//! `verification.completed`: a verification moves `pending` → `verified` or
//! `rejected` once. A verified identity must first be claimed in
//! `identities` (unique `_id = "<kind>:<subject>"`): if another PalmID holds
//! it, the verification is rejected with `identity_in_use` — the anti-sybil
//! rule, enforced by the unique index, never by a read-then-write. Every step
//! is idempotent, so a redelivery after a crash finishes the work and a
//! duplicate delivery changes nothing.

use crate::api::audit::palm_subject;
use chrono::Utc;
use palm_amqp::{HandlerError, Incoming};
use palm_core::events::{
    PalmIdVerifierAdded, VerificationCompleted, VerificationOutcome, VoteRejected, VoteValidated,
};
use palm_core::{Envelope, RawEnvelope};
use palm_mongo::mongodb::Database;
use palm_mongo::mongodb::bson::{DateTime as BsonDateTime, Document, doc};
use palm_mongo::outbox::{self, OutboxRecord, Prompt};

use crate::SERVICE;
use crate::api::palm_ids::{IDENTITIES, PALM_IDS};
use crate::api::verifications::VERIFICATIONS;

/// The consumer of the `palmdao.results` queue.
#[derive(Debug, Clone)]
pub struct Results {
    database: Database,
    prompt: Prompt,
}

impl Results {
    /// Results applied to `database`; events they stage go to `prompt`.
    pub fn new(database: Database, prompt: Prompt) -> Self {
        Self { database, prompt }
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
                crate::tally::apply_validated(&self.database, &event).await
            }
            "vote.rejected" => {
                let event = raw
                    .into_typed::<VoteRejected>()
                    .map_err(HandlerError::permanent)?;
                crate::tally::apply_rejected(&self.database, &event).await
            }
            other => Err(HandlerError::permanent(anyhow::anyhow!(
                "palmdao does not handle `{other}`"
            ))),
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
        let verifications = self.database.collection::<Document>(VERIFICATIONS);
        let Some(pending) = verifications
            .find_one(doc! { "_id": &id })
            .await
            .map_err(HandlerError::transient)?
        else {
            return Err(HandlerError::permanent(anyhow::anyhow!(
                "unknown verification {id}"
            )));
        };
        if pending.get_str("palm_id").ok() != Some(palm_id.as_str()) {
            return Err(HandlerError::permanent(anyhow::anyhow!(
                "verification {id} belongs to another PalmID"
            )));
        }
        if pending.get_str("status").ok() != Some("pending") {
            tracing::info!("verification result already applied");
            return Ok(());
        }

        let (status, subject, reason) = match &result.outcome {
            VerificationOutcome::Rejected { reason } => ("rejected", None, Some(reason.clone())),
            VerificationOutcome::Verified {
                subject,
                display_name,
            } => {
                let subject = normalize(&result.kind, subject);
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
        // The transition happens once: only a pending verification matches.
        let mut change = doc! { "status": status, "completed_at": BsonDateTime::now() };
        if let Some(subject) = subject {
            change.insert("subject", subject);
        }
        if let Some(reason) = reason {
            change.insert("reason", reason);
        }
        verifications
            .update_one(
                doc! { "_id": &id, "status": "pending" },
                doc! { "$set": change },
            )
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
        let identities = self.database.collection::<Document>(IDENTITIES);
        let key = format!("{kind}:{subject}");
        let claim = doc! { "_id": &key, "palm_id": palm_id, "created_at": BsonDateTime::now() };
        match identities.insert_one(claim).await {
            Ok(_) => Ok(true),
            Err(error) if palm_mongo::is_duplicate_key(&error) => {
                let holder = identities
                    .find_one(doc! { "_id": &key })
                    .await
                    .map_err(HandlerError::transient)?
                    .and_then(|d| d.get_str("palm_id").ok().map(str::to_owned));
                Ok(holder.as_deref() == Some(palm_id))
            }
            Err(error) => Err(HandlerError::transient(error)),
        }
    }

    /// Adds the verifier unless the PalmID already has it (so a redelivery
    /// changes nothing), staging `palm_id.verifier_added` in the same write.
    async fn add_verifier(
        &self,
        event: &Envelope<VerificationCompleted>,
        subject: &str,
        display_name: Option<&str>,
    ) -> Result<(), HandlerError> {
        let result = &event.payload;
        let added = Envelope::caused_by(
            SERVICE,
            PalmIdVerifierAdded {
                palm_id: result.palm_id,
                kind: result.kind.clone(),
            },
            event,
        );
        let identity = format!("{}:{subject}", result.kind);
        let verifier = doc! {
            "kind": &result.kind,
            "subject": subject,
            "identity": &identity,
            "display_name": display_name,
            "verified_at": BsonDateTime::from_millis(Utc::now().timestamp_millis()),
        };
        let palm_ids = self.database.collection::<Document>(PALM_IDS);
        // Optimistic concurrency: push only onto the version just read, so a
        // verifier is added at most once however often or concurrently this
        // runs. A lost race reads again.
        for _ in 0..5 {
            let current = palm_ids
                .find_one(doc! { "_id": result.palm_id.to_string() })
                .await
                .map_err(HandlerError::transient)?
                .ok_or_else(|| {
                    HandlerError::permanent(anyhow::anyhow!("unknown PalmID {}", result.palm_id))
                })?;
            let present = current.get_array("verifiers").is_ok_and(|verifiers| {
                verifiers.iter().any(|v| {
                    v.as_document().and_then(|d| d.get_str("identity").ok())
                        == Some(identity.as_str())
                })
            });
            if present {
                return Ok(());
            }
            let version = palm_mongo::integer(&current, "version").unwrap_or(0);
            let kinds: Vec<String> = current
                .get_array("verifiers")
                .map(|verifiers| {
                    verifiers
                        .iter()
                        .filter_map(|v| v.as_document()?.get_str("kind").ok())
                        .map(str::to_owned)
                        .collect()
                })
                .unwrap_or_default();
            // The level changes with the verifiers, in the same write; the
            // version check makes it the level of exactly these verifiers.
            let level = crate::api::palm_ids::level_of(
                kinds
                    .iter()
                    .map(String::as_str)
                    .chain([result.kind.as_str()]),
            );
            let mut update = doc! {
                "$push": { "verifiers": verifier.clone() },
                "$set": { "version": version + 1, "level": i64::from(level) },
            };
            let record =
                OutboxRecord::from_envelope(&added).concerning([palm_subject(result.palm_id)]);
            outbox::stage(&mut update, std::slice::from_ref(&record));
            let filter = if version == 0 {
                doc! { "_id": result.palm_id.to_string(), "version": { "$exists": false } }
            } else {
                doc! { "_id": result.palm_id.to_string(), "version": version }
            };
            let outcome = palm_ids
                .update_one(filter, update)
                .await
                .map_err(HandlerError::transient)?;
            if outcome.matched_count == 1 {
                self.prompt
                    .staged(PALM_IDS, result.palm_id.to_string(), &[record]);
                return Ok(());
            }
        }
        Err(HandlerError::transient(anyhow::anyhow!(
            "PalmID kept changing; will retry"
        )))
    }
}

/// One spelling per identity: wallet addresses in lower-case hex.
fn normalize(kind: &str, subject: &str) -> String {
    if kind == "wallet" {
        subject.to_ascii_lowercase()
    } else {
        subject.to_owned()
    }
}
