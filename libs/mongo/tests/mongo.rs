//! The MongoDB lib against a real server (MongoDB or the nx-27017 stand-in)
//! and the real broker: idempotency, leases, and the outbox relay.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::StreamExt;
use mongodb::Database;
use mongodb::bson::{Document, doc};
use palm_amqp::{AmqpSettings, Broker, Consumer, Incoming, Publisher, QueueSpec, Topology};
use palm_core::Envelope;
use palm_core::events::MemberJoined;
use palm_mongo::lease::{self, Lease};
use palm_mongo::outbox::{self, OutboxRecord, OutboxRelay};
use palm_mongo::{AuditLog, Idempotency, MongoSettings};
use palm_testkit::eventually;
use secrecy::SecretString;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

async fn database() -> Database {
    let settings = MongoSettings {
        url: SecretString::from(palm_testkit::mongo_url()),
        database: palm_testkit::unique_database(),
        ..MongoSettings::default()
    };
    palm_mongo::connect(&settings, "palm-mongo-tests")
        .await
        .unwrap()
}

#[tokio::test]
async fn a_message_is_claimed_once_even_under_concurrent_claims() {
    let db = database().await;
    Idempotency::ensure_indexes(&db, Duration::from_secs(3600))
        .await
        .unwrap();
    let store = Idempotency::new(&db);
    let claims =
        futures_util::future::join_all((0..8).map(|_| store.claim("consumer", "m-1"))).await;
    let firsts = claims.into_iter().filter(|c| *c.as_ref().unwrap()).count();
    assert_eq!(firsts, 1);
    assert!(!store.claim("consumer", "m-1").await.unwrap());
    assert!(
        store.claim("other-consumer", "m-1").await.unwrap(),
        "claims are per consumer"
    );
    store.forget("consumer", "m-1").await.unwrap();
    assert!(
        store.claim("consumer", "m-1").await.unwrap(),
        "a forgotten claim can be made again"
    );
    db.drop().await.unwrap();
}

#[tokio::test]
async fn a_lease_has_one_holder_and_its_epoch_grows_on_takeover() {
    let db = database().await;
    // Long enough that a loaded machine cannot let it lapse between the
    // first two calls; the takeover below waits for the expiry anyway.
    let ttl = Duration::from_millis(1500);
    let a = Lease::new(&db, "relay", "a", ttl);
    let b = Lease::new(&db, "relay", "b", ttl);
    assert_eq!(a.try_acquire().await.unwrap(), Some(1));
    assert_eq!(b.try_acquire().await.unwrap(), None);
    assert_eq!(
        a.try_acquire().await.unwrap(),
        Some(1),
        "renewal keeps the epoch"
    );
    let epoch = eventually("the lease to expire", Duration::from_secs(5), || async {
        b.try_acquire().await.unwrap()
    })
    .await;
    assert_eq!(epoch, 2);
    assert!(
        !a.is_current(1).await.unwrap(),
        "the old tenure is fenced off"
    );
    assert!(b.is_current(2).await.unwrap());
    b.release().await.unwrap();
    assert_eq!(
        a.try_acquire().await.unwrap(),
        Some(3),
        "release hands over at once"
    );
    db.drop().await.unwrap();
}

/// The broker side of an outbox test: a queue bound to `member.joined`, and
/// a consumer counting deliveries per message id.
struct Bus {
    broker: Broker,
    publisher: Publisher,
    seen: Arc<Mutex<HashMap<String, u32>>>,
    stop: CancellationToken,
    queues: Vec<String>,
    exchanges: Vec<String>,
}

impl Bus {
    async fn start() -> Self {
        let settings = AmqpSettings {
            url: SecretString::from(palm_testkit::amqp_url()),
            prefix: palm_testkit::unique_prefix(),
            retry_delays_ms: vec![100],
            ..AmqpSettings::default()
        };
        let topology = Topology::new(&settings, vec![QueueSpec::new("sink", &["member.joined"])]);
        let (queues, exchanges) = (topology.queue_names(), topology.exchange_names());
        let broker = Broker::start(settings, topology);
        broker
            .wait_connected(Duration::from_secs(20))
            .await
            .unwrap();
        let publisher = Publisher::new(broker.clone());
        let seen: Arc<Mutex<HashMap<String, u32>>> = Arc::default();
        let stop = CancellationToken::new();
        let counter = Arc::clone(&seen);
        let consumer = Consumer::new(&broker, &publisher, "sink", move |incoming: Incoming| {
            *counter
                .lock()
                .unwrap()
                .entry(incoming.message_id.unwrap_or_default())
                .or_default() += 1;
            std::future::ready(Ok(()))
        });
        tokio::spawn(consumer.run(stop.clone()));
        Self {
            broker,
            publisher,
            seen,
            stop,
            queues,
            exchanges,
        }
    }

