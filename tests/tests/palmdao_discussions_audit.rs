//! Discussions and the audit log in palmdao with the real binary, broker and
//! database. palmdao runs with `communities.create_min_level = 1`, so a
//! wallet-only PalmID may create a community (the level gate itself is
//! tested at its default in `palmdao_communities`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use chrono::{Duration as Span, Utc};
use palm_testkit::eventually;
use palm_tests::palmdao::{FakeValidator, Palmdao, Reply, key};
use reqwest::Method;
use serde_json::{Value, json};
use uuid::Uuid;

struct User {
    token: String,
    palm_id: String,
}

async fn user(palmdao: &Palmdao, name: &str) -> User {
    let body = palmdao
        .sign_in(&key(&format!("{name}-{}", Uuid::new_v4())))
        .await;
    User {
        token: body["token"].as_str().unwrap().to_owned(),
        palm_id: body["palm_id"].as_str().unwrap().to_owned(),
    }
}

async fn post(palmdao: &Palmdao, path: &str, who: Option<&User>, body: Value) -> Reply {
    palmdao
        .call(
            Method::POST,
            path,
            who.map(|u| u.token.as_str()),
            Some(&body),
        )
        .await
}

/// Creates a community administered by `admin` and returns its slug.
async fn community(palmdao: &Palmdao, admin: &User) -> String {
    let slug = format!("d-{}", &Uuid::new_v4().simple().to_string()[..8]);
    let reply = post(
        palmdao,
        "/v1/communities",
        Some(admin),
        json!({ "slug": slug, "name": "Discussions" }),
    )
    .await;
    assert_eq!(reply.status, 201, "{}", reply.body);
    slug
}

