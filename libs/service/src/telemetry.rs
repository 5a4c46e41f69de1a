//! Logs, traces and the metrics recorder.
//!
//! Logs are JSON lines on stdout with lowercase messages and structured
//! fields; the current span's fields ride along, and the spans Palm opens at
//! its edges (an HTTP request, a consumed message) carry `trace_id`, so every
//! line emitted while serving one names its trace. Traces go to an OTLP/HTTP
//! collector when `telemetry.otlp_endpoint` is set. The tracer provider is
//! installed even without an endpoint so trace ids exist and propagate
//! through RabbitMQ headers regardless.

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{Sampler, SdkTracerProvider};
use tracing_subscriber::Layer as _;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, fmt};

use crate::settings::TelemetrySettings;

/// Log targets never written, whatever the level asked for: lapin dumps a
/// returned (unroutable) message whole at WARN, payload included (an OAuth
/// code, for one). Palm reports an unroutable publish itself, by routing key
/// and message id only.
const SILENCED_TARGETS: &[&str] = &["lapin::returned_messages"];

/// Keeps the tracer provider alive; [`Telemetry::shutdown`] flushes it.
#[derive(Debug)]
pub struct Telemetry {
    provider: SdkTracerProvider,
}

/// Installs the global subscriber, tracer provider and W3C propagator, and
/// the Prometheus recorder labelled with `service`.
pub fn init(service: &'static str, settings: &TelemetrySettings) -> anyhow::Result<Telemetry> {
    crate::prometheus::install(service);
    let mut builder = SdkTracerProvider::builder()
        .with_sampler(Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(
            settings.sample_ratio,
        ))))
        .with_resource(
            opentelemetry_sdk::Resource::builder()
                .with_service_name(service)
                .build(),
        );
    if let Some(endpoint) = &settings.otlp_endpoint {
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_endpoint(format!("{}/v1/traces", endpoint.trim_end_matches('/')))
            .build()?;
        builder = builder.with_batch_exporter(exporter);
    }
    let provider = builder.build();
    opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
    opentelemetry::global::set_tracer_provider(provider.clone());

    let filter =
        EnvFilter::try_from_default_env().or_else(|_| EnvFilter::try_new(&settings.log_level))?;
    let logs = fmt::layer()
        .json()
        .with_current_span(true)
        .with_span_list(false)
        .with_target(true)
        .with_writer(std::io::stdout)
        .with_filter(tracing_subscriber::filter::filter_fn(|event| {
            !SILENCED_TARGETS.contains(&event.target())
        }));
    let traces = tracing_opentelemetry::layer()
        .with_tracer(provider.tracer(service))
        .with_filter(tracing_subscriber::filter::filter_fn(|event| {
            !SILENCED_TARGETS.contains(&event.target())
        }));
    tracing_subscriber::registry()
        .with(filter)
        .with(logs)
        .with(traces)
        .try_init()?;
    Ok(Telemetry { provider })
}

impl Telemetry {
    /// Flushes pending spans; call last, after the service stopped.
    pub fn shutdown(self) {
        if let Err(error) = self.provider.shutdown() {
            tracing::warn!(%error, "telemetry flush failed");
        }
    }
}
