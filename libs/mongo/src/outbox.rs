//! The transactional outbox, kept inside the domain document.
//!
//! A domain change and the events it causes are written in one
//! single-document atomic write: the events ride in the changed document's
//! `_outbox` array, and `_outbox_since` marks the document as having
//! unpublished events (see `docs/adr/0002-outbox-inside-the-document.md` for
//! why not a separate collection with transactions). The [`OutboxRelay`]
//! finds such documents in the collections it is told about, publishes each
//! record through the confirmed publisher, and pulls it from the array once
//! confirmed. Only the lease holder relays, so records are not published
//! twice by design; a relay that dies between confirm and pull republishes on
//! the next pass, which consumers absorb by deduplicating on the event id. A
//! relay that is *stopped* finishes and marks the pass it started before it
//! releases the lease, so a graceful handover publishes nothing twice.
//!
//! An event that a service of the suite must receive (its routing key matches
//! one of [`OutboxRelay::with_required_routes`]) is never settled while no
//! queue takes it: it stays in the document, which is set aside for a short,
//! growing pause (`_outbox_retry_at`, so it holds up no other document), and
//! is published again until a queue takes it. While it waits it shows in
//! `palm_outbox_waiting_for_route{routing_key}` (records) and
//! `palm_outbox_waiting_for_route_seconds{routing_key}` (the oldest one's
//! age). Any other event nobody subscribes to is settled and counted in
//! `palm_outbox_unrouted_total{routing_key}`: normal in publish/subscribe.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::stream::FuturesUnordered;
use futures_util::{StreamExt, TryStreamExt};
use mongodb::bson::{self, Bson, DateTime, Document, doc};
use mongodb::options::IndexOptions;
use mongodb::{Database, IndexModel};
use palm_amqp::{OutgoingMessage, PublishError, Publisher, topology};
use palm_core::{Envelope, Event};
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::audit::AuditLog;
use crate::lease::{self, Lease};

/// Array of pending records inside a domain document.
pub const OUTBOX_FIELD: &str = "_outbox";
/// A record's `id` inside [`OUTBOX_FIELD`], as a query path.
const OUTBOX_ID_PATH: &str = "_outbox.id";
/// Creation time of the oldest pending record; absent when none is pending.
pub const SINCE_FIELD: &str = "_outbox_since";
/// Records that could not be read, set aside for an operator.
pub const DEAD_FIELD: &str = "_outbox_dead";
/// When a document whose events are waiting for a route is read again.
pub const RETRY_AT_FIELD: &str = "_outbox_retry_at";
/// How many passes found no route for one of the document's events.
pub const RETRIES_FIELD: &str = "_outbox_retries";

/// First pause before an unroutable required event is published again; it
/// doubles with every attempt up to [`ROUTE_RETRY_MAX`].
pub const ROUTE_RETRY_MIN: Duration = Duration::from_millis(250);
/// Longest pause between attempts to route a required event.
pub const ROUTE_RETRY_MAX: Duration = Duration::from_secs(5);

/// One event waiting to be published.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OutboxRecord {
    /// Event id; the AMQP `message_id`.
    pub id: String,
    /// Routing key (the event type).
    pub routing_key: String,
    /// The serialized envelope, published byte for byte.
    pub body: String,
    /// When the record was staged.
    pub created_at: DateTime,
    /// What the event concerns (`palm_id:<id>`, `community:<id>`), for the
    /// audit log's per-subject listings.
    #[serde(default)]
    pub subjects: Vec<String>,
}

impl OutboxRecord {
    /// A record for `envelope`.
    pub fn from_envelope<P: Event>(envelope: &Envelope<P>) -> Self {
        Self {
            id: envelope.id.to_string(),
            routing_key: envelope.event_type.clone(),
            body: String::from_utf8_lossy(&envelope.to_json()).into_owned(),
            created_at: DateTime::now(),
            subjects: Vec::new(),
        }
    }

    /// The same record, naming what it concerns for the audit log.
    pub fn concerning<S: Into<String>>(mut self, subjects: impl IntoIterator<Item = S>) -> Self {
        self.subjects.extend(subjects.into_iter().map(Into::into));
        self
    }

