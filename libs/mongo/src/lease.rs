//! Named leases for "one instance at a time" work (the outbox relay, the
//! proposal scheduler), with a fencing epoch.
//!
//! A lease document `{_id: name, holder, epoch, expires_at}` is acquired by
//! single-document atomic updates only: renew if we hold it, take it over if
//! it expired (the epoch increases), or create it. The epoch never decreases,
//! so work stamped with an epoch can be refused once a newer holder exists.
//!
//! Metrics (registered at zero when the lease handle is built):
//! `palm_lease_held{lease}` is 1 while [`while_leader`] runs work under it,
//! `palm_lease_acquisitions_total{lease}` counts this process's tenures
//! (each one a holder change), so a lease that flaps shows in both.

use std::future::Future;
use std::time::{Duration, Instant};

use mongodb::bson::{DateTime, Document, doc};
use mongodb::options::ReturnDocument;
use mongodb::{Collection, Database};
use tokio_util::sync::CancellationToken;

use crate::is_duplicate_key;

/// Collection name.
pub const COLLECTION: &str = "leases";

/// One named lease as seen by one holder.
#[derive(Debug, Clone)]
pub struct Lease {
    collection: Collection<Document>,
    name: String,
    holder: String,
    ttl: Duration,
    held: metrics::Gauge,
    acquisitions: metrics::Counter,
}

/// Proof of holding the lease, handed to the work.
#[derive(Debug, Clone)]
pub struct LeaderToken {
    /// Fencing epoch of this tenure.
    pub epoch: i64,
    /// Cancelled when the lease is lost or the process shuts down.
    pub lost: CancellationToken,
}

impl Lease {
    /// Lease `name` for `holder` (unique per process), valid `ttl` per renewal.
    pub fn new(database: &Database, name: &str, holder: &str, ttl: Duration) -> Self {
        Self {
            collection: database.collection(COLLECTION),
            name: name.to_owned(),
            holder: holder.to_owned(),
            ttl,
            held: metrics::gauge!("palm_lease_held", "lease" => name.to_owned()),
            acquisitions: metrics::counter!("palm_lease_acquisitions_total", "lease" => name.to_owned()),
        }
    }

    /// The lease's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// How long one acquisition or renewal is valid.
    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// Who this handle acquires as.
    pub fn holder(&self) -> &str {
        &self.holder
    }

    /// Acquires or renews. Returns the epoch while held, `None` when another
    /// holder has it.
    #[tracing::instrument(skip(self), fields(lease = %self.name, holder = %self.holder))]
    pub async fn try_acquire(&self) -> mongodb::error::Result<Option<i64>> {
        let now = DateTime::now();
        let ttl_ms = i64::try_from(self.ttl.as_millis()).unwrap_or(i64::MAX);
        let expires_at = DateTime::from_millis(now.timestamp_millis().saturating_add(ttl_ms));

        let renewed = self
            .collection
            .find_one_and_update(
                doc! { "_id": &self.name, "holder": &self.holder },
                doc! { "$set": { "expires_at": expires_at } },
            )
            .return_document(ReturnDocument::After)
            .await?;
        if let Some(lease) = renewed {
            return Ok(crate::integer(&lease, "epoch"));
        }

        let taken = self
            .collection
            .find_one_and_update(
                doc! { "_id": &self.name, "expires_at": { "$lt": now } },
                doc! { "$set": { "holder": &self.holder, "expires_at": expires_at }, "$inc": { "epoch": 1_i64 } },
            )
            .return_document(ReturnDocument::After)
            .await?;
        if let Some(lease) = taken {
            let epoch = crate::integer(&lease, "epoch");
            tracing::info!(?epoch, "lease taken over");
            return Ok(epoch);
        }

        let created = self
            .collection
            .insert_one(doc! { "_id": &self.name, "holder": &self.holder, "epoch": 1_i64, "expires_at": expires_at })
            .await;
        match created {
            Ok(_) => {
                tracing::info!(epoch = 1, "lease created");
                Ok(Some(1))
            }
            Err(error) if is_duplicate_key(&error) => Ok(None),
            Err(error) => Err(error),
        }
    }

    /// Whether `epoch` is still the current tenure of this holder.
    pub async fn is_current(&self, epoch: i64) -> mongodb::error::Result<bool> {
        let found = self
            .collection
            .find_one(doc! { "_id": &self.name, "holder": &self.holder, "epoch": epoch, "expires_at": { "$gt": DateTime::now() } })
            .await?;
        Ok(found.is_some())
    }

