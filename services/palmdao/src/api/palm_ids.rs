//! PalmIDs: creation on first sign-in, the owner's view and edits, and the
//! public view.
//!
//! The anti-sybil rule (one external identity backs one PalmID) rests on the
//! `identities` collection, whose `_id` is `<kind>:<subject>`: claiming an
//! identity is an insert, so of two concurrent claims exactly one succeeds.

use super::audit::palm_subject;
use axum::Json;
use axum::extract::State;

use super::extract::ApiPath;
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use palm_core::Envelope;
use palm_core::events::{PalmIdCreated, PalmIdUpdated};
use palm_mongo::mongodb::bson::{DateTime as BsonDateTime, Document, doc};
use palm_mongo::mongodb::options::IndexOptions;
use palm_mongo::mongodb::{Database, IndexModel};
use palm_mongo::outbox::{self, OutboxRecord};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::extract::ApiJson;
use super::limits;
use super::openapi::{Always, BadBody, Conflict, NeedsSession, NotFound};
use super::problem::Problem;
use super::session::Session;
use super::{AppState, from_bson_time};
use crate::SERVICE;

/// PalmID documents.
pub const PALM_IDS: &str = "palm_ids";
/// Claimed external identities, `_id = "<kind>:<subject>"`.
pub const IDENTITIES: &str = "identities";

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
pub(crate) struct PalmIdDoc {
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

impl PalmIdDoc {
    /// The level: how many distinct verifier kinds back this PalmID.
    pub(crate) fn level(&self) -> u32 {
        level_of(self.verifiers.iter().map(|v| v.kind.as_str()))
    }

    /// Linked wallets, lower-case hex.
    pub(crate) fn wallets(&self) -> Vec<String> {
        self.verifiers
            .iter()
            .filter(|v| v.kind == "wallet")
            .map(|v| v.subject.clone())
            .collect()
    }
}

/// The level of a PalmID whose verifiers have `kinds`: how many distinct
/// kinds there are. palmdao also stores it in the document (`level`) with
/// every change of the verifiers, for the platform metrics' index.
pub fn level_of<'a>(kinds: impl IntoIterator<Item = &'a str>) -> u32 {
    let kinds: std::collections::BTreeSet<&str> = kinds.into_iter().collect();
    u32::try_from(kinds.len()).unwrap_or(u32::MAX)
}

/// Returns the PalmID backed by `kind:subject`, creating both on first use.
/// The boolean says whether this call created it.
pub async fn find_or_create_for(
    database: &Database,
    prompt: &palm_mongo::outbox::Prompt,
    kind: &str,
    subject: &str,
) -> Result<(Uuid, bool), Problem> {
    let identities = database.collection::<Document>(IDENTITIES);
    let key = format!("{kind}:{subject}");
    let existing = identities.find_one(doc! { "_id": &key }).await?;
    // The request whose insert claimed the identity is the one that creates
    // the PalmID; the unique `_id` makes that exactly one request.
    let (palm_id, claimed) = match existing {
        Some(identity) => (parse_id(&identity)?, false),
        None => {
            let candidate = Uuid::now_v7();
            let claim = doc! { "_id": &key, "palm_id": candidate.to_string(), "created_at": BsonDateTime::now() };
            match identities.insert_one(claim).await {
                Ok(_) => (candidate, true),
                // Another request claimed it first: that one's PalmID wins.
                Err(error) if palm_mongo::is_duplicate_key(&error) => {
                    let winner = identities.find_one(doc! { "_id": &key }).await?;
                    let winner =
                        winner.ok_or_else(|| anyhow::anyhow!("claimed identity vanished"))?;
                    (parse_id(&winner)?, false)
                }
                Err(error) => return Err(error.into()),
            }
        }
    };
    // Create the PalmID document if it does not exist yet. An upsert with
    // $setOnInsert is idempotent, so it also repairs a claim whose PalmID
    // write was interrupted.
    let handle = format!("palm-{}", &palm_id.simple().to_string()[22..]);
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
    let upsert = database
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
            prompt.staged(PALM_IDS, palm_id.to_string(), &[record]);
        }
        Ok(_) => {}
        Err(error) if palm_mongo::is_duplicate_key(&error) => {}
        Err(error) => return Err(error.into()),
    }
    Ok((palm_id, claimed))
}

