//! The page query every newest-first list shares: documents matching a
//! filter, newest first by `_id` (UUID v7 ids sort by creation time; the
//! cursor is the last id shown), `limit + 1` of them so the caller can tell
//! whether a next page exists.

use futures_util::TryStreamExt;
use palm_mongo::mongodb::Collection;
use palm_mongo::mongodb::bson::{Document, doc};

use super::database::Result;

/// Up to `limit + 1` of `collection`'s documents matching `filter` with ids
/// below `cursor`, newest first.
pub(super) async fn newest_first(
    collection: Collection<Document>,
    mut filter: Document,
    limit: i64,
    cursor: Option<&str>,
) -> Result<Vec<Document>> {
    if let Some(before) = cursor {
        filter.insert("_id", doc! { "$lt": before });
    }
    let documents: Vec<Document> = collection
        .find(filter)
        .sort(doc! { "_id": -1 })
        .limit(limit + 1)
        .await?
        .try_collect()
        .await?;
    Ok(documents)
}
