//! The `palmctl` development CLI, run as a real process against a real
//! palmdao: the README's walkthrough (sign in, create a community and a
//! proposal, a second person joins and votes), with palmdao on its default
//! sign-in settings and palmctl on its default flags, so the two defaults are
//! proven to fit. The vote palmctl signs is checked the way the validator
//! will check it: its EIP-712 signature recovers the voter.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use chrono::Utc;
use palm_core::eth::AddressText;
use palm_core::events::VoteSubmitted;
use palm_core::vote::{VoteDomain, VoteMessage};
use palm_testkit::eventually;
use palm_tests::palmctl::Run;
use palm_tests::palmdao::{Palmdao, key};
use palm_tests::tap::EventTap;
use serde_json::json;
use uuid::Uuid;

/// Runs `palmctl args…` against `api` with `env`.
async fn palmctl(api: &str, env: &[(&str, &str)], args: &[&str]) -> Run {
    let mut vars = vec![("PALMCTL_API", api)];
    vars.extend_from_slice(env);
    palm_tests::palmctl::run(&vars, args, None).await
}

/// palmdao with the sign-in domain and URI it ships with (the test
/// environment otherwise names `palm.test`), and `extra`. The test
/// environment's chain ids (1 and 10) include the default's 1.
async fn palmdao_with_default_sign_in(extra: &[(&str, &str)]) -> Palmdao {
    let auth = palmdao::AuthSettings::default();
    assert_eq!(auth.chain_ids, [1], "palmctl's default chain id");
    let mut vars = vec![
        ("PALM__AUTH__DOMAIN", auth.domain.as_str()),
        ("PALM__AUTH__URI", auth.uri.as_str()),
    ];
    vars.extend_from_slice(extra);
    Palmdao::start_with(&vars).await
}

