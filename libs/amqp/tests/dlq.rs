//! `palm_amqp::dlq` against the real broker: reading a dead-letter queue
//! must not count as deliveries.
//!
//! Since RabbitMQ 4.0 every quorum queue has a delivery limit (20 unless
//! set) and a DLQ has no dead-letter target of its own, so a message a
//! reader keeps handing back is eventually dropped. The DLQ here is declared
//! with `x-delivery-limit: 2`, the 4.x behaviour made explicit (and visible
//! on 3.x brokers too). The control shows the broker really drops what a
//! "get and hand back" reader returns too often; then `Dlq::browse`, many
//! more times than the limit, leaves every message where it was.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use lapin::options::{BasicGetOptions, BasicPublishOptions, QueueDeclareOptions};
use lapin::types::{AMQPValue, FieldTable, LongString};
use lapin::{BasicProperties, Channel, Confirmation, Connection};
use palm_amqp::dlq::{Dlq, DlqError, ReplayRequest, ReplayTarget, Selector};

const LIMIT: i64 = 2;

async fn declare(channel: &Channel, name: &str, delivery_limit: Option<i64>) {
    let mut args = FieldTable::default();
    args.insert(
        "x-queue-type".into(),
        AMQPValue::LongString(LongString::from("quorum")),
    );
    if let Some(limit) = delivery_limit {
        args.insert("x-delivery-limit".into(), AMQPValue::LongLongInt(limit));
    }
    let options = QueueDeclareOptions {
        durable: true,
        ..QueueDeclareOptions::default()
    };
    channel
        .queue_declare(name.into(), options, args)
        .await
        .unwrap();
}

/// Publishes `ids` straight into `queue`, confirmed.
async fn fill(channel: &Channel, queue: &str, ids: &[&str]) {
    for id in ids {
        let mut headers = FieldTable::default();
        headers.insert(
            "x-palm-dead-letter-reason".into(),
            AMQPValue::LongString(LongString::from(format!("permanent failure: {id}"))),
        );
        let properties = BasicProperties::default()
            .with_delivery_mode(2)
            .with_message_id((*id).into())
            .with_type("job.test".into())
            .with_headers(headers);
        #[allow(clippy::disallowed_methods)] // the test plays a dead-lettering consumer
        let confirm = channel
            .basic_publish(
                "".into(),
                queue.into(),
                BasicPublishOptions {
                    mandatory: true,
                    ..BasicPublishOptions::default()
                },
                format!("{{\"id\":\"{id}\"}}").as_bytes(),
                properties,
            )
            .await
            .unwrap()
            .await
            .unwrap();
        assert!(matches!(confirm, Confirmation::Ack(None)), "{confirm:?}");
    }
}

async fn depth(connection: &Connection, queue: &str) -> u32 {
    let channel = connection.create_channel().await.unwrap();
    let options = QueueDeclareOptions {
        passive: true,
        ..QueueDeclareOptions::default()
    };
    let depth = channel
        .queue_declare(queue.into(), options, FieldTable::default())
        .await
        .unwrap()
        .message_count();
    let _ = channel.close(200, "".into()).await;
    depth
}

fn ids(messages: &[palm_amqp::dlq::DeadLetter]) -> Vec<String> {
    messages
        .iter()
        .map(|m| m.message_id.clone().unwrap_or_default())
        .collect()
}

