//! palmvalidator as a real process against the real broker: jobs are
//! published straight onto the events exchange, as palmdao's outbox would,
//! and the results are read from a test queue bound to the result events.
//!
//! Shown here: votes signed with test keys validate with the power and
//! allocation of each voting type and strategy; a tampered vote, a vote by an
//! unlinked wallet, before start, after end, by a non-member, by a too-low
//! level and with a bad choice are each rejected with their own reason; a job
//! delivered twice yields the same result id; two instances share the queue
//! and decide every vote once; a malformed job goes to the DLQ with its
//! reason; wallet proofs are verified or rejected with the SIWE code.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use palm_amqp::{Broker, Consumer, Incoming, OutgoingMessage, Publisher, QueueSpec, Topology, dlq};
use palm_core::Envelope;
use palm_core::eth::{AddressText, LocalKey};
use palm_core::events::{ProposalRules, VoteSubmitted, VoterFacts, WalletVerificationRequested};
use palm_core::vote::{VoteDomain, VoteMessage};
use palm_testkit::eventually;
use palm_testkit::process::{ServiceProcess, binary};
use palm_tests::palmdao::key;
use palm_tests::{ServiceEnv, get};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// The EIP-712 domain the validators under test are configured with: not
/// the default one, so a vote signed under the default domain must fail.
fn domain() -> VoteDomain {
    VoteDomain {
        name: "Palm".into(),
        version: "1".into(),
        chain_id: 10,
    }
}

const DOMAIN_VARS: [(&str, &str); 1] = [("PALM__VOTES__CHAIN_ID", "10")];

/// A result event as read from the test queue.
#[derive(Debug, Clone)]
struct Received {
    /// The AMQP message id: the result event's id.
    id: String,
    routing_key: String,
    envelope: Value,
}

impl Received {
    fn payload(&self) -> &Value {
        &self.envelope["payload"]
    }
}

/// The broker side of a test: its own prefix, the job queue and a results
/// queue declared, a confirmed publisher, and every result collected.
struct Bus {
    env: ServiceEnv,
    broker: Broker,
    publisher: Publisher,
    results: Arc<Mutex<Vec<Received>>>,
    stop: CancellationToken,
    consuming: tokio::task::JoinHandle<Result<(), palm_amqp::BrokerError>>,
}

fn specs() -> Vec<QueueSpec> {
    let mut specs = palmvalidator::queues();
    specs.push(QueueSpec::new(
        "test.results",
        &["vote.validated", "vote.rejected", "verification.completed"],
    ));
    specs
}

impl Bus {
    async fn start() -> Self {
        let env = ServiceEnv::new();
        let settings = env.amqp_settings();
        let broker = Broker::start(settings.clone(), Topology::new(&settings, specs()));
        broker
            .wait_connected(Duration::from_secs(20))
            .await
            .unwrap();
        let publisher = Publisher::new(broker.clone());
        let results: Arc<Mutex<Vec<Received>>> = Arc::default();
        let consumer = {
            let results = Arc::clone(&results);
            Consumer::new(&broker, &publisher, "test.results", move |m: Incoming| {
                results.lock().unwrap().push(Received {
                    id: m.message_id.clone().unwrap_or_default(),
                    routing_key: m.routing_key.clone(),
                    envelope: serde_json::from_slice(&m.body).unwrap(),
                });
                std::future::ready(Ok(()))
            })
        };
        let stop = CancellationToken::new();
        let consuming = tokio::spawn(consumer.run(stop.clone()));
        Self {
            env,
            broker,
            publisher,
            results,
            stop,
            consuming,
        }
    }

    /// Starts a palmvalidator process and waits until it is ready; returns
    /// it with its admin address.
    async fn validator(&self) -> (ServiceProcess, String) {
        let process = ServiceProcess::spawn(binary("palmvalidator"), &self.env.vars(&DOMAIN_VARS));
        let admin = process.admin_addr(Duration::from_secs(20)).await;
        eventually("palmvalidator ready", Duration::from_secs(30), || {
            let admin = admin.clone();
            async move { (get(&admin, "/readyz").await.0 == 200).then_some(()) }
        })
        .await;
        (process, admin)
    }

    async fn publish<P: palm_core::Event>(&self, job: &Envelope<P>) {
        self.publisher
            .publish(&OutgoingMessage::event(self.broker.names(), job))
            .await
            .unwrap();
    }

