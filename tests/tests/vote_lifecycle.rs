//! The vote lifecycle end to end: palmdao and two palmvalidator instances as
//! real processes on the real broker. Many voters cast signed votes (some
//! change their minds); every vote is decided once, by either instance; the
//! results equal an independent recount of what was cast; bad votes are
//! rejected each with its own reason; the proposal closes on time with the
//! final tally in `proposal.closed`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::time::Duration;

use chrono::{Duration as Span, Utc};
use palm_amqp::QueueSpec;
use palm_core::eth::{AddressText, LocalKey};
use palm_core::events::ProposalClosed;
use palm_core::vote::{VoteDomain, VoteMessage};
use palm_testkit::eventually;
use palm_testkit::process::{ServiceProcess, binary};
use palm_tests::palmdao::{Palmdao, key};
use palm_tests::tap::EventTap;
use reqwest::Method;
use serde_json::{Value, json};
use uuid::Uuid;

/// The app palmdao puts in every vote: its sign-in domain in the tests.
const APP: &str = "palm.test";

struct Voter {
    key: LocalKey,
    token: String,
}

async fn voter(palmdao: &Palmdao, slug: Option<&str>) -> Voter {
    let (key, token) = palmdao.new_member("voter").await;
    if let Some(slug) = slug {
        palmdao.join(slug, &token).await;
    }
    Voter { key, token }
}

/// Casts `choice` on `proposal` as `voter`, signed by `signer` at
/// `timestamp`; `sent` is the choice put in the request (differs from the
/// signed one to tamper). Returns the vote id.
async fn cast(
    palmdao: &Palmdao,
    proposal: &str,
    voter: &Voter,
    signer: &LocalKey,
    (signed, sent): (u32, u32),
    timestamp: u64,
) -> String {
    let message = VoteMessage {
        proposal: proposal.to_owned(),
        choice: json!(signed),
        timestamp,
        voter: signer.address(),
        app: APP.to_owned(),
    };
    let signature = message.sign(&VoteDomain::default(), signer).unwrap();
    let (status, body) = palmdao
        .send(
            Method::POST,
            &format!("/v1/proposals/{proposal}/votes"),
            Some(&voter.token),
            &json!({
                "choice": sent,
                "timestamp": timestamp,
                "address": signer.address().to_checksummed(),
                "signature": signature.to_string(),
            }),
        )
        .await;
    assert_eq!(status, 202, "{body}");
    body["id"].as_str().unwrap().to_owned()
}

/// Waits until the vote is decided; returns its view.
async fn decided(palmdao: &Palmdao, voter: &Voter, vote: &str) -> Value {
    eventually("the vote decided", Duration::from_secs(30), || async {
        let (_, view) = palmdao
            .get(&format!("/v1/votes/{vote}"), Some(&voter.token))
            .await;
        (view["status"] != "pending").then_some(view)
    })
    .await
}

