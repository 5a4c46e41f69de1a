//! The process-wide Prometheus recorder and what every service exports
//! through it (the names are the contract in `docs/metrics.md`).
//!
//! [`install`] builds the recorder once per process: the constant label
//! `service` on every series, histogram buckets that fit each histogram
//! ([`BUCKETS`]; a histogram missing there would render as a summary, which
//! cannot be aggregated across replicas), `palm_build_info`, and the process
//! metrics of the `metrics-process` crate. [`on_scrape`] registers work that
//! runs just before each `/metrics` render (process metrics, gauges computed
//! from the clock such as a snapshot's age).

use std::sync::{Mutex, OnceLock};

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// The build's version (the workspace's).
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// The source revision the build came from: `PALM_REVISION` at build time
/// (the image build passes the commit), `unknown` otherwise.
pub const REVISION: &str = match option_env!("PALM_REVISION") {
    Some(revision) if !revision.is_empty() => revision,
    _ => "unknown",
};

/// HTTP requests on palmdao's public API: its rate limit keeps most under
/// tens of milliseconds; the request timeout (10 s by default) caps the tail.
pub const HTTP_SECONDS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// One consumer handler run: milliseconds for a database write, seconds
/// for a Discord verification waiting on rate limits.
pub const HANDLER_SECONDS: &[f64] = &[
    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];

/// Publish → broker confirm: about a millisecond on a healthy quorum queue,
/// up to the publish timeout (30 s by default) across a reconnect.
pub const CONFIRM_SECONDS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0, 30.0,
];

/// One HTTP request to Discord: tens to hundreds of milliseconds, capped by
/// `discord.request_timeout_ms` (10 s by default).
pub const DISCORD_SECONDS: &[f64] = &[0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

/// Every histogram a Palm service records, with its buckets.
pub const BUCKETS: &[(&str, &[f64])] = &[
    ("palm_http_request_duration_seconds", HTTP_SECONDS),
    ("palm_amqp_handler_duration_seconds", HANDLER_SECONDS),
    (
        "palm_amqp_publish_confirm_duration_seconds",
        CONFIRM_SECONDS,
    ),
    ("palm_discord_request_duration_seconds", DISCORD_SECONDS),
];

type Hook = Box<dyn Fn() + Send + Sync>;

fn hooks() -> &'static Mutex<Vec<Hook>> {
    static HOOKS: OnceLock<Mutex<Vec<Hook>>> = OnceLock::new();
    HOOKS.get_or_init(|| Mutex::new(Vec::new()))
}

/// Runs `hook` before every `/metrics` render, for values that are cheap to
/// compute and must be current when scraped.
pub fn on_scrape(hook: impl Fn() + Send + Sync + 'static) {
    if let Ok(mut hooks) = hooks().lock() {
        hooks.push(Box::new(hook));
    }
}

/// Runs the [`on_scrape`] hooks.
pub(crate) fn run_scrape_hooks() {
    if let Ok(hooks) = hooks().lock() {
        for hook in hooks.iter() {
            hook();
        }
    }
}

/// The recorder's configuration for `service`.
pub fn builder(service: &str) -> PrometheusBuilder {
    let mut builder = PrometheusBuilder::new().add_global_label("service", service);
    for (name, buckets) in BUCKETS {
        // Only an empty list is refused, and none is.
        builder = match builder.set_buckets_for_metric(Matcher::Full((*name).to_owned()), buckets) {
            Ok(builder) => builder,
            Err(error) => panic!("buckets of {name}: {error}"),
        };
    }
    builder
}

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// Installs the process-wide recorder for `service` (once; later calls
/// return the same handle), then records `palm_build_info`, starts the
/// process metrics and `palm_ready` at 0 until the first scrape evaluates
/// readiness.
pub fn install(service: &str) -> PrometheusHandle {
    HANDLE
        .get_or_init(|| {
            let recorder = builder(service).build_recorder();
            let handle = recorder.handle();
            // Fails only if another recorder is installed; then this handle
            // renders nothing, which the metrics tests would catch.
            let _ = metrics::set_global_recorder(recorder);
            metrics::gauge!(
                "palm_build_info",
                "service" => service.to_owned(),
                "version" => VERSION,
                "revision" => REVISION
            )
            .set(1.0);
            metrics::gauge!("palm_ready").set(0.0);
            let process = metrics_process::Collector::default();
            process.describe();
            process.collect();
            on_scrape(move || process.collect());
            handle
        })
        .clone()
}

