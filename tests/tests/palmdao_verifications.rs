//! Verification intake and results in palmdao, with the real binary, broker
//! and database; results are published the way a validator would.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use palm_amqp::OutgoingMessage;
use palm_core::Envelope;
use palm_core::eth::AddressText;
use palm_core::events::{VerificationCompleted, VerificationOutcome};
use palm_testkit::eventually;
use palm_tests::palmdao::{FakeValidator, Palmdao, key};
use reqwest::Method;
use serde_json::{Value, json};
use uuid::Uuid;

fn completed(
    verification: &Value,
    palm_id: &str,
    kind: &str,
    outcome: VerificationOutcome,
) -> Envelope<VerificationCompleted> {
    Envelope::new(
        "test-validator",
        VerificationCompleted {
            verification_id: Uuid::parse_str(verification["id"].as_str().unwrap()).unwrap(),
            palm_id: Uuid::parse_str(palm_id).unwrap(),
            kind: kind.to_owned(),
            outcome,
        },
    )
}

fn verified(subject: &str) -> VerificationOutcome {
    VerificationOutcome::Verified {
        subject: subject.to_owned(),
        display_name: None,
    }
}

/// A wallet-link proof: a SIWE message with a fresh nonce, signed (the
/// validator is played by the test, so only the nonce is checked here).
async fn wallet_proof(palmdao: &Palmdao) -> Value {
    let wallet = key(&format!("link-{}", Uuid::new_v4()));
    let message = palmdao.message(&wallet, &palmdao.nonce().await).to_string();
    let signature = wallet
        .sign_personal(message.as_bytes())
        .unwrap()
        .to_string();
    json!({ "kind": "wallet", "message": message, "signature": signature })
}

async fn request_wallet(palmdao: &Palmdao, token: &str) -> Value {
    let body = wallet_proof(palmdao).await;
    let (status, view) = palmdao
        .send(Method::POST, "/v1/me/verifications", Some(token), &body)
        .await;
    assert_eq!(status, 202, "{view}");
    assert_eq!(view["status"], "pending");
    // Its nonce is used up: the same proof cannot be sent again.
    let (status, replay) = palmdao
        .send(Method::POST, "/v1/me/verifications", Some(token), &body)
        .await;
    assert_eq!(
        (status, replay["code"].as_str()),
        (401, Some("siwe_nonce_invalid"))
    );
    view
}

