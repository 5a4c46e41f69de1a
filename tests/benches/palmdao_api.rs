//! palmdao's public API under load: a read (`GET /v1/communities/{slug}`)
//! and vote intake (`POST /v1/proposals/{id}/votes` → `202`), each run by
//! concurrent clients over keep-alive connections against the real palmdao
//! binary, RabbitMQ and MongoDB. Prints requests/s, p50/p99/max latency, the
//! error count (any error fails the run) and the MongoDB round trips per
//! request, read from palmdao's own `palm_mongo_commands_total` counter on
//! its `/metrics`.
//!
//! Round trips are counted twice, because the outbox relay shares the
//! client with the request handlers:
//! - *request path*: a probe run while the bench holds the relay's lease
//!   (as a second replica would), so palmdao's relay stands by and only the
//!   handlers' commands and the standby's lease attempts (measured in an idle
//!   window and subtracted) are counted;
//! - *all-in*: the timed window with the relay live, until it has published
//!   every event the window staged, minus the idle rate of a live relay
//!   (its polling passes and lease renewals, measured and shown). All-in
//!   minus request path is the relay's deferred work per request.
//!
//! Votes are real EIP-712 signatures from a few dozen signed-in members,
//! each request a distinct vote, all signed before any timed window.
//!
//! Run: `make bench-api` (builds palmdao in release first: `cargo bench`
//! does not rebuild another package's binary). Tune with BENCH_CONCURRENCY
//! (16), BENCH_REQUESTS (timed requests per scenario, 5000), BENCH_WARMUP
//! (300), BENCH_PROBE (500), BENCH_VOTERS (48), BENCH_IDLE_SECS (5), and
//! PALM_AMQP_URL / PALM_MONGO_URL.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use chrono::Utc;
use palm_amqp::{Broker, QueueSpec, Topology};
use palm_core::eth::{AddressText, LocalKey};
use palm_core::vote::{VoteDomain, VoteMessage};
use palm_mongo::mongodb::Database;
use palm_mongo::mongodb::bson::doc;
use palm_mongo::{Lease, MongoSettings};
use palm_tests::palmdao::{Palmdao, key};
use reqwest::Method;
use secrecy::SecretString;
use serde_json::json;
use uuid::Uuid;

struct Params {
    concurrency: usize,
    requests: usize,
    warmup: usize,
    probe: usize,
    voters: usize,
    idle: Duration,
}

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// What one scrape of palmdao's `/metrics` (and its CPU time) says.
#[derive(Debug, Clone, Default)]
struct Scrape {
    /// `palm_mongo_commands_total` by command name.
    commands: BTreeMap<String, f64>,
    /// `palm_outbox_published_total`.
    published: f64,
    /// `palm_outbox_lag_seconds`.
    lag: f64,
    /// palmdao's CPU seconds so far, where `/proc` tells.
    cpu: Option<f64>,
}

/// Commands by name and palmdao CPU seconds: used between two scrapes, per
/// second of an idle window, or per request.
#[derive(Debug, Clone, Default)]
struct Usage {
    commands: BTreeMap<String, f64>,
    cpu: Option<f64>,
}

impl Usage {
    fn divided_by(&self, divisor: f64) -> Usage {
        Usage {
            commands: self
                .commands
                .iter()
                .map(|(name, count)| (name.clone(), count / divisor))
                .collect(),
            cpu: self.cpu.map(|cpu| cpu / divisor),
        }
    }

    fn round_trips(&self) -> f64 {
        self.commands.values().sum()
    }
}

impl Scrape {
    /// What palmdao did between `earlier` and `self`, minus `idle` (a rate
    /// per second) over `elapsed`.
    fn since(&self, earlier: &Scrape, idle: &Usage, elapsed: Duration) -> Usage {
        let secs = elapsed.as_secs_f64();
        let commands = self
            .commands
            .iter()
            .map(|(name, &count)| {
                let before = earlier.commands.get(name).copied().unwrap_or(0.0);
                let background = idle.commands.get(name).copied().unwrap_or(0.0) * secs;
                (name.clone(), count - before - background)
            })
            .collect();
        let cpu = match (self.cpu, earlier.cpu) {
            (Some(now), Some(before)) => Some(now - before - idle.cpu.unwrap_or(0.0) * secs),
            _ => None,
        };
        Usage { commands, cpu }
    }
}

