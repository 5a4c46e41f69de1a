//! The `amqp.*` configuration section.

use std::time::Duration;

use palm_core::InvalidSetting;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

/// How a service reaches and uses RabbitMQ.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AmqpSettings {
    /// `amqp://user:pass@host:port/vhost`; a secret because it holds credentials.
    pub url: SecretString,
    /// Prefix of every exchange and queue name, so environments and tests
    /// sharing a broker never collide.
    pub prefix: String,
    /// Unacked deliveries the broker may push to one consumer.
    pub prefetch: u16,
    /// Deliveries one consumer handles at the same time (≤ `prefetch`).
    pub concurrency: u16,
    /// Publishes awaiting a confirm at once, per publisher.
    pub publish_window: u16,
    /// Give up on one publish (including waiting for a reconnect) after this long.
    pub publish_timeout_ms: u64,
    /// Handler attempts before the consumer dead-letters a message.
    pub delivery_limit: u32,
    /// The quorum queues' `x-delivery-limit`: returns to the queue the broker
    /// tolerates before it dead-letters a message itself. It counts every
    /// return, including prefetched messages handed back when a consumer
    /// stops or reconnects, so it is much larger than `delivery_limit`; it
    /// exists to end crash loops the consumer never gets to report.
    pub redelivery_limit: u32,
    /// Delays before each transient-failure retry; the last one repeats.
    #[serde(deserialize_with = "palm_core::settings::one_or_many")]
    pub retry_delays_ms: Vec<u64>,
    /// First reconnect delay after losing the broker.
    pub reconnect_min_ms: u64,
    /// Longest reconnect delay.
    pub reconnect_max_ms: u64,
}

impl Default for AmqpSettings {
    fn default() -> Self {
        Self {
            url: SecretString::from("amqp://guest:guest@127.0.0.1:5672/%2f"),
            prefix: "palm".into(),
            prefetch: 32,
            concurrency: 16,
            publish_window: 256,
            publish_timeout_ms: 30_000,
            delivery_limit: 6,
            redelivery_limit: 50,
            retry_delays_ms: vec![1_000, 5_000, 30_000, 120_000],
            reconnect_min_ms: 100,
            reconnect_max_ms: 5_000,
        }
    }
}

impl AmqpSettings {
    /// Checks values that parse but cannot work.
    pub fn validate(&self) -> Result<(), InvalidSetting> {
        let bad = |field: &str, reason: &str| Err(InvalidSetting::new("amqp", field, reason));
        let url = self.url.expose_secret();
        if !(url.starts_with("amqp://") || url.starts_with("amqps://")) {
            return bad("url", "must start with amqp:// or amqps://");
        }
        if self.prefix.is_empty()
            || !self
                .prefix
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        {
            return bad(
                "prefix",
                "must be non-empty ASCII letters, digits, '-', '_' or '.'",
            );
        }
        if self.prefetch == 0 {
            return bad("prefetch", "must be at least 1");
        }
        if self.concurrency == 0 || self.concurrency > self.prefetch {
            return bad("concurrency", "must be between 1 and amqp.prefetch");
        }
        if self.publish_window == 0 {
            return bad("publish_window", "must be at least 1");
        }
        if self.delivery_limit == 0 {
            return bad("delivery_limit", "must be at least 1");
        }
        if self.redelivery_limit < self.delivery_limit {
            return bad("redelivery_limit", "must be at least amqp.delivery_limit");
        }
        if self.retry_delays_ms.is_empty() || self.retry_delays_ms.contains(&0) {
            return bad(
                "retry_delays_ms",
                "must list at least one delay, each above 0",
            );
        }
        if self.reconnect_min_ms == 0 || self.reconnect_min_ms > self.reconnect_max_ms {
            return bad(
                "reconnect_min_ms",
                "must be above 0 and at most amqp.reconnect_max_ms",
            );
        }
        Ok(())
    }

    /// Retry delays as durations.
    pub fn retry_delays(&self) -> Vec<Duration> {
        self.retry_delays_ms
            .iter()
            .copied()
            .map(Duration::from_millis)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        AmqpSettings::default().validate().unwrap();
    }

    #[test]
    fn names_the_bad_key() {
        let settings = AmqpSettings {
            concurrency: 500,
            ..AmqpSettings::default()
        };
        assert_eq!(settings.validate().unwrap_err().key, "amqp.concurrency");
        let settings = AmqpSettings {
            url: SecretString::from("http://x"),
            ..AmqpSettings::default()
        };
        assert_eq!(settings.validate().unwrap_err().key, "amqp.url");
    }
}
