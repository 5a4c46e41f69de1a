//! The snapshot on `/metrics`: storing it (the lease holder), reading it
//! (every replica), and turning it into gauges.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use palm_mongo::mongodb::bson::{self, DateTime, Document, doc};
use palm_mongo::mongodb::options::{CollectionOptions, ReadPreference, SelectionCriteria};
use palm_mongo::mongodb::{Collection, Database};
use palm_service::metrics;
use tokio_util::sync::CancellationToken;

use crate::aggregations;
use crate::snapshot::{self, Snapshot};

/// Extra time a whole refresh may take beyond one aggregation's
/// `maxTimeMS` (server selection, the network) before it counts as failed.
const REFRESH_SLACK: Duration = Duration::from_secs(5);

type SeriesKey = (&'static str, Vec<(&'static str, String)>);

/// Shows the latest snapshot on `/metrics`. Cheap to clone.
#[derive(Clone)]
pub struct Exporter {
    inner: Arc<Inner>,
}

struct Inner {
    database: Database,
    /// Snapshots, read from the primary: every replica must see the
    /// snapshot just written, whatever the lag of a secondary.
    snapshots: Collection<Document>,
    current: Mutex<Option<Snapshot>>,
    shown: Mutex<BTreeSet<SeriesKey>>,
    refreshes_ok: metrics::Counter,
    refreshes_failed: metrics::Counter,
}

impl std::fmt::Debug for Exporter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Exporter").finish_non_exhaustive()
    }
}

impl Exporter {
    /// An exporter on `database`, with its scrape-time age gauge registered.
    pub fn new(database: Database) -> Self {
        let snapshots = database.collection_with_options(
            snapshot::COLLECTION,
            CollectionOptions::builder()
                .selection_criteria(SelectionCriteria::ReadPreference(ReadPreference::Primary))
                .build(),
        );
        let refreshes = |outcome: &'static str| metrics::counter!("palm_platform_snapshot_refreshes_total", "outcome" => outcome);
        let exporter = Self {
            inner: Arc::new(Inner {
                database,
                snapshots,
                current: Mutex::new(None),
                shown: Mutex::new(BTreeSet::new()),
                refreshes_ok: refreshes("ok"),
                refreshes_failed: refreshes("error"),
            }),
        };
        let weak = Arc::downgrade(&exporter.inner);
        palm_service::prometheus::on_scrape(move || {
            let Some(inner) = weak.upgrade() else {
                return;
            };
            let age = inner.current.lock().ok().and_then(|current| {
                current
                    .as_ref()
                    .map(|s| s.age_seconds(DateTime::now().timestamp_millis()))
            });
            if let Some(age) = age {
                metrics::gauge!("palm_platform_snapshot_age_seconds").set(age);
            }
        });
        exporter
    }

    /// The snapshot shown now, if any.
    pub fn current(&self) -> Option<Snapshot> {
        self.inner.current.lock().ok().and_then(|c| c.clone())
    }

    /// Runs the aggregations, stores the snapshot and shows it; on failure
    /// the previous snapshot stays (its age grows).
    #[tracing::instrument(skip_all)]
    pub async fn refresh(&self, max_time: Duration) {
        let refreshed = tokio::time::timeout(
            max_time + REFRESH_SLACK,
            aggregations::refresh(&self.inner.database, max_time),
        )
        .await;
        let snapshot = match refreshed {
            Ok(Ok(snapshot)) => snapshot,
            Ok(Err(error)) => {
                self.inner.refreshes_failed.increment(1);
                tracing::warn!(%error, "platform snapshot refresh failed; the previous one stays");
                return;
            }
            Err(_) => {
                self.inner.refreshes_failed.increment(1);
                tracing::warn!(
                    ?max_time,
                    "platform snapshot refresh timed out; the previous one stays"
                );
                return;
            }
        };
        if let Err(error) = self.store(&snapshot).await {
            self.inner.refreshes_failed.increment(1);
            tracing::warn!(%error, "could not store the platform snapshot");
            return;
        }
        self.inner.refreshes_ok.increment(1);
        tracing::info!(
            seconds = snapshot.refresh_seconds,
            "platform snapshot refreshed"
        );
        self.show(snapshot);
    }

    /// Replaces the stored snapshot unless a newer one is there already (a
    /// former holder finishing late must not go back in time).
    async fn store(&self, snapshot: &Snapshot) -> palm_mongo::mongodb::error::Result<()> {
        let fields = bson::to_document(snapshot)?;
        let replaced = self
            .inner
            .snapshots
            .update_one(
                doc! { "_id": snapshot::LATEST, "taken_at": { "$lt": snapshot.taken_at } },
                doc! { "$set": fields.clone() },
            )
            .await?;
        if replaced.matched_count == 1 {
            return Ok(());
        }
        let mut document = doc! { "_id": snapshot::LATEST };
        document.extend(fields);
        match self.inner.snapshots.insert_one(document).await {
            Ok(_) => Ok(()),
            // The document exists and is newer: keep it.
            Err(error) if palm_mongo::is_duplicate_key(&error) => Ok(()),
            Err(error) => Err(error),
        }
    }

    /// Reads the stored snapshot and shows it if it is newer than the one
    /// shown.
    #[tracing::instrument(skip_all)]
    pub async fn load(&self) -> palm_mongo::mongodb::error::Result<()> {
        let Some(document) = self
            .inner
            .snapshots
            .find_one(doc! { "_id": snapshot::LATEST })
            .await?
        else {
            return Ok(());
        };
        let snapshot: Snapshot = bson::from_document(document)?;
        let newer = self
            .current()
            .is_none_or(|current| current.taken_at < snapshot.taken_at);
        if newer {
            self.show(snapshot);
        }
        Ok(())
    }

    /// Reads the stored snapshot now and then every `interval`, until
    /// `shutdown`.
    pub async fn follow(&self, interval: Duration, shutdown: CancellationToken) {
        while !shutdown.is_cancelled() {
            if let Err(error) = self.load().await {
                tracing::warn!(%error, "could not read the platform snapshot");
            }
            tokio::select! {
                () = tokio::time::sleep(interval) => {}
                () = shutdown.cancelled() => {}
            }
        }
    }

    /// Sets the gauges to `snapshot`; a series shown before and absent now
    /// goes to 0 rather than keeping a stale value.
    fn show(&self, snapshot: Snapshot) {
        let series = snapshot.series(palmdao::OUTBOX_COLLECTIONS);
        let mut now_shown = BTreeSet::new();
        for one in series {
            metrics::gauge!(one.name, &one.labels).set(one.value);
            now_shown.insert((one.name, one.labels));
        }
        if let Ok(mut shown) = self.inner.shown.lock() {
            for (name, labels) in shown.difference(&now_shown) {
                metrics::gauge!(*name, labels).set(0.0);
            }
            shown.extend(now_shown);
        }
        metrics::gauge!("palm_platform_snapshot_age_seconds")
            .set(snapshot.age_seconds(DateTime::now().timestamp_millis()));
        if let Ok(mut current) = self.inner.current.lock() {
            *current = Some(snapshot);
        }
    }
}