fn types(page: &Value) -> Vec<String> {
    page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["type"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_start_discussions_anyone_reads_them_and_proposals_cite_them() {
    let palmdao = Palmdao::start_with(&[("PALM__COMMUNITIES__CREATE_MIN_LEVEL", "1")]).await;
    let admin = user(&palmdao, "admin").await;
    let member = user(&palmdao, "member").await;
    let outsider = user(&palmdao, "outsider").await;
    let slug = community(&palmdao, &admin).await;
    let join = post(
        &palmdao,
        &format!("/v1/communities/{slug}/join"),
        Some(&member),
        json!({}),
    )
    .await;
    assert_eq!(join.status, 201, "{}", join.body);
    let path = format!("/v1/communities/{slug}/discussions");

    // Authentication, membership and validation failures.
    let anonymous = post(&palmdao, &path, None, json!({ "title": "t" })).await;
    assert_eq!(
        (anonymous.status, anonymous.code()),
        (401, "unauthenticated")
    );
    let not_member = post(&palmdao, &path, Some(&outsider), json!({ "title": "t" })).await;
    assert_eq!(
        (not_member.status, not_member.code()),
        (403, "not_a_member")
    );
    let empty = post(&palmdao, &path, Some(&member), json!({ "title": "  " })).await;
    assert_eq!((empty.status, empty.code()), (422, "validation_failed"));
    let unknown_field = post(
        &palmdao,
        &path,
        Some(&member),
        json!({ "title": "t", "x": 1 }),
    )
    .await;
    assert_eq!(unknown_field.status, 422, "{}", unknown_field.body);
    let nowhere = post(
        &palmdao,
        "/v1/communities/no-such-community/discussions",
        Some(&member),
        json!({ "title": "t" }),
    )
    .await;
    assert_eq!((nowhere.status, nowhere.code()), (404, "not_found"));

    // Members (admins included) start threads; each create says where it is.
    let mut ids = Vec::new();
    for (who, title) in [(&member, "First"), (&admin, "Second"), (&member, "Third")] {
        let created = post(
            &palmdao,
            &path,
            Some(who),
            json!({ "title": title, "body": format!("{title} body") }),
        )
        .await;
        assert_eq!(created.status, 201, "{}", created.body);
        let id = created.body["id"].as_str().unwrap().to_owned();
        assert_eq!(
            created.location(),
            Some(format!("/v1/discussions/{id}").as_str())
        );
        assert_eq!(created.body["author"], who.palm_id.as_str());
        ids.push(id);
    }

    // Anyone reads them, newest first, a bounded page at a time.
    let (status, first) = palmdao.get(&format!("{path}?limit=2"), None).await;
    assert_eq!(status, 200, "{first}");
    let titles: Vec<&str> = first["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["title"].as_str().unwrap())
        .collect();
    assert_eq!(titles, ["Third", "Second"]);
    let cursor = first["next_cursor"].as_str().unwrap();
    let (_, second) = palmdao
        .get(&format!("{path}?limit=2&cursor={cursor}"), None)
        .await;
    assert_eq!(second["items"][0]["title"], "First");
    assert!(second.get("next_cursor").is_none());
    let (status, _) = palmdao.get(&format!("{path}?limit=500"), None).await;
    assert_eq!(status, 422);
    let (status, one) = palmdao
        .get(&format!("/v1/discussions/{}", ids[0]), None)
        .await;
    assert_eq!((status, one["body"].as_str()), (200, Some("First body")));
    let (status, _) = palmdao
        .get(&format!("/v1/discussions/{}", Uuid::now_v7()), None)
        .await;
    assert_eq!(status, 404);

    // A proposal may come from one of this community's discussions only.
    let proposal = |discussion: String| {
        json!({
            "title": "From a discussion",
            "choices": ["yes", "no"],
            "voting_type": "single-choice",
            "start": Utc::now(),
            "end": Utc::now() + Span::hours(1),
            "discussion_id": discussion,
        })
    };
    let proposals = format!("/v1/communities/{slug}/proposals");
    let cited = post(&palmdao, &proposals, Some(&admin), proposal(ids[0].clone())).await;
    assert_eq!(cited.status, 201, "{}", cited.body);
    let other_slug = community(&palmdao, &outsider).await;
    let foreign = post(
        &palmdao,
        &format!("/v1/communities/{other_slug}/discussions"),
        Some(&outsider),
        json!({ "title": "elsewhere" }),
    )
    .await;
    let foreign_id = foreign.body["id"].as_str().unwrap().to_owned();
    for bad in [foreign_id, Uuid::now_v7().to_string()] {
        let refused = post(&palmdao, &proposals, Some(&admin), proposal(bad)).await;
        assert_eq!(
            (refused.status, refused.code()),
            (422, "discussion_not_in_community")
        );
    }
    palmdao.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_event_is_audited_and_read_by_its_owner_or_the_community_admin_only() {
    let palmdao = Palmdao::start_with(&[("PALM__COMMUNITIES__CREATE_MIN_LEVEL", "1")]).await;
    let validator = FakeValidator::connect(&palmdao).await;
    let admin = user(&palmdao, "admin").await;
    let member = user(&palmdao, "member").await;
    let slug = community(&palmdao, &admin).await;
    let join = post(
        &palmdao,
        &format!("/v1/communities/{slug}/join"),
        Some(&member),
        json!({}),
    )
    .await;
    assert_eq!(join.status, 201);
    let discussion = post(
        &palmdao,
        &format!("/v1/communities/{slug}/discussions"),
        Some(&member),
        json!({ "title": "Audited" }),
    )
    .await;
    assert_eq!(discussion.status, 201);
    let proposal = post(
        &palmdao,
        &format!("/v1/communities/{slug}/proposals"),
        Some(&admin),
        json!({
            "title": "Audited",
            "choices": ["yes", "no"],
            "voting_type": "single-choice",
            "start": Utc::now(),
            "end": Utc::now() + Span::hours(1),
        }),
    )
    .await;
    assert_eq!(proposal.status, 201);
    // A Discord verification carries an OAuth code: audited, but redacted.
    validator
        .verify(
            &palmdao,
            &member.token,
            &member.palm_id,
            "discord",
            "d-audited",
        )
        .await;

    // The member's own log: their events, newest first, nobody else's.
    let mine = |who: &User, query: &str| {
        let path = format!("/v1/me/audit{query}");
        let token = who.token.clone();
        let palmdao = &palmdao;
        async move {
            let (status, page) = palmdao.get(&path, Some(&token)).await;
            assert_eq!(status, 200, "{page}");
            page
        }
    };
    let expected_member = [
        "palm_id.verifier_added",
        "verification.requested.discord",
        "discussion.created",
        "member.joined",
        "palm_id.created",
    ];
    let page = eventually(
        "the member's events audited",
        Duration::from_secs(20),
        || async {
            let page = mine(&member, "").await;
            (types(&page) == expected_member).then_some(page)
        },
    )
    .await;
    let requested = &page["items"][1];
    assert_eq!(requested["payload"]["code"], "[redacted]");
    assert_eq!(requested["payload"]["redirect_uri"], "https://palm.test/cb");
    assert!(requested["occurred_at"].as_str().is_some());
    let filtered = mine(&member, "?type=member.joined").await;
    assert_eq!(types(&filtered), ["member.joined"]);
    let paged = mine(&member, "?limit=2").await;
    assert_eq!(types(&paged).len(), 2);
    let rest = mine(
        &member,
        &format!(
            "?limit=10&cursor={}",
            paged["next_cursor"].as_str().unwrap()
        ),
    )
    .await;
    assert_eq!(types(&rest), expected_member[2..]);

    // The community's log: its admin reads it; a member may not.
    let community_path = format!("/v1/communities/{slug}/audit");
    let expected_community = [
        "proposal.opened",
        "proposal.created",
        "discussion.created",
        "member.joined",
        "member.joined",
        "community.created",
    ];
    eventually(
        "the community's events audited",
        Duration::from_secs(20),
        || async {
            let (status, page) = palmdao.get(&community_path, Some(&admin.token)).await;
            assert_eq!(status, 200, "{page}");
            (types(&page) == expected_community).then_some(())
        },
    )
    .await;
    let (status, refused) = palmdao.get(&community_path, Some(&member.token)).await;
    assert_eq!((status, refused["code"].as_str()), (403, Some("not_admin")));
    let (status, _) = palmdao.get(&community_path, None).await;
    assert_eq!(status, 401);
    let (status, _) = palmdao.get("/v1/me/audit", None).await;
    assert_eq!(status, 401);

    validator.close().await;
    palmdao.stop().await;
}
