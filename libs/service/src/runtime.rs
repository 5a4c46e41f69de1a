//! [`run`]: the whole life of a service process.

use std::future::Future;
use std::process::ExitCode;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::{Readiness, ServiceSettings, admin, config, telemetry};

/// Exit code for a configuration the service cannot run with (`EX_CONFIG`).
pub const EXIT_CONFIG: u8 = 78;

/// Exit code for a command line the binary does not understand (`EX_USAGE`).
pub const EXIT_USAGE: u8 = 64;

/// What the command line asks of a service binary.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// No arguments: run the service.
    Serve,
    /// `--check-config`: load and validate the settings exactly as at
    /// start-up, print the effective settings (secrets redacted) and exit
    /// 0, or [`EXIT_CONFIG`] naming the key. Charts and CI run it against
    /// every rendered environment, so a chart cannot set a key the service
    /// refuses or omit one it requires.
    CheckConfig,
    /// `--help`.
    Help,
    /// `--version`.
    Version,
}

impl Mode {
    fn parse(mut args: impl Iterator<Item = String>) -> Result<Self, String> {
        let mode = match args.next().as_deref() {
            None => Self::Serve,
            Some("--check-config") => Self::CheckConfig,
            Some("--help" | "-h") => Self::Help,
            Some("--version" | "-V") => Self::Version,
            Some(other) => return Err(format!("unknown argument `{other}`")),
        };
        match args.next() {
            Some(extra) => Err(format!("unexpected argument `{extra}`")),
            None => Ok(mode),
        }
    }
}

/// What a service gets besides its settings.
#[derive(Debug, Clone)]
pub struct Runtime {
    /// Service name, as in logs, metrics and traces.
    pub service: &'static str,
    /// Cancelled on SIGTERM/SIGINT: stop taking work, drain, return.
    pub shutdown: CancellationToken,
    /// Register dependency checks here; they back `/readyz`.
    pub readiness: Readiness,
}

impl Runtime {
    /// A per-process id, for lease ownership and connection names: the pod
    /// name when Kubernetes gives one (`HOSTNAME`), plus the pid so two
    /// processes on one host differ.
    pub fn instance_id(&self) -> String {
        let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "local".into());
        format!("{host}-{}", std::process::id())
    }
}