#[tokio::test]
async fn browsing_never_counts_as_a_delivery() {
    let url = palm_testkit::amqp_url();
    let prefix = palm_testkit::unique_prefix();
    let control = format!("{prefix}.control.dlq");
    let dlq = format!("{prefix}.jobs.dlq");
    let origin = format!("{prefix}.jobs");
    let (connection, channel) = palm_testkit::amqp::confirmed_channel(&url).await;
    declare(&channel, &control, Some(LIMIT)).await;
    declare(&channel, &dlq, Some(LIMIT)).await;
    declare(&channel, &origin, None).await;
    fill(&channel, &control, &["c1", "c2"]).await;
    fill(&channel, &dlq, &["a", "b", "c"]).await;

    // Control: reading by handing messages back (close the channel with them
    // unacked) more often than the limit loses them.
    for _ in 0..=LIMIT + 1 {
        let reader = connection.create_channel().await.unwrap();
        while reader
            .basic_get(control.as_str().into(), BasicGetOptions::default())
            .await
            .unwrap()
            .is_some()
        {}
        reader.close(200, "handing back".into()).await.unwrap();
    }
    let (conn, control_name) = (&connection, control.as_str());
    let lost = palm_testkit::eventually(
        "the broker to drop the handed-back messages",
        Duration::from_secs(10),
        move || async move {
            let left = depth(conn, control_name).await;
            (left == 0).then_some(left)
        },
    )
    .await;
    assert_eq!(lost, 0);

    // Browsing, ten times the limit: nothing moves, nothing is counted.
    let operator = Dlq::connect(&url).await.unwrap();
    for round in 0..10 * LIMIT {
        let browse = operator.browse(&dlq, 10).await.unwrap();
        assert_eq!(browse.depth, 3, "round {round}");
        assert_eq!(ids(&browse.messages), ["a", "b", "c"], "round {round}");
        for message in &browse.messages {
            assert!(!message.redelivered, "round {round}: {message:?}");
            // 3.x sends 0 on a first delivery when the queue has a limit.
            assert_eq!(
                message.delivery_count.unwrap_or(0),
                0,
                "round {round}: {message:?}"
            );
            assert!(message.by_consumer);
            assert_eq!(
                message.reason,
                format!(
                    "permanent failure: {}",
                    message.message_id.as_deref().unwrap()
                )
            );
            assert_eq!(message.kind.as_deref(), Some("job.test"));
        }
    }
    assert_eq!(depth(&connection, &dlq).await, 3);
    // A limit shows fewer but still keeps them all.
    let first = operator.browse(&dlq, 1).await.unwrap();
    assert_eq!(ids(&first.messages), ["a"]);
    assert_eq!(
        ids(&operator.browse(&dlq, 10).await.unwrap().messages),
        ["a", "b", "c"]
    );

    // A dry run selects without moving; a real replay moves only its pick,
    // confirmed, into the origin queue.
    let dry = operator
        .replay(
            &dlq,
            &ReplayRequest {
                selector: Selector::Matching("*: b".into()),
                target: ReplayTarget::OriginQueue,
                limit: None,
                dry_run: true,
            },
        )
        .await
        .unwrap();
    assert_eq!(ids(&dry.selected), ["b"]);
    assert_eq!(depth(&connection, &origin).await, 0);
    assert_eq!(
        ids(&operator.browse(&dlq, 10).await.unwrap().messages),
        ["a", "b", "c"]
    );
    let done = operator
        .replay(
            &dlq,
            &ReplayRequest {
                selector: Selector::Id("b".into()),
                target: ReplayTarget::OriginQueue,
                limit: None,
                dry_run: false,
            },
        )
        .await
        .unwrap();
    assert_eq!(ids(&done.selected), ["b"]);
    assert_eq!(depth(&connection, &origin).await, 1);
    assert_eq!(
        ids(&operator.browse(&dlq, 10).await.unwrap().messages),
        ["a", "c"]
    );
    let replayed = channel
        .basic_get(origin.as_str().into(), BasicGetOptions { no_ack: true })
        .await
        .unwrap()
        .unwrap();
    let headers = replayed.delivery.properties.headers().clone().unwrap();
    let header = |name: &str| palm_amqp::headers::get_str(&headers, name);
    assert_eq!(header("x-palm-replay-run"), Some(done.run.clone()));
    assert_eq!(header("x-palm-replayed-from"), Some(dlq.clone()));
    assert_eq!(
        header("x-palm-replayed-reason").as_deref(),
        Some("permanent failure: b")
    );
    assert_eq!(header("x-palm-dead-letter-reason"), None);
    assert!(headers.inner().contains_key("x-palm-replayed-at"));

    // A second operation while one holds the lock is refused.
    let lock_holder = connection.create_channel().await.unwrap();
    lock_holder
        .queue_declare(
            format!("{dlq}.operator-lock").as_str().into(),
            QueueDeclareOptions {
                exclusive: true,
                auto_delete: true,
                ..QueueDeclareOptions::default()
            },
            FieldTable::default(),
        )
        .await
        .unwrap();
    assert!(matches!(
        operator.browse(&dlq, 10).await,
        Err(DlqError::Busy(_))
    ));
    assert!(matches!(operator.purge(&dlq).await, Err(DlqError::Busy(_))));
    lock_holder
        .queue_delete(
            format!("{dlq}.operator-lock").as_str().into(),
            lapin::options::QueueDeleteOptions::default(),
        )
        .await
        .unwrap();
    assert_eq!(operator.purge(&dlq).await.unwrap(), 2);
    assert!(matches!(
        operator.browse(&format!("{prefix}.missing.dlq"), 1).await,
        Err(DlqError::NotFound(_))
    ));

    operator.close().await;
    let _ = connection.close(200, "done".into()).await;
    palm_testkit::cleanup::delete(&url, &[control, dlq, origin], &[]).await;
}
