//! A queue of the test's own (or a service's, declared ahead of it) whose
//! messages are recorded, so a test can read the events the services emit.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use palm_amqp::{Broker, Consumer, Incoming, Publisher, QueueSpec, Topology};
use palm_core::{Envelope, Event};
use tokio_util::sync::CancellationToken;

use crate::ServiceEnv;

/// A message as recorded: routing key and body.
type Recorded = (String, Vec<u8>);

/// Records every message of one queue on `env`'s prefix.
#[derive(Debug)]
pub struct EventTap {
    broker: Broker,
    stop: CancellationToken,
    consuming: tokio::task::JoinHandle<Result<(), palm_amqp::BrokerError>>,
    seen: Arc<Mutex<Vec<Recorded>>>,
}

impl EventTap {
    /// Declares `spec` (queue and bindings) and starts recording it; events
    /// published from now on are routed to it.
    pub async fn start(env: &ServiceEnv, spec: QueueSpec) -> Self {
        let settings = env.amqp_settings();
        let queue = spec.short_name.clone();
        let broker = Broker::start(settings.clone(), Topology::new(&settings, vec![spec]));
        broker
            .wait_connected(Duration::from_secs(20))
            .await
            .unwrap();
        let seen: Arc<Mutex<Vec<Recorded>>> = Arc::default();
        let stop = CancellationToken::new();
        let consumer = {
            let seen = Arc::clone(&seen);
            Consumer::new(
                &broker,
                &Publisher::new(broker.clone()),
                &queue,
                move |message: Incoming| {
                    seen.lock()
                        .unwrap()
                        .push((message.routing_key.clone(), message.body.clone()));
                    std::future::ready(Ok(()))
                },
            )
        };
        let consuming = tokio::spawn(consumer.run(stop.clone()));
        Self {
            broker,
            stop,
            consuming,
            seen,
        }
    }

    /// The events of type `E` recorded so far, in arrival order.
    pub fn events<E: Event>(&self) -> Vec<Envelope<E>> {
        self.seen
            .lock()
            .unwrap()
            .iter()
            .filter(|(routing_key, _)| routing_key == E::TYPE)
            .map(|(_, body)| Envelope::<E>::from_json(body).unwrap())
            .collect()
    }

    /// How many messages were recorded so far, of any type.
    pub fn len(&self) -> usize {
        self.seen.lock().unwrap().len()
    }

    /// Whether nothing was recorded yet.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The routing keys recorded so far, in arrival order.
    pub fn routing_keys(&self) -> Vec<String> {
        self.seen
            .lock()
            .unwrap()
            .iter()
            .map(|(k, _)| k.clone())
            .collect()
    }

    /// Stops recording and disconnects (the queue stays for the teardown).
    pub async fn stop(self) {
        self.stop.cancel();
        self.consuming.await.unwrap().unwrap();
        self.broker.close().await;
    }
}
