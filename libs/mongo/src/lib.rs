//! Everything Palm does with MongoDB that is not a service's own domain:
//! connecting, declaring indexes, idempotency records, leases for leader
//! election, and the transactional outbox.
//!
//! # Layout
//! - [`settings`]: [`MongoSettings`], the `mongo.*` configuration section, and
//!   [`connect`].
//! - [`indexes`]: [`ensure_indexes`], run at startup, idempotent.
//! - [`idempotency`]: [`Idempotency`], processed-message records (unique id, TTL).
//! - [`lease`]: [`Lease`], a named lease with a fencing epoch, and
//!   [`lease::while_leader`] to run work on one instance at a time.
//! - [`outbox`]: [`OutboxRecord`] written inside the domain document, and
//!   [`OutboxRelay`] publishing them through `palm-amqp` with confirms.
//! - [`audit`]: [`AuditLog`], the relay's append-only copy of every event.

pub mod audit;
pub mod idempotency;
pub mod indexes;
pub mod lease;
pub mod outbox;
pub mod settings;

pub use audit::AuditLog;
pub use idempotency::Idempotency;
pub use indexes::ensure_indexes;
pub use lease::Lease;
pub use outbox::{OutboxRecord, OutboxRelay};
pub use settings::{MongoSettings, connect, ping, readiness_check};

/// Re-exported so services use one driver version.
pub use mongodb;

/// The integer in `document[key]`, whatever width stored it: MongoDB keeps
/// the width written, other servers (the test stand-in) may narrow it, and
/// numbers written from JSON may arrive as doubles.
pub fn integer(document: &mongodb::bson::Document, key: &str) -> Option<i64> {
    use mongodb::bson::Bson;
    match document.get(key)? {
        Bson::Int32(value) => Some(i64::from(*value)),
        Bson::Int64(value) => Some(*value),
        Bson::Double(value) if value.fract() == 0.0 && value.abs() < 9.0e15 => Some(*value as i64),
        _ => None,
    }
}

/// Runs `statements` (`{q, u, upsert?, multi?}` documents) as one `update`
/// command on `collection` with the majority write concern, `ordered` or
/// not, and returns its reply: `n` (documents matched) and, per failed
/// statement, `writeErrors` (`{index, code, errmsg}`), or a
/// `writeConcernError`; the caller decides what those mean. (The driver's
/// `update_one`/`update_many` send one statement each; this is the bulk
/// form, the `update` command of the MongoDB manual.)
pub async fn update_command(
    database: &mongodb::Database,
    collection: &str,
    statements: Vec<mongodb::bson::Document>,
    ordered: bool,
) -> mongodb::error::Result<mongodb::bson::Document> {
    database
        .run_command(mongodb::bson::doc! {
            "update": collection,
            "updates": statements,
            "ordered": ordered,
            "writeConcern": { "w": "majority" },
        })
        .await
}

/// MongoDB's unique-index violation code (E11000).
pub const DUPLICATE_KEY_CODE: i32 = 11000;

/// Whether `error` is a unique-index violation (E11000), the signal every
/// "insert if absent" in Palm relies on.
pub fn is_duplicate_key(error: &mongodb::error::Error) -> bool {
    use mongodb::error::{ErrorKind, WriteFailure};
    match error.kind.as_ref() {
        ErrorKind::Write(WriteFailure::WriteError(e)) => e.code == DUPLICATE_KEY_CODE,
        ErrorKind::Command(e) => e.code == DUPLICATE_KEY_CODE,
        ErrorKind::InsertMany(e) => e
            .write_errors
            .as_ref()
            .is_some_and(|errors| errors.iter().any(|e| e.code == DUPLICATE_KEY_CODE)),
        _ => false,
    }
}