    fn to_bson(&self) -> Bson {
        Bson::Document(doc! {
            "id": &self.id,
            "routing_key": &self.routing_key,
            "body": &self.body,
            "created_at": self.created_at,
            "subjects": &self.subjects,
        })
    }
}

/// Adds `records` to a document about to be inserted.
pub fn attach(document: &mut Document, records: &[OutboxRecord]) {
    let Some(oldest) = records.iter().map(|r| r.created_at).min() else {
        return;
    };
    document.insert(
        OUTBOX_FIELD,
        records
            .iter()
            .map(OutboxRecord::to_bson)
            .collect::<Vec<_>>(),
    );
    document.insert(SINCE_FIELD, oldest);
}

/// Update operators that stage `records` on an existing document; merge them
/// with the domain change's own operators into one `update_one`.
pub fn stage(update: &mut Document, records: &[OutboxRecord]) {
    let Some(oldest) = records.iter().map(|r| r.created_at).min() else {
        return;
    };
    let each: Vec<Bson> = records.iter().map(OutboxRecord::to_bson).collect();
    merge_operator(update, "$push", doc! { OUTBOX_FIELD: { "$each": each } });
    merge_operator(update, "$min", doc! { SINCE_FIELD: oldest });
}

/// The records still waiting in `document` (read back from `_outbox`), so
/// a domain change that deletes the document can stage them on another in
/// the same step as its own event: deleting a document must not delete
/// events the relay has not published yet.
pub fn pending_records(document: &Document) -> Vec<OutboxRecord> {
    document
        .get_array(OUTBOX_FIELD)
        .map(|records| {
            records
                .iter()
                .filter_map(|record| bson::from_bson(record.clone()).ok())
                .collect()
        })
        .unwrap_or_default()
}

fn merge_operator(update: &mut Document, operator: &str, fields: Document) {
    match update.get_document_mut(operator) {
        Ok(existing) => existing.extend(fields),
        Err(_) => {
            update.insert(operator, fields);
        }
    }
}

/// Name of [`index`].
pub const INDEX_NAME: &str = "outbox_pending";

/// The index the relay scans by; declare it on every outbox collection.
pub fn index() -> IndexModel {
    IndexModel::builder()
        .keys(doc! { SINCE_FIELD: 1 })
        .options(
            IndexOptions::builder()
                .sparse(true)
                .name(INDEX_NAME.to_owned())
                .build(),
        )
        .build()
}

/// Relay failure.
#[derive(Debug, thiserror::Error)]
pub enum OutboxError {
    /// Reading or marking records failed.
    #[error(transparent)]
    Mongo(#[from] mongodb::error::Error),
    /// The server refused to mark published records (its reply).
    #[error("marking published outbox records failed: {0}")]
    Marking(String),
}

/// Publishes staged records from the given collections.
#[derive(Debug, Clone)]
pub struct OutboxRelay {
    database: Database,
    collections: Vec<String>,
    publisher: Publisher,
    exchange: String,
    batch_size: i64,
    poll_interval: Duration,
    drain_timeout: Duration,
    audit: Option<AuditLog>,
    required_routes: Vec<String>,
    waiting: Arc<Mutex<Waiting>>,
    /// The prompt path's receiving end, taken by [`OutboxRelay::run`].
    prompted: Arc<Mutex<Option<mpsc::Receiver<Staged>>>>,
    /// With a prompt path: how old a document's oldest record must be
    /// before the sweeper takes it.
    prompt_grace: Option<Duration>,
}

/// One publish of a pass: the document's index in the batch, the record's
/// id, routing key and staging time, and what the broker said.
type PublishOutcome = (usize, String, String, DateTime, Result<(), PublishError>);

/// Records this relay found no route for, by record id: routing key and
/// when the record was staged.
#[derive(Debug, Default)]
struct Waiting {
    records: HashMap<String, (String, DateTime)>,
    /// Every routing key that has a gauge, so one that empties reads 0.
    keys: Vec<String>,
}

impl Waiting {
    fn key(&mut self, routing_key: &str) {
        if !self.keys.iter().any(|k| k == routing_key) {
            self.keys.push(routing_key.to_owned());
        }
    }

