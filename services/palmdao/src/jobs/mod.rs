//! Background jobs palmdao runs on one replica at a time, under a lease.
//!
//! # Layout
//! - [`scheduler`]: opens and closes proposals on time.

pub mod scheduler;
