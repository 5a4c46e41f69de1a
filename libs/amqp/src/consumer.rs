//! The consumer runner.
//!
//! A [`Consumer`] takes deliveries from one queue with a bounded prefetch and
//! runs a [`Handler`] on up to `concurrency` of them at a time. It acks a
//! delivery only after the handler returned `Ok`. On error it classifies:
//!
//! - [`HandlerError::Transient`]: a copy goes to the queue's next delay queue
//!   (confirmed) and the original is acked; after `delivery_limit` attempts
//!   the message is dead-lettered instead. No hot requeue loop.
//! - [`HandlerError::Permanent`] (including a body that does not decode): the
//!   message goes to the DLQ at once with the reason in a header.
//! - A panicking handler counts as a transient failure; a process that dies
//!   mid-message leaves it unacked, the broker redelivers it, and the quorum
//!   queue's `x-delivery-limit` dead-letters a message that keeps killing
//!   consumers.
//!
//! On shutdown it cancels the subscription, lets in-flight handlers finish and
//! ack, and closes its channel so prefetched-but-unstarted deliveries return
//! to the queue. After a connection break it resumes on the next connection.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::stream::FuturesUnordered;
use futures_util::{FutureExt, StreamExt};
use lapin::message::Delivery;
use lapin::options::{
    BasicAckOptions, BasicCancelOptions, BasicConsumeOptions, BasicNackOptions, BasicQosOptions,
};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{Channel, Consumer as LapinConsumer};
use palm_core::{Envelope, Event};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::broker::{Broker, BrokerError};
use crate::publisher::{OutgoingMessage, Publisher};
use crate::{Names, headers};

/// How a handler failed, which decides what happens to the message.
#[derive(Debug, thiserror::Error)]
pub enum HandlerError {
    /// Might work later (a dependency is down): retry with a delay.
    #[error("transient: {0:#}")]
    Transient(anyhow::Error),
    /// Can never work (malformed, unknown schema version, violates a rule):
    /// dead-letter now.
    #[error("permanent: {0:#}")]
    Permanent(anyhow::Error),
}

impl HandlerError {
    /// A transient failure.
    pub fn transient(error: impl Into<anyhow::Error>) -> Self {
        Self::Transient(error.into())
    }

    /// A permanent failure.
    pub fn permanent(error: impl Into<anyhow::Error>) -> Self {
        Self::Permanent(error.into())
    }
}

/// One delivery as the handler sees it.
#[derive(Debug, Clone)]
pub struct Incoming {
    /// AMQP `message_id` (the event id for events).
    pub message_id: Option<String>,
    /// Routing key it was first published with (retries keep it).
    pub routing_key: String,
    /// Body bytes.
    pub body: Vec<u8>,
    /// Headers as received.
    pub headers: FieldTable,
    /// Failed attempts before this one: 0 on the first delivery.
    pub attempt: u32,
}

impl Incoming {
    /// Decodes the body as an event; a body that does not decode is a
    /// permanent failure, since redelivering the same bytes cannot help.
    pub fn envelope<P: Event>(&self) -> Result<Envelope<P>, HandlerError> {
        Envelope::<P>::from_json(&self.body).map_err(HandlerError::permanent)
    }
}

/// What a consumer runs for each delivery. Implemented for async closures
/// `Fn(Incoming) -> impl Future<Output = Result<(), HandlerError>>`.
pub trait Handler: Send + Sync + 'static {
    /// Handles one message; `Ok` means its effect is durable and it may be acked.
    fn handle(&self, message: Incoming) -> impl Future<Output = Result<(), HandlerError>> + Send;
}

impl<F, Fut> Handler for F
where
    F: Fn(Incoming) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), HandlerError>> + Send,
{
    fn handle(&self, message: Incoming) -> impl Future<Output = Result<(), HandlerError>> + Send {
        self(message)
    }
}

/// A panicking handler is a transient failure: retried, then dead-lettered.
fn panicked(panic: &(dyn std::any::Any + Send)) -> HandlerError {
    let what = panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_default();
    HandlerError::Transient(anyhow::anyhow!("handler panicked: {what}"))
}