    /// Sets the gauges; returns the oldest waiting record's age in seconds.
    fn report(&self, now_ms: i64) -> f64 {
        let mut oldest_overall = 0.0_f64;
        for key in &self.keys {
            let mut count = 0_u32;
            let mut oldest: Option<i64> = None;
            for (routing_key, created_at) in self.records.values() {
                if routing_key == key {
                    count += 1;
                    let ms = created_at.timestamp_millis();
                    oldest = Some(oldest.map_or(ms, |o| o.min(ms)));
                }
            }
            let age = oldest.map_or(0.0, |o| (now_ms - o).max(0) as f64 / 1000.0);
            oldest_overall = oldest_overall.max(age);
            metrics::gauge!("palm_outbox_waiting_for_route", "routing_key" => key.clone())
                .set(f64::from(count));
            metrics::gauge!("palm_outbox_waiting_for_route_seconds", "routing_key" => key.clone())
                .set(age);
        }
        oldest_overall
    }
}

impl OutboxRelay {
    /// A relay over `collections` publishing to the broker's events exchange.
    pub fn new(database: Database, collections: &[&str], publisher: Publisher) -> Self {
        let exchange = publisher.broker().names().events_exchange();
        // Present (at 0) on every replica, the standbys too.
        let _ = metrics::gauge!("palm_outbox_lag_seconds");
        let _ = metrics::counter!("palm_outbox_published_total");
        Self {
            database,
            collections: collections.iter().map(|c| (*c).to_owned()).collect(),
            publisher,
            exchange,
            batch_size: 256,
            poll_interval: Duration::from_millis(200),
            drain_timeout: Duration::from_secs(10),
            audit: None,
            required_routes: Vec::new(),
            waiting: Arc::default(),
            prompted: Arc::default(),
            prompt_grace: None,
        }
    }

    /// Turns the prompt path on: returns the [`Prompt`] handle writers call
    /// after a write that staged records. `capacity` bounds what may wait
    /// in memory (a full channel leaves the records to the sweeper);
    /// `grace` is how long the sweeper leaves a record to the prompt path
    /// (keep it well above a publish's round trip: a record the prompt path
    /// is still publishing when the sweeper takes it is published twice).
    pub fn with_prompt(mut self, capacity: usize, grace: Duration) -> (Self, Prompt) {
        let _ = metrics::counter!("palm_outbox_prompt_dropped_total");
        let (sender, receiver) = mpsc::channel(capacity.max(1));
        self.prompted = Arc::new(Mutex::new(Some(receiver)));
        self.prompt_grace = Some(grace);
        (
            self,
            Prompt {
                sender: Some(sender),
            },
        )
    }

    /// Routing-key patterns (AMQP topic syntax: `*` one word, `#` any) of
    /// the events a service of the suite must receive: such an event is
    /// never settled unrouted, it waits in the outbox until a queue takes
    /// it. The gauges of the patterns without wildcards exist from now on,
    /// at zero.
    pub fn with_required_routes<S: AsRef<str>>(mut self, patterns: &[S]) -> Self {
        self.required_routes = patterns.iter().map(|p| p.as_ref().to_owned()).collect();
        if let Ok(mut waiting) = self.waiting.lock() {
            for pattern in &self.required_routes {
                if !pattern.split('.').any(|word| word == "*" || word == "#") {
                    waiting.key(pattern);
                }
            }
            waiting.report(0);
        }
        self
    }

    /// Longest a stopping relay spends finishing the pass it started before
    /// it gives up the lease anyway (keep it under the shutdown grace period).
    pub fn with_drain_timeout(mut self, drain_timeout: Duration) -> Self {
        self.drain_timeout = drain_timeout;
        self
    }

    fn is_required(&self, routing_key: &str) -> bool {
        self.required_routes
            .iter()
            .any(|pattern| topology::topic_matches(pattern, routing_key))
    }

    /// Documents read per collection per pass.
    pub fn with_batch_size(mut self, batch_size: i64) -> Self {
        self.batch_size = batch_size.max(1);
        self
    }

    /// Copies every record into `audit` before publishing it.
    pub fn with_audit(mut self, audit: AuditLog) -> Self {
        self.audit = Some(audit);
        self
    }

    /// Pause between passes that found nothing to do.
    pub fn with_poll_interval(mut self, poll_interval: Duration) -> Self {
        self.poll_interval = poll_interval;
        self
    }

