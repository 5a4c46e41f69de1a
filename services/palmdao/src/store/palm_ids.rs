//! `palm_ids`: PalmID documents — the handle (unique by index), the
//! verifiers, and the stored `level` that follows them — and the events their
//! writes stage (`palm_id.created`, `palm_id.updated`,
//! `palm_id.verifier_added`).

use chrono::Utc;
use futures_util::TryStreamExt;
use palm_core::Envelope;
use palm_core::events::{PalmIdCreated, PalmIdUpdated, PalmIdVerifierAdded, VerificationCompleted};
use palm_mongo::mongodb::bson::{DateTime as BsonDateTime, Document, doc};
use palm_mongo::mongodb::options::IndexOptions;
use palm_mongo::mongodb::{Database, IndexModel};
use palm_mongo::outbox::{self, OutboxRecord};
use serde::Deserialize;
use uuid::Uuid;

use super::database::{Result, Store, from_bson_time, to_bson_time};
use super::identities;
use crate::domain::audit::palm_subject;
use crate::domain::palm_ids::{PalmId, Verifier, initial_handle, level_of};
use crate::settings::SERVICE;

/// PalmID documents.
pub const PALM_IDS: &str = "palm_ids";

/// Declares the unique handle index.
pub async fn ensure_indexes(database: &Database) -> palm_mongo::mongodb::error::Result<()> {
    let handle = IndexModel::builder()
        .keys(doc! { "handle": 1 })
        .options(
            IndexOptions::builder()
                .unique(true)
                .name("handle_unique".to_owned())
                .build(),
        )
        .build();
    palm_mongo::ensure_indexes(database, PALM_IDS, vec![handle]).await
}

#[derive(Debug, Deserialize)]
struct PalmIdDoc {
    #[serde(rename = "_id")]
    id: String,
    handle: String,
    created_at: BsonDateTime,
    #[serde(default)]
    verifiers: Vec<VerifierDoc>,
}

#[derive(Debug, Clone, Deserialize)]
struct VerifierDoc {
    kind: String,
    subject: String,
    display_name: Option<String>,
    verified_at: BsonDateTime,
}

impl From<PalmIdDoc> for PalmId {
    fn from(doc: PalmIdDoc) -> Self {
        Self {
            id: doc.id,
            handle: doc.handle,
            created_at: from_bson_time(&doc.created_at),
            verifiers: doc
                .verifiers
                .into_iter()
                .map(|v| Verifier {
                    kind: v.kind,
                    subject: v.subject,
                    display_name: v.display_name,
                    verified_at: from_bson_time(&v.verified_at),
                })
                .collect(),
        }
    }
}

/// The PalmID `id`, if it exists.
#[tracing::instrument(skip_all, fields(%id))]
pub async fn load(store: &Store, id: Uuid) -> Result<Option<PalmId>> {
    let document = store
        .database
        .collection::<PalmIdDoc>(PALM_IDS)
        .find_one(doc! { "_id": id.to_string() })
        .await?;
    Ok(document.map(PalmId::from))
}

/// The PalmID `id`, if it exists, and whether it is a member of
/// `community_id`, in one round trip: the membership's `_id` is
/// `<community>:<palm id>`, so a `$lookup` on that key rides the `_id`
/// index.
#[tracing::instrument(skip_all, fields(%id, %community_id))]
pub async fn load_as_member(
    store: &Store,
    id: Uuid,
    community_id: &str,
) -> Result<Option<(PalmId, bool)>> {
    let found: Vec<Document> = store
        .database
        .collection::<Document>(PALM_IDS)
        .aggregate([
            doc! { "$match": { "_id": id.to_string() } },
            doc! { "$addFields": { "membership_key": format!("{community_id}:{id}") } },
            doc! { "$lookup": {
                "from": super::memberships::MEMBERSHIPS,
                "localField": "membership_key",
                "foreignField": "_id",
                "as": "membership",
            } },
        ])
        .await?
        .try_collect()
        .await?;
    let Some(found) = found.into_iter().next() else {
        return Ok(None);
    };
    let is_member = found.get_array("membership").is_ok_and(|m| !m.is_empty());
    let palm_id: PalmIdDoc = palm_mongo::mongodb::bson::from_document(found)
        .map_err(|error| anyhow::anyhow!("unreadable PalmID {id}: {error}"))?;
    Ok(Some((PalmId::from(palm_id), is_member)))
}