/// The installed recorder's handle; installs one labelled `palm` if no
/// service did (library tests).
pub fn handle() -> PrometheusHandle {
    match HANDLE.get() {
        Some(handle) => handle.clone(),
        None => install("palm"),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn render(record: impl FnOnce()) -> String {
        let recorder = builder("palmtest").build_recorder();
        let handle = recorder.handle();
        metrics::with_local_recorder(&recorder, record);
        handle.render()
    }

    #[test]
    fn every_histogram_renders_as_a_histogram_with_its_buckets() {
        let text = render(|| {
            for (name, _) in BUCKETS {
                metrics::histogram!(*name).record(0.003);
            }
        });
        for (name, buckets) in BUCKETS {
            assert!(
                text.contains(&format!("# TYPE {name} histogram")),
                "{name}: {text}"
            );
            for bound in *buckets {
                assert!(
                    text.contains(&format!(
                        "{name}_bucket{{service=\"palmtest\",le=\"{bound}\"}}"
                    )),
                    "{name} le={bound}: {text}"
                );
            }
            assert!(text.contains(&format!("{name}_count{{service=\"palmtest\"}} 1")));
        }
        assert!(!text.contains("quantile"), "no summaries: {text}");
    }

    #[test]
    fn buckets_grow_and_end_at_the_timeout_they_fit() {
        for (name, buckets) in BUCKETS {
            assert!(buckets.windows(2).all(|w| w[0] < w[1]), "{name}");
            assert!(buckets.len() >= 8, "{name}: enough resolution");
        }
        assert_eq!(HTTP_SECONDS.last(), Some(&10.0), "request timeout");
        assert_eq!(CONFIRM_SECONDS.last(), Some(&30.0), "publish timeout");
        assert_eq!(DISCORD_SECONDS.last(), Some(&10.0), "discord timeout");
    }

    #[test]
    fn every_series_carries_the_service_label() {
        let text = render(|| {
            metrics::counter!("palm_amqp_published_total").increment(2);
            metrics::counter!("palm_amqp_consumed_total", "queue" => "q").increment(1);
        });
        assert!(text.contains("palm_amqp_published_total{service=\"palmtest\"} 2"));
        assert!(text.contains("palm_amqp_consumed_total{service=\"palmtest\",queue=\"q\"} 1"));
    }

    #[test]
    fn the_revision_is_the_build_s_or_unknown() {
        match option_env!("PALM_REVISION") {
            Some(revision) if !revision.is_empty() => assert_eq!(REVISION, revision),
            _ => assert_eq!(REVISION, "unknown"),
        }
        assert_eq!(VERSION, env!("CARGO_PKG_VERSION"));
    }

    #[test]
    fn a_registered_counter_renders_at_zero_before_any_increment() {
        let text = render(|| {
            let _ = metrics::counter!("palm_amqp_publish_failures_total", "reason" => "nack");
            let _ = metrics::histogram!("palm_amqp_handler_duration_seconds", "queue" => "q");
        });
        assert!(
            text.contains(
                "palm_amqp_publish_failures_total{service=\"palmtest\",reason=\"nack\"} 0"
            ),
            "{text}"
        );
        assert!(
            text.contains(
                "palm_amqp_handler_duration_seconds_count{service=\"palmtest\",queue=\"q\"} 0"
            ),
            "{text}"
        );
    }
}
