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
//! the next pass, which consumers absorb by deduplicating on the event id.

use std::time::Duration;

use futures_util::stream::FuturesUnordered;
use futures_util::{StreamExt, TryStreamExt};
use mongodb::bson::{self, Bson, DateTime, Document, doc};
use mongodb::options::IndexOptions;
use mongodb::{Database, IndexModel};
use palm_amqp::{OutgoingMessage, PublishError, Publisher};
use palm_core::{Envelope, Event};
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use crate::audit::AuditLog;
use crate::lease::{self, Lease};

/// Array of pending records inside a domain document.
pub const OUTBOX_FIELD: &str = "_outbox";
/// Creation time of the oldest pending record; absent when none is pending.
pub const SINCE_FIELD: &str = "_outbox_since";
/// Records that could not be read, set aside for an operator.
pub const DEAD_FIELD: &str = "_outbox_dead";

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
    audit: Option<AuditLog>,
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
            audit: None,
        }
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
        metrics::gauge!("palm_outbox_lag_seconds").set(lag);
        metrics::counter!("palm_outbox_published_total").increment(published as u64);
        Ok(published)
    }

    /// Relays one collection's batch; returns how many records were
    /// published and the pending marker of the batch's oldest document.
    async fn relay_collection(&self, name: &str) -> Result<(usize, Option<DateTime>), OutboxError> {
        let collection = self.database.collection::<Document>(name);
        let documents: Vec<Document> = collection
            .find(doc! { SINCE_FIELD: { "$exists": true } })
            .sort(doc! { SINCE_FIELD: 1 })
            .limit(self.batch_size)
            .projection(doc! { OUTBOX_FIELD: 1, SINCE_FIELD: 1 })
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
        // The audit copy goes first: an event is never out without it.
        if let Some(audit) = &self.audit {
            let records: Vec<OutboxRecord> = outgoing.iter().map(|(_, r)| r.clone()).collect();
            audit.append(&self.database, &records).await?;
        }
        let mut publishes = FuturesUnordered::new();
        for (index, record) in outgoing {
            let message = OutgoingMessage {
                kind: Some(record.routing_key.clone()),
                ..OutgoingMessage::raw(
                    &self.exchange,
                    &record.routing_key,
                    &record.id,
                    record.body.into_bytes(),
                )
            };
            let publisher = self.publisher.clone();
            publishes.push(async move {
                let result = publisher.publish(&message).await;
                (index, message.message_id, message.routing_key, result)
            });
        }
        let mut settled: Vec<Vec<String>> = vec![Vec::new(); documents.len()];
        while let Some((index, id, routing_key, result)) = publishes.next().await {
            match result {
                Ok(()) => settled[index].push(id),
                // A domain event nobody subscribes to yet is delivered to
                // nobody, not stuck: keep it visible, and move on so it does
                // not hold the batch. (The publisher still reports it, since
                // elsewhere an unroutable message is a bug.)
                Err(PublishError::Unroutable { .. }) => {
                    tracing::warn!(record = %id, %routing_key, "outbox event has no subscriber");
                    metrics::counter!("palm_outbox_unrouted_total", "routing_key" => routing_key)
                        .increment(1);
                    settled[index].push(id);
                }
                Err(error) => {
                    tracing::warn!(%error, record = %id, "outbox publish failed; will retry")
                }
            }
        }

        let mut published = 0;
        for (((document, ids), staged), unreadable) in
            documents.iter().zip(settled).zip(staged).zip(unreadable)
        {
            let Some(id) = document.get("_id") else {
                continue;
            };
            // The common case in one round trip: every record read is out
            // and none was staged since (only this relay removes records, so
            // an unchanged count means unchanged contents).
            if unreadable.is_empty() && ids.len() == staged && staged > 0 {
                let done = collection
                    .update_one(
                        doc! { "_id": id, OUTBOX_FIELD: { "$size": i64::try_from(staged).unwrap_or(i64::MAX) } },
                        doc! {
                            "$pull": { OUTBOX_FIELD: { "id": { "$in": &ids } } },
                            "$unset": { SINCE_FIELD: "" },
                        },
                    )
                    .await?;
                if done.matched_count == 1 {
                    published += ids.len();
                    continue;
                }
            }
            if !ids.is_empty() {
                published += ids.len();
                collection
                    .update_one(
                        doc! { "_id": id },
                        doc! { "$pull": { OUTBOX_FIELD: { "id": { "$in": &ids } } } },
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
            // Clear the marker once every record read is out; also when none
            // was left (a relay that died between pull and clear leaves an
            // empty array behind, or no array at all), and only if nothing
            // was staged meanwhile.
            if ids.len() + set_aside == staged {
                collection
                    .update_one(
                        doc! { "_id": id, "$or": [
                            { OUTBOX_FIELD: { "$size": 0 } },
                            { OUTBOX_FIELD: { "$exists": false } },
                        ] },
                        doc! { "$unset": { SINCE_FIELD: "" } },
                    )
                    .await?;
            }
        }
        Ok((published, oldest))
    }

    /// Relays while this instance holds `lease`, until `shutdown`.
    pub async fn run(&self, lease: Lease, shutdown: CancellationToken) {
        lease::while_leader(&lease, &shutdown, |token| async move {
            tracing::info!(epoch = token.epoch, "outbox relay active");
            while !token.lost.is_cancelled() {
                // A pass stopped halfway is safe: unmarked records are simply
                // published again by the next relay (consumers deduplicate).
                let pass = tokio::select! {
                    pass = self.relay_once() => pass,
                    () = token.lost.cancelled() => break,
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
            tracing::info!(epoch = token.epoch, "outbox relay standing by");
        })
        .await;
    }
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
    fn attach_marks_the_document_pending() {
        let mut document = doc! { "_id": 1 };
        attach(&mut document, &[record("1", 5)]);
        assert_eq!(document.get_array(OUTBOX_FIELD).unwrap().len(), 1);
        attach(&mut document, &[]);
        assert!(document.contains_key(SINCE_FIELD));
    }
}
