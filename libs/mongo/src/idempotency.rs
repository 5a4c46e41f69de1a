//! Processed-message records: "has this consumer already applied message X?"
//! answered by an insert into a unique `_id`, never by a read-then-write.
//! Records expire after a retention period (TTL index) longer than any
//! redelivery window.

use std::time::Duration;

use mongodb::bson::{DateTime, Document, doc};
use mongodb::options::IndexOptions;
use mongodb::{Collection, Database, IndexModel};

use crate::{ensure_indexes, is_duplicate_key};

/// Collection name.
pub const COLLECTION: &str = "processed_messages";

/// The processed-message store. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Idempotency {
    collection: Collection<Document>,
}

impl Idempotency {
    /// The store in `database`.
    pub fn new(database: &Database) -> Self {
        Self {
            collection: database.collection(COLLECTION),
        }
    }

    /// Declares the TTL index; records older than `retention` disappear.
    pub async fn ensure_indexes(
        database: &Database,
        retention: Duration,
    ) -> mongodb::error::Result<()> {
        let ttl = IndexModel::builder()
            .keys(doc! { "processed_at": 1 })
            .options(
                IndexOptions::builder()
                    .expire_after(retention)
                    .name("ttl".to_owned())
                    .build(),
            )
            .build();
        ensure_indexes(database, COLLECTION, vec![ttl]).await
    }

    /// Records that `consumer` processed `message_id`. Returns `true` the
    /// first time, `false` for a duplicate. Call it as the same step as the
    /// effect, or [`Idempotency::forget`] the claim if the effect then fails.
    #[tracing::instrument(skip(self))]
    pub async fn claim(&self, consumer: &str, message_id: &str) -> mongodb::error::Result<bool> {
        let record =
            doc! { "_id": format!("{consumer}:{message_id}"), "processed_at": DateTime::now() };
        match self.collection.insert_one(record).await {
            Ok(_) => Ok(true),
            Err(error) if is_duplicate_key(&error) => Ok(false),
            Err(error) => Err(error),
        }
    }

    /// Withdraws a claim whose effect failed, so a redelivery runs again.
    pub async fn forget(&self, consumer: &str, message_id: &str) -> mongodb::error::Result<()> {
        self.collection
            .delete_one(doc! { "_id": format!("{consumer}:{message_id}") })
            .await?;
        Ok(())
    }
}