/// Runs a service: config → telemetry → admin server → `service` until a
/// shutdown signal → drain within `shutdown.grace_ms` → flush telemetry.
///
/// `service` must return once `runtime.shutdown` is cancelled and its work is
/// drained. The exit code is 0 after a clean drain, 1 on a service error or a
/// drain that overran the grace period, [`EXIT_CONFIG`] for bad configuration.
pub fn run<S, F, Fut>(service: &'static str, app: F) -> ExitCode
where
    S: ServiceSettings,
    F: FnOnce(S, Runtime) -> Fut,
    Fut: Future<Output = anyhow::Result<()>>,
{
    let mode = match Mode::parse(std::env::args().skip(1)) {
        Ok(mode) => mode,
        Err(error) => {
            eprintln!("{service}: {error}; try --help");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    match mode {
        Mode::Help => {
            eprintln!(
                "{service} {version}\n\nusage: {service} [--check-config | --help | --version]\n\n\
                 Settings come from config/<PALM_ENV>.toml and PALM__SECTION__KEY \
                 environment variables (see the README, \"Configuration\").\n\
                 --check-config  validate the settings as at start-up, print them \
                 (secrets redacted), exit 0 or {EXIT_CONFIG} naming the key",
                version = env!("CARGO_PKG_VERSION"),
            );
            return ExitCode::SUCCESS;
        }
        Mode::Version => {
            eprintln!("{service} {}", env!("CARGO_PKG_VERSION"));
            return ExitCode::SUCCESS;
        }
        Mode::Serve | Mode::CheckConfig => {}
    }
    crate::http::install_crypto_provider();
    let settings = match config::load::<S>() {
        Ok(settings) => settings,
        Err(error) => {
            eprintln!("{service}: {error}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    if mode == Mode::CheckConfig {
        #[allow(
            clippy::print_stdout,
            reason = "--check-config's output is the settings"
        )]
        {
            println!("{settings:#?}");
        }
        eprintln!("{service}: configuration ok");
        return ExitCode::SUCCESS;
    }
    let tokio = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(tokio) => tokio,
        Err(error) => {
            eprintln!("{service}: failed to start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    tokio.block_on(run_async(service, settings, app))
}

async fn run_async<S, F, Fut>(service: &'static str, settings: S, app: F) -> ExitCode
where
    S: ServiceSettings,
    F: FnOnce(S, Runtime) -> Fut,
    Fut: Future<Output = anyhow::Result<()>>,
{
    let runtime_settings = settings.runtime().clone();
    let telemetry = match telemetry::init(service, &runtime_settings.telemetry) {
        Ok(telemetry) => telemetry,
        Err(error) => {
            eprintln!("{service}: failed to start telemetry: {error:#}");
            return ExitCode::FAILURE;
        }
    };
    admin::metrics_handle();
    let runtime = Runtime {
        service,
        shutdown: CancellationToken::new(),
        readiness: Readiness::default(),
    };

    let listener = match tokio::net::TcpListener::bind(runtime_settings.admin.addr).await {
        Ok(listener) => listener,
        Err(error) => {
            tracing::error!(%error, addr = %runtime_settings.admin.addr, "failed to bind the admin server");
            telemetry.shutdown();
            return ExitCode::FAILURE;
        }
    };
    let admin_addr = listener
        .local_addr()
        .map(|a| a.to_string())
        .unwrap_or_default();
    tracing::info!(addr = %admin_addr, "admin server listening");
    let admin_stop = CancellationToken::new();
    let admin = tokio::spawn(admin::serve(
        listener,
        runtime.readiness.clone(),
        admin_stop.clone(),
    ));

    let grace = Duration::from_millis(runtime_settings.shutdown.grace_ms);
    let signals = tokio::spawn(wait_for_signal(
        runtime.shutdown.clone(),
        runtime.readiness.clone(),
    ));
    tracing::info!(service, "starting");
    let shutdown = runtime.shutdown.clone();
    let mut app = std::pin::pin!(app(settings, runtime));

    let outcome = tokio::select! {
        result = &mut app => Some(result),
        () = shutdown.cancelled() => None,
    };
    let outcome = match outcome {
        Some(result) => result,
        // Signalled: the service drains; give it the grace period.
        None => match tokio::time::timeout(grace, &mut app).await {
            Ok(result) => result,
            Err(_) => Err(anyhow::anyhow!(
                "drain did not finish within the {grace:?} grace period"
            )),
        },
    };
    signals.abort();
    admin_stop.cancel();
    let _ = admin.await;

    let code = match outcome {
        Ok(()) => {
            tracing::info!(service, "stopped cleanly");
            ExitCode::SUCCESS
        }
        Err(error) => {
            tracing::error!(
                service,
                error = format!("{error:#}"),
                "stopped with an error"
            );
            ExitCode::FAILURE
        }
    };
    telemetry.shutdown();
    code
}

/// Cancels `shutdown` on SIGTERM or SIGINT and flips readiness to not-ready.
async fn wait_for_signal(shutdown: CancellationToken, readiness: Readiness) {
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(error) => {
                tracing::warn!(%error, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    tokio::select! {
        () = terminate => tracing::info!(signal = "SIGTERM", "shutdown requested"),
        _ = tokio::signal::ctrl_c() => tracing::info!(signal = "SIGINT", "shutdown requested"),
    }
    readiness.mark_stopping();
    shutdown.cancel();
}

#[cfg(test)]
mod tests {
    use super::Mode;

    fn parse(args: &[&str]) -> Result<Mode, String> {
        Mode::parse(args.iter().map(|a| (*a).to_owned()))
    }

    #[test]
    fn the_command_line_selects_the_mode() {
        assert_eq!(parse(&[]), Ok(Mode::Serve));
        assert_eq!(parse(&["--check-config"]), Ok(Mode::CheckConfig));
        assert_eq!(parse(&["--help"]), Ok(Mode::Help));
        assert_eq!(parse(&["-V"]), Ok(Mode::Version));
    }

    #[test]
    fn unknown_or_extra_arguments_are_refused() {
        assert!(parse(&["--check"]).is_err());
        assert!(parse(&["--check-config", "now"]).is_err());
    }
}
