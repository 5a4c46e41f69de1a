//! The confirmed publisher.
//!
//! Every publish is persistent and `mandatory`, and resolves only when the
//! broker confirmed it. Many publishes may be in flight at once (pipelined on
//! one channel) up to the configured window; callers get throughput by
//! publishing concurrently, not by giving up on confirms. A publish that
//! meets a broken connection waits for the supervisor to reconnect and
//! publishes again (at-least-once: consumers deduplicate on `message_id`).

use std::sync::Arc;
use std::time::Duration;

use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
use lapin::types::{FieldTable, ShortString};
use lapin::{BasicProperties, Channel, Confirmation};
use palm_core::{Envelope, Event};
use std::sync::RwLock;
use tokio::sync::{Mutex, Semaphore};
use tokio::time::Instant;

use crate::broker::{Broker, BrokerError};
use crate::{Names, headers};

/// Why a publish did not get a positive confirm.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    /// No queue is bound for the routing key: the message would be dropped.
    #[error("unroutable message to exchange `{exchange}` with routing key `{routing_key}`")]
    Unroutable {
        /// Exchange published to.
        exchange: String,
        /// Routing key without a binding.
        routing_key: String,
    },
    /// The publish was not confirmed within the publish timeout, including
    /// time spent waiting for a reconnect.
    #[error("publish not confirmed within {0:?}: {1}")]
    Timeout(Duration, String),
    /// The broker refused the publish itself (missing exchange, message too
    /// large, access refused): publishing the same message again cannot help.
    #[error("broker refused the publish: {0}")]
    Refused(String),
    /// The process is shutting down.
    #[error(transparent)]
    Broker(#[from] BrokerError),
}

/// A message ready to publish.
#[derive(Debug, Clone)]
pub struct OutgoingMessage {
    /// Exchange; empty for the default exchange (direct to a queue by name).
    pub exchange: String,
    /// Routing key.
    pub routing_key: String,
    /// Body bytes (JSON for events).
    pub body: Vec<u8>,
    /// AMQP `message_id`; the event id for events.
    pub message_id: String,
    /// AMQP `type`; the event type for events.
    pub kind: Option<String>,
    /// Extra headers; trace context is added at publish time.
    pub headers: FieldTable,
}

impl OutgoingMessage {
    /// A domain event on the events exchange, routed by its type.
    pub fn event<P: Event>(names: &Names, envelope: &Envelope<P>) -> Self {
        Self {
            exchange: names.events_exchange(),
            routing_key: envelope.event_type.clone(),
            body: envelope.to_json(),
            message_id: envelope.id.to_string(),
            kind: Some(envelope.event_type.clone()),
            headers: FieldTable::default(),
        }
    }

    /// Arbitrary bytes; for relays that already hold a serialized event.
    pub fn raw(
        exchange: impl Into<String>,
        routing_key: impl Into<String>,
        message_id: impl Into<String>,
        body: Vec<u8>,
    ) -> Self {
        Self {
            exchange: exchange.into(),
            routing_key: routing_key.into(),
            body,
            message_id: message_id.into(),
            kind: None,
            headers: FieldTable::default(),
        }
    }
}

/// Confirmed, pipelined publisher. Cheap to clone; clones share the window
/// and the channel.
#[derive(Clone)]
pub struct Publisher {
    inner: Arc<Inner>,
}

struct Inner {
    broker: Broker,
    window: Semaphore,
    /// The shared confirm-mode channel. Read on every publish, so a plain
    /// lock held for a clone only; replacing it is serialized by `reopen`.
    channel: RwLock<Option<(u64, Channel)>>,
    reopen: Mutex<()>,
    timeout: Duration,
    metrics: PublishMetrics,
}

/// `palm_amqp_*` publish series, registered (at zero) when the publisher is
/// built so alerts and dashboards see them before the first publish.
struct PublishMetrics {
    published: metrics::Counter,
    confirmed: metrics::Counter,
    confirm_seconds: metrics::Histogram,
    failed_nack: metrics::Counter,
    failed_timeout: metrics::Counter,
    failed_broker: metrics::Counter,
}

/// Why a publish counts in `palm_amqp_publish_failures_total{reason}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureReason {
    /// The broker kept nacking it until the publish timeout.
    Nack,
    /// No confirm within the publish timeout (window full, broker away).
    Timeout,
    /// The broker refused the publish itself.
    Broker,
}

impl FailureReason {
    /// The `reason` label.
    pub fn label(self) -> &'static str {
        match self {
            Self::Nack => "nack",
            Self::Timeout => "timeout",
            Self::Broker => "broker",
        }
    }

    /// Which failure `error` is, if it is one. An unroutable message is not:
    /// the broker took it and confirmed it, it just reached no queue (the
    /// outbox relay counts those in `palm_outbox_unrouted_total`; any other
    /// caller gets the error back and decides what it means).
    pub fn of(error: &PublishError, last_nacked: bool) -> Option<Self> {
        match error {
            PublishError::Unroutable { .. } | PublishError::Broker(_) => None,
            PublishError::Refused(_) => Some(Self::Broker),
            PublishError::Timeout(..) if last_nacked => Some(Self::Nack),
            PublishError::Timeout(..) => Some(Self::Timeout),
        }
    }
}

