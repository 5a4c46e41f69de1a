//! The outbox relay's handover between palmdao replicas while events flow
//! (issue 14), counted on the broker side by a tap queue bound to every
//! event (`#`):
//!
//! - a graceful stop (SIGTERM) of the lease holder publishes nothing twice:
//!   it finishes and marks the pass it started, then releases the lease,
//!   and the standby takes it within its 250 ms standby poll;
//! - a crash (kill -9) may publish the unmarked part of its pass again,
//!   which consumers absorb; nothing is lost either way.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use palm_amqp::QueueSpec;
use palm_core::events::DiscussionCreated;
use palm_testkit::eventually;
use palm_testkit::process::{ServiceProcess, binary};
use palm_tests::palmdao::Palmdao;
use palm_tests::prom::Scrape;
use palm_tests::tap::EventTap;
use palm_tests::{ServiceEnv, get};
use serde_json::json;
use uuid::Uuid;

const TTL: [(&str, &str); 2] = [
    ("PALM__OUTBOX__LEASE_TTL_MS", "3000"),
    ("PALM__COMMUNITIES__CREATE_MIN_LEVEL", "1"),
];

/// Another palmdao on the same prefix and database: (process, admin, API base).
async fn replica(env: &ServiceEnv) -> (ServiceProcess, String, String) {
    let process = ServiceProcess::spawn(binary("palmdao"), &env.vars(&TTL));
    let addr = process
        .logged_addr("public api listening", Duration::from_secs(20))
        .await;
    let admin = process.admin_addr(Duration::from_secs(20)).await;
    eventually("palmdao ready", Duration::from_secs(30), || {
        let admin = admin.clone();
        async move { (get(&admin, "/readyz").await.0 == 200).then_some(()) }
    })
    .await;
    (process, admin, format!("http://{addr}"))
}

async fn holds_outbox(admin: &str) -> bool {
    Scrape::of(admin)
        .await
        .value("palm_lease_held", &[("lease", "palmdao.outbox")])
        == Some(1.0)
}

