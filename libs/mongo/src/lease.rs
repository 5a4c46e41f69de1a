//! Named leases for "one instance at a time" work (the outbox relay, the
//! proposal scheduler), with a fencing epoch.
//!
//! A lease document `{_id: name, holder, epoch, expires_at}` is changed by
//! single-document atomic updates only: renew if we hold it, take it over if
//! it expired (the epoch increases), or create it. The epoch never decreases,
//! so work stamped with an epoch can be refused once a newer holder exists.
//!
//! **One clock.** `expires_at` is written and judged on the database's clock
//! (`$$NOW` in update pipelines and `$expr`), never on the replica's: two
//! replicas whose clocks differ cannot both see the lease as theirs. The
//! holder's own deadline is counted on its monotonic clock from when a
//! renewal was *sent*, which is never later than the database's expiry, so
//! the holder stops no later than a standby may take over. (See ADR 0023.)
//!
//! Metrics (registered at zero when the lease handle is built):
//! `palm_lease_held{lease}` is 1 while [`while_leader`] runs work under it,
//! `palm_lease_acquisitions_total{lease}` counts this process's tenures
//! (each one a holder change), so a lease that flaps shows in both.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use mongodb::bson::{DateTime, Document, doc};
use mongodb::options::ReturnDocument;
use mongodb::{Collection, Database};
use tokio_util::sync::CancellationToken;

use crate::is_duplicate_key;

/// Collection name.
pub const COLLECTION: &str = "leases";

/// How often a standby tries to take a lease over, unless told otherwise: a
/// released lease is taken within this pause, not on the next `ttl / 3`.
/// One attempt is a single findAndModify on `_id` that matches nothing while
/// the lease is healthy.
pub const DEFAULT_STANDBY_POLL: Duration = Duration::from_millis(250);

/// One named lease as seen by one holder.
#[derive(Debug, Clone)]
pub struct Lease {
    collection: Collection<Document>,
    name: String,
    holder: String,
    ttl: Duration,
    standby_poll: Duration,
    /// The lease document is known to exist, so a standby need not try to
    /// create it on every poll.
    exists: Arc<AtomicBool>,
    held: metrics::Gauge,
    acquisitions: metrics::Counter,
}

/// Proof of holding the lease, handed to the work.
#[derive(Debug, Clone)]
pub struct LeaderToken {
    /// Fencing epoch of this tenure.
    pub epoch: i64,
    /// Cancelled when the lease is lost or the process shuts down: stop at
    /// the next safe point.
    pub lost: CancellationToken,
    /// Cancelled only when the lease is lost (it expired before a renewal
    /// got through, or another holder has it): another instance may be
    /// working already, so stop *now*, even halfway.
    pub revoked: CancellationToken,
    /// Cancelled when the process starts shutting down. The lease stays held
    /// and renewed until the work returns, so work that must not be cut off
    /// halfway (the outbox relay's pass) finishes it, then returns; the lease
    /// is released right after.
    pub stopping: CancellationToken,
}

impl Lease {
    /// Lease `name` for `holder` (unique per process), valid `ttl` per renewal.
    pub fn new(database: &Database, name: &str, holder: &str, ttl: Duration) -> Self {
        Self {
            collection: database.collection(COLLECTION),
            name: name.to_owned(),
            holder: holder.to_owned(),
            ttl,
            standby_poll: DEFAULT_STANDBY_POLL.min(ttl / 3),
            exists: Arc::new(AtomicBool::new(false)),
            held: metrics::gauge!("palm_lease_held", "lease" => name.to_owned()),
            acquisitions: metrics::counter!("palm_lease_acquisitions_total", "lease" => name.to_owned()),
        }
    }