impl PublishMetrics {
    fn new() -> Self {
        let failed = |reason: FailureReason| metrics::counter!("palm_amqp_publish_failures_total", "reason" => reason.label());
        Self {
            published: metrics::counter!("palm_amqp_published_total"),
            confirmed: metrics::counter!("palm_amqp_confirmed_total"),
            confirm_seconds: metrics::histogram!("palm_amqp_publish_confirm_duration_seconds"),
            failed_nack: failed(FailureReason::Nack),
            failed_timeout: failed(FailureReason::Timeout),
            failed_broker: failed(FailureReason::Broker),
        }
    }

    fn failed(&self, error: &PublishError, last_nacked: bool) {
        match FailureReason::of(error, last_nacked) {
            Some(FailureReason::Nack) => self.failed_nack.increment(1),
            Some(FailureReason::Timeout) => self.failed_timeout.increment(1),
            Some(FailureReason::Broker) => self.failed_broker.increment(1),
            None => {}
        }
    }
}

impl std::fmt::Debug for Publisher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Publisher")
            .field("available_window", &self.inner.window.available_permits())
            .finish_non_exhaustive()
    }
}

impl Publisher {
    /// A publisher on `broker` with the window and timeout from its settings.
    pub fn new(broker: Broker) -> Self {
        let settings = broker.settings();
        let window = usize::from(settings.publish_window);
        let timeout = Duration::from_millis(settings.publish_timeout_ms);
        Self {
            inner: Arc::new(Inner {
                broker,
                window: Semaphore::new(window),
                channel: RwLock::new(None),
                reopen: Mutex::new(()),
                timeout,
                metrics: PublishMetrics::new(),
            }),
        }
    }

    /// The broker this publisher uses.
    pub fn broker(&self) -> &Broker {
        &self.inner.broker
    }

    /// Publishes and waits for the broker's confirm. A confirmed publish
    /// records its time in `palm_amqp_publish_confirm_duration_seconds`
    /// (window wait and reconnects included: what the caller waited); a
    /// failed one counts in `palm_amqp_publish_failures_total{reason}`
    /// ([`FailureReason`]).
    #[tracing::instrument(skip_all, fields(routing_key = %message.routing_key, message_id = %message.message_id))]
    pub async fn publish(&self, message: &OutgoingMessage) -> Result<(), PublishError> {
        let started = Instant::now();
        let mut last_nacked = false;
        let result = self.publish_once(message, started, &mut last_nacked).await;
        match &result {
            Ok(()) => self
                .inner
                .metrics
                .confirm_seconds
                .record(started.elapsed().as_secs_f64()),
            Err(error) => self.inner.metrics.failed(error, last_nacked),
        }
        result
    }

