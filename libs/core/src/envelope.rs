//! The event envelope: the metadata every message on the bus carries around
//! its payload.
//!
//! The envelope id is a UUID v7 and is also the AMQP `message_id`, so
//! consumers can deduplicate on it. Decoding ignores unknown fields (producers
//! may add fields without a coordinated deploy) but refuses an unknown schema
//! version: a consumer cannot guess what a breaking change meant, so such a
//! message is a permanent error and belongs in a DLQ.

use chrono::{DateTime, Utc};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// A payload type that travels on the bus.
pub trait Event: Serialize + DeserializeOwned {
    /// Event type, also the routing key (`vote.submitted`).
    const TYPE: &'static str;
    /// Version of this payload's schema; bumped on a breaking change.
    const SCHEMA_VERSION: u32;
}

/// A UUID (version 8, RFC 9562 "custom") from keccak-256 of `cause` and
/// `event_type`: the same inputs always give the same id.
pub fn derived_id(cause: Uuid, event_type: &str) -> Uuid {
    let mut input = cause.as_bytes().to_vec();
    input.extend_from_slice(event_type.as_bytes());
    let digest = crate::eth::keccak256(&input);
    let mut bytes = [0_u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    uuid::Builder::from_custom_bytes(bytes).into_uuid()
}

/// An event with its metadata.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Envelope<P> {
    /// UUID v7, unique per event; also the AMQP `message_id`.
    pub id: Uuid,
    /// Event type, equal to `P::TYPE` and to the routing key.
    #[serde(rename = "type")]
    pub event_type: String,
    /// Schema version of `payload`.
    pub schema_version: u32,
    /// When the domain change happened (not when it was published).
    pub occurred_at: DateTime<Utc>,
    /// Id shared by every event caused by the same original request.
    pub correlation_id: Uuid,
    /// Id of the event or request that directly caused this one.
    pub causation_id: Option<Uuid>,
    /// Name of the service that produced the event.
    pub producer: String,
    /// The event itself.
    pub payload: P,
}

impl<P: Event> Envelope<P> {
    /// Wraps a payload as a new event that starts its own correlation chain.
    pub fn new(producer: &str, payload: P) -> Self {
        let id = Uuid::now_v7();
        Self {
            id,
            event_type: P::TYPE.to_owned(),
            schema_version: P::SCHEMA_VERSION,
            occurred_at: Utc::now(),
            correlation_id: id,
            causation_id: None,
            producer: producer.to_owned(),
            payload,
        }
    }

    /// Wraps a payload as an event caused by `cause`, keeping its correlation.
    pub fn caused_by<C>(producer: &str, payload: P, cause: &Envelope<C>) -> Self {
        Self {
            correlation_id: cause.correlation_id,
            causation_id: Some(cause.id),
            ..Self::new(producer, payload)
        }
    }

    /// The event `cause` deterministically leads to: like [`Self::caused_by`],
    /// but its id is derived from the cause's id and this event's type, so
    /// handling a redelivered message again yields the same event id and the
    /// receiver's deduplication absorbs it.
    pub fn derived_from<C>(producer: &str, payload: P, cause: &Envelope<C>) -> Self {
        Self {
            id: derived_id(cause.id, P::TYPE),
            ..Self::caused_by(producer, payload, cause)
        }
    }

    /// Serializes the envelope as the JSON message body.
    pub fn to_json(&self) -> Vec<u8> {
        // Serializing plain structs of strings, numbers and ids cannot fail;
        // an empty body would be caught by the consumer as malformed anyway.
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Decodes a message body, checking type and schema version.
    pub fn from_json(body: &[u8]) -> Result<Self, DecodeError> {
        let raw = RawEnvelope::from_json(body)?;
        raw.into_typed()
    }
}

/// An envelope whose payload is not decoded yet, for dispatching on type.
pub type RawEnvelope = Envelope<serde_json::Value>;

impl RawEnvelope {
    /// Decodes only the envelope, leaving the payload as JSON.
    pub fn from_json(body: &[u8]) -> Result<Self, DecodeError> {
        serde_json::from_slice(body).map_err(DecodeError::Malformed)
    }

