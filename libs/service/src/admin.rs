//! The admin HTTP server, on its own port so probes and scrapes never compete
//! with (or get exposed as) public traffic:
//!
//! - `GET /healthz`: the process is alive and serving (liveness).
//! - `GET /readyz`: a live view of every registered dependency check; `503`
//!   while any is down or the service is shutting down (readiness).
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
#[derive(Clone, Default)]
pub struct Readiness {
    checks: Arc<RwLock<Vec<(String, Check)>>>,
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
