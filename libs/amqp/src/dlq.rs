//! Operator helpers for dead-letter queues: look at what is there and why,
//! and replay messages into their queue once the cause is fixed.

use lapin::options::{BasicAckOptions, BasicGetOptions, BasicNackOptions};
use lapin::types::FieldTable;

use crate::broker::BrokerError;
use crate::publisher::{OutgoingMessage, PublishError};
use crate::{Broker, Names, Publisher, headers};

/// Header marking a replayed copy with the replay run that made it.
const REPLAY_RUN: &str = "x-palm-replay-run";

/// One dead-lettered message, as an operator sees it.
#[derive(Debug, Clone)]
pub struct DeadLetter {
    /// AMQP `message_id`.
    pub message_id: Option<String>,
    /// Routing key it was first published with.
    pub routing_key: Option<String>,
    /// Why it was dead-lettered: the consumer's reason, or the broker's
    /// (`delivery_limit`, `rejected`, `expired`) from `x-death`.
    pub reason: String,
    /// Body bytes.
    pub body: Vec<u8>,
}

/// Failure of a DLQ operation.
#[derive(Debug, thiserror::Error)]
pub enum DlqError {
    /// The broker is unreachable or the process is stopping.
    #[error(transparent)]
    Broker(#[from] BrokerError),
    /// An AMQP operation failed.
    #[error(transparent)]
    Amqp(#[from] lapin::Error),
    /// A replayed message was not confirmed; it stays in the DLQ.
    #[error(transparent)]
    Publish(#[from] PublishError),
}

/// Reads up to `limit` messages of the DLQ of `queue` (a full name) and puts
/// them back, unchanged, where they were.
pub async fn inspect(
    broker: &Broker,
    queue: &str,
    limit: usize,
) -> Result<Vec<DeadLetter>, DlqError> {
    let live = broker.live().await?;
    let channel = live.connection.create_channel().await?;
    let dlq = Names::dead_letter_queue(queue);
    let mut seen = Vec::new();
    while seen.len() < limit {
        let Some(message) = channel
            .basic_get(dlq.as_str().into(), BasicGetOptions::default())
            .await?
        else {
            break;
        };
        let empty = FieldTable::default();
        let hdrs = message
            .delivery
            .properties
            .headers()
            .as_ref()
            .unwrap_or(&empty);
        let reason = headers::get_str(hdrs, headers::DEAD_LETTER_REASON)
            .or_else(|| headers::get_str(hdrs, "x-first-death-reason"))
            .unwrap_or_else(|| "unknown".into());
        seen.push(DeadLetter {
            message_id: message
                .delivery
                .properties
                .message_id()
                .as_ref()
                .map(|s| s.as_str().to_owned()),
            routing_key: headers::get_str(hdrs, headers::ORIGINAL_ROUTING_KEY),
            reason,
            body: message.delivery.data.clone(),
        });
    }
    // Closing without acking returns every message we took to the DLQ.
    let _ = channel.close(200, "inspected".into()).await;
    Ok(seen)
}

/// Moves up to `limit` messages from the DLQ of `queue` back into `queue`
/// with their attempt count reset. Returns how many moved.
///
/// A message is replayed at most once per call: each copy carries this run's
/// id, and meeting a copy of this run back in the DLQ (it failed again) ends
/// the run instead of looping.
pub async fn replay(
    broker: &Broker,
    publisher: &Publisher,
    queue: &str,
    limit: usize,
) -> Result<usize, DlqError> {
    let live = broker.live().await?;
    let channel = live.connection.create_channel().await?;
    let dlq = Names::dead_letter_queue(queue);
    let run = uuid::Uuid::new_v4().to_string();
    let mut moved = 0;
    while moved < limit {
        let Some(message) = channel
            .basic_get(dlq.as_str().into(), BasicGetOptions::default())
            .await?
        else {
            break;
        };
        let delivery = &message.delivery;
        let mut hdrs = delivery.properties.headers().clone().unwrap_or_default();
        if headers::get_str(&hdrs, REPLAY_RUN).as_deref() == Some(run.as_str()) {
            let requeue = BasicNackOptions {
                requeue: true,
                ..BasicNackOptions::default()
            };
            delivery.nack(requeue).await?;
            break;
        }
        let mut inner = hdrs.inner().clone();
        for key in [
            headers::ATTEMPT,
            headers::DEAD_LETTER_REASON,
            headers::DEAD_LETTER_QUEUE,
        ] {
            inner.remove(key);
        }
        hdrs = FieldTable::from(inner);
        headers::set_str(&mut hdrs, REPLAY_RUN, &run);
        let message_id = delivery
            .properties
            .message_id()
            .as_ref()
            .map(|s| s.as_str().to_owned());
        let mut copy = OutgoingMessage::raw(
            "",
            queue,
            message_id.unwrap_or_default(),
            delivery.data.clone(),
        );
        copy.headers = hdrs;
        copy.kind = delivery
            .properties
            .kind()
            .as_ref()
            .map(|k| k.as_str().to_owned());
        if let Err(error) = publisher.publish(&copy).await {
            let _ = delivery
                .nack(BasicNackOptions {
                    requeue: true,
                    ..BasicNackOptions::default()
                })
                .await;
            return Err(error.into());
        }
        delivery.ack(BasicAckOptions::default()).await?;
        moved += 1;
    }
    let _ = channel.close(200, "replayed".into()).await;
    Ok(moved)
}
