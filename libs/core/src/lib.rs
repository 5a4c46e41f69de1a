//! Palm's shared contracts, with no I/O: the event envelope every message
//! carries, the payloads of the domain events in `PRODUCT.md`, the Ethereum
//! signature verification both palmdao and palmvalidator rely on, and the
//! small setting-validation error every service reports through.
//!
//! # Layout
//! - [`envelope`]: [`Envelope`], the [`Event`] trait a payload implements, and
//!   decoding rules (unknown fields ignored, unknown schema version rejected).
//! - [`events`]: one payload struct per event type.
//! - [`settings`]: [`InvalidSetting`], the error that names a bad config key.
//! - [`eth`]: keccak-256, EIP-55 addresses, recoverable signatures, EIP-191.
//! - [`eip712`]: typed structured data hashing (signed votes).
//! - [`siwe`]: Sign-In with Ethereum (EIP-4361) messages: parse and verify.
//! - [`vote`]: the EIP-712 `Vote` a voter's wallet signs.
//! - [`voting`]: the open sets of voting types (how a choice allocates
//!   power) and voting-power strategies, looked up by name.

pub mod eip712;
pub mod envelope;
pub mod eth;
pub mod events;
pub mod settings;
pub mod siwe;
pub mod vote;
pub mod voting;

pub use envelope::{DecodeError, Envelope, Event, RawEnvelope};
pub use settings::InvalidSetting;
