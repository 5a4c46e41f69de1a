//! The rules of palmdao's domain, with no HTTP and no storage: pure types and
//! functions that the API, the consumers, the jobs and the store all use.
//!
//! # Layout
//! - [`palm_ids`]: a PalmID and its verifiers, the level rule
//!   ([`palm_ids::level_of`]), one spelling per external identity.
//! - [`communities`]: a community and its memberships, the level gates to
//!   create and join one, admin rights.
//! - [`proposals`]: a proposal's rules and lifecycle (its status at a
//!   time), the choice-shape rule.
//! - [`tally`]: ballots, supersession (the later signed vote wins) and the
//!   tally.
//! - [`audit`]: the subjects the audit log lists events by.

pub mod audit;
pub mod communities;
pub mod palm_ids;
pub mod proposals;
pub mod tally;
