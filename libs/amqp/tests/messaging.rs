//! The AMQP lib against the real broker: delivery counts, retries, dead
//! letters, unroutable publishes, single-active-consumer failover.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::TestBus;
use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use palm_amqp::{Consumer, HandlerError, Incoming, OutgoingMessage, PublishError, QueueSpec, dlq};
use palm_core::Envelope;
use palm_core::events::MemberJoined;
use palm_testkit::eventually;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

fn message(bus: &TestBus, routing_key: &str, id: &str, body: &[u8]) -> OutgoingMessage {
    OutgoingMessage::raw(
        bus.topology.names.events_exchange(),
        routing_key,
        id,
        body.to_vec(),
    )
}

type Seen = Arc<Mutex<HashMap<String, u32>>>;

fn counting_handler(
    seen: Seen,
) -> impl Fn(Incoming) -> std::future::Ready<Result<(), HandlerError>> + Send + Sync {
    move |incoming: Incoming| {
        let id = incoming.message_id.unwrap_or_default();
        *seen.lock().unwrap().entry(id).or_default() += 1;
        std::future::ready(Ok(()))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_confirmed_messages_are_each_consumed_exactly_once() {
    const COUNT: usize = 10_000;
    let bus = TestBus::queue("work", &["work.#"]).await;
    let seen: Seen = Arc::default();
    let shutdown = CancellationToken::new();
    let consumer = Consumer::new(
        &bus.broker,
        &bus.publisher,
        "work",
        counting_handler(Arc::clone(&seen)),
    );
    let consuming = tokio::spawn(consumer.run(shutdown.clone()));

    let body = vec![b'x'; 1024];
    let mut publishes: FuturesUnordered<_> = (0..COUNT)
        .map(|i| {
            let publisher = bus.publisher.clone();
            let message = message(&bus, "work.item", &format!("m-{i}"), &body);
            async move { publisher.publish(&message).await }
        })
        .collect();
    while let Some(result) = publishes.next().await {
        result.unwrap();
    }

    let seen_now = Arc::clone(&seen);
    eventually(
        "all messages consumed",
        Duration::from_secs(120),
        move || {
            let done = seen_now.lock().unwrap().len() == COUNT;
            async move { done.then_some(()) }
        },
    )
    .await;
    // Give a duplicate, if there were one, the chance to arrive before counting.
    tokio::time::sleep(Duration::from_millis(500)).await;
    shutdown.cancel();
    consuming.await.unwrap().unwrap();

    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), COUNT);
    let duplicated: Vec<_> = seen.iter().filter(|(_, n)| **n != 1).collect();
    assert!(
        duplicated.is_empty(),
        "consumed more than once: {duplicated:?}"
    );
    for i in 0..COUNT {
        assert!(seen.contains_key(&format!("m-{i}")), "m-{i} never consumed");
    }
    bus.teardown().await;
}

