//! Communities in palmdao with the real binary, broker and database: level
//! gates, admin on create, membership, pagination.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use palm_tests::palmdao::{FakeValidator, Palmdao, key};
use reqwest::Method;
use serde_json::{Value, json};
use uuid::Uuid;

async fn member(palmdao: &Palmdao, name: &str) -> (String, String) {
    let session = palmdao
        .sign_in(&key(&format!("{name}-{}", Uuid::new_v4())))
        .await;
    (
        session["token"].as_str().unwrap().to_owned(),
        session["palm_id"].as_str().unwrap().to_owned(),
    )
}

fn code(body: &Value) -> &str {
    body["code"].as_str().unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn creating_needs_level_three_and_makes_the_creator_admin() {
    let palmdao = Palmdao::start().await;
    let validator = FakeValidator::connect(&palmdao).await;
    let (token, palm_id) = member(&palmdao, "founder").await;
    let slug = format!("dao-{}", &Uuid::new_v4().simple().to_string()[..8]);
    let body = json!({ "slug": slug, "name": "A DAO", "description": "d" });

    let (status, problem) = palmdao
        .send(Method::POST, "/v1/communities", Some(&token), &body)
        .await;
    assert_eq!(
        (status, code(&problem)),
        (403, "level_too_low"),
        "{problem}"
    );
    validator
        .verify(
            &palmdao,
            &token,
            &palm_id,
            "discord",
            &format!("d{}", Uuid::new_v4().simple()),
        )
        .await;
    let (status, _) = palmdao
        .send(Method::POST, "/v1/communities", Some(&token), &body)
        .await;
    assert_eq!(status, 403, "level 2 is not enough");
    validator
        .verify(
            &palmdao,
            &token,
            &palm_id,
            "email",
            &format!("{}@palm.test", Uuid::new_v4().simple()),
        )
        .await;

    let (status, created) = palmdao
        .send(Method::POST, "/v1/communities", Some(&token), &body)
        .await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["admins"], json!([palm_id]));
    let (status, again) = palmdao
        .send(Method::POST, "/v1/communities", Some(&token), &body)
        .await;
    assert_eq!((status, code(&again)), (409, "slug_taken"));
    let (status, bad) = palmdao
        .send(
            Method::POST,
            "/v1/communities",
            Some(&token),
            &json!({ "slug": "No Spaces", "name": "x" }),
        )
        .await;
    assert_eq!((status, code(&bad)), (422, "validation_failed"));

    // Join, join again, list members, leave; the admin cannot leave.
    let (joiner, joiner_id) = member(&palmdao, "joiner").await;
    let join = format!("/v1/communities/{slug}/join");
    assert_eq!(
        palmdao
            .send(Method::POST, &join, Some(&joiner), &json!({}))
            .await
            .0,
        201
    );
    assert_eq!(
        palmdao
            .send(Method::POST, &join, Some(&joiner), &json!({}))
            .await
            .0,
        200
    );
    let (_, members) = palmdao
        .get(&format!("/v1/communities/{slug}/members"), None)
        .await;
    let mut roles: Vec<(String, String)> = members["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["palm_id"].as_str().unwrap().to_owned(),
                m["role"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    roles.sort();
    let mut expected = vec![
        (palm_id.clone(), "admin".to_owned()),
        (joiner_id, "member".to_owned()),
    ];
    expected.sort();
    assert_eq!(roles, expected);
    let leave = format!("/v1/communities/{slug}/leave");
    assert_eq!(
        palmdao
            .send(Method::POST, &leave, Some(&joiner), &json!({}))
            .await
            .0,
        204
    );
    let (status, problem) = palmdao
        .send(Method::POST, &leave, Some(&joiner), &json!({}))
        .await;
    assert_eq!((status, code(&problem)), (404, "not_a_member"));
    let (status, problem) = palmdao
        .send(Method::POST, &leave, Some(&token), &json!({}))
        .await;
    assert_eq!((status, code(&problem)), (409, "admin_cannot_leave"));
    let (status, problem) = palmdao
        .send(
            Method::POST,
            "/v1/communities/nope-nope/join",
            Some(&joiner),
            &json!({}),
        )
        .await;
    assert_eq!((status, code(&problem)), (404, "not_found"));
    validator.close().await;
    palmdao.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn communities_list_in_bounded_pages() {
    let palmdao = Palmdao::start().await;
    let validator = FakeValidator::connect(&palmdao).await;
    let (token, palm_id) = member(&palmdao, "lister").await;
    validator
        .raise_to_level_three(&palmdao, &token, &palm_id)
        .await;
    for slug in ["alpha", "beta", "gamma"] {
        let (status, body) = palmdao
            .send(
                Method::POST,
                "/v1/communities",
                Some(&token),
                &json!({ "slug": slug, "name": slug }),
            )
            .await;
        assert_eq!(status, 201, "{body}");
    }
    let (_, first) = palmdao.get("/v1/communities?limit=2", None).await;
    let slugs = |page: &Value| -> Vec<String> {
        page["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["slug"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(slugs(&first), vec!["alpha", "beta"]);
    let cursor = first["next_cursor"].as_str().unwrap();
    let (_, second) = palmdao
        .get(&format!("/v1/communities?limit=2&cursor={cursor}"), None)
        .await;
    assert_eq!(slugs(&second), vec!["gamma"]);
    assert!(second.get("next_cursor").is_none());
    let (status, problem) = palmdao.get("/v1/communities?limit=1000", None).await;
    assert_eq!((status, code(&problem)), (422, "validation_failed"));
    validator.close().await;
    palmdao.stop().await;
}

/// Leaving deletes the membership document; a `member.joined` still waiting
/// in it must be published all the same (it moves to the community's
/// outbox, ahead of `member.left`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leaving_right_after_joining_loses_no_event() {
    // A slow relay, so the join is certainly still unpublished at the leave.
    let palmdao = Palmdao::start_with(&[
        ("PALM__COMMUNITIES__CREATE_MIN_LEVEL", "1"),
        ("PALM__OUTBOX__POLL_INTERVAL_MS", "3000"),
    ])
    .await;
    let spec = palm_amqp::QueueSpec::new("test.members", &["member.joined", "member.left"]);
    let tap = palm_tests::tap::EventTap::start(&palmdao.env, spec).await;
    let (admin, _) = member(&palmdao, "admin").await;
    let slug = format!("l-{}", &Uuid::new_v4().simple().to_string()[..8]);
    let (status, _) = palmdao
        .send(
            Method::POST,
            "/v1/communities",
            Some(&admin),
            &json!({ "slug": slug, "name": "L" }),
        )
        .await;
    assert_eq!(status, 201);
    let (token, palm_id) = member(&palmdao, "passer-by").await;
    palmdao.join(&slug, &token).await;
    let (status, body) = palmdao
        .send(
            Method::POST,
            &format!("/v1/communities/{slug}/leave"),
            Some(&token),
            &json!({}),
        )
        .await;
    assert_eq!(status, 204, "{body}");

    let palm_id = Uuid::parse_str(&palm_id).unwrap();
    palm_testkit::eventually(
        "member.joined and member.left",
        std::time::Duration::from_secs(20),
        || async {
            let joined = tap.events::<palm_core::events::MemberJoined>();
            let left = tap.events::<palm_core::events::MemberLeft>();
            (joined.iter().any(|e| e.payload.palm_id == palm_id)
                && left.iter().any(|e| e.payload.palm_id == palm_id))
            .then_some(())
        },
    )
    .await;
    palmdao.stop().await;
}
