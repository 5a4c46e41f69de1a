//! palmdao's front door against the real binary, broker and database:
//! Sign-In with Ethereum, sessions, PalmIDs, and the API's error shape.
#![allow(clippy::unwrap_used, clippy::expect_used)]

/// A change to a sign-in message, and the refusal code it must produce.
type Case = (Box<dyn Fn(&mut SiweMessage)>, &'static str);

use chrono::Utc;
use palm_core::eth::AddressText;
use palm_core::siwe::SiweMessage;
use palm_tests::palmdao::{Palmdao, key};
use serde_json::{Value, json};

#[tokio::test]
async fn first_sign_in_creates_a_palm_id_and_later_ones_reuse_it() {
    let palmdao = Palmdao::start().await;
    let alice = key(&format!("alice-{}", uuid::Uuid::new_v4()));
    let first = palmdao.sign_in(&alice).await;
    assert_eq!(first["created"], true);
    assert_eq!(first["token_type"], "Bearer");
    let again = palmdao.sign_in(&alice).await;
    assert_eq!(again["created"], false);
    assert_eq!(again["palm_id"], first["palm_id"]);

    let token = again["token"].as_str().unwrap();
    let (status, me) = palmdao.get("/v1/me", Some(token)).await;
    assert_eq!(status, 200, "{me}");
    assert_eq!(me["id"], first["palm_id"]);
    assert_eq!(me["level"], 1);
    assert_eq!(me["wallets"], json!([alice.address().to_lower_hex()]));

    // The public view shows the level and verifier kinds, not the wallet.
    let id = first["palm_id"].as_str().unwrap();
    let (status, public) = palmdao.get(&format!("/v1/palm-ids/{id}"), None).await;
    assert_eq!(status, 200);
    assert_eq!(public["verifier_kinds"], json!(["wallet"]));
    assert!(
        !public
            .to_string()
            .contains(&alice.address().to_lower_hex()[2..]),
        "{public}"
    );
    palmdao.stop().await;
}

#[tokio::test]
async fn sign_in_refusals_have_distinct_codes() {
    let palmdao = Palmdao::start().await;
    let alice = key("alice-refusals");
    let mallory = key("mallory");

    let code = |body: &Value| body["code"].as_str().unwrap_or_default().to_owned();

    // A replayed nonce.
    let nonce = palmdao.nonce().await;
    let message = palmdao.message(&alice, &nonce);
    assert_eq!(palmdao.sign_in_with(&message, &alice).await.0, 200);
    let (status, body) = palmdao.sign_in_with(&message, &alice).await;
    assert_eq!(
        (status, code(&body)),
        (401, "siwe_nonce_invalid".to_owned())
    );
    // A nonce the server never issued.
    let (status, body) = palmdao
        .sign_in_with(&palmdao.message(&alice, "neverissued1"), &alice)
        .await;
    assert_eq!(
        (status, code(&body)),
        (401, "siwe_nonce_invalid".to_owned())
    );

    let cases: Vec<Case> = vec![
        (
            Box::new(|m| m.expiration_time = Some(Utc::now() - chrono::Duration::minutes(5))),
            "siwe_expired",
        ),
        (
            Box::new(|m| m.domain = "evil.test".into()),
            "siwe_wrong_domain",
        ),
        (Box::new(|m| m.chain_id = 5), "siwe_chain_not_allowed"),
        (
            Box::new(|m| m.uri = "https://evil.test/login".into()),
            "siwe_wrong_uri",
        ),
    ];
    for (change, expected) in cases {
        let mut message = palmdao.message(&alice, &palmdao.nonce().await);
        change(&mut message);
        let (status, body) = palmdao.sign_in_with(&message, &alice).await;
        assert_eq!((status, code(&body)), (401, expected.to_owned()), "{body}");
    }

    // Tampered after signing, and signed by someone else.
    let message = palmdao.message(&alice, &palmdao.nonce().await);
    let text = message.to_string();
    let signature = alice.sign_personal(text.as_bytes()).unwrap().to_string();
    let tampered = text.replace("Sign in to Palm", "Sign in to Palm and more");
    let (status, body) = palmdao
        .send(
            reqwest::Method::POST,
            "/v1/auth/siwe",
            None,
            &json!({ "message": tampered, "signature": signature }),
        )
        .await;
    assert_eq!(
        (status, code(&body)),
        (401, "siwe_signer_mismatch".to_owned())
    );
    let (status, body) = palmdao
        .sign_in_with(&palmdao.message(&alice, &palmdao.nonce().await), &mallory)
        .await;
    assert_eq!(
        (status, code(&body)),
        (401, "siwe_signer_mismatch".to_owned())
    );
    palmdao.stop().await;
}

#[tokio::test]
async fn concurrent_first_sign_ins_of_one_wallet_create_one_palm_id() {
    let palmdao = Palmdao::start().await;
    let wallet = key(&format!("race-{}", uuid::Uuid::new_v4()));
    let mut nonces = Vec::new();
    for _ in 0..6 {
        nonces.push(palmdao.nonce().await);
    }
    let messages: Vec<SiweMessage> = nonces
        .iter()
        .map(|nonce| palmdao.message(&wallet, nonce))
        .collect();
    let attempts = futures_util::future::join_all(
        messages
            .iter()
            .map(|message| palmdao.sign_in_with(message, &wallet)),
    )
    .await;
    let ids: std::collections::BTreeSet<String> = attempts
        .iter()
        .map(|(status, body)| {
            assert_eq!(*status, 200, "{body}");
            body["palm_id"].as_str().unwrap().to_owned()
        })
        .collect();
    assert_eq!(ids.len(), 1, "one wallet, one PalmID: {ids:?}");
    assert_eq!(
        attempts
            .iter()
            .filter(|(_, body)| body["created"] == true)
            .count(),
        1
    );
    palmdao.stop().await;
}

#[tokio::test]
async fn bad_requests_get_problem_responses() {
    let palmdao = Palmdao::start().await;
    let (status, kind, body) = palmdao
        .raw_post("/v1/auth/siwe", "application/json", b"{nope".to_vec())
        .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (400, Some("malformed_json"))
    );
    assert_eq!(kind, "application/problem+json");
    let (status, _, body) = palmdao
        .raw_post(
            "/v1/auth/siwe",
            "application/json",
            br#"{"message": 1}"#.to_vec(),
        )
        .await;
    assert_eq!((status, body["code"].as_str()), (422, Some("invalid_body")));
    let (status, _, body) = palmdao
        .raw_post("/v1/auth/siwe", "text/plain", b"hi".to_vec())
        .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (415, Some("unsupported_media_type"))
    );
    // The server answers 413 without reading the rest and closes the
    // connection, so this request gets a client (connection) of its own.
    let huge =
        serde_json::to_vec(&json!({ "message": "x".repeat(200_000), "signature": "0x" })).unwrap();
    let response = palm_service::http::client()
        .post(format!("{}/v1/auth/siwe", palmdao.base))
        .header("content-type", "application/json")
        .body(huge)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 413);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["code"].as_str(), Some("body_too_large"));
    let (status, body) = palmdao.get("/v1/me", None).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (401, Some("unauthenticated"))
    );
    let (status, body) = palmdao.get("/v1/me", Some("v1.forged.token")).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (401, Some("unauthenticated"))
    );
    let (status, body) = palmdao.get("/v1/nowhere", None).await;
    assert_eq!((status, body["code"].as_str()), (404, Some("no_route")));
    let (status, body) = palmdao
        .get(&format!("/v1/palm-ids/{}", uuid::Uuid::now_v7()), None)
        .await;
    assert_eq!((status, body["code"].as_str()), (404, Some("not_found")));

    // Handles: validated, and unique.
    let first = palmdao
        .sign_in(&key(&format!("h1-{}", uuid::Uuid::new_v4())))
        .await;
    let second = palmdao
        .sign_in(&key(&format!("h2-{}", uuid::Uuid::new_v4())))
        .await;
    let (t1, t2) = (
        first["token"].as_str().unwrap(),
        second["token"].as_str().unwrap(),
    );
    let handle = format!("h{}", &uuid::Uuid::new_v4().simple().to_string()[..10]);
    let (status, body) = palmdao
        .send(
            reqwest::Method::PATCH,
            "/v1/me",
            Some(t1),
            &json!({ "handle": "No Spaces!" }),
        )
        .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (422, Some("validation_failed"))
    );
    let (status, body) = palmdao
        .send(
            reqwest::Method::PATCH,
            "/v1/me",
            Some(t1),
            &json!({ "handle": handle }),
        )
        .await;
    assert_eq!(
        (status, body["handle"].as_str()),
        (200, Some(handle.as_str()))
    );
    let (status, body) = palmdao
        .send(
            reqwest::Method::PATCH,
            "/v1/me",
            Some(t2),
            &json!({ "handle": handle }),
        )
        .await;
    assert_eq!((status, body["code"].as_str()), (409, Some("handle_taken")));
    palmdao.stop().await;
}

#[tokio::test]
async fn a_client_over_its_rate_gets_429_with_retry_after() {
    let palmdao = Palmdao::start_with(&[
        ("PALM__HTTP__RATE_LIMIT_PER_SECOND", "1"),
        ("PALM__HTTP__RATE_LIMIT_BURST", "3"),
    ])
    .await;
    let client = palm_service::http::client();
    let mut statuses = Vec::new();
    let mut retry_after = None;
    for _ in 0..5 {
        let response = client
            .get(format!("{}/v1/communities", palmdao.base))
            .send()
            .await
            .unwrap();
        statuses.push(response.status().as_u16());
        if response.status().as_u16() == 429 {
            retry_after = response
                .headers()
                .get("retry-after")
                .map(|v| v.to_str().unwrap().to_owned());
            let body: Value = response.json().await.unwrap();
            assert_eq!(body["code"], "rate_limited");
        }
    }
    assert_eq!(&statuses[..3], &[200, 200, 200], "{statuses:?}");
    assert!(statuses[3..].contains(&429), "{statuses:?}");
    assert_eq!(retry_after.as_deref(), Some("1"));
    palmdao.stop().await;
}
