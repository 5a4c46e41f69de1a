//! A broker restart while a publisher and a consumer run: both recover inside
//! the same process, no confirmed message is lost, and `/readyz` goes
//! not-ready and back to ready. Uses a private RabbitMQ node so the restart
//! does not disturb tests running beside it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use palm_amqp::{
    AmqpSettings, Broker, Consumer, Incoming, OutgoingMessage, Publisher, QueueSpec, Topology,
};
use palm_service::Readiness;
use palm_testkit::eventually;
use palm_testkit::rabbit::PrivateRabbit;
use palm_tests::get;
use secrecy::SecretString;
use tokio_util::sync::CancellationToken;

async fn wait_readyz(admin: &str, status: u16, what: &str) {
    eventually(what, Duration::from_secs(60), || async move {
        (get(admin, "/readyz").await.0 == status).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publisher_and_consumer_recover_from_a_broker_restart_without_losing_confirmed_messages() {
    // The lib's own log lines (reconnects, resubscriptions) explain a failure.
    let telemetry = palm_service::telemetry::init(
        "broker-restart-test",
        &palm_service::settings::TelemetrySettings::default(),
    )
    .unwrap();
    let rabbit = PrivateRabbit::start().await;
    let settings = AmqpSettings {
        url: SecretString::from(rabbit.url()),
        prefix: palm_testkit::unique_prefix(),
        reconnect_min_ms: 100,
        reconnect_max_ms: 1_000,
        publish_timeout_ms: 120_000,
        ..AmqpSettings::default()
    };
    let broker = Broker::start(
        settings.clone(),
        Topology::new(&settings, vec![QueueSpec::new("survivor", &["tick"])]),
    );
    broker
        .wait_connected(Duration::from_secs(30))
        .await
        .unwrap();
    let publisher = Publisher::new(broker.clone());

    let readiness = Readiness::default();
    readiness.register("amqp", broker.readiness_check());
    readiness.seal();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let admin = listener.local_addr().unwrap().to_string();
    let stop_admin = CancellationToken::new();
    tokio::spawn(palm_service::admin::serve(
        listener,
        readiness,
        stop_admin.clone(),
    ));
    wait_readyz(&admin, 200, "ready before the restart").await;

    let seen: Arc<Mutex<HashSet<String>>> = Arc::default();
    let stop_consumer = CancellationToken::new();
    let consumer = {
        let seen = Arc::clone(&seen);
        Consumer::new(
            &broker,
            &publisher,
            "survivor",
            move |incoming: Incoming| {
                seen.lock()
                    .unwrap()
                    .insert(incoming.message_id.unwrap_or_default());
                std::future::ready(Ok(()))
            },
        )
    };
    let consuming = tokio::spawn(consumer.run(stop_consumer.clone()));

    // Publish continuously, a few at a time, recording what was confirmed.
    let confirmed: Arc<Mutex<Vec<String>>> = Arc::default();
    let publishing = Arc::new(AtomicBool::new(true));
    let producer = {
        let (publisher, confirmed, publishing) = (
            publisher.clone(),
            Arc::clone(&confirmed),
            Arc::clone(&publishing),
        );
        let exchange = broker.names().events_exchange();
        tokio::spawn(async move {
            let mut next = 0_u64;
            while publishing.load(Ordering::Relaxed) {
                let batch: Vec<_> = (next..next + 8)
                    .map(|i| {
                        OutgoingMessage::raw(&exchange, "tick", format!("t-{i}"), b"{}".to_vec())
                    })
                    .collect();
                next += 8;
                let results =
                    futures_util::future::join_all(batch.iter().map(|m| publisher.publish(m)))
                        .await;
                for (message, result) in batch.iter().zip(results) {
                    if result.is_ok() {
                        confirmed.lock().unwrap().push(message.message_id.clone());
                    }
                }
            }
        })
    };
    let confirmed_now = Arc::clone(&confirmed);
    eventually("publishing under way", Duration::from_secs(20), move || {
        let n = confirmed_now.lock().unwrap().len();
        async move { (n >= 200).then_some(()) }
    })
    .await;

    rabbit.stop_app().await;
    wait_readyz(&admin, 503, "not ready while the broker is down").await;
    let confirmed_while_down = confirmed.lock().unwrap().len();
    rabbit.start_app().await;
    wait_readyz(&admin, 200, "ready again after the broker is back").await;
    let confirmed_now = Arc::clone(&confirmed);
    eventually("publishing resumed", Duration::from_secs(60), move || {
        let n = confirmed_now.lock().unwrap().len();
        async move { (n >= confirmed_while_down + 200).then_some(()) }
    })
    .await;
    publishing.store(false, Ordering::Relaxed);
    producer.await.unwrap();

    let confirmed = confirmed.lock().unwrap().clone();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let missing: Vec<String> = {
            let seen = seen.lock().unwrap();
            confirmed
                .iter()
                .filter(|id| !seen.contains(*id))
                .cloned()
                .collect()
        };
        if missing.is_empty() {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{} of {} confirmed messages never consumed, e.g. {:?}",
            missing.len(),
            confirmed.len(),
            &missing[..missing.len().min(5)]
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    eprintln!(
        "confirmed {} messages across the restart, all consumed",
        confirmed.len()
    );

    stop_consumer.cancel();
    consuming.await.unwrap().unwrap();
    stop_admin.cancel();
    broker.close().await;
    telemetry.shutdown();
}