    async fn publish_once(
        &self,
        message: &OutgoingMessage,
        started: Instant,
        last_nacked: &mut bool,
    ) -> Result<(), PublishError> {
        // The timeout covers the whole publish, waiting for a window slot too.
        let deadline = started + self.inner.timeout;
        let _permit = match tokio::time::timeout_at(deadline, self.inner.window.acquire()).await {
            Ok(permit) => permit.map_err(|_| BrokerError::Shutdown)?,
            Err(_) => {
                return Err(PublishError::Timeout(
                    self.inner.timeout,
                    "publish window full".into(),
                ));
            }
        };
        let mut headers = message.headers.clone();
        headers::inject_trace_context(&mut headers);
        let mut properties = BasicProperties::default()
            .with_delivery_mode(2)
            .with_content_type("application/json".into())
            .with_message_id(ShortString::from(message.message_id.as_str()))
            .with_headers(headers);
        if let Some(kind) = &message.kind {
            properties = properties.with_type(ShortString::from(kind.as_str()));
        }
        let options = BasicPublishOptions {
            mandatory: true,
            ..BasicPublishOptions::default()
        };

        let mut last_error = String::from("no broker connection");
        // One deadline for the whole publish, retries and reconnects included.
        let attempts = async {
            loop {
                let (generation, channel) = self.channel().await?;
                self.inner.metrics.published.increment(1);
                let outcome = async {
                    #[allow(clippy::disallowed_methods)] // this is the one sanctioned caller
                    channel
                        .basic_publish(
                            message.exchange.as_str().into(),
                            message.routing_key.as_str().into(),
                            options,
                            &message.body,
                            properties.clone(),
                        )
                        .await?
                        .await
                };
                match outcome.await {
                    Ok(Confirmation::Ack(None)) => {
                        self.inner.metrics.confirmed.increment(1);
                        return Ok(());
                    }
                    Ok(Confirmation::Ack(Some(_returned))) => {
                        // Confirmed, but it reached no queue.
                        self.inner.metrics.confirmed.increment(1);
                        return Err(PublishError::Unroutable {
                            exchange: message.exchange.clone(),
                            routing_key: message.routing_key.clone(),
                        });
                    }
                    Ok(Confirmation::Nack(_)) => {
                        // The broker could not take the message (a queue at
                        // its limit under reject-publish); back off, retry.
                        last_error = "broker nacked the publish".into();
                        *last_nacked = true;
                        tracing::warn!("publish nacked, retrying");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                    Ok(Confirmation::NotRequested) => {
                        last_error = "channel lost confirm mode".into();
                        *last_nacked = false;
                        self.discard_channel(generation, &channel);
                    }
                    Err(error) if is_refusal(&error) => {
                        self.discard_channel(generation, &channel);
                        return Err(PublishError::Refused(error.to_string()));
                    }
                    Err(error) => {
                        last_error = error.to_string();
                        *last_nacked = false;
                        tracing::debug!(%error, "publish failed on a broken channel, retrying");
                        self.discard_channel(generation, &channel);
                        // Not a hot loop if the connection looks alive.
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                }
            }
        };
        match tokio::time::timeout_at(deadline, attempts).await {
            Ok(result) => result,
            Err(_) => {
                // lapin keeps the confirm of an abandoned publish until the
                // channel goes; a stalled channel is replaced, not kept.
                if let Some((generation, channel)) = self.current_channel() {
                    self.discard_channel(generation, &channel);
                }
                Err(PublishError::Timeout(self.inner.timeout, last_error))
            }
        }
    }

    /// The shared confirm-mode channel on the current connection.
    async fn channel(&self) -> Result<(u64, Channel), PublishError> {
        if let Some(channel) = self.current_channel() {
            return Ok(channel);
        }
        let _reopening = self.inner.reopen.lock().await;
        // Another publisher may have reopened it while this one waited.
        if let Some(channel) = self.current_channel() {
            return Ok(channel);
        }
        loop {
            // A channel can break on a connection that is still alive (a
            // channel-level error); then a new channel on it is fine.
            let live = self.inner.broker.live().await?;
            let created = async {
                let channel = live.connection.create_channel().await?;
                channel
                    .confirm_select(ConfirmSelectOptions::default())
                    .await?;
                Ok::<_, lapin::Error>(channel)
            }
            .await;
            match created {
                Ok(channel) => {
                    if let Ok(mut slot) = self.inner.channel.write() {
                        *slot = Some((live.generation, channel.clone()));
                    }
                    return Ok((live.generation, channel));
                }
                Err(error) => {
                    tracing::debug!(%error, "could not open a publisher channel, waiting");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    }

    fn current_channel(&self) -> Option<(u64, Channel)> {
        let slot = self.inner.channel.read().ok()?;
        slot.as_ref()
            .filter(|(_, channel)| channel.status().connected())
            .cloned()
    }

    /// Forgets `broken` if it is still the shared channel. Channel ids repeat
    /// across connections, so a late error from an old connection must not
    /// evict the new connection's channel: compare the generation too.
    fn discard_channel(&self, broken_generation: u64, broken: &Channel) {
        if let Ok(mut slot) = self.inner.channel.write()
            && slot.as_ref().is_some_and(|(generation, channel)| {
                channel.id() == broken.id() && *generation == broken_generation
            })
        {
            *slot = None;
        }
    }
}

/// Errors where the broker refused this publish on a live channel.
fn is_refusal(error: &lapin::Error) -> bool {
    use lapin::protocol::{AMQPErrorKind, AMQPSoftError};
    match error.kind() {
        lapin::ErrorKind::ProtocolError(e) => matches!(
            e.kind(),
            AMQPErrorKind::Soft(
                AMQPSoftError::NOTFOUND
                    | AMQPSoftError::ACCESSREFUSED
                    | AMQPSoftError::PRECONDITIONFAILED
            )
        ),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unroutable_message_is_not_a_publish_failure() {
        let unroutable = PublishError::Unroutable {
            exchange: "palm.events".into(),
            routing_key: "nobody.listens".into(),
        };
        assert_eq!(FailureReason::of(&unroutable, false), None);
        assert_eq!(FailureReason::of(&unroutable, true), None);
        assert_eq!(
            FailureReason::of(&PublishError::Broker(BrokerError::Shutdown), false),
            None,
            "shutting down is not a failure of the publish"
        );
    }

    #[test]
    fn failures_are_labelled_by_what_went_wrong() {
        let timeout = PublishError::Timeout(Duration::from_secs(30), "no broker".into());
        assert_eq!(
            FailureReason::of(&timeout, false),
            Some(FailureReason::Timeout)
        );
        assert_eq!(FailureReason::of(&timeout, true), Some(FailureReason::Nack));
        let refused = PublishError::Refused("NOT_FOUND".into());
        assert_eq!(
            FailureReason::of(&refused, false),
            Some(FailureReason::Broker)
        );
        let labels: Vec<&str> = [
            FailureReason::Nack,
            FailureReason::Timeout,
            FailureReason::Broker,
        ]
        .iter()
        .map(|r| r.label())
        .collect();
        assert_eq!(labels, ["nack", "timeout", "broker"], "docs/metrics.md");
    }
}