    /// One pass: publishes up to a batch of documents' records per collection
    /// and marks the confirmed ones. Returns how many records were published.
    /// The lag gauge comes from the same reads: each batch is sorted oldest
    /// first, so its head is that collection's oldest pending record.
    #[tracing::instrument(skip_all)]
    pub async fn relay_once(&self) -> Result<usize, OutboxError> {
        let mut published = 0;
        let mut oldest: Option<DateTime> = None;
        for name in &self.collections {
            let (count, since) = self.relay_collection(name).await?;
            published += count;
            oldest = match (oldest, since) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
        }
        let now = DateTime::now().timestamp_millis();
        let lag = oldest.map_or(0.0, |o| (now - o.timestamp_millis()).max(0) as f64 / 1000.0);
        // Events set aside to wait for a route are unpublished too.
        let waiting = self.waiting.lock().map_or(0.0, |w| w.report(now));
        metrics::gauge!("palm_outbox_lag_seconds").set(lag.max(waiting));
        metrics::counter!("palm_outbox_published_total").increment(published as u64);
        Ok(published)
    }

    /// Relays one collection's batch; returns how many records were
    /// published and the pending marker of the batch's oldest document.
    async fn relay_collection(&self, name: &str) -> Result<(usize, Option<DateTime>), OutboxError> {
        let collection = self.database.collection::<Document>(name);
        // Documents waiting for a route are read again at their retry time
        // only, so they never hold up the batch (the relay's own clock: it
        // alone writes and reads the field, and skew only shifts a retry).
        let now = DateTime::now();
        // With a prompt path, records younger than its grace are its own.
        let pending = match self.prompt_grace {
            Some(grace) => doc! { "$lte": DateTime::from_millis(
                now.timestamp_millis() - i64::try_from(grace.as_millis()).unwrap_or(i64::MAX),
            ) },
            None => doc! { "$exists": true },
        };
        let documents: Vec<Document> = collection
            .find(doc! {
                SINCE_FIELD: pending,
                "$or": [
                    { RETRY_AT_FIELD: { "$exists": false } },
                    { RETRY_AT_FIELD: { "$lte": now } },
                ],
            })
            .sort(doc! { SINCE_FIELD: 1 })
            .limit(self.batch_size)
            .projection(doc! { OUTBOX_FIELD: 1, SINCE_FIELD: 1, RETRIES_FIELD: 1 })
            .await?
            .try_collect()
            .await?;
        let oldest = documents
            .first()
            .and_then(|d| d.get_datetime(SINCE_FIELD).ok().copied());

        // Publish every record of the batch at once (the publisher pipelines
        // them under its window), then mark each document's settled ones.
        let mut outgoing = Vec::new();
        let mut staged = vec![0_usize; documents.len()];
        let mut unreadable: Vec<Vec<Bson>> = vec![Vec::new(); documents.len()];
        for (index, document) in documents.iter().enumerate() {
            let records = document
                .get_array(OUTBOX_FIELD)
                .map(|a| a.as_slice())
                .unwrap_or_default();
            staged[index] = records.len();
            for raw in records {
                let Ok(record) = bson::from_bson::<OutboxRecord>(raw.clone()) else {
                    tracing::error!(
                        collection = name,
                        "unreadable outbox record moved to _outbox_dead"
                    );
                    unreadable[index].push(raw.clone());
                    continue;
                };
                outgoing.push((index, record));
            }
        }
        let (settled, unrouted) = self.publish_all(outgoing, documents.len()).await?;

        let mut published = 0;
        let mut marks = Vec::new();
        for ((((document, ids), staged), unreadable), unrouted) in documents
            .iter()
            .zip(settled)
            .zip(staged)
            .zip(unreadable)
            .zip(unrouted)
        {
            let Some(id) = document.get("_id") else {
                continue;
            };
            if unrouted {
                // Set the document aside for a growing pause; what was
                // published of it is pulled below as usual.
                let retries = crate::integer(document, RETRIES_FIELD).unwrap_or(0);
                let pause = route_retry_pause(retries);
                let retry_at = DateTime::from_millis(
                    DateTime::now()
                        .timestamp_millis()
                        .saturating_add(i64::try_from(pause.as_millis()).unwrap_or(i64::MAX)),
                );
                collection
                    .update_one(
                        doc! { "_id": id },
                        doc! { "$set": { RETRY_AT_FIELD: retry_at }, "$inc": { RETRIES_FIELD: 1_i64 } },
                    )
                    .await?;
            }
            let set_aside = unreadable.len();
            for raw in unreadable {
                collection
                    .update_one(
                        doc! { "_id": id },
                        doc! { "$pull": { OUTBOX_FIELD: raw.clone() }, "$push": { DEAD_FIELD: raw } },
                    )
                    .await?;
            }
            published += ids.len();
            // Clear the marker once every record read is out; also when none
            // was left (a relay that died between pull and clear leaves an
            // empty array behind, or no array at all).
            let all_out = ids.len() + set_aside == staged;
            marks.push((id.clone(), ids, all_out));
        }
        mark_published(&self.database, name, marks).await?;
        Ok((published, oldest))
    }