fn parse_id(palm_id: Option<String>) -> Result<Uuid> {
    palm_id
        .and_then(|id| Uuid::parse_str(&id).ok())
        .ok_or_else(|| anyhow::anyhow!("identity without a valid palm_id").into())
}

/// Returns the PalmID backed by `kind:subject`, creating both on first use.
/// The boolean says whether this call created it.
#[tracing::instrument(skip_all, fields(kind))]
pub async fn find_or_create_for(store: &Store, kind: &str, subject: &str) -> Result<(Uuid, bool)> {
    let key = identities::key(kind, subject);
    // The request whose insert claimed the identity is the one that creates
    // the PalmID; the unique `_id` makes that exactly one request.
    let (palm_id, claimed) = match identities::holder(store, &key).await? {
        Some(holder) => (parse_id(holder)?, false),
        None => {
            let candidate = Uuid::now_v7();
            if identities::claim(store, &key, &candidate.to_string()).await? {
                (candidate, true)
            } else {
                // Another request claimed it first: that one's PalmID wins.
                let winner = identities::holder(store, &key)
                    .await?
                    .ok_or_else(|| anyhow::anyhow!("claimed identity vanished"))?;
                (parse_id(winner)?, false)
            }
        }
    };
    // Create the PalmID document if it does not exist yet. An upsert with
    // $setOnInsert is idempotent, so it also repairs a claim whose PalmID
    // write was interrupted.
    let handle = initial_handle(palm_id);
    let event = Envelope::new(
        SERVICE,
        PalmIdCreated {
            palm_id,
            handle: handle.clone(),
            first_verifier: kind.to_owned(),
        },
    );
    let mut on_insert = doc! {
        "handle": &handle,
        "version": 1_i64,
        // Stored beside the verifiers it derives from (one kind so far) so
        // the platform metrics count PalmIDs by level from an index.
        "level": 1_i64,
        "created_at": BsonDateTime::now(),
        "verifiers": [{ "kind": kind, "subject": subject, "identity": &key, "display_name": null, "verified_at": BsonDateTime::now() }],
    };
    let record = OutboxRecord::from_envelope(&event).concerning([palm_subject(palm_id)]);
    outbox::attach(&mut on_insert, std::slice::from_ref(&record));
    let upsert = store
        .database
        .collection::<Document>(PALM_IDS)
        .update_one(
            doc! { "_id": palm_id.to_string() },
            doc! { "$setOnInsert": on_insert },
        )
        .upsert(true)
        .await;
    // A concurrent upsert of the same document may lose with a duplicate key;
    // the document exists either way, and only an insert stages the event.
    match upsert {
        Ok(outcome) if outcome.upserted_id.is_some() => {
            store.staged(PALM_IDS, palm_id.to_string(), &[record]);
        }
        Ok(_) => {}
        Err(error) if palm_mongo::is_duplicate_key(&error) => {}
        Err(error) => return Err(error.into()),
    }
    Ok((palm_id, claimed))
}

/// What [`set_handle`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HandleChange {
    /// The handle is set (and `palm_id.updated` staged).
    Set,
    /// No such PalmID.
    NotFound,
    /// Another PalmID has this handle.
    Taken,
}

