//! palmdao's side of the vote lifecycle with hand-published results, so each
//! delivery is under the test's control: a vote is decided once, a later
//! vote replaces the earlier ballot and an earlier one does not, a duplicate
//! `vote.validated` changes nothing, the tally equals a recount of the stored
//! valid votes, and the scheduler opens and closes the proposal on time with
//! the final tally in `proposal.closed`. (With the real validator in
//! `vote_lifecycle.rs`.)
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::time::Duration;

use chrono::{Duration as Span, Utc};
use futures_util::{StreamExt, TryStreamExt};
use palm_amqp::{OutgoingMessage, QueueSpec};
use palm_core::Envelope;
use palm_core::eth::AddressText;
use palm_core::events::{ProposalClosed, ProposalOpened, VoteRejected, VoteValidated};
use palm_testkit::eventually;
use palm_tests::palmdao::{FakeValidator, Palmdao, key};
use palm_tests::tap::EventTap;
use reqwest::Method;
use serde_json::{Value, json};
use uuid::Uuid;

/// A well-formed signature; the (fake) validator does not check it.
fn signature() -> String {
    format!("0x{}1b", "11".repeat(64))
}

struct Voter {
    token: String,
    palm_id: Uuid,
    address: String,
}

async fn voter(palmdao: &Palmdao, slug: &str) -> Voter {
    let signer = key(&format!("voter-{}", Uuid::new_v4()));
    let body = palmdao.sign_in(&signer).await;
    let voter = Voter {
        token: body["token"].as_str().unwrap().to_owned(),
        palm_id: Uuid::parse_str(body["palm_id"].as_str().unwrap()).unwrap(),
        address: signer.address().to_checksummed(),
    };
    palmdao.join(slug, &voter.token).await;
    voter
}

/// Submits a vote for choice `choice` signed "at" `timestamp`; returns its id.
async fn submit(
    palmdao: &Palmdao,
    proposal: &str,
    voter: &Voter,
    choice: u32,
    timestamp: i64,
) -> Uuid {
    let (status, body) = palmdao
        .send(
            Method::POST,
            &format!("/v1/proposals/{proposal}/votes"),
            Some(&voter.token),
            &json!({ "choice": choice, "timestamp": timestamp, "address": voter.address, "signature": signature() }),
        )
        .await;
    assert_eq!(status, 202, "{body}");
    Uuid::parse_str(body["id"].as_str().unwrap()).unwrap()
}

fn validated(proposal: Uuid, voter: &Voter, vote: Uuid, choice: usize) -> Envelope<VoteValidated> {
    let mut allocation = vec![0.0; 3];
    allocation[choice - 1] = 1.0;
    Envelope::new(
        "test-validator",
        VoteValidated {
            vote_id: vote,
            proposal_id: proposal,
            palm_id: voter.palm_id,
            voting_power: 1.0,
            allocation,
        },
    )
}

async fn status_of(palmdao: &Palmdao, voter: &Voter, vote: Uuid) -> String {
    let (_, body) = palmdao
        .get(&format!("/v1/votes/{vote}"), Some(&voter.token))
        .await;
    body["status"].as_str().unwrap_or_default().to_owned()
}

async fn tally(palmdao: &Palmdao, proposal: Uuid) -> Value {
    let (status, body) = palmdao
        .get(&format!("/v1/proposals/{proposal}/results"), None)
        .await;
    assert_eq!(status, 200, "{body}");
    body
}

fn powers(results: &Value) -> Vec<f64> {
    results["choices"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["power"].as_f64().unwrap())
        .collect()
}