fn parse_id(identity: &Document) -> Result<Uuid, Problem> {
    identity
        .get_str("palm_id")
        .ok()
        .and_then(|id| Uuid::parse_str(id).ok())
        .ok_or_else(|| anyhow::anyhow!("identity without a valid palm_id").into())
}

/// The PalmID `id`, if it exists, and whether it is a member of
/// `community_id`, in one round trip: the membership's `_id` is
/// `<community>:<palm id>`, so a `$lookup` on that key rides the `_id`
/// index.
pub(crate) async fn load_as_member(
    database: &Database,
    id: Uuid,
    community_id: &str,
) -> Result<Option<(PalmIdDoc, bool)>, Problem> {
    use futures_util::TryStreamExt as _;
    let found: Vec<Document> = database
        .collection::<Document>(PALM_IDS)
        .aggregate([
            doc! { "$match": { "_id": id.to_string() } },
            doc! { "$addFields": { "membership_key": format!("{community_id}:{id}") } },
            doc! { "$lookup": {
                "from": super::communities::MEMBERSHIPS,
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
    Ok(Some((palm_id, is_member)))
}

/// The PalmID `id`, if it exists.
pub(crate) async fn load(database: &Database, id: Uuid) -> Result<Option<PalmIdDoc>, Problem> {
    let document = database
        .collection::<PalmIdDoc>(PALM_IDS)
        .find_one(doc! { "_id": id.to_string() })
        .await?;
    Ok(document)
}

/// A verifier as its owner sees it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct VerifierView {
    /// `wallet`, `discord`, …
    pub kind: String,
    /// The external identity (address, Discord user id).
    pub subject: String,
    /// Name at the provider, when it has one.
    pub display_name: Option<String>,
    /// When it was proven.
    pub verified_at: DateTime<Utc>,
}

/// `GET /v1/me`: the owner's full view.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct MeView {
    /// PalmID.
    pub id: String,
    /// Public handle.
    pub handle: String,
    /// Number of distinct verifier kinds.
    pub level: u32,
    /// Linked wallets (lower-case hex).
    pub wallets: Vec<String>,
    /// Every verifier.
    pub verifiers: Vec<VerifierView>,
    /// Creation time.
    pub created_at: DateTime<Utc>,
}

impl From<PalmIdDoc> for MeView {
    fn from(doc: PalmIdDoc) -> Self {
        let level = doc.level();
        Self {
            wallets: doc.wallets(),
            verifiers: doc
                .verifiers
                .iter()
                .map(|v| VerifierView {
                    kind: v.kind.clone(),
                    subject: v.subject.clone(),
                    display_name: v.display_name.clone(),
                    verified_at: from_bson_time(&v.verified_at),
                })
                .collect(),
            id: doc.id,
            handle: doc.handle,
            level,
            created_at: from_bson_time(&doc.created_at),
        }
    }
}

/// `GET /v1/palm-ids/{id}`: what anyone may see. Verifier subjects are the
/// owner's private data and stay out.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct PublicView {
    /// PalmID.
    pub id: String,
    /// Public handle.
    pub handle: String,
    /// Number of distinct verifier kinds.
    pub level: u32,
    /// Kinds of verifiers held.
    pub verifier_kinds: Vec<String>,
    /// Creation time.
    pub created_at: DateTime<Utc>,
}

/// The signed-in PalmID.
#[utoipa::path(
    get, path = "/v1/me", operation_id = "getMe", tag = "palm-ids", security(("session" = [])),
    responses((status = 200, description = "The signed-in PalmID, private data included", body = MeView), NeedsSession, NotFound, Always)
)]
#[tracing::instrument(skip_all, fields(palm_id = %session.0))]
pub async fn me(State(state): State<AppState>, session: Session) -> Result<Json<MeView>, Problem> {
    let document = load(state.database(), session.0)
        .await?
        .ok_or_else(|| Problem::not_found("PalmID"))?;
    Ok(Json(document.into()))
}