#[tokio::test]
async fn transient_failures_are_retried_with_growing_delays_then_succeed() {
    let bus = TestBus::queue("flaky", &["flaky.#"]).await;
    let attempts: Arc<Mutex<Vec<(u32, Instant)>>> = Arc::default();
    let handler = {
        let attempts = Arc::clone(&attempts);
        move |incoming: Incoming| {
            let attempts = Arc::clone(&attempts);
            async move {
                attempts
                    .lock()
                    .unwrap()
                    .push((incoming.attempt, Instant::now()));
                if incoming.attempt < 3 {
                    Err(HandlerError::transient(anyhow::anyhow!("dependency down")))
                } else {
                    Ok(())
                }
            }
        }
    };
    let shutdown = CancellationToken::new();
    let consuming = tokio::spawn(
        Consumer::new(&bus.broker, &bus.publisher, "flaky", handler).run(shutdown.clone()),
    );
    bus.publisher
        .publish(&message(&bus, "flaky.one", "only", b"{}"))
        .await
        .unwrap();

    let attempts_now = Arc::clone(&attempts);
    eventually("four attempts", Duration::from_secs(20), move || {
        let n = attempts_now.lock().unwrap().len();
        async move { (n >= 4).then_some(()) }
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    shutdown.cancel();
    consuming.await.unwrap().unwrap();

    let attempts = attempts.lock().unwrap().clone();
    assert_eq!(
        attempts.iter().map(|(n, _)| *n).collect::<Vec<_>>(),
        vec![0, 1, 2, 3],
        "succeeded once, then stopped"
    );
    let gaps: Vec<Duration> = attempts.windows(2).map(|w| w[1].1 - w[0].1).collect();
    for (gap, configured) in gaps.iter().zip([100, 300, 900]) {
        assert!(
            *gap >= Duration::from_millis(configured),
            "gap {gap:?} shorter than the configured {configured} ms"
        );
    }
    assert!(
        gaps[0] < gaps[1] && gaps[1] < gaps[2],
        "delays must grow: {gaps:?}"
    );
    let dead = dlq::inspect(&bus.broker, &bus.queue_name("flaky"), 10)
        .await
        .unwrap();
    assert!(dead.is_empty(), "nothing dead-lettered: {dead:?}");
    bus.teardown().await;
}

#[tokio::test]
async fn a_poison_message_is_dead_lettered_after_the_delivery_limit_and_its_neighbours_are_unaffected()
 {
    let mut settings = common::settings(&palm_testkit::amqp_url());
    settings.retry_delays_ms = vec![50, 100];
    settings.delivery_limit = 3;
    let bus = TestBus::start(settings, vec![QueueSpec::new("jobs", &["jobs.#"])]).await;
    let seen: Seen = Arc::default();
    let handler = {
        let seen = Arc::clone(&seen);
        move |incoming: Incoming| {
            let id = incoming.message_id.clone().unwrap_or_default();
            *seen.lock().unwrap().entry(id.clone()).or_default() += 1;
            async move {
                if id == "poison" {
                    Err(HandlerError::transient(anyhow::anyhow!(
                        "cannot reach the thing"
                    )))
                } else {
                    Ok(())
                }
            }
        }
    };
    let shutdown = CancellationToken::new();
    let consuming = tokio::spawn(
        Consumer::new(&bus.broker, &bus.publisher, "jobs", handler).run(shutdown.clone()),
    );
    for id in ["before", "poison", "after"] {
        bus.publisher
            .publish(&message(&bus, "jobs.run", id, b"{}"))
            .await
            .unwrap();
    }

    let dead = bus.wait_for_dead_letters("jobs").await;
    shutdown.cancel();
    consuming.await.unwrap().unwrap();

    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].message_id.as_deref(), Some("poison"));
    assert_eq!(dead[0].routing_key.as_deref(), Some("jobs.run"));
    assert!(
        dead[0]
            .reason
            .contains("delivery limit reached after 3 attempts"),
        "{}",
        dead[0].reason
    );
    assert!(
        dead[0].reason.contains("cannot reach the thing"),
        "{}",
        dead[0].reason
    );
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.get("poison"), Some(&3));
    assert_eq!(seen.get("before"), Some(&1));
    assert_eq!(seen.get("after"), Some(&1));
    bus.teardown().await;
}

#[tokio::test]
async fn a_malformed_body_goes_straight_to_the_dlq_and_can_be_replayed() {
    let bus = TestBus::queue("events", &["member.joined"]).await;
    let calls: Seen = Arc::default();
    let handler = {
        let calls = Arc::clone(&calls);
        move |incoming: Incoming| {
            *calls
                .lock()
                .unwrap()
                .entry(incoming.message_id.clone().unwrap_or_default())
                .or_default() += 1;
            async move { incoming.envelope::<MemberJoined>().map(|_| ()) }
        }
    };
    let shutdown = CancellationToken::new();
    let consuming = tokio::spawn(
        Consumer::new(&bus.broker, &bus.publisher, "events", handler).run(shutdown.clone()),
    );

    let good = Envelope::new(
        "test",
        MemberJoined {
            community_id: Uuid::now_v7(),
            community_slug: "c".into(),
            palm_id: Uuid::now_v7(),
        },
    );
    bus.publisher
        .publish(&OutgoingMessage::event(&bus.topology.names, &good))
        .await
        .unwrap();
    bus.publisher
        .publish(&message(&bus, "member.joined", "garbage", b"{not json"))
        .await
        .unwrap();

    let dead = bus.wait_for_dead_letters("events").await;
    assert_eq!(dead[0].message_id.as_deref(), Some("garbage"));
    assert!(
        dead[0]
            .reason
            .starts_with("permanent failure: malformed event"),
        "{}",
        dead[0].reason
    );
    assert_eq!(
        calls.lock().unwrap().get("garbage"),
        Some(&1),
        "no retry for a malformed body"
    );
    assert_eq!(calls.lock().unwrap().get(&good.id.to_string()), Some(&1));

    // An operator replay puts it back through the consumer (and, still
    // malformed, back into the DLQ).
    // `inspect` handed the message back; the quorum queue re-queues it
    // asynchronously, so the replay may need a second look.
    let moved = eventually(
        "the replay to find the message",
        Duration::from_secs(10),
        || async {
            let moved = dlq::replay(&bus.broker, &bus.publisher, &bus.queue_name("events"), 10)
                .await
                .unwrap();
            (moved > 0).then_some(moved)
        },
    )
    .await;
    assert_eq!(moved, 1);
    let calls_now = Arc::clone(&calls);
    eventually(
        "the replayed message handled",
        Duration::from_secs(10),
        move || {
            let n = calls_now.lock().unwrap().get("garbage").copied();
            async move { (n == Some(2)).then_some(()) }
        },
    )
    .await;
    shutdown.cancel();
    consuming.await.unwrap().unwrap();
    bus.teardown().await;
}

