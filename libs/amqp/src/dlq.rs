//! Operator tools for dead-letter queues: how deep each is, what is in one and
//! why (without consuming it), replaying selected messages to their origin
//! once the cause is fixed, and purging.
//!
//! # Reading without consuming
//!
//! AMQP 0-9-1 has no non-destructive read of a quorum queue, and the obvious
//! substitute, `basic.get` then handing the message back (nack/requeue or
//! closing the channel), counts as a failed delivery: since RabbitMQ 4.0
//! every quorum queue has a delivery limit (20 unless set), and a DLQ has no
//! dead-letter target of its own, so a message looked at that way twenty
//! times is silently dropped. 4.3 counts only failed returns (a reject, a
//! channel or connection that closes with the message unacked), which is
//! still what a "put it back" read does.
//!
//! So every operation here is a *pass* over the queue: it takes exactly as
//! many messages as the DLQ held when the pass started, one `basic.get` at a
//! time, and for each publishes either an identical copy (same body, same
//! properties, same headers minus the broker's per-delivery annotations) to
//! the tail of the same DLQ, or a replay copy to the message's origin; only
//! once the broker confirmed that publish is the original acked. No message
//! is ever handed back, so none is ever counted as a delivery; a kept message
//! is a fresh message with a delivery count of zero. After a full pass the
//! kept messages are in the DLQ in their old order (one channel publishes
//! them in the order it took them). If the pass fails half-way, the
//! messages it holds unacked return to the queue (counted once by the
//! broker) and the ones already copied stay copied: a failure can reorder or
//! duplicate a dead letter, never lose one.
//!
//! A pass holds a lock, an exclusive queue named `<dlq>.operator-lock`, for
//! its duration, so two operators cannot interleave passes over one DLQ; the
//! broker drops the lock with the connection if the process dies.
//!
//! See `docs/operations-dlq.md` and ADR 0020.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use lapin::message::BasicGetMessage;
use lapin::options::{
    BasicAckOptions, BasicGetOptions, BasicPublishOptions, ConfirmSelectOptions,
    QueueDeclareOptions, QueueDeleteOptions, QueuePurgeOptions,
};
use lapin::protocol::{AMQPErrorKind, AMQPSoftError};
use lapin::types::{AMQPValue, FieldTable, LongString};
use lapin::{BasicProperties, Channel, Confirmation, Connection, ConnectionProperties};

use crate::broker::BrokerError;
use crate::publisher::PublishError;
use crate::{Broker, Names, Publisher, headers};

/// Header on a replayed copy: the id of the replay run that made it.
pub const REPLAY_RUN: &str = "x-palm-replay-run";
/// Header on a replayed copy: when it was replayed (AMQP timestamp, seconds).
pub const REPLAYED_AT: &str = "x-palm-replayed-at";
/// Header on a replayed copy: the DLQ it was replayed from.
pub const REPLAYED_FROM: &str = "x-palm-replayed-from";
/// Header on a replayed copy: why it had been dead-lettered.
pub const REPLAYED_REASON: &str = "x-palm-replayed-reason";

/// Headers the broker adds to each delivery of a quorum queue; they describe
/// that delivery, not the message, so copies leave them out.
const DELIVERY_ANNOTATIONS: [&str; 2] = [headers::BROKER_DELIVERY_COUNT, "x-acquired-count"];

/// The broker's dead-lettering history. A replayed copy drops it: RabbitMQ
/// 3.x reads `x-death` on publish and silently drops a message it believes
/// is cycling between queues, which a replayed message that then retries
/// through its delay queues could look like. The reason survives in
/// [`REPLAYED_REASON`].
const DEATH_HEADERS: [&str; 7] = [
    "x-death",
    "x-first-death-queue",
    "x-first-death-reason",
    "x-first-death-exchange",
    "x-last-death-queue",
    "x-last-death-reason",
    "x-last-death-exchange",
];

/// Messages taken (and held unacked) before their copies' confirms are awaited.
const BATCH: usize = 64;
/// Longest wait for one confirm before the pass gives up.
const CONFIRM_TIMEOUT: Duration = Duration::from_secs(30);

