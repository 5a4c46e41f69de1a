//! `verifications`: a request to prove an external identity, stored
//! `pending` with its `verification.requested.<kind>` event in the same
//! write, then completed once (`verified` or `rejected`) by the result the
//! validator sends back. The request's secrets (signature, OAuth code)
//! travel only in the event; the document keeps what the owner may see.

use chrono::{DateTime, Utc};
use palm_core::Envelope;
use palm_core::events::{DiscordVerificationRequested, WalletVerificationRequested};
use palm_mongo::mongodb::bson::{DateTime as BsonDateTime, Document, doc};
use palm_mongo::outbox::{self, OutboxRecord};
use uuid::Uuid;

use super::database::{Result, Store, from_bson_time, to_bson_time};
use crate::domain::audit::palm_subject;
use crate::settings::SERVICE;

/// Verification documents.
pub const VERIFICATIONS: &str = "verifications";

/// What a PalmID offers as proof, by kind.
#[derive(Debug, Clone, Copy)]
pub enum Proof<'a> {
    /// Another wallet: a SIWE message and its signature.
    Wallet {
        /// EIP-4361 message signed by the wallet.
        message: &'a str,
        /// Its EIP-191 signature.
        signature: &'a str,
    },
    /// A Discord account: an OAuth2 authorization code.
    Discord {
        /// Authorization code from Discord's redirect.
        code: &'a str,
        /// The redirect URI the code was issued for.
        redirect_uri: &'a str,
    },
}

impl Proof<'_> {
    /// The verifier kind it proves.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Wallet { .. } => "wallet",
            Self::Discord { .. } => "discord",
        }
    }
}

/// A verification as stored; missing fields read as empty.
#[derive(Debug, Clone, PartialEq)]
pub struct Verification {
    /// Id.
    pub id: String,
    /// The PalmID it is for.
    pub palm_id: String,
    /// `wallet`, `discord`.
    pub kind: String,
    /// `pending`, `verified`, `rejected`.
    pub status: String,
    /// Why it was rejected.
    pub reason: Option<String>,
    /// The proven identity, once verified.
    pub subject: Option<String>,
    /// When it was requested.
    pub requested_at: DateTime<Utc>,
    /// When the result was applied.
    pub completed_at: Option<DateTime<Utc>>,
}

fn verification(found: &Document) -> Verification {
    let text = |key: &str| found.get_str(key).ok().map(str::to_owned);
    Verification {
        id: text("_id").unwrap_or_default(),
        palm_id: text("palm_id").unwrap_or_default(),
        kind: text("kind").unwrap_or_default(),
        status: text("status").unwrap_or_default(),
        reason: text("reason"),
        subject: text("subject"),
        requested_at: found
            .get_datetime("requested_at")
            .map(from_bson_time)
            .unwrap_or_default(),
        completed_at: found.get_datetime("completed_at").ok().map(from_bson_time),
    }
}

/// Stores a pending verification of `proof` for `palm_id`, requested at
/// `now`, staging its request event; returns its id.
#[tracing::instrument(skip_all, fields(%palm_id, kind = proof.kind()))]
pub async fn request(
    store: &Store,
    palm_id: Uuid,
    proof: Proof<'_>,
    now: DateTime<Utc>,
) -> Result<Uuid> {
    let id = Uuid::now_v7();
    let record = match proof {
        Proof::Wallet { message, signature } => {
            let event = Envelope::new(
                SERVICE,
                WalletVerificationRequested {
                    verification_id: id,
                    palm_id,
                    message: message.to_owned(),
                    signature: signature.to_owned(),
                },
            );
            OutboxRecord::from_envelope(&event).concerning([palm_subject(palm_id)])
        }
        Proof::Discord { code, redirect_uri } => {
            let event = Envelope::new(
                SERVICE,
                DiscordVerificationRequested {
                    verification_id: id,
                    palm_id,
                    code: code.to_owned(),
                    redirect_uri: redirect_uri.to_owned(),
                },
            );
            OutboxRecord::from_envelope(&event).concerning([palm_subject(palm_id)])
        }
    };
    let mut document = doc! {
        "_id": id.to_string(),
        "palm_id": palm_id.to_string(),
        "kind": proof.kind(),
        "status": "pending",
        "requested_at": to_bson_time(now),
    };
    outbox::attach(&mut document, std::slice::from_ref(&record));
    store
        .database
        .collection::<Document>(VERIFICATIONS)
        .insert_one(document)
        .await?;
    store.staged(VERIFICATIONS, id.to_string(), &[record]);
    Ok(id)
}

/// The verification `id`, if it is `palm_id`'s.
#[tracing::instrument(skip_all, fields(%id, %palm_id))]
pub async fn find_owned(store: &Store, id: &str, palm_id: Uuid) -> Result<Option<Verification>> {
    let found = store
        .database
        .collection::<Document>(VERIFICATIONS)
        .find_one(doc! { "_id": id, "palm_id": palm_id.to_string() })
        .await?;
    Ok(found.as_ref().map(verification))
}

/// The verification `id`, whoever's it is.
#[tracing::instrument(skip_all, fields(%id))]
pub async fn load(store: &Store, id: &str) -> Result<Option<Verification>> {
    let found = store
        .database
        .collection::<Document>(VERIFICATIONS)
        .find_one(doc! { "_id": id })
        .await?;
    Ok(found.as_ref().map(verification))
}

/// Completes the verification `id` with `status` (and the proven `subject`
/// or the rejection's `reason`), if it is still pending: the transition
/// happens once.
#[tracing::instrument(skip_all, fields(%id, status))]
pub async fn complete(
    store: &Store,
    id: &str,
    status: &str,
    subject: Option<String>,
    reason: Option<String>,
) -> Result<()> {
    let mut change = doc! { "status": status, "completed_at": BsonDateTime::now() };
    if let Some(subject) = subject {
        change.insert("subject", subject);
    }
    if let Some(reason) = reason {
        change.insert("reason", reason);
    }
    store
        .database
        .collection::<Document>(VERIFICATIONS)
        .update_one(
            doc! { "_id": id, "status": "pending" },
            doc! { "$set": change },
        )
        .await?;
    Ok(())
}
