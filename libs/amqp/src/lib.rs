//! Everything Palm does with RabbitMQ, on top of lapin.
//!
//! The rules it enforces (see `docs/architecture.md`): publishes are
//! persistent, `mandatory` and confirmed, pipelined under a bounded window;
//! queues are quorum queues with a delivery limit and an at-least-once
//! dead-letter queue; consumers ack only after the handler succeeded, retry
//! transient failures through delay queues and dead-letter everything else
//! with a reason; everything survives a broker restart inside the process.
//!
//! # Layout
//! - [`settings`]: [`AmqpSettings`], the `amqp.*` configuration section.
//! - [`topology`]: [`Names`] (prefix-aware naming), [`Topology`] and
//!   [`QueueSpec`], declared from code on every (re)connect.
//! - [`broker`]: [`Broker`], the connection supervisor that reconnects with
//!   backoff and re-declares the topology.
//! - [`publisher`]: [`Publisher`] and [`OutgoingMessage`].
//! - [`consumer`]: [`Consumer`], the [`Handler`] trait and [`HandlerError`].
//! - [`dlq`]: operator tools for dead-letter queues: depth, reading without
//!   consuming, replay to the origin, purge (`palmctl dlq` stands on it).
//! - [`headers`]: header names and W3C trace-context propagation.

pub mod broker;
pub mod consumer;
pub mod dlq;
pub mod headers;
pub mod publisher;
pub mod settings;
pub mod topology;

pub use broker::{Broker, BrokerError};
pub use consumer::{Consumer, Handler, HandlerError, Incoming};
pub use publisher::{FailureReason, OutgoingMessage, PublishError, Publisher};
pub use settings::AmqpSettings;
pub use topology::{Names, QueueSpec, Topology};

/// Re-exported so services and tests name lapin types through one version.
pub use lapin;