/// CPU seconds (user + system) of this process's child named `name`, from
/// `/proc/<pid>/stat` (Linux; clock ticks taken as 1/100 s).
fn child_cpu(name: &str) -> Option<f64> {
    let me = std::process::id().to_string();
    let comm = format!("({name}");
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // `pid (comm) state ppid … utime stime …`; comm may hold spaces.
        let Some((head, rest)) = stat.rsplit_once(") ") else {
            continue;
        };
        let fields: Vec<&str> = rest.split_whitespace().collect();
        if !head.ends_with(&comm) || fields.get(1) != Some(&me.as_str()) {
            continue;
        }
        let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<f64>().ok());
        return Some((ticks(11)? + ticks(12)?) / 100.0);
    }
    None
}

async fn scrape(http: &reqwest::Client, admin: &str) -> Scrape {
    let text = http
        .get(format!("http://{admin}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let mut scrape = Scrape {
        cpu: child_cpu("palmdao"),
        ..Scrape::default()
    };
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let Some((series, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let Ok(value) = value.parse::<f64>() else {
            continue;
        };
        let (name, labels) = series.split_once('{').unwrap_or((series, ""));
        match name {
            "palm_mongo_commands_total" => {
                let command = labels
                    .split_once("command=\"")
                    .and_then(|(_, rest)| rest.split_once('"'))
                    .map_or("?", |(command, _)| command);
                *scrape.commands.entry(command.to_owned()).or_default() += value;
            }
            "palm_outbox_published_total" => scrape.published += value,
            "palm_outbox_lag_seconds" => scrape.lag = value,
            _ => {}
        }
    }
    scrape
}

/// Waits until the outbox relay has nothing left to publish: no pending
/// record and nothing published between two scrapes a poll interval apart.
async fn settle(http: &reqwest::Client, admin: &str) {
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut last = scrape(http, admin).await;
    loop {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let now = scrape(http, admin).await;
        if now.lag == 0.0 && now.published == last.published {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the outbox did not drain in 2 minutes"
        );
        last = now;
    }
}

/// One request of a scenario, built for the `index`-th call.
type MakeRequest = Arc<dyn Fn(&reqwest::Client, usize) -> reqwest::RequestBuilder + Send + Sync>;

/// Latencies of the successful requests, the errors, and the wall time.
struct Outcome {
    latencies: Vec<Duration>,
    errors: usize,
    elapsed: Duration,
}

/// Sends `count` requests from `concurrency` clients, each on its own
/// keep-alive connection, and times each one.
async fn drive(
    make: &MakeRequest,
    offset: usize,
    count: usize,
    concurrency: usize,
    expected: u16,
) -> Outcome {
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let workers: Vec<_> = (0..concurrency)
        .map(|_| {
            let (make, next) = (Arc::clone(make), Arc::clone(&next));
            tokio::spawn(async move {
                let http = palm_service::http::client_builder()
                    .pool_max_idle_per_host(1)
                    .build()
                    .unwrap();
                let (mut latencies, mut errors) = (Vec::with_capacity(count), 0);
                loop {
                    let index = next.fetch_add(1, Ordering::Relaxed);
                    if index >= count {
                        break;
                    }
                    let sent = Instant::now();
                    let result = make(&http, offset + index).send().await;
                    let status = match result {
                        Ok(response) => {
                            let status = response.status().as_u16();
                            let body = response.bytes().await.unwrap_or_default();
                            if status != expected && errors < 3 {
                                eprintln!("bench: {status}: {}", String::from_utf8_lossy(&body));
                            }
                            status
                        }
                        Err(error) => {
                            if errors < 3 {
                                eprintln!("bench: request failed: {error}");
                            }
                            0
                        }
                    };
                    if status == expected {
                        latencies.push(sent.elapsed());
                    } else {
                        errors += 1;
                    }
                }
                (latencies, errors)
            })
        })
        .collect();
    let mut outcome = Outcome {
        latencies: Vec::with_capacity(count),
        errors: 0,
        elapsed: Duration::ZERO,
    };
    for worker in workers {
        let (latencies, errors) = worker.await.unwrap();
        outcome.latencies.extend(latencies);
        outcome.errors += errors;
    }
    outcome.elapsed = started.elapsed();
    outcome.latencies.sort_unstable();
    outcome
}

/// Nearest-rank percentile of sorted latencies, in milliseconds.
fn percentile(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1].as_secs_f64() * 1000.0
}

/// One scenario's figures.
struct Report {
    name: &'static str,
    outcome: Outcome,
    /// Round trips per request by command, relay standing by.
    request_path: Usage,
    /// Commands per request with the relay live, its deferred work included.
    all_in: Usage,
}

/// `find 1.00, insert 1.00`, leaving out commands that round to zero.
fn breakdown(per_command: &BTreeMap<String, f64>) -> String {
    let parts: Vec<String> = per_command
        .iter()
        .filter(|(_, v)| v.abs() >= 0.005)
        .map(|(name, v)| format!("{name} {v:.2}"))
        .collect();
    if parts.is_empty() {
        "none".to_owned()
    } else {
        parts.join(", ")
    }
}

/// The run's parameters and palmdao's admin server.
struct Bench {
    params: Params,
    http: reqwest::Client,
    admin: String,
}

impl Bench {
    async fn scrape(&self) -> Scrape {
        scrape(&self.http, &self.admin).await
    }
}

/// Commands per second in an idle window of `length`.
async fn idle_rate(bench: &Bench) -> Usage {
    let before = bench.scrape().await;
    let started = Instant::now();
    tokio::time::sleep(bench.params.idle).await;
    let after = bench.scrape().await;
    after
        .since(&before, &Usage::default(), Duration::ZERO)
        .divided_by(started.elapsed().as_secs_f64())
}

/// Request-path round trips: `count` requests with the relay standing by,
/// minus the standby's own rate.
async fn probe(
    bench: &Bench,
    make: &MakeRequest,
    offset: usize,
    expected: u16,
    standby: &Usage,
) -> Usage {
    let count = bench.params.probe;
    let before = bench.scrape().await;
    let started = Instant::now();
    let outcome = drive(make, offset, count, bench.params.concurrency, expected).await;
    assert_eq!(outcome.errors, 0, "errors during the round-trip probe");
    let after = bench.scrape().await;
    after
        .since(&before, standby, started.elapsed())
        .divided_by(count as f64)
}

/// The timed scenario: warm-up, wait for the relay to be idle, the timed
/// window; then, when `stages_events`, wait until the relay has published
/// one event per request and count every command since the window began.
async fn timed(
    bench: &Bench,
    name: &'static str,
    make: &MakeRequest,
    offset: usize,
    expected: u16,
    stages_events: bool,
    idle: &Usage,
) -> (Outcome, Usage) {
    let (params, http, admin) = (&bench.params, &bench.http, bench.admin.as_str());
    eprintln!("bench: {name}: {} warm-up requests", params.warmup);
    let warmup = drive(make, offset, params.warmup, params.concurrency, expected).await;
    assert_eq!(warmup.errors, 0, "{name}: errors during warm-up");
    settle(http, admin).await;

    eprintln!(
        "bench: {name}: {} timed requests from {} clients",
        params.requests, params.concurrency
    );
    let before = scrape(http, admin).await;
    let started = Instant::now();
    let outcome = drive(
        make,
        offset + params.warmup,
        params.requests,
        params.concurrency,
        expected,
    )
    .await;
    let mut after = scrape(http, admin).await;
    if stages_events {
        let target = before.published + (params.requests - outcome.errors) as f64;
        let deadline = Instant::now() + Duration::from_secs(120);
        while after.published < target {
            assert!(
                Instant::now() < deadline,
                "{name}: the outbox did not drain"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
            after = scrape(http, admin).await;
        }
    }
    let all_in = after
        .since(&before, idle, started.elapsed())
        .divided_by(params.requests as f64);
    (outcome, all_in)
}

/// A free local address for palmdao's admin server, so the bench can
/// scrape it.
fn free_addr() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().to_string()
}

/// What the database says it is (the test stand-in names itself).
async fn server_description(database: &Database) -> String {
    match database.run_command(doc! { "buildInfo": 1 }).await {
        Ok(info) => {
            let version = info.get_str("version").unwrap_or("?");
            match info.get_str("process") {
                Ok(process) => format!("{process} {version} (MongoDB wire protocol)"),
                Err(_) => format!("MongoDB {version}"),
            }
        }
        Err(error) => format!("unknown ({error})"),
    }
}

struct Voter {
    key: LocalKey,
    token: Arc<str>,
}

/// `count` distinct votes, signed, as `(token, body)`: voter `i % n` casts
/// its `i / n`-th vote, one second earlier each time.
fn sign_votes(voters: &[Voter], proposal: &str, count: usize) -> Vec<(Arc<str>, Vec<u8>)> {
    let domain = VoteDomain::default();
    let now = u64::try_from(Utc::now().timestamp()).unwrap();
    (0..count)
        .map(|i| {
            let voter = &voters[i % voters.len()];
            let message = VoteMessage {
                proposal: proposal.to_owned(),
                choice: json!(1 + i % 3),
                timestamp: now - (i / voters.len()) as u64,
                voter: voter.key.address(),
                app: APP.to_owned(),
            };
            let signature = message.sign(&domain, &voter.key).unwrap();
            if i == 0 {
                assert_eq!(
                    message.recover(&domain, &signature).unwrap(),
                    voter.key.address()
                );
            }
            let body = json!({
                "choice": message.choice,
                "timestamp": message.timestamp,
                "address": voter.key.address().to_checksummed(),
                "signature": signature.to_string(),
            });
            (Arc::clone(&voter.token), serde_json::to_vec(&body).unwrap())
        })
        .collect()
}

/// The app votes are cast through: palmdao's `auth.domain` in the tests' environment.
const APP: &str = "palm.test";
/// palmdao's outbox relay lease.
const RELAY_LEASE: &str = "palmdao.outbox";

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let params = Params {
        concurrency: env_or("BENCH_CONCURRENCY", 16).max(1),
        requests: env_or("BENCH_REQUESTS", 5000).max(1),
        warmup: env_or("BENCH_WARMUP", 300),
        probe: env_or("BENCH_PROBE", 500).max(1),
        voters: env_or("BENCH_VOTERS", 48).max(1),
        idle: Duration::from_secs_f64(env_or("BENCH_IDLE_SECS", 5.0)),
    };
    let http = palm_service::http::client();

    // The bench holds the relay's lease from the start, as another replica
    // would, so the request-path probes run with palmdao's relay standing by.
    let database_name = palm_testkit::unique_database();
    let mongo = palm_mongo::connect(
        &MongoSettings {
            url: SecretString::from(palm_testkit::mongo_url()),
            database: database_name.clone(),
            ..MongoSettings::default()
        },
        "palmdao-bench",
    )
    .await
    .unwrap();
    let server = server_description(&mongo).await;
    let lease = Lease::new(
        &mongo,
        RELAY_LEASE,
        "palmdao-bench",
        Duration::from_secs(3600),
    );
    assert!(lease.try_acquire().await.unwrap().is_some());

    let admin = free_addr();
    let palmdao = Palmdao::start_with(&[
        ("PALM__MONGO__DATABASE", database_name.as_str()),
        ("PALM__ADMIN__ADDR", admin.as_str()),
        ("PALM__HTTP__RATE_LIMIT_PER_SECOND", "1000000"),
        ("PALM__HTTP__RATE_LIMIT_BURST", "1000000"),
        ("PALM__COMMUNITIES__CREATE_MIN_LEVEL", "1"),
        ("PALM__MONGO__COMMAND_METRICS", "true"),
        (
            "PALM__TELEMETRY__LOG_LEVEL",
            "warn,palm_service=info,palmdao=info",
        ),
    ])
    .await;
    // The validator's stand-in: vote.submitted is routed to a queue, as in
    // production, rather than settled as unroutable.
    let amqp = palmdao.env.amqp_settings();
    let sink = vec![QueueSpec::new("bench.votes", &["vote.submitted"])];
    let broker = Broker::start(amqp.clone(), Topology::new(&amqp, sink.clone()));
    broker
        .wait_connected(Duration::from_secs(20))
        .await
        .unwrap();

    eprintln!(
        "bench: setting up a community, a proposal and {} voters",
        params.voters
    );
    let creator = palmdao
        .sign_in(&key(&format!("bench-admin-{}", Uuid::new_v4())))
        .await;
    let creator_token = creator["token"].as_str().unwrap().to_owned();
    let slug = format!("bench-{}", &Uuid::new_v4().simple().to_string()[..8]);
    let (status, body) = palmdao
        .send(
            Method::POST,
            "/v1/communities",
            Some(&creator_token),
            &json!({ "slug": slug, "name": "Bench", "min_vote_level": 1 }),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let (status, proposal) = palmdao
        .send(
            Method::POST,
            &format!("/v1/communities/{slug}/proposals"),
            Some(&creator_token),
            &json!({
                "title": "Bench",
                "body": "A proposal to vote on.",
                "choices": ["yes", "no", "abstain"],
                "voting_type": "single-choice",
                "start": (Utc::now() - chrono::Duration::minutes(1)).to_rfc3339(),
                "end": (Utc::now() + chrono::Duration::hours(6)).to_rfc3339(),
            }),
        )
        .await;
    assert_eq!(status, 201, "{proposal}");
    let proposal_id = proposal["id"].as_str().unwrap().to_owned();
    let mut voters = Vec::with_capacity(params.voters);
    for n in 0..params.voters {
        let (key, token) = palmdao.new_member(&format!("bench-voter-{n}")).await;
        palmdao.join(&slug, &token).await;
        let token: Arc<str> = Arc::from(token);
        voters.push(Voter { key, token });
    }
    let votes_needed = params.probe + params.warmup + params.requests;
    eprintln!("bench: signing {votes_needed} votes");
    let votes = Arc::new(sign_votes(&voters, &proposal_id, votes_needed));

    let read_url = format!("{}/v1/communities/{slug}", palmdao.base);
    let read: MakeRequest = Arc::new(move |http, _| http.get(&read_url));
    let vote_url = format!("{}/v1/proposals/{proposal_id}/votes", palmdao.base);
    let vote: MakeRequest = Arc::new(move |http, index| {
        let (token, body) = &votes[index];
        http.post(&vote_url)
            .bearer_auth(token)
            .header("content-type", "application/json")
            .body(body.clone())
    });

    let bench = Bench {
        params,
        http,
        admin,
    };

    // Request path, relay standing by.
    let held = bench.scrape().await;
    assert_eq!(
        held.published, 0.0,
        "palmdao's relay published while the bench held its lease: is the lease still `{RELAY_LEASE}`?"
    );
    eprintln!(
        "bench: {:?} idle with the relay standing by",
        bench.params.idle
    );
    let standby = idle_rate(&bench).await;
    eprintln!(
        "bench: round-trip probes, {} requests each",
        bench.params.probe
    );
    let read_path = probe(&bench, &read, 0, 200, &standby).await;
    let vote_path = probe(&bench, &vote, 0, 202, &standby).await;
    for (name, path) in [("read", &read_path), ("vote", &vote_path)] {
        assert!(
            path.round_trips() >= 0.5,
            "no MongoDB command counted for a {name}: palm_mongo_commands_total is not reported"
        );
    }

    // Hand the relay back and let it publish what was staged so far.
    lease.release().await.unwrap();
    eprintln!("bench: relay released; waiting for it to drain");
    let deadline = Instant::now() + Duration::from_secs(60);
    while bench.scrape().await.published == 0.0 {
        assert!(
            Instant::now() < deadline,
            "palmdao's relay did not take over"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    settle(&bench.http, &bench.admin).await;
    eprintln!("bench: {:?} idle with the relay live", bench.params.idle);
    let idle = idle_rate(&bench).await;

    let read_name = "GET /v1/communities/{slug}";
    let (read_outcome, read_all_in) = timed(&bench, read_name, &read, 0, 200, false, &idle).await;
    let vote_name = "POST /v1/proposals/{id}/votes";
    let offset = bench.params.probe;
    let (vote_outcome, vote_all_in) =
        timed(&bench, vote_name, &vote, offset, 202, true, &idle).await;

    let reports = [
        Report {
            name: read_name,
            outcome: read_outcome,
            request_path: read_path,
            all_in: read_all_in,
        },
        Report {
            name: vote_name,
            outcome: vote_outcome,
            request_path: vote_path,
            all_in: vote_all_in,
        },
    ];
    print_reports(&bench.params, &server, &reports, &standby, &idle);

    broker.close().await;
    palmdao.env.teardown(&sink).await;
    palmdao.stop().await;
    let _ = mongo.drop().await;

    let errors: usize = reports.iter().map(|r| r.outcome.errors).sum();
    if errors > 0 {
        eprintln!("bench: {errors} requests failed");
        std::process::exit(1);
    }
}

fn rates(rate: &Usage) -> String {
    let parts: Vec<String> = rate
        .commands
        .iter()
        .filter(|(_, v)| **v >= 0.005)
        .map(|(name, v)| format!("{name} {v:.1}"))
        .collect();
    if parts.is_empty() {
        "0/s".to_owned()
    } else {
        format!("{:.1}/s ({})", rate.round_trips(), parts.join(", "))
    }
}

fn print_reports(params: &Params, server: &str, reports: &[Report], standby: &Usage, idle: &Usage) {
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let micros =
        |cpu: Option<f64>| cpu.map_or_else(|| "-".to_owned(), |c| format!("{:.0}", c * 1e6));
    println!();
    println!(
        "palmdao API: {} clients on keep-alive connections, {} timed requests per scenario after {} warm-up",
        params.concurrency, params.requests, params.warmup
    );
    println!(
        "machine: {cores} CPUs shared by this client, palmdao (release), RabbitMQ and the database: {server}"
    );
    println!();
    println!(
        "{:<30} {:>8} {:>6} {:>8} {:>7} {:>7} {:>7}  CPU µs/req: all-in (path)",
        "scenario", "requests", "errors", "req/s", "p50 ms", "p99 ms", "max ms"
    );
    for report in reports {
        let o = &report.outcome;
        let sent = o.latencies.len() + o.errors;
        println!(
            "{:<30} {:>8} {:>6} {:>8.1} {:>7.2} {:>7.2} {:>7.2}  {} ({})",
            report.name,
            sent,
            o.errors,
            sent as f64 / o.elapsed.as_secs_f64(),
            percentile(&o.latencies, 0.50),
            percentile(&o.latencies, 0.99),
            o.latencies.last().copied().map_or(f64::NAN, ms),
            micros(report.all_in.cpu),
            micros(report.request_path.cpu),
        );
    }
    println!();
    println!("MongoDB round trips per request (commands counted by palmdao's driver):");
    println!(
        "{:<30} {:>5}  {:<28} {:>6}  relay's share, by command",
        "scenario", "path", "request path, by command", "all-in"
    );
    for report in reports {
        let relay: BTreeMap<String, f64> = report
            .all_in
            .commands
            .iter()
            .map(|(command, total)| {
                let path = report.request_path.commands.get(command);
                (command.clone(), total - path.copied().unwrap_or(0.0))
            })
            .collect();
        println!(
            "{:<30} {:>5.2}  {:<28} {:>6.2}  {}",
            report.name,
            report.request_path.round_trips(),
            breakdown(&report.request_path.commands),
            report.all_in.round_trips(),
            breakdown(&relay),
        );
    }
    println!();
    println!(
        "request path: {} requests with the outbox relay standing by (the bench held its lease), minus the standby's {}",
        params.probe,
        rates(standby)
    );
    println!(
        "all-in: the timed window with the relay live, until it published the window's events, minus the live relay's idle {} and {} µs CPU/s",
        rates(idle),
        micros(idle.cpu)
    );
    println!(
        "the relay scans each outbox collection once per pass: a busy relay makes longer, fewer passes than an idle one, so its share of `find` can be negative"
    );
    println!(
        "CPU µs/req: palmdao's user + system time (10 ms ticks), command counting (mongo.command_metrics) included; latency is per request at the client, queueing included"
    );
    println!(
        "client, palmdao, RabbitMQ and the database share the same {cores} CPUs: the figures compare, they do not size capacity"
    );
}
