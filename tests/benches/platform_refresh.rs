//! Platform snapshot benchmark (`make bench-platform`).
//!
//! 1. One refresh of the platform snapshot (every aggregation
//!    palmplatformmetrics runs, the same code) at three data sizes, each on
//!    a fresh database seeded in bulk (`insert_many`) with palmdao's indexes:
//!    votes as given, one PalmID per 10 votes, a membership per 5 votes, a
//!    verification per 7 votes, a proposal per 100 and a community per
//!    1,000. Printed: the median of `BENCH_ROUNDS` refreshes' wall time and
//!    the MongoDB commands one refresh sends (counted by a command monitor
//!    on the client), so growth with data is visible.
//! 2. The idle cost of a replica that does not hold the lease: two release
//!    `palmplatformmetrics` processes with the default interval and lease,
//!    and the standby's `palm_mongo_commands_total` over `BENCH_IDLE_SECS`
//!    (the two scrapes' own readiness pings taken out).
//!
//! `BENCH_SIZES` (votes, comma-separated; default `10000,50000,200000`),
//! `BENCH_ROUNDS` (5) and `BENCH_IDLE_SECS` (60) tune it.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use mongodb::bson::{DateTime, Document, doc};
use mongodb::event::EventHandler;
use mongodb::event::command::CommandEvent;
use mongodb::options::ClientOptions;
use palm_tests::ServiceEnv;
use palm_tests::platform::PlatformMetrics;

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A database on the test MongoDB whose client counts every command.
async fn counted_database(name: &str) -> (mongodb::Database, Arc<AtomicU64>) {
    let commands = Arc::new(AtomicU64::new(0));
    let mut options = ClientOptions::parse(palm_testkit::mongo_url())
        .await
        .unwrap();
    let counter = Arc::clone(&commands);
    options.command_event_handler = Some(EventHandler::callback(move |event| {
        if let CommandEvent::Started(_) = event {
            counter.fetch_add(1, Ordering::Relaxed);
        }
    }));
    let client = mongodb::Client::with_options(options).unwrap();
    (client.database(name), commands)
}

async fn create_indexes(db: &mongodb::Database) {
    palmdao::store::ensure_indexes(db).await.unwrap();
    palmdao::store::platform::ensure_indexes(db).await.unwrap();
    for collection in palmdao::OUTBOX_COLLECTIONS {
        palm_mongo::ensure_indexes(db, collection, vec![palm_mongo::outbox::index()])
            .await
            .unwrap();
    }
}

async fn insert(
    db: &mongodb::Database,
    collection: &str,
    count: usize,
    make: impl Fn(usize) -> Document,
) {
    let collection = db.collection::<Document>(collection);
    let mut start = 0;
    while start < count {
        let end = (start + 5_000).min(count);
        collection
            .insert_many((start..end).map(&make))
            .await
            .unwrap();
        start = end;
    }
}

/// Seeds data proportional to `votes`.
async fn seed(db: &mongodb::Database, votes: usize) {
    let now = DateTime::now().timestamp_millis();
    let palm_ids = votes / 10;
    let kinds = ["wallet", "discord", "email"];
    insert(db, "palm_ids", palm_ids, |i| {
        let level = i % 3 + 1;
        let verifiers: Vec<Document> = kinds[..level]
            .iter()
            .map(|kind| doc! { "kind": kind, "subject": format!("{kind}-{i}") })
            .collect();
        doc! { "_id": format!("p{i}"), "handle": format!("h{i}"), "level": level as i64, "verifiers": verifiers, "created_at": DateTime::from_millis(now) }
    })
    .await;
    insert(db, "verifications", votes / 7, |i| {
        doc! { "_id": format!("v{i}"), "palm_id": format!("p{}", i % palm_ids), "kind": (kinds[i % 2]), "status": (["verified", "rejected", "pending"][i % 3]) }
    })
    .await;
    let communities = (votes / 1_000).max(1);
    insert(db, "communities", communities, |i| {
        doc! { "_id": format!("c{i}"), "slug": format!("c{i}") }
    })
    .await;
    insert(db, "memberships", votes / 5, |i| {
        let (community, palm_id) = (i % communities, i / communities);
        doc! { "_id": format!("c{community}:p{palm_id}"), "community_id": format!("c{community}"), "palm_id": format!("p{palm_id}") }
    })
    .await;
    let proposals = (votes / 100).max(1);
    insert(db, "proposals", proposals, |i| {
        doc! { "_id": format!("r{i}"), "community_id": format!("c{}", i % communities), "status": (["closed", "active", "pending"][i % 3]), "end": DateTime::from_millis(now) }
    })
    .await;
    insert(db, "votes", votes, |i| {
        // Spread over the last 14 days: half inside the 7-day window.
        let age = (i as i64 * 7919) % (14 * 86_400_000);
        doc! {
            "_id": format!("x{i}"), "proposal_id": format!("r{}", i % proposals),
            "palm_id": format!("p{}", i % palm_ids), "status": (["valid", "valid", "rejected", "pending"][i % 4]),
            "submitted_at": DateTime::from_millis(now - age),
        }
    })
    .await;
}