    /// Waits until every id in `vote_ids` has a result; returns the results
    /// per vote id.
    async fn vote_results(&self, vote_ids: &[Uuid]) -> BTreeMap<Uuid, Vec<Received>> {
        let wanted: BTreeSet<String> = vote_ids.iter().map(Uuid::to_string).collect();
        let results = Arc::clone(&self.results);
        eventually(
            &format!("results for {} votes", wanted.len()),
            Duration::from_secs(120),
            || {
                let mut by_vote: BTreeMap<Uuid, Vec<Received>> = BTreeMap::new();
                for result in results.lock().unwrap().iter() {
                    let vote_id = result.payload()["vote_id"].as_str().unwrap_or_default();
                    if wanted.contains(vote_id) {
                        by_vote
                            .entry(vote_id.parse().unwrap())
                            .or_default()
                            .push(result.clone());
                    }
                }
                std::future::ready((by_vote.len() == wanted.len()).then_some(by_vote))
            },
        )
        .await
    }

    /// Waits for the result of one verification.
    async fn verification_result(&self, verification_id: Uuid) -> Received {
        let results = Arc::clone(&self.results);
        let id = verification_id.to_string();
        eventually("the verification result", Duration::from_secs(30), || {
            let found = results
                .lock()
                .unwrap()
                .iter()
                .find(|r| r.payload()["verification_id"] == id.as_str())
                .cloned();
            std::future::ready(found)
        })
        .await
    }

    async fn stop(self, validators: Vec<ServiceProcess>) {
        for mut validator in validators {
            validator.sigterm();
            assert_eq!(
                validator.wait(Duration::from_secs(15)).await,
                Some(0),
                "clean exit"
            );
        }
        self.stop.cancel();
        self.consuming.await.unwrap().unwrap();
        self.broker.close().await;
        self.env.teardown(&specs()).await;
    }
}

/// A single-choice vote for choice 1 of 3 by `signer`, inside its window,
/// by a level-2 member, signed under [`domain`].
fn vote(signer: &LocalKey) -> VoteSubmitted {
    let now = Utc::now();
    let mut vote = VoteSubmitted {
        vote_id: Uuid::now_v7(),
        proposal_id: Uuid::now_v7(),
        palm_id: Uuid::now_v7(),
        choice: json!(1),
        timestamp: now.timestamp(),
        address: signer.address().to_checksummed(),
        signature: String::new(),
        app: "palm.test".into(),
        submitted_at: now,
        voter: VoterFacts {
            wallets: vec![signer.address().to_lower_hex()],
            level: 2,
            is_member: true,
        },
        proposal: ProposalRules {
            voting_type: "single-choice".into(),
            choice_count: 3,
            start: now - chrono::Duration::hours(1),
            end: now + chrono::Duration::hours(1),
            min_level: 1,
            strategy: "one-person-one-vote".into(),
        },
    };
    sign(&mut vote, signer, &domain());
    vote
}

/// (Re-)signs `vote` as `signer` under `domain`, as a wallet would.
fn sign(vote: &mut VoteSubmitted, signer: &LocalKey, domain: &VoteDomain) {
    let message = VoteMessage {
        proposal: vote.proposal_id.to_string(),
        choice: vote.choice.clone(),
        timestamp: u64::try_from(vote.timestamp).unwrap(),
        voter: vote.address.parse().unwrap(),
        app: vote.app.clone(),
    };
    vote.signature = message.sign(domain, signer).unwrap().to_string();
}

/// A vote by `signer` of `voting_type` with `strategy` and `choice`, signed.
fn typed_vote(
    signer: &LocalKey,
    voting_type: &str,
    strategy: &str,
    choice: Value,
) -> VoteSubmitted {
    let mut vote = vote(signer);
    vote.proposal.voting_type = voting_type.into();
    vote.proposal.strategy = strategy.into();
    vote.choice = choice;
    sign(&mut vote, signer, &domain());
    vote
}

fn job<P: palm_core::Event>(payload: P) -> Envelope<P> {
    Envelope::new("palmdao", payload)
}

/// Waits until the counter `name` (summed over its label sets) reaches
/// `at_least` and returns its value; the counter is bumped just after the
/// result is confirmed, so it may trail the result by a moment.
async fn counter_at_least(admin: &str, name: &str, at_least: f64) -> f64 {
    eventually(
        &format!("{name} ≥ {at_least}"),
        Duration::from_secs(10),
        || async move {
            let value = counter(admin, name).await;
            (value >= at_least).then_some(value)
        },
    )
    .await
}