#[tokio::test]
async fn bad_command_lines_exit_2_with_the_usage() {
    let run = palmctl("http://127.0.0.1:9", &[], &["frobnicate"]).await;
    assert_eq!(run.code, 2);
    assert!(
        run.stderr.contains("unknown command `frobnicate`"),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("Usage: palmctl"), "{}", run.stderr);
    let run = palmctl("http://127.0.0.1:9", &[], &["login"]).await;
    assert_eq!(run.code, 2);
    assert!(run.stderr.contains("needs a key"), "{}", run.stderr);
    let help = palmctl("http://127.0.0.1:9", &[], &["--help"]).await;
    assert!(help.text().starts_with("palmctl:"));
    // Nothing listening: exit 1 with a hint, not a panic.
    let run = palmctl("http://127.0.0.1:9", &[], &["get", "/v1/communities"]).await;
    assert_eq!(run.code, 1);
    assert!(
        run.stderr.contains("cannot reach http://127.0.0.1:9"),
        "{}",
        run.stderr
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_prints_a_token_that_reads_the_signed_in_palm_id() {
    let palmdao = palmdao_with_default_sign_in(&[]).await;
    let api = palmdao.base.as_str();
    let seed = format!("alice-{}", Uuid::new_v4());
    let alice = key(&seed);
    let as_alice = [("PALMCTL_SEED", seed.as_str())];

    assert_eq!(
        palmctl(api, &as_alice, &["address"]).await.text(),
        alice.address().to_checksummed()
    );
    let login = palmctl(api, &as_alice, &["login"]).await;
    let token = login.text();
    assert!(
        !token.contains(char::is_whitespace),
        "only the token: {token}"
    );
    assert!(login.stderr.contains("just created"), "{}", login.stderr);
    let me = palmctl(api, &[], &["get", "/v1/me", "--token", &token])
        .await
        .json();
    assert_eq!(me["wallets"], json!([alice.address().to_lower_hex()]));
    assert_eq!(me["level"], 1);

    let renamed = palmctl(
        api,
        &[("PALMCTL_TOKEN", token.as_str())],
        &["patch", "/v1/me", r#"{"handle":"alice-cli"}"#],
    )
    .await
    .json();
    assert_eq!(renamed["handle"], "alice-cli");

    // A message for another site is refused by palmdao: exit 1, the
    // problem document on stderr.
    let refused = palmctl(api, &as_alice, &["login", "--domain", "evil.example"]).await;
    assert_eq!(refused.code, 1);
    assert!(refused.stdout.is_empty());
    assert!(
        refused.stderr.contains("answered 401"),
        "{}",
        refused.stderr
    );
    assert!(
        refused.stderr.contains(r#""code": "siwe_wrong_domain""#),
        "{}",
        refused.stderr
    );

    // A second wallet, signed by its own key, goes to the wallet verifier.
    let linked = palmctl(
        api,
        &[("PALMCTL_TOKEN", token.as_str())],
        &["link-wallet", "--with-seed", &format!("{seed}-ledger")],
    )
    .await
    .json();
    assert_eq!(
        (&linked["kind"], &linked["status"]),
        (&json!("wallet"), &json!("pending"))
    );

    palmdao.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_walkthrough_from_nothing_to_a_submitted_vote() {
    let palmdao =
        palmdao_with_default_sign_in(&[("PALM__COMMUNITIES__CREATE_MIN_LEVEL", "1")]).await;
    let api = palmdao.base.as_str();
    // The validator's queue, declared before the vote so vote.submitted is
    // routed to it and the test can check the signature palmctl made.
    let jobs = EventTap::start(&palmdao.env, palmvalidator::queues().remove(0)).await;

    // The admin signs in and creates a community and a proposal.
    let admin_seed = format!("admin-{}", Uuid::new_v4());
    let admin_token = palmctl(api, &[], &["login", "--seed", &admin_seed])
        .await
        .text();
    let as_admin = [("PALMCTL_TOKEN", admin_token.as_str())];
    let slug = format!("garden-{}", &Uuid::new_v4().simple().to_string()[..8]);
    let community = palmctl(
        api,
        &as_admin,
        &[
            "post",
            "/v1/communities",
            &json!({ "slug": slug, "name": "Community garden" }).to_string(),
        ],
    )
    .await
    .json();
    assert_eq!(community["slug"], slug.as_str());
    let proposal = json!({
        "title": "Plant apple trees?",
        "choices": ["yes", "no"],
        "voting_type": "single-choice",
        "start": Utc::now().to_rfc3339(),
        "end": (Utc::now() + chrono::Duration::days(7)).to_rfc3339(),
    });
    let proposal = palmctl(
        api,
        &as_admin,
        &[
            "post",
            &format!("/v1/communities/{slug}/proposals"),
            &proposal.to_string(),
        ],
    )
    .await
    .json();
    let proposal_id = proposal["id"].as_str().unwrap().to_owned();

    // A second person signs in, joins and votes.
    let voter_seed = format!("bob-{}", Uuid::new_v4());
    let voter = key(&voter_seed);
    let voter_token = palmctl(api, &[], &["login", "--seed", &voter_seed])
        .await
        .text();
    let as_voter = [
        ("PALMCTL_SEED", voter_seed.as_str()),
        ("PALMCTL_TOKEN", voter_token.as_str()),
    ];
    let joined = palmctl(
        api,
        &as_voter,
        &["post", &format!("/v1/communities/{slug}/join")],
    )
    .await
    .json();
    assert_eq!(joined["role"], "member");

    // A choice the proposal does not have: refused, exit 1, the code on stderr.
    let refused = palmctl(api, &as_voter, &["vote", &proposal_id, "3"]).await;
    assert_eq!(refused.code, 1, "{}", refused.stderr);
    assert!(
        refused.stderr.contains("answered 422"),
        "{}",
        refused.stderr
    );
    assert!(
        refused.stderr.contains(r#""code": "choice_does_not_fit""#),
        "{}",
        refused.stderr
    );

    let accepted = palmctl(api, &as_voter, &["vote", &proposal_id, "1"])
        .await
        .json();
    assert_eq!(accepted["status"], "pending");
    assert_eq!(accepted["choice"], 1);
    let vote_id = accepted["id"].as_str().unwrap().to_owned();
    let mine = palmctl(api, &as_voter, &["get", &format!("/v1/votes/{vote_id}")])
        .await
        .json();
    assert_eq!(mine["proposal_id"], proposal_id.as_str());

    // What the validator receives verifies: the EIP-712 Vote rebuilt from
    // the event (with palmdao's app) recovers the voter's wallet.
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
    let signed = VoteMessage {
        proposal: job.proposal_id.to_string(),
        choice: job.choice.clone(),
        timestamp: u64::try_from(job.timestamp).unwrap(),
        voter: job.address.parse().unwrap(),
        app: job.app.clone(),
    };
    assert_eq!(
        signed
            .recover(&VoteDomain::default(), &job.signature.parse().unwrap())
            .unwrap(),
        voter.address()
    );

    // The typed data for a real wallet is the same document.
    let typed = palmctl(api, &as_voter, &["typed-data", &proposal_id, "1"])
        .await
        .json();
    assert_eq!(typed["primaryType"], "Vote");
    assert_eq!(typed["message"]["app"], job.app.as_str());
    assert_eq!(typed["message"]["voter"], voter.address().to_checksummed());
    assert_eq!(typed["message"]["choice"], "1");

    jobs.stop().await;
    palmdao.env.teardown(&palmvalidator::queues()).await;
    palmdao.stop().await;
}