    /// How often a standby tries to take the lease over (default
    /// [`DEFAULT_STANDBY_POLL`], at most `ttl / 3`).
    pub fn with_standby_poll(mut self, poll: Duration) -> Self {
        self.standby_poll = poll.max(Duration::from_millis(10));
        self
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

    /// The new expiry, on the database's clock: `$$NOW + ttl`.
    fn expiry(&self) -> Document {
        let ttl_ms = i64::try_from(self.ttl.as_millis()).unwrap_or(i64::MAX);
        doc! { "$add": ["$$NOW", ttl_ms] }
    }

    /// Acquires or renews. Returns the epoch while held, `None` when another
    /// holder has it.
    #[tracing::instrument(skip(self), fields(lease = %self.name, holder = %self.holder))]
    pub async fn try_acquire(&self) -> mongodb::error::Result<Option<i64>> {
        if let Some(epoch) = self.renew(None).await? {
            return Ok(Some(epoch));
        }
        self.take_over().await
    }

    /// Extends this holder's tenure (`epoch`, when given, must still be the
    /// current one). `None` when this holder no longer has the lease.
    async fn renew(&self, epoch: Option<i64>) -> mongodb::error::Result<Option<i64>> {
        let mut filter = doc! { "_id": &self.name, "holder": &self.holder };
        if let Some(epoch) = epoch {
            filter.insert("epoch", epoch);
        }
        let renewed = self
            .collection
            .find_one_and_update(
                filter,
                vec![doc! { "$set": { "expires_at": self.expiry() } }],
            )
            .return_document(ReturnDocument::After)
            .await?;
        Ok(renewed.and_then(|lease| crate::integer(&lease, "epoch")))
    }

    /// Takes the lease if it expired on the database's clock, creating it
    /// (already expired, epoch 0) the first time. `None` while another
    /// holder's tenure runs.
    async fn take_over(&self) -> mongodb::error::Result<Option<i64>> {
        for _ in 0..2 {
            let taken = self
                .collection
                .find_one_and_update(
                    doc! { "_id": &self.name, "$expr": { "$lt": ["$expires_at", "$$NOW"] } },
                    vec![doc! { "$set": {
                        "holder": &self.holder,
                        "expires_at": self.expiry(),
                        "epoch": { "$add": ["$epoch", 1_i64] },
                    } }],
                )
                .return_document(ReturnDocument::After)
                .await?;
            if let Some(lease) = taken {
                self.exists.store(true, Ordering::Relaxed);
                let epoch = crate::integer(&lease, "epoch");
                tracing::info!(lease = %self.name, ?epoch, "lease taken over");
                return Ok(epoch);
            }
            if self.exists.load(Ordering::Relaxed) {
                return Ok(None);
            }
            // Created expired, so that even the first tenure's expiry is
            // written by the database; the takeover above then claims it.
            let created = self
                .collection
                .insert_one(doc! {
                    "_id": &self.name,
                    "holder": "",
                    "epoch": 0_i64,
                    "expires_at": DateTime::from_millis(0),
                })
                .await;
            match created {
                Ok(_) => {}
                Err(error) if is_duplicate_key(&error) => {}
                Err(error) => return Err(error),
            }
            self.exists.store(true, Ordering::Relaxed);
        }
        Ok(None)
    }

    /// Whether `epoch` is still the current tenure of this holder, judged on
    /// the database's clock.
    pub async fn is_current(&self, epoch: i64) -> mongodb::error::Result<bool> {
        let found = self
            .collection
            .find_one(doc! {
                "_id": &self.name,
                "holder": &self.holder,
                "epoch": epoch,
                "$expr": { "$gt": ["$expires_at", "$$NOW"] },
            })
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
/// The lease is renewed every `ttl / 3` for as long as `work` runs. `work`
/// gets a [`LeaderToken`]: `revoked` is cancelled when a renewal fails past
/// the lease's validity (stop at once), `stopping` on shutdown (finish what
/// was started, then return), `lost` on either. Once `work` returned after
/// a shutdown, the lease is released so a standby takes over within its
/// standby poll. Between tenures the instance stands by, trying to take the
/// lease over every standby poll ([`Lease::with_standby_poll`]).
pub async fn while_leader<F, Fut>(lease: &Lease, shutdown: &CancellationToken, mut work: F)
where
    F: FnMut(LeaderToken) -> Fut,
    Fut: Future<Output = ()>,
{
    let every = (lease.ttl / 3).max(Duration::from_millis(50));
    let mut failing = false;
    while !shutdown.is_cancelled() {
        let sent = Instant::now();
        let acquired = if failing {
            lease.try_acquire().await
        } else {
            lease.take_over().await
        };
        let pause = match acquired {
            Ok(Some(epoch)) => {
                failing = false;
                lease.held.set(1.0);
                lease.acquisitions.increment(1);
                tracing::info!(lease = %lease.name, epoch, "lease held, work starts");
                let revoked = CancellationToken::new();
                let lost = shutdown.child_token();
                let done = CancellationToken::new();
                let token = LeaderToken {
                    epoch,
                    lost: lost.clone(),
                    revoked: revoked.clone(),
                    stopping: shutdown.child_token(),
                };
                // Renewal runs inside this future, not as a detached task, so
                // it can never outlive the work it protects; it goes on while
                // a stopping work finishes.
                let working = async {
                    work(token).await;
                    done.cancel();
                };
                let renewing = async {
                    keep_renewed(lease.clone(), every, sent, epoch, &done).await;
                    revoked.cancel();
                    lost.cancel();
                };
                tokio::join!(working, renewing);
                lease.held.set(0.0);
                tracing::info!(lease = %lease.name, epoch, "lease no longer held, work stopped");
                if shutdown.is_cancelled() {
                    // Bounded: if MongoDB is unreachable the lease simply
                    // expires and the standby takes over after its TTL.
                    match tokio::time::timeout(Duration::from_secs(3), lease.release()).await {
                        Ok(Ok(())) => tracing::info!(lease = %lease.name, epoch, "lease released"),
                        Ok(Err(error)) => {
                            tracing::warn!(lease = %lease.name, %error, "lease release failed")
                        }
                        Err(_) => tracing::warn!(lease = %lease.name, "lease release timed out"),
                    }
                    return;
                }
                lease.standby_poll
            }
            Ok(None) => lease.standby_poll,
            Err(error) => {
                // Renewal may have failed on our own tenure: try renewing
                // too on the next attempt. Back off to the renewal period.
                if !failing {
                    tracing::warn!(lease = %lease.name, %error, "lease acquisition failed");
                }
                failing = true;
                every
            }
        };
        tokio::select! {
            () = tokio::time::sleep(pause) => {}
            () = shutdown.cancelled() => return,
        }
    }
}

/// Renews every `every` until `done`; returns early (the lease is lost)
/// when another holder has it, or when its validity runs out without a
/// successful renewal. Validity counts from when a renewal was *sent*, and a
/// timer fires at expiry even while a renewal is still waiting on MongoDB, so
/// this holder stops no later than the database's clock lets a standby take
/// over.
async fn keep_renewed(
    lease: Lease,
    every: Duration,
    acquired_at: Instant,
    epoch: i64,
    done: &CancellationToken,
) {
    let mut valid_until = acquired_at + lease.ttl;
    loop {
        let expiry = tokio::time::sleep_until(valid_until.into());
        tokio::select! {
            () = tokio::time::sleep(every) => {}
            () = expiry => {
                tracing::warn!(lease = %lease.name, epoch, "lease expired before it could be renewed");
                return;
            }
            () = done.cancelled() => return,
        }
        let sent = Instant::now();
        let expiry = tokio::time::sleep_until(valid_until.into());
        let renewal = tokio::select! {
            renewal = lease.renew(Some(epoch)) => renewal,
            () = expiry => {
                tracing::warn!(lease = %lease.name, epoch, "lease expired while renewing");
                return;
            }
            () = done.cancelled() => return,
        };
        match renewal {
            Ok(Some(_)) => valid_until = sent + lease.ttl,
            Ok(None) => {
                tracing::warn!(lease = %lease.name, epoch, "lease lost to another holder");
                return;
            }
            Err(error) => {
                tracing::warn!(lease = %lease.name, %error, "lease renewal failed, retrying")
            }
        }
    }
}
