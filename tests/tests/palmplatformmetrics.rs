//! palmplatformmetrics against data seeded through palmdao's API and the
//! real event path: every `palm_platform_…` value on `/metrics` equals a
//! recount the test makes from the stored documents; two instances run the
//! aggregations once per interval between them, serve the same snapshot,
//! and the standby takes over within the lease time when the computing one
//! is killed.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use chrono::{Duration as Span, Utc};
use futures_util::TryStreamExt;
use mongodb::bson::{DateTime, Document, doc};
use palm_amqp::{OutgoingMessage, QueueSpec};
use palm_core::Envelope;
use palm_core::eth::AddressText;
use palm_core::events::{VerificationCompleted, VerificationOutcome, VoteRejected, VoteValidated};
use palm_testkit::eventually;
use palm_tests::ServiceEnv;
use palm_tests::palmdao::{FakeValidator, Palmdao};
use palm_tests::platform::PlatformMetrics;
use palm_tests::prom::Scrape;
use palm_tests::tap::EventTap;
use reqwest::Method;
use serde_json::json;
use uuid::Uuid;

/// Series a replica computes itself rather than reading from the snapshot.
const PER_REPLICA: [&str; 2] = [
    "palm_platform_snapshot_age_seconds",
    "palm_platform_snapshot_refreshes_total",
];

type Key = (String, BTreeMap<String, String>);

fn key(name: &str, labels: &[(&str, &str)]) -> Key {
    (
        name.to_owned(),
        labels
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect(),
    )
}

/// The `palm_platform_…` samples read from one snapshot, without the
/// `service` label, by name and labels.
fn platform_values(scrape: &Scrape) -> BTreeMap<Key, f64> {
    scrape
        .starting_with("palm_platform_")
        .filter(|s| !PER_REPLICA.contains(&s.name.as_str()))
        .map(|s| {
            assert_eq!(s.labels["service"], "palmplatformmetrics", "{s:?}");
            let mut labels = s.labels.clone();
            labels.remove("service");
            ((s.name.clone(), labels), s.value)
        })
        .collect()
}

async fn database(env: &ServiceEnv) -> mongodb::Database {
    mongodb::Client::with_uri_str(palm_testkit::mongo_url())
        .await
        .unwrap()
        .database(&env.database)
}

async fn all(db: &mongodb::Database, collection: &str) -> Vec<Document> {
    db.collection::<Document>(collection)
        .find(doc! {})
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap()
}

async fn palm_id_of(palmdao: &Palmdao, token: &str) -> String {
    let (status, me) = palmdao.get("/v1/me", Some(token)).await;
    assert_eq!(status, 200, "{me}");
    me["id"].as_str().unwrap().to_owned()
}

/// A well-formed signature; the (fake) validator does not check it.
fn signature() -> String {
    format!("0x{}1b", "11".repeat(64))
}

async fn post(
    palmdao: &Palmdao,
    path: &str,
    token: &str,
    body: serde_json::Value,
) -> serde_json::Value {
    let (status, reply) = palmdao.send(Method::POST, path, Some(token), &body).await;
    assert!((200..300).contains(&status), "{path}: {status} {reply}");
    reply
}

async fn wait_status(palmdao: &Palmdao, path: &str, token: Option<&str>, status: &str) {
    eventually(
        &format!("{path} {status}"),
        Duration::from_secs(30),
        || async {
            let (_, body) = palmdao.get(path, token).await;
            (body["status"] == status).then_some(())
        },
    )
    .await;
}

struct Seeded {
    /// When the planted outbox record became pending.
    planted_since: DateTime,
}

