//! palmvalidator-discord end to end through palmdao: real processes, the
//! real broker and database, and a local fake Discord.
//!
//! Shown here: a valid code verifies (the PalmID gains a `discord` verifier,
//! its level rises by one, the configured role is granted); an invalid code,
//! a too-young account, a missing guild membership and a missing `identify`
//! scope are each rejected with their own reason; the same Discord account
//! on a second PalmID is rejected with `identity_in_use`; a bad `discord.*`
//! value stops the service with exit code 78 naming the key.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::time::Duration;

use palm_testkit::eventually;
use palm_testkit::process::ServiceProcess;
use palm_tests::fake_discord::{FakeDiscord, FakeUser, GUILD_ID, REDIRECT_URI, ROLE_ID};
use palm_tests::palmdao::{Palmdao, key};
use reqwest::Method;
use serde_json::{Value, json};
use uuid::Uuid;

/// A guild that must be joined, a role to grant, accounts at least 30 days old.
const GUILD_RULES: [(&str, &str); 4] = [
    ("PALM__DISCORD__GUILD_ID", GUILD_ID),
    ("PALM__DISCORD__REQUIRE_GUILD_MEMBERSHIP", "true"),
    ("PALM__DISCORD__GRANT_ROLE_ID", ROLE_ID),
    ("PALM__DISCORD__MIN_ACCOUNT_AGE_DAYS", "30"),
];

struct Suite {
    fake: FakeDiscord,
    palmdao: Palmdao,
    validator: ServiceProcess,
}

impl Suite {
    async fn start() -> Self {
        let fake = FakeDiscord::start().await;
        let palmdao = Palmdao::start().await;
        let (validator, _) = fake.start_validator(&palmdao.env, &GUILD_RULES).await;
        Self {
            fake,
            palmdao,
            validator,
        }
    }

    /// Signs in a fresh PalmID; returns its token and id.
    async fn person(&self) -> (String, String) {
        let session = self
            .palmdao
            .sign_in(&key(&format!("person-{}", Uuid::new_v4())))
            .await;
        (
            session["token"].as_str().unwrap().to_owned(),
            session["palm_id"].as_str().unwrap().to_owned(),
        )
    }

    /// Requests a Discord verification with `code` as `token`'s owner and
    /// waits until it is decided; returns the verification view.
    async fn verify(&self, token: &str, code: &str) -> Value {
        let body = json!({ "kind": "discord", "code": code, "redirect_uri": REDIRECT_URI });
        let (status, request) = self
            .palmdao
            .send(Method::POST, "/v1/me/verifications", Some(token), &body)
            .await;
        assert_eq!(status, 202, "{request}");
        let id = request["id"].as_str().unwrap().to_owned();
        eventually(
            "the verification decided",
            Duration::from_secs(30),
            || async {
                let (_, view) = self
                    .palmdao
                    .get(&format!("/v1/me/verifications/{id}"), Some(token))
                    .await;
                (view["status"] != "pending").then_some(view)
            },
        )
        .await
    }

    async fn level(&self, token: &str) -> u64 {
        let (status, me) = self.palmdao.get("/v1/me", Some(token)).await;
        assert_eq!(status, 200, "{me}");
        me["level"].as_u64().unwrap()
    }

