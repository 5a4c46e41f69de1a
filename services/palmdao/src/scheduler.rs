//! The proposal lifecycle: `pending` → `active` at start, `active` →
//! `closed` at end, with `proposal.opened` and `proposal.closed` (the final
//! tally and whether quorum was met). It runs on one replica at a time,
//! under the `palmdao.scheduler` lease; every transition is a conditional
//! update on the current status, so a second scheduler (a lease handover)
//! cannot repeat one.
//!
//! Closing waits for votes submitted before the end that the validator has
//! not decided yet, for at most `proposals.close_grace_ms`: the tally it
//! freezes then counts them. Votes still undecided after the grace period
//! are decided but not counted.

use std::time::Duration;

use chrono::Utc;
use futures_util::TryStreamExt;
use palm_core::Envelope;
use palm_core::events::{ProposalClosed, ProposalOpened};
use palm_mongo::lease::{self, Lease};
use palm_mongo::mongodb::Database;
use palm_mongo::mongodb::bson::{Document, doc};
use palm_mongo::outbox::{self, OutboxRecord, Prompt};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::SERVICE;
use crate::api::audit::community_subject;
use crate::api::proposals::{PROPOSALS, VOTES};
use crate::api::to_bson_time;
use crate::tally::Tally;

/// Opens and closes proposals on time.
#[derive(Debug, Clone)]
pub struct Scheduler {
    database: Database,
    prompt: Prompt,
    interval: Duration,
    close_grace: chrono::Duration,
}

impl Scheduler {
    /// A scheduler passing every `interval`.
    pub fn new(
        database: Database,
        prompt: Prompt,
        interval: Duration,
        close_grace: Duration,
    ) -> Self {
        Self {
            database,
            prompt,
            interval,
            close_grace: chrono::Duration::from_std(close_grace)
                .unwrap_or(chrono::Duration::seconds(30)),
        }
    }

    /// Runs while this replica holds `lease`, until `shutdown`.
    pub async fn run(&self, lease: Lease, shutdown: CancellationToken) {
        lease::while_leader(&lease, &shutdown, |token| async move {
            tracing::info!(epoch = token.epoch, "proposal scheduler active");
            while !token.lost.is_cancelled() {
                if let Err(error) = self.pass().await {
                    tracing::warn!(%error, "scheduler pass failed");
                }
                tokio::select! {
                    () = tokio::time::sleep(self.interval) => {}
                    () = token.lost.cancelled() => {}
                }
            }
        })
        .await;
    }

    /// One pass: opens what has started, closes what has ended. Returns how
    /// many proposals changed status.
    pub async fn pass(&self) -> anyhow::Result<usize> {
        let now = to_bson_time(Utc::now());
        let proposals = self.database.collection::<Document>(PROPOSALS);
        let mut changed = 0;

        let starting: Vec<Document> = proposals
            .find(doc! { "status": "pending", "start": { "$lte": now } })
            .projection(doc! { "_id": 1, "community_id": 1 })
            .limit(500)
            .await?
            .try_collect()
            .await?;
        for proposal in &starting {
            changed += usize::from(self.open(proposal).await?);
        }

        let ending: Vec<Document> = proposals
            .find(doc! { "status": { "$in": ["pending", "active"] }, "end": { "$lte": now } })
            .limit(500)
            .await?
            .try_collect()
            .await?;
        for proposal in &ending {
            changed += usize::from(self.close(proposal).await?);
        }
        Ok(changed)
    }

    async fn open(&self, proposal: &Document) -> anyhow::Result<bool> {
        let id = proposal.get_str("_id")?;
        let community_id = proposal.get_str("community_id")?;
        let opened = Envelope::new(
            SERVICE,
            ProposalOpened {
                proposal_id: Uuid::parse_str(id)?,
                community_id: Uuid::parse_str(community_id)?,
            },
        );
        let mut update =
            doc! { "$set": { "status": "active", "opened_at": to_bson_time(Utc::now()) } };
        let record =
            OutboxRecord::from_envelope(&opened).concerning([community_subject(community_id)]);
        outbox::stage(&mut update, std::slice::from_ref(&record));
        let result = self
            .database
            .collection::<Document>(PROPOSALS)
            .update_one(doc! { "_id": id, "status": "pending" }, update)
            .await?;
        if result.modified_count == 1 {
            self.prompt.staged(PROPOSALS, id, &[record]);
            tracing::info!(proposal_id = id, "proposal opened");
        }
        Ok(result.modified_count == 1)
    }

    async fn close(&self, proposal: &Document) -> anyhow::Result<bool> {
        let id = proposal.get_str("_id")?;
        let community_id = proposal.get_str("community_id")?;
        let end = crate::tally::time_of(proposal, "end").unwrap_or_default();
        let undecided = self
            .database
            .collection::<Document>(VOTES)
            .count_documents(doc! {
                "proposal_id": id,
                "status": "pending",
                "submitted_at": { "$lt": to_bson_time(end) },
            })
            .await?;
        if undecided > 0 && Utc::now() < end + self.close_grace {
            tracing::debug!(proposal_id = id, undecided, "waiting for undecided votes");
            return Ok(false);
        }
        // Freeze, then count: a frozen ballot never changes, and a ballot
        // placed from now on is a new, unfrozen one the count leaves out.
        // Both steps are idempotent, so a pass cut off between them is
        // finished by the next.
        crate::tally::freeze(&self.database, id).await?;
        let choices = proposal.get_array("choices").map_or(0, Vec::len);
        let tally = Tally::recount(&self.database, id, choices, true).await?;
        let quorum = proposal.get_f64("quorum").unwrap_or(0.0);
        let quorum_met = tally.total_power >= quorum;
        let closed = Envelope::new(
            SERVICE,
            ProposalClosed {
                proposal_id: Uuid::parse_str(id)?,
                community_id: Uuid::parse_str(community_id)?,
                tally: tally.per_choice.clone(),
                voters: tally.voters,
                quorum_met,
            },
        );
        let mut update = doc! { "$set": {
            "status": "closed",
            "closed_at": to_bson_time(Utc::now()),
            "quorum_met": quorum_met,
            "undecided_at_close": i64::try_from(undecided).unwrap_or(i64::MAX),
            "tally": tally.per_choice.clone(),
            "voters": i64::try_from(tally.voters).unwrap_or(i64::MAX),
            "total_power": tally.total_power,
        } };
        let record =
            OutboxRecord::from_envelope(&closed).concerning([community_subject(community_id)]);
        outbox::stage(&mut update, std::slice::from_ref(&record));
        let result = self
            .database
            .collection::<Document>(PROPOSALS)
            .update_one(
                doc! { "_id": id, "status": { "$in": ["pending", "active"] } },
                update,
            )
            .await?;
        if result.modified_count == 1 {
            self.prompt.staged(PROPOSALS, id, &[record]);
            tracing::info!(
                proposal_id = id,
                voters = tally.voters,
                quorum_met,
                "proposal closed"
            );
        }
        Ok(result.modified_count == 1)
    }
}
