//! Secrets stay out of logs, and logs an operator can read (issue 14).
//!
//! palmdao and palmvalidator run the flows with known secret values: a
//! sign-in (the session token it issues, the session key), a Discord
//! verification whose OAuth `code` is known while no queue is bound for
//! `verification.requested.discord` (where lapin once dumped the whole
//! returned message, code included, at WARN), community joins whose events
//! have no subscriber. Every line both processes printed is then scanned:
//! no secret appears, no returned-message dump, no WARN for an event
//! without a subscriber, and Palm's own lines are short lowercase messages.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use palm_testkit::eventually;
use palm_testkit::process::{ServiceProcess, binary};
use palm_tests::palmdao::Palmdao;
use palm_tests::prom::Scrape;
use reqwest::Method;
use serde_json::{Value, json};
use uuid::Uuid;

const SESSION_KEY: &str = "session-key-SECRET-7f3a9c21-d4e8-4b6a-9c0f-1e2d3c4b5a69";

fn check_lines(service: &str, lines: &[String], secrets: &[(&str, &str)]) {
    assert!(!lines.is_empty(), "{service} printed nothing");
    for line in lines {
        for (what, secret) in secrets {
            assert!(
                !line.contains(secret),
                "{service} logged the {what}: {line}"
            );
        }
        assert!(
            !line.contains("returned us a message"),
            "{service} logged a returned message: {line}"
        );
        let Ok(json) = serde_json::from_str::<Value>(line) else {
            continue;
        };
        let target = json["target"].as_str().unwrap_or_default();
        let level = json["level"].as_str().unwrap_or_default();
        let message = json["fields"]["message"].as_str().unwrap_or_default();
        if level == "WARN" || level == "ERROR" {
            assert!(
                !message.contains("no subscriber"),
                "{service}: an event without a subscriber is not a warning: {line}"
            );
        }
        if target.starts_with("palm") {
            assert!(
                !message.starts_with(|c: char| c.is_uppercase()),
                "{service}: not a lowercase message: {line}"
            );
            assert!(
                message.len() <= 100,
                "{service}: a long message (details go in fields): {line}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_credential_reaches_a_log_line_and_lines_are_short_and_structured() {
    let code = format!("oauth-code-SECRET-{}", Uuid::new_v4().simple());
    let palmdao = Palmdao::start_with(&[
        ("PALM__AUTH__SESSION_KEY", SESSION_KEY),
        ("PALM__COMMUNITIES__CREATE_MIN_LEVEL", "1"),
    ])
    .await;
    let mut validator = ServiceProcess::spawn(
        binary("palmvalidator"),
        &palmdao
            .env
            .vars(&[("PALM__AUTH__SESSION_KEY", SESSION_KEY)]),
    );
    validator.admin_addr(Duration::from_secs(20)).await;

    // A session, a community, joins (events nobody subscribes to).
    let (_, token) = palmdao.new_member("secret").await;
    let slug = format!("s-{}", &Uuid::new_v4().simple().to_string()[..8]);
    let (status, body) = palmdao
        .send(
            Method::POST,
            "/v1/communities",
            Some(&token),
            &json!({ "slug": slug, "name": "Secrets" }),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let (_, member) = palmdao.new_member("member").await;
    palmdao.join(&slug, &member).await;

    // A Discord verification while no queue takes it: the code waits in
    // the outbox, unlogged.
    let (status, body) = palmdao
        .send(
            Method::POST,
            "/v1/me/verifications",
            Some(&token),
            &json!({ "kind": "discord", "code": code, "redirect_uri": "https://palm.test/cb" }),
        )
        .await;
    assert_eq!(status, 202, "{body}");
    eventually(
        "the discord request waiting for a queue",
        Duration::from_secs(20),
        || async {
            let waiting = Scrape::of(&palmdao.admin).await.value(
                "palm_outbox_waiting_for_route",
                &[("routing_key", "verification.requested.discord")],
            );
            (waiting >= Some(1.0)).then_some(())
        },
    )
    .await;
    // Unknown routes and a bad token too: errors are logged without them.
    let (status, _) = palmdao.get("/v1/me", Some(&format!("{token}x"))).await;
    assert_eq!(status, 401);
    tokio::time::sleep(Duration::from_secs(2)).await;

    validator.sigterm();
    assert_eq!(validator.wait(Duration::from_secs(15)).await, Some(0));
    let secrets = [
        ("OAuth code", code.as_str()),
        ("session token", token.as_str()),
        ("other session token", member.as_str()),
        ("session key", SESSION_KEY),
    ];
    check_lines("palmvalidator", &validator.output(), &secrets);
    let mut palmdao = palmdao;
    palmdao.process_mut().sigterm();
    assert_eq!(
        palmdao.process_mut().wait(Duration::from_secs(20)).await,
        Some(0)
    );
    check_lines("palmdao", &palmdao.output(), &secrets);
    palmdao.env.teardown(&palmdao::queues()).await;
    palmdao.env.teardown(&palmvalidator::queues()).await;
}