async fn wait_status(palmdao: &Palmdao, token: &str, id: &str, expected: &'static str) -> Value {
    eventually(
        &format!("verification {expected}"),
        Duration::from_secs(20),
        || async {
            let (_, view) = palmdao
                .get(&format!("/v1/me/verifications/{id}"), Some(token))
                .await;
            (view["status"] == expected).then_some(view)
        },
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_result_delivered_twice_changes_the_palm_id_once() {
    let palmdao = Palmdao::start().await;
    let validator = FakeValidator::connect(&palmdao).await;
    let (broker, publisher) = (&validator.broker, &validator.publisher);
    let owner = palmdao
        .sign_in(&key(&format!("owner-{}", Uuid::new_v4())))
        .await;
    let (token, palm_id) = (
        owner["token"].as_str().unwrap(),
        owner["palm_id"].as_str().unwrap(),
    );

    let request = request_wallet(&palmdao, token).await;
    let id = request["id"].as_str().unwrap();
    // Only the owner sees it.
    let stranger = palmdao
        .sign_in(&key(&format!("stranger-{}", Uuid::new_v4())))
        .await;
    let (status, _) = palmdao
        .get(
            &format!("/v1/me/verifications/{id}"),
            stranger["token"].as_str(),
        )
        .await;
    assert_eq!(status, 404);

    let second_wallet = key(&format!("second-{}", Uuid::new_v4()))
        .address()
        .to_checksummed();
    let result = completed(&request, palm_id, "wallet", verified(&second_wallet));
    let message = OutgoingMessage::event(broker.names(), &result);
    publisher.publish(&message).await.unwrap();
    publisher.publish(&message).await.unwrap();
    let view = wait_status(&palmdao, token, id, "verified").await;
    assert_eq!(view["subject"], second_wallet.to_ascii_lowercase());

    // A Discord result, also delivered twice, raises the level once.
    let discord = palmdao
        .send(
            Method::POST,
            "/v1/me/verifications",
            Some(token),
            &json!({ "kind": "discord", "code": "abc", "redirect_uri": "https://palm.test/cb" }),
        )
        .await
        .1;
    let result = completed(&discord, palm_id, "discord", verified("80351110224678912"));
    let message = OutgoingMessage::event(broker.names(), &result);
    publisher.publish(&message).await.unwrap();
    publisher.publish(&message).await.unwrap();
    wait_status(&palmdao, token, discord["id"].as_str().unwrap(), "verified").await;
    // Let the duplicate be consumed too before looking.
    tokio::time::sleep(Duration::from_millis(500)).await;

    let (_, me) = palmdao.get("/v1/me", Some(token)).await;
    assert_eq!(me["level"], 2, "{me}");
    assert_eq!(me["wallets"].as_array().unwrap().len(), 2, "{me}");
    assert_eq!(
        me["verifiers"].as_array().unwrap().len(),
        3,
        "each verifier added once: {me}"
    );
    validator.close().await;
    palmdao.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_palm_ids_racing_for_one_wallet_exactly_one_wins() {
    let palmdao = Palmdao::start().await;
    let validator = FakeValidator::connect(&palmdao).await;
    let (broker, publisher) = (&validator.broker, &validator.publisher);
    let contested = key(&format!("contested-{}", Uuid::new_v4()))
        .address()
        .to_checksummed();
    let mut contenders = Vec::new();
    for name in ["a", "b"] {
        let session = palmdao
            .sign_in(&key(&format!("{name}-{}", Uuid::new_v4())))
            .await;
        let token = session["token"].as_str().unwrap().to_owned();
        let request = request_wallet(&palmdao, &token).await;
        let palm_id = session["palm_id"].as_str().unwrap().to_owned();
        contenders.push((token, request, palm_id));
    }
    let messages: Vec<OutgoingMessage> = contenders
        .iter()
        .map(|(_, request, palm_id)| {
            OutgoingMessage::event(
                broker.names(),
                &completed(request, palm_id, "wallet", verified(&contested)),
            )
        })
        .collect();
    let published =
        futures_util::future::join_all(messages.iter().map(|m| publisher.publish(m))).await;
    assert!(published.iter().all(Result::is_ok));

    let mut outcomes = Vec::new();
    for (token, request, _) in &contenders {
        let id = request["id"].as_str().unwrap();
        let view = eventually("the result applied", Duration::from_secs(20), || async {
            let (_, view) = palmdao
                .get(&format!("/v1/me/verifications/{id}"), Some(token))
                .await;
            (view["status"] != "pending").then_some(view)
        })
        .await;
        outcomes.push(view);
    }
    let winners = outcomes
        .iter()
        .filter(|v| v["status"] == "verified")
        .count();
    assert_eq!(winners, 1, "{outcomes:?}");
    let loser = outcomes.iter().find(|v| v["status"] == "rejected").unwrap();
    assert_eq!(loser["reason"], "identity_in_use");
    validator.close().await;
    palmdao.stop().await;
}

#[tokio::test]
async fn malformed_verification_requests_are_refused() {
    let palmdao = Palmdao::start().await;
    let session = palmdao
        .sign_in(&key(&format!("m-{}", Uuid::new_v4())))
        .await;
    let token = session["token"].as_str().unwrap();
    for (body, status, code) in [
        (
            json!({ "kind": "email", "address": "a@b.c" }),
            422,
            "invalid_body",
        ),
        (
            json!({ "kind": "wallet", "message": "m", "signature": "0x12" }),
            422,
            "validation_failed",
        ),
        (
            // A well-formed signature (low s, v 27) over a text that is
            // not an EIP-4361 message.
            json!({ "kind": "wallet", "message": "not a sign-in message", "signature": format!("0x{}1b", "11".repeat(64)) }),
            400,
            "siwe_malformed",
        ),
        (
            json!({ "kind": "discord", "code": "c", "redirect_uri": "ftp://x" }),
            422,
            "validation_failed",
        ),
    ] {
        let (got, problem) = palmdao
            .send(Method::POST, "/v1/me/verifications", Some(token), &body)
            .await;
        assert_eq!(
            (got, problem["code"].as_str()),
            (status, Some(code)),
            "{body}"
        );
    }
    let (status, _) = palmdao
        .send(
            Method::POST,
            "/v1/me/verifications",
            None,
            &json!({ "kind": "discord", "code": "c", "redirect_uri": "https://x" }),
        )
        .await;
    assert_eq!(status, 401);
    palmdao.stop().await;
}
