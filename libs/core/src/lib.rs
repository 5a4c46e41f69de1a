//! Palm's shared contracts, with no I/O: the event envelope every message
//! carries, the payloads of the domain events in `PRODUCT.md`, and the small
//! setting-validation error every service reports through.
//!
//! # Layout
//! - [`envelope`]: [`Envelope`], the [`Event`] trait a payload implements, and
//!   decoding rules (unknown fields ignored, unknown schema version rejected).
//! - [`events`]: one payload struct per event type.
//! - [`settings`]: [`InvalidSetting`], the error that names a bad config key.

pub mod envelope;
pub mod events;
pub mod settings;

pub use envelope::{DecodeError, Envelope, Event, RawEnvelope};
pub use settings::InvalidSetting;
