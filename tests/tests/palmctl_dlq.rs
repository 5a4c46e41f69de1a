//! `palmctl dlq`, run as a real process against the real broker, on DLQs
//! filled the way production fills them: palm_amqp's consumer runner
//! dead-letters what its handler refuses, and the broker dead-letters a
//! message that expires in its queue.
//!
//! - `show` gives each message's reason and headers and leaves the DLQ as
//!   it was: same depth, ids, order and headers after 25 inspections (more
//!   than RabbitMQ 4.x's default delivery limit of 20), and no delivery ever
//!   counted (the library test `libs/amqp/tests/dlq.rs` shows the same on a
//!   DLQ with a delivery limit of 2, next to a reader that loses messages).
//! - `replay` of a selected message has the real consumer process it exactly
//!   once, leaving the others in order; a dry run changes nothing.
//! - `purge` refuses without the typed queue name and purges with it (or
//!   `--yes`).
//! - `list` names the DLQ of every queue the services consume.
//!
//! Every action writes one JSON audit line on stderr, without the body.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use lapin::options::BasicPublishOptions;
use lapin::{BasicProperties, Confirmation};
use palm_amqp::dlq::Dlq;
use palm_amqp::{
    AmqpSettings, Broker, Consumer, HandlerError, Incoming, OutgoingMessage, Publisher, QueueSpec,
    Topology,
};
use palm_testkit::eventually;
use palm_tests::palmctl::Run;
use secrecy::SecretString;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

/// The audit lines of a `palmctl dlq` run.
trait Audited {
    /// The run's audit lines (JSON lines of target `palmctl::dlq`).
    fn audit(&self) -> Vec<Value>;

    /// The one audit line, checked to carry no body.
    fn audit_line(&self) -> Value;
}

impl Audited for Run {
    fn audit(&self) -> Vec<Value> {
        self.stderr
            .lines()
            .filter_map(|line| serde_json::from_str::<Value>(line).ok())
            .filter(|line| line["target"] == "palmctl::dlq")
            .collect()
    }

    fn audit_line(&self) -> Value {
        let lines = self.audit();
        assert_eq!(lines.len(), 1, "one audit line per action: {}", self.stderr);
        assert!(
            !self.stderr.contains("BODY-SECRET"),
            "a body reached the log: {}",
            self.stderr
        );
        lines[0].clone()
    }
}

/// One test's broker side: an isolated prefix, the queue `jobs` (bound to
/// `job.#`) with its DLQ, and a consumer whose handler refuses everything
/// while `broken` and counts what it processes.
struct Bus {
    url: String,
    settings: AmqpSettings,
    topology: Topology,
    broker: Broker,
    publisher: Publisher,
    state: Arc<Mutex<State>>,
    shutdown: CancellationToken,
}

#[derive(Default)]
struct State {
    broken: bool,
    processed: HashMap<String, usize>,
    seen: HashMap<String, Incoming>,
}

impl Bus {
    async fn start() -> Self {
        let url = palm_testkit::amqp_url();
        let settings = AmqpSettings {
            url: SecretString::from(url.clone()),
            prefix: palm_testkit::unique_prefix(),
            retry_delays_ms: vec![100],
            reconnect_min_ms: 50,
            reconnect_max_ms: 500,
            ..AmqpSettings::default()
        };
        let topology = Topology::new(&settings, vec![QueueSpec::new("jobs", &["job.#"])]);
        let broker = Broker::start(settings.clone(), topology.clone());
        broker
            .wait_connected(Duration::from_secs(20))
            .await
            .unwrap();
        let publisher = Publisher::new(broker.clone());
        Self {
            url,
            settings,
            topology,
            broker,
            publisher,
            state: Arc::new(Mutex::new(State {
                broken: true,
                ..State::default()
            })),
            shutdown: CancellationToken::new(),
        }
    }

    fn start_consumer(&self) {
        let state = Arc::clone(&self.state);
        let handler = move |incoming: Incoming| {
            let id = incoming.message_id.clone().unwrap_or_default();
            let mut state = state.lock().unwrap();
            let result = if state.broken {
                Err(HandlerError::permanent(anyhow::anyhow!(
                    "refused while broken: {id}"
                )))
            } else {
                *state.processed.entry(id.clone()).or_default() += 1;
                state.seen.insert(id, incoming);
                Ok(())
            };
            async move { result }
        };
        tokio::spawn(
            Consumer::new(&self.broker, &self.publisher, "jobs", handler)
                .run(self.shutdown.clone()),
        );
    }

