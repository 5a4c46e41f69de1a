//! SIGTERM while messages are in flight loses nothing: the worker finishes
//! and acks what it started, and whatever it had not started is redelivered
//! to the next worker and applied once.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use futures_util::TryStreamExt;
use mongodb::bson::{Document, doc};
use palm_amqp::{Broker, OutgoingMessage, Publisher, QueueSpec, Topology};
use palm_testkit::eventually;
use palm_testkit::process::{ServiceProcess, binary};
use palm_tests::ServiceEnv;
use secrecy::SecretString;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_during_in_flight_messages_loses_nothing_and_applies_each_once() {
    const JOBS: usize = 40;
    let env = ServiceEnv::new();
    let queues = vec![QueueSpec::new("worker.jobs", &["job.#"])];
    let worker_vars = env.vars(&[
        ("PALM__WORK_MS", "150"),
        ("PALM__AMQP__PREFETCH", "8"),
        ("PALM__AMQP__CONCURRENCY", "4"),
    ]);
    let mut first = ServiceProcess::spawn(binary("palm-test-worker"), &worker_vars);
    first
        .wait_for_line("consuming", Duration::from_secs(20))
        .await;

    let settings = env.amqp_settings();
    let broker = Broker::start(settings.clone(), Topology::new(&settings, queues.clone()));
    broker
        .wait_connected(Duration::from_secs(20))
        .await
        .unwrap();
    let publisher = Publisher::new(broker.clone());
    let exchange = broker.names().events_exchange();
    for i in 0..JOBS {
        let message =
            OutgoingMessage::raw(&exchange, "job.run", format!("job-{i}"), b"{}".to_vec());
        publisher.publish(&message).await.unwrap();
    }

    let settings = palm_mongo::MongoSettings {
        url: SecretString::from(palm_testkit::mongo_url()),
        database: env.database.clone(),
        ..palm_mongo::MongoSettings::default()
    };
    let database = palm_mongo::connect(&settings, "shutdown-test")
        .await
        .unwrap();
    let effects = database.collection::<Document>("effects");
    let counting = effects.clone();
    eventually(
        "the first worker under way",
        Duration::from_secs(30),
        || {
            let effects = counting.clone();
            async move { (effects.count_documents(doc! {}).await.unwrap() >= 6).then_some(()) }
        },
    )
    .await;

    first.sigterm();
    assert_eq!(
        first.wait(Duration::from_secs(15)).await,
        Some(0),
        "drained and exited cleanly"
    );
    let output = first.output();
    let started = output.iter().filter(|l| l.contains("job started")).count();
    let done = output.iter().filter(|l| l.contains("job done")).count();
    assert_eq!(
        started, done,
        "every job the first worker started was finished before exit"
    );
    assert!(done < JOBS, "the first worker was stopped mid-run");

    let mut second = ServiceProcess::spawn(binary("palm-test-worker"), &worker_vars);
    let counting = effects.clone();
    eventually("every job applied", Duration::from_secs(60), || {
        let effects = counting.clone();
        async move { (effects.count_documents(doc! {}).await.unwrap() as usize == JOBS).then_some(()) }
    })
    .await;
    let applied: Vec<Document> = effects
        .find(doc! {})
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap();
    for effect in &applied {
        let times = palm_mongo::integer(effect, "applied");
        assert_eq!(times, Some(1), "applied exactly once: {effect}");
    }
    second.sigterm();
    assert_eq!(second.wait(Duration::from_secs(15)).await, Some(0));
    broker.close().await;
    env.teardown(&queues).await;
    database.drop().await.unwrap();
}