    /// Copies `outgoing` (records by the index of their document among
    /// `documents`) to the audit log in one insert — an event is never out
    /// without its copy — then publishes them all at once (the publisher
    /// pipelines them under its window). Returns, per document, the ids
    /// settled and whether one of its events waits for a route.
    async fn publish_all(
        &self,
        outgoing: Vec<(usize, OutboxRecord)>,
        documents: usize,
    ) -> Result<(Vec<Vec<String>>, Vec<bool>), OutboxError> {
        if let Some(audit) = &self.audit {
            let records: Vec<OutboxRecord> = outgoing.iter().map(|(_, r)| r.clone()).collect();
            audit.append(&self.database, &records).await?;
        }
        let mut publishes = FuturesUnordered::new();
        for (index, record) in outgoing {
            let message = self.message(&record);
            let publisher = self.publisher.clone();
            let created_at = record.created_at;
            publishes.push(async move {
                let result = publisher.publish(&message).await;
                (
                    index,
                    message.message_id,
                    message.routing_key,
                    created_at,
                    result,
                )
            });
        }
        let mut outcomes = Vec::new();
        while let Some(outcome) = publishes.next().await {
            outcomes.push(outcome);
        }
        let mut settled: Vec<Vec<String>> = vec![Vec::new(); documents];
        let mut unrouted = vec![false; documents];
        self.settle_outcomes(outcomes, &mut settled, &mut unrouted);
        Ok((settled, unrouted))
    }

    /// Sorts each publish's outcome: settled (published, or unrouted and
    /// not required), waiting for a route, or to retry.
    fn settle_outcomes(
        &self,
        outcomes: Vec<PublishOutcome>,
        settled: &mut [Vec<String>],
        unrouted: &mut [bool],
    ) {
        let mut waiting = self.waiting.lock().unwrap_or_else(|e| e.into_inner());
        for (index, id, routing_key, created_at, result) in outcomes {
            match result {
                Ok(()) => {
                    if waiting.records.remove(&id).is_some() {
                        tracing::info!(record = %id, %routing_key, "outbox event routed after waiting");
                    }
                    settled[index].push(id);
                }
                // A queue of the suite should have taken it (deleted,
                // being migrated, not declared yet): keep it, try again.
                Err(PublishError::Unroutable { .. }) if self.is_required(&routing_key) => {
                    waiting.key(&routing_key);
                    if waiting
                        .records
                        .insert(id.clone(), (routing_key.clone(), created_at))
                        .is_none()
                    {
                        tracing::warn!(record = %id, %routing_key, "no queue took a required event, keeping it");
                    }
                    unrouted[index] = true;
                }
                // A domain event nobody subscribes to is delivered to
                // nobody, which is normal in publish/subscribe: settle it.
                Err(PublishError::Unroutable { .. }) => {
                    tracing::debug!(record = %id, %routing_key, "outbox event has no subscriber");
                    metrics::counter!("palm_outbox_unrouted_total", "routing_key" => routing_key)
                        .increment(1);
                    settled[index].push(id);
                }
                Err(error) => {
                    tracing::warn!(%error, record = %id, %routing_key, "outbox publish failed, will retry")
                }
            }
        }
    }

