//! Leases on one clock (issue 14): two palmdao replicas whose clocks differ
//! by 15 s never lead at once, and a standby takes over when the lease
//! expires on the *database's* clock, whichever replica's clock is ahead.
//!
//! The fast replica is the real palmdao binary run under libfaketime
//! (`LD_PRELOAD=libfaketime.so.1 FAKETIME=+15s`, installed by
//! `scripts/tools/faketime.sh`): its wall clock, and so anything it would
//! compute an expiry from, is 15 s ahead. Before leases were judged on
//! `$$NOW`, it took a healthy lease at once (both relays and both schedulers
//! ran), and a slow standby waited 15 s longer than the TTL after the fast
//! leader died.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;
use std::time::{Duration, Instant};

use palm_testkit::eventually;
use palm_testkit::process::{ServiceProcess, binary};
use palm_tests::ServiceEnv;
use palm_tests::prom::Scrape;

const TTL_MS: u64 = 3_000;
const LEASES: [&str; 2] = ["palmdao.outbox", "palmdao.scheduler"];
const SKEW: &str = "+15s";

fn libfaketime() -> String {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
    let output = Command::new(format!("{root}/scripts/tools/faketime.sh"))
        .output()
        .expect("scripts/tools/faketime.sh runs");
    assert!(
        output.status.success(),
        "installing libfaketime failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap().trim().to_owned()
}

struct Replica {
    process: ServiceProcess,
    admin: String,
}

async fn replica(env: &ServiceEnv, skewed: Option<&str>) -> Replica {
    let ttl = TTL_MS.to_string();
    let mut vars = env.vars(&[
        ("PALM__OUTBOX__LEASE_TTL_MS", &ttl),
        ("PALM__PROPOSALS__LEASE_TTL_MS", &ttl),
        ("PALM__PROPOSALS__SCHEDULER_INTERVAL_MS", "200"),
    ]);
    if let Some(library) = skewed {
        vars.push(("LD_PRELOAD".into(), library.into()));
        vars.push(("FAKETIME".into(), SKEW.into()));
        // Only the wall clock: Instant (CLOCK_MONOTONIC) stays real.
        vars.push(("FAKETIME_DONT_FAKE_MONOTONIC".into(), "1".into()));
    }
    let process = ServiceProcess::spawn(binary("palmdao"), &vars);
    let admin = process.admin_addr(Duration::from_secs(20)).await;
    eventually("palmdao ready", Duration::from_secs(30), || {
        let admin = admin.clone();
        async move { (palm_tests::get(&admin, "/readyz").await.0 == 200).then_some(()) }
    })
    .await;
    Replica { process, admin }
}

async fn held(replica: &Replica, lease: &str) -> bool {
    Scrape::of(&replica.admin)
        .await
        .value("palm_lease_held", &[("lease", lease)])
        == Some(1.0)
}

async fn acquisitions(replica: &Replica, lease: &str) -> f64 {
    Scrape::of(&replica.admin)
        .await
        .value("palm_lease_acquisitions_total", &[("lease", lease)])
        .unwrap_or(0.0)
}

/// The wall-clock time a replica stamped on its first log line, against
/// this test's clock: how far its clock is ahead.
fn clock_ahead_secs(replica: &Replica) -> i64 {
    let line = replica.process.output().into_iter().next().unwrap();
    let json: serde_json::Value = serde_json::from_str(&line).unwrap();
    let stamped = chrono::DateTime::parse_from_rfc3339(json["timestamp"].as_str().unwrap())
        .unwrap()
        .with_timezone(&chrono::Utc);
    (stamped - chrono::Utc::now()).num_seconds()
}

/// Watches both replicas for `period`: never two holders of one lease.
async fn never_two_leaders(a: &Replica, b: &Replica, period: Duration) {
    let until = Instant::now() + period;
    while Instant::now() < until {
        for lease in LEASES {
            let (on_a, on_b) = tokio::join!(held(a, lease), held(b, lease));
            assert!(!(on_a && on_b), "both replicas hold {lease}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits until `replica` holds every lease; returns how long that took.
async fn takes_over(replica: &Replica, what: &str) -> Duration {
    let started = Instant::now();
    for lease in LEASES {
        eventually(what, Duration::from_secs(30), || async {
            held(replica, lease).await.then_some(())
        })
        .await;
    }
    started.elapsed()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_15_s_apart_never_lead_at_once_and_take_over_on_the_database_clock() {
    let library = libfaketime();
    let env = ServiceEnv::new();

    // The slow (true) clock leads first; the fast one arrives as a standby.
    let slow = replica(&env, None).await;
    takes_over(&slow, "the first replica leads").await;
    let mut fast = replica(&env, Some(&library)).await;
    let ahead = clock_ahead_secs(&fast);
    assert!(
        (13..=17).contains(&ahead),
        "the skewed replica's clock is {ahead} s ahead, not ~15 s: libfaketime did not apply"
    );
    assert!(clock_ahead_secs(&slow).abs() <= 2);

    // Three TTLs: the fast clock sees the slow leader's lease as long
    // expired, yet it must not take it.
    never_two_leaders(&slow, &fast, Duration::from_millis(3 * TTL_MS)).await;
    for lease in LEASES {
        assert_eq!(
            acquisitions(&fast, lease).await,
            0.0,
            "the fast replica took {lease} from a healthy leader"
        );
        assert!(held(&slow, lease).await, "the slow replica kept {lease}");
    }

    // The other way round: the fast one leads after a kill -9 of the slow
    // one, at the database's expiry (about one TTL), not 15 s off.
    let killed = Instant::now();
    let mut slow = slow;
    slow.process.sigkill();
    slow.process.wait(Duration::from_secs(10)).await;
    takes_over(&fast, "the fast replica takes over").await;
    let waited = killed.elapsed();
    eprintln!("fast standby took over {waited:?} after kill -9 (ttl {TTL_MS} ms)");
    assert!(
        waited < Duration::from_millis(TTL_MS + 3_000),
        "took {waited:?}"
    );

    // A slow standby beside the fast leader: it must not wait 15 s past the
    // lease's expiry after the leader dies, and must not take a healthy one.
    let mut slow = replica(&env, None).await;
    never_two_leaders(&slow, &fast, Duration::from_millis(2 * TTL_MS)).await;
    for lease in LEASES {
        assert_eq!(acquisitions(&slow, lease).await, 0.0, "{lease}");
    }
    let killed = Instant::now();
    fast.process.sigkill();
    fast.process.wait(Duration::from_secs(10)).await;
    takes_over(&slow, "the slow replica takes over").await;
    let waited = killed.elapsed();
    eprintln!("slow standby took over {waited:?} after kill -9 of the fast leader");
    assert!(
        waited < Duration::from_millis(TTL_MS + 3_000),
        "the slow standby waited {waited:?}: it judged the fast clock's expiry"
    );

    slow.process.sigterm();
    assert_eq!(slow.process.wait(Duration::from_secs(15)).await, Some(0));
    env.teardown(&palmdao::queues()).await;
}