/// Failure of a DLQ operation.
#[derive(Debug, thiserror::Error)]
pub enum DlqError {
    /// The broker is unreachable or the process is stopping.
    #[error(transparent)]
    Broker(#[from] BrokerError),
    /// An AMQP operation failed.
    #[error(transparent)]
    Amqp(#[from] lapin::Error),
    /// Kept for callers that match on it; DLQ operations publish on their
    /// own confirm channel and report [`DlqError::NotConfirmed`] instead.
    #[error(transparent)]
    Publish(#[from] PublishError),
    /// The queue does not exist.
    #[error("queue `{0}` does not exist")]
    NotFound(String),
    /// Another operation holds the DLQ's lock.
    #[error(
        "another operation is running on `{0}` (its lock queue `{0}.operator-lock` exists); try again when it is done"
    )]
    Busy(String),
    /// A copy was not confirmed; its original stays in the DLQ.
    #[error("the copy of message `{message_id}` to `{destination}` was not confirmed: {why}")]
    NotConfirmed {
        /// Message id of the original, empty when it had none.
        message_id: String,
        /// `exchange/routing key` of the copy.
        destination: String,
        /// What the broker said, or the timeout.
        why: String,
    },
    /// The name does not end in `.dlq`, so it has no origin queue.
    #[error("`{0}` is not a dead-letter queue (its name must end in `.dlq`)")]
    NotADeadLetterQueue(String),
}

/// One entry of the broker's `x-death` header: one (queue, reason) the
/// message was dead-lettered from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Death {
    /// Queue it died in.
    pub queue: String,
    /// `rejected`, `expired`, `maxlen` or `delivery_limit`.
    pub reason: String,
    /// How often it died there for that reason.
    pub count: u64,
    /// Exchange it had been published to before dying.
    pub exchange: String,
    /// Routing keys it had been published with.
    pub routing_keys: Vec<String>,
    /// When it first died there (Unix seconds).
    pub time: Option<u64>,
}

/// One dead-lettered message, as an operator sees it.
#[derive(Debug, Clone)]
pub struct DeadLetter {
    /// Position in the DLQ when it was read (0 = head).
    pub position: usize,
    /// AMQP `message_id` (the event id for events).
    pub message_id: Option<String>,
    /// AMQP `type` (the event type for events).
    pub kind: Option<String>,
    /// Routing key it was first published with.
    pub routing_key: Option<String>,
    /// Why it was dead-lettered: the consumer's reason, or the broker's
    /// (`delivery_limit`, `rejected`, `expired`) from `x-death`.
    pub reason: String,
    /// The consumer runner dead-lettered it (it carries
    /// `x-palm-dead-letter-reason`); otherwise the broker did.
    pub by_consumer: bool,
    /// The broker's `x-death` history, most recent first.
    pub deaths: Vec<Death>,
    /// The broker flagged this delivery as a redelivery. Always false for
    /// messages read here: a pass never hands a message back.
    pub redelivered: bool,
    /// The quorum queue's `x-delivery-count` on this delivery (absent or 0
    /// on a first delivery): the count the delivery limit is checked against.
    pub delivery_count: Option<u32>,
    /// Every header as received.
    pub headers: FieldTable,
    /// Body bytes.
    pub body: Vec<u8>,
}

impl DeadLetter {
    fn read(position: usize, message: &BasicGetMessage) -> Self {
        let delivery = &message.delivery;
        let properties = &delivery.properties;
        let headers = properties.headers().clone().unwrap_or_default();
        let deaths = deaths(&headers);
        let palm_reason = headers::get_str(&headers, headers::DEAD_LETTER_REASON);
        let by_consumer = palm_reason.is_some();
        let reason = palm_reason
            .or_else(|| headers::get_str(&headers, "x-last-death-reason"))
            .or_else(|| deaths.first().map(|death| death.reason.clone()))
            .or_else(|| headers::get_str(&headers, "x-first-death-reason"))
            .unwrap_or_else(|| "unknown".into());
        let kind = properties.kind().as_ref().map(|k| k.as_str().to_owned());
        // The consumer records the key; the broker's x-death has the keys the
        // message was published to its queue with; events are routed by type.
        let routing_key = headers::get_str(&headers, headers::ORIGINAL_ROUTING_KEY)
            .or_else(|| {
                deaths
                    .iter()
                    .rev()
                    .find(|death| !death.exchange.is_empty())
                    .and_then(|death| death.routing_keys.first().cloned())
            })
            .or_else(|| kind.clone());
        Self {
            position,
            message_id: properties
                .message_id()
                .as_ref()
                .map(|id| id.as_str().to_owned()),
            kind,
            routing_key,
            reason,
            by_consumer,
            deaths,
            redelivered: delivery.redelivered,
            delivery_count: headers::get_u32(&headers, headers::BROKER_DELIVERY_COUNT),
            headers,
            body: delivery.data.clone(),
        }
    }