    async fn wait_for(&self, ids: &[String]) {
        let seen = Arc::clone(&self.seen);
        let ids = ids.to_vec();
        eventually(
            "every outbox record delivered",
            Duration::from_secs(60),
            move || {
                let all = {
                    let seen = seen.lock().unwrap();
                    ids.iter().all(|id| seen.contains_key(id))
                };
                async move { all.then_some(()) }
            },
        )
        .await;
    }

    async fn teardown(self) {
        self.stop.cancel();
        self.broker.close().await;
        palm_testkit::cleanup::delete(&palm_testkit::amqp_url(), &self.queues, &self.exchanges)
            .await;
    }
}

/// Inserts `count` membership documents, each carrying one staged event, and
/// stages a second event on every tenth through an update.
async fn stage_events(db: &Database, count: usize) -> Vec<String> {
    let collection = db.collection::<Document>("memberships");
    palm_mongo::ensure_indexes(db, "memberships", vec![outbox::index()])
        .await
        .unwrap();
    let mut ids = Vec::new();
    let mut documents = Vec::new();
    for i in 0..count {
        let event = Envelope::new(
            "test",
            MemberJoined {
                community_id: Uuid::now_v7(),
                community_slug: format!("c{i}"),
                palm_id: Uuid::now_v7(),
            },
        );
        let record = OutboxRecord::from_envelope(&event).concerning([format!("slot:{}", i % 3)]);
        ids.push(record.id.clone());
        let mut document = doc! { "_id": i as i64, "slug": format!("c{i}") };
        outbox::attach(&mut document, &[record]);
        documents.push(document);
    }
    collection.insert_many(documents).await.unwrap();
    for i in (0..count).step_by(10) {
        let event = Envelope::new(
            "test",
            MemberJoined {
                community_id: Uuid::now_v7(),
                community_slug: format!("c{i}"),
                palm_id: Uuid::now_v7(),
            },
        );
        let record = OutboxRecord::from_envelope(&event);
        ids.push(record.id.clone());
        let mut update = doc! { "$set": { "touched": true } };
        outbox::stage(&mut update, &[record]);
        collection
            .update_one(doc! { "_id": i as i64 }, update)
            .await
            .unwrap();
    }
    ids
}

