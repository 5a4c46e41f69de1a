//! Message consumers: what palmdao does with the events other services send
//! it.
//!
//! # Layout
//! - [`results`]: the `palmdao.results` queue — verification results
//!   (applied through [`crate::store`]) and vote results (applied by
//!   [`crate::tally`]), each exactly once.

pub mod results;