    /// When the broker first dead-lettered it (Unix seconds), from `x-death`;
    /// `None` when only the consumer did (it records no time).
    pub fn first_death_time(&self) -> Option<u64> {
        self.deaths.iter().filter_map(|death| death.time).min()
    }

    /// The headers as JSON, for display; byte arrays as hex, timestamps as
    /// Unix seconds.
    pub fn headers_json(&self) -> serde_json::Value {
        table_json(&self.headers)
    }

    /// The first `max_chars` characters of the body (lossy UTF-8, control
    /// characters escaped), with `…` when there is more.
    pub fn body_preview(&self, max_chars: usize) -> String {
        let text = String::from_utf8_lossy(&self.body);
        let mut preview: String = text
            .chars()
            .take(max_chars)
            .flat_map(|c| {
                if c.is_control() {
                    c.escape_default().collect::<Vec<_>>()
                } else {
                    vec![c]
                }
            })
            .collect();
        if text.chars().count() > max_chars {
            preview.push('…');
        }
        preview
    }
}

/// Depth of one DLQ and of its origin queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DlqStatus {
    /// The DLQ's full name.
    pub dlq: String,
    /// The queue that dead-letters into it.
    pub origin: String,
    /// Messages ready in the DLQ; `None` when it does not exist.
    pub depth: Option<u32>,
    /// Messages ready in the origin queue; `None` when it does not exist.
    pub origin_depth: Option<u32>,
}

/// The first messages of a DLQ, read without consuming them.
#[derive(Debug, Clone)]
pub struct Browse {
    /// Messages in the DLQ when the pass started.
    pub depth: u32,
    /// The first `limit` of them, head first.
    pub messages: Vec<DeadLetter>,
}

/// Which dead letters a replay takes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selector {
    /// Every message (up to the request's limit).
    All,
    /// The first message with this `message_id`; other copies stay.
    Id(String),
    /// Messages whose routing key or reason matches this glob (`*` any
    /// run of characters, `?` one character).
    Matching(String),
}

impl Selector {
    /// Whether `message` is selected.
    pub fn matches(&self, message: &DeadLetter) -> bool {
        match self {
            Self::All => true,
            Self::Id(id) => message.message_id.as_deref() == Some(id.as_str()),
            Self::Matching(pattern) => {
                glob_match(pattern, &message.reason)
                    || message
                        .routing_key
                        .as_deref()
                        .is_some_and(|key| glob_match(pattern, key))
            }
        }
    }
}

/// Where a replayed message goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReplayTarget {
    /// The queue that dead-lettered it, through the default exchange, with
    /// its original routing key in `x-palm-original-routing-key` (the
    /// consumer runner reads it from there, as for retries). Only the
    /// consumer that failed sees it again.
    OriginQueue,
    /// This exchange with the original routing key, as first published:
    /// every queue bound to that key receives it again.
    Exchange(String),
}

/// What to replay, where, and whether for real.
#[derive(Debug, Clone)]
pub struct ReplayRequest {
    /// Which messages.
    pub selector: Selector,
    /// Where to.
    pub target: ReplayTarget,
    /// At most this many.
    pub limit: Option<usize>,
    /// Only report what would be replayed; the DLQ stays as it is.
    pub dry_run: bool,
}

/// What a replay did (or, dry, would do).
#[derive(Debug, Clone)]
pub struct ReplayOutcome {
    /// Id of this run, in each copy's [`REPLAY_RUN`] header.
    pub run: String,
    /// Messages in the DLQ when the pass started.
    pub depth: u32,
    /// The selected messages (replayed, or that would be).
    pub selected: Vec<DeadLetter>,
    /// Selected messages left in the DLQ because they have no routing key
    /// to replay them with (only with [`ReplayTarget::Exchange`]).
    pub without_routing_key: usize,
}

/// A connection for DLQ operations.
#[derive(Clone)]
pub struct Dlq {
    connection: Arc<Connection>,
    owned: bool,
}

impl std::fmt::Debug for Dlq {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dlq")
            .field("owned", &self.owned)
            .finish_non_exhaustive()
    }
}

/// The origin queue of `dlq` (`<queue>.dlq` → `<queue>`).
pub fn origin_of(dlq: &str) -> Option<&str> {
    dlq.strip_suffix(".dlq").filter(|origin| !origin.is_empty())
}

