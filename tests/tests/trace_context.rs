//! W3C trace context crosses RabbitMQ: a message published inside a traced
//! span carries `traceparent`, and the consumer's span joins the same trace.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use palm_amqp::lapin::types::FieldTable;
use palm_amqp::{
    AmqpSettings, Broker, Consumer, Incoming, OutgoingMessage, Publisher, QueueSpec, Topology,
    headers,
};
use palm_service::settings::TelemetrySettings;
use palm_testkit::eventually;
use secrecy::SecretString;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

#[tokio::test]
async fn the_consumer_joins_the_publishers_trace() {
    let telemetry =
        palm_service::telemetry::init("trace-test", &TelemetrySettings::default()).unwrap();
    let settings = AmqpSettings {
        url: SecretString::from(palm_testkit::amqp_url()),
        prefix: palm_testkit::unique_prefix(),
        retry_delays_ms: vec![100],
        ..AmqpSettings::default()
    };
    let queues = vec![QueueSpec::new("traced", &["traced"])];
    let broker = Broker::start(settings.clone(), Topology::new(&settings, queues.clone()));
    broker
        .wait_connected(Duration::from_secs(20))
        .await
        .unwrap();
    let publisher = Publisher::new(broker.clone());

    let received: Arc<Mutex<Option<(FieldTable, String)>>> = Arc::default();
    let stop = CancellationToken::new();
    let consumer = {
        let received = Arc::clone(&received);
        Consumer::new(&broker, &publisher, "traced", move |incoming: Incoming| {
            let consumer_trace = headers::trace_id(&tracing::Span::current());
            *received.lock().unwrap() = Some((incoming.headers, consumer_trace));
            std::future::ready(Ok(()))
        })
    };
    let consuming = tokio::spawn(consumer.run(stop.clone()));

    let request = tracing::info_span!("http.request");
    let publisher_trace = headers::trace_id(&request);
    let message = OutgoingMessage::raw(
        broker.names().events_exchange(),
        "traced",
        "m-1",
        b"{}".to_vec(),
    );
    publisher
        .publish(&message)
        .instrument(request)
        .await
        .unwrap();

    let received_now = Arc::clone(&received);
    let (headers_seen, consumer_trace) =
        eventually("the message consumed", Duration::from_secs(10), move || {
            let got = received_now.lock().unwrap().clone();
            async move { got }
        })
        .await;
    let traceparent = headers::get_str(&headers_seen, "traceparent").expect("a traceparent header");
    assert_ne!(publisher_trace, "00000000000000000000000000000000");
    assert!(
        traceparent.contains(&publisher_trace),
        "{traceparent} carries {publisher_trace}"
    );
    assert_eq!(
        consumer_trace, publisher_trace,
        "the consumer span is in the publisher's trace"
    );

    stop.cancel();
    consuming.await.unwrap().unwrap();
    broker.close().await;
    let env = palm_tests::ServiceEnv {
        prefix: settings.prefix.clone(),
        ..palm_tests::ServiceEnv::new()
    };
    env.teardown(&queues).await;
    telemetry.shutdown();
}
