//! `identities`: claimed external identities, `_id = "<kind>:<subject>"`.
//!
//! The anti-sybil rule (one external identity backs one PalmID) rests here:
//! claiming an identity is an insert on the unique `_id`, so of two
//! concurrent claims exactly one succeeds — never a read-then-write.

use palm_mongo::mongodb::bson::{DateTime as BsonDateTime, Document, doc};

use super::database::{Result, Store};

/// Claimed external identities, `_id = "<kind>:<subject>"`.
pub const IDENTITIES: &str = "identities";

/// The `_id` of `kind:subject`.
pub fn key(kind: &str, subject: &str) -> String {
    format!("{kind}:{subject}")
}

/// The PalmID holding the identity `key` (as stored: `None` when the claim
/// names none), or `None` when unclaimed.
pub async fn holder(store: &Store, key: &str) -> Result<Option<Option<String>>> {
    let found = store
        .database
        .collection::<Document>(IDENTITIES)
        .find_one(doc! { "_id": key })
        .await?;
    Ok(found.map(|identity| identity.get_str("palm_id").ok().map(str::to_owned)))
}

/// Claims the identity `key` for `palm_id`: `false` when it was claimed
/// before (by anyone: see [`holder`]).
pub async fn claim(store: &Store, key: &str, palm_id: &str) -> Result<bool> {
    let claim = doc! { "_id": key, "palm_id": palm_id, "created_at": BsonDateTime::now() };
    match store
        .database
        .collection::<Document>(IDENTITIES)
        .insert_one(claim)
        .await
    {
        Ok(_) => Ok(true),
        Err(error) if palm_mongo::is_duplicate_key(&error) => Ok(false),
        Err(error) => Err(error.into()),
    }
}
