//! `idempotency_keys`: the first answer to each `Idempotency-Key` request,
//! one document per scoped key, forgotten after [`RETENTION`]. A key is
//! claimed with an insert on its unique `_id`, so two racing requests
//! cannot both run. The HTTP side is `crate::api::idempotency`.

use std::time::Duration;

use palm_mongo::mongodb::bson::{DateTime as BsonDateTime, Document, doc};
use palm_mongo::mongodb::options::IndexOptions;
use palm_mongo::mongodb::{Database, IndexModel};

use super::database::{Result, Store};

/// Stored first answers, one per scoped key.
pub const IDEMPOTENCY_KEYS: &str = "idempotency_keys";

/// How long a key's answer is kept (the draft leaves it to the server;
/// Stripe keeps 24 h).
pub const RETENTION: Duration = Duration::from_secs(24 * 3600);

/// Declares the TTL index that forgets keys after [`RETENTION`].
pub async fn ensure_indexes(database: &Database) -> palm_mongo::mongodb::error::Result<()> {
    let ttl = IndexModel::builder()
        .keys(doc! { "created_at": 1 })
        .options(
            IndexOptions::builder()
                .expire_after(RETENTION)
                .name("ttl".to_owned())
                .build(),
        )
        .build();
    palm_mongo::ensure_indexes(database, IDEMPOTENCY_KEYS, vec![ttl]).await
}

/// A key as stored; missing fields read as empty.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeptAnswer {
    /// What the first request was (method, path, body), hashed.
    pub fingerprint: String,
    /// `running` while the first request runs, then `done`.
    pub state: String,
    /// The answer's status, once done.
    pub status: Option<i32>,
    /// The answer's kept headers (those stored as text).
    pub headers: Vec<(String, String)>,
    /// The answer's body.
    pub body: String,
}

/// Claims the key `id` for a request with `fingerprint`; `false` when it
/// was claimed before.
pub async fn claim(store: &Store, id: &str, fingerprint: &str) -> Result<bool> {
    let claim = doc! {
        "_id": id,
        "fingerprint": fingerprint,
        "state": "running",
        "created_at": BsonDateTime::now(),
    };
    match store
        .database
        .collection::<Document>(IDEMPOTENCY_KEYS)
        .insert_one(claim)
        .await
    {
        Ok(_) => Ok(true),
        Err(error) if palm_mongo::is_duplicate_key(&error) => Ok(false),
        Err(error) => Err(error.into()),
    }
}

/// Forgets the key `id`, so a retry runs again.
pub async fn release(store: &Store, id: &str) -> Result<()> {
    store
        .database
        .collection::<Document>(IDEMPOTENCY_KEYS)
        .delete_one(doc! { "_id": id })
        .await?;
    Ok(())
}

/// Keeps the answer (`status`, `headers`, `body`) of the key `id`.
pub async fn keep(
    store: &Store,
    id: &str,
    status: u16,
    headers: &[(&str, &str)],
    body: &str,
) -> Result<()> {
    let mut kept = Document::new();
    for (name, value) in headers {
        kept.insert(*name, *value);
    }
    let done = doc! { "$set": {
        "state": "done",
        "status": i32::from(status),
        "headers": kept,
        "body": body,
    }};
    store
        .database
        .collection::<Document>(IDEMPOTENCY_KEYS)
        .update_one(doc! { "_id": id }, done)
        .await?;
    Ok(())
}

/// The key `id`, if it is still kept.
pub async fn find(store: &Store, id: &str) -> Result<Option<KeptAnswer>> {
    let found = store
        .database
        .collection::<Document>(IDEMPOTENCY_KEYS)
        .find_one(doc! { "_id": id })
        .await?;
    Ok(found.map(|found| KeptAnswer {
        fingerprint: found.get_str("fingerprint").unwrap_or_default().to_owned(),
        state: found.get_str("state").unwrap_or_default().to_owned(),
        status: found.get_i32("status").ok(),
        headers: found
            .get_document("headers")
            .map(|kept| {
                kept.iter()
                    .filter_map(|(name, value)| Some((name.clone(), value.as_str()?.to_owned())))
                    .collect()
            })
            .unwrap_or_default(),
        body: found.get_str("body").unwrap_or_default().to_owned(),
    }))
}