impl Dlq {
    /// Opens a connection of its own to `url` (nothing is declared).
    pub async fn connect(url: &str) -> Result<Self, DlqError> {
        let properties = ConnectionProperties::default().with_connection_name("palm-dlq".into());
        let connection = Connection::connect(url, properties).await?;
        Ok(Self {
            connection: Arc::new(connection),
            owned: true,
        })
    }

    /// Uses `broker`'s current connection.
    pub async fn on_broker(broker: &Broker) -> Result<Self, DlqError> {
        let live = broker.live().await?;
        Ok(Self {
            connection: live.connection,
            owned: false,
        })
    }

    /// Closes the connection if this handle opened it.
    pub async fn close(self) {
        if self.owned {
            let _ = self.connection.close(200, "done".into()).await;
        }
    }

    /// Depths of `dlq` and its origin queue (passive declares: nothing is
    /// created, nothing is read).
    pub async fn status(&self, dlq: &str) -> Result<DlqStatus, DlqError> {
        let origin = origin_of(dlq).ok_or_else(|| DlqError::NotADeadLetterQueue(dlq.into()))?;
        Ok(DlqStatus {
            dlq: dlq.to_owned(),
            origin: origin.to_owned(),
            depth: self.depth(dlq).await?,
            origin_depth: self.depth(origin).await?,
        })
    }

    /// Messages ready in `queue`, `None` if it does not exist.
    pub async fn depth(&self, queue: &str) -> Result<Option<u32>, DlqError> {
        // A failed passive declare closes its channel: one channel each.
        let channel = self.connection.create_channel().await?;
        let found = passive_depth(&channel, queue).await;
        let _ = channel.close(200, "depth read".into()).await;
        match found {
            Ok(depth) => Ok(Some(depth)),
            Err(error) if soft_error(&error) == Some(AMQPSoftError::NOTFOUND) => Ok(None),
            Err(error) => Err(error.into()),
        }
    }

    /// The first `limit` messages of `dlq`, leaving the queue as it was:
    /// same messages, same order, no delivery counted.
    pub async fn browse(&self, dlq: &str, limit: usize) -> Result<Browse, DlqError> {
        let mut messages = Vec::new();
        let depth = self
            .pass(dlq, |message| {
                if messages.len() < limit {
                    messages.push(message.clone());
                }
                None
            })
            .await?;
        Ok(Browse { depth, messages })
    }

    /// Replays the selected messages of `dlq`; each leaves the DLQ only once
    /// its replay copy is confirmed. The others stay, in order.
    pub async fn replay(
        &self,
        dlq: &str,
        request: &ReplayRequest,
    ) -> Result<ReplayOutcome, DlqError> {
        let origin = origin_of(dlq).ok_or_else(|| DlqError::NotADeadLetterQueue(dlq.into()))?;
        let run = uuid::Uuid::new_v4().to_string();
        let replayed_at = unix_now();
        let mut selected = Vec::new();
        let mut without_routing_key = 0;
        let limit = match request.selector {
            Selector::Id(_) => 1,
            _ => request.limit.unwrap_or(usize::MAX),
        };
        let depth = self
            .pass(dlq, |message| {
                // A copy of this run back already (it failed again) stays.
                let ours =
                    headers::get_str(&message.headers, REPLAY_RUN).as_deref() == Some(run.as_str());
                if ours || selected.len() >= limit || !request.selector.matches(message) {
                    return None;
                }
                let destination = match &request.target {
                    ReplayTarget::OriginQueue => (String::new(), origin.to_owned()),
                    ReplayTarget::Exchange(exchange) => match &message.routing_key {
                        Some(key) => (exchange.clone(), key.clone()),
                        None => {
                            without_routing_key += 1;
                            return None;
                        }
                    },
                };
                selected.push(message.clone());
                if request.dry_run {
                    return None;
                }
                let mut hdrs = message.headers.inner().clone();
                for name in DELIVERY_ANNOTATIONS.iter().chain(&DEATH_HEADERS).chain(&[
                    headers::ATTEMPT,
                    headers::DEAD_LETTER_REASON,
                    headers::DEAD_LETTER_QUEUE,
                ]) {
                    hdrs.remove(*name);
                }
                let mut hdrs = FieldTable::from(hdrs);
                if let Some(key) = &message.routing_key {
                    headers::set_str(&mut hdrs, headers::ORIGINAL_ROUTING_KEY, key);
                }
                headers::set_str(&mut hdrs, REPLAY_RUN, &run);
                headers::set_str(&mut hdrs, REPLAYED_FROM, dlq);
                headers::set_str(&mut hdrs, REPLAYED_REASON, &message.reason);
                hdrs.insert(REPLAYED_AT.into(), AMQPValue::Timestamp(replayed_at));
                Some(Destination {
                    exchange: destination.0,
                    routing_key: destination.1,
                    headers: Some(hdrs),
                })
            })
            .await?;
        Ok(ReplayOutcome {
            run,
            depth,
            selected,
            without_routing_key,
        })
    }

