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
use palm_core::events::ProposalClosed;
use palm_mongo::mongodb::bson::{Document, doc};
use palm_mongo::outbox::{self, OutboxRecord};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::SERVICE;
use crate::domain::audit::community_subject;
use crate::store::Store;
use crate::store::proposals::{self as proposals_store, PROPOSALS, VOTES};
use crate::store::to_bson_time;
use crate::store::wiring::{Lease, while_leader};
use crate::tally::Tally;

/// Opens and closes proposals on time.
#[derive(Debug, Clone)]
pub struct Scheduler {
    store: Store,
    interval: Duration,
    close_grace: chrono::Duration,
}

impl Scheduler {
    /// A scheduler passing every `interval`.
    pub fn new(store: Store, interval: Duration, close_grace: Duration) -> Self {
        Self {
            store,
            interval,
            close_grace: chrono::Duration::from_std(close_grace)
                .unwrap_or(chrono::Duration::seconds(30)),
        }
    }

    /// Runs while this replica holds `lease`, until `shutdown`.
    pub async fn run(&self, lease: Lease, shutdown: CancellationToken) {
        while_leader(&lease, &shutdown, |token| async move {
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
        let now = Utc::now();
        let mut changed = 0;

        for (id, community_id) in proposals_store::starting(&self.store, now).await? {
            changed += usize::from(self.open(&id, &community_id).await?);
        }

        let now = to_bson_time(now);
        let proposals = self.store.database().collection::<Document>(PROPOSALS);
        let ending: Vec<Document> = proposals
            .find(doc! { "status": { "$in": ["pending", "active"] }, "end": { "$lte": now } })
            .projection(doc! { "ballots": 0 })
            .limit(500)
            .await?
            .try_collect()
            .await?;
        for proposal in &ending {
            changed += usize::from(self.close(proposal).await?);
        }
        Ok(changed)
    }

    async fn open(&self, id: &str, community_id: &str) -> anyhow::Result<bool> {
        let opened = proposals_store::open(&self.store, id, community_id, Utc::now()).await?;
        if opened {
            tracing::info!(proposal_id = id, "proposal opened");
        }
        Ok(opened)
    }

    async fn close(&self, proposal: &Document) -> anyhow::Result<bool> {
        let id = proposal.get_str("_id")?;
        let community_id = proposal.get_str("community_id")?;
        let end = crate::tally::time_of(proposal, "end").unwrap_or_default();
        let undecided = self
            .store
            .database()
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
        let choices = proposal.get_array("choices").map_or(0, Vec::len);
        let tally = Tally::of(proposal, choices);
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
        } };
        outbox::stage(
            &mut update,
            &[OutboxRecord::from_envelope(&closed).concerning([community_subject(community_id)])],
        );
        // Only the tally read above may be frozen: a ballot counted since
        // bumped the version, and the next pass closes with it.
        let result = self
            .store
            .database()
            .collection::<Document>(PROPOSALS)
            .update_one(
                doc! {
                    "_id": id,
                    "status": { "$in": ["pending", "active"] },
                    "$or": [
                        { "tally_version": tally.version },
                        { "tally_version": { "$exists": false } },
                    ],
                },
                update,
            )
            .await?;
        if result.modified_count == 1 {
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
