//! Publish-with-confirms → consume-with-ack throughput: raw lapin versus
//! palm-amqp's `Publisher` and `Consumer`, same broker, same 1 KiB messages,
//! same in-flight window and prefetch, same queue type (quorum). Each round
//! runs both, alternating which goes first, and reports their ratio.
//!
//! Run: `make bench` (or `cargo bench -p palm-amqp --bench amqp_throughput`).
//! Tune with BENCH_MESSAGES, BENCH_ROUNDS, BENCH_WINDOW, BENCH_PREFETCH and
//! PALM_AMQP_URL.
// The raw-lapin baseline is the point of this benchmark.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stdout,
    clippy::disallowed_methods
)]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, BasicQosOptions,
    ConfirmSelectOptions,
};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Connection, ConnectionProperties};
use palm_amqp::{
    AmqpSettings, Broker, Consumer, Incoming, OutgoingMessage, Publisher, QueueSpec, Topology,
};
use secrecy::SecretString;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

struct Params {
    url: String,
    messages: usize,
    window: u16,
    prefetch: u16,
}

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Declares a fresh quorum queue (via the lib's topology code, so both sides
/// use an identical queue) and returns its settings and topology.
fn setup(params: &Params) -> (AmqpSettings, Topology) {
    let settings = AmqpSettings {
        url: SecretString::from(params.url.clone()),
        prefix: format!("bench-{}", uuid::Uuid::new_v4().simple()),
        prefetch: params.prefetch,
        concurrency: params.prefetch,
        publish_window: params.window,
        ..AmqpSettings::default()
    };
    let topology = Topology::new(&settings, vec![QueueSpec::new("bench", &["bench"])]);
    (settings, topology)
}

async fn teardown(params: &Params, topology: &Topology) {
    palm_testkit::cleanup::delete(
        &params.url,
        &topology.queue_names(),
        &topology.exchange_names(),
    )
    .await;
}

async fn raw_lapin(params: &Params) -> f64 {
    let (_, topology) = setup(params);
    let connection = Connection::connect(&params.url, ConnectionProperties::default())
        .await
        .unwrap();
    topology
        .declare(&connection.create_channel().await.unwrap())
        .await
        .unwrap();
    let queue = topology.names.queue("bench");
    let exchange = topology.names.events_exchange();

    let consume_channel = connection.create_channel().await.unwrap();
    consume_channel
        .basic_qos(params.prefetch, BasicQosOptions::default())
        .await
        .unwrap();
    let mut consumer = consume_channel
        .basic_consume(
            queue.as_str().into(),
            "".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    // Acks run concurrently up to the prefetch, as the lib's consumer runs
    // handlers (its concurrency is set to the prefetch above): a baseline
    // that awaited each ack in turn would flatter the lib.
    let total = params.messages;
    let params_prefetch = params.prefetch;
    let consumed = tokio::spawn(async move {
        let concurrency = usize::from(params_prefetch);
        let acking =
            consumer
                .by_ref()
                .take(total)
                .for_each_concurrent(concurrency, |delivery| async move {
                    delivery
                        .unwrap()
                        .ack(BasicAckOptions::default())
                        .await
                        .unwrap();
                });
        acking.await;
        Instant::now()
    });

    let publish_channel = connection.create_channel().await.unwrap();
    publish_channel
        .confirm_select(ConfirmSelectOptions::default())
        .await
        .unwrap();
    let body = vec![b'x'; 1024];
    let started = Instant::now();
    futures_util::stream::iter(0..params.messages)
        .map(|i| {
            let (channel, exchange, body) = (&publish_channel, &exchange, &body);
            async move {
                let properties = BasicProperties::default()
                    .with_delivery_mode(2)
                    .with_message_id(format!("m-{i}").into());
                let options = BasicPublishOptions {
                    mandatory: true,
                    ..BasicPublishOptions::default()
                };
                let confirm = channel
                    .basic_publish(
                        exchange.as_str().into(),
                        "bench".into(),
                        options,
                        body,
                        properties,
                    )
                    .await
                    .unwrap()
                    .await
                    .unwrap();
                assert!(confirm.is_ack());
            }
        })
        .buffer_unordered(usize::from(params.window))
        .collect::<Vec<()>>()
        .await;
    let finished = consumed.await.unwrap();
    let _ = connection.close(200, "done".into()).await;
    teardown(params, &topology).await;
    params.messages as f64 / (finished - started).as_secs_f64()
}

async fn palm_amqp(params: &Params) -> f64 {
    let (settings, topology) = setup(params);
    let broker = Broker::start(settings, topology.clone());
    broker
        .wait_connected(Duration::from_secs(20))
        .await
        .unwrap();
    let publisher = Publisher::new(broker.clone());

    let count = Arc::new(AtomicUsize::new(0));
    let all_consumed = Arc::new(Notify::new());
    let total = params.messages;
    let handler = {
        let (count, all_consumed) = (Arc::clone(&count), Arc::clone(&all_consumed));
        move |_incoming: Incoming| {
            if count.fetch_add(1, Ordering::Relaxed) + 1 == total {
                all_consumed.notify_one();
            }
            std::future::ready(Ok(()))
        }
    };
    let stop = CancellationToken::new();
    let consuming =
        tokio::spawn(Consumer::new(&broker, &publisher, "bench", handler).run(stop.clone()));

    let exchange = topology.names.events_exchange();
    let body = vec![b'x'; 1024];
    let started = Instant::now();
    futures_util::stream::iter(0..params.messages)
        .map(|i| {
            let message = OutgoingMessage::raw(&exchange, "bench", format!("m-{i}"), body.clone());
            let publisher = &publisher;
            async move { publisher.publish(&message).await.unwrap() }
        })
        .buffer_unordered(usize::from(params.window))
        .collect::<Vec<()>>()
        .await;
    all_consumed.notified().await;
    let finished = Instant::now();
    stop.cancel();
    consuming.await.unwrap().unwrap();
    broker.close().await;
    teardown(params, &topology).await;
    params.messages as f64 / (finished - started).as_secs_f64()
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

#[tokio::main]
async fn main() {
    let params = Params {
        url: palm_testkit::amqp_url(),
        messages: env_or("BENCH_MESSAGES", 40_000),
        window: env_or("BENCH_WINDOW", 256),
        prefetch: env_or("BENCH_PREFETCH", 256),
    };
    let rounds: usize = env_or("BENCH_ROUNDS", 7);
    println!(
        "amqp throughput: {} messages of 1024 B per round, publish window {}, prefetch {}, {} rounds, quorum queue",
        params.messages, params.window, params.prefetch, rounds
    );
    // One unmeasured round each to warm the broker and the connection paths.
    let warmup = Params {
        messages: params.messages / 10,
        ..Params {
            url: params.url.clone(),
            ..params
        }
    };
    raw_lapin(&warmup).await;
    palm_amqp(&warmup).await;

    // Each round runs both back to back; the broker's speed drifts between
    // rounds far more than between the two halves of one round, so the
    // paired per-round ratio is the figure to trust.
    let (mut raw, mut lib, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
    for round in 1..=rounds {
        let (r, l) = if round % 2 == 1 {
            let r = raw_lapin(&params).await;
            (r, palm_amqp(&params).await)
        } else {
            let l = palm_amqp(&params).await;
            (raw_lapin(&params).await, l)
        };
        println!(
            "  round {round}: raw lapin {r:>8.0} msg/s   palm-amqp {l:>8.0} msg/s   ratio {:>5.1}%",
            100.0 * l / r
        );
        raw.push(r);
        lib.push(l);
        ratios.push(l / r);
    }
    println!("raw lapin (median): {:.0} msg/s", median(raw));
    println!("palm-amqp (median): {:.0} msg/s", median(lib));
    println!(
        "ratio palm-amqp / raw lapin (median of paired rounds): {:.1}%",
        100.0 * median(ratios)
    );
}