    /// Relays while this instance holds `lease`, until `shutdown`.
    ///
    /// On shutdown the pass under way is finished and marked (within the
    /// drain timeout), then the lease is released, so the next leader, which
    /// takes a released lease within its standby poll, publishes nothing
    /// twice. Only a lost lease cuts a pass off halfway (another relay may be
    /// running): its unmarked records are published again, which consumers
    /// absorb by deduplicating on the event id.
    pub async fn run(&self, lease: Lease, shutdown: CancellationToken) {
        let prompted = self.prompted.lock().ok().and_then(|mut r| r.take());
        let prompt = async {
            if let Some(receiver) = prompted {
                self.run_prompt(receiver, &shutdown).await;
            }
        };
        tokio::join!(prompt, self.sweep(lease, &shutdown));
    }

    /// The lease-holding pass loop (see [`OutboxRelay::run`]).
    async fn sweep(&self, lease: Lease, shutdown: &CancellationToken) {
        lease::while_leader(&lease, shutdown, |token| async move {
            tracing::info!(epoch = token.epoch, "outbox relay active");
            // Another tenure may have changed what waits; start afresh.
            if let Ok(mut waiting) = self.waiting.lock() {
                waiting.records.clear();
            }
            let drained = async {
                token.stopping.cancelled().await;
                tokio::time::sleep(self.drain_timeout).await;
            };
            tokio::pin!(drained);
            while !token.lost.is_cancelled() {
                let pass = tokio::select! {
                    pass = self.relay_once() => pass,
                    () = token.revoked.cancelled() => break,
                    () = &mut drained => {
                        tracing::warn!(timeout = ?self.drain_timeout, "outbox pass cut off at the drain timeout");
                        break;
                    }
                };
                let idle = match pass {
                    Ok(published) => published == 0,
                    Err(error) => {
                        tracing::warn!(%error, "outbox pass failed");
                        true
                    }
                };
                if idle {
                    tokio::select! {
                        () = tokio::time::sleep(self.poll_interval) => {}
                        () = token.lost.cancelled() => {}
                    }
                }
            }
            if let Ok(mut waiting) = self.waiting.lock() {
                // The next leader reports what waits.
                waiting.records.clear();
                waiting.report(0);
            }
            tracing::info!(epoch = token.epoch, "outbox relay standing by");
        })
        .await;
    }

    /// Publishes what this replica's writers staged, as it arrives, until
    /// `shutdown`; then what is already queued, within the drain timeout.
    async fn run_prompt(&self, mut receiver: mpsc::Receiver<Staged>, shutdown: &CancellationToken) {
        loop {
            let first = tokio::select! {
                staged = receiver.recv() => staged,
                () = shutdown.cancelled() => None,
            };
            let Some(first) = first else { break };
            let batch = drain_into(vec![first], &mut receiver, self.batch_size);
            if let Err(error) = self.publish_prompted(batch).await {
                tracing::warn!(%error, "prompt outbox publish failed; the sweeper will retry");
            }
        }
        // Writes that finished before shutdown are published now rather
        // than after the next leader's grace.
        let draining = async {
            while let Ok(first) = receiver.try_recv() {
                let batch = drain_into(vec![first], &mut receiver, self.batch_size);
                if let Err(error) = self.publish_prompted(batch).await {
                    tracing::warn!(%error, "prompt outbox publish failed at shutdown");
                    break;
                }
            }
        };
        if tokio::time::timeout(self.drain_timeout, draining)
            .await
            .is_err()
        {
            tracing::warn!("prompt outbox drain cut off at the drain timeout");
        }
    }

