//! `audit_events`: the append-only log the outbox relay fills with a copy
//! of every event palmdao stages (see `palm_mongo::audit`), listed by
//! subject ([`crate::domain::audit`]) newest first.

use chrono::{DateTime, Utc};
use palm_mongo::AuditLog;
use palm_mongo::audit::SUBJECTS_FIELD;
use palm_mongo::mongodb::bson::{Document, doc};

use super::database::{Result, Store, from_bson_time};
use super::pages;

/// Audit entries.
pub const AUDIT_EVENTS: &str = "audit_events";

/// The log the relay writes: payload fields that are credentials (the
/// Discord OAuth code) are not kept.
pub fn audit_log() -> AuditLog {
    AuditLog::new(AUDIT_EVENTS).redacting(&["code"])
}

/// One audit entry.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditEntry {
    /// Event id.
    pub id: String,
    /// Event type.
    pub event_type: String,
    /// When it happened.
    pub occurred_at: DateTime<Utc>,
    /// The event's payload (credentials redacted).
    pub payload: serde_json::Value,
}

fn entry(document: &Document) -> AuditEntry {
    AuditEntry {
        id: document.get_str("_id").unwrap_or_default().to_owned(),
        event_type: document.get_str("type").unwrap_or_default().to_owned(),
        occurred_at: document
            .get_datetime("occurred_at")
            .map(from_bson_time)
            .unwrap_or_default(),
        payload: document
            .get_document("payload")
            .ok()
            .and_then(|p| serde_json::to_value(p).ok())
            .unwrap_or_default(),
    }
}

/// Up to `limit + 1` entries naming `subject` (of `event_type` if given),
/// newest first, older than the id `cursor`.
#[tracing::instrument(skip_all, fields(%subject))]
pub async fn newest_first(
    store: &Store,
    subject: String,
    event_type: Option<&str>,
    limit: i64,
    cursor: Option<&str>,
) -> Result<Vec<AuditEntry>> {
    let mut filter = doc! { SUBJECTS_FIELD: subject };
    if let Some(event_type) = event_type {
        filter.insert("type", event_type);
    }
    let documents = pages::newest_first(
        store.database.collection(AUDIT_EVENTS),
        filter,
        limit,
        cursor,
    )
    .await?;
    Ok(documents.iter().map(entry).collect())
}