/// Members opening discussions in one community through `base` until
/// `stop`; each success stages one `discussion.created` (in its own new
/// document, so nothing a later request does can touch it).
fn traffic(
    base: &str,
    slug: &str,
    tokens: &[String],
    stop: &Arc<AtomicBool>,
    staged: &Arc<AtomicUsize>,
) -> Vec<tokio::task::JoinHandle<()>> {
    tokens
        .iter()
        .map(|token| {
            let (base, slug, token) = (base.to_owned(), slug.to_owned(), token.clone());
            let (stop, staged) = (Arc::clone(stop), Arc::clone(staged));
            tokio::spawn(async move {
                let http = palm_service::http::client();
                while !stop.load(Ordering::Relaxed) {
                    let status = http
                        .post(format!("{base}/v1/communities/{slug}/discussions"))
                        .bearer_auth(&token)
                        .json(&json!({ "title": "Handover" }))
                        .send()
                        .await
                        .map(|r| r.status().as_u16())
                        .unwrap_or(0);
                    if status == 201 {
                        staged.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect()
}

/// Publications the tap saw, per event id: (distinct events, duplicates).
fn tally(tap: &EventTap) -> (usize, usize) {
    let mut seen: HashMap<String, usize> = HashMap::new();
    for id in tap.events::<DiscussionCreated>().into_iter().map(|e| e.id) {
        *seen.entry(id.to_string()).or_default() += 1;
    }
    (seen.len(), seen.values().map(|n| n - 1).sum())
}

fn stamp(line: &str) -> chrono::DateTime<chrono::Utc> {
    let json: serde_json::Value = serde_json::from_str(line).unwrap();
    chrono::DateTime::parse_from_rfc3339(json["timestamp"].as_str().unwrap())
        .unwrap()
        .with_timezone(&chrono::Utc)
}

fn outbox_line(lines: &[String], message: &str) -> Option<String> {
    lines
        .iter()
        .rev()
        .find(|l| l.contains(message) && l.contains("palmdao.outbox"))
        .cloned()
}

/// Events flow through `base` for 3 s, `stop_leader` runs, events flow 4 s
/// more; returns (staged, distinct published, duplicates) once all arrived.
async fn flow_across<F, Fut>(
    env: &ServiceEnv,
    base: &str,
    slug: &str,
    tokens: &[String],
    stop_leader: F,
) -> (usize, usize, usize)
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let tap = EventTap::start(
        env,
        QueueSpec::new(format!("test.tap-{}", Uuid::new_v4().simple()), &["#"]),
    )
    .await;
    let stop = Arc::new(AtomicBool::new(false));
    let staged = Arc::new(AtomicUsize::new(0));
    let clients = traffic(base, slug, tokens, &stop, &staged);
    tokio::time::sleep(Duration::from_secs(3)).await;
    stop_leader().await;
    tokio::time::sleep(Duration::from_secs(4)).await;
    stop.store(true, Ordering::Relaxed);
    for client in clients {
        client.await.unwrap();
    }
    let staged = staged.load(Ordering::Relaxed);
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while tally(&tap).0 < staged {
        assert!(
            std::time::Instant::now() < deadline,
            "published {:?} (distinct, duplicates) of {staged} staged; tap saw {} messages",
            tally(&tap),
            tap.len()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (distinct, duplicates) = tally(&tap);
    tap.stop().await;
    (staged, distinct, duplicates)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_graceful_handover_publishes_nothing_twice_and_a_crash_loses_nothing() {
    // The first replica takes the lease; the second stands by and serves
    // the traffic, so the API stays up across the handover.
    let mut leader = Palmdao::start_with(&TTL).await;
    assert!(holds_outbox(&leader.admin).await, "the first replica leads");
    let env = leader.env.clone();
    let (mut standby, standby_admin, standby_base) = replica(&env).await;
    assert!(!holds_outbox(&standby_admin).await);

    let (_, admin) = leader.new_member("admin").await;
    let slug = format!("h-{}", &Uuid::new_v4().simple().to_string()[..8]);
    let (status, body) = leader
        .send(
            reqwest::Method::POST,
            "/v1/communities",
            Some(&admin),
            &json!({ "slug": slug, "name": "Handover" }),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let mut tokens = Vec::new();
    for i in 0..6 {
        let (_, member) = leader.new_member(&format!("m{i}")).await;
        leader.join(&slug, &member).await;
        tokens.push(member);
    }

    // Graceful: SIGTERM the holder while events flow.
    let (staged, distinct, duplicates) =
        flow_across(&env, &standby_base, &slug, &tokens, || async {
            leader.process_mut().sigterm();
            assert_eq!(
                leader.process_mut().wait(Duration::from_secs(20)).await,
                Some(0)
            );
        })
        .await;
    let released = outbox_line(&leader.output(), "lease released").expect("the lease released");
    let taken =
        outbox_line(&standby.output(), "lease held, work starts").expect("the standby leads");
    let pause = (stamp(&taken) - stamp(&released)).num_milliseconds();
    eprintln!(
        "graceful SIGTERM of the relay's leader: {staged} events staged, {distinct} published, \
         {duplicates} published twice; the standby took the released lease {pause} ms later"
    );
    assert!(distinct >= staged, "an event was lost");
    assert_eq!(duplicates, 0, "a graceful handover published events twice");
    assert!(
        pause < 1_000,
        "the standby waited {pause} ms for a released lease"
    );

    // Crash: a new standby serves the traffic; the leader is killed.
    let (mut next, next_admin, next_base) = replica(&env).await;
    assert!(holds_outbox(&standby_admin).await && !holds_outbox(&next_admin).await);
    let (staged, distinct, duplicates) = flow_across(&env, &next_base, &slug, &tokens, || async {
        standby.sigkill();
        standby.wait(Duration::from_secs(10)).await;
    })
    .await;
    eprintln!(
        "kill -9 of the relay's leader: {staged} events staged, {distinct} published, \
         {duplicates} published twice"
    );
    assert!(distinct >= staged, "an event was lost after kill -9");
    assert!(holds_outbox(&next_admin).await);

    next.sigterm();
    assert_eq!(next.wait(Duration::from_secs(20)).await, Some(0));
    env.teardown(&palmdao::queues()).await;
}
