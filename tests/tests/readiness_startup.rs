//! `/readyz` during start-up (issue 14): a service is not ready until every
//! check it will register is registered and passes. With the broker
//! unreachable from the start, palmvalidator and palmdao answer `503` from
//! their first `/readyz` on, naming `amqp` (pending, then down), and never
//! `200 {"checks":{}}`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use palm_testkit::process::{ServiceProcess, binary};
use palm_tests::{ServiceEnv, get};

/// A local port with nothing listening on it.
fn closed_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

async fn never_ready_without_its_broker(service: &str) {
    let env = ServiceEnv::new();
    let unreachable = format!("amqp://guest:guest@127.0.0.1:{}/%2f", closed_port());
    let mut process = ServiceProcess::spawn(
        binary(service),
        &env.vars(&[("PALM__AMQP__URL", unreachable.as_str())]),
    );
    let admin = process.admin_addr(Duration::from_secs(20)).await;
    let started = Instant::now();
    let mut answers = 0;
    let mut saw_amqp = false;
    while started.elapsed() < Duration::from_secs(4) {
        let (status, body) = get(&admin, "/readyz").await;
        if status == 0 {
            continue;
        }
        answers += 1;
        assert_eq!(status, 503, "{service} ready without its broker: {body}");
        let json: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(json["status"], "not_ready", "{body}");
        let checks = json["checks"].as_object().unwrap();
        assert!(!checks.is_empty(), "{service}: no checks listed: {body}");
        if let Some(amqp) = checks.get("amqp") {
            assert!(amqp == "pending" || amqp == "down", "{body}");
            saw_amqp = true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(answers > 20, "{service} answered /readyz {answers} times");
    assert!(saw_amqp, "{service} never named amqp among its checks");
    process.sigterm();
    assert_eq!(process.wait(Duration::from_secs(20)).await, Some(0));
}

#[tokio::test]
async fn palmvalidator_is_not_ready_until_its_broker_is_reachable() {
    never_ready_without_its_broker("palmvalidator").await;
}

#[tokio::test]
async fn palmdao_is_not_ready_until_its_broker_is_reachable() {
    never_ready_without_its_broker("palmdao").await;
}