/// The tally recounted from the stored votes: each PalmID's latest valid
/// vote (by signed timestamp, then id), its allocation summed.
async fn recount(palmdao: &Palmdao, proposal: Uuid) -> Vec<f64> {
    let client = mongodb::Client::with_uri_str(palm_testkit::mongo_url())
        .await
        .unwrap();
    let votes: Vec<mongodb::bson::Document> = client
        .database(&palmdao.env.database)
        .collection("votes")
        .find(mongodb::bson::doc! { "proposal_id": proposal.to_string(), "status": "valid" })
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap();
    let mut latest: HashMap<String, (i64, String, Vec<f64>)> = HashMap::new();
    for vote in votes {
        let palm_id = vote.get_str("palm_id").unwrap().to_owned();
        let key = (
            palm_mongo::integer(&vote, "timestamp").unwrap(),
            vote.get_str("_id").unwrap().to_owned(),
        );
        let allocation: Vec<f64> = vote
            .get_array("allocation")
            .unwrap()
            .iter()
            .map(|a| a.as_f64().unwrap())
            .collect();
        let newer = latest
            .get(&palm_id)
            .is_none_or(|(ts, id, _)| (key.0, &key.1) > (*ts, id));
        if newer {
            latest.insert(palm_id, (key.0, key.1, allocation));
        }
    }
    let mut sum = vec![0.0; 3];
    for (_, _, allocation) in latest.values() {
        for (total, part) in sum.iter_mut().zip(allocation) {
            *total += part;
        }
    }
    sum
}

