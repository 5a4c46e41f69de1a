//! Each service binary as a real process: it reports ready, serves its admin
//! endpoints, and exits cleanly on SIGTERM; a bad config value stops it with
//! a non-zero exit naming the key.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use palm_testkit::eventually;
use palm_testkit::process::{ServiceProcess, binary};
use palm_tests::{ServiceEnv, get};

async fn starts_ready_and_stops_cleanly(
    name: &str,
    queues: Vec<palm_amqp::QueueSpec>,
    extra: &[(&str, &str)],
) {
    let env = ServiceEnv::new();
    let mut service = ServiceProcess::spawn(binary(name), &env.vars(extra));
    let admin = service.admin_addr(Duration::from_secs(20)).await;

    assert_eq!(get(&admin, "/healthz").await.0, 200);
    let body = eventually("the service ready", Duration::from_secs(30), || {
        let admin = admin.clone();
        async move {
            let (status, body) = get(&admin, "/readyz").await;
            (status == 200).then_some(body)
        }
    })
    .await;
    assert!(body.contains("\"status\":\"ready\""), "{body}");
    if name == "palmdao" {
        // Ready only once the public API takes connections.
        assert!(body.contains("\"http\":\"up\""), "{body}");
    }
    let (status, _) = get(&admin, "/metrics").await;
    assert_eq!(status, 200);
    if !queues.is_empty() {
        let admin = admin.clone();
        eventually(
            "the connection gauge at 1",
            Duration::from_secs(10),
            move || {
                let admin = admin.clone();
                async move {
                    get(&admin, "/metrics")
                        .await
                        .1
                        .contains(&format!("palm_amqp_connected{{service=\"{name}\"}} 1"))
                        .then_some(())
                }
            },
        )
        .await;
    }

    service.sigterm();
    assert_eq!(
        service.wait(Duration::from_secs(15)).await,
        Some(0),
        "clean exit on SIGTERM"
    );
    assert!(
        service
            .output()
            .iter()
            .any(|l| l.contains("stopped cleanly"))
    );
    env.teardown(&queues).await;
}

#[tokio::test]
async fn palmdao_starts_ready_and_stops_cleanly() {
    // One-element lists given as a bare value (the environment source parses
    // `137` as a number, not a list) are accepted.
    let one_element_lists = [
        ("PALM__AUTH__CHAIN_IDS", "137"),
        ("PALM__AMQP__RETRY_DELAYS_MS", "250"),
    ];
    starts_ready_and_stops_cleanly("palmdao", palmdao::queues(), &one_element_lists).await;
}

#[tokio::test]
async fn palmvalidator_starts_ready_and_stops_cleanly() {
    starts_ready_and_stops_cleanly("palmvalidator", palmvalidator::queues(), &[]).await;
}

#[tokio::test]
async fn palmvalidator_discord_starts_ready_and_stops_cleanly() {
    starts_ready_and_stops_cleanly(
        "palmvalidator-discord",
        palmvalidator_discord::queues(),
        &[],
    )
    .await;
}

#[tokio::test]
async fn palmplatformmetrics_starts_ready_and_stops_cleanly() {
    starts_ready_and_stops_cleanly("palmplatformmetrics", Vec::new(), &[]).await;
}

async fn exits_naming(name: &str, var: &str, value: &str, key: &str) {
    let env = ServiceEnv::new();
    let mut service = ServiceProcess::spawn(binary(name), &env.vars(&[(var, value)]));
    assert_eq!(
        service.wait(Duration::from_secs(10)).await,
        Some(78),
        "EX_CONFIG"
    );
    let output = service.output().join("\n");
    assert!(
        output.contains(&format!("`{key}`")),
        "the message names `{key}`: {output}"
    );
    assert!(
        !output.contains("admin server listening"),
        "nothing started"
    );
}