    /// Deletes every ready message of `dlq`; returns how many.
    pub async fn purge(&self, dlq: &str) -> Result<u32, DlqError> {
        let lock = self.lock(dlq).await?;
        let result = async {
            let channel = self.connection.create_channel().await?;
            let purged = match passive_depth(&channel, dlq).await {
                Ok(_) => channel
                    .queue_purge(dlq.into(), QueuePurgeOptions::default())
                    .await
                    .map_err(DlqError::from),
                Err(error) if soft_error(&error) == Some(AMQPSoftError::NOTFOUND) => {
                    Err(DlqError::NotFound(dlq.into()))
                }
                Err(error) => Err(error.into()),
            };
            let _ = channel.close(200, "purged".into()).await;
            purged
        }
        .await;
        unlock(&lock, dlq).await;
        result
    }

    /// Takes the exclusive lock queue of `dlq` on a channel of its own.
    async fn lock(&self, dlq: &str) -> Result<Channel, DlqError> {
        let channel = self.connection.create_channel().await?;
        let mut args = FieldTable::default();
        args.insert(
            "x-queue-type".into(),
            AMQPValue::LongString(LongString::from("classic")),
        );
        let options = QueueDeclareOptions {
            exclusive: true,
            auto_delete: true,
            ..QueueDeclareOptions::default()
        };
        match channel
            .queue_declare(lock_name(dlq).into(), options, args)
            .await
        {
            Ok(_) => Ok(channel),
            Err(error) if soft_error(&error) == Some(AMQPSoftError::RESOURCELOCKED) => {
                Err(DlqError::Busy(dlq.into()))
            }
            Err(error) => Err(error.into()),
        }
    }

    /// One pass over `dlq` (see the module docs): `decide` sees each message
    /// and returns where its copy goes instead of the DLQ's tail, if
    /// anywhere else. Returns the depth when the pass started.
    async fn pass(
        &self,
        dlq: &str,
        decide: impl FnMut(&DeadLetter) -> Option<Destination>,
    ) -> Result<u32, DlqError> {
        let lock = self.lock(dlq).await?;
        let result = self.locked_pass(dlq, decide).await;
        unlock(&lock, dlq).await;
        result
    }

    async fn locked_pass(
        &self,
        dlq: &str,
        mut decide: impl FnMut(&DeadLetter) -> Option<Destination>,
    ) -> Result<u32, DlqError> {
        let channel = self.connection.create_channel().await?;
        let depth = match passive_depth(&channel, dlq).await {
            Ok(depth) => depth,
            Err(error) if soft_error(&error) == Some(AMQPSoftError::NOTFOUND) => {
                return Err(DlqError::NotFound(dlq.into()));
            }
            Err(error) => return Err(error.into()),
        };
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await?;
        let total = usize::try_from(depth).unwrap_or(usize::MAX);
        let mut taken = 0;
        let mut failure = None;
        while taken < total && failure.is_none() {
            let mut batch = Vec::new();
            while batch.len() < BATCH && taken < total {
                let Some(message) = channel
                    .basic_get(dlq.into(), BasicGetOptions::default())
                    .await?
                else {
                    // Fewer than counted: someone else took some.
                    taken = total;
                    break;
                };
                let read = DeadLetter::read(taken, &message);
                taken += 1;
                let destination = decide(&read).unwrap_or_else(|| Destination {
                    exchange: String::new(),
                    routing_key: dlq.to_owned(),
                    headers: identical_headers(&message.delivery.properties),
                });
                let original = message.delivery.properties.clone();
                let properties = match destination.headers.clone() {
                    Some(headers) => original.with_headers(headers),
                    None => without_headers(&original),
                };
                #[allow(clippy::disallowed_methods)]
                // a verbatim copy needs every property; Publisher sets its own
                let confirm = channel
                    .basic_publish(
                        destination.exchange.as_str().into(),
                        destination.routing_key.as_str().into(),
                        BasicPublishOptions {
                            mandatory: true,
                            ..BasicPublishOptions::default()
                        },
                        &message.delivery.data,
                        properties,
                    )
                    .await?;
                batch.push((message, read.message_id, destination, confirm));
            }
            // Confirms in publish order; an original is acked only after its
            // copy was confirmed, and nothing is ever handed back.
            for (message, message_id, destination, confirm) in batch {
                let why = match tokio::time::timeout(CONFIRM_TIMEOUT, confirm).await {
                    Ok(Ok(Confirmation::Ack(None))) => None,
                    Ok(Ok(Confirmation::Ack(Some(_)))) => Some("unroutable (no such queue)".into()),
                    Ok(Ok(Confirmation::Nack(_))) => Some("nacked by the broker".into()),
                    Ok(Ok(Confirmation::NotRequested)) => Some("confirms were not enabled".into()),
                    Ok(Err(error)) => Some(error.to_string()),
                    Err(_) => Some(format!("no confirm within {CONFIRM_TIMEOUT:?}")),
                };
                match why {
                    None if failure.is_none() => {
                        message.delivery.ack(BasicAckOptions::default()).await?;
                    }
                    // After a failure the rest go back with the channel, in order.
                    None => {}
                    Some(why) => {
                        failure.get_or_insert(DlqError::NotConfirmed {
                            message_id: message_id.unwrap_or_default(),
                            destination: format!(
                                "{}/{}",
                                destination.exchange, destination.routing_key
                            ),
                            why,
                        });
                    }
                }
            }
        }
        let _ = channel.close(200, "dlq pass done".into()).await;
        match failure {
            Some(error) => Err(error),
            None => Ok(depth),
        }
    }
}