    /// One prompt batch: audit copies in one insert, every record published
    /// at once, the confirmed ones marked with one command per collection.
    /// Records older than half the grace are left to the sweeper, and so
    /// are events waiting for a route (it owns their retry pause).
    async fn publish_prompted(&self, batch: Vec<Staged>) -> Result<usize, OutboxError> {
        let half_grace = self.prompt_grace.map_or(i64::MAX, |g| {
            i64::try_from(g.as_millis() / 2).unwrap_or(i64::MAX)
        });
        let now = DateTime::now().timestamp_millis();
        let batch: Vec<Staged> = batch
            .into_iter()
            .filter(|staged| {
                staged
                    .records
                    .iter()
                    .all(|r| now - r.created_at.timestamp_millis() < half_grace)
            })
            .collect();
        if batch.is_empty() {
            return Ok(0);
        }
        let outgoing = batch
            .iter()
            .enumerate()
            .flat_map(|(index, staged)| staged.records.iter().map(move |r| (index, r.clone())))
            .collect();
        let (settled, _waiting) = self.publish_all(outgoing, batch.len()).await?;
        let mut by_collection: HashMap<&str, Vec<Mark>> = HashMap::new();
        let mut published = 0;
        for (staged, ids) in batch.iter().zip(settled) {
            if ids.is_empty() {
                continue;
            }
            published += ids.len();
            by_collection
                .entry(staged.collection.as_str())
                .or_default()
                .push((staged.id.clone(), ids, true));
        }
        for (collection, marks) in by_collection {
            mark_published(&self.database, collection, marks).await?;
        }
        metrics::counter!("palm_outbox_published_total").increment(published as u64);
        Ok(published)
    }

    fn message(&self, record: &OutboxRecord) -> OutgoingMessage {
        OutgoingMessage {
            kind: Some(record.routing_key.clone()),
            ..OutgoingMessage::raw(
                &self.exchange,
                &record.routing_key,
                &record.id,
                record.body.clone().into_bytes(),
            )
        }
    }
}

/// A document's published records: its `_id`, their ids, and whether the
/// marker may go once they are pulled (nothing else read from it is left).
type Mark = (Bson, Vec<String>, bool);

/// Marks published records, one `update` command for the whole batch.
///
/// A document whose one staged record was published (the common case: a
/// write stages one event) is settled by one statement that clears the
/// array and the markers only if the array still holds exactly that record
/// (`$size: 1` and its `id`). Every other document, and any the first
/// statement did not match (a record staged meanwhile, or settled by
/// another relay), takes the general form: pull the records, then
/// (ordered, so after the pull) clear the markers if the array is empty. A
/// record staged between the two keeps the array non-empty and the markers
/// in place. The general form is idempotent, so running it after the
/// single-statement one changes nothing that one did.
async fn mark_published(
    database: &Database,
    collection: &str,
    marks: Vec<Mark>,
) -> Result<(), OutboxError> {
    let (single, general): (Vec<Mark>, Vec<Mark>) = marks
        .into_iter()
        .partition(|(_, ids, all_out)| *all_out && ids.len() == 1);
    let mut general = general;
    if !single.is_empty() {
        let statements = single
            .iter()
            .flat_map(|(id, ids, _)| ids.first().map(|record| (id, record)))
            .map(|(id, record)| {
                doc! {
                    "q": { "_id": id.clone(), OUTBOX_FIELD: { "$size": 1_i32 }, OUTBOX_ID_PATH: record },
                    "u": { "$unset": { OUTBOX_FIELD: "", SINCE_FIELD: "", RETRY_AT_FIELD: "", RETRIES_FIELD: "" } },
                }
            })
            .collect();
        let matched = run_updates(database, collection, statements).await?;
        if usize::try_from(matched).ok() != Some(single.len()) {
            general.extend(single);
        }
    }
    let mut statements = Vec::new();
    for (id, ids, all_out) in general {
        if !ids.is_empty() {
            statements.push(doc! {
                "q": { "_id": id.clone() },
                "u": { "$pull": { OUTBOX_FIELD: { "id": { "$in": ids } } } },
            });
        }
        if all_out {
            statements.push(doc! {
                "q": { "_id": id, "$or": [
                    { OUTBOX_FIELD: { "$size": 0 } },
                    { OUTBOX_FIELD: { "$exists": false } },
                ] },
                "u": { "$unset": { SINCE_FIELD: "", RETRY_AT_FIELD: "", RETRIES_FIELD: "" } },
            });
        }
    }
    if !statements.is_empty() {
        run_updates(database, collection, statements).await?;
    }
    Ok(())
}

/// Runs `statements` as one ordered `update` command (majority write
/// concern); returns how many documents they matched (`n`).
async fn run_updates(
    database: &Database,
    collection: &str,
    statements: Vec<Document>,
) -> Result<i64, OutboxError> {
    let reply = crate::update_command(database, collection, statements, true).await?;
    let failed = reply
        .get_array("writeErrors")
        .is_ok_and(|errors| !errors.is_empty())
        || reply.get_document("writeConcernError").is_ok();
    if failed {
        return Err(OutboxError::Marking(reply.to_string()));
    }
    Ok(crate::integer(&reply, "n").unwrap_or(0))
}

/// Tops `batch` up with what is already waiting, up to `limit` writes.
fn drain_into(
    mut batch: Vec<Staged>,
    receiver: &mut mpsc::Receiver<Staged>,
    limit: i64,
) -> Vec<Staged> {
    let limit = usize::try_from(limit).unwrap_or(usize::MAX);
    while batch.len() < limit {
        match receiver.try_recv() {
            Ok(staged) => batch.push(staged),
            Err(_) => break,
        }
    }
    batch
}

/// What one write staged: the collection, the document's `_id` and the
/// records.
#[derive(Debug)]
pub struct Staged {
    collection: String,
    id: Bson,
    records: Vec<OutboxRecord>,
}

/// The writers' end of the prompt path ([`OutboxRelay::with_prompt`]).
/// Cheap to clone; [`Prompt::disabled`] for code that runs without a relay.
#[derive(Debug, Clone, Default)]
pub struct Prompt {
    sender: Option<mpsc::Sender<Staged>>,
}

impl Prompt {
    /// A handle that hands nothing on: the sweeper publishes everything.
    pub fn disabled() -> Self {
        Self::default()
    }

