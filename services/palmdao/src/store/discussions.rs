//! `discussions`: forum threads of a community, listed newest first, and
//! the `discussion.created` event their insert stages.

use chrono::{DateTime, Utc};
use palm_core::Envelope;
use palm_core::events::DiscussionCreated;
use palm_mongo::mongodb::bson::{Document, doc};
use palm_mongo::mongodb::options::IndexOptions;
use palm_mongo::mongodb::{Database, IndexModel};
use palm_mongo::outbox::{self, OutboxRecord};
use uuid::Uuid;

use super::database::{Result, Store, from_bson_time, to_bson_time};
use super::pages;
use crate::domain::audit::{community_subject, palm_subject};
use crate::settings::SERVICE;

/// Discussion documents.
pub const DISCUSSIONS: &str = "discussions";

/// Declares the per-community listing index.
pub async fn ensure_indexes(database: &Database) -> palm_mongo::mongodb::error::Result<()> {
    let by_community = IndexModel::builder()
        .keys(doc! { "community_id": 1, "_id": -1 })
        .options(
            IndexOptions::builder()
                .name("by_community".to_owned())
                .build(),
        )
        .build();
    palm_mongo::ensure_indexes(database, DISCUSSIONS, vec![by_community]).await
}

/// A discussion as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct Discussion {
    /// Id.
    pub id: String,
    /// Community id.
    pub community_id: String,
    /// Title.
    pub title: String,
    /// Body.
    pub body: String,
    /// PalmID of the author.
    pub author: String,
    /// Creation time.
    pub created_at: DateTime<Utc>,
}

fn discussion(document: &Document) -> Discussion {
    let text = |key: &str| document.get_str(key).unwrap_or_default().to_owned();
    Discussion {
        id: text("_id"),
        community_id: text("community_id"),
        title: text("title"),
        body: text("body"),
        author: text("author"),
        created_at: document
            .get_datetime("created_at")
            .map(from_bson_time)
            .unwrap_or_default(),
    }
}

/// Starts a discussion by `author` in the community `community_id`, staging
/// `discussion.created`. The stored title is trimmed; the event carries it
/// as given.
#[tracing::instrument(skip_all, fields(%community_id, %author))]
pub async fn insert(
    store: &Store,
    community_id: &str,
    author: Uuid,
    title: &str,
    body: &str,
) -> Result<Discussion> {
    let id = Uuid::now_v7();
    let created = Envelope::new(
        SERVICE,
        DiscussionCreated {
            discussion_id: id,
            community_id: Uuid::parse_str(community_id).map_err(anyhow::Error::from)?,
            author_palm_id: author,
            title: title.to_owned(),
        },
    );
    let mut document = doc! {
        "_id": id.to_string(),
        "community_id": community_id,
        "title": title.trim(),
        "body": body,
        "author": author.to_string(),
        "created_at": to_bson_time(Utc::now()),
    };
    let record = OutboxRecord::from_envelope(&created)
        .concerning([community_subject(community_id), palm_subject(author)]);
    outbox::attach(&mut document, std::slice::from_ref(&record));
    store
        .database
        .collection::<Document>(DISCUSSIONS)
        .insert_one(&document)
        .await?;
    if let Some(id) = document.get("_id") {
        store.staged(DISCUSSIONS, id.clone(), &[record]);
    }
    Ok(discussion(&document))
}

/// Up to `limit + 1` discussions of the community `community_id`, newest
/// first, older than the id `cursor`.
#[tracing::instrument(skip_all, fields(%community_id))]
pub async fn newest_first(
    store: &Store,
    community_id: &str,
    limit: i64,
    cursor: Option<&str>,
) -> Result<Vec<Discussion>> {
    let documents = pages::newest_first(
        store.database.collection(DISCUSSIONS),
        doc! { "community_id": community_id },
        limit,
        cursor,
    )
    .await?;
    Ok(documents.iter().map(discussion).collect())
}

/// The discussion `id` in any community, if any.
#[tracing::instrument(skip_all, fields(%id))]
pub async fn load(store: &Store, id: &str) -> Result<Option<Discussion>> {
    let found = store
        .database
        .collection::<Document>(DISCUSSIONS)
        .find_one(doc! { "_id": id })
        .await?;
    Ok(found.as_ref().map(discussion))
}