/// Runs a [`Handler`] over one queue of the topology.
pub struct Consumer<H> {
    broker: Broker,
    publisher: Publisher,
    queue: String,
    handler: Arc<H>,
    prefetch: u16,
    concurrency: usize,
    delivery_limit: u32,
    retry_steps: usize,
    metrics: ConsumerMetrics,
}

impl<H> std::fmt::Debug for Consumer<H> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Consumer")
            .field("queue", &self.queue)
            .finish_non_exhaustive()
    }
}

/// `palm_amqp_*{queue}` series, registered (at zero) when the consumer is
/// built, so a queue that never got a message still shows its counters.
struct ConsumerMetrics {
    consumed: metrics::Counter,
    acked: metrics::Counter,
    retried: metrics::Counter,
    dead_lettered: metrics::Counter,
    handler_seconds: metrics::Histogram,
}

impl ConsumerMetrics {
    fn new(queue: &str) -> Self {
        let label = ("queue", queue.to_owned());
        Self {
            consumed: metrics::counter!("palm_amqp_consumed_total", std::slice::from_ref(&label)),
            acked: metrics::counter!("palm_amqp_acked_total", std::slice::from_ref(&label)),
            retried: metrics::counter!("palm_amqp_retried_total", std::slice::from_ref(&label)),
            dead_lettered: metrics::counter!(
                "palm_amqp_dead_lettered_total",
                std::slice::from_ref(&label)
            ),
            handler_seconds: metrics::histogram!("palm_amqp_handler_duration_seconds", &[label]),
        }
    }
}

/// Bound on a broker call made while stopping, so a stalled broker cannot
/// hold the drain past the shutdown grace period.
const BROKER_CALL_TIMEOUT: Duration = Duration::from_secs(3);

enum SessionEnd {
    Shutdown,
    Broken,
}

/// What became of one delivery.
enum Outcome {
    Done,
    Retry { reason: String },
    DeadLetter { reason: String },
}

impl<H: Handler> Consumer<H> {
    /// A consumer of the topology queue `short_name`, using the prefetch,
    /// concurrency, delivery limit and retry steps from the broker's settings.
    pub fn new(broker: &Broker, publisher: &Publisher, short_name: &str, handler: H) -> Self {
        let settings = broker.settings();
        let queue = broker.names().queue(short_name);
        Self {
            broker: broker.clone(),
            publisher: publisher.clone(),
            metrics: ConsumerMetrics::new(&queue),
            queue,
            handler: Arc::new(handler),
            prefetch: settings.prefetch,
            concurrency: usize::from(settings.concurrency),
            delivery_limit: settings.delivery_limit,
            retry_steps: settings.retry_delays_ms.len(),
        }
    }

    /// Full name of the consumed queue.
    pub fn queue(&self) -> &str {
        &self.queue
    }

    /// Consumes until `shutdown` is cancelled, then drains and returns.
    pub async fn run(self, shutdown: CancellationToken) -> Result<(), BrokerError> {
        loop {
            let live = tokio::select! {
                live = self.broker.live() => live?,
                () = shutdown.cancelled() => return Ok(()),
            };
            let (channel, stream) = match self.subscribe(&live.connection).await {
                Ok(session) => session,
                Err(error) => {
                    tracing::warn!(%error, queue = %self.queue, "could not subscribe, retrying");
                    tokio::select! {
                        () = tokio::time::sleep(Duration::from_millis(250)) => continue,
                        () = shutdown.cancelled() => return Ok(()),
                    }
                }
            };
            tracing::info!(queue = %self.queue, "consuming");
            match self.consume(&channel, stream, &shutdown).await {
                SessionEnd::Shutdown => {
                    tracing::info!(queue = %self.queue, "consumer drained");
                    return Ok(());
                }
                SessionEnd::Broken => {
                    tracing::warn!(queue = %self.queue, "consumer lost its channel, resubscribing");
                }
            }
        }
    }