    /// Hands `records`, just written to document `id` of `collection`
    /// (the write succeeded), to the prompt path. Never waits: when the
    /// channel is full the records are the sweeper's.
    pub fn staged(&self, collection: &str, id: impl Into<Bson>, records: &[OutboxRecord]) {
        let Some(sender) = &self.sender else { return };
        if records.is_empty() {
            return;
        }
        let staged = Staged {
            collection: collection.to_owned(),
            id: id.into(),
            records: records.to_vec(),
        };
        if sender.try_send(staged).is_err() {
            metrics::counter!("palm_outbox_prompt_dropped_total").increment(1);
        }
    }
}

/// Pause before the `retries + 1`-th attempt to route a required event.
fn route_retry_pause(retries: i64) -> Duration {
    let exponent = u32::try_from(retries.clamp(0, 16)).unwrap_or(16);
    ROUTE_RETRY_MIN
        .saturating_mul(2_u32.saturating_pow(exponent))
        .min(ROUTE_RETRY_MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(id: &str, ms: i64) -> OutboxRecord {
        OutboxRecord {
            id: id.into(),
            routing_key: "member.joined".into(),
            body: "{}".into(),
            created_at: DateTime::from_millis(ms),
            subjects: Vec::new(),
        }
    }

    #[test]
    fn stage_merges_with_the_domain_update() {
        let mut update = doc! { "$set": { "name": "x" }, "$push": { "members": "a" } };
        stage(&mut update, &[record("1", 20), record("2", 10)]);
        assert_eq!(
            update
                .get_document("$set")
                .unwrap()
                .get_str("name")
                .unwrap(),
            "x"
        );
        let push = update.get_document("$push").unwrap();
        assert!(push.contains_key("members") && push.contains_key(OUTBOX_FIELD));
        assert_eq!(
            update
                .get_document("$min")
                .unwrap()
                .get_datetime(SINCE_FIELD)
                .unwrap(),
            &DateTime::from_millis(10)
        );
    }

    #[test]
    fn route_retries_back_off_to_a_cap() {
        assert_eq!(route_retry_pause(0), ROUTE_RETRY_MIN);
        assert_eq!(route_retry_pause(1), ROUTE_RETRY_MIN * 2);
        assert_eq!(route_retry_pause(40), ROUTE_RETRY_MAX);
    }

    #[test]
    fn attach_marks_the_document_pending() {
        let mut document = doc! { "_id": 1 };
        attach(&mut document, &[record("1", 5)]);
        assert_eq!(document.get_array(OUTBOX_FIELD).unwrap().len(), 1);
        attach(&mut document, &[]);
        assert!(document.contains_key(SINCE_FIELD));
    }
}
