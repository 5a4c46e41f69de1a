//! The runtime every Palm binary shares, so `main.rs` is one line:
//! `palm_service::run("palmdao", palmdao::run)`.
//!
//! [`run`] loads and validates the configuration (a bad value exits non-zero
//! naming the key), starts JSON logging with trace ids and optional OTLP trace
//! export, installs the Prometheus recorder, serves `/healthz`, `/readyz` and
//! `/metrics` on the admin port, turns SIGTERM/SIGINT into a cancellation the
//! service drains on, and enforces the shutdown grace period.
//!
//! # Layout
//! - [`config`]: layered loading and the [`ServiceSettings`] trait.
//! - [`settings`]: the runtime sections every service has (`admin`,
//!   `telemetry`, `shutdown`).
//! - [`telemetry`]: logs and traces.
//! - [`admin`]: the admin HTTP server and the [`Readiness`] registry.
//! - [`http`]: the one way to build an outgoing HTTP client (TLS ready).
//! - [`prometheus`]: the recorder, its `service` label, histogram buckets,
//!   `palm_build_info`, process metrics and scrape-time hooks.
//! - [`runtime`]: [`run`] and the [`Runtime`] handed to a service.

pub mod admin;
pub mod config;
pub mod http;
pub mod prometheus;
pub mod runtime;
pub mod settings;
pub mod telemetry;

pub use admin::Readiness;
pub use config::{ConfigError, ServiceSettings};
pub use runtime::{Runtime, run};
pub use settings::RuntimeSettings;

/// Re-exported so every service uses the same versions.
pub use {metrics, opentelemetry, tracing};