/// The value of the counter `name` summed over its label sets.
async fn counter(admin: &str, name: &str) -> f64 {
    let (status, text) = get(admin, "/metrics").await;
    assert_eq!(status, 200);
    text.lines()
        .filter(|line| line.starts_with(name) && line[name.len()..].starts_with(['{', ' ']))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signed_votes_validate_and_each_failure_has_its_own_reason() {
    let bus = Bus::start().await;
    let (validator, admin) = bus.validator().await;
    let alice = key(&format!("alice-{}", Uuid::new_v4()));
    let bob = key(&format!("bob-{}", Uuid::new_v4()));

    // Valid votes: each voting type under each strategy (level 2), with the
    // allocation the type gives. Approval gives every approved choice the
    // full power (see palm_core::voting).
    let valid = [
        (
            "single-choice",
            "one-person-one-vote",
            json!(2),
            1.0,
            vec![0.0, 1.0, 0.0],
        ),
        (
            "single-choice",
            "level-weighted",
            json!(3),
            2.0,
            vec![0.0, 0.0, 2.0],
        ),
        (
            "approval",
            "one-person-one-vote",
            json!([1, 3]),
            1.0,
            vec![1.0, 0.0, 1.0],
        ),
        (
            "approval",
            "level-weighted",
            json!([2]),
            2.0,
            vec![0.0, 2.0, 0.0],
        ),
        (
            "weighted",
            "one-person-one-vote",
            json!({ "1": 1, "2": 3 }),
            1.0,
            vec![0.25, 0.75, 0.0],
        ),
        (
            "weighted",
            "level-weighted",
            json!({ "3": 2, "1": 2 }),
            2.0,
            vec![1.0, 0.0, 1.0],
        ),
    ];
    let mut expected_valid = BTreeMap::new();
    for (voting_type, strategy, choice, power, allocation) in valid {
        let vote = typed_vote(&alice, voting_type, strategy, choice);
        expected_valid.insert(vote.vote_id, (power, allocation));
        bus.publish(&job(vote)).await;
    }

    // Rejections, one per reason.
    let mut expected_rejected = BTreeMap::new();
    let mut reject = |vote: VoteSubmitted, reason: &'static str| {
        expected_rejected.insert(vote.vote_id, reason);
        job(vote)
    };
    let mut jobs = Vec::new();
    let mut tampered = vote(&alice);
    tampered.choice = json!(2);
    jobs.push(reject(tampered, "signer_mismatch"));
    let mut default_domain = vote(&alice);
    sign(&mut default_domain, &alice, &VoteDomain::default());
    jobs.push(reject(default_domain, "signer_mismatch"));
    let mut unlinked = vote(&bob);
    unlinked.voter.wallets = vec![alice.address().to_lower_hex()];
    jobs.push(reject(unlinked, "wallet_not_linked"));
    let mut malformed = vote(&alice);
    malformed.signature = "0xdeadbeef".into();
    jobs.push(reject(malformed, "malformed_signature"));
    let mut early = vote(&alice);
    early.submitted_at = early.proposal.start - chrono::Duration::seconds(1);
    jobs.push(reject(early, "not_started"));
    let mut late = vote(&alice);
    late.submitted_at = late.proposal.end;
    jobs.push(reject(late, "ended"));
    let mut future = vote(&alice);
    future.timestamp = (future.submitted_at + chrono::Duration::days(365)).timestamp();
    sign(&mut future, &alice, &domain());
    jobs.push(reject(future, "timestamp_in_future"));
    let mut before_window = vote(&alice);
    before_window.timestamp =
        (before_window.proposal.start - chrono::Duration::hours(1)).timestamp();
    sign(&mut before_window, &alice, &domain());
    jobs.push(reject(before_window, "timestamp_outside_window"));
    let mut outsider = vote(&alice);
    outsider.voter.is_member = false;
    jobs.push(reject(outsider, "not_a_member"));
    let mut novice = vote(&alice);
    novice.proposal.min_level = 3;
    jobs.push(reject(novice, "level_too_low"));
    jobs.push(reject(
        typed_vote(&alice, "single-choice", "one-person-one-vote", json!(4)),
        "invalid_choice",
    ));
    jobs.push(reject(
        typed_vote(&alice, "approval", "one-person-one-vote", json!([1, 1])),
        "invalid_choice",
    ));
    jobs.push(reject(
        typed_vote(
            &alice,
            "weighted",
            "one-person-one-vote",
            json!({ "1": 0.5 }),
        ),
        "invalid_choice",
    ));
    jobs.push(reject(
        typed_vote(&alice, "quadratic", "one-person-one-vote", json!(1)),
        "unknown_voting_type",
    ));
    jobs.push(reject(
        typed_vote(&alice, "single-choice", "token-weighted", json!(1)),
        "unknown_strategy",
    ));
    for job in &jobs {
        bus.publish(job).await;
    }

    // The same job published twice: its result carries the same event id.
    let twice = job(vote(&alice));
    bus.publish(&twice).await;
    bus.publish(&twice).await;

    let mut all: Vec<Uuid> = expected_valid.keys().copied().collect();
    all.extend(expected_rejected.keys().copied());
    let results = bus.vote_results(&all).await;
    for (vote_id, (power, allocation)) in &expected_valid {
        let result = &results[vote_id][0];
        assert_eq!(result.routing_key, "vote.validated", "{result:?}");
        assert_eq!(result.payload()["voting_power"], json!(power), "{result:?}");
        assert_eq!(
            result.payload()["allocation"],
            json!(allocation),
            "{result:?}"
        );
        assert_eq!(result.envelope["producer"], "palmvalidator");
    }
    for (vote_id, reason) in &expected_rejected {
        let result = &results[vote_id][0];
        assert_eq!(
            (
                result.routing_key.as_str(),
                result.payload()["reason"].as_str()
            ),
            ("vote.rejected", Some(*reason)),
            "{result:?}"
        );
    }
    let reasons: BTreeSet<&str> = expected_rejected.values().copied().collect();
    assert_eq!(reasons.len(), 12, "twelve distinct reasons: {reasons:?}");

    let repeated = eventually(
        "two results for the job sent twice",
        Duration::from_secs(30),
        || {
            let id = twice.payload.vote_id.to_string();
            let found: Vec<Received> = bus
                .results
                .lock()
                .unwrap()
                .iter()
                .filter(|r| r.payload()["vote_id"] == id.as_str())
                .cloned()
                .collect();
            std::future::ready((found.len() >= 2).then_some(found))
        },
    )
    .await;
    assert_eq!(repeated[0].id, repeated[1].id, "same result event id");
    assert_eq!(repeated[0].envelope["causation_id"], json!(twice.id));
    assert_eq!(
        repeated[0].envelope["correlation_id"],
        json!(twice.correlation_id)
    );

    // 6 valid, 15 rejected, and the job sent twice decided twice.
    assert_eq!(
        counter_at_least(&admin, "palm_votes_decided_total", 23.0).await,
        23.0
    );
    bus.stop(vec![validator]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_share_the_queue_and_decide_every_vote_once() {
    const VOTES: usize = 400;
    let bus = Bus::start().await;
    let (first, first_admin) = bus.validator().await;
    let (second, second_admin) = bus.validator().await;
    // One signature serves every job: it covers the vote's content, not its id.
    let alice = key(&format!("alice-{}", Uuid::new_v4()));
    let template = vote(&alice);
    let jobs: Vec<Envelope<VoteSubmitted>> = (0..VOTES)
        .map(|_| {
            job(VoteSubmitted {
                vote_id: Uuid::now_v7(),
                ..template.clone()
            })
        })
        .collect();
    let sends = jobs.iter().map(|job| bus.publish(job));
    futures_util::future::join_all(sends).await;

    let ids: Vec<Uuid> = jobs.iter().map(|j| j.payload.vote_id).collect();
    let results = bus.vote_results(&ids).await;
    for (vote_id, received) in &results {
        let distinct: BTreeSet<&str> = received.iter().map(|r| r.id.as_str()).collect();
        assert_eq!(
            distinct.len(),
            1,
            "one result id for {vote_id}: {received:?}"
        );
        assert_eq!(received[0].routing_key, "vote.validated");
    }
    // Each result is counted just after its confirm: wait for the last ones.
    let (a, b) = eventually("every decision counted", Duration::from_secs(10), || {
        let (first, second) = (&first_admin, &second_admin);
        async move {
            let a = counter(first, "palm_votes_decided_total").await;
            let b = counter(second, "palm_votes_decided_total").await;
            (a + b >= VOTES as f64).then_some((a, b))
        }
    })
    .await;
    assert!(a > 0.0 && b > 0.0, "both instances took work: {a} and {b}");
    bus.stop(vec![first, second]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_that_cannot_be_decoded_goes_to_the_dlq_with_its_reason() {
    let bus = Bus::start().await;
    let (validator, _admin) = bus.validator().await;
    let names = bus.broker.names();
    let garbage_id = Uuid::now_v7().to_string();
    bus.publisher
        .publish(&OutgoingMessage::raw(
            names.events_exchange(),
            "vote.submitted",
            garbage_id.clone(),
            b"{not json".to_vec(),
        ))
        .await
        .unwrap();
    let mut future = job(vote(&key("alice")));
    future.schema_version = 99;
    bus.publish(&future).await;
    // A well-formed job after them is still decided.
    let fine = job(vote(&key("alice")));
    bus.publish(&fine).await;
    bus.vote_results(&[fine.payload.vote_id]).await;

    let queue = names.queue(palmvalidator::JOBS_QUEUE);
    let dead = eventually("both jobs in the DLQ", Duration::from_secs(30), || {
        let (broker, queue) = (bus.broker.clone(), queue.clone());
        async move {
            let dead = dlq::inspect(&broker, &queue, 10).await.unwrap();
            (dead.len() >= 2).then_some(dead)
        }
    })
    .await;
    let reason = |id: &str| {
        dead.iter()
            .find(|d| d.message_id.as_deref() == Some(id))
            .map(|d| d.reason.clone())
            .unwrap_or_else(|| panic!("{id} not in the DLQ: {dead:?}"))
    };
    assert!(reason(&garbage_id).contains("malformed"), "{dead:?}");
    assert!(
        reason(&future.id.to_string()).contains("unsupported schema version 99"),
        "{dead:?}"
    );
    bus.stop(vec![validator]).await;
}

/// A SIWE message for `domain` as a wallet would sign it to link `key`.
fn link_request(domain: &str, key: &LocalKey, now: DateTime<Utc>) -> WalletVerificationRequested {
    let message = format!(
        "{domain} wants you to sign in with your Ethereum account:\n{}\n\nLink this wallet to Palm\n\nURI: https://palm.test/v1/auth/siwe\nVersion: 1\nChain ID: 10\nNonce: {}\nIssued At: {}",
        key.address().to_checksummed(),
        Uuid::new_v4().simple(),
        now.format("%Y-%m-%dT%H:%M:%SZ")
    );
    WalletVerificationRequested {
        verification_id: Uuid::now_v7(),
        palm_id: Uuid::now_v7(),
        signature: key.sign_personal(message.as_bytes()).unwrap().to_string(),
        message,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wallet_proofs_are_verified_with_the_address_or_rejected_with_the_siwe_code() {
    let bus = Bus::start().await;
    let (validator, admin) = bus.validator().await;
    let wallet = key(&format!("wallet-{}", Uuid::new_v4()));

    let good = job(link_request("palm.test", &wallet, Utc::now()));
    bus.publish(&good).await;
    let verified = bus.verification_result(good.payload.verification_id).await;
    assert_eq!(verified.routing_key, "verification.completed");
    assert_eq!(
        verified.payload().clone(),
        json!({
            "verification_id": good.payload.verification_id,
            "palm_id": good.payload.palm_id,
            "kind": "wallet",
            "outcome": {
                "status": "verified",
                "subject": wallet.address().to_lower_hex(),
                "display_name": null,
            },
        })
    );

    let elsewhere = job(link_request("evil.example", &wallet, Utc::now()));
    bus.publish(&elsewhere).await;
    let rejected = bus
        .verification_result(elsewhere.payload.verification_id)
        .await;
    assert_eq!(
        rejected.payload()["outcome"],
        json!({ "status": "rejected", "reason": "siwe_wrong_domain" })
    );
    let mut forged = job(link_request("palm.test", &wallet, Utc::now()));
    forged.payload.signature = key("someone else")
        .sign_personal(forged.payload.message.as_bytes())
        .unwrap()
        .to_string();
    bus.publish(&forged).await;
    let rejected = bus
        .verification_result(forged.payload.verification_id)
        .await;
    assert_eq!(
        rejected.payload()["outcome"]["reason"],
        "siwe_signer_mismatch"
    );

    assert_eq!(
        counter_at_least(&admin, "palm_verifications_decided_total", 3.0).await,
        3.0
    );
    bus.stop(vec![validator]).await;
}

#[tokio::test]
async fn a_bad_vote_domain_or_sign_in_setting_stops_the_validator_naming_the_key() {
    for (var, value, key) in [
        ("PALM__VOTES__CHAIN_ID", "0", "votes.chain_id"),
        ("PALM__VOTES__DOMAIN_NAME", "", "votes.domain_name"),
        ("PALM__AUTH__URI", "palm.test/siwe", "auth.uri"),
        ("PALM__AUTH__CHAIN_IDS", "mainnet", "auth.chain_ids[0]"),
    ] {
        let env = ServiceEnv::new();
        let mut validator =
            ServiceProcess::spawn(binary("palmvalidator"), &env.vars(&[(var, value)]));
        assert_eq!(validator.wait(Duration::from_secs(10)).await, Some(78));
        let output = validator.output().join("\n");
        assert!(
            output.contains(&format!("`{key}`")),
            "names `{key}`: {output}"
        );
    }
}
