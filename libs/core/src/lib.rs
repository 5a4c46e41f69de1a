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
//! - [`eth`]: the Ethereum primitives, alloy's (ADR 0021): addresses,
//!   signatures and recovery, keccak-256, EIP-191 and EIP-712 typed data; with
//!   the strict text forms Palm accepts and a local signing key.
//! - [`siwe`]: Sign-In with Ethereum (EIP-4361) messages: parse and verify.
//! - [`vote`]: the EIP-712 `Vote` a voter's wallet signs.
//! - [`voting`]: the open sets of voting types (how a choice allocates
//!   power) and voting-power strategies, looked up by name.

pub mod envelope;
pub mod eth;
pub mod events;
pub mod settings;
pub mod siwe;
pub mod vote;
pub mod voting;

pub use envelope::{DecodeError, Envelope, Event, RawEnvelope};
pub use settings::InvalidSetting;