    fn queue(&self) -> String {
        self.topology.names.queue("jobs")
    }

    fn dlq(&self) -> String {
        format!("{}.dlq", self.queue())
    }

    async fn publish(&self, id: &str) {
        let message = OutgoingMessage::raw(
            self.topology.names.events_exchange(),
            format!("job.{id}"),
            id,
            format!("{{\"id\":\"{id}\",\"note\":\"BODY-SECRET\"}}").into_bytes(),
        );
        self.publisher.publish(&message).await.unwrap();
    }

    /// Publishes `id` with a 1 ms TTL: the broker dead-letters it
    /// (`expired`, with `x-death`) unless a consumer is quicker.
    async fn publish_expiring(&self, id: &str) {
        let (connection, channel) = palm_testkit::amqp::confirmed_channel(&self.url).await;
        let exchange = self.topology.names.events_exchange();
        #[allow(clippy::disallowed_methods)] // a raw publish to set a per-message TTL
        let confirm = channel
            .basic_publish(
                exchange.as_str().into(),
                format!("job.{id}").as_str().into(),
                BasicPublishOptions {
                    mandatory: true,
                    ..BasicPublishOptions::default()
                },
                format!("{{\"id\":\"{id}\",\"note\":\"BODY-SECRET\"}}").as_bytes(),
                BasicProperties::default()
                    .with_delivery_mode(2)
                    .with_message_id(id.into())
                    .with_type(format!("job.{id}").as_str().into())
                    .with_expiration("1".into()),
            )
            .await
            .unwrap()
            .await
            .unwrap();
        assert!(matches!(confirm, Confirmation::Ack(None)), "{confirm:?}");
        let _ = connection.close(200, "published".into()).await;
    }

    async fn depth(&self, queue: &str) -> Option<u32> {
        let dlq = Dlq::connect(&self.url).await.unwrap();
        let depth = dlq.depth(queue).await.unwrap();
        dlq.close().await;
        depth
    }

    async fn wait_for_dlq_depth(&self, depth: u32) {
        let dlq = self.dlq();
        eventually(
            &format!("{depth} messages in {dlq}"),
            Duration::from_secs(20),
            || async { (self.depth(&dlq).await == Some(depth)).then_some(()) },
        )
        .await;
    }

    fn set_broken(&self, broken: bool) {
        self.state.lock().unwrap().broken = broken;
    }

    fn processed(&self, id: &str) -> usize {
        self.state
            .lock()
            .unwrap()
            .processed
            .get(id)
            .copied()
            .unwrap_or(0)
    }

    async fn wait_processed(&self, id: &str, times: usize) {
        eventually(
            &format!("{id} processed {times} times"),
            Duration::from_secs(20),
            || async { (self.processed(id) >= times).then_some(()) },
        )
        .await;
    }

    /// Runs `palmctl dlq args…` against this bus, with `stdin` piped in.
    async fn palmctl(&self, args: &[&str], stdin: Option<&str>) -> Run {
        palmctl(&self.url, &self.settings.prefix, args, stdin).await
    }

    /// The DLQ's message ids, head first, read through `palmctl dlq show`.
    async fn shown_ids(&self) -> Vec<String> {
        ids(&self.palmctl(&["show", "jobs", "--json"], None).await.json())
    }

    async fn teardown(self) {
        self.shutdown.cancel();
        self.broker.close().await;
        palm_testkit::cleanup::delete(
            &self.url,
            &self.topology.queue_names(),
            &self.topology.exchange_names(),
        )
        .await;
    }
}

async fn palmctl(url: &str, prefix: &str, args: &[&str], stdin: Option<&str>) -> Run {
    let env = [
        ("PALMCTL_AMQP_URL", url),
        ("PALMCTL_AMQP_PREFIX", prefix),
        ("PALMCTL_OPERATOR", "test-operator"),
    ];
    palm_tests::palmctl::run(&env, &[&["dlq"], args].concat(), stdin).await
}

