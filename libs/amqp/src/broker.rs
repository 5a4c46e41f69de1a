//! The connection supervisor.
//!
//! One [`Broker`] per process owns the AMQP connection. A background task
//! connects with exponential backoff, declares the [`Topology`], publishes the
//! live connection to everyone holding a [`Broker`] clone, watches for the
//! connection to break, and starts over. Publishers and consumers never own a
//! connection: they ask for the current one and come back after a break, so a
//! broker restart is survived inside the process.

use std::sync::Arc;
use std::time::Duration;

use backon::{ExponentialBuilder, Retryable};
use futures_util::StreamExt;
use lapin::{Connection, ConnectionProperties};
use secrecy::ExposeSecret;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::{AmqpSettings, Names, Topology};

/// Failure to reach the broker.
#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    /// The supervisor stopped because the process is shutting down.
    #[error("the broker connection is shut down")]
    Shutdown,
    /// No connection became available within the wait.
    #[error("no broker connection within {0:?}")]
    Timeout(Duration),
}

/// A live connection and its generation; the generation increases on every
/// reconnect so holders of channels can tell theirs is stale.
#[derive(Clone)]
pub(crate) struct Live {
    pub(crate) connection: Arc<Connection>,
    pub(crate) generation: u64,
}

/// Handle to the supervised connection. Cheap to clone.
#[derive(Clone)]
pub struct Broker {
    inner: Arc<Inner>,
}

struct Inner {
    settings: AmqpSettings,
    topology: Topology,
    live: watch::Sender<Option<Live>>,
    stop: CancellationToken,
}

impl std::fmt::Debug for Broker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Broker")
            .field("prefix", &self.inner.topology.names.prefix())
            .field("connected", &self.is_connected())
            .finish_non_exhaustive()
    }
}

impl Broker {
    /// Starts the supervisor. Returns at once; use [`Broker::wait_connected`]
    /// to wait for the first connection, [`Broker::is_connected`] for readiness.
    pub fn start(settings: AmqpSettings, topology: Topology) -> Self {
        let (live, _) = watch::channel(None);
        let inner = Arc::new(Inner {
            settings,
            topology,
            live,
            stop: CancellationToken::new(),
        });
        tokio::spawn(supervise(Arc::clone(&inner)));
        Self { inner }
    }

    /// The topology's naming.
    pub fn names(&self) -> &Names {
        &self.inner.topology.names
    }

    /// The settings this broker was started with.
    pub fn settings(&self) -> &AmqpSettings {
        &self.inner.settings
    }

    /// Whether a connection is up and the topology declared on it.
    pub fn is_connected(&self) -> bool {
        self.inner
            .live
            .borrow()
            .as_ref()
            .is_some_and(|live| live.connection.status().connected())
    }

    /// A readiness check: up while connected.
    pub fn readiness_check(&self) -> impl Fn() -> std::future::Ready<bool> + Send + Sync + 'static {
        let broker = self.clone();
        move || std::future::ready(broker.is_connected())
    }

    /// Waits up to `timeout` for a live connection.
    pub async fn wait_connected(&self, timeout: Duration) -> Result<(), BrokerError> {
        tokio::time::timeout(timeout, self.live())
            .await
            .map_err(|_| BrokerError::Timeout(timeout))?
            .map(|_| ())
    }

    /// Waits for a live connection.
    pub(crate) async fn live(&self) -> Result<Live, BrokerError> {
        let mut rx = self.inner.live.subscribe();
        loop {
            if self.inner.stop.is_cancelled() {
                return Err(BrokerError::Shutdown);
            }
            if let Some(live) = rx.borrow_and_update().as_ref()
                && live.connection.status().connected()
            {
                return Ok(live.clone());
            }
            tokio::select! {
                changed = rx.changed() => {
                    if changed.is_err() {
                        return Err(BrokerError::Shutdown);
                    }
                }
                () = self.inner.stop.cancelled() => return Err(BrokerError::Shutdown),
                // The connection can die without the supervisor having noticed
                // yet; look again shortly rather than trusting a stale value.
                () = tokio::time::sleep(Duration::from_millis(200)) => {}
            }
        }
    }

    /// Closes the connection and stops reconnecting.
    pub async fn close(&self) {
        self.inner.stop.cancel();
        let live = self.inner.live.send_replace(None);
        if let Some(live) = live {
            let closing = live.connection.close(200, "shutdown".into());
            let _ = tokio::time::timeout(Duration::from_secs(3), closing).await;
        }
    }
}

