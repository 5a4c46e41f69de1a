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
use tokio_util::sync::CancellationToken;

use crate::domain::proposals::Proposal;
use crate::store::proposals as proposals_store;
use crate::store::wiring::{Lease, while_leader};
use crate::store::{Store, ballots, votes};

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

        for proposal in proposals_store::ending(&self.store, now).await? {
            changed += usize::from(self.close(&proposal).await?);
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

    /// Closes `proposal` once its undecided votes are decided (or the grace
    /// ran out): freeze its ballots, count the frozen ones, store the final
    /// tally with `proposal.closed`. Each step is idempotent, so a pass cut
    /// off between them is finished by the next.
    async fn close(&self, proposal: &Proposal) -> anyhow::Result<bool> {
        let id = proposal.id.as_str();
        let undecided = votes::undecided_before(&self.store, id, proposal.end).await?;
        if undecided > 0 && Utc::now() < proposal.end + self.close_grace {
            tracing::debug!(proposal_id = id, undecided, "waiting for undecided votes");
            return Ok(false);
        }
        ballots::freeze(&self.store, id).await?;
        let tally = ballots::recount(&self.store, id, proposal.choices.len(), true).await?;
        let closed =
            proposals_store::close(&self.store, proposal, &tally, undecided, Utc::now()).await?;
        if closed {
            tracing::info!(
                proposal_id = id,
                voters = tally.voters,
                quorum_met = tally.meets(proposal.quorum),
                "proposal closed"
            );
        }
        Ok(closed)
    }
}
