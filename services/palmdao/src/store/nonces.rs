//! `auth_nonces`: single-use Sign-In with Ethereum nonces, deleted when used
//! or (by a TTL index) when expired.

use chrono::{DateTime, Utc};
use palm_mongo::mongodb::bson::{Document, doc};
use palm_mongo::mongodb::options::IndexOptions;
use palm_mongo::mongodb::{Database, IndexModel};

use super::database::{Result, Store, to_bson_time};

/// Issued nonces, deleted when used or expired.
pub const NONCES: &str = "auth_nonces";

/// Declares the nonce TTL index.
pub async fn ensure_indexes(database: &Database) -> palm_mongo::mongodb::error::Result<()> {
    let ttl = IndexModel::builder()
        .keys(doc! { "expires_at": 1 })
        .options(
            IndexOptions::builder()
                .expire_after(std::time::Duration::ZERO)
                .name("ttl".to_owned())
                .build(),
        )
        .build();
    palm_mongo::ensure_indexes(database, NONCES, vec![ttl]).await
}

/// Stores `nonce`, usable until `expires_at`.
#[tracing::instrument(skip_all)]
pub async fn issue(store: &Store, nonce: &str, expires_at: DateTime<Utc>) -> Result<()> {
    store
        .database
        .collection::<Document>(NONCES)
        .insert_one(doc! { "_id": nonce, "expires_at": to_bson_time(expires_at) })
        .await?;
    Ok(())
}

/// Uses up `nonce`: single use, so only one caller can delete it, and only
/// before it expires. Whether it was there to use.
#[tracing::instrument(skip_all)]
pub async fn consume(store: &Store, nonce: &str, now: DateTime<Utc>) -> Result<bool> {
    let consumed = store
        .database
        .collection::<Document>(NONCES)
        .find_one_and_delete(doc! { "_id": nonce, "expires_at": { "$gt": to_bson_time(now) } })
        .await?;
    Ok(consumed.is_some())
}