    /// Decodes the payload as `P`, refusing a wrong type or schema version.
    pub fn into_typed<P: Event>(self) -> Result<Envelope<P>, DecodeError> {
        if self.event_type != P::TYPE {
            return Err(DecodeError::UnexpectedType {
                expected: P::TYPE,
                found: self.event_type,
            });
        }
        if self.schema_version != P::SCHEMA_VERSION {
            return Err(DecodeError::UnsupportedSchemaVersion {
                event_type: P::TYPE,
                supported: P::SCHEMA_VERSION,
                found: self.schema_version,
            });
        }
        let payload = serde_json::from_value(self.payload).map_err(DecodeError::Malformed)?;
        Ok(Envelope {
            id: self.id,
            event_type: self.event_type,
            schema_version: self.schema_version,
            occurred_at: self.occurred_at,
            correlation_id: self.correlation_id,
            causation_id: self.causation_id,
            producer: self.producer,
            payload,
        })
    }
}

/// Why a message body is not a usable event. Every variant is permanent:
/// redelivering the same bytes cannot succeed.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// The body is not JSON of the envelope's or payload's shape.
    #[error("malformed event: {0}")]
    Malformed(#[source] serde_json::Error),
    /// The envelope names a different event type than the consumer expects.
    #[error("unexpected event type `{found}`, expected `{expected}`")]
    UnexpectedType {
        /// Type the consumer decodes.
        expected: &'static str,
        /// Type the message carries.
        found: String,
    },
    /// The schema version is not one this build understands.
    #[error("unsupported schema version {found} for `{event_type}` (supported: {supported})")]
    UnsupportedSchemaVersion {
        /// Type of the event.
        event_type: &'static str,
        /// Version this build understands.
        supported: u32,
        /// Version the message carries.
        found: u32,
    },
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::MemberJoined;

    fn joined() -> MemberJoined {
        MemberJoined {
            community_id: Uuid::now_v7(),
            community_slug: "palm".into(),
            palm_id: Uuid::now_v7(),
        }
    }

    #[test]
    fn round_trips_and_uses_v7_ids() {
        let env = Envelope::new("palmdao", joined());
        assert_eq!(env.id.get_version_num(), 7);
        assert_eq!(env.correlation_id, env.id);
        let back = Envelope::<MemberJoined>::from_json(&env.to_json()).unwrap();
        assert_eq!(back, env);
    }

    #[test]
    fn a_derived_event_has_the_same_id_for_the_same_cause_and_type() {
        let cause = Envelope::new("palmdao", joined());
        let a = Envelope::derived_from("palmvalidator", joined(), &cause);
        let b = Envelope::derived_from("palmvalidator", joined(), &cause);
        assert_eq!(a.id, b.id);
        assert_eq!(a.id.get_version_num(), 8);
        assert_eq!(
            (a.causation_id, a.correlation_id),
            (Some(cause.id), cause.correlation_id)
        );
        assert_ne!(
            derived_id(cause.id, "vote.validated"),
            derived_id(cause.id, "vote.rejected")
        );
        let other = Envelope::new("palmdao", joined());
        assert_ne!(
            Envelope::derived_from("palmvalidator", joined(), &other).id,
            a.id
        );
    }

    #[test]
    fn ignores_unknown_fields() {
        let env = Envelope::new("palmdao", joined());
        let mut json: serde_json::Value = serde_json::from_slice(&env.to_json()).unwrap();
        json["added_later"] = serde_json::json!(true);
        json["payload"]["also_new"] = serde_json::json!("x");
        let back = Envelope::<MemberJoined>::from_json(json.to_string().as_bytes()).unwrap();
        assert_eq!(back.payload, env.payload);
    }

    #[test]
    fn refuses_unknown_schema_version() {
        let mut env = Envelope::new("palmdao", joined());
        env.schema_version = 99;
        let err = Envelope::<MemberJoined>::from_json(&env.to_json()).unwrap_err();
        assert!(matches!(
            err,
            DecodeError::UnsupportedSchemaVersion { found: 99, .. }
        ));
    }

    #[test]
    fn refuses_other_type_and_garbage() {
        let mut env = Envelope::new("palmdao", joined());
        env.event_type = "vote.submitted".into();
        assert!(matches!(
            Envelope::<MemberJoined>::from_json(&env.to_json()),
            Err(DecodeError::UnexpectedType { .. })
        ));
        assert!(matches!(
            Envelope::<MemberJoined>::from_json(b"{not json"),
            Err(DecodeError::Malformed(_))
        ));
    }

    #[test]
    fn caused_by_keeps_correlation() {
        let first = Envelope::new("palmdao", joined());
        let second = Envelope::caused_by("palmvalidator", joined(), &first);
        assert_eq!(second.correlation_id, first.correlation_id);
        assert_eq!(second.causation_id, Some(first.id));
    }
}
