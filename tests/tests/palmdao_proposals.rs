//! Proposals and vote intake in palmdao with the real binary, broker and
//! database; the validator's queue is read to check what `vote.submitted`
//! carries.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use chrono::Utc;
use palm_core::eth::AddressText;
use palm_core::events::VoteSubmitted;
use palm_testkit::eventually;
use palm_tests::palmdao::{FakeValidator, Palmdao, key};
use palm_tests::tap::EventTap;
use reqwest::Method;
use serde_json::{Value, json};
use uuid::Uuid;

fn code(body: &Value) -> &str {
    body["code"].as_str().unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admins_create_proposals_and_votes_are_taken_with_every_fact_the_validator_needs() {
    let palmdao = Palmdao::start().await;
    // The validator's queue, declared before anything is voted so the
    // outbox's publish of vote.submitted is routed to it.
    let jobs = EventTap::start(&palmdao.env, palmvalidator::queues().remove(0)).await;

    let validator = FakeValidator::connect(&palmdao).await;
    let admin = palmdao
        .sign_in(&key(&format!("admin-{}", Uuid::new_v4())))
        .await;
    let (admin_token, admin_id) = (
        admin["token"].as_str().unwrap(),
        admin["palm_id"].as_str().unwrap(),
    );
    validator
        .raise_to_level_three(&palmdao, admin_token, admin_id)
        .await;
    let slug = format!("p-{}", &Uuid::new_v4().simple().to_string()[..8]);
    let (status, _) = palmdao
        .send(
            Method::POST,
            "/v1/communities",
            Some(admin_token),
            &json!({ "slug": slug, "name": "P", "min_vote_level": 1 }),
        )
        .await;
    assert_eq!(status, 201);

    let voter_key = key(&format!("voter-{}", Uuid::new_v4()));
    let voter = palmdao.sign_in(&voter_key).await;
    let voter_token = voter["token"].as_str().unwrap();
    assert_eq!(
        palmdao
            .send(
                Method::POST,
                &format!("/v1/communities/{slug}/join"),
                Some(voter_token),
                &json!({})
            )
            .await
            .0,
        201
    );

    let proposals = format!("/v1/communities/{slug}/proposals");
    let proposal = json!({
        "title": "Fund the garden",
        "body": "Plant trees.",
        "choices": ["yes", "no", "abstain"],
        "voting_type": "single-choice",
        "start": (Utc::now() - chrono::Duration::minutes(1)).to_rfc3339(),
        "end": (Utc::now() + chrono::Duration::hours(1)).to_rfc3339(),
    });
    let (status, problem) = palmdao
        .send(Method::POST, &proposals, Some(voter_token), &proposal)
        .await;
    assert_eq!((status, code(&problem)), (403, "not_admin"));
    for (field, value, expected) in [
        ("choices", json!(["only one"]), "validation_failed"),
        ("voting_type", json!("plurality"), "validation_failed"),
        (
            "end",
            json!((Utc::now() - chrono::Duration::hours(1)).to_rfc3339()),
            "invalid_window",
        ),
    ] {
        let mut bad = proposal.clone();
        bad[field] = value;
        let (status, problem) = palmdao
            .send(Method::POST, &proposals, Some(admin_token), &bad)
            .await;
        assert_eq!(
            (status, code(&problem)),
            (422, expected),
            "{field}: {problem}"
        );
    }
    let (status, created) = palmdao
        .send(Method::POST, &proposals, Some(admin_token), &proposal)
        .await;
    assert_eq!(status, 201, "{created}");
    // Created pending; the scheduler opens it (its start is past) at once.
    assert_eq!(created["status"], "pending");
    let id = created["id"].as_str().unwrap();
    eventually(
        "the proposal listed as active",
        Duration::from_secs(10),
        || async {
            let (_, active) = palmdao
                .get(&format!("{proposals}?status=active"), None)
                .await;
            (active["items"][0]["id"] == id).then_some(())
        },
    )
    .await;
    let (_, closed) = palmdao
        .get(&format!("{proposals}?status=closed"), None)
        .await;
    assert_eq!(closed["items"], json!([]));

    let votes = format!("/v1/proposals/{id}/votes");
    let signature = format!("0x{}1b", "11".repeat(64));
    let ballot = |choice: Value| json!({ "choice": choice, "timestamp": Utc::now().timestamp(), "address": voter_key.address().to_checksummed(), "signature": signature });
    let (status, problem) = palmdao
        .send(Method::POST, &votes, Some(voter_token), &ballot(json!(7)))
        .await;
    assert_eq!((status, code(&problem)), (422, "choice_does_not_fit"));
    // Within the schema (65 bytes, v of 27) but s in the curve order's
    // upper half: not a signature any wallet makes (EIP-2).
    let high_s = format!("0x{}{}1b", "11".repeat(32), "ff".repeat(32));
    let (status, problem) = palmdao
        .send(
            Method::POST,
            &votes,
            Some(voter_token),
            &json!({ "choice": 1, "timestamp": Utc::now().timestamp(), "address": voter_key.address().to_checksummed(), "signature": high_s }),
        )
        .await;
    assert_eq!((status, code(&problem)), (422, "signature_not_canonical"));
    let (status, problem) = palmdao
        .send(Method::POST, &votes, None, &ballot(json!(1)))
        .await;
    assert_eq!((status, code(&problem)), (401, "unauthenticated"));
    let (status, accepted) = palmdao
        .send(Method::POST, &votes, Some(voter_token), &ballot(json!(1)))
        .await;
    assert_eq!(
        (status, accepted["status"].as_str()),
        (202, Some("pending")),
        "{accepted}"
    );
    let vote_id = accepted["id"].as_str().unwrap();
    let (status, mine) = palmdao
        .get(&format!("/v1/votes/{vote_id}"), Some(voter_token))
        .await;
    assert_eq!((status, mine["choice"].clone()), (200, json!(1)));
    assert_eq!(
        palmdao
            .get(&format!("/v1/votes/{vote_id}"), Some(admin_token))
            .await
            .0,
        404,
        "only the voter sees it"
    );

    let job = eventually(
        "vote.submitted on the validator's queue",
        Duration::from_secs(20),
        || {
            let found = jobs
                .events::<VoteSubmitted>()
                .first()
                .map(|e| e.payload.clone());
            async move { found }
        },
    )
    .await;
    assert_eq!(job.vote_id.to_string(), vote_id);
    assert_eq!(job.voter.wallets, vec![voter_key.address().to_lower_hex()]);
    assert_eq!((job.voter.level, job.voter.is_member), (1, true));
    assert_eq!(job.proposal.voting_type, "single-choice");
    assert_eq!((job.proposal.choice_count, job.proposal.min_level), (3, 1));
    assert_eq!(job.proposal.strategy, "one-person-one-vote");
    assert_eq!(job.choice, json!(1));

    jobs.stop().await;
    validator.close().await;
    palmdao.env.teardown(&palmvalidator::queues()).await;
    palmdao.stop().await;
}