async fn supervise(inner: Arc<Inner>) {
    let mut generation = 0_u64;
    let connected_gauge = metrics::gauge!("palm_amqp_connected");
    let reconnects = metrics::counter!("palm_amqp_reconnects_total");
    loop {
        let backoff = ExponentialBuilder::default()
            .with_min_delay(Duration::from_millis(inner.settings.reconnect_min_ms))
            .with_max_delay(Duration::from_millis(inner.settings.reconnect_max_ms))
            .with_jitter()
            .without_max_times();
        let attempt = || connect_and_declare(&inner);
        let connected = tokio::select! {
            result = attempt
                .retry(backoff)
                .notify(|error, delay| tracing::warn!(%error, ?delay, "amqp connect failed, retrying")) => result,
            () = inner.stop.cancelled() => return,
        };
        let Ok(connection) = connected else {
            continue;
        };
        let connection = Arc::new(connection);
        generation += 1;
        if generation > 1 {
            reconnects.increment(1);
        }
        tracing::info!(generation, "amqp connected and topology declared");
        connected_gauge.set(1.0);
        let mut events = connection.events_listener();
        inner.live.send_replace(Some(Live {
            connection: Arc::clone(&connection),
            generation,
        }));

        let mut poll = tokio::time::interval(Duration::from_millis(250));
        loop {
            tokio::select! {
                event = events.next() => match event {
                    Some(lapin::Event::Error(error)) => {
                        tracing::warn!(%error, "amqp connection error");
                        break;
                    }
                    Some(_) => {}
                    None => break,
                },
                _ = poll.tick() => {
                    if !connection.status().connected() {
                        break;
                    }
                }
                () = inner.stop.cancelled() => return,
            }
        }
        connected_gauge.set(0.0);
        inner.live.send_replace(None);
        tracing::warn!(generation, "amqp connection lost, reconnecting");
    }
}

/// Heartbeat interval asked for when the URL names none: a dead peer is then
/// noticed within about two intervals instead of the broker's default minutes.
const DEFAULT_HEARTBEAT_SECS: u16 = 10;
/// Longest a connect plus topology declaration may take before it is retried.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);

async fn connect_and_declare(inner: &Inner) -> anyhow::Result<Connection> {
    let properties =
        ConnectionProperties::default().with_connection_name(inner.topology.names.prefix().into());
    let url = with_default_heartbeat(inner.settings.url.expose_secret());
    let attempt = async {
        let connection = Connection::connect(&url, properties).await?;
        let channel = connection.create_channel().await?;
        if let Err(error) = inner.topology.declare(&channel).await {
            if is_precondition_failed(&error) {
                tracing::error!(
                    %error,
                    "a queue or exchange exists with other arguments than this build declares \
                     (for example after changing amqp.redelivery_limit or amqp.retry_delays_ms); \
                     migrate it (delete and re-declare, or a policy); not ready until then"
                );
            }
            let _ = connection
                .close(200, "topology declaration failed".into())
                .await;
            return Err(error.into());
        }
        let _ = channel.close(200, "topology declared".into()).await;
        Ok::<_, anyhow::Error>(connection)
    };
    tokio::time::timeout(CONNECT_TIMEOUT, attempt)
        .await
        .map_err(|_| anyhow::anyhow!("connect and declare took longer than {CONNECT_TIMEOUT:?}"))?
}

fn with_default_heartbeat(url: &str) -> String {
    if url.contains("heartbeat=") {
        return url.to_owned();
    }
    let separator = if url.contains('?') { '&' } else { '?' };
    format!("{url}{separator}heartbeat={DEFAULT_HEARTBEAT_SECS}")
}

fn is_precondition_failed(error: &lapin::Error) -> bool {
    use lapin::protocol::{AMQPErrorKind, AMQPSoftError};
    matches!(
        error.kind(),
        lapin::ErrorKind::ProtocolError(e)
            if *e.kind() == AMQPErrorKind::Soft(AMQPSoftError::PRECONDITIONFAILED)
    )
}

#[cfg(test)]
mod tests {
    use super::with_default_heartbeat;

    #[test]
    fn adds_a_heartbeat_unless_the_url_has_one() {
        assert_eq!(
            with_default_heartbeat("amqp://h:5672/%2f"),
            "amqp://h:5672/%2f?heartbeat=10"
        );
        assert_eq!(
            with_default_heartbeat("amqp://h/%2f?x=1"),
            "amqp://h/%2f?x=1&heartbeat=10"
        );
        assert_eq!(
            with_default_heartbeat("amqp://h/%2f?heartbeat=30"),
            "amqp://h/%2f?heartbeat=30"
        );
    }
}
