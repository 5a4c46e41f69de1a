//! The admin HTTP server, on its own port so probes and scrapes never compete
//! with (or get exposed as) public traffic:
//!
//! - `GET /healthz`: the process is alive and serving (liveness).
//! - `GET /readyz`: a live view of every dependency check; `503` until the
//!   service declared its checks complete ([`Readiness::expect`] or
//!   [`Readiness::seal`]) and every one of them is registered and up, and
//!   again while any is down or the service is shutting down (readiness).
//! - `GET /metrics`: Prometheus text.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Json};
use axum::routing::get;
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

type CheckFuture = Pin<Box<dyn Future<Output = bool> + Send>>;
type Check = Arc<dyn Fn() -> CheckFuture + Send + Sync>;

/// Named dependency checks behind `/readyz`. Cheap to clone.
///
/// It starts not ready: a process that has not yet registered its checks
/// (it may still be waiting for its broker) must not get traffic. The
/// service declares the full set, either up front with
/// [`Readiness::expect`] (a name not registered yet reads `pending`) or
/// after registering with [`Readiness::seal`]; from then on readiness is
/// the checks' state.
#[derive(Clone, Default)]
pub struct Readiness {
    checks: Arc<RwLock<Vec<(String, Check)>>>,
    /// `None` until the service declared its checks complete; then every
    /// name that must be registered and up.
    declared: Arc<RwLock<Option<Vec<String>>>>,
    stopping: CancellationToken,
}

impl std::fmt::Debug for Readiness {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<String> = self
            .checks
            .read()
            .map(|checks| checks.iter().map(|(name, _)| name.clone()).collect())
            .unwrap_or_default();
        f.debug_struct("Readiness").field("checks", &names).finish()
    }
}

/// A check that does not answer within this time counts as down.
const CHECK_TIMEOUT: Duration = Duration::from_secs(2);

impl Readiness {
    /// Adds a check; it runs on every `/readyz` request.
    pub fn register<F, Fut>(&self, name: &str, check: F)
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = bool> + Send + 'static,
    {
        let check: Check = Arc::new(move || Box::pin(check()));
        if let Ok(mut checks) = self.checks.write() {
            checks.push((name.to_owned(), check));
        }
    }

    /// Declares every check the service will register: not ready until each
    /// one of `names` is registered and up (checks registered besides them
    /// count too).
    pub fn expect(&self, names: &[&str]) {
        if let Ok(mut declared) = self.declared.write() {
            let list = declared.get_or_insert_with(Vec::new);
            for name in names {
                if !list.iter().any(|n| n == name) {
                    list.push((*name).to_owned());
                }
            }
        }
    }

    /// Declares that every check is registered: from now on readiness is
    /// the state of the checks registered so far (and of any later one).
    pub fn seal(&self) {
        let names: Vec<String> = self
            .checks
            .read()
            .map(|checks| checks.iter().map(|(name, _)| name.clone()).collect())
            .unwrap_or_default();
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        self.expect(&names);
    }

    /// Reports not-ready from now on: the service is draining.
    pub fn mark_stopping(&self) {
        self.stopping.cancel();
    }

    /// Runs every check; returns overall readiness and each check's state.
    pub async fn evaluate(&self) -> (bool, BTreeMap<String, &'static str>) {
        let checks: Vec<(String, Check)> = self
            .checks
            .read()
            .map(|checks| checks.clone())
            .unwrap_or_default();
        let results =
            futures_util::future::join_all(checks.into_iter().map(|(name, check)| async move {
                let up = tokio::time::timeout(CHECK_TIMEOUT, check())
                    .await
                    .unwrap_or(false);
                (name, up)
            }))
            .await;
        let mut report = BTreeMap::new();
        let mut ready = !self.stopping.is_cancelled();
        if !ready {
            report.insert("shutdown".to_owned(), "stopping");
        }
        let declared = self.declared.read().ok().and_then(|d| d.clone());
        match &declared {
            None => {
                ready = false;
                report.insert("startup".to_owned(), "pending");
            }
            Some(names) => {
                for name in names {
                    if !results.iter().any(|(registered, _)| registered == name) {
                        ready = false;
                        report.insert(name.clone(), "pending");
                    }
                }
            }
        }
        for (name, up) in results {
            ready &= up;
            report.insert(name, if up { "up" } else { "down" });
        }
        (ready, report)
    }
}