    async fn stop(mut self) {
        self.validator.sigterm();
        assert_eq!(
            self.validator.wait(Duration::from_secs(15)).await,
            Some(0),
            "clean exit"
        );
        let env = self.palmdao.env.clone();
        self.palmdao.stop().await;
        env.teardown(&palmvalidator_discord::queues()).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_valid_code_verifies_through_palmdao_and_each_refusal_has_its_reason() {
    let suite = Suite::start().await;
    let fake = &suite.fake;

    let member = FakeUser::aged_days(400, "old-member");
    fake.add_member(&member);
    let (token, _) = suite.person().await;
    assert_eq!(suite.level(&token).await, 1, "a wallet only");
    let view = suite.verify(&token, &fake.code_for(&member)).await;
    assert_eq!(view["status"], "verified", "{view}");
    assert_eq!(view["subject"], member.id_string(), "{view}");
    assert_eq!(
        suite.level(&token).await,
        2,
        "the discord verifier adds a level"
    );
    let (_, me) = suite.palmdao.get("/v1/me", Some(&token)).await;
    assert!(
        me["verifiers"]
            .as_array()
            .unwrap()
            .iter()
            .any(|v| v["kind"] == "discord" && v["display_name"] == "old-member"),
        "{me}"
    );
    assert_eq!(
        fake.granted_roles(),
        vec![(member.id, ROLE_ID.to_owned())],
        "the member got the role"
    );

    let young = FakeUser::aged_days(3, "new-account");
    fake.add_member(&young);
    let outsider = FakeUser::aged_days(400, "outsider");
    let no_scope = FakeUser::aged_days(400, "guilds-only");
    fake.add_member(&no_scope);
    let cases = [
        ("not-a-code".to_owned(), "discord_invalid_code"),
        (fake.code_for(&young), "discord_account_too_young"),
        (fake.code_for(&outsider), "discord_not_in_guild"),
        (
            fake.code_with_scope(&no_scope, "guilds"),
            "discord_missing_scope",
        ),
    ];
    let mut reasons = BTreeSet::new();
    for (code, expected) in &cases {
        let (token, _) = suite.person().await;
        let view = suite.verify(&token, code).await;
        assert_eq!(view["status"], "rejected", "{expected}: {view}");
        assert_eq!(view["reason"], *expected, "{view}");
        assert_eq!(suite.level(&token).await, 1, "{expected}: no level gained");
        reasons.insert(view["reason"].as_str().unwrap().to_owned());
    }
    assert_eq!(reasons.len(), cases.len(), "distinct reasons: {reasons:?}");
    assert_eq!(fake.granted_roles().len(), 1, "no role for the refused");
    suite.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_discord_account_on_a_second_palm_id_is_rejected() {
    let suite = Suite::start().await;
    let fake = &suite.fake;
    let account = FakeUser::aged_days(400, "one-account");
    fake.add_member(&account);

    let (first, _) = suite.person().await;
    let view = suite.verify(&first, &fake.code_for(&account)).await;
    assert_eq!(view["status"], "verified", "{view}");

    // Another PalmID logs in with the same Discord account (a new code).
    let (second, _) = suite.person().await;
    let view = suite.verify(&second, &fake.code_for(&account)).await;
    assert_eq!(view["status"], "rejected", "{view}");
    assert_eq!(view["reason"], "identity_in_use", "{view}");
    assert_eq!(suite.level(&second).await, 1);
    assert_eq!(suite.level(&first).await, 2);
    suite.stop().await;
}

#[tokio::test]
async fn bad_discord_settings_stop_the_service_naming_the_key() {
    use palm_testkit::process::binary;
    for (var, value, key) in [
        ("PALM__DISCORD__CLIENT_SECRET", "", "discord.client_secret"),
        ("PALM__DISCORD__BASE_URL", "discord.com", "discord.base_url"),
        (
            "PALM__DISCORD__MAX_REQUESTS_PER_SECOND",
            "50",
            "discord.max_requests_per_second",
        ),
        (
            "PALM__DISCORD__REQUIRE_GUILD_MEMBERSHIP",
            "true",
            "discord.require_guild_membership",
        ),
    ] {
        let env = palm_tests::ServiceEnv::new();
        let mut service =
            ServiceProcess::spawn(binary("palmvalidator-discord"), &env.vars(&[(var, value)]));
        assert_eq!(
            service.wait(Duration::from_secs(10)).await,
            Some(78),
            "{var}={value}: EX_CONFIG"
        );
        let output = service.output().join("\n");
        assert!(output.contains(&format!("`{key}`")), "{output}");
    }
}
