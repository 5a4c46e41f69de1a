//! Index declarations, created at startup. Creating an index that exists with
//! the same definition is a no-op, so every instance runs this on boot.

use mongodb::bson::Document;
use mongodb::{Database, IndexModel};

/// Creates `indexes` on `collection`.
#[tracing::instrument(skip_all, fields(collection))]
pub async fn ensure_indexes(
    database: &Database,
    collection: &str,
    indexes: Vec<IndexModel>,
) -> mongodb::error::Result<()> {
    if indexes.is_empty() {
        return Ok(());
    }
    database
        .collection::<Document>(collection)
        .create_indexes(indexes)
        .await?;
    Ok(())
}