/// Seeds PalmIDs at levels 1–3, verifications of every outcome, two
/// communities with joins and a leave, a proposal in each status and votes
/// in each status, through palmdao's API and results published on the
/// broker; then, as other writers would, two older votes, backup records
/// and one outbox record palmdao has not published yet.
async fn seed(palmdao: &Palmdao, validator: &FakeValidator, db: &mongodb::Database) -> Seeded {
    let publish = |message: OutgoingMessage| {
        let publisher = validator.publisher.clone();
        async move { publisher.publish(&message).await.unwrap() }
    };
    let names = validator.broker.names().clone();

    // PalmIDs: one at level 3, one at level 2, three at level 1.
    let (admin_key, admin) = palmdao.new_member("admin").await;
    let admin_id = palm_id_of(palmdao, &admin).await;
    validator
        .raise_to_level_three(palmdao, &admin, &admin_id)
        .await;
    let (bob_key, bob) = palmdao.new_member("bob").await;
    let bob_id = palm_id_of(palmdao, &bob).await;
    validator
        .verify(
            palmdao,
            &bob,
            &bob_id,
            "discord",
            &format!("d{}", Uuid::new_v4().simple()),
        )
        .await;
    let (carol_key, carol) = palmdao.new_member("carol").await;
    let carol_id = palm_id_of(palmdao, &carol).await;
    let (_, dave) = palmdao.new_member("dave").await;
    let (_, erin) = palmdao.new_member("erin").await;
    let erin_id = palm_id_of(palmdao, &erin).await;

    // Carol links a second wallet: verified, and still level 1 (one kind).
    let second = palm_tests::palmdao::key(&format!("carol-2-{}", Uuid::new_v4()));
    let nonce = palmdao.nonce().await;
    let message = palmdao.message(&second, &nonce).to_string();
    let link_signature = second
        .sign_personal(message.as_bytes())
        .unwrap()
        .to_string();
    let link = post(
        palmdao,
        "/v1/me/verifications",
        &carol,
        json!({ "kind": "wallet", "message": message, "signature": link_signature }),
    )
    .await;
    let link_id = link["id"].as_str().unwrap().to_owned();
    let verified = Envelope::new(
        "test-validator",
        VerificationCompleted {
            verification_id: Uuid::parse_str(&link_id).unwrap(),
            palm_id: Uuid::parse_str(&carol_id).unwrap(),
            kind: "wallet".into(),
            outcome: VerificationOutcome::Verified {
                subject: second.address().to_lower_hex(),
                display_name: None,
            },
        },
    );
    publish(OutgoingMessage::event(&names, &verified)).await;
    wait_status(
        palmdao,
        &format!("/v1/me/verifications/{link_id}"),
        Some(&carol),
        "verified",
    )
    .await;

    // Erin's Discord verification is refused; Dave's is never answered.
    let discord = json!({ "kind": "discord", "code": "c", "redirect_uri": "https://palm.test/cb" });
    let refused = post(palmdao, "/v1/me/verifications", &erin, discord.clone()).await;
    let refused_id = refused["id"].as_str().unwrap().to_owned();
    let rejected = Envelope::new(
        "test-validator",
        VerificationCompleted {
            verification_id: Uuid::parse_str(&refused_id).unwrap(),
            palm_id: Uuid::parse_str(&erin_id).unwrap(),
            kind: "discord".into(),
            outcome: VerificationOutcome::Rejected {
                reason: "discord_account_too_young".into(),
            },
        },
    );
    publish(OutgoingMessage::event(&names, &rejected)).await;
    wait_status(
        palmdao,
        &format!("/v1/me/verifications/{refused_id}"),
        Some(&erin),
        "rejected",
    )
    .await;
    post(palmdao, "/v1/me/verifications", &dave, discord).await;

    // Communities and memberships: Dave joins and leaves again.
    let suffix = &Uuid::new_v4().simple().to_string()[..8];
    let (garden, library) = (format!("garden-{suffix}"), format!("library-{suffix}"));
    for slug in [&garden, &library] {
        post(
            palmdao,
            "/v1/communities",
            &admin,
            json!({ "slug": slug, "name": slug }),
        )
        .await;
    }
    for token in [&bob, &carol, &dave] {
        palmdao.join(&garden, token).await;
    }
    palmdao.join(&library, &erin).await;
    let (status, body) = palmdao
        .send(
            Method::POST,
            &format!("/v1/communities/{garden}/leave"),
            Some(&dave),
            &json!({}),
        )
        .await;
    assert_eq!(status, 204, "{body}");

    // Proposals: one pending, one active, one that closes.
    let proposal = |title: &str, start: chrono::DateTime<Utc>, end: chrono::DateTime<Utc>| json!({ "title": title, "choices": ["yes", "no"], "voting_type": "single-choice", "start": start, "end": end });
    let path = format!("/v1/communities/{garden}/proposals");
    let now = Utc::now();
    post(
        palmdao,
        &path,
        &admin,
        proposal("later", now + Span::hours(1), now + Span::hours(2)),
    )
    .await;
    let open = post(
        palmdao,
        &path,
        &admin,
        proposal("open", now, now + Span::hours(1)),
    )
    .await;
    let closing = post(
        palmdao,
        &path,
        &admin,
        proposal("closing", now, now + Span::seconds(5)),
    )
    .await;
    let (open, closing) = (
        open["id"].as_str().unwrap().to_owned(),
        closing["id"].as_str().unwrap().to_owned(),
    );
    for id in [&open, &closing] {
        wait_status(palmdao, &format!("/v1/proposals/{id}"), None, "active").await;
    }

    // Votes: valid, rejected and pending ones.
    let vote = |proposal: &str, token: &str, signer: &palm_core::eth::LocalKey| {
        let path = format!("/v1/proposals/{proposal}/votes");
        let token = token.to_owned();
        let address = signer.address().to_checksummed();
        async move {
            let body = json!({ "choice": 1, "timestamp": Utc::now().timestamp(), "address": address, "signature": signature() });
            let reply = post(palmdao, &path, &token, body).await;
            Uuid::parse_str(reply["id"].as_str().unwrap()).unwrap()
        }
    };
    let decide_valid = |vote_id: Uuid, proposal: &str, palm_id: &str| {
        let event = Envelope::new(
            "test-validator",
            VoteValidated {
                vote_id,
                proposal_id: Uuid::parse_str(proposal).unwrap(),
                palm_id: Uuid::parse_str(palm_id).unwrap(),
                voting_power: 1.0,
                allocation: vec![1.0, 0.0],
            },
        );
        OutgoingMessage::event(&names, &event)
    };
    let bob_open = vote(&open, &bob, &bob_key).await;
    publish(decide_valid(bob_open, &open, &bob_id)).await;
    let bob_closing = vote(&closing, &bob, &bob_key).await;
    publish(decide_valid(bob_closing, &closing, &bob_id)).await;
    let carol_open = vote(&open, &carol, &carol_key).await;
    let refusal = Envelope::new(
        "test-validator",
        VoteRejected {
            vote_id: carol_open,
            proposal_id: Uuid::parse_str(&open).unwrap(),
            palm_id: Uuid::parse_str(&carol_id).unwrap(),
            reason: "level_too_low".into(),
        },
    );
    publish(OutgoingMessage::event(&names, &refusal)).await;
    let _pending = vote(&open, &admin, &admin_key).await;
    wait_status(
        palmdao,
        &format!("/v1/votes/{bob_open}"),
        Some(&bob),
        "valid",
    )
    .await;
    wait_status(
        palmdao,
        &format!("/v1/votes/{bob_closing}"),
        Some(&bob),
        "valid",
    )
    .await;
    wait_status(
        palmdao,
        &format!("/v1/votes/{carol_open}"),
        Some(&carol),
        "rejected",
    )
    .await;
    wait_status(palmdao, &format!("/v1/proposals/{closing}"), None, "closed").await;

    // Everything palmdao staged is published before it stops.
    eventually("the outbox drained", Duration::from_secs(30), || async {
        for collection in palmdao::OUTBOX_COLLECTIONS {
            let pending = db
                .collection::<Document>(collection)
                .count_documents(doc! { palm_mongo::outbox::SINCE_FIELD: { "$exists": true } })
                .await
                .unwrap();
            if pending > 0 {
                return None;
            }
        }
        Some(())
    })
    .await;

    // Older votes (a voter active 3 days ago, one 10 days ago), backup
    // records as the backup job writes them, and an event staged two
    // minutes ago that no relay has published.
    let ago = |ms: i64| DateTime::from_millis(DateTime::now().timestamp_millis() - ms);
    const DAY: i64 = 86_400_000;
    db.collection::<Document>("votes")
        .insert_many([
            doc! { "_id": "old-3d", "proposal_id": &open, "palm_id": "old-voter-1", "status": "valid", "submitted_at": ago(3 * DAY) },
            doc! { "_id": "old-10d", "proposal_id": &open, "palm_id": "old-voter-2", "status": "rejected", "submitted_at": ago(10 * DAY) },
        ])
        .await
        .unwrap();
    db.collection::<Document>("backups")
        .insert_many([
            doc! { "_id": "b1", "status": "ok", "started_at": ago(2 * DAY + 60_000), "finished_at": ago(2 * DAY), "size_bytes": 100_i64 },
            doc! { "_id": "b2", "status": "ok", "started_at": ago(DAY + 60_000), "finished_at": ago(DAY), "size_bytes": 2_000_000_i64 },
            doc! { "_id": "b3", "status": "failed", "started_at": ago(3_700_000), "finished_at": ago(3_600_000), "size_bytes": 5_i64 },
        ])
        .await
        .unwrap();
    let planted_since = ago(120_000);
    Seeded { planted_since }
}

