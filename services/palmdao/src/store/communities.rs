//! `communities`: community documents (slugs unique by index) and the
//! `community.created` event their insert stages. A member's leaving stages
//! its events here too, since the membership document is gone
//! ([`super::memberships::remove`]).

use futures_util::TryStreamExt;
use palm_core::Envelope;
use palm_core::events::CommunityCreated;
use palm_mongo::mongodb::bson::{DateTime as BsonDateTime, Document, doc};
use palm_mongo::mongodb::options::IndexOptions;
use palm_mongo::mongodb::{Database, IndexModel};
use palm_mongo::outbox::{self, OutboxRecord};
use uuid::Uuid;

use super::database::{Result, Store, from_bson_time};
use crate::domain::audit::{community_subject, palm_subject};
use crate::domain::communities::{Community, DEFAULT_VOTE_LEVEL};
use crate::settings::SERVICE;

/// Community documents.
pub const COMMUNITIES: &str = "communities";

/// Declares the unique slug index.
pub async fn ensure_indexes(database: &Database) -> palm_mongo::mongodb::error::Result<()> {
    let slug = IndexModel::builder()
        .keys(doc! { "slug": 1 })
        .options(
            IndexOptions::builder()
                .unique(true)
                .name("slug_unique".to_owned())
                .build(),
        )
        .build();
    palm_mongo::ensure_indexes(database, COMMUNITIES, vec![slug]).await
}

/// A community as stored; missing fields read as empty (and the vote level
/// as [`DEFAULT_VOTE_LEVEL`]).
fn community(document: &Document) -> Community {
    let text = |key: &str| document.get_str(key).unwrap_or_default().to_owned();
    Community {
        id: text("_id"),
        slug: text("slug"),
        name: text("name"),
        description: text("description"),
        admins: document
            .get_array("admins")
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default(),
        min_vote_level: document
            .get_document("settings")
            .ok()
            .and_then(|s| palm_mongo::integer(s, "min_vote_level"))
            .and_then(|v| u32::try_from(v).ok())
            .unwrap_or(DEFAULT_VOTE_LEVEL),
        created_at: document
            .get_datetime("created_at")
            .map(from_bson_time)
            .unwrap_or_default(),
    }
}

/// What a new community is made of.
#[derive(Debug, Clone)]
pub struct NewCommunity<'a> {
    /// Unique slug.
    pub slug: &'a str,
    /// Display name.
    pub name: &'a str,
    /// Description.
    pub description: &'a str,
    /// Default minimum level to vote.
    pub min_vote_level: u32,
    /// The creator, its first admin.
    pub created_by: Uuid,
}

/// Inserts a community with its `community.created` event; `None` when the
/// slug is taken.
#[tracing::instrument(skip_all, fields(slug = new.slug))]
pub async fn insert(store: &Store, new: &NewCommunity<'_>) -> Result<Option<Community>> {
    let id = Uuid::now_v7();
    let created = Envelope::new(
        SERVICE,
        CommunityCreated {
            community_id: id,
            slug: new.slug.to_owned(),
            name: new.name.to_owned(),
            admin_palm_id: new.created_by,
        },
    );
    let mut document = doc! {
        "_id": id.to_string(),
        "slug": new.slug,
        "name": new.name,
        "description": new.description,
        "admins": [new.created_by.to_string()],
        "settings": { "min_vote_level": i64::from(new.min_vote_level) },
        "created_by": new.created_by.to_string(),
        "created_at": BsonDateTime::now(),
    };
    let record = OutboxRecord::from_envelope(&created).concerning([
        community_subject(&id.to_string()),
        palm_subject(new.created_by),
    ]);
    outbox::attach(&mut document, std::slice::from_ref(&record));
    match store
        .database
        .collection::<Document>(COMMUNITIES)
        .insert_one(&document)
        .await
    {
        Ok(_) => {
            store.staged(COMMUNITIES, id.to_string(), &[record]);
            Ok(Some(community(&document)))
        }
        Err(error) if palm_mongo::is_duplicate_key(&error) => Ok(None),
        Err(error) => Err(error.into()),
    }
}

/// The community with `slug`, if any.
#[tracing::instrument(skip_all, fields(%slug))]
pub async fn find(store: &Store, slug: &str) -> Result<Option<Community>> {
    let found = store
        .database
        .collection::<Document>(COMMUNITIES)
        .find_one(doc! { "slug": slug })
        .await?;
    Ok(found.as_ref().map(community))
}

/// Up to `limit + 1` communities by slug, after the slug `after`.
#[tracing::instrument(skip_all)]
pub async fn list_by_slug(
    store: &Store,
    after: Option<&str>,
    limit: i64,
) -> Result<Vec<Community>> {
    let filter = match after {
        Some(after) => doc! { "slug": { "$gt": after } },
        None => doc! {},
    };
    let documents: Vec<Document> = store
        .database
        .collection::<Document>(COMMUNITIES)
        .find(filter)
        .sort(doc! { "slug": 1 })
        .limit(limit + 1)
        .await?
        .try_collect()
        .await?;
    Ok(documents.iter().map(community).collect())
}

/// Stages `records` on the community `id` (events whose own document is
/// gone).
pub(super) async fn stage(store: &Store, id: &str, records: &[OutboxRecord]) -> Result<()> {
    let mut update = doc! {};
    outbox::stage(&mut update, records);
    store
        .database
        .collection::<Document>(COMMUNITIES)
        .update_one(doc! { "_id": id }, update)
        .await?;
    store.staged(COMMUNITIES, id, records);
    Ok(())
}
