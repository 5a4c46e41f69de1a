//! `palmdao`: the public HTTP API and the only writer of domain data.
//!
//! It serves the API ([`api`]: Sign-In with Ethereum, sessions, PalmIDs,
//! verifications, communities, discussions, proposals, vote intake, audit) on
//! `http.addr`, applies results from the validators ([`consumers`]), opens
//! and closes proposals on time ([`jobs`]), declares its MongoDB indexes and
//! RabbitMQ queue, and runs the outbox relay that publishes the events its
//! writes stage right after each write (ADR 0030), with a sweeper on one
//! replica at a time under a lease. It also declares the indexes
//! palmplatformmetrics' aggregations run on ([`store::platform`]), since
//! that service never writes.
//!
//! # Layout (ADR 0031: arrows point down only, and only `store` touches
//! MongoDB; `tests/tests/palmdao_layers.rs` checks both)
//! - [`api`]: the HTTP edge — routes, extractors, problems, OpenAPI,
//!   sessions, rate limiting; parses requests into domain types and maps
//!   results to responses.
//! - [`consumers`]: the validators' results, applied once.
//! - [`jobs`]: the proposal scheduler.
//! - [`store`]: one module per collection, the only MongoDB code.
//! - [`domain`]: the rules (levels, eligibility, supersession, the tally,
//!   the proposal lifecycle), with no HTTP and no storage types.
//! - [`settings`]: the service's name, collections, routes and settings (a
//!   leaf every layer may use).

pub mod api;
pub mod consumers;
pub mod domain;
pub mod jobs;
pub mod settings;
pub mod store;

use std::time::Duration;

use palm_amqp::{Broker, Consumer, Incoming, Publisher, Topology};
use palm_service::Runtime;

pub use settings::{
    AuthSettings, CommunitySettings, HttpSettings, OUTBOX_COLLECTIONS, OutboxSettings,
    ProposalSettings, REQUIRED_ROUTES, SERVICE, Settings, queues,
};

/// Writes whose events may wait in memory for the prompt outbox path; past
/// this the sweeper publishes them (after `outbox.prompt_grace_ms`).
const PROMPT_CAPACITY: usize = 8_192;

/// Runs palmdao until `runtime.shutdown`.
pub async fn run(settings: Settings, runtime: Runtime) -> anyhow::Result<()> {
    use anyhow::Context as _;

    // Not ready until all three are registered and up (the broker may be
    // unreachable for a while; /readyz then says amqp pending or down; the
    // public API listens only after the indexes exist).
    runtime.readiness.expect(&["mongo", "amqp", "http"]);
    let store = store::Store::connect(&settings.mongo, SERVICE)
        .await
        .context("failed to configure the MongoDB client")?;
    runtime.readiness.register("mongo", store.readiness_check());
    let retention = Duration::from_secs(settings.outbox.idempotency_retention_hours * 3600);
    store
        .ensure_outbox_indexes(OUTBOX_COLLECTIONS, retention)
        .await?;

    let broker = Broker::start(
        settings.amqp.clone(),
        Topology::new(&settings.amqp, queues()),
    );
    runtime.readiness.register("amqp", broker.readiness_check());
    let publisher = Publisher::new(broker.clone());

    store.ensure_indexes().await?;
    api::register_metrics();
    for outcome in ["valid", "rejected"] {
        let _ = palm_service::metrics::counter!("palm_votes_applied_total", "outcome" => outcome);
    }
    let (relay, prompt) = store
        .outbox_relay(OUTBOX_COLLECTIONS, publisher.clone())
        .with_batch_size(settings.outbox.batch_size)
        .with_poll_interval(Duration::from_millis(settings.outbox.poll_interval_ms))
        .with_required_routes(REQUIRED_ROUTES)
        // Half the grace period: the pass under way finishes and is marked,
        // and the lease is released well before the process must be gone.
        .with_drain_timeout(Duration::from_millis(
            settings.runtime.shutdown.grace_ms / 2,
        ))
        .with_audit(store::audit::audit_log())
        .with_prompt(
            PROMPT_CAPACITY,
            Duration::from_millis(settings.outbox.prompt_grace_ms),
        );
    // Every write from here on hands what it staged to the prompt path.
    let store = store
        .with_prompt(prompt)
        .with_tally_max_age(Duration::from_millis(settings.proposals.tally_max_age_ms));
    let listener = tokio::net::TcpListener::bind(settings.http.addr)
        .await
        .with_context(|| format!("failed to bind the public API on {}", settings.http.addr))?;
    let public_addr = listener.local_addr().context("no local address")?;
    tracing::info!(addr = %public_addr, "public api listening");
    let router = api::router(
        api::AppState::new(store.clone(), &settings)?,
        &settings.http,
    );
    let serving = tokio::spawn(api::serve(listener, router, runtime.shutdown.clone()));
    // Traffic only once the public API takes connections: each /readyz
    // connects to it (on loopback when it listens on every address).
    let probe = reachable(public_addr);
    runtime.readiness.register("http", move || async move {
        tokio::net::TcpStream::connect(probe).await.is_ok()
    });

    let results = consumers::results::Results::new(store.clone());
    let consumer = Consumer::new(
        &broker,
        &publisher,
        "palmdao.results",
        move |message: Incoming| {
            let results = results.clone();
            async move { results.handle(message).await }
        },
    );
    let consuming = tokio::spawn(consumer.run(runtime.shutdown.clone()));

    // Standbys try to take a lease over every ttl/3 (a takeover after a
    // crash needs the ttl to run out anyway), so an idle replica sends a
    // handful of commands a minute, not four a second per lease.
    let holder = format!("{SERVICE}-{}", runtime.instance_id());
    let outbox_ttl = Duration::from_millis(settings.outbox.lease_ttl_ms);
    let lease = store
        .lease("palmdao.outbox", &holder, outbox_ttl)
        .with_standby_poll(outbox_ttl / 3);
    let scheduler = jobs::scheduler::Scheduler::new(
        store.clone(),
        Duration::from_millis(settings.proposals.scheduler_interval_ms),
        Duration::from_millis(settings.proposals.close_grace_ms),
    );
    let scheduler_ttl = Duration::from_millis(settings.proposals.lease_ttl_ms);
    let scheduler_lease = store
        .lease("palmdao.scheduler", &holder, scheduler_ttl)
        .with_standby_poll(scheduler_ttl / 3);
    let scheduling = {
        let shutdown = runtime.shutdown.clone();
        tokio::spawn(async move { scheduler.run(scheduler_lease, shutdown).await })
    };
    relay.run(lease, runtime.shutdown.clone()).await;
    scheduling
        .await
        .context("the proposal scheduler task failed")?;

    consuming
        .await
        .context("the results consumer task failed")?
        .context("the results consumer failed")?;
    serving
        .await
        .context("the public API task failed")?
        .context("the public API server failed")?;
    broker.close().await;
    Ok(())
}

/// Where this process can reach a listener bound to `addr`: the loopback
/// address of its family when `addr` is unspecified (`0.0.0.0`, `::`).
fn reachable(addr: std::net::SocketAddr) -> std::net::SocketAddr {
    use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
    match addr.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => (Ipv4Addr::LOCALHOST, addr.port()).into(),
        IpAddr::V6(ip) if ip.is_unspecified() => (Ipv6Addr::LOCALHOST, addr.port()).into(),
        _ => addr,
    }
}