/// The process-wide Prometheus recorder (see [`crate::prometheus`]).
pub fn metrics_handle() -> PrometheusHandle {
    crate::prometheus::handle()
}

#[derive(Clone)]
struct AdminState {
    readiness: Readiness,
    metrics: PrometheusHandle,
}

/// The admin router.
pub fn router(readiness: Readiness, metrics: PrometheusHandle) -> Router {
    Router::new()
        .route(
            "/healthz",
            get(|| async { Json(serde_json::json!({ "status": "ok" })) }),
        )
        .route("/readyz", get(readyz))
        .route("/metrics", get(render_metrics))
        .with_state(AdminState { readiness, metrics })
}

async fn readyz(State(state): State<AdminState>) -> impl IntoResponse {
    let (ready, checks) = state.readiness.evaluate().await;
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let body = serde_json::json!({
        "status": if ready { "ready" } else { "not_ready" },
        "checks": checks,
    });
    (status, Json(body))
}

/// Renders the metrics, after bringing the scrape-time values up to date:
/// `palm_ready` (what `/readyz` would answer now) and the
/// [`crate::prometheus::on_scrape`] hooks.
async fn render_metrics(State(state): State<AdminState>) -> impl IntoResponse {
    let (ready, _) = state.readiness.evaluate().await;
    metrics::gauge!("palm_ready").set(if ready { 1.0 } else { 0.0 });
    crate::prometheus::run_scrape_hooks();
    state.metrics.run_upkeep();
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4",
        )],
        state.metrics.render(),
    )
}

/// Serves the admin router on `listener` until `shutdown`.
pub async fn serve(
    listener: TcpListener,
    readiness: Readiness,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let app = router(readiness, metrics_handle());
    axum::serve(listener, app)
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await
}

#[cfg(test)]
mod tests {
    use super::Readiness;

    fn up() -> std::future::Ready<bool> {
        std::future::ready(true)
    }

    #[tokio::test]
    async fn not_ready_until_the_checks_are_declared_complete() {
        let readiness = Readiness::default();
        let (ready, report) = readiness.evaluate().await;
        assert!(!ready, "no checks yet is not ready: {report:?}");
        assert_eq!(report.get("startup"), Some(&"pending"));

        readiness.register("mongo", up);
        assert!(!readiness.evaluate().await.0, "registered but not sealed");
        readiness.seal();
        let (ready, report) = readiness.evaluate().await;
        assert!(ready, "{report:?}");
        assert_eq!(report.len(), 1);
    }

    #[tokio::test]
    async fn an_expected_check_not_yet_registered_is_pending() {
        let readiness = Readiness::default();
        readiness.expect(&["mongo", "amqp"]);
        readiness.register("mongo", up);
        let (ready, report) = readiness.evaluate().await;
        assert!(!ready);
        assert_eq!(report.get("amqp"), Some(&"pending"));
        assert_eq!(report.get("mongo"), Some(&"up"));
        readiness.register("amqp", || std::future::ready(false));
        let (ready, report) = readiness.evaluate().await;
        assert!(!ready);
        assert_eq!(report.get("amqp"), Some(&"down"));
    }

    #[tokio::test]
    async fn stopping_is_not_ready() {
        let readiness = Readiness::default();
        readiness.register("mongo", up);
        readiness.seal();
        readiness.mark_stopping();
        let (ready, report) = readiness.evaluate().await;
        assert!(!ready);
        assert_eq!(report.get("shutdown"), Some(&"stopping"));
    }
}