/// Sets `palm_id`'s handle, staging `palm_id.updated` in the same write.
#[tracing::instrument(skip_all, fields(%palm_id))]
pub async fn set_handle(store: &Store, palm_id: Uuid, handle: &str) -> Result<HandleChange> {
    let event = Envelope::new(
        SERVICE,
        PalmIdUpdated {
            palm_id,
            handle: handle.to_owned(),
        },
    );
    let mut change = doc! { "$set": { "handle": handle } };
    let record = OutboxRecord::from_envelope(&event).concerning([palm_subject(palm_id)]);
    outbox::stage(&mut change, std::slice::from_ref(&record));
    let result = store
        .database
        .collection::<Document>(PALM_IDS)
        .update_one(doc! { "_id": palm_id.to_string() }, change)
        .await;
    match result {
        Ok(outcome) if outcome.matched_count == 0 => Ok(HandleChange::NotFound),
        Ok(_) => {
            store.staged(PALM_IDS, palm_id.to_string(), &[record]);
            Ok(HandleChange::Set)
        }
        Err(error) if palm_mongo::is_duplicate_key(&error) => Ok(HandleChange::Taken),
        Err(error) => Err(error.into()),
    }
}

/// What [`add_verifier`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VerifierAdded {
    /// Added, with `palm_id.verifier_added` staged.
    Added,
    /// The PalmID already had it: nothing changed.
    AlreadyThere,
    /// No such PalmID.
    UnknownPalmId,
    /// The PalmID kept changing under every attempt; try again later.
    KeptChanging,
}

/// Adds the verifier `kind:subject` to the PalmID `cause` names unless it
/// already has it (so a redelivery changes nothing), with the level that
/// follows and `palm_id.verifier_added` (caused by `cause`) in the same
/// write.
#[tracing::instrument(skip_all, fields(palm_id = %cause.payload.palm_id))]
pub async fn add_verifier(
    store: &Store,
    cause: &Envelope<VerificationCompleted>,
    subject: &str,
    display_name: Option<&str>,
) -> Result<VerifierAdded> {
    let result = &cause.payload;
    let added = Envelope::caused_by(
        SERVICE,
        PalmIdVerifierAdded {
            palm_id: result.palm_id,
            kind: result.kind.clone(),
        },
        cause,
    );
    let identity = identities::key(&result.kind, subject);
    let verifier = doc! {
        "kind": &result.kind,
        "subject": subject,
        "identity": &identity,
        "display_name": display_name,
        "verified_at": to_bson_time(Utc::now()),
    };
    let palm_ids = store.database.collection::<Document>(PALM_IDS);
    // Optimistic concurrency: push only onto the version just read, so a
    // verifier is added at most once however often or concurrently this
    // runs. A lost race reads again.
    for _ in 0..5 {
        let Some(current) = palm_ids
            .find_one(doc! { "_id": result.palm_id.to_string() })
            .await?
        else {
            return Ok(VerifierAdded::UnknownPalmId);
        };
        let present = current.get_array("verifiers").is_ok_and(|verifiers| {
            verifiers.iter().any(|v| {
                v.as_document().and_then(|d| d.get_str("identity").ok()) == Some(identity.as_str())
            })
        });
        if present {
            return Ok(VerifierAdded::AlreadyThere);
        }
        let version = palm_mongo::integer(&current, "version").unwrap_or(0);
        let kinds: Vec<String> = current
            .get_array("verifiers")
            .map(|verifiers| {
                verifiers
                    .iter()
                    .filter_map(|v| v.as_document()?.get_str("kind").ok())
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default();
        // The level changes with the verifiers, in the same write; the
        // version check makes it the level of exactly these verifiers.
        let level = level_of(
            kinds
                .iter()
                .map(String::as_str)
                .chain([result.kind.as_str()]),
        );
        let mut update = doc! {
            "$push": { "verifiers": verifier.clone() },
            "$set": { "version": version + 1, "level": i64::from(level) },
        };
        let record = OutboxRecord::from_envelope(&added).concerning([palm_subject(result.palm_id)]);
        outbox::stage(&mut update, std::slice::from_ref(&record));
        let filter = if version == 0 {
            doc! { "_id": result.palm_id.to_string(), "version": { "$exists": false } }
        } else {
            doc! { "_id": result.palm_id.to_string(), "version": version }
        };
        let outcome = palm_ids.update_one(filter, update).await?;
        if outcome.matched_count == 1 {
            store.staged(PALM_IDS, result.palm_id.to_string(), &[record]);
            return Ok(VerifierAdded::Added);
        }
    }
    Ok(VerifierAdded::KeptChanging)
}