/// Where one message's copy is published, with which headers (`None`: the
/// original had none).
struct Destination {
    exchange: String,
    routing_key: String,
    headers: Option<FieldTable>,
}

fn lock_name(dlq: &str) -> String {
    format!("{dlq}.operator-lock")
}

async fn unlock(lock: &Channel, dlq: &str) {
    let _ = lock
        .queue_delete(lock_name(dlq).into(), QueueDeleteOptions::default())
        .await;
    let _ = lock.close(200, "unlocked".into()).await;
}

async fn passive_depth(channel: &Channel, queue: &str) -> lapin::Result<u32> {
    let options = QueueDeclareOptions {
        passive: true,
        ..QueueDeclareOptions::default()
    };
    Ok(channel
        .queue_declare(queue.into(), options, FieldTable::default())
        .await?
        .message_count())
}

fn soft_error(error: &lapin::Error) -> Option<AMQPSoftError> {
    match error.kind() {
        lapin::ErrorKind::ProtocolError(e) => match e.kind() {
            AMQPErrorKind::Soft(soft) => Some(soft.clone()),
            AMQPErrorKind::Hard(_) => None,
        },
        _ => None,
    }
}

/// The original's headers minus the broker's delivery annotations; `None`
/// when nothing else is left of a table the broker alone had added.
fn identical_headers(properties: &BasicProperties) -> Option<FieldTable> {
    let original = properties.headers().as_ref()?;
    let mut kept = original.inner().clone();
    for name in DELIVERY_ANNOTATIONS {
        kept.remove(name);
    }
    if kept.is_empty() && kept.len() != original.inner().len() {
        return None;
    }
    Some(FieldTable::from(kept))
}

fn without_headers(properties: &BasicProperties) -> BasicProperties {
    let mut bare = BasicProperties::default();
    if let Some(v) = properties.content_type() {
        bare = bare.with_content_type(v.clone());
    }
    if let Some(v) = properties.content_encoding() {
        bare = bare.with_content_encoding(v.clone());
    }
    if let Some(v) = properties.delivery_mode() {
        bare = bare.with_delivery_mode(*v);
    }
    if let Some(v) = properties.priority() {
        bare = bare.with_priority(*v);
    }
    if let Some(v) = properties.correlation_id() {
        bare = bare.with_correlation_id(v.clone());
    }
    if let Some(v) = properties.reply_to() {
        bare = bare.with_reply_to(v.clone());
    }
    if let Some(v) = properties.expiration() {
        bare = bare.with_expiration(v.clone());
    }
    if let Some(v) = properties.message_id() {
        bare = bare.with_message_id(v.clone());
    }
    if let Some(v) = properties.timestamp() {
        bare = bare.with_timestamp(*v);
    }
    if let Some(v) = properties.kind() {
        bare = bare.with_type(v.clone());
    }
    if let Some(v) = properties.user_id() {
        bare = bare.with_user_id(v.clone());
    }
    if let Some(v) = properties.app_id() {
        bare = bare.with_app_id(v.clone());
    }
    if let Some(v) = properties.cluster_id() {
        bare = bare.with_cluster_id(v.clone());
    }
    bare
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
}

