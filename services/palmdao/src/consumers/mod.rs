//! Message consumers: what palmdao does with the events other services send
//! it.
//!
//! # Layout
//! - [`results`]: the `palmdao.results` queue — verification results
//!   and vote results (a vote decided once, its ballot placed by
//!   `store::ballots`), each exactly once.

pub mod results;