async fn pending(db: &Database) -> u64 {
    db.collection::<Document>("memberships")
        .count_documents(doc! { outbox::SINCE_FIELD: { "$exists": true } })
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_racing_relays_publish_every_record_exactly_once() {
    let db = database().await;
    let bus = Bus::start().await;
    let ids = stage_events(&db, 400).await;

    let stop = CancellationToken::new();
    let relays: Vec<_> = ["relay-a", "relay-b"]
        .into_iter()
        .map(|holder| {
            let relay = OutboxRelay::new(db.clone(), &["memberships"], bus.publisher.clone())
                .with_batch_size(50);
            let lease = Lease::new(&db, "outbox", holder, Duration::from_secs(10));
            let stop = stop.clone();
            tokio::spawn(async move { relay.run(lease, stop).await })
        })
        .collect();
    bus.wait_for(&ids).await;
    let db_now = db.clone();
    eventually(
        "every record marked published",
        Duration::from_secs(10),
        || {
            let db = db_now.clone();
            async move { (pending(&db).await == 0).then_some(()) }
        },
    )
    .await;
    stop.cancel();
    for relay in relays {
        relay.await.unwrap();
    }

    let seen = bus.seen.lock().unwrap().clone();
    assert_eq!(seen.len(), ids.len(), "no unknown messages");
    let twice: Vec<_> = seen.iter().filter(|(_, n)| **n != 1).collect();
    assert!(twice.is_empty(), "published more than once: {twice:?}");
    bus.teardown().await;
    db.drop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_killed_mid_batch_leaves_nothing_unpublished_after_restart() {
    let db = database().await;
    let bus = Bus::start().await;
    let ids = stage_events(&db, 600).await;
    let lease_ttl = Duration::from_millis(1500);

    let first = {
        let relay = OutboxRelay::new(db.clone(), &["memberships"], bus.publisher.clone())
            .with_batch_size(100)
            .with_audit(AuditLog::new("audit_events"));
        let lease = Lease::new(&db, "outbox", "doomed", lease_ttl);
        tokio::spawn(async move { relay.run(lease, CancellationToken::new()).await })
    };
    let seen = Arc::clone(&bus.seen);
    eventually(
        "the first relay under way",
        Duration::from_secs(30),
        move || {
            let n = seen.lock().unwrap().len();
            async move { (n >= 20).then_some(()) }
        },
    )
    .await;
    // Abort without any cleanup, as a crash would: the lease stays held
    // until it expires and records may be published but not yet marked.
    first.abort();
    let _ = first.await;
    let delivered_before_restart = bus.seen.lock().unwrap().len();
    assert!(
        delivered_before_restart < ids.len(),
        "the relay was killed mid-run"
    );

    let stop = CancellationToken::new();
    let second = {
        let relay = OutboxRelay::new(db.clone(), &["memberships"], bus.publisher.clone())
            .with_batch_size(100)
            .with_audit(AuditLog::new("audit_events"));
        let lease = Lease::new(&db, "outbox", "successor", lease_ttl);
        let stop = stop.clone();
        tokio::spawn(async move { relay.run(lease, stop).await })
    };
    bus.wait_for(&ids).await;
    let db_now = db.clone();
    eventually(
        "every record marked published",
        Duration::from_secs(10),
        || {
            let db = db_now.clone();
            async move { (pending(&db).await == 0).then_some(()) }
        },
    )
    .await;
    stop.cancel();
    second.await.unwrap();

    let seen = bus.seen.lock().unwrap().clone();
    let republished = seen.values().filter(|n| **n > 1).count();
    eprintln!(
        "delivered before the kill: {delivered_before_restart}; republished after restart: {republished}"
    );
    assert_eq!(seen.len(), ids.len());

    // Every published event has exactly one audit copy, crash or not
    // (`_id` is the event id, so a copy can only be there once).
    let audit = db.collection::<Document>("audit_events");
    let copies: Vec<String> = audit
        .find(doc! {})
        .await
        .unwrap()
        .map(|d| d.unwrap().get_str("_id").unwrap().to_owned())
        .collect()
        .await;
    let mut expected = ids.clone();
    expected.sort();
    let mut copies = copies;
    copies.sort();
    assert_eq!(copies, expected, "one audit copy per published event");
    let slot_zero = audit
        .count_documents(doc! { "subjects": "slot:0", "type": "member.joined" })
        .await
        .unwrap();
    assert!(slot_zero > 0, "entries are found by subject");
    bus.teardown().await;
    db.drop().await.unwrap();
}

#[tokio::test]
async fn while_leader_hands_over_when_the_leader_stops() {
    let db = database().await;
    let ttl = Duration::from_millis(600);
    let running: Arc<Mutex<Vec<(&'static str, i64)>>> = Arc::default();
    let start = |holder: &'static str, stop: CancellationToken| {
        let lease = Lease::new(&db, "scheduler", holder, ttl);
        let running = Arc::clone(&running);
        tokio::spawn(async move {
            lease::while_leader(&lease, &stop, |token| {
                let running = Arc::clone(&running);
                async move {
                    running.lock().unwrap().push((holder, token.epoch));
                    token.lost.cancelled().await;
                }
            })
            .await;
        })
    };
    let stop_a = CancellationToken::new();
    let a = start("a", stop_a.clone());
    let running_now = Arc::clone(&running);
    eventually("a leads", Duration::from_secs(5), move || {
        let n = running_now.lock().unwrap().len();
        async move { (n == 1).then_some(()) }
    })
    .await;
    let stop_b = CancellationToken::new();
    let b = start("b", stop_b.clone());
    tokio::time::sleep(ttl * 2).await;
    assert_eq!(
        running.lock().unwrap().len(),
        1,
        "b stands by while a renews"
    );
    stop_a.cancel();
    a.await.unwrap();
    let running_now = Arc::clone(&running);
    eventually("b takes over", Duration::from_secs(5), move || {
        let n = running_now.lock().unwrap().len();
        async move { (n == 2).then_some(()) }
    })
    .await;
    assert_eq!(running.lock().unwrap().clone(), vec![("a", 1), ("b", 2)]);
    stop_b.cancel();
    b.await.unwrap();
    db.drop().await.unwrap();
}

#[tokio::test]
async fn events_without_a_subscriber_and_orphaned_markers_do_not_stay_pending() {
    let db = database().await;
    let bus = Bus::start().await;
    let collection = db.collection::<Document>("memberships");
    palm_mongo::ensure_indexes(&db, "memberships", vec![outbox::index()])
        .await
        .unwrap();

    let unbound = Envelope::new(
        "test",
        palm_core::events::CommunityCreated {
            community_id: Uuid::now_v7(),
            slug: "nobody-listens".into(),
            name: "n".into(),
            admin_palm_id: Uuid::now_v7(),
        },
    );
    let bound = Envelope::new(
        "test",
        MemberJoined {
            community_id: Uuid::now_v7(),
            community_slug: "c".into(),
            palm_id: Uuid::now_v7(),
        },
    );
    let mut both = doc! { "_id": 1_i64 };
    outbox::attach(
        &mut both,
        &[
            OutboxRecord::from_envelope(&unbound),
            OutboxRecord::from_envelope(&bound),
        ],
    );
    let mut orphaned = doc! { "_id": 2_i64 };
    outbox::attach(&mut orphaned, &[OutboxRecord::from_envelope(&bound)]);
    orphaned.remove(outbox::OUTBOX_FIELD);
    collection.insert_many([both, orphaned]).await.unwrap();
    assert_eq!(pending(&db).await, 2);

    let relay = OutboxRelay::new(db.clone(), &["memberships"], bus.publisher.clone());
    assert_eq!(relay.relay_once().await.unwrap(), 2, "both records settled");
    assert_eq!(pending(&db).await, 0, "no document left pending");
    bus.wait_for(&[bound.id.to_string()]).await;
    assert_eq!(
        relay.relay_once().await.unwrap(),
        0,
        "nothing is sent again"
    );
    bus.teardown().await;
    db.drop().await.unwrap();
}

/// The prompt path publishes a write's records right after the write, with
/// the sweeper polling far too rarely to be the one: every record arrives
/// once, in the audit log too, and every document's marker is cleared, even
/// on a document that held a second, older record the prompt path never saw
/// (that one is the sweeper's, once it is older than the grace).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_prompt_path_publishes_staged_records_without_waiting_for_a_pass() {
    let db = database().await;
    let bus = Bus::start().await;
    palm_mongo::ensure_indexes(&db, "memberships", vec![outbox::index()])
        .await
        .unwrap();
    let audit = AuditLog::new("audit_events");
    let (relay, prompt) = OutboxRelay::new(db.clone(), &["memberships"], bus.publisher.clone())
        .with_poll_interval(Duration::from_secs(3600))
        .with_audit(audit.clone())
        .with_prompt(1024, Duration::from_millis(1500));
    let stop = CancellationToken::new();
    let lease = Lease::new(&db, "relay", "prompt-test", Duration::from_secs(10));
    let running = {
        let stop = stop.clone();
        tokio::spawn(async move { relay.run(lease, stop).await })
    };

    let collection = db.collection::<Document>("memberships");
    // An older record written before the relay saw anything: the sweeper's.
    let orphan = OutboxRecord::from_envelope(&Envelope::new(
        "test",
        MemberJoined {
            community_id: Uuid::now_v7(),
            community_slug: "orphan".into(),
            palm_id: Uuid::now_v7(),
        },
    ));
    let mut first = doc! { "_id": 0_i64 };
    outbox::attach(&mut first, std::slice::from_ref(&orphan));
    collection.insert_one(first).await.unwrap();

    let mut ids = vec![orphan.id.clone()];
    let mut writes = Vec::new();
    for i in 0..200_i64 {
        let record = OutboxRecord::from_envelope(&Envelope::new(
            "test",
            MemberJoined {
                community_id: Uuid::now_v7(),
                community_slug: format!("c{i}"),
                palm_id: Uuid::now_v7(),
            },
        ));
        ids.push(record.id.clone());
        let (collection, prompt) = (collection.clone(), prompt.clone());
        writes.push(tokio::spawn(async move {
            // Every tenth record lands on the orphan's document.
            let target = if i % 10 == 0 { 0 } else { i + 1 };
            let mut update = doc! { "$set": { "slug": format!("c{i}") } };
            outbox::stage(&mut update, std::slice::from_ref(&record));
            collection
                .update_one(doc! { "_id": target }, update)
                .upsert(true)
                .await
                .unwrap();
            prompt.staged("memberships", target, &[record]);
        }));
    }
    for write in writes {
        write.await.unwrap();
    }
    // Everything staged through the prompt arrives long before an hourly
    // pass; the orphan only once the grace has passed and a pass ran, so
    // only the prompted ones are awaited here.
    bus.wait_for(&ids[1..]).await;
    eventually("prompted documents marked", Duration::from_secs(20), || {
        let db = db.clone();
        async move { (pending(&db).await == 1).then_some(()) }
    })
    .await;
    assert!(
        !bus.seen.lock().unwrap().contains_key(&orphan.id),
        "the orphan is the sweeper's"
    );
    let copies = db
        .collection::<Document>(audit.collection())
        .count_documents(doc! {})
        .await
        .unwrap();
    assert_eq!(
        copies, 200,
        "every prompted record copied once to the audit log"
    );
    let seen = bus.seen.lock().unwrap().clone();
    assert!(seen.values().all(|count| *count == 1), "{seen:?}");
    stop.cancel();
    running.await.unwrap();
    bus.teardown().await;
    db.drop().await.unwrap();
}