async fn refresh_at(votes: usize, rounds: usize) {
    let name = palm_testkit::unique_database();
    let (db, commands) = counted_database(&name).await;
    create_indexes(&db).await;
    let seeding = Instant::now();
    seed(&db, votes).await;
    let seeded_in = seeding.elapsed();
    let max_time = Duration::from_secs(60);
    let mut times = Vec::new();
    let mut per_refresh = 0;
    for _ in 0..rounds {
        let before = commands.load(Ordering::Relaxed);
        let started = Instant::now();
        let snapshot = palmplatformmetrics::aggregations::refresh(&db, max_time)
            .await
            .unwrap();
        times.push(started.elapsed());
        per_refresh = commands.load(Ordering::Relaxed) - before;
        assert_eq!(
            snapshot.votes.values().sum::<i64>(),
            i64::try_from(votes).unwrap(),
            "the refresh counted every vote"
        );
    }
    times.sort();
    let median = times[times.len() / 2];
    println!(
        "| {votes} | {} | {} | {} | {:.0} ms | {:.0}–{:.0} ms | {per_refresh} (aggregate) |",
        votes / 10,
        votes / 5,
        votes / 7,
        median.as_secs_f64() * 1000.0,
        times[0].as_secs_f64() * 1000.0,
        times[times.len() - 1].as_secs_f64() * 1000.0,
    );
    eprintln!("  ({votes} votes seeded in {seeded_in:.1?})");
    db.drop().await.unwrap();
}

async fn idle_cost(seconds: u64) {
    let env = ServiceEnv::new();
    let a = PlatformMetrics::start(&env, 30_000, &[]).await;
    let b = PlatformMetrics::start(&env, 30_000, &[]).await;
    let standby = palm_testkit::eventually("one lease holder", Duration::from_secs(60), || async {
        match (a.holds_lease().await, b.holds_lease().await) {
            (true, false) => Some(&b),
            (false, true) => Some(&a),
            _ => None,
        }
    })
    .await;
    let count = |scrape: &palm_tests::prom::Scrape| {
        let all = scrape.sum("palm_mongo_commands_total");
        let pings = scrape
            .value("palm_mongo_commands_total", &[("command", "ping")])
            .unwrap_or(0.0);
        (all, pings)
    };
    let (before, pings_before) = count(&standby.scrape().await);
    let started = Instant::now();
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    let scrape = standby.scrape().await;
    let elapsed = started.elapsed().as_secs_f64();
    let (after, pings_after) = count(&scrape);
    // Each scrape evaluates readiness (one ping); that is the scraper's
    // cost, not the replica's.
    let commands = (after - before) - (pings_after - pings_before);
    let by_command: Vec<String> = scrape
        .samples
        .iter()
        .filter(|s| s.name == "palm_mongo_commands_total" && s.value > 0.0)
        .map(|s| format!("{} {}", s.labels["command"], s.value))
        .collect();
    println!(
        "idle standby (refresh 30 s, lease 15 s): {commands} commands in {elapsed:.0} s = {:.2} commands/s (totals since start: {})",
        commands / elapsed,
        by_command.join(", ")
    );
    assert_eq!(
        scrape.value("palm_mongo_commands_total", &[("command", "aggregate")]),
        None,
        "the standby sent no aggregate"
    );
    let db = mongodb::Client::with_uri_str(palm_testkit::mongo_url())
        .await
        .unwrap()
        .database(&env.database);
    drop(a);
    drop(b);
    db.drop().await.unwrap();
}

#[tokio::main]
async fn main() {
    let sizes: Vec<usize> = std::env::var("BENCH_SIZES")
        .unwrap_or_else(|_| "10000,50000,200000".into())
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    let rounds = env_or("BENCH_ROUNDS", 5_usize).max(1);
    println!("one platform snapshot refresh ({rounds} rounds each, median and range):\n");
    println!(
        "| votes | PalmIDs | memberships | verifications | refresh | range | MongoDB commands |"
    );
    println!("|---|---|---|---|---|---|---|");
    for votes in sizes {
        refresh_at(votes, rounds).await;
    }
    println!();
    idle_cost(env_or("BENCH_IDLE_SECS", 60_u64)).await;
}