    async fn subscribe(
        &self,
        connection: &lapin::Connection,
    ) -> lapin::Result<(Channel, LapinConsumer)> {
        let channel = connection.create_channel().await?;
        channel
            .basic_qos(self.prefetch, BasicQosOptions::default())
            .await?;
        let stream = channel
            .basic_consume(
                self.queue.as_str().into(),
                "".into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await?;
        Ok((channel, stream))
    }

    async fn consume(
        &self,
        channel: &Channel,
        mut stream: LapinConsumer,
        shutdown: &CancellationToken,
    ) -> SessionEnd {
        let mut in_flight = FuturesUnordered::new();
        let end = loop {
            tokio::select! {
                            biased;
                            () = shutdown.cancelled() => {
                                // Stop deliveries first, then let what runs finish and ack.
            let cancel = channel.basic_cancel(stream.tag(), BasicCancelOptions::default());
                                let _ = tokio::time::timeout(BROKER_CALL_TIMEOUT, cancel).await;
                                break SessionEnd::Shutdown;
                            }
                            Some(()) = in_flight.next(), if !in_flight.is_empty() => {}
                            next = stream.next(), if in_flight.len() < self.concurrency => match next {
                                Some(Ok(delivery)) => in_flight.push(self.process(delivery)),
                                Some(Err(error)) => {
                                    tracing::warn!(%error, queue = %self.queue, "delivery stream failed");
                                    break SessionEnd::Broken;
                                }
                                None => break SessionEnd::Broken,
                            },
                        }
        };
        while in_flight.next().await.is_some() {}
        // Deliveries prefetched but never started go back to the queue.
        let close = channel.close(200, "consumer stopped".into());
        let _ = tokio::time::timeout(BROKER_CALL_TIMEOUT, close).await;
        end
    }

    async fn process(&self, delivery: Delivery) {
        self.metrics.consumed.increment(1);
        let empty = FieldTable::default();
        let headers = delivery.properties.headers().as_ref().unwrap_or(&empty);
        let attempt = headers::get_u32(headers, headers::ATTEMPT).unwrap_or(0);
        let routing_key = headers::get_str(headers, headers::ORIGINAL_ROUTING_KEY)
            .unwrap_or_else(|| delivery.routing_key.as_str().to_owned());
        let message_id = delivery
            .properties
            .message_id()
            .as_ref()
            .map(|id| id.as_str().to_owned());
        let span = tracing::info_span!(
            "amqp.consume",
            queue = %self.queue,
            routing_key = %routing_key,
            message_id = message_id.as_deref().unwrap_or(""),
            attempt,
            trace_id = tracing::field::Empty,
        );
        if !span.is_disabled() {
            headers::adopt_trace_context(&span, headers);
            span.record("trace_id", headers::trace_id(&span));
        }

        let incoming = Incoming {
            message_id,
            routing_key: routing_key.clone(),
            body: delivery.data.clone(),
            headers: headers.clone(),
            attempt,
        };
        let started = Instant::now();
        // The handler's future is created inside the span too: whatever a
        // handler does before its first await belongs to this message.
        let handling = std::panic::catch_unwind(AssertUnwindSafe(|| {
            span.in_scope(|| self.handler.handle(incoming))
        }));
        let result = match handling {
            Ok(future) => AssertUnwindSafe(future)
                .catch_unwind()
                .instrument(span.clone())
                .await
                .unwrap_or_else(|panic| Err(panicked(panic.as_ref()))),
            Err(panic) => Err(panicked(panic.as_ref())),
        };
        self.metrics
            .handler_seconds
            .record(started.elapsed().as_secs_f64());

        let outcome = match result {
            Ok(()) => Outcome::Done,
            Err(HandlerError::Permanent(error)) => Outcome::DeadLetter {
                reason: format!("permanent failure: {error:#}"),
            },
            Err(HandlerError::Transient(error)) if attempt + 1 >= self.delivery_limit => {
                Outcome::DeadLetter {
                    reason: format!(
                        "delivery limit reached after {} attempts: {error:#}",
                        attempt + 1
                    ),
                }
            }
            Err(HandlerError::Transient(error)) => Outcome::Retry {
                reason: format!("{error:#}"),
            },
        };
        self.settle(&delivery, headers, &routing_key, attempt, outcome)
            .instrument(span)
            .await;
    }

    /// Acks, or moves the message to a delay queue or the DLQ and then acks.
    /// If that move is not confirmed the delivery is nacked back to the queue,
    /// so nothing is ever lost; the broker's delivery limit bounds the loop.
    async fn settle(
        &self,
        delivery: &Delivery,
        headers: &FieldTable,
        routing_key: &str,
        attempt: u32,
        outcome: Outcome,
    ) {
        let moved = match outcome {
            Outcome::Done => Ok(()),
            Outcome::Retry { reason } => {
                let step = usize::try_from(attempt)
                    .unwrap_or(usize::MAX)
                    .min(self.retry_steps.saturating_sub(1));
                tracing::warn!(attempt, step, %reason, "handler failed transiently, retrying later");
                let mut copy = self.copy_of(delivery, headers, routing_key);
                copy.exchange = String::new();
                copy.routing_key = Names::retry_queue(&self.queue, step);
                copy.headers.insert(
                    headers::ATTEMPT.into(),
                    AMQPValue::LongLongInt((attempt + 1).into()),
                );
                let result = self.publisher.publish(&copy).await;
                if result.is_ok() {
                    self.metrics.retried.increment(1);
                }
                result
            }
            Outcome::DeadLetter { reason } => {
                tracing::error!(attempt, %reason, "dead-lettering message");
                let mut copy = self.copy_of(delivery, headers, routing_key);
                copy.exchange = self.broker.names().dead_letter_exchange();
                copy.routing_key = self.queue.clone();
                headers::set_str(&mut copy.headers, headers::DEAD_LETTER_REASON, &reason);
                headers::set_str(&mut copy.headers, headers::DEAD_LETTER_QUEUE, &self.queue);
                copy.headers.insert(
                    headers::ATTEMPT.into(),
                    AMQPValue::LongLongInt((attempt + 1).into()),
                );
                let result = self.publisher.publish(&copy).await;
                if result.is_ok() {
                    self.metrics.dead_lettered.increment(1);
                }
                result
            }
        };
        match moved {
            // Bounded: on a connection that died unnoticed an ack can wait
            // forever, and the broker redelivers an unacked message anyway.
            Ok(()) => match tokio::time::timeout(
                BROKER_CALL_TIMEOUT,
                delivery.ack(BasicAckOptions::default()),
            )
            .await
            {
                Ok(Ok(_)) => self.metrics.acked.increment(1),
                Ok(Err(error)) => tracing::warn!(%error, "ack failed; the broker will redeliver"),
                Err(_) => tracing::warn!("ack timed out; the broker will redeliver"),
            },
            Err(error) => {
                tracing::error!(%error, "could not move the message; returning it to the queue");
                let requeue = BasicNackOptions {
                    requeue: true,
                    ..BasicNackOptions::default()
                };
                match tokio::time::timeout(BROKER_CALL_TIMEOUT, delivery.nack(requeue)).await {
                    Ok(Ok(_)) => {}
                    Ok(Err(error)) => {
                        tracing::warn!(%error, "nack failed; the broker will redeliver")
                    }
                    Err(_) => tracing::warn!("nack timed out; the broker will redeliver"),
                }
            }
        }
    }

    fn copy_of(
        &self,
        delivery: &Delivery,
        headers: &FieldTable,
        routing_key: &str,
    ) -> OutgoingMessage {
        let message_id = delivery
            .properties
            .message_id()
            .as_ref()
            .map(|id| id.as_str().to_owned())
            .unwrap_or_default();
        let mut copy = OutgoingMessage::raw("", routing_key, message_id, delivery.data.clone());
        copy.kind = delivery
            .properties
            .kind()
            .as_ref()
            .map(|k| k.as_str().to_owned());
        copy.headers = headers.clone();
        headers::set_str(
            &mut copy.headers,
            headers::ORIGINAL_ROUTING_KEY,
            routing_key,
        );
        copy
    }
}