#[tokio::test]
async fn a_bad_config_value_stops_each_service_naming_the_key() {
    exits_naming("palmdao", "PALM__AMQP__PREFETCH", "lots", "amqp.prefetch").await;
    exits_naming(
        "palmdao",
        "PALM__OUTBOX__LEASE_TTL_MS",
        "5",
        "outbox.lease_ttl_ms",
    )
    .await;
    exits_naming(
        "palmvalidator",
        "PALM__AMQP__CONCURRENCY",
        "0",
        "amqp.concurrency",
    )
    .await;
    exits_naming(
        "palmvalidator-discord",
        "PALM__AMQP__URL",
        "http://nope",
        "amqp.url",
    )
    .await;
    exits_naming(
        "palmplatformmetrics",
        "PALM__MONGO__URL",
        "postgres://x",
        "mongo.url",
    )
    .await;
    exits_naming(
        "palmplatformmetrics",
        "PALM__TELEMETRY__SAMPLE_RATIO",
        "2.5",
        "telemetry.sample_ratio",
    )
    .await;
}

#[tokio::test]
async fn a_missing_environment_file_is_an_error() {
    let env = ServiceEnv::new();
    let mut service = ServiceProcess::spawn(
        binary("palmvalidator"),
        &env.vars(&[("PALM_ENV", "nowhere")]),
    );
    assert_eq!(service.wait(Duration::from_secs(10)).await, Some(78));
    assert!(
        service
            .output()
            .join("\n")
            .contains("nowhere.toml does not exist")
    );
}

/// `<service> --check-config` with `vars` added to the environment: exit
/// code, stdout, stderr.
fn check_config(name: &str, vars: &[(String, String)]) -> (Option<i32>, String, String) {
    let output = std::process::Command::new(binary(name))
        .arg("--check-config")
        .envs(vars.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .output()
        .unwrap();
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn check_config_prints_the_effective_settings_without_secrets_and_connects_nowhere() {
    let env = ServiceEnv::new();
    // Unreachable dependencies: the check must not need them.
    let secret_password = "check-config-password-7f3a";
    let amqp = format!("amqp://palm:{secret_password}@127.0.0.1:1/%2f");
    let mongo = format!("mongodb://palm:{secret_password}@127.0.0.1:1/?replicaSet=rs0");
    for name in [
        "palmdao",
        "palmvalidator",
        "palmvalidator-discord",
        "palmplatformmetrics",
    ] {
        let vars = env.vars(&[
            ("PALM__AMQP__URL", &amqp),
            ("PALM__MONGO__URL", &mongo),
            ("PALM__AMQP__PREFETCH", "40"),
        ]);
        let (code, stdout, stderr) = check_config(name, &vars);
        assert_eq!(code, Some(0), "{name}: {stderr}");
        assert!(stdout.contains("grace_ms: 10000"), "{name}: {stdout}");
        if name != "palmplatformmetrics" {
            assert!(stdout.contains("prefetch: 40"), "{name}: {stdout}");
        }
        for secret in [secret_password, "test-session-key"] {
            assert!(
                !stdout.contains(secret) && !stderr.contains(secret),
                "{name} printed a secret: {stdout}"
            );
        }
        assert!(stderr.contains("configuration ok"), "{name}: {stderr}");
    }
}

#[test]
fn check_config_refuses_a_bad_value_naming_the_key() {
    let env = ServiceEnv::new();
    let (code, stdout, stderr) = check_config(
        "palmvalidator",
        &env.vars(&[("PALM__AMQP__CONCURRENCY", "0")]),
    );
    assert_eq!(code, Some(78), "EX_CONFIG");
    assert!(stdout.is_empty(), "nothing printed as settings: {stdout}");
    assert!(stderr.contains("`amqp.concurrency`"), "{stderr}");

    let unknown = std::process::Command::new(binary("palmdao"))
        .arg("--check-everything")
        .output()
        .unwrap();
    assert_eq!(unknown.status.code(), Some(64), "EX_USAGE");
}
