//! Shared setup for the AMQP lib's integration tests: an isolated prefix per
//! test on the real broker, and teardown of everything declared.
#![allow(dead_code, unreachable_pub, clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use palm_amqp::{AmqpSettings, Broker, Publisher, QueueSpec, Topology};
use secrecy::SecretString;

#[derive(Debug)]
pub struct TestBus {
    pub broker: Broker,
    pub publisher: Publisher,
    pub topology: Topology,
    url: String,
}

pub fn settings(url: &str) -> AmqpSettings {
    AmqpSettings {
        url: SecretString::from(url.to_owned()),
        prefix: palm_testkit::unique_prefix(),
        retry_delays_ms: vec![100, 300, 900],
        delivery_limit: 5,
        reconnect_min_ms: 50,
        reconnect_max_ms: 500,
        ..AmqpSettings::default()
    }
}

impl TestBus {
    pub async fn start(settings: AmqpSettings, queues: Vec<QueueSpec>) -> Self {
        let url = secrecy::ExposeSecret::expose_secret(&settings.url).to_owned();
        let topology = Topology::new(&settings, queues);
        let broker = Broker::start(settings, topology.clone());
        broker
            .wait_connected(Duration::from_secs(20))
            .await
            .unwrap();
        let publisher = Publisher::new(broker.clone());
        Self {
            broker,
            publisher,
            topology,
            url,
        }
    }

    pub async fn queue(short: &str, bindings: &[&str]) -> Self {
        Self::start(
            settings(&palm_testkit::amqp_url()),
            vec![QueueSpec::new(short, bindings)],
        )
        .await
    }

    pub fn queue_name(&self, short: &str) -> String {
        self.topology.names.queue(short)
    }

    /// Deletes every queue and exchange the test declared.
    pub async fn teardown(self) {
        self.broker.close().await;
        palm_testkit::cleanup::delete(
            &self.url,
            &self.topology.queue_names(),
            &self.topology.exchange_names(),
        )
        .await;
    }
}

impl TestBus {
    /// Waits until the DLQ of queue `short` holds something, and returns it.
    pub async fn wait_for_dead_letters(&self, short: &str) -> Vec<palm_amqp::dlq::DeadLetter> {
        let (broker, queue) = (self.broker.clone(), self.queue_name(short));
        palm_testkit::eventually("a message in the DLQ", Duration::from_secs(20), || {
            let (broker, queue) = (broker.clone(), queue.clone());
            async move {
                let dead = palm_amqp::dlq::inspect(&broker, &queue, 10).await.unwrap();
                (!dead.is_empty()).then_some(dead)
            }
        })
        .await
    }
}
