//! The append-only audit log: a copy of every domain event, written by the
//! outbox relay just before it publishes the event.
//!
//! Writing it from the relay, rather than beside the domain write, keeps the
//! domain write a single atomic document update (ADR 0002) and still gives
//! "every event that left the outbox is in the log": the copy is inserted
//! before the publish, keyed by the event id, so a relay that dies and
//! retries writes it once. Each copy carries the subjects its stager named
//! ([`OutboxRecord::subjects`](crate::OutboxRecord)), e.g. `palm_id:<id>` and
//! `community:<id>`, indexed for the per-subject listings.

use mongodb::bson::{self, DateTime, Document, doc};
use mongodb::error::{ErrorKind, Result};
use mongodb::options::IndexOptions;
use mongodb::{Database, IndexModel};

use crate::OutboxRecord;

/// Field holding the subjects an audit entry concerns.
pub const SUBJECTS_FIELD: &str = "subjects";

/// Where audit copies go, and which payload fields are never copied.
#[derive(Debug, Clone)]
pub struct AuditLog {
    collection: String,
    redacted: Vec<String>,
}

impl AuditLog {
    /// Copies into `collection`.
    pub fn new(collection: &str) -> Self {
        Self {
            collection: collection.to_owned(),
            redacted: Vec::new(),
        }
    }

    /// Payload fields replaced by `"[redacted]"` in the copy (credentials
    /// such as OAuth codes travel in events but must not be kept).
    pub fn redacting(mut self, fields: &[&str]) -> Self {
        self.redacted = fields.iter().map(|f| (*f).to_owned()).collect();
        self
    }

    /// The collection's name.
    pub fn collection(&self) -> &str {
        &self.collection
    }

    /// Declares the per-subject listing index (newest first by event id,
    /// which is a UUID v7 and so sorts by time).
    pub async fn ensure_indexes(&self, database: &Database) -> Result<()> {
        let by_subject = IndexModel::builder()
            .keys(doc! { SUBJECTS_FIELD: 1, "_id": -1 })
            .options(
                IndexOptions::builder()
                    .name("by_subject".to_owned())
                    .build(),
            )
            .build();
        crate::ensure_indexes(database, &self.collection, vec![by_subject]).await
    }

    /// The audit copy of `record`.
    pub fn entry(&self, record: &OutboxRecord) -> Document {
        let envelope: serde_json::Value =
            serde_json::from_str(&record.body).unwrap_or(serde_json::Value::Null);
        let mut payload = envelope
            .get("payload")
            .cloned()
            .unwrap_or(serde_json::Value::Null);
        if let Some(fields) = payload.as_object_mut() {
            for name in &self.redacted {
                if let Some(value) = fields.get_mut(name) {
                    *value = serde_json::Value::from("[redacted]");
                }
            }
        }
        let occurred_at = envelope
            .get("occurred_at")
            .and_then(|t| t.as_str())
            .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
            .map_or(record.created_at, |t| {
                DateTime::from_millis(t.timestamp_millis())
            });
        doc! {
            "_id": &record.id,
            "type": &record.routing_key,
            "occurred_at": occurred_at,
            SUBJECTS_FIELD: &record.subjects,
            "correlation_id": envelope.get("correlation_id").and_then(|c| c.as_str()),
            "payload": bson::to_bson(&payload).unwrap_or(bson::Bson::Null),
        }
    }

    /// Inserts the copies of `records`; copies already there (a retried
    /// pass) are left as they are.
    pub async fn append(&self, database: &Database, records: &[OutboxRecord]) -> Result<()> {
        if records.is_empty() {
            return Ok(());
        }
        let entries: Vec<Document> = records.iter().map(|r| self.entry(r)).collect();
        match database
            .collection::<Document>(&self.collection)
            .insert_many(entries)
            .ordered(false)
            .await
        {
            Ok(_) => Ok(()),
            Err(error) if only_duplicates(&error) => Ok(()),
            Err(error) => Err(error),
        }
    }
}

/// Whether every failure in an unordered insert is a duplicate id.
fn only_duplicates(error: &mongodb::error::Error) -> bool {
    match error.kind.as_ref() {
        ErrorKind::InsertMany(failure) => {
            failure.write_concern_error.is_none()
                && failure.write_errors.as_ref().is_some_and(|errors| {
                    errors.iter().all(|e| e.code == crate::DUPLICATE_KEY_CODE)
                })
        }
        _ => crate::is_duplicate_key(error),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_entry_keeps_the_payload_and_subjects_and_redacts_credentials() {
        let record = OutboxRecord {
            id: "0192f0c4-0000-7000-8000-000000000001".into(),
            routing_key: "verification.requested.discord".into(),
            body: r#"{"id":"x","type":"verification.requested.discord","occurred_at":"2026-11-22T10:00:00.250Z","correlation_id":"c","payload":{"code":"secret","redirect_uri":"https://app"}}"#.into(),
            created_at: DateTime::from_millis(0),
            subjects: vec!["palm_id:p".into()],
        };
        let entry = AuditLog::new("audit_events")
            .redacting(&["code"])
            .entry(&record);
        assert_eq!(
            entry.get_str("type").unwrap(),
            "verification.requested.discord"
        );
        let payload = entry.get_document("payload").unwrap();
        assert_eq!(payload.get_str("code").unwrap(), "[redacted]");
        assert_eq!(payload.get_str("redirect_uri").unwrap(), "https://app");
        assert_eq!(
            entry
                .get_datetime("occurred_at")
                .unwrap()
                .timestamp_millis(),
            1_795_341_600_250
        );
        assert_eq!(entry.get_array(SUBJECTS_FIELD).unwrap().len(), 1);
    }
}