/// What the snapshot must say, recounted from the stored documents.
async fn recount(db: &mongodb::Database, taken_at_ms: i64) -> BTreeMap<Key, f64> {
    let mut expected: BTreeMap<Key, f64> = BTreeMap::new();
    let mut add = |name: &str, labels: &[(&str, &str)], by: f64| {
        *expected.entry(key(name, labels)).or_insert(0.0) += by;
    };

    // Levels from the verifiers themselves, not from the stored `level`.
    add("palm_platform_palm_ids", &[("level", "1")], 0.0);
    for palm_id in all(db, "palm_ids").await {
        let kinds: BTreeSet<String> = palm_id
            .get_array("verifiers")
            .unwrap()
            .iter()
            .map(|v| v.as_document().unwrap().get_str("kind").unwrap().to_owned())
            .collect();
        add(
            "palm_platform_palm_ids",
            &[("level", &kinds.len().to_string())],
            1.0,
        );
    }
    let statuses = ["pending", "verified", "rejected"];
    for kind in ["wallet", "discord"] {
        for status in statuses {
            add(
                "palm_platform_verifications",
                &[("kind", kind), ("status", status)],
                0.0,
            );
        }
    }
    for verification in all(db, "verifications").await {
        let kind = verification.get_str("kind").unwrap();
        for status in statuses {
            add(
                "palm_platform_verifications",
                &[("kind", kind), ("status", status)],
                0.0,
            );
        }
        let status = verification.get_str("status").unwrap();
        add(
            "palm_platform_verifications",
            &[("kind", kind), ("status", status)],
            1.0,
        );
    }
    add(
        "palm_platform_communities",
        &[],
        all(db, "communities").await.len() as f64,
    );
    add(
        "palm_platform_memberships",
        &[],
        all(db, "memberships").await.len() as f64,
    );
    for status in ["pending", "active", "closed"] {
        add("palm_platform_proposals", &[("status", status)], 0.0);
    }
    for proposal in all(db, "proposals").await {
        add(
            "palm_platform_proposals",
            &[("status", proposal.get_str("status").unwrap())],
            1.0,
        );
    }
    for status in ["pending", "valid", "rejected"] {
        add("palm_platform_votes", &[("status", status)], 0.0);
    }
    let (mut day, mut week) = (BTreeSet::new(), BTreeSet::new());
    for vote in all(db, "votes").await {
        add(
            "palm_platform_votes",
            &[("status", vote.get_str("status").unwrap())],
            1.0,
        );
        let submitted = vote
            .get_datetime("submitted_at")
            .unwrap()
            .timestamp_millis();
        let voter = vote.get_str("palm_id").unwrap().to_owned();
        if submitted >= taken_at_ms - 86_400_000 {
            day.insert(voter.clone());
        }
        if submitted >= taken_at_ms - 7 * 86_400_000 {
            week.insert(voter);
        }
    }
    add(
        "palm_platform_active_voters",
        &[("window", "24h")],
        day.len() as f64,
    );
    add(
        "palm_platform_active_voters",
        &[("window", "7d")],
        week.len() as f64,
    );
    for collection in palmdao::OUTBOX_COLLECTIONS {
        let oldest = all(db, collection)
            .await
            .iter()
            .filter_map(|d| {
                d.get_datetime(palm_mongo::outbox::SINCE_FIELD)
                    .ok()
                    .map(|since| since.timestamp_millis())
            })
            .min();
        let lag = oldest.map_or(0.0, |since| (taken_at_ms - since) as f64 / 1000.0);
        add(
            "palm_platform_outbox_lag_seconds",
            &[("collection", collection)],
            lag,
        );
    }
    let newest_ok = all(db, "backups")
        .await
        .into_iter()
        .filter(|b| b.get_str("status") == Ok("ok"))
        .max_by_key(|b| b.get_datetime("finished_at").unwrap().timestamp_millis())
        .unwrap();
    add(
        "palm_platform_backup_last_success_timestamp_seconds",
        &[],
        newest_ok
            .get_datetime("finished_at")
            .unwrap()
            .timestamp_millis() as f64
            / 1000.0,
    );
    add(
        "palm_platform_backup_last_size_bytes",
        &[],
        palm_mongo::integer(&newest_ok, "size_bytes").unwrap() as f64,
    );
    expected
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_platform_value_equals_a_recount_of_the_seeded_data() {
    let palmdao = Palmdao::start_with(&[
        ("PALM__PROPOSALS__SCHEDULER_INTERVAL_MS", "200"),
        ("PALM__PROPOSALS__CLOSE_GRACE_MS", "500"),
    ])
    .await;
    // The validators' jobs need a queue to go to (palmdao keeps an event
    // no required queue takes in its outbox); the fake validator answers.
    let jobs = QueueSpec::new(
        "test.jobs",
        &[
            "vote.submitted",
            "verification.requested.wallet",
            "verification.requested.discord",
        ],
    );
    let tap = EventTap::start(&palmdao.env, jobs).await;
    let validator = FakeValidator::connect(&palmdao).await;
    let db = database(&palmdao.env).await;
    let seeded = seed(&palmdao, &validator, &db).await;
    validator.close().await;
    tap.stop().await;
    let env = palmdao.env.clone();
    palmdao.stop().await;
    // Staged after palmdao stopped: nobody publishes it, so its age shows.
    db.collection::<Document>("discussions")
        .insert_one(doc! {
            "_id": "planted", "community_id": "x", "title": "t", "body": "", "author": "x",
            "created_at": seeded.planted_since,
            palm_mongo::outbox::OUTBOX_FIELD: [],
            palm_mongo::outbox::SINCE_FIELD: seeded.planted_since,
        })
        .await
        .unwrap();

    let metrics = PlatformMetrics::start(&env, 500, &[]).await;
    let scrape = metrics.wait_for_snapshot().await;
    let scraped_at = DateTime::now().timestamp_millis();
    let age = scrape
        .value("palm_platform_snapshot_age_seconds", &[])
        .unwrap();
    let taken_at_ms = scraped_at - (age * 1000.0) as i64;
    let shown = platform_values(&scrape);
    let mut expected = recount(&db, taken_at_ms).await;

    // The recount is of what the seed made, not of an empty database.
    let at = |name: &str, labels: &[(&str, &str)]| expected[&key(name, labels)];
    assert_eq!(at("palm_platform_palm_ids", &[("level", "1")]), 3.0);
    assert_eq!(at("palm_platform_palm_ids", &[("level", "2")]), 1.0);
    assert_eq!(at("palm_platform_palm_ids", &[("level", "3")]), 1.0);
    assert_eq!(
        at(
            "palm_platform_verifications",
            &[("kind", "discord"), ("status", "verified")]
        ),
        // The admin's discord and email, Bob's discord: the fake validator
        // answers a discord request with any verifier kind.
        3.0
    );
    assert_eq!(
        at(
            "palm_platform_verifications",
            &[("kind", "discord"), ("status", "pending")]
        ),
        1.0
    );
    assert_eq!(
        at(
            "palm_platform_verifications",
            &[("kind", "discord"), ("status", "rejected")]
        ),
        1.0
    );
    assert_eq!(
        at(
            "palm_platform_verifications",
            &[("kind", "wallet"), ("status", "verified")]
        ),
        1.0
    );
    assert_eq!(at("palm_platform_communities", &[]), 2.0);
    assert_eq!(at("palm_platform_memberships", &[]), 5.0);
    for status in ["pending", "active", "closed"] {
        assert_eq!(
            at("palm_platform_proposals", &[("status", status)]),
            1.0,
            "{status}"
        );
    }
    assert_eq!(at("palm_platform_votes", &[("status", "valid")]), 3.0);
    assert_eq!(at("palm_platform_votes", &[("status", "rejected")]), 2.0);
    assert_eq!(at("palm_platform_votes", &[("status", "pending")]), 1.0);
    assert_eq!(at("palm_platform_active_voters", &[("window", "24h")]), 3.0);
    assert_eq!(at("palm_platform_active_voters", &[("window", "7d")]), 4.0);
    assert_eq!(at("palm_platform_backup_last_size_bytes", &[]), 2_000_000.0);

    // The outbox lag depends on the snapshot's exact time, known here only
    // to the millisecond through its age: compare it with a tolerance.
    let lag = key(
        "palm_platform_outbox_lag_seconds",
        &[("collection", "discussions")],
    );
    let (want, got) = (expected.remove(&lag).unwrap(), shown[&lag]);
    assert!((120.0..130.0).contains(&want), "planted lag {want}");
    assert!(
        (got - want).abs() < 0.5,
        "lag shown {got}, recounted {want}"
    );
    let mut shown = shown;
    shown.remove(&lag);
    // The refresh's duration is the snapshot's own; every other value must
    // equal the recount, and no series may be missing or extra.
    let duration = shown
        .remove(&key("palm_platform_snapshot_refresh_duration_seconds", &[]))
        .unwrap();
    assert!(duration > 0.0 && duration < 5.0, "{duration}");
    assert_eq!(shown, expected);
    assert!(
        scrape
            .value(
                "palm_platform_snapshot_refreshes_total",
                &[("outcome", "ok")]
            )
            .unwrap()
            >= 1.0
    );
    assert_eq!(
        scrape.value(
            "palm_platform_snapshot_refreshes_total",
            &[("outcome", "error")]
        ),
        Some(0.0)
    );
}

/// Creates the indexes palmdao would at start-up (the aggregations name
/// them; real MongoDB refuses a hint to a missing index).
async fn palmdao_indexes(db: &mongodb::Database) {
    palmdao::store::ensure_indexes(db).await.unwrap();
    palmdao::store::platform::ensure_indexes(db).await.unwrap();
    for collection in palmdao::OUTBOX_COLLECTIONS {
        palm_mongo::ensure_indexes(db, collection, vec![palm_mongo::outbox::index()])
            .await
            .unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_of_two_instances_computes_both_serve_its_snapshot_and_the_other_takes_over() {
    const INTERVAL_MS: u64 = 300;
    const LEASE_TTL_MS: u64 = 3_000;
    let env = ServiceEnv::new();
    let db = database(&env).await;
    palmdao_indexes(&db).await;
    db.collection::<Document>("communities")
        .insert_many((0..3).map(|i| doc! { "_id": format!("c{i}"), "slug": format!("c{i}") }))
        .await
        .unwrap();
    let ttl = LEASE_TTL_MS.to_string();
    let extra = [("PALM__PLATFORM__LEASE_TTL_MS", ttl.as_str())];
    let a = PlatformMetrics::start(&env, INTERVAL_MS, &extra).await;
    let b = PlatformMetrics::start(&env, INTERVAL_MS, &extra).await;
    a.wait_for_snapshot().await;
    b.wait_for_snapshot().await;

    // Exactly one holds the lease; the other never sends an aggregate.
    let (computing, standby) = eventually("one lease holder", Duration::from_secs(20), || async {
        match (a.holds_lease().await, b.holds_lease().await) {
            (true, false) => Some((&a, &b)),
            (false, true) => Some((&b, &a)),
            _ => None,
        }
    })
    .await;
    let refreshes = |scrape: &Scrape| {
        scrape
            .value(
                "palm_platform_snapshot_refreshes_total",
                &[("outcome", "ok")],
            )
            .unwrap()
    };
    let first = refreshes(&computing.scrape().await);
    let scrape = eventually("five more refreshes", Duration::from_secs(30), || async {
        let scrape = computing.scrape().await;
        (refreshes(&scrape) >= first + 5.0).then_some(scrape)
    })
    .await;
    let per_refresh = palmplatformmetrics::aggregations::all(DateTime::now()).len() as f64;
    let aggregates = scrape
        .value("palm_mongo_commands_total", &[("command", "aggregate")])
        .unwrap();
    let done = refreshes(&scrape);
    // Counted as each is sent: the finished refreshes', plus at most one
    // refresh under way.
    assert!(
        aggregates >= per_refresh * done && aggregates <= per_refresh * (done + 1.0),
        "{aggregates} aggregates for {done} refreshes of {per_refresh}"
    );
    let standby_scrape = standby.scrape().await;
    assert_eq!(
        standby.aggregates().await,
        0.0,
        "the standby computes nothing"
    );
    assert_eq!(refreshes(&standby_scrape), 0.0);

    // Both serve the same snapshot (the standby reads it every interval).
    eventually(
        "both replicas show one snapshot",
        Duration::from_secs(10),
        || async {
            let (left, right) = (computing.scrape().await, standby.scrape().await);
            let (left_values, right_values) = (platform_values(&left), platform_values(&right));
            let same = left_values == right_values
                && left_values[&key("palm_platform_communities", &[])] == 3.0;
            same.then_some(())
        },
    )
    .await;

    // The computing one dies; the standby takes over within the lease time
    // (plus one acquisition attempt, every ttl/3).
    computing.process.sigkill();
    let killed = Instant::now();
    eventually(
        "the standby takes over",
        Duration::from_secs(20),
        || async {
            let scrape = standby.scrape().await;
            let computing = scrape
                .value("palm_lease_held", &[("lease", palmplatformmetrics::LEASE)])
                == Some(1.0)
                && refreshes(&scrape) >= 1.0;
            computing.then_some(())
        },
    )
    .await;
    let took = killed.elapsed();
    let bound = Duration::from_millis(LEASE_TTL_MS + LEASE_TTL_MS / 3 + 1_500);
    assert!(took <= bound, "took over after {took:?} (bound {bound:?})");
    let scrape = standby.scrape().await;
    assert_eq!(
        scrape.value(
            "palm_lease_acquisitions_total",
            &[("lease", palmplatformmetrics::LEASE)]
        ),
        Some(1.0)
    );
    assert!(
        scrape
            .value("palm_mongo_commands_total", &[("command", "aggregate")])
            .unwrap()
            >= per_refresh
    );
    assert!(
        scrape
            .value("palm_platform_snapshot_age_seconds", &[])
            .unwrap()
            < 5.0
    );
}
