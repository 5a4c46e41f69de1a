//! Exchange and queue names, and the topology every service declares from
//! code on each (re)connect.
//!
//! Per consuming queue `Q` (all names carry the configured prefix):
//! - `Q`: quorum queue bound to the events exchange, `x-delivery-limit`,
//!   dead-lettering to the DLX at-least-once (`overflow=reject-publish`).
//! - `Q.retry.N`: one quorum delay queue per retry step with a fixed
//!   `x-message-ttl`; expired messages dead-letter back to `Q` through the
//!   default exchange, so a retry reaches only `Q`, never the other queues
//!   bound to the same routing key. A fixed TTL per queue keeps expiry FIFO.
//! - `Q.dlq`: the dead-letter queue, bound to the DLX with key `Q`.

use std::time::Duration;

use lapin::options::{ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions};
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::{Channel, ExchangeKind};

/// Prefix-aware names of every exchange and queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Names {
    prefix: String,
}

impl Names {
    /// Names under `prefix` (`palm`, `palm-stg`, `t-1a2b3c` in tests).
    pub fn new(prefix: impl Into<String>) -> Self {
        Self {
            prefix: prefix.into(),
        }
    }

    /// The prefix itself.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// Durable topic exchange carrying every domain event.
    pub fn events_exchange(&self) -> String {
        format!("{}.events", self.prefix)
    }

    /// Direct exchange that routes dead letters to `<queue>.dlq` by queue name.
    pub fn dead_letter_exchange(&self) -> String {
        format!("{}.dlx", self.prefix)
    }

    /// Full name of a consuming queue from its short name (`palmdao.results`).
    pub fn queue(&self, short_name: &str) -> String {
        format!("{}.{short_name}", self.prefix)
    }

    /// Delay queue for retry step `step` of `queue` (a full name).
    pub fn retry_queue(queue: &str, step: usize) -> String {
        format!("{queue}.retry.{step}")
    }

    /// Dead-letter queue of `queue` (a full name).
    pub fn dead_letter_queue(queue: &str) -> String {
        format!("{queue}.dlq")
    }
}

/// One consuming queue and its satellites.
#[derive(Debug, Clone)]
pub struct QueueSpec {
    /// Short name; the declared name is `Names::queue(short_name)`.
    pub short_name: String,
    /// Routing-key patterns bound on the events exchange.
    pub bindings: Vec<String>,
    /// Only one consumer receives at a time; the others stand by.
    pub single_active_consumer: bool,
}

impl QueueSpec {
    /// A queue bound to `bindings`.
    pub fn new(short_name: impl Into<String>, bindings: &[&str]) -> Self {
        Self {
            short_name: short_name.into(),
            bindings: bindings.iter().map(|b| (*b).to_owned()).collect(),
            single_active_consumer: false,
        }
    }

    /// Marks the queue single-active-consumer.
    pub fn single_active_consumer(mut self) -> Self {
        self.single_active_consumer = true;
        self
    }
}

/// Everything one service declares.
#[derive(Debug, Clone)]
pub struct Topology {
    /// Prefix-aware names.
    pub names: Names,
    /// Consuming queues (empty for a publish-only service).
    pub queues: Vec<QueueSpec>,
    /// `x-delivery-limit` of every consuming queue (`amqp.redelivery_limit`).
    pub redelivery_limit: u32,
    /// TTL of each retry step's delay queue.
    pub retry_delays: Vec<Duration>,
}

impl Topology {
    /// The topology of a service with `queues`, named and limited by `settings`.
    pub fn new(settings: &crate::AmqpSettings, queues: Vec<QueueSpec>) -> Self {
        Self {
            names: Names::new(settings.prefix.clone()),
            queues,
            redelivery_limit: settings.redelivery_limit,
            retry_delays: settings.retry_delays(),
        }
    }

    /// Every queue this topology declares: each consuming queue with its
    /// delay queues and its dead-letter queue.
    pub fn queue_names(&self) -> Vec<String> {
        let mut names = Vec::new();
        for spec in &self.queues {
            let queue = self.names.queue(&spec.short_name);
            names.extend((0..self.retry_delays.len()).map(|step| Names::retry_queue(&queue, step)));
            names.push(Names::dead_letter_queue(&queue));
            names.push(queue);
        }
        names
    }

    /// Every exchange this topology declares.
    pub fn exchange_names(&self) -> Vec<String> {
        vec![
            self.names.events_exchange(),
            self.names.dead_letter_exchange(),
        ]
    }