/// `PATCH /v1/me` body.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateMe {
    /// New handle: 3–32 of `a-z`, `0-9`, `-`, `_`; absent or `null` keeps it.
    #[schema(schema_with = handle_schema)]
    pub handle: Option<String>,
}

fn handle_schema() -> utoipa::openapi::schema::Object {
    let mut schema = limits::HANDLE.schema();
    schema.schema_type = utoipa::openapi::schema::SchemaType::from_iter([
        utoipa::openapi::schema::Type::String,
        utoipa::openapi::schema::Type::Null,
    ]);
    schema
}

/// Edits the signed-in PalmID.
#[utoipa::path(
    patch, path = "/v1/me", operation_id = "updateMe", tag = "palm-ids", security(("session" = [])), request_body = UpdateMe,
    responses((status = 200, description = "The PalmID after the change", body = MeView), NeedsSession, BadBody, Conflict, NotFound, Always)
)]
#[tracing::instrument(skip_all, fields(palm_id = %session.0))]
pub async fn update_me(
    State(state): State<AppState>,
    session: Session,
    ApiJson(update): ApiJson<UpdateMe>,
) -> Result<Json<MeView>, Problem> {
    if let Some(handle) = &update.handle {
        limits::HANDLE.check("handle", handle)?;
        let event = Envelope::new(
            SERVICE,
            PalmIdUpdated {
                palm_id: session.0,
                handle: handle.clone(),
            },
        );
        let mut change = doc! { "$set": { "handle": handle } };
        let record = OutboxRecord::from_envelope(&event).concerning([palm_subject(session.0)]);
        outbox::stage(&mut change, std::slice::from_ref(&record));
        let result = state
            .database()
            .collection::<Document>(PALM_IDS)
            .update_one(doc! { "_id": session.0.to_string() }, change)
            .await;
        match result {
            Ok(outcome) if outcome.matched_count == 0 => return Err(Problem::not_found("PalmID")),
            Ok(_) => state
                .prompt()
                .staged(PALM_IDS, session.0.to_string(), &[record]),
            Err(error) if palm_mongo::is_duplicate_key(&error) => {
                return Err(Problem::new(
                    StatusCode::CONFLICT,
                    "handle_taken",
                    "The handle is taken",
                ));
            }
            Err(error) => return Err(error.into()),
        }
    }
    me(State(state), session).await
}

/// Anyone's public view of a PalmID.
#[utoipa::path(
    get, path = "/v1/palm-ids/{id}", operation_id = "getPalmId", tag = "palm-ids",
    params(("id" = String, Path, format = Uuid, description = "PalmID")),
    responses((status = 200, description = "What anyone may see of a PalmID", body = PublicView), NotFound, Always)
)]
#[tracing::instrument(skip_all, fields(%id))]
pub async fn public_view(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<PublicView>, Problem> {
    let id = Uuid::parse_str(&id).map_err(|_| Problem::not_found("PalmID"))?;
    let document = load(state.database(), id)
        .await?
        .ok_or_else(|| Problem::not_found("PalmID"))?;
    let level = document.level();
    let mut kinds: Vec<String> = document.verifiers.iter().map(|v| v.kind.clone()).collect();
    kinds.sort();
    kinds.dedup();
    Ok(Json(PublicView {
        id: document.id,
        handle: document.handle,
        level,
        verifier_kinds: kinds,
        created_at: from_bson_time(&document.created_at),
    }))
}
