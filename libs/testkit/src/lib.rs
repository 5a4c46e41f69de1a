//! Test tooling shared by every crate's integration tests.
//!
//! Tests run against the real broker and database the test command provides
//! (`make test`, which runs `scripts/test-deps.sh`): `PALM_AMQP_URL` (default
//! the local RabbitMQ) and `PALM_MONGO_URL` (a real MongoDB, or the nx-27017
//! stand-in). Every test isolates itself with its own exchange/queue prefix
//! and database name, so tests run in parallel on one broker.
//!
//! # Layout
//! - [`env`]: URLs, unique prefixes and database names.
//! - [`wait`]: polling with a deadline instead of sleeping.
//! - [`rabbit`]: a private RabbitMQ node for tests that restart the broker.
//! - [`process`]: a service binary run as a real child process.
//! - [`cleanup`]: deleting a test's queues and exchanges.
//! - [`amqp`]: a raw broker connection with a confirming channel.

#![allow(clippy::unwrap_used, clippy::expect_used)]

pub mod amqp;
pub mod cleanup;
pub mod env;
pub mod process;
pub mod rabbit;
pub mod wait;

pub use env::{amqp_url, mongo_url, unique_database, unique_prefix};
pub use wait::eventually;
