//! palmdao's HTTP edge as an outside client meets it, with the real binary:
//! one error contract (every error a problem document, whatever part of the
//! request was wrong), `401` naming its scheme, the bearer scheme matched
//! case-insensitively, joining twice changing nothing, and the rate limiter
//! keyed on the address the trusted proxy appended, not on what the client
//! wrote into `X-Forwarded-For`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use palm_core::eth::AddressText;
use palm_tests::palmdao::{Palmdao, key};
use reqwest::Method;
use serde_json::json;
use uuid::Uuid;

fn is_problem(headers: &reqwest::header::HeaderMap) -> bool {
    headers
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/problem+json"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_malformed_part_of_a_request_gets_a_problem_document() {
    let palmdao = Palmdao::start().await;
    let http = palm_service::http::client();
    let cases = [
        // (method, path, status, code)
        (
            Method::GET,
            "/v1/communities?limit=abc",
            400,
            "invalid_query",
        ),
        (
            Method::GET,
            "/v1/communities?limit=-1",
            400,
            "invalid_query",
        ),
        (
            Method::GET,
            "/v1/communities?limit=99999999999999999999",
            400,
            "invalid_query",
        ),
        (
            Method::GET,
            "/v1/me/audit?limit=%FF",
            401,
            "unauthenticated",
        ),
        (Method::GET, "/v1/communities/%FF%FE", 400, "invalid_path"),
        (Method::GET, "/v1/nowhere", 404, "no_route"),
        (Method::DELETE, "/v1/communities", 405, "method_not_allowed"),
    ];
    for (method, path, status, code) in cases {
        let response = http
            .request(method.clone(), format!("{}{path}", palmdao.base))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), status, "{method} {path}");
        assert!(
            is_problem(response.headers()),
            "{method} {path}: {:?}",
            response.headers()
        );
        let body: serde_json::Value = response.json().await.unwrap();
        assert_eq!(body["code"], code, "{method} {path}: {body}");
        assert_eq!(body["status"], status, "{body}");
    }
    palmdao.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_401_names_the_bearer_scheme_and_the_scheme_is_case_insensitive() {
    let palmdao = Palmdao::start().await;
    let http = palm_service::http::client();
    let reply = palmdao.call(Method::GET, "/v1/me", None, None).await;
    assert_eq!(reply.status, 401);
    let challenge = reply
        .headers
        .get(reqwest::header::WWW_AUTHENTICATE)
        .unwrap();
    assert!(
        challenge.to_str().unwrap().starts_with("Bearer "),
        "{challenge:?}"
    );

    let session = palmdao
        .sign_in(&key(&format!("edge-{}", Uuid::new_v4())))
        .await;
    let token = session["token"].as_str().unwrap();
    for scheme in ["Bearer", "bearer", "BEARER"] {
        let response = http
            .get(format!("{}/v1/me", palmdao.base))
            .header("authorization", format!("{scheme} {token}"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), 200, "scheme {scheme}");
    }
    palmdao.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn joining_again_answers_with_the_membership_as_it_is() {
    let palmdao = Palmdao::start_with(&[("PALM__COMMUNITIES__CREATE_MIN_LEVEL", "1")]).await;
    let (_, admin) = palmdao.new_member("admin").await;
    let slug = format!("edge-{}", &Uuid::new_v4().simple().to_string()[..8]);
    let (status, body) = palmdao
        .send(
            Method::POST,
            "/v1/communities",
            Some(&admin),
            &json!({ "slug": slug, "name": "Edge" }),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let join = format!("/v1/communities/{slug}/join");
    let (_, members) = palmdao
        .get(&format!("/v1/communities/{slug}/members"), None)
        .await;
    let stored = members["items"][0].clone();
    assert_eq!(stored["role"], "admin", "{members}");

    for _ in 0..2 {
        let (status, again) = palmdao
            .send(Method::POST, &join, Some(&admin), &json!({}))
            .await;
        assert_eq!(status, 200, "{again}");
        assert_eq!(again, stored, "the existing membership, unchanged");
    }
    let (_, member) = palmdao.new_member("member").await;
    let (status, first) = palmdao
        .send(Method::POST, &join, Some(&member), &json!({}))
        .await;
    assert_eq!((status, first["role"].as_str()), (201, Some("member")));
    let (status, second) = palmdao
        .send(Method::POST, &join, Some(&member), &json!({}))
        .await;
    assert_eq!((status, &second), (200, &first));
    palmdao.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rate_limit_keys_on_the_address_the_load_balancer_appended() {
    let palmdao = Palmdao::start_with(&[
        ("PALM__HTTP__TRUST_FORWARDED_FOR", "true"),
        // A slow refill, so the bound below does not depend on how fast
        // this machine sends 100 requests.
        ("PALM__HTTP__RATE_LIMIT_PER_SECOND", "1"),
        ("PALM__HTTP__RATE_LIMIT_BURST", "40"),
    ])
    .await;
    let http = palm_service::http::client();
    // One client rotating the left-most entry, which it writes itself; the
    // ALB appends the address it really came from.
    let requests = (0..100).map(|i| {
        let http = http.clone();
        let url = format!("{}/v1/palm-ids/{}", palmdao.base, Uuid::nil());
        async move {
            http.get(url)
                .header("x-forwarded-for", format!("198.51.100.{i}, 203.0.113.7"))
                .send()
                .await
                .unwrap()
        }
    });
    let started = std::time::Instant::now();
    let responses = futures_util::future::join_all(requests).await;
    let elapsed = started.elapsed();
    let limited: Vec<_> = responses.iter().filter(|r| r.status() == 429).collect();
    // 40 of burst plus 1/s while the requests ran; keyed on the left-most
    // entry, none would be limited.
    assert!(elapsed.as_secs() < 20, "{elapsed:?}");
    let allowed_at_most = 40 + elapsed.as_secs() as usize + 1;
    assert!(
        limited.len() >= 100 - allowed_at_most,
        "{} limited in {elapsed:?}",
        limited.len()
    );
    for response in &limited {
        assert!(
            response
                .headers()
                .contains_key(reqwest::header::RETRY_AFTER)
        );
        assert!(is_problem(response.headers()));
    }
    // Another real client (another appended address) is not limited.
    let other = http
        .get(format!("{}/v1/palm-ids/{}", palmdao.base, Uuid::nil()))
        .header("x-forwarded-for", "198.51.100.1, 203.0.113.8")
        .send()
        .await
        .unwrap();
    assert_ne!(other.status(), 429);
    palmdao.stop().await;
}

/// A weighted proposal in a fresh community whose admin is `admin`.
async fn weighted_proposal(palmdao: &Palmdao, admin: &str) -> (String, String) {
    let slug = format!("edge-{}", &Uuid::new_v4().simple().to_string()[..8]);
    let (status, body) = palmdao
        .send(
            Method::POST,
            "/v1/communities",
            Some(admin),
            &json!({ "slug": slug, "name": "Edge" }),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let now = chrono::Utc::now();
    let (status, created) = palmdao
        .send(
            Method::POST,
            &format!("/v1/communities/{slug}/proposals"),
            Some(admin),
            &json!({
                "title": "Weights", "choices": ["a", "b", "c"], "voting_type": "weighted",
                "start": now, "end": now + chrono::Duration::hours(1),
            }),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    (slug, created["id"].as_str().unwrap().to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signed_vote_sent_twice_is_one_vote_and_no_number_causes_a_5xx() {
    let palmdao = Palmdao::start_with(&[("PALM__COMMUNITIES__CREATE_MIN_LEVEL", "1")]).await;
    let (_, admin) = palmdao.new_member("admin").await;
    let (slug, proposal) = weighted_proposal(&palmdao, &admin).await;
    let voter_key = key(&format!("voter-{}", Uuid::new_v4()));
    let voter = palmdao.sign_in(&voter_key).await["token"]
        .as_str()
        .unwrap()
        .to_owned();
    palmdao.join(&slug, &voter).await;
    let votes = format!("/v1/proposals/{proposal}/votes");
    // Not checked at intake (the validator is not running here).
    let signature = format!("0x{}1b", "11".repeat(64));
    let vote = |choice: serde_json::Value| {
        json!({
            "choice": choice,
            "timestamp": chrono::Utc::now().timestamp(),
            "address": voter_key.address().to_checksummed(),
            "signature": signature,
        })
    };

    // A client retrying after a dropped connection: the same signed vote,
    // its choice's keys in another order, its address in another case.
    let first_body = vote(json!({ "2": 1, "3": 3 }));
    let first = palmdao
        .call(Method::POST, &votes, Some(&voter), Some(&first_body))
        .await;
    assert_eq!(first.status, 202, "{}", first.body);
    let mut again_body = first_body.clone();
    again_body["choice"] = json!({ "3": 3, "2": 1 });
    again_body["address"] = json!(voter_key.address().to_lower_hex());
    let again = palmdao
        .call(Method::POST, &votes, Some(&voter), Some(&again_body))
        .await;
    assert_eq!(again.status, 200, "{}", again.body);
    assert_eq!(again.body["id"], first.body["id"], "the first vote's id");
    assert_eq!(again.location(), first.location());
    // Someone else sending a copy of it learns nothing about it.
    let (_, other) = palmdao.new_member("copier").await;
    palmdao.join(&slug, &other).await;
    let copied = palmdao
        .call(Method::POST, &votes, Some(&other), Some(&first_body))
        .await;
    assert_eq!(
        (copied.status, copied.code()),
        (409, "vote_already_submitted")
    );
    assert!(copied.body.get("id").is_none(), "{}", copied.body);
    // A changed vote is a new one.
    let mut changed = first_body.clone();
    changed["choice"] = json!({ "1": 1 });
    let changed = palmdao
        .call(Method::POST, &votes, Some(&voter), Some(&changed))
        .await;
    assert_eq!(changed.status, 202);
    assert_ne!(changed.body["id"], first.body["id"]);

    // Numbers no client can mean are refused at the edge, never a 5xx.
    for choice in [
        json!({ "1": 9_223_372_036_854_775_808_u64 }),
        json!({ "1": u64::MAX }),
        json!({ "1": 9_007_199_254_740_992_u64 }),
        json!({ "1": 1e300 }),
        json!({ "1": -1 }),
    ] {
        let reply = palmdao
            .call(
                Method::POST,
                &votes,
                Some(&voter),
                Some(&vote(choice.clone())),
            )
            .await;
        assert_eq!(
            (reply.status, reply.code()),
            (422, "validation_failed"),
            "{choice}: {}",
            reply.body
        );
    }
    for timestamp in [
        json!(9_223_372_036_854_775_808_u64),
        json!(1.5),
        json!("now"),
    ] {
        let mut body = vote(json!({ "1": 1 }));
        body["timestamp"] = timestamp.clone();
        let reply = palmdao
            .call(Method::POST, &votes, Some(&voter), Some(&body))
            .await;
        assert!(
            (400..500).contains(&reply.status),
            "{timestamp}: {} {}",
            reply.status,
            reply.body
        );
    }
    palmdao.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mutating_request_sent_again_with_its_idempotency_key_runs_once() {
    let palmdao = Palmdao::start_with(&[("PALM__COMMUNITIES__CREATE_MIN_LEVEL", "1")]).await;
    let (_, alice) = palmdao.new_member("alice").await;
    let (_, bob) = palmdao.new_member("bob").await;
    let http = palm_service::http::client();
    let create = |token: &str, key: &str, slug: &str| {
        http.post(format!("{}/v1/communities", palmdao.base))
            .bearer_auth(token)
            .header("idempotency-key", key)
            .json(&json!({ "slug": slug, "name": "Once" }))
            .send()
    };
    let slug = format!("once-{}", &Uuid::new_v4().simple().to_string()[..8]);
    let key = Uuid::new_v4().to_string();

    let first = create(&alice, &key, &slug).await.unwrap();
    assert_eq!(first.status(), 201);
    assert!(first.headers().get("idempotent-replayed").is_none());
    let location = first.headers().get("location").cloned();
    let first: serde_json::Value = first.json().await.unwrap();

    // Without the key, the same request is a conflict (the slug is taken);
    // with it, the first answer comes back and nothing runs again.
    let again = create(&alice, &key, &slug).await.unwrap();
    assert_eq!(again.status(), 201);
    assert_eq!(again.headers()["idempotent-replayed"], "true");
    assert_eq!(again.headers().get("location").cloned(), location);
    assert_eq!(again.json::<serde_json::Value>().await.unwrap(), first);

    // The same key for another request is refused; another client's same
    // key is theirs alone.
    let reused = create(&alice, &key, "another-slug").await.unwrap();
    assert_eq!(reused.status(), 422);
    let reused: serde_json::Value = reused.json().await.unwrap();
    assert_eq!(reused["code"], "idempotency_key_reused");
    let bobs = create(&bob, &key, &slug).await.unwrap();
    assert_eq!(bobs.status(), 409, "bob's request ran: the slug is taken");
    let bobs: serde_json::Value = bobs.json().await.unwrap();
    assert_eq!(bobs["code"], "slug_taken", "{bobs}");

    let bad = create(&alice, "", &slug).await.unwrap();
    assert_eq!(bad.status(), 400);
    palmdao.stop().await;
}