fn ids(shown: &Value) -> Vec<String> {
    shown["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["message_id"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn show_gives_each_reason_and_leaves_the_dlq_unchanged_after_repeated_inspections() {
    let bus = Bus::start().await;
    // No consumer yet: `x` expires in the queue and the broker dead-letters it.
    bus.publish_expiring("x").await;
    bus.wait_for_dlq_depth(1).await;
    // The consumer refuses the others: it dead-letters them with its reason.
    bus.start_consumer();
    for id in ["a", "b", "c"] {
        bus.publish(id).await;
    }
    bus.wait_for_dlq_depth(4).await;

    let first = bus.palmctl(&["show", "jobs", "--json"], None).await;
    let shown = first.json();
    assert_eq!(shown["dlq"], bus.dlq());
    assert_eq!(shown["origin"], bus.queue());
    assert_eq!(shown["depth"], 4);
    assert_eq!(ids(&shown), ["x", "a", "b", "c"]);
    let messages = shown["messages"].as_array().unwrap();
    let expired = &messages[0];
    assert_eq!(expired["reason"], "expired");
    assert_eq!(expired["dead_lettered_by"], "broker");
    assert_eq!(expired["type"], "job.x");
    assert_eq!(expired["routing_key"], "job.x");
    assert_eq!(expired["deaths"][0]["queue"], bus.queue());
    assert_eq!(expired["deaths"][0]["reason"], "expired");
    assert_eq!(expired["deaths"][0]["routing_keys"][0], "job.x");
    assert!(expired["first_death_at"].is_string(), "{expired}");
    assert!(expired["headers"]["x-death"].is_array(), "{expired}");
    for (message, id) in messages[1..].iter().zip(["a", "b", "c"]) {
        assert_eq!(
            message["reason"],
            format!("permanent failure: refused while broken: {id}")
        );
        assert_eq!(message["dead_lettered_by"], "consumer");
        assert_eq!(message["routing_key"], format!("job.{id}"));
        assert_eq!(
            message["headers"]["x-palm-dead-letter-reason"],
            message["reason"]
        );
        assert_eq!(message["headers"]["x-palm-dead-letter-queue"], bus.queue());
        assert!(
            message["body_preview"]
                .as_str()
                .unwrap()
                .contains(&format!("\"id\":\"{id}\"")),
            "{message}"
        );
    }
    let audit = first.audit_line();
    assert_eq!(audit["action"], "dlq.show");
    assert_eq!(audit["outcome"], "done");
    assert_eq!(audit["operator"], "test-operator");
    assert_eq!(audit["dlq"], bus.dlq());
    assert_eq!(audit["depth"], 4);
    assert_eq!(
        audit["message_ids"],
        serde_json::json!(["x", "a", "b", "c"])
    );
    assert!(
        !audit["broker"].as_str().unwrap().contains("guest:"),
        "{audit}"
    );

    // 25 inspections, more than RabbitMQ 4.x's default delivery limit: the
    // same messages every time, headers and all, never counted as delivered.
    for round in 0..25 {
        let again = bus.palmctl(&["show", "jobs", "--json"], None).await.json();
        assert_eq!(again["depth"], 4, "round {round}");
        assert_eq!(again["messages"], shown["messages"], "round {round}");
        for message in again["messages"].as_array().unwrap() {
            assert_eq!(message["redelivered"], false, "round {round}: {message}");
            assert!(
                message["delivery_count"].is_null() || message["delivery_count"] == 0,
                "round {round}: {message}"
            );
        }
    }
    assert_eq!(bus.depth(&bus.dlq()).await, Some(4));
    assert_eq!(bus.depth(&bus.queue()).await, Some(0));
    assert_eq!(bus.processed("a"), 0, "inspection sent nothing back");

    // The text view: reasons, x-death, headers and the body preview.
    let text = bus.palmctl(&["show", "jobs", "--limit", "2"], None).await;
    assert_eq!(text.code, 0, "{}", text.stderr);
    assert!(
        text.stdout.contains(&format!("{}: 4 messages", bus.dlq())),
        "{}",
        text.stdout
    );
    assert!(text.stdout.contains("showing 2"), "{}", text.stdout);
    assert!(
        text.stdout.contains("reason       expired"),
        "{}",
        text.stdout
    );
    assert!(
        text.stdout
            .contains(&format!("x-death      expired in {}", bus.queue())),
        "{}",
        text.stdout
    );
    assert!(
        text.stdout
            .contains("reason       permanent failure: refused while broken: a"),
        "{}",
        text.stdout
    );
    assert!(
        !text.stdout.contains("broken: b"),
        "limit 2: {}",
        text.stdout
    );
    assert_eq!(bus.shown_ids().await, ["x", "a", "b", "c"]);

    let listed = bus.palmctl(&["list", "jobs", "--json"], None).await;
    assert_eq!(
        listed.json()["dlqs"],
        serde_json::json!([{
            "dlq": bus.dlq(),
            "origin": bus.queue(),
            "depth": 4,
            "origin_depth": 0,
        }])
    );
    assert_eq!(listed.audit_line()["dead_letters"], 4);
    bus.teardown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replaying_a_selected_message_has_the_consumer_process_it_exactly_once() {
    let bus = Bus::start().await;
    bus.start_consumer();
    for id in ["a", "b", "c"] {
        bus.publish(id).await;
    }
    bus.wait_for_dlq_depth(3).await;
    // The cause is fixed.
    bus.set_broken(false);

    // A dry run names what would go and moves nothing.
    let dry = bus
        .palmctl(&["replay", "jobs", "--all", "--dry-run", "--json"], None)
        .await;
    let report = dry.json();
    assert_eq!(report["dry_run"], true);
    assert_eq!(
        report["selected"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["message_id"].as_str().unwrap())
            .collect::<Vec<_>>(),
        ["a", "b", "c"]
    );
    let audit = dry.audit_line();
    assert_eq!(audit["action"], "dlq.replay");
    assert_eq!(audit["dry_run"], true);
    assert_eq!(audit["would_replay"], 3);
    assert_eq!(bus.shown_ids().await, ["a", "b", "c"]);
    assert_eq!(bus.depth(&bus.queue()).await, Some(0));
    assert_eq!(
        (bus.processed("a"), bus.processed("b"), bus.processed("c")),
        (0, 0, 0)
    );

    // One message by id: processed once, the others stay, in order.
    let one = bus
        .palmctl(&["replay", "jobs", "--id", "b", "--json"], None)
        .await;
    let report = one.json();
    assert_eq!(report["dry_run"], false);
    assert_eq!(report["selected"][0]["message_id"], "b");
    assert_eq!(report["target"], format!("queue {}", bus.queue()));
    let audit = one.audit_line();
    assert_eq!(audit["replayed"], 1);
    assert_eq!(audit["message_ids"], serde_json::json!(["b"]));
    bus.wait_processed("b", 1).await;
    assert_eq!(bus.shown_ids().await, ["a", "c"]);
    {
        let state = bus.state.lock().unwrap();
        let replayed = &state.seen["b"];
        assert_eq!(replayed.routing_key, "job.b", "the original routing key");
        assert_eq!(replayed.attempt, 0, "a fresh start");
        let header = |name: &str| palm_amqp::headers::get_str(&replayed.headers, name);
        assert_eq!(
            header("x-palm-replay-run"),
            report["run"].as_str().map(str::to_owned)
        );
        assert_eq!(header("x-palm-replayed-from"), Some(bus.dlq()));
        assert_eq!(
            header("x-palm-replayed-reason").as_deref(),
            Some("permanent failure: refused while broken: b")
        );
        assert_eq!(header("x-palm-dead-letter-reason"), None);
    }

    // An id that is not there: nothing happens, and it says so.
    let missing = bus.palmctl(&["replay", "jobs", "--id", "nope"], None).await;
    assert_eq!(missing.code, 1);
    assert!(
        missing.stderr.contains("no message with id `nope`"),
        "{}",
        missing.stderr
    );
    assert_eq!(missing.audit_line()["outcome"], "failed");

    // By filter (routing key glob), then the rest.
    let filtered = bus
        .palmctl(&["replay", "jobs", "--filter", "job.c"], None)
        .await;
    assert_eq!(filtered.code, 0, "{}", filtered.stderr);
    assert!(
        filtered.stdout.starts_with(&format!(
            "replayed 1 of 2 messages from {} to queue {}",
            bus.dlq(),
            bus.queue()
        )),
        "{}",
        filtered.stdout
    );
    bus.wait_processed("c", 1).await;
    assert_eq!(bus.shown_ids().await, ["a"]);
    let rest = bus.palmctl(&["replay", "jobs", "--all"], None).await;
    assert_eq!(rest.code, 0, "{}", rest.stderr);
    bus.wait_processed("a", 1).await;
    assert_eq!(bus.depth(&bus.dlq()).await, Some(0));

    // Everything published before a sentinel is handled before it is: once
    // the sentinel is in, any duplicate would have been counted.
    bus.publish("sentinel").await;
    bus.wait_processed("sentinel", 1).await;
    assert_eq!(
        (bus.processed("a"), bus.processed("b"), bus.processed("c")),
        (1, 1, 1),
        "each replayed message processed exactly once"
    );
    assert_eq!(bus.depth(&bus.queue()).await, Some(0));
    assert_eq!(bus.depth(&bus.dlq()).await, Some(0));
    bus.teardown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn purge_asks_for_the_queue_name_and_refuses_without_it() {
    let bus = Bus::start().await;
    bus.start_consumer();
    bus.publish("a").await;
    bus.publish("b").await;
    bus.wait_for_dlq_depth(2).await;

    for (answer, what) in [
        ("", "no answer"),
        ("jobs\n", "the short name"),
        ("yes\n", "yes"),
    ] {
        let refused = bus.palmctl(&["purge", "jobs"], Some(answer)).await;
        assert_eq!(refused.code, 1, "{what}: {}", refused.stderr);
        assert!(
            refused
                .stderr
                .contains(&format!("{} holds 2 messages", bus.dlq())),
            "{what}: {}",
            refused.stderr
        );
        assert!(
            refused.stderr.contains("purge not confirmed"),
            "{what}: {}",
            refused.stderr
        );
        let audit = refused.audit_line();
        assert_eq!(audit["action"], "dlq.purge");
        assert_eq!(audit["outcome"], "refused");
        assert_eq!(bus.depth(&bus.dlq()).await, Some(2), "{what}");
    }

    let confirmed = bus
        .palmctl(&["purge", "jobs"], Some(&format!("{}\n", bus.dlq())))
        .await;
    assert_eq!(confirmed.code, 0, "{}", confirmed.stderr);
    assert!(
        confirmed
            .stdout
            .contains(&format!("purged 2 messages from {}", bus.dlq())),
        "{}",
        confirmed.stdout
    );
    let audit = confirmed.audit_line();
    assert_eq!(audit["outcome"], "done");
    assert_eq!(audit["purged"], 2);
    assert_eq!(audit["confirmed_by"], "typed name");
    assert_eq!(bus.depth(&bus.dlq()).await, Some(0));

    bus.publish("c").await;
    bus.wait_for_dlq_depth(1).await;
    let yes = bus
        .palmctl(&["purge", "jobs", "--yes", "--json"], None)
        .await;
    assert_eq!(yes.json()["purged"], 1);
    assert_eq!(yes.audit_line()["confirmed_by"], "--yes");
    assert_eq!(bus.depth(&bus.dlq()).await, Some(0));
    bus.teardown().await;
}

#[tokio::test]
async fn list_names_the_dlq_of_every_queue_the_services_consume() {
    let prefix = palm_testkit::unique_prefix();
    let mut expected: Vec<String> = palmdao::queues()
        .into_iter()
        .chain(palmvalidator::queues())
        .chain(palmvalidator_discord::queues())
        .map(|spec| format!("{prefix}.{}.dlq", spec.short_name))
        .collect();
    expected.sort();
    let listed = palmctl(
        &palm_testkit::amqp_url(),
        &prefix,
        &["list", "--json"],
        None,
    )
    .await;
    let dlqs = listed.json()["dlqs"].as_array().unwrap().clone();
    let mut names: Vec<String> = dlqs
        .iter()
        .map(|d| d["dlq"].as_str().unwrap().to_owned())
        .collect();
    names.sort();
    assert_eq!(
        names, expected,
        "palmctl's PALM_QUEUES (tools/palmctl/src/args.rs) must name every queue the services consume"
    );
    // Nothing declared under a fresh prefix, and nothing created by looking.
    assert!(dlqs.iter().all(|d| d["depth"].is_null()), "{dlqs:?}");
    let again = palmctl(
        &palm_testkit::amqp_url(),
        &prefix,
        &["list", "--json"],
        None,
    )
    .await;
    assert!(
        again.json()["dlqs"]
            .as_array()
            .unwrap()
            .iter()
            .all(|d| d["depth"].is_null())
    );
}