fn text(value: &AMQPValue) -> Option<String> {
    match value {
        AMQPValue::LongString(v) => Some(String::from_utf8_lossy(v.as_bytes()).into_owned()),
        AMQPValue::ShortString(v) => Some(v.as_str().to_owned()),
        _ => None,
    }
}

fn number(value: &AMQPValue) -> Option<u64> {
    match value {
        AMQPValue::ShortShortInt(v) => u64::try_from(*v).ok(),
        AMQPValue::ShortShortUInt(v) => Some(u64::from(*v)),
        AMQPValue::ShortInt(v) => u64::try_from(*v).ok(),
        AMQPValue::ShortUInt(v) => Some(u64::from(*v)),
        AMQPValue::LongInt(v) => u64::try_from(*v).ok(),
        AMQPValue::LongUInt(v) => Some(u64::from(*v)),
        AMQPValue::LongLongInt(v) => u64::try_from(*v).ok(),
        AMQPValue::Timestamp(v) => Some(*v),
        _ => None,
    }
}

/// Parses the broker's `x-death` header.
fn deaths(headers: &FieldTable) -> Vec<Death> {
    let Some(AMQPValue::FieldArray(entries)) = headers.inner().get("x-death") else {
        return Vec::new();
    };
    entries
        .as_slice()
        .iter()
        .filter_map(|entry| match entry {
            AMQPValue::FieldTable(table) => {
                let field = |name: &str| table.inner().get(name);
                Some(Death {
                    queue: field("queue").and_then(text).unwrap_or_default(),
                    reason: field("reason").and_then(text).unwrap_or_default(),
                    count: field("count").and_then(number).unwrap_or_default(),
                    exchange: field("exchange").and_then(text).unwrap_or_default(),
                    routing_keys: match field("routing-keys") {
                        Some(AMQPValue::FieldArray(keys)) => {
                            keys.as_slice().iter().filter_map(text).collect()
                        }
                        _ => Vec::new(),
                    },
                    time: field("time").and_then(number),
                })
            }
            _ => None,
        })
        .collect()
}

fn table_json(table: &FieldTable) -> serde_json::Value {
    serde_json::Value::Object(
        table
            .inner()
            .iter()
            .map(|(key, value)| (key.as_str().to_owned(), value_json(value)))
            .collect(),
    )
}

fn value_json(value: &AMQPValue) -> serde_json::Value {
    use serde_json::Value;
    match value {
        AMQPValue::Boolean(v) => Value::Bool(*v),
        AMQPValue::ShortShortInt(v) => Value::from(*v),
        AMQPValue::ShortShortUInt(v) => Value::from(*v),
        AMQPValue::ShortInt(v) => Value::from(*v),
        AMQPValue::ShortUInt(v) => Value::from(*v),
        AMQPValue::LongInt(v) => Value::from(*v),
        AMQPValue::LongUInt(v) => Value::from(*v),
        AMQPValue::LongLongInt(v) => Value::from(*v),
        AMQPValue::Timestamp(v) => Value::from(*v),
        AMQPValue::Float(v) => Value::from(*v),
        AMQPValue::Double(v) => Value::from(*v),
        AMQPValue::DecimalValue(v) => Value::String(format!("{}e-{}", v.value, v.scale)),
        AMQPValue::ShortString(_) | AMQPValue::LongString(_) => {
            Value::String(text(value).unwrap_or_default())
        }
        AMQPValue::FieldArray(items) => {
            Value::Array(items.as_slice().iter().map(value_json).collect())
        }
        AMQPValue::FieldTable(table) => table_json(table),
        AMQPValue::ByteArray(bytes) => Value::String(
            bytes
                .as_slice()
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect(),
        ),
        AMQPValue::Void => Value::Null,
    }
}

/// `*` matches any run of characters, `?` exactly one; everything else
/// itself.
pub fn glob_match(pattern: &str, text: &str) -> bool {
    let pattern: Vec<char> = pattern.chars().collect();
    let text: Vec<char> = text.chars().collect();
    let (mut p, mut t) = (0, 0);
    // Where the last `*` was, and the text position it currently absorbs to.
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        if p < pattern.len() && (pattern[p] == '?' || pattern[p] == text[t]) {
            p += 1;
            t += 1;
        } else if p < pattern.len() && pattern[p] == '*' {
            star = Some((p, t));
            p += 1;
        } else if let Some((star_p, star_t)) = star {
            p = star_p + 1;
            t = star_t + 1;
            star = Some((star_p, star_t + 1));
        } else {
            return false;
        }
    }
    pattern[p..].iter().all(|c| *c == '*')
}