    /// Declares exchanges, queues and bindings; idempotent.
    pub async fn declare(&self, channel: &Channel) -> lapin::Result<()> {
        let durable = ExchangeDeclareOptions {
            durable: true,
            ..ExchangeDeclareOptions::default()
        };
        let events = self.names.events_exchange();
        let dlx = self.names.dead_letter_exchange();
        channel
            .exchange_declare(
                events.as_str().into(),
                ExchangeKind::Topic,
                durable,
                FieldTable::default(),
            )
            .await?;
        channel
            .exchange_declare(
                dlx.as_str().into(),
                ExchangeKind::Direct,
                durable,
                FieldTable::default(),
            )
            .await?;

        for spec in &self.queues {
            let queue = self.names.queue(&spec.short_name);
            let mut args = quorum_args();
            args.insert(
                "x-delivery-limit".into(),
                AMQPValue::LongLongInt(self.redelivery_limit.into()),
            );
            args.insert("x-dead-letter-exchange".into(), long_string(&dlx));
            args.insert("x-dead-letter-routing-key".into(), long_string(&queue));
            if spec.single_active_consumer {
                args.insert("x-single-active-consumer".into(), AMQPValue::Boolean(true));
            }
            declare_queue(channel, &queue, args).await?;
            for binding in &spec.bindings {
                channel
                    .queue_bind(
                        queue.as_str().into(),
                        events.as_str().into(),
                        binding.as_str().into(),
                        QueueBindOptions::default(),
                        FieldTable::default(),
                    )
                    .await?;
            }

            for (step, delay) in self.retry_delays.iter().enumerate() {
                let mut args = quorum_args();
                let ttl_ms = i64::try_from(delay.as_millis()).unwrap_or(i64::MAX);
                args.insert("x-message-ttl".into(), AMQPValue::LongLongInt(ttl_ms));
                args.insert("x-dead-letter-exchange".into(), long_string(""));
                args.insert("x-dead-letter-routing-key".into(), long_string(&queue));
                declare_queue(channel, &Names::retry_queue(&queue, step), args).await?;
            }

            let dlq = Names::dead_letter_queue(&queue);
            declare_queue(channel, &dlq, quorum_args()).await?;
            channel
                .queue_bind(
                    dlq.as_str().into(),
                    dlx.as_str().into(),
                    queue.as_str().into(),
                    QueueBindOptions::default(),
                    FieldTable::default(),
                )
                .await?;
        }
        Ok(())
    }
}

/// Whether `routing_key` matches the topic-exchange binding `pattern`
/// (words split on `.`; `*` is exactly one word, `#` zero or more), as the
/// broker matches it.
pub fn topic_matches(pattern: &str, routing_key: &str) -> bool {
    fn matches(pattern: &[&str], key: &[&str]) -> bool {
        match pattern.split_first() {
            None => key.is_empty(),
            Some((&"#", rest)) => (0..=key.len()).any(|skip| matches(rest, &key[skip..])),
            Some((&word, rest)) => key.split_first().is_some_and(|(first, tail)| {
                (word == "*" || word == *first) && matches(rest, tail)
            }),
        }
    }
    let pattern: Vec<&str> = pattern.split('.').collect();
    let key: Vec<&str> = routing_key.split('.').collect();
    matches(&pattern, &key)
}

fn quorum_args() -> FieldTable {
    let mut args = FieldTable::default();
    args.insert("x-queue-type".into(), long_string("quorum"));
    // At-least-once dead-lettering needs reject-publish: the broker then
    // keeps a message until the DLQ confirmed it instead of dropping it.
    args.insert(
        "x-dead-letter-strategy".into(),
        long_string("at-least-once"),
    );
    args.insert("x-overflow".into(), long_string("reject-publish"));
    args
}

async fn declare_queue(channel: &Channel, name: &str, args: FieldTable) -> lapin::Result<()> {
    let options = QueueDeclareOptions {
        durable: true,
        ..QueueDeclareOptions::default()
    };
    channel
        .queue_declare(ShortString::from(name), options, args)
        .await?;
    Ok(())
}

fn long_string(value: &str) -> AMQPValue {
    AMQPValue::LongString(LongString::from(value))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_name_carries_the_prefix() {
        let names = Names::new("t-1");
        let queue = names.queue("palmdao.results");
        assert_eq!(names.events_exchange(), "t-1.events");
        assert_eq!(names.dead_letter_exchange(), "t-1.dlx");
        assert_eq!(queue, "t-1.palmdao.results");
        assert_eq!(Names::retry_queue(&queue, 2), "t-1.palmdao.results.retry.2");
        assert_eq!(Names::dead_letter_queue(&queue), "t-1.palmdao.results.dlq");
    }

    #[test]
    fn topic_patterns_match_as_the_broker_does() {
        assert!(topic_matches("vote.submitted", "vote.submitted"));
        assert!(topic_matches(
            "verification.requested.*",
            "verification.requested.discord"
        ));
        assert!(!topic_matches(
            "verification.requested.*",
            "verification.requested"
        ));
        assert!(!topic_matches(
            "verification.requested.*",
            "verification.requested.a.b"
        ));
        assert!(topic_matches("#", "member.joined"));
        assert!(topic_matches("vote.#", "vote"));
        assert!(topic_matches("vote.#", "vote.validated"));
        assert!(topic_matches("#.rejected", "vote.rejected"));
        assert!(!topic_matches("vote.submitted", "vote.validated"));
    }

    #[test]
    fn lists_everything_it_declares() {
        let settings = crate::AmqpSettings {
            prefix: "t-1".into(),
            retry_delays_ms: vec![10, 20],
            ..crate::AmqpSettings::default()
        };
        let topology = Topology::new(&settings, vec![QueueSpec::new("q", &["k"])]);
        assert_eq!(
            topology.queue_names(),
            ["t-1.q.retry.0", "t-1.q.retry.1", "t-1.q.dlq", "t-1.q"]
        );
        assert_eq!(topology.exchange_names(), ["t-1.events", "t-1.dlx"]);
    }
}