/// A community of a fresh admin, and in it a proposal over choices a, b, c
/// with the extra fields of `rules` (window, quorum…); its slug and id.
async fn community_with_proposal(palmdao: &Palmdao, rules: Value) -> (String, Uuid) {
    let admin = palmdao
        .sign_in(&key(&format!("admin-{}", Uuid::new_v4())))
        .await;
    let admin_token = admin["token"].as_str().unwrap();
    let slug = format!("t-{}", &Uuid::new_v4().simple().to_string()[..8]);
    let (status, _) = palmdao
        .send(
            Method::POST,
            "/v1/communities",
            Some(admin_token),
            &json!({ "slug": slug, "name": "T" }),
        )
        .await;
    assert_eq!(status, 201);
    let mut body =
        json!({ "title": "Tally", "choices": ["a", "b", "c"], "voting_type": "single-choice" });
    body.as_object_mut()
        .unwrap()
        .extend(rules.as_object().unwrap().clone());
    let (status, created) = palmdao
        .send(
            Method::POST,
            &format!("/v1/communities/{slug}/proposals"),
            Some(admin_token),
            &body,
        )
        .await;
    assert_eq!(status, 201, "{created}");
    (
        slug,
        Uuid::parse_str(created["id"].as_str().unwrap()).unwrap(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn results_apply_once_later_votes_replace_earlier_ones_and_the_proposal_closes_on_time() {
    let palmdao = Palmdao::start_with(&[
        ("PALM__COMMUNITIES__CREATE_MIN_LEVEL", "1"),
        ("PALM__PROPOSALS__SCHEDULER_INTERVAL_MS", "200"),
        ("PALM__PROPOSALS__CLOSE_GRACE_MS", "3000"),
    ])
    .await;
    // The lifecycle events, read from a queue of the test's own.
    let lifecycle_queue = QueueSpec::new("test.lifecycle", &["proposal.opened", "proposal.closed"]);
    let lifecycle = EventTap::start(&palmdao.env, lifecycle_queue.clone()).await;
    let validator = FakeValidator::connect(&palmdao).await;
    let publish = |event: Envelope<VoteValidated>| {
        let message = OutgoingMessage::event(validator.broker.names(), &event);
        let publisher = validator.publisher.clone();
        async move { publisher.publish(&message).await.unwrap() }
    };

    let end = Utc::now() + Span::seconds(8);
    let (slug, proposal) = community_with_proposal(
        &palmdao,
        json!({ "start": Utc::now(), "end": end, "quorum": 3.0 }),
    )
    .await;
    let proposal_path = format!("/v1/proposals/{proposal}");
    eventually("the proposal opened", Duration::from_secs(10), || async {
        let (_, body) = palmdao.get(&proposal_path, None).await;
        (body["status"] == "active").then_some(())
    })
    .await;

    let voters = [
        voter(&palmdao, &slug).await,
        voter(&palmdao, &slug).await,
        voter(&palmdao, &slug).await,
        voter(&palmdao, &slug).await,
    ];
    let t = Utc::now().timestamp();
    let first = submit(&palmdao, &proposal.to_string(), &voters[0], 1, t).await;
    let second = submit(&palmdao, &proposal.to_string(), &voters[1], 2, t).await;
    let rejected = submit(&palmdao, &proposal.to_string(), &voters[2], 3, t).await;
    let duplicate = submit(&palmdao, &proposal.to_string(), &voters[3], 3, t).await;
    publish(validated(proposal, &voters[0], first, 1)).await;
    publish(validated(proposal, &voters[1], second, 2)).await;
    let twice = validated(proposal, &voters[3], duplicate, 3);
    publish(twice.clone()).await;
    publish(twice).await;
    let rejection = Envelope::new(
        "test-validator",
        VoteRejected {
            vote_id: rejected,
            proposal_id: proposal,
            palm_id: voters[2].palm_id,
            reason: "signer_mismatch".into(),
        },
    );
    validator
        .publisher
        .publish(&OutgoingMessage::event(
            validator.broker.names(),
            &rejection,
        ))
        .await
        .unwrap();
    // A later decision for a decided vote changes nothing either. (Results
    // are applied concurrently, so it is sent once the first has landed;
    // whichever lands first is the one that holds.)
    eventually("the rejection applied", Duration::from_secs(20), || async {
        (status_of(&palmdao, &voters[2], rejected).await == "rejected").then_some(())
    })
    .await;
    publish(validated(proposal, &voters[2], rejected, 3)).await;

    eventually(
        "the first results applied",
        Duration::from_secs(20),
        || async {
            let results = tally(&palmdao, proposal).await;
            (powers(&results) == [1.0, 1.0, 1.0]).then_some(())
        },
    )
    .await;
    assert_eq!(status_of(&palmdao, &voters[2], rejected).await, "rejected");
    let (_, rejected_view) = palmdao
        .get(&format!("/v1/votes/{rejected}"), Some(&voters[2].token))
        .await;
    assert_eq!(rejected_view["reason"], "signer_mismatch");

    // Voter 0 changes their mind (a later vote); voter 1's older vote,
    // validated late, does not replace their newer ballot.
    let changed = submit(&palmdao, &proposal.to_string(), &voters[0], 2, t + 5).await;
    let older = submit(&palmdao, &proposal.to_string(), &voters[1], 1, t - 5).await;
    publish(validated(proposal, &voters[0], changed, 2)).await;
    publish(validated(proposal, &voters[1], older, 1)).await;
    eventually("the changes applied", Duration::from_secs(20), || async {
        let decided = status_of(&palmdao, &voters[0], changed).await == "valid"
            && status_of(&palmdao, &voters[1], older).await == "valid";
        decided.then_some(())
    })
    .await;
    // A vote's status and its ballot are two steps (the transition, then
    // the ballot with the tally): the tally may land just after the status.
    let results = eventually(
        "the tally with the change",
        Duration::from_secs(20),
        || async {
            let results = tally(&palmdao, proposal).await;
            (powers(&results) == [0.0, 2.0, 1.0]).then_some(results)
        },
    )
    .await;
    assert_eq!(powers(&results), [0.0, 2.0, 1.0], "{results}");
    assert_eq!(results["voters"], 3);
    assert_eq!(results["final"], false);
    assert_eq!(powers(&results), recount(&palmdao, proposal).await);

    // The scheduler closes it on time, with the final tally.
    let closed = eventually("proposal.closed", Duration::from_secs(20), || async {
        lifecycle.events::<ProposalClosed>().first().cloned()
    })
    .await;
    let lateness = closed.occurred_at - end;
    assert!(
        lateness >= Span::zero() && lateness < Span::seconds(3),
        "closed {lateness} after its end"
    );
    assert_eq!(closed.payload.tally, [0.0, 2.0, 1.0]);
    assert_eq!(closed.payload.voters, 3);
    assert!(closed.payload.quorum_met);
    let results = tally(&palmdao, proposal).await;
    assert_eq!(
        (results["final"].as_bool(), results["status"].as_str()),
        (Some(true), Some("closed"))
    );

    // After the close, a decision no longer moves the tally.
    let late_voter = &voters[2];
    let late = submit(&palmdao, &proposal.to_string(), late_voter, 1, t + 9).await;
    publish(validated(proposal, late_voter, late, 1)).await;
    eventually("the late vote decided", Duration::from_secs(20), || async {
        (status_of(&palmdao, late_voter, late).await == "valid").then_some(())
    })
    .await;
    assert_eq!(powers(&tally(&palmdao, proposal).await), [0.0, 2.0, 1.0]);

    assert_eq!(lifecycle.events::<ProposalOpened>().len(), 1, "opened once");
    assert_eq!(lifecycle.events::<ProposalClosed>().len(), 1, "closed once");

    lifecycle.stop().await;
    validator.close().await;
    palmdao.env.teardown(&[lifecycle_queue]).await;
    palmdao.stop().await;
}

/// Two palmdao replicas on one database and prefix take 2,000 votes from
/// 200 voters, each voter changing their vote ten times, submitted
/// concurrently through both replicas; the results are delivered shuffled,
/// one in ten twice, and both replicas apply them (competing consumers of
/// `palmdao.results`). The tally then equals a recount of the stored valid
/// votes, counts each voter once, and every ballot holds its voter's latest
/// vote.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_tally_equals_a_recount_after_2000_concurrent_vote_changes_through_two_replicas() {
    const VOTERS: usize = 200;
    const CHANGES: usize = 10;
    let extra = [
        ("PALM__COMMUNITIES__CREATE_MIN_LEVEL", "1"),
        ("PALM__HTTP__RATE_LIMIT_PER_SECOND", "100000"),
        ("PALM__HTTP__RATE_LIMIT_BURST", "100000"),
        ("PALM__PROPOSALS__TALLY_MAX_AGE_MS", "100"),
    ];
    let first = Palmdao::start_with(&extra).await;
    let second = Palmdao::start_in(first.env.clone(), &extra).await;
    let replicas = [&first, &second];
    let validator = FakeValidator::connect(&first).await;
    // The validator's place: `vote.submitted` must be routed somewhere, or
    // the outbox keeps every one of them and retries it.
    let submissions = EventTap::start(
        &first.env,
        QueueSpec::new("test.submitted", &["vote.submitted"]),
    )
    .await;

    let (slug, proposal) = community_with_proposal(
        &first,
        json!({ "start": Utc::now(), "end": Utc::now() + Span::hours(1) }),
    )
    .await;

    let voters: Vec<Voter> =
        futures_util::future::join_all((0..VOTERS).map(|i| voter(replicas[i % 2], &slug))).await;

    // Every voter's ten changes, in a scrambled order of signed timestamps,
    // submitted 32 at a time, alternating replicas.
    let t = Utc::now().timestamp();
    let mut plan = Vec::new();
    for (v, _) in voters.iter().enumerate() {
        for change in 0..CHANGES {
            let order = (change * 7 + v) % CHANGES;
            let timestamp = t + i64::try_from(order).unwrap();
            let choice = u32::try_from((v + change) % 3).unwrap() + 1;
            plan.push((v, choice, timestamp));
        }
    }
    let proposal_id = proposal.to_string();
    let submitted: Vec<(usize, u32, Uuid)> = futures_util::stream::iter(plan.iter().enumerate())
        .map(|(i, &(v, choice, timestamp))| {
            let (replica, voter, proposal_id) = (replicas[i % 2], &voters[v], &proposal_id);
            async move {
                let vote = submit(replica, proposal_id, voter, choice, timestamp).await;
                (v, choice, vote)
            }
        })
        .buffer_unordered(32)
        .collect()
        .await;
    assert_eq!(submitted.len(), VOTERS * CHANGES);

    // Results shuffled (a fixed permutation), one in ten delivered twice.
    let mut deliveries: Vec<Envelope<VoteValidated>> = submitted
        .iter()
        .map(|&(v, choice, vote)| {
            validated(proposal, &voters[v], vote, usize::try_from(choice).unwrap())
        })
        .collect();
    let duplicates: Vec<_> = deliveries.iter().step_by(10).cloned().collect();
    deliveries.extend(duplicates);
    let count = deliveries.len();
    let mut shuffled = Vec::with_capacity(count);
    for i in 0..count {
        shuffled.push(deliveries[(i * 997) % count].clone());
    }
    assert_eq!(
        shuffled
            .iter()
            .map(|e| e.id)
            .collect::<std::collections::HashSet<_>>()
            .len(),
        count - count / 11,
        "the permutation covers every delivery"
    );
    futures_util::stream::iter(shuffled)
        .map(|event| {
            let message = OutgoingMessage::event(validator.broker.names(), &event);
            let publisher = validator.publisher.clone();
            async move { publisher.publish(&message).await.unwrap() }
        })
        .buffer_unordered(64)
        .collect::<Vec<_>>()
        .await;

    let client = mongodb::Client::with_uri_str(palm_testkit::mongo_url())
        .await
        .unwrap();
    let database = client.database(&first.env.database);
    let votes = database.collection::<mongodb::bson::Document>("votes");
    eventually("every vote decided", Duration::from_secs(180), || {
        let votes = votes.clone();
        let proposal_id = proposal_id.clone();
        async move {
            let pending = votes
                .count_documents(
                    mongodb::bson::doc! { "proposal_id": &proposal_id, "status": "pending" },
                )
                .await
                .unwrap();
            (pending == 0).then_some(())
        }
    })
    .await;
    let expected = recount(&first, proposal).await;
    let results = eventually(
        "the tally equals the recount",
        Duration::from_secs(60),
        || {
            let (first, expected) = (&first, expected.clone());
            async move {
                let results = tally(first, proposal).await;
                (powers(&results) == expected).then_some(results)
            }
        },
    )
    .await;
    assert_eq!(results["voters"], VOTERS, "{results}");
    assert_eq!(powers(&tally(&second, proposal).await), expected);
    assert_eq!(expected.iter().sum::<f64>(), VOTERS as f64);

    // Each ballot is its voter's latest vote (signed timestamp, then id).
    let ballots: Vec<mongodb::bson::Document> = database
        .collection("ballots")
        .find(mongodb::bson::doc! { "proposal_id": &proposal_id })
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap();
    assert_eq!(ballots.len(), VOTERS);
    let mut latest: HashMap<Uuid, (i64, Uuid)> = HashMap::new();
    let stored: Vec<mongodb::bson::Document> = votes
        .find(mongodb::bson::doc! { "proposal_id": &proposal_id })
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap();
    for vote in &stored {
        let palm_id = Uuid::parse_str(vote.get_str("palm_id").unwrap()).unwrap();
        let key = (
            palm_mongo::integer(vote, "timestamp").unwrap(),
            Uuid::parse_str(vote.get_str("_id").unwrap()).unwrap(),
        );
        let entry = latest.entry(palm_id).or_insert(key);
        if key > *entry {
            *entry = key;
        }
    }
    for ballot in &ballots {
        let palm_id = Uuid::parse_str(ballot.get_str("palm_id").unwrap()).unwrap();
        assert_eq!(
            ballot.get_str("vote_id").unwrap(),
            latest[&palm_id].1.to_string(),
            "{ballot}"
        );
    }
    submissions.stop().await;
    validator.broker.close().await;
    second.stop().await;
    first.stop().await;
}