    /// Gives the lease up (expires it now) so a standby takes over at once.
    /// The epoch is kept: fencing needs it to only ever grow.
    pub async fn release(&self) -> mongodb::error::Result<()> {
        self.collection
            .update_one(
                doc! { "_id": &self.name, "holder": &self.holder },
                doc! { "$set": { "expires_at": DateTime::from_millis(0) } },
            )
            .await?;
        Ok(())
    }
}

/// Runs `work` whenever this instance holds `lease`, until `shutdown`.
///
/// The lease is renewed every `ttl / 3`; `work` gets a [`LeaderToken`] whose
/// `lost` token is cancelled when a renewal fails past the lease's validity,
/// or on shutdown, and must then return promptly. Between tenures the
/// instance stands by, trying to acquire every `ttl / 3`.
pub async fn while_leader<F, Fut>(lease: &Lease, shutdown: &CancellationToken, mut work: F)
where
    F: FnMut(LeaderToken) -> Fut,
    Fut: Future<Output = ()>,
{
    let every = (lease.ttl / 3).max(Duration::from_millis(50));
    while !shutdown.is_cancelled() {
        let sent = Instant::now();
        match lease.try_acquire().await {
            Ok(Some(epoch)) => {
                lease.held.set(1.0);
                lease.acquisitions.increment(1);
                tracing::info!(lease = %lease.name, epoch, "lease held, work starts");
                let lost = shutdown.child_token();
                // Renewal runs inside this future, not as a detached task, so
                // it can never outlive the work it protects.
                let working = async {
                    work(LeaderToken {
                        epoch,
                        lost: lost.clone(),
                    })
                    .await;
                    lost.cancel();
                };
                tokio::join!(
                    working,
                    keep_renewed(lease.clone(), every, sent, lost.clone())
                );
                lease.held.set(0.0);
                tracing::info!(lease = %lease.name, epoch, "lease no longer held, work stopped");
                if shutdown.is_cancelled() {
                    // Bounded: if MongoDB is unreachable the lease simply
                    // expires and the standby takes over after its TTL.
                    match tokio::time::timeout(Duration::from_secs(3), lease.release()).await {
                        Ok(Ok(())) => {}
                        Ok(Err(error)) => tracing::warn!(%error, "could not release the lease"),
                        Err(_) => tracing::warn!("releasing the lease timed out"),
                    }
                    return;
                }
            }
            Ok(None) => {}
            Err(error) => tracing::warn!(%error, "lease acquisition failed"),
        }
        tokio::select! {
            () = tokio::time::sleep(every) => {}
            () = shutdown.cancelled() => return,
        }
    }
}

/// Renews every `every` until `lost`; cancels `lost` when the lease is taken
/// by another holder, or when its validity runs out without a successful
/// renewal. Validity counts from when a renewal was *sent*, and a timer fires
/// at expiry even while a renewal is still waiting on MongoDB, so this holder
/// stops no later than a standby may take over (given clocks kept in sync).
async fn keep_renewed(
    lease: Lease,
    every: Duration,
    acquired_at: Instant,
    lost: CancellationToken,
) {
    let mut valid_until = acquired_at + lease.ttl;
    loop {
        let expiry = tokio::time::sleep_until(valid_until.into());
        tokio::select! {
            () = tokio::time::sleep(every) => {}
            () = expiry => {
                tracing::warn!(holder = %lease.holder, "lease expired before it could be renewed");
                lost.cancel();
                return;
            }
            () = lost.cancelled() => return,
        }
        let sent = Instant::now();
        let expiry = tokio::time::sleep_until(valid_until.into());
        let renewal = tokio::select! {
            renewal = lease.try_acquire() => renewal,
            () = expiry => {
                tracing::warn!(holder = %lease.holder, "lease expired while renewing");
                lost.cancel();
                return;
            }
            () = lost.cancelled() => return,
        };
        match renewal {
            Ok(Some(_)) => valid_until = sent + lease.ttl,
            Ok(None) => {
                tracing::warn!(holder = %lease.holder, "lease lost to another holder");
                lost.cancel();
                return;
            }
            Err(error) => tracing::warn!(%error, "lease renewal failed, retrying"),
        }
    }
}
