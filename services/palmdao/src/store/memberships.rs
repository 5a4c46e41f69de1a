//! `memberships`: one document per member of a community, `_id =
//! "<community id>:<palm id>"`, so joining twice is one membership; its
//! insert stages `member.joined`, its removal `member.left` (on the
//! community, since the membership is gone).

use futures_util::TryStreamExt;
use palm_core::Envelope;
use palm_core::events::{MemberJoined, MemberLeft};
use palm_mongo::mongodb::bson::{DateTime as BsonDateTime, Document, doc};
use palm_mongo::mongodb::options::IndexOptions;
use palm_mongo::mongodb::{Database, IndexModel};
use palm_mongo::outbox::{self, OutboxRecord};
use uuid::Uuid;

use super::communities;
use super::database::{Result, Store, from_bson_time};
use crate::domain::audit::{community_subject, palm_subject};
use crate::domain::communities::Membership;
use crate::settings::SERVICE;

/// Membership documents.
pub const MEMBERSHIPS: &str = "memberships";

/// Declares the membership listing index.
pub async fn ensure_indexes(database: &Database) -> palm_mongo::mongodb::error::Result<()> {
    let members = IndexModel::builder()
        .keys(doc! { "community_id": 1, "palm_id": 1 })
        .options(
            IndexOptions::builder()
                .name("by_community".to_owned())
                .build(),
        )
        .build();
    palm_mongo::ensure_indexes(database, MEMBERSHIPS, vec![members]).await
}

fn membership(document: &Document) -> Membership {
    Membership {
        palm_id: document.get_str("palm_id").unwrap_or_default().to_owned(),
        role: document.get_str("role").unwrap_or_default().to_owned(),
        joined_at: document
            .get_datetime("joined_at")
            .map(from_bson_time)
            .unwrap_or_default(),
    }
}

/// Adds `palm_id` to the community with `role`, unless already a member,
/// staging `member.joined`. Returns whether it was added and the membership
/// as stored: joining again answers with the existing membership (its role
/// and `joined_at`), never a made-up one.
#[tracing::instrument(skip_all, fields(%community_id, %palm_id))]
pub async fn add(
    store: &Store,
    community_id: Uuid,
    slug: &str,
    palm_id: Uuid,
    role: &str,
) -> Result<(bool, Membership)> {
    let joined = Envelope::new(
        SERVICE,
        MemberJoined {
            community_id,
            community_slug: slug.to_owned(),
            palm_id,
        },
    );
    let mut document = doc! {
        "_id": format!("{community_id}:{palm_id}"),
        "community_id": community_id.to_string(),
        "palm_id": palm_id.to_string(),
        "role": role,
        "joined_at": BsonDateTime::now(),
    };
    let record = OutboxRecord::from_envelope(&joined).concerning([
        community_subject(&community_id.to_string()),
        palm_subject(palm_id),
    ]);
    let id = document.get_str("_id").unwrap_or_default().to_owned();
    let stored = document.clone();
    outbox::attach(&mut document, std::slice::from_ref(&record));
    let memberships = store.database.collection::<Document>(MEMBERSHIPS);
    match memberships.insert_one(document).await {
        Ok(_) => {
            store.staged(MEMBERSHIPS, id.as_str(), &[record]);
            Ok((true, membership(&stored)))
        }
        Err(error) if palm_mongo::is_duplicate_key(&error) => {
            let existing = memberships
                .find_one(doc! { "_id": &id })
                .projection(doc! { "palm_id": 1, "role": 1, "joined_at": 1 })
                .await?
                // Left between the insert and the read: nothing to report
                // but what was asked for.
                .unwrap_or(stored);
            Ok((false, membership(&existing)))
        }
        Err(error) => Err(error.into()),
    }
}

/// Whether `palm_id` is a member of the community `community_id` (admins
/// are members too).
#[tracing::instrument(skip_all, fields(%community_id, %palm_id))]
pub async fn is_member(store: &Store, community_id: &str, palm_id: Uuid) -> Result<bool> {
    Ok(store
        .database
        .collection::<Document>(MEMBERSHIPS)
        .find_one(doc! { "_id": format!("{community_id}:{palm_id}") })
        .projection(doc! { "_id": 1 })
        .await?
        .is_some())
}

/// Removes `palm_id`'s membership of the community `community_id`; `false`
/// when it was not a member. The membership document is gone, so its events
/// ride on the community: any it still held (a `member.joined` the relay
/// had not published yet), then `member.left`.
#[tracing::instrument(skip_all, fields(%community_id, %palm_id))]
pub async fn remove(store: &Store, community_id: &str, palm_id: Uuid) -> Result<bool> {
    let Some(removed) = store
        .database
        .collection::<Document>(MEMBERSHIPS)
        .find_one_and_delete(doc! { "_id": format!("{community_id}:{palm_id}") })
        .await?
    else {
        return Ok(false);
    };
    let mut records = outbox::pending_records(&removed);
    let left = Envelope::new(
        SERVICE,
        MemberLeft {
            community_id: Uuid::parse_str(community_id).map_err(anyhow::Error::from)?,
            palm_id,
        },
    );
    records.push(
        OutboxRecord::from_envelope(&left)
            .concerning([community_subject(community_id), palm_subject(palm_id)]),
    );
    communities::stage(store, community_id, &records).await?;
    Ok(true)
}

/// Up to `limit + 1` members of the community `community_id` by PalmID,
/// after the PalmID `after`.
#[tracing::instrument(skip_all, fields(%community_id))]
pub async fn list(
    store: &Store,
    community_id: &str,
    after: Option<&str>,
    limit: i64,
) -> Result<Vec<Membership>> {
    let mut filter = doc! { "community_id": community_id };
    if let Some(after) = after {
        filter.insert("palm_id", doc! { "$gt": after });
    }
    let documents: Vec<Document> = store
        .database
        .collection::<Document>(MEMBERSHIPS)
        .find(filter)
        .sort(doc! { "palm_id": 1 })
        .limit(limit + 1)
        .await?
        .try_collect()
        .await?;
    Ok(documents.iter().map(membership).collect())
}