#[tokio::test]
async fn an_unroutable_publish_is_an_error() {
    let bus = TestBus::queue("bound", &["bound.key"]).await;
    let error = bus
        .publisher
        .publish(&message(&bus, "nobody.listens", "x", b"{}"))
        .await
        .unwrap_err();
    assert!(matches!(error, PublishError::Unroutable { .. }), "{error}");
    bus.publisher
        .publish(&message(&bus, "bound.key", "y", b"{}"))
        .await
        .unwrap();
    bus.teardown().await;
}

#[tokio::test]
async fn single_active_consumer_only_one_receives_and_the_standby_takes_over() {
    let settings = common::settings(&palm_testkit::amqp_url());
    let bus = TestBus::start(
        settings,
        vec![QueueSpec::new("solo", &["solo.#"]).single_active_consumer()],
    )
    .await;
    let first: Seen = Arc::default();
    let second: Seen = Arc::default();
    let stop_first = CancellationToken::new();
    let stop_second = CancellationToken::new();
    let first_run = tokio::spawn(
        Consumer::new(
            &bus.broker,
            &bus.publisher,
            "solo",
            counting_handler(Arc::clone(&first)),
        )
        .run(stop_first.clone()),
    );
    let first_now = Arc::clone(&first);
    // The first to subscribe is the active one: make sure it is subscribed.
    bus.publisher
        .publish(&message(&bus, "solo.x", "warmup", b"{}"))
        .await
        .unwrap();
    eventually(
        "the first consumer active",
        Duration::from_secs(10),
        move || {
            let n = first_now.lock().unwrap().len();
            async move { (n == 1).then_some(()) }
        },
    )
    .await;
    let second_run = tokio::spawn(
        Consumer::new(
            &bus.broker,
            &bus.publisher,
            "solo",
            counting_handler(Arc::clone(&second)),
        )
        .run(stop_second.clone()),
    );
    for i in 0..50 {
        bus.publisher
            .publish(&message(&bus, "solo.x", &format!("a-{i}"), b"{}"))
            .await
            .unwrap();
    }
    let first_now = Arc::clone(&first);
    eventually(
        "the active consumer got everything",
        Duration::from_secs(10),
        move || {
            let n = first_now.lock().unwrap().len();
            async move { (n == 51).then_some(()) }
        },
    )
    .await;
    assert!(
        second.lock().unwrap().is_empty(),
        "the standby received while the active one ran"
    );

    stop_first.cancel();
    first_run.await.unwrap().unwrap();
    for i in 0..50 {
        bus.publisher
            .publish(&message(&bus, "solo.x", &format!("b-{i}"), b"{}"))
            .await
            .unwrap();
    }
    let second_now = Arc::clone(&second);
    eventually(
        "the standby took over",
        Duration::from_secs(10),
        move || {
            let n = second_now.lock().unwrap().len();
            async move { (n == 50).then_some(()) }
        },
    )
    .await;
    assert_eq!(first.lock().unwrap().len(), 51);
    stop_second.cancel();
    second_run.await.unwrap().unwrap();
    bus.teardown().await;
}

#[tokio::test]
async fn a_panicking_handler_does_not_stop_the_consumer_and_its_message_is_dead_lettered() {
    let mut settings = common::settings(&palm_testkit::amqp_url());
    settings.retry_delays_ms = vec![50];
    settings.delivery_limit = 2;
    let bus = TestBus::start(settings, vec![QueueSpec::new("fragile", &["fragile"])]).await;
    let handled: Seen = Arc::default();
    let handler = {
        let handled = Arc::clone(&handled);
        move |incoming: Incoming| {
            let id = incoming.message_id.unwrap_or_default();
            assert!(id != "bomb", "boom");
            *handled.lock().unwrap().entry(id).or_default() += 1;
            std::future::ready(Ok(()))
        }
    };
    let shutdown = CancellationToken::new();
    let consuming = tokio::spawn(
        Consumer::new(&bus.broker, &bus.publisher, "fragile", handler).run(shutdown.clone()),
    );
    for id in ["bomb", "fine"] {
        bus.publisher
            .publish(&message(&bus, "fragile", id, b"{}"))
            .await
            .unwrap();
    }
    let dead = bus.wait_for_dead_letters("fragile").await;
    assert!(
        dead[0].reason.contains("handler panicked: boom"),
        "{}",
        dead[0].reason
    );
    assert_eq!(handled.lock().unwrap().get("fine"), Some(&1));
    shutdown.cancel();
    consuming.await.unwrap().unwrap();
    bus.teardown().await;
}