async fn create_proposal(
    palmdao: &Palmdao,
    admin: &Voter,
    slug: &str,
    start: chrono::DateTime<Utc>,
    end: chrono::DateTime<Utc>,
) -> String {
    let (status, body) = palmdao
        .send(
            Method::POST,
            &format!("/v1/communities/{slug}/proposals"),
            Some(&admin.token),
            &json!({
                "title": "Which tree?", "choices": ["apple", "pear", "plum"],
                "voting_type": "single-choice", "start": start, "end": end, "quorum": 10.0,
            }),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    body["id"].as_str().unwrap().to_owned()
}

fn decided_by(validator: &str) -> f64 {
    validator
        .lines()
        .filter(|l| l.starts_with("palm_votes_decided_total"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_signed_votes_are_decided_once_counted_as_recounted_and_closed_on_time() {
    let palmdao = Palmdao::start_with(&[
        ("PALM__COMMUNITIES__CREATE_MIN_LEVEL", "1"),
        ("PALM__PROPOSALS__SCHEDULER_INTERVAL_MS", "200"),
        ("PALM__PROPOSALS__CLOSE_GRACE_MS", "5000"),
    ])
    .await;
    let validators: Vec<ServiceProcess> = (0..2)
        .map(|_| ServiceProcess::spawn(binary("palmvalidator"), &palmdao.env.vars(&[])))
        .collect();
    let mut admins = Vec::new();
    for validator in &validators {
        admins.push(validator.admin_addr(Duration::from_secs(20)).await);
    }
    for admin in &admins {
        eventually("a validator ready", Duration::from_secs(30), || async {
            (palm_tests::get(admin, "/readyz").await.0 == 200).then_some(())
        })
        .await;
    }
    let closed_queue = QueueSpec::new("test.closed", &["proposal.closed"]);
    let closed = EventTap::start(&palmdao.env, closed_queue.clone()).await;

    let admin = voter(&palmdao, None).await;
    let slug = format!("v-{}", &Uuid::new_v4().simple().to_string()[..8]);
    let (status, _) = palmdao
        .send(
            Method::POST,
            "/v1/communities",
            Some(&admin.token),
            &json!({ "slug": slug, "name": "Orchard" }),
        )
        .await;
    assert_eq!(status, 201);
    let end = Utc::now() + Span::seconds(20);
    let proposal = create_proposal(&palmdao, &admin, &slug, Utc::now(), end).await;
    let later = create_proposal(
        &palmdao,
        &admin,
        &slug,
        Utc::now() + Span::hours(1),
        Utc::now() + Span::hours(2),
    )
    .await;

    // Many voters; every third changes their mind with a later vote.
    let mut voters = Vec::new();
    for _ in 0..24 {
        voters.push(voter(&palmdao, Some(&slug)).await);
    }
    let now = u64::try_from(Utc::now().timestamp()).unwrap();
    let mut expected = [0.0; 3];
    let mut votes = Vec::new();
    for (i, voter) in voters.iter().enumerate() {
        let first = u32::try_from(i % 3).unwrap() + 1;
        votes.push((
            i,
            cast(&palmdao, &proposal, voter, &voter.key, (first, first), now).await,
        ));
        let last = if i % 3 == 0 {
            let changed = first % 3 + 1;
            votes.push((
                i,
                cast(
                    &palmdao,
                    &proposal,
                    voter,
                    &voter.key,
                    (changed, changed),
                    now + 1,
                )
                .await,
            ));
            changed
        } else {
            first
        };
        expected[last as usize - 1] += 1.0;
    }

    // Bad votes, each rejected with its own reason.
    let outsider = voter(&palmdao, None).await;
    let stranger = key(&format!("unlinked-{}", Uuid::new_v4()));
    let bad = [
        (
            &voters[1],
            cast(
                &palmdao,
                &proposal,
                &voters[1],
                &voters[1].key,
                (1, 2),
                now - 5,
            )
            .await,
            "signer_mismatch",
        ),
        (
            &voters[2],
            cast(&palmdao, &proposal, &voters[2], &stranger, (1, 1), now - 5).await,
            "wallet_not_linked",
        ),
        (
            &outsider,
            cast(&palmdao, &proposal, &outsider, &outsider.key, (1, 1), now).await,
            "not_a_member",
        ),
        (
            &voters[4],
            cast(&palmdao, &later, &voters[4], &voters[4].key, (1, 1), now).await,
            "not_started",
        ),
    ];
    for (who, vote, reason) in &bad {
        let view = decided(&palmdao, who, vote).await;
        assert_eq!(
            (view["status"].as_str(), view["reason"].as_str()),
            (Some("rejected"), Some(*reason))
        );
    }
    for (i, vote) in &votes {
        let view = decided(&palmdao, &voters[*i], vote).await;
        assert_eq!(view["status"], "valid", "{view}");
    }

    // The running tally equals the recount of what was cast.
    let (_, results) = palmdao
        .get(&format!("/v1/proposals/{proposal}/results"), None)
        .await;
    let powers: Vec<f64> = results["choices"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["power"].as_f64().unwrap())
        .collect();
    assert_eq!(powers, expected, "{results}");
    assert_eq!(results["voters"], 24);
    assert_eq!(results["quorum_met"], true);

    // Both instances took work from the one queue.
    let mut per_instance = HashMap::new();
    for admin in &admins {
        let (_, metrics) = palm_tests::get(admin, "/metrics").await;
        per_instance.insert(admin.clone(), decided_by(&metrics));
    }
    assert!(per_instance.values().all(|n| *n > 0.0), "{per_instance:?}");
    let total: f64 = per_instance.values().sum();
    assert!(
        total >= (votes.len() + bad.len()) as f64,
        "{per_instance:?}"
    );

    // It closes on time with that tally; a vote after the end is rejected.
    let event = eventually("proposal.closed", Duration::from_secs(40), || async {
        closed.events::<ProposalClosed>().first().cloned()
    })
    .await;
    let lateness = event.occurred_at - end;
    assert!(
        lateness >= Span::zero() && lateness < Span::seconds(3),
        "closed {lateness} after its end"
    );
    assert_eq!(event.payload.tally, expected);
    assert_eq!(event.payload.voters, 24);
    assert!(event.payload.quorum_met);
    let late = cast(
        &palmdao,
        &proposal,
        &voters[5],
        &voters[5].key,
        (1, 1),
        now + 60,
    )
    .await;
    let view = decided(&palmdao, &voters[5], &late).await;
    assert_eq!(view["reason"], "ended");
    let (_, results) = palmdao
        .get(&format!("/v1/proposals/{proposal}/results"), None)
        .await;
    assert_eq!(results["final"], true);

    closed.stop().await;
    for mut validator in validators {
        validator.sigterm();
        assert_eq!(validator.wait(Duration::from_secs(15)).await, Some(0));
    }
    palmdao.env.teardown(&[closed_queue]).await;
    palmdao.stop().await;
}