/// Reads up to `limit` messages of the DLQ of `queue` (a full name) without
/// consuming them (see the module docs).
pub async fn inspect(
    broker: &Broker,
    queue: &str,
    limit: usize,
) -> Result<Vec<DeadLetter>, DlqError> {
    let dlq = Dlq::on_broker(broker).await?;
    let browse = dlq.browse(&Names::dead_letter_queue(queue), limit).await?;
    Ok(browse.messages)
}

/// Moves up to `limit` messages from the DLQ of `queue` back into `queue`,
/// with their attempt count reset. Returns how many moved.
///
/// The replay copies are published on the pass's own confirm channel (so
/// every property survives); `_publisher` is kept for existing callers.
pub async fn replay(
    broker: &Broker,
    _publisher: &Publisher,
    queue: &str,
    limit: usize,
) -> Result<usize, DlqError> {
    let dlq = Dlq::on_broker(broker).await?;
    let outcome = dlq
        .replay(
            &Names::dead_letter_queue(queue),
            &ReplayRequest {
                selector: Selector::All,
                target: ReplayTarget::OriginQueue,
                limit: Some(limit),
                dry_run: false,
            },
        )
        .await?;
    Ok(outcome.selected.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs() {
        assert!(glob_match("vote.*", "vote.submitted"));
        assert!(glob_match(
            "*malformed*",
            "permanent failure: malformed event"
        ));
        assert!(glob_match("job.?", "job.b"));
        assert!(!glob_match("job.?", "job.bb"));
        assert!(glob_match("*", ""));
        assert!(glob_match("a*b*c", "aXXbYYc"));
        assert!(!glob_match("a*b*c", "aXXbYY"));
        assert!(glob_match("exact", "exact"));
        assert!(!glob_match("exact", "exactly"));
    }

    #[test]
    fn origins() {
        assert_eq!(
            origin_of("palm.palmvalidator.jobs.dlq"),
            Some("palm.palmvalidator.jobs")
        );
        assert_eq!(origin_of("palm.jobs"), None);
        assert_eq!(origin_of(".dlq"), None);
    }

    #[test]
    fn parses_x_death() {
        let mut entry = FieldTable::default();
        entry.insert("queue".into(), AMQPValue::LongString("t.q".into()));
        entry.insert("reason".into(), AMQPValue::LongString("expired".into()));
        entry.insert("count".into(), AMQPValue::LongLongInt(2));
        entry.insert("exchange".into(), AMQPValue::LongString("t.events".into()));
        entry.insert(
            "routing-keys".into(),
            AMQPValue::FieldArray(vec![AMQPValue::LongString("job.a".into())].into()),
        );
        entry.insert("time".into(), AMQPValue::Timestamp(1_700_000_000));
        let mut headers = FieldTable::default();
        headers.insert(
            "x-death".into(),
            AMQPValue::FieldArray(vec![AMQPValue::FieldTable(entry)].into()),
        );
        let parsed = deaths(&headers);
        assert_eq!(
            parsed,
            [Death {
                queue: "t.q".into(),
                reason: "expired".into(),
                count: 2,
                exchange: "t.events".into(),
                routing_keys: vec!["job.a".into()],
                time: Some(1_700_000_000),
            }]
        );
        let json = table_json(&headers);
        assert_eq!(json["x-death"][0]["routing-keys"][0], "job.a");
        assert_eq!(json["x-death"][0]["time"], 1_700_000_000);
    }

    #[test]
    fn broker_annotations_are_not_copied() {
        let mut headers = FieldTable::default();
        headers.insert("x-delivery-count".into(), AMQPValue::LongLongInt(3));
        let only_broker = BasicProperties::default().with_headers(headers.clone());
        assert!(identical_headers(&only_broker).is_none());
        headers.insert("x-palm-attempt".into(), AMQPValue::LongLongInt(1));
        let mixed = BasicProperties::default().with_headers(headers);
        let kept = identical_headers(&mixed).unwrap();
        assert!(kept.inner().contains_key("x-palm-attempt"));
        assert!(!kept.inner().contains_key("x-delivery-count"));
        let empty = BasicProperties::default().with_headers(FieldTable::default());
        assert!(identical_headers(&empty).is_some_and(|h| h.inner().is_empty()));
    }
}
