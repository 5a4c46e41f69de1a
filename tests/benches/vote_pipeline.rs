//! The vote pipeline end to end: signed votes submitted to palmdao
//! (`POST /v1/proposals/{id}/votes` → 202), validated by palmvalidator,
//! applied by palmdao and counted in the tally. All real processes (release
//! builds), RabbitMQ and MongoDB (or the nx-27017 stand-in). Run:
//! `make bench-votes`.
//!
//! For each validator count (1, then 2), on a fresh palmdao and database,
//! with `BENCH_VOTERS` signed-in members (created `BENCH_SETUP_CONCURRENCY`
//! at a time; the setup time is printed) and every timed run on a proposal
//! of its own, so each member's vote there is a first vote while the run
//! has no more votes than members:
//! - **throughput**: `BENCH_VOTES` votes submitted by `BENCH_CONCURRENCY`
//!   clients as fast as palmdao takes them; votes/s = votes ÷ (first
//!   submission → last vote counted); also each request's time to its 202
//!   as the clients saw it (p50 / p99 / max);
//! - **latency** at about half that rate: a paced run, each vote's
//!   submit-to-decided time read afterwards from the vote documents
//!   (`decided_at − submitted_at`, both stamped by palmdao, so one clock and
//!   no polling load), p50 / p99 / max;
//! - **MongoDB commands per vote** over the throughput run, until the outbox
//!   relay has drained: the Δ of palmdao's `palm_mongo_commands_total`
//!   (`mongo.command_metrics` on) without `ping`, `hello`/`isMaster` and
//!   `endSessions`, ÷ votes, with the split by command. palmvalidator has no
//!   MongoDB client (not a dependency); its `/metrics` are read too and any
//!   command there would be added;
//! - **CPU per vote** of the whole stack over the same window: Σ
//!   utime + stime from `/proc/<pid>/stat` of palmdao, every palmvalidator,
//!   RabbitMQ's `beam.smp` and the database (the stand-in's pid from
//!   `.palm-test/mongo.pid`, else a local process serving PALM_MONGO_URL's
//!   port, else a lone local `mongod`; otherwise "n/a"), split by process.
//!
//! Once per run, before the rows: the database's **single-command rate**,
//! `find_one({_id})` on a 100-document collection from this process (the
//! Rust driver, `BENCH_CONCURRENCY` tasks) for `BENCH_PROBE_SECS`; each
//! row's votes/s is printed as a fraction 1/N of it.
//!
//! In the first row only, after its runs:
//! - **ballots already on the proposal**: a second proposal gets
//!   `BENCH_SEED_BALLOTS` ballot documents written directly into MongoDB
//!   (collection `ballots`, one per proposal and PalmID, `insert_many` in
//!   batches of 1,000; the seeding time is printed), then the same paced run
//!   of `BENCH_RATIO_VOTES` votes at `BENCH_RATIO_RATE`/s (at most a third
//!   of the measured maximum) goes to a fresh proposal and to the seeded
//!   one: p50 submit-to-decided and the database's bytes written per vote
//!   (Δ `write_bytes` of `/proc/<pid>/io`), and their ratios;
//! - **idle cost**: with no traffic, a second palmdao starts on the same
//!   database (it stands by for the leases); after 5 s each replica's
//!   commands/s over `BENCH_IDLE_SECS`, with the split.
//!
//! Then one summary table: figure, measured, goal, met.
//!
//! Knobs (defaults): `BENCH_VOTES` (1000), `BENCH_VOTERS` (1000),
//! `BENCH_CONCURRENCY` (32), `BENCH_SETUP_CONCURRENCY` (16),
//! `BENCH_VALIDATORS` (`1,2`), `BENCH_PROBE_SECS` (3), `BENCH_SEED_BALLOTS`
//! (100000; 0 skips the ballots comparison), `BENCH_RATIO_VOTES` (300),
//! `BENCH_RATIO_RATE` (20), `BENCH_IDLE_SECS` (20; 0 skips the idle part).
//! Votes are real EIP-712 signatures, all signed before their timed window.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use chrono::{Duration as Span, Utc};
use futures_util::{StreamExt, TryStreamExt};
use mongodb::bson::{DateTime as BsonDateTime, Document, doc};
use palm_core::eth::{AddressText, LocalKey};
use palm_core::vote::{VoteDomain, VoteMessage};
use palm_testkit::process::{ServiceProcess, binary};
use palm_tests::palmdao::{Palmdao, key};
use palm_tests::prom::Scrape;
use reqwest::Method;
use serde_json::{Value, json};
use uuid::Uuid;

/// Commands that are connection upkeep or the scraper's readiness check,
/// not work a vote or a replica causes.
const NOT_COUNTED: [&str; 4] = ["ping", "hello", "isMaster", "endSessions"];

/// The leases palmdao's replicas compete for.
const LEASES: [&str; 2] = ["palmdao.outbox", "palmdao.scheduler"];

/// Choices of every bench proposal.
const CHOICES: usize = 3;

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

// ---------------------------------------------------------------- /proc

/// Clock ticks per second of `/proc/<pid>/stat`'s times:
/// `sysconf(_SC_CLK_TCK)` as `getconf CLK_TCK` prints it, else 100.
fn clock_ticks() -> f64 {
    static TICKS: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    *TICKS.get_or_init(|| {
        std::process::Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|out| String::from_utf8(out.stdout).ok()?.trim().parse().ok())
            .filter(|&ticks: &f64| ticks > 0.0)
            .unwrap_or(100.0)
    })
}

/// `(comm, fields after comm)` of `/proc/<pid>/stat`; comm may hold spaces.
fn stat(pid: u32) -> Option<(String, Vec<String>)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (head, rest) = text.rsplit_once(") ")?;
    let (_, comm) = head.split_once(" (")?;
    Some((
        comm.to_owned(),
        rest.split_whitespace().map(str::to_owned).collect(),
    ))
}

/// CPU seconds (user + system, every thread) of `pid` so far.
fn cpu_seconds(pid: u32, ticks: f64) -> Option<f64> {
    let (_, fields) = stat(pid)?;
    let field = |i: usize| fields.get(i)?.parse::<f64>().ok();
    Some((field(11)? + field(12)?) / ticks)
}

/// CPU seconds the whole machine has been busy so far (every core; the
/// first line of `/proc/stat` less idle and iowait).
fn machine_busy_seconds() -> Option<f64> {
    let text = std::fs::read_to_string("/proc/stat").ok()?;
    let fields: Vec<f64> = text
        .lines()
        .next()?
        .split_whitespace()
        .skip(1)
        .take(8)
        .filter_map(|f| f.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal
    let busy: f64 = fields.iter().sum::<f64>() - fields.get(3)? - fields.get(4)?;
    Some(busy / clock_ticks())
}

/// Bytes `pid` has caused to be written to storage so far.
fn write_bytes(pid: u32) -> Option<f64> {
    std::fs::read_to_string(format!("/proc/{pid}/io"))
        .ok()?
        .lines()
        .find_map(|line| line.strip_prefix("write_bytes: "))?
        .trim()
        .parse()
        .ok()
}

fn cmdline(pid: u32) -> String {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|bytes| String::from_utf8_lossy(&bytes).replace('\0', " "))
        .unwrap_or_default()
}

fn all_pids() -> Vec<u32> {
    std::fs::read_dir("/proc")
        .map(|entries| {
            entries
                .flatten()
                .filter_map(|e| e.file_name().to_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// This process's live children running `name`.
fn children_named(name: &str) -> Vec<u32> {
    let me = std::process::id().to_string();
    all_pids()
        .into_iter()
        .filter(|&pid| {
            stat(pid).is_some_and(|(comm, fields)| {
                comm == name && fields.get(1) == Some(&me) && fields[0] != "Z"
            })
        })
        .collect()
}

/// RabbitMQ's Erlang VM.
fn broker_pid() -> Option<u32> {
    all_pids().into_iter().find(|&pid| {
        let line = cmdline(pid);
        line.contains("beam.smp") && line.contains("rabbit")
    })
}

/// The process serving PALM_MONGO_URL, and what it is.
fn database_pid() -> Option<(u32, &'static str)> {
    let url = palm_testkit::mongo_url();
    let port = url
        .trim_start_matches("mongodb://")
        .split(['/', '?', ','])
        .next()
        .and_then(|host| host.rsplit_once(':'))
        .map(|(_, port)| port.to_owned());
    let local = url.contains("127.0.0.1") || url.contains("localhost");
    let state = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../.palm-test");
    let standin = |pid: u32| {
        let line = cmdline(pid);
        line.contains("nx-27017") || line.contains("mongo-standin")
    };
    if local {
        // The stand-in scripts/test-deps.sh started, if it serves this port.
        let recorded = std::fs::read_to_string(state.join("mongo.port")).ok();
        let pid = std::fs::read_to_string(state.join("mongo.pid"))
            .ok()
            .and_then(|p| p.trim().parse().ok())
            .filter(|&pid| stat(pid).is_some());
        if let Some(pid) = pid
            && recorded.as_deref().map(str::trim) == port.as_deref()
        {
            return Some((pid, "nx-27017 stand-in"));
        }
        // Else a local process whose command line names the port.
        if let Some(port) = &port {
            let needle = format!(" {port}");
            for pid in all_pids() {
                let line = cmdline(pid);
                let is_mongod = stat(pid).is_some_and(|(comm, _)| comm == "mongod");
                if (is_mongod || standin(pid)) && line.contains(&needle) {
                    return Some((
                        pid,
                        if is_mongod {
                            "mongod"
                        } else {
                            "nx-27017 stand-in"
                        },
                    ));
                }
            }
        }
        // Else a lone local mongod (default port, no flag).
        let mongods: Vec<u32> = all_pids()
            .into_iter()
            .filter(|&pid| stat(pid).is_some_and(|(comm, _)| comm == "mongod"))
            .collect();
        if let [pid] = mongods[..] {
            return Some((pid, "mongod"));
        }
    }
    None
}

/// The processes of the stack whose CPU is counted.
struct Stack {
    /// `(label, pid)`; a `None` pid prints "n/a".
    parts: Vec<(String, Option<u32>)>,
    ticks: f64,
}

impl Stack {
    /// palmdao (this process's only palmdao child now), the validators,
    /// RabbitMQ and the database.
    fn find() -> Self {
        let mut parts = Vec::new();
        let palmdao = children_named("palmdao");
        assert_eq!(palmdao.len(), 1, "one palmdao child: {palmdao:?}");
        parts.push(("palmdao".to_owned(), Some(palmdao[0])));
        let mut validators = children_named("palmvalidator");
        validators.sort_unstable();
        for (i, pid) in validators.into_iter().enumerate() {
            parts.push((format!("palmvalidator #{}", i + 1), Some(pid)));
        }
        parts.push(("RabbitMQ (beam.smp)".to_owned(), broker_pid()));
        let (db_pid, db_label) = database_pid().map_or((None, "MongoDB"), |(p, l)| (Some(p), l));
        parts.push((db_label.to_owned(), db_pid));
        Self {
            parts,
            ticks: clock_ticks(),
        }
    }

    fn database(&self) -> Option<u32> {
        self.parts.last().and_then(|(_, pid)| *pid)
    }

    fn cpu(&self) -> Vec<Option<f64>> {
        self.parts
            .iter()
            .map(|(_, pid)| pid.and_then(|pid| cpu_seconds(pid, self.ticks)))
            .collect()
    }
}

// ---------------------------------------------------------------- metrics

/// Counted MongoDB commands by name on one `/metrics` page.
fn commands(scrape: &Scrape) -> BTreeMap<String, f64> {
    let mut by_name = BTreeMap::new();
    for sample in &scrape.samples {
        if sample.name != "palm_mongo_commands_total" {
            continue;
        }
        let name = sample.labels.get("command").cloned().unwrap_or_default();
        if !NOT_COUNTED.contains(&name.as_str()) {
            *by_name.entry(name).or_insert(0.0) += sample.value;
        }
    }
    by_name
}

fn difference(
    after: &BTreeMap<String, f64>,
    before: &BTreeMap<String, f64>,
) -> BTreeMap<String, f64> {
    after
        .iter()
        .map(|(name, v)| (name.clone(), v - before.get(name).copied().unwrap_or(0.0)))
        .filter(|(_, v)| *v != 0.0)
        .collect()
}

fn scaled(counts: &BTreeMap<String, f64>, divisor: f64) -> BTreeMap<String, f64> {
    counts
        .iter()
        .map(|(name, v)| (name.clone(), v / divisor))
        .collect()
}

/// `find 1.00, insert 1.00`, largest first, leaving out what rounds to 0.
fn breakdown(per: &BTreeMap<String, f64>) -> String {
    let mut parts: Vec<(&String, &f64)> = per.iter().filter(|(_, v)| v.abs() >= 0.005).collect();
    parts.sort_by(|a, b| b.1.total_cmp(a.1));
    if parts.is_empty() {
        return "none".to_owned();
    }
    parts
        .iter()
        .map(|(name, v)| format!("{name} {v:.2}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Votes palmdao has applied so far: (valid, rejected), from its counter.
async fn applied(admin: &str) -> (f64, f64) {
    let scrape = Scrape::of(admin).await;
    let outcome = |o: &str| {
        scrape
            .value("palm_votes_applied_total", &[("outcome", o)])
            .unwrap_or(0.0)
    };
    (outcome("valid"), outcome("rejected"))
}

/// Waits until the outbox relay has published everything staged: lag 0 and
/// nothing published between two scrapes half a second apart.
async fn settle(admin: &str) {
    let deadline = Instant::now() + Duration::from_secs(120);
    let published = |s: &Scrape| s.sum("palm_outbox_published_total");
    let mut last = published(&Scrape::of(admin).await);
    loop {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let scrape = Scrape::of(admin).await;
        let lag = scrape.value("palm_outbox_lag_seconds", &[]).unwrap_or(0.0);
        if lag == 0.0 && published(&scrape) == last {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the outbox did not drain in 2 minutes"
        );
        last = published(&scrape);
    }
}

// ---------------------------------------------------------------- votes

struct Voter {
    key: LocalKey,
    token: String,
}

/// A vote ready to send: the voter's token and the request body.
struct Ballot {
    token: String,
    body: Value,
}

/// Signs `count` votes round-robin over `voters`: the first `voters.len()`
/// are each voter's first vote on `proposal`; any later round is signed a
/// second later, so it replaces the voter's ballot.
fn sign(proposal: &str, voters: &[Voter], count: usize) -> Vec<Ballot> {
    let first_timestamp = u64::try_from(Utc::now().timestamp()).unwrap();
    (0..count)
        .map(|i| {
            let voter = &voters[i % voters.len()];
            let choice = u32::try_from(i % CHOICES).unwrap() + 1;
            let timestamp = first_timestamp + (i / voters.len()) as u64;
            let message = VoteMessage {
                proposal: proposal.to_owned(),
                choice: json!(choice),
                timestamp,
                voter: voter.key.address(),
                app: "palm.test".to_owned(),
            };
            let signature = message.sign(&VoteDomain::default(), &voter.key).unwrap();
            Ballot {
                token: voter.token.clone(),
                body: json!({
                    "choice": choice, "timestamp": timestamp,
                    "address": voter.key.address().to_checksummed(),
                    "signature": signature.to_string(),
                }),
            }
        })
        .collect()
}

/// Sends `ballots` from `concurrency` clients, at most `rate` per second
/// (unpaced if `None`). Every answer must be 202. Returns each request's
/// time to its answer, ms, sorted.
async fn submit(
    http: &reqwest::Client,
    url: &str,
    ballots: Arc<Vec<Ballot>>,
    concurrency: usize,
    rate: Option<f64>,
) -> Vec<f64> {
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let workers: Vec<_> = (0..concurrency)
        .map(|_| {
            let (http, url, ballots, next) = (
                http.clone(),
                url.to_owned(),
                Arc::clone(&ballots),
                Arc::clone(&next),
            );
            tokio::spawn(async move {
                let mut answered = Vec::new();
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(ballot) = ballots.get(i) else { break };
                    if let Some(rate) = rate {
                        let due = started + Duration::from_secs_f64(i as f64 / rate);
                        tokio::time::sleep_until(due.into()).await;
                    }
                    let sent = Instant::now();
                    let response = http
                        .post(&url)
                        .bearer_auth(&ballot.token)
                        .json(&ballot.body)
                        .send()
                        .await
                        .unwrap();
                    assert_eq!(response.status(), 202, "{:?}", response.text().await);
                    answered.push(sent.elapsed().as_secs_f64() * 1000.0);
                }
                answered
            })
        })
        .collect();
    let mut answered = Vec::new();
    for worker in workers {
        answered.extend(worker.await.unwrap());
    }
    answered.sort_by(f64::total_cmp);
    answered
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

// ---------------------------------------------------------------- runs

/// The run's knobs.
struct Params {
    votes: usize,
    voters: usize,
    concurrency: usize,
    setup_concurrency: usize,
    validators: Vec<usize>,
    probe_secs: f64,
    seed_ballots: usize,
    ratio_votes: usize,
    ratio_rate: f64,
    idle_secs: u64,
}

/// One row's running stack and its members.
struct Bench {
    palmdao: Palmdao,
    validator_admins: Vec<String>,
    http: reqwest::Client,
    admin_token: String,
    slug: String,
    voters: Vec<Voter>,
    validators: Vec<ServiceProcess>,
    db: mongodb::Database,
    votes: mongodb::Collection<Document>,
    concurrency: usize,
    stack: Stack,
}

/// What one timed run measured.
struct Window {
    count: usize,
    /// First submission → last vote decided, seconds.
    seconds: f64,
    /// Submit-to-decided, ms, sorted.
    latencies: Vec<f64>,
    /// Request-to-202 as the clients saw it, ms, sorted.
    answered: Vec<f64>,
    /// Counted MongoDB commands (palmdao and validators), submit → drained.
    commands: BTreeMap<String, f64>,
    /// CPU seconds per stack part, submit → drained.
    cpu: Vec<Option<f64>>,
    /// Bytes the database wrote, submit → drained.
    written: Option<f64>,
    /// CPU seconds the whole machine was busy, and the window's wall time.
    machine: Option<(f64, f64)>,
}

impl Window {
    fn rate(&self) -> f64 {
        self.count as f64 / self.seconds
    }

    fn commands_per_vote(&self) -> f64 {
        self.commands.values().sum::<f64>() / self.count as f64
    }

    fn cpu_ms_per_vote(&self, part: usize) -> Option<f64> {
        self.cpu[part].map(|s| s * 1000.0 / self.count as f64)
    }

    /// The whole stack's CPU ms per vote, if every part was readable.
    fn stack_cpu_ms_per_vote(&self) -> Option<f64> {
        (0..self.cpu.len())
            .map(|i| self.cpu_ms_per_vote(i))
            .sum::<Option<f64>>()
    }
}

impl Bench {
    /// A fresh palmdao (commands counted) and database, `instances`
    /// validators, a community and its signed-in members.
    async fn start(params: &Params, instances: usize) -> (Self, Duration) {
        let palmdao = Palmdao::start_with(&[
            ("PALM__COMMUNITIES__CREATE_MIN_LEVEL", "1"),
            ("PALM__MONGO__COMMAND_METRICS", "true"),
        ])
        .await;
        let admin = palmdao
            .sign_in(&key(&format!("admin-{}", Uuid::new_v4())))
            .await;
        let admin_token = admin["token"].as_str().unwrap().to_owned();
        let slug = format!("b-{}", &Uuid::new_v4().simple().to_string()[..8]);
        let (status, body) = palmdao
            .send(
                Method::POST,
                "/v1/communities",
                Some(&admin_token),
                &json!({ "slug": slug, "name": "Bench" }),
            )
            .await;
        assert_eq!(status, 201, "{body}");
        let setup = Instant::now();
        let voters: Vec<Voter> = futures_util::stream::iter(0..params.voters)
            .map(|_| async {
                let (key, token) = palmdao.new_member("voter").await;
                palmdao.join(&slug, &token).await;
                Voter { key, token }
            })
            .buffer_unordered(params.setup_concurrency.max(1))
            .collect()
            .await;
        let setup = setup.elapsed();
        let mongo = mongodb::Client::with_uri_str(palm_testkit::mongo_url())
            .await
            .unwrap();
        let db = mongo.database(&palmdao.env.database);
        let votes = db.collection::<Document>("votes");
        let mut validator_admins = Vec::new();
        let mut validators = Vec::new();
        for _ in 0..instances {
            let validator = ServiceProcess::spawn(binary("palmvalidator"), &palmdao.env.vars(&[]));
            let admin = validator.admin_addr(Duration::from_secs(20)).await;
            palm_testkit::eventually("validator ready", Duration::from_secs(30), || {
                let admin = admin.clone();
                async move { (palm_tests::get(&admin, "/readyz").await.0 == 200).then_some(()) }
            })
            .await;
            validator_admins.push(admin);
            validators.push(validator);
        }
        let stack = Stack::find();
        (
            Self {
                palmdao,
                validator_admins,
                http: palm_service::http::client(),
                admin_token,
                slug,
                voters,
                validators,
                db,
                votes,
                concurrency: params.concurrency,
                stack,
            },
            setup,
        )
    }

    /// A new open proposal in the bench community.
    async fn proposal(&self) -> String {
        let (status, proposal) = self
            .palmdao
            .send(
                Method::POST,
                &format!("/v1/communities/{}/proposals", self.slug),
                Some(&self.admin_token),
                &json!({
                    "title": "Bench", "choices": ["a", "b", "c"], "voting_type": "single-choice",
                    "start": Utc::now(), "end": Utc::now() + Span::hours(2),
                }),
            )
            .await;
        assert_eq!(status, 201, "{proposal}");
        proposal["id"].as_str().unwrap().to_owned()
    }

    /// Counted commands on palmdao's and the validators' pages.
    async fn commands(&self) -> BTreeMap<String, f64> {
        let mut all = commands(&Scrape::of(&self.palmdao.admin).await);
        for admin in &self.validator_admins {
            for (name, v) in commands(&Scrape::of(admin).await) {
                *all.entry(format!("{name} (palmvalidator)")).or_insert(0.0) += v;
            }
        }
        all
    }

    /// `count` votes on `proposal` (each member's first while `count` ≤
    /// members), paced at `rate`/s or unpaced, measured until every vote
    /// is counted and the outbox drained.
    async fn run(&self, proposal: &str, count: usize, rate: Option<f64>) -> Window {
        let ballots = Arc::new(sign(proposal, &self.voters, count));
        let url = format!("{}/v1/proposals/{proposal}/votes", self.palmdao.base);
        let admin = &self.palmdao.admin;
        let commands_before = self.commands().await;
        let (valid_before, rejected_before) = applied(admin).await;
        let written_before = self.stack.database().and_then(write_bytes);
        let cpu_before = self.stack.cpu();
        let machine_before = (machine_busy_seconds(), Instant::now());
        let since = Utc::now();
        let answered = submit(&self.http, &url, ballots, self.concurrency, rate).await;
        let deadline = Instant::now() + Duration::from_secs(900);
        loop {
            let (valid, rejected) = applied(admin).await;
            assert_eq!(rejected, rejected_before, "a vote was rejected");
            if valid - valid_before >= count as f64 {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "only {} of {count} votes applied",
                valid - valid_before
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        settle(admin).await;
        let machine = machine_busy_seconds()
            .zip(machine_before.0)
            .map(|(after, before)| (after - before, machine_before.1.elapsed().as_secs_f64()));
        let cpu = self
            .stack
            .cpu()
            .iter()
            .zip(&cpu_before)
            .map(|(after, before)| Some((*after)? - (*before)?))
            .collect();
        let written = match (self.stack.database().and_then(write_bytes), written_before) {
            (Some(after), Some(before)) => Some(after - before),
            _ => None,
        };
        let commands = difference(&self.commands().await, &commands_before);

        // Submit-to-decided of each vote, read once from the documents.
        let filter = doc! {
            "proposal_id": proposal,
            "submitted_at": { "$gte": BsonDateTime::from_millis(since.timestamp_millis()) },
        };
        let documents: Vec<Document> = self
            .votes
            .find(filter)
            .await
            .unwrap()
            .try_collect()
            .await
            .unwrap();
        assert_eq!(documents.len(), count);
        let mut last = since;
        let mut latencies = Vec::with_capacity(documents.len());
        for vote in &documents {
            assert_eq!(vote.get_str("status").unwrap(), "valid", "{vote}");
            let submitted = vote
                .get_datetime("submitted_at")
                .unwrap()
                .timestamp_millis();
            let decided = vote.get_datetime("decided_at").unwrap().timestamp_millis();
            latencies.push((decided - submitted) as f64);
            last = last.max(chrono::DateTime::from_timestamp_millis(decided).unwrap());
        }
        latencies.sort_by(f64::total_cmp);
        Window {
            count,
            seconds: (last - since).num_milliseconds() as f64 / 1000.0,
            latencies,
            answered,
            commands,
            cpu,
            written,
            machine,
        }
    }

    /// The tally of `proposal` counts `expected` voters.
    async fn check_voters(&self, proposal: &str, expected: usize) {
        let (_, results) = self
            .palmdao
            .get(&format!("/v1/proposals/{proposal}/results"), None)
            .await;
        assert_eq!(results["voters"], expected, "{results}");
    }

    async fn stop(self) {
        for mut validator in self.validators {
            validator.sigterm();
            validator.wait(Duration::from_secs(15)).await;
        }
        self.palmdao.stop().await;
        self.db.drop().await.ok();
    }
}

/// The database's own rate for the simplest command: `find_one({_id})` on a
/// small collection from `concurrency` tasks for `seconds`.
async fn single_command_rate(concurrency: usize, seconds: f64) -> f64 {
    let client = mongodb::Client::with_uri_str(palm_testkit::mongo_url())
        .await
        .unwrap();
    let db = client.database(&palm_testkit::unique_database());
    let collection = db.collection::<Document>("probe");
    collection
        .insert_many((0..100_i64).map(|i| doc! { "_id": i, "value": format!("v{i}") }))
        .await
        .unwrap();
    // A short warm-up, then the timed window.
    for i in 0..50_i64 {
        collection.find_one(doc! { "_id": i }).await.unwrap();
    }
    let done = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let tasks: Vec<_> = (0..concurrency)
        .map(|t| {
            let (collection, done, stop) =
                (collection.clone(), Arc::clone(&done), Arc::clone(&stop));
            tokio::spawn(async move {
                let mut i = t;
                while !stop.load(Ordering::Relaxed) {
                    let id = i64::try_from(i % 100).unwrap();
                    assert!(
                        collection
                            .find_one(doc! { "_id": id })
                            .await
                            .unwrap()
                            .is_some()
                    );
                    done.fetch_add(1, Ordering::Relaxed);
                    i += 7;
                }
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_secs_f64(seconds)).await;
    stop.store(true, Ordering::Relaxed);
    let count = done.load(Ordering::Relaxed);
    let elapsed = started.elapsed().as_secs_f64();
    for task in tasks {
        task.await.unwrap();
    }
    db.drop().await.ok();
    count as f64 / elapsed
}

/// Writes `count` ballots of `proposal` into `ballots` (the per-(proposal,
/// PalmID) ballot model) in batches of 1,000.
async fn seed_ballots(db: &mongodb::Database, proposal: &str, count: usize) -> Duration {
    let ballots = db.collection::<Document>("ballots");
    let started = Instant::now();
    let now = Utc::now();
    let mut done = 0;
    while done < count {
        let batch = (count - done).min(1000);
        let documents: Vec<Document> = (done..done + batch)
            .map(|i| {
                let palm_id = Uuid::new_v4().to_string();
                let allocation: Vec<f64> = (0..CHOICES)
                    .map(|c| if c == i % CHOICES { 1.0 } else { 0.0 })
                    .collect();
                doc! {
                    "_id": format!("{proposal}:{palm_id}"),
                    "proposal_id": proposal,
                    "palm_id": &palm_id,
                    "vote_id": Uuid::now_v7().to_string(),
                    "timestamp": now.timestamp() - 60,
                    "allocation": allocation,
                    "power": 1.0,
                    "counted_at": BsonDateTime::from_millis(now.timestamp_millis()),
                }
            })
            .collect();
        ballots.insert_many(documents).await.unwrap();
        done += batch;
    }
    started.elapsed()
}

/// One row's figures.
struct Row {
    instances: usize,
    setup: Duration,
    throughput: Window,
    paced_rate: f64,
    paced: Window,
    parts: Vec<String>,
    ratio: Option<Ratio>,
    idle: Option<Vec<Idle>>,
}

/// The same paced run on a fresh proposal and on one with seeded ballots.
struct Ratio {
    seeded: usize,
    seeding: Duration,
    rate: f64,
    fresh: Window,
    loaded: Window,
}

impl Ratio {
    fn p50(&self) -> (f64, f64) {
        (
            percentile(&self.fresh.latencies, 50.0),
            percentile(&self.loaded.latencies, 50.0),
        )
    }

    fn bytes(&self) -> Option<(f64, f64)> {
        Some((
            self.fresh.written? / self.fresh.count as f64,
            self.loaded.written? / self.loaded.count as f64,
        ))
    }
}

/// One idle replica.
struct Idle {
    role: String,
    seconds: f64,
    commands: BTreeMap<String, f64>,
}

impl Idle {
    fn rate(&self) -> f64 {
        self.commands.values().sum::<f64>() / self.seconds
    }
}

/// Leases `admin`'s palmdao holds now.
fn leases_held(scrape: &Scrape) -> Vec<&'static str> {
    LEASES
        .into_iter()
        .filter(|lease| scrape.value("palm_lease_held", &[("lease", lease)]) == Some(1.0))
        .collect()
}

/// A second palmdao on `bench`'s database; both replicas' commands/s over
/// `seconds` with no traffic.
async fn idle_cost(bench: &Bench, seconds: u64) -> Vec<Idle> {
    let mut second = Palmdao::start_in(
        bench.palmdao.env.clone(),
        &[
            ("PALM__COMMUNITIES__CREATE_MIN_LEVEL", "1"),
            ("PALM__MONGO__COMMAND_METRICS", "true"),
        ],
    )
    .await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    let admins = [bench.palmdao.admin.clone(), second.admin.clone()];
    let mut before = Vec::new();
    for admin in &admins {
        before.push(commands(&Scrape::of(admin).await));
    }
    let started = Instant::now();
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    let mut idle = Vec::new();
    for (i, admin) in admins.iter().enumerate() {
        let scrape = Scrape::of(admin).await;
        let elapsed = started.elapsed().as_secs_f64();
        let held = leases_held(&scrape);
        let which = if i == 0 { "first" } else { "second" };
        let role = if held.is_empty() {
            format!("{which}: standby")
        } else {
            format!("{which}: holds {}", held.join(", "))
        };
        idle.push(Idle {
            role,
            seconds: elapsed,
            commands: difference(&commands(&scrape), &before[i]),
        });
    }
    // Stop the second replica alone: the queues and database stay the
    // first's until its own stop.
    second.process_mut().sigterm();
    second.process_mut().wait(Duration::from_secs(15)).await;
    idle
}

async fn row(params: &Params, instances: usize, extras: bool) -> Row {
    let (bench, setup) = Bench::start(params, instances).await;
    eprintln!(
        "bench: {} members signed in and joined in {setup:.1?}",
        params.voters
    );
    let parts = bench.stack.parts.iter().map(|(l, _)| l.clone()).collect();

    // Warm-up: a few hundred votes through the whole pipeline.
    let warmup = bench.proposal().await;
    bench.run(&warmup, 300.min(params.voters), None).await;

    // Throughput: as fast as palmdao takes them.
    let proposal = bench.proposal().await;
    let throughput = bench.run(&proposal, params.votes, None).await;
    bench
        .check_voters(&proposal, params.votes.min(params.voters))
        .await;
    eprintln!(
        "bench: {instances} validator(s): {:.0} votes/s",
        throughput.rate()
    );

    // Latency at about half that rate.
    let paced_rate = throughput.rate() / 2.0;
    let paced_count = ((paced_rate * 20.0) as usize).clamp(200.min(params.votes), params.votes);
    let proposal = bench.proposal().await;
    let paced = bench.run(&proposal, paced_count, Some(paced_rate)).await;

    let ratio = if extras && params.seed_ballots > 0 {
        let rate = params.ratio_rate.min(throughput.rate() / 3.0);
        let fresh = bench.proposal().await;
        let seeded = bench.proposal().await;
        let seeding = seed_ballots(&bench.db, &seeded, params.seed_ballots).await;
        eprintln!(
            "bench: {} ballots seeded in {seeding:.1?}",
            params.seed_ballots
        );
        let fresh = bench.run(&fresh, params.ratio_votes, Some(rate)).await;
        let loaded = bench.run(&seeded, params.ratio_votes, Some(rate)).await;
        Some(Ratio {
            seeded: params.seed_ballots,
            seeding,
            rate,
            fresh,
            loaded,
        })
    } else {
        None
    };
    let idle = if extras && params.idle_secs > 0 {
        Some(idle_cost(&bench, params.idle_secs).await)
    } else {
        None
    };
    bench.stop().await;
    Row {
        instances,
        setup,
        throughput,
        paced_rate,
        paced,
        parts,
        ratio,
        idle,
    }
}

// ---------------------------------------------------------------- report

fn ms(v: Option<f64>) -> String {
    v.map_or_else(|| "n/a".to_owned(), |v| format!("{v:.2} ms"))
}

fn met(ok: Option<bool>) -> &'static str {
    match ok {
        Some(true) => "yes",
        Some(false) => "**no**",
        None => "n/a",
    }
}

#[tokio::main]
async fn main() {
    let params = Params {
        votes: env_or("BENCH_VOTES", 1000),
        voters: env_or("BENCH_VOTERS", 1000_usize).max(1),
        concurrency: env_or("BENCH_CONCURRENCY", 32),
        setup_concurrency: env_or("BENCH_SETUP_CONCURRENCY", 16),
        validators: std::env::var("BENCH_VALIDATORS")
            .unwrap_or_else(|_| "1,2".into())
            .split(',')
            .filter_map(|s| s.trim().parse().ok())
            .collect(),
        probe_secs: env_or("BENCH_PROBE_SECS", 3.0),
        seed_ballots: env_or("BENCH_SEED_BALLOTS", 100_000),
        ratio_votes: env_or("BENCH_RATIO_VOTES", 300),
        ratio_rate: env_or("BENCH_RATIO_RATE", 20.0),
        idle_secs: env_or("BENCH_IDLE_SECS", 20),
    };
    let probe = single_command_rate(params.concurrency, params.probe_secs).await;
    let mut rows = Vec::new();
    for (i, &instances) in params.validators.iter().enumerate() {
        rows.push(row(&params, instances, i == 0).await);
    }

    println!(
        "vote pipeline: palmdao + N palmvalidator (release), {} votes per throughput run \
         ({} first votes), {} clients, {} voters, a fresh database per row; MongoDB: {}",
        params.votes,
        params.votes.min(params.voters),
        params.concurrency,
        params.voters,
        palm_testkit::mongo_url()
    );
    println!("(client, services, RabbitMQ and MongoDB share this machine's cores)");
    println!(
        "single-command rate: find_one({{_id}}) from {} tasks for {:.0} s: {probe:.0} commands/s",
        params.concurrency, params.probe_secs
    );
    for row in &rows {
        println!(
            "setup ({} validator(s)): {} members signed in and joined in {:.1} s ({} at a time)",
            row.instances,
            params.voters,
            row.setup.as_secs_f64(),
            params.setup_concurrency
        );
    }
    println!();
    println!(
        "| validators | votes/s (submit → counted) | paced at | p50 | p99 | max | \
         MongoDB commands/vote | CPU/vote (stack) | votes/s ÷ single-command rate |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    for row in &rows {
        let lat = &row.paced.latencies;
        println!(
            "| {} | {:.0} | {:.0}/s × {} | {:.0} ms | {:.0} ms | {:.0} ms | {:.2} | {} | 1/{:.1} |",
            row.instances,
            row.throughput.rate(),
            row.paced_rate,
            row.paced.count,
            percentile(lat, 50.0),
            percentile(lat, 99.0),
            lat.last().copied().unwrap_or_default(),
            row.throughput.commands_per_vote(),
            ms(row.throughput.stack_cpu_ms_per_vote()),
            probe / row.throughput.rate(),
        );
    }
    println!();
    println!(
        "request → 202 during the throughput run (what a client waits for while the pipeline is full):"
    );
    for row in &rows {
        let answered = &row.throughput.answered;
        println!(
            "- {} validator(s): p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
            row.instances,
            percentile(answered, 50.0),
            percentile(answered, 99.0),
            answered.last().copied().unwrap_or_default(),
        );
    }
    println!();
    println!(
        "MongoDB commands per vote over the throughput run, submit → outbox drained \
         (palmdao; palmvalidator has no MongoDB client, its /metrics show none):"
    );
    println!("| validators | commands/vote | by command |");
    println!("|---|---|---|");
    for row in &rows {
        let per = scaled(&row.throughput.commands, row.throughput.count as f64);
        println!(
            "| {} | {:.2} | {} |",
            row.instances,
            row.throughput.commands_per_vote(),
            breakdown(&per)
        );
    }
    println!();
    println!(
        "CPU per vote over the throughput run (Σ utime + stime from /proc, {} ticks/s):",
        clock_ticks()
    );
    for row in &rows {
        let split: Vec<String> = row
            .parts
            .iter()
            .enumerate()
            .map(|(i, label)| format!("{label} {}", ms(row.throughput.cpu_ms_per_vote(i))))
            .collect();
        println!(
            "- {} validator(s): {} = {}",
            row.instances,
            split.join(" + "),
            ms(row.throughput.stack_cpu_ms_per_vote())
        );
        if let Some((busy, wall)) = row.throughput.machine {
            let stack: f64 = row.throughput.cpu.iter().flatten().sum();
            let cores = std::thread::available_parallelism().map_or(1, usize::from);
            let share = |seconds: f64| seconds / wall / cores as f64 * 100.0;
            println!(
                "  (the machine's {cores} cores were {:.0}% busy over those {wall:.1} s, the stack \
                 {:.0}%: anything else running shares the cores, the broker and the database)",
                share(busy),
                share(stack),
            );
        }
    }
    let first = &rows[0];
    if let Some(ratio) = &first.ratio {
        println!();
        println!(
            "ballots already on the proposal ({} validator(s)): {} ballots seeded into `ballots` \
             in {:.1} s (insert_many × 1000, not timed below); {} votes at {:.1}/s on each proposal:",
            first.instances,
            ratio.seeded,
            ratio.seeding.as_secs_f64(),
            ratio.fresh.count,
            ratio.rate
        );
        println!(
            "| proposal | p50 submit → decided | p99 | database bytes written/vote | commands/vote |"
        );
        println!("|---|---|---|---|---|");
        let seeded = format!("{} ballots", ratio.seeded);
        for (name, window) in [
            ("no ballots", &ratio.fresh),
            (seeded.as_str(), &ratio.loaded),
        ] {
            println!(
                "| {name} | {:.0} ms | {:.0} ms | {} | {:.2} |",
                percentile(&window.latencies, 50.0),
                percentile(&window.latencies, 99.0),
                window.written.map_or_else(
                    || "n/a".to_owned(),
                    |w| format!("{:.0} B", w / window.count as f64)
                ),
                window.commands_per_vote(),
            );
        }
        let (p50_fresh, p50_loaded) = ratio.p50();
        println!(
            "| ratio | {:.2} | | {} | |",
            p50_loaded / p50_fresh,
            ratio
                .bytes()
                .map_or_else(|| "n/a".to_owned(), |(f, l)| format!("{:.2}", l / f)),
        );
    }
    if let Some(idle) = &first.idle {
        println!();
        println!(
            "idle: two palmdao replicas on one database, no traffic, {} s ({} validator(s) running):",
            params.idle_secs, first.instances
        );
        println!("| replica | commands/s | by command (per s) |");
        println!("|---|---|---|");
        for replica in idle {
            println!(
                "| {} | {:.2} | {} |",
                replica.role,
                replica.rate(),
                breakdown(&scaled(&replica.commands, replica.seconds))
            );
        }
    }

    // The summary, from the first row.
    let tp = &first.throughput;
    let commands_per_vote = tp.commands_per_vote();
    let cpu = tp.stack_cpu_ms_per_vote();
    let p99 = percentile(&first.paced.latencies, 99.0);
    let fraction = probe / tp.rate();
    println!();
    println!(
        "summary ({} validator(s), {} votes, {} voters):",
        first.instances, params.votes, params.voters
    );
    println!("| figure | measured | goal | met? |");
    println!("|---|---|---|---|");
    println!(
        "| MongoDB commands per vote end to end | {commands_per_vote:.2} | ≤ 5 | {} |",
        met(Some(commands_per_vote <= 5.0))
    );
    println!(
        "| votes/s until counted | {:.0} | ≥ 110 | {} |",
        tp.rate(),
        met(Some(tp.rate() >= 110.0))
    );
    println!(
        "| votes/s ÷ single-command rate ({probe:.0}/s) | 1/{fraction:.1} | ≥ 1/8 | {} |",
        met(Some(fraction <= 8.0))
    );
    println!(
        "| CPU per vote, whole stack | {} | ≤ 12 ms | {} |",
        ms(cpu),
        met(cpu.map(|c| c <= 12.0))
    );
    println!(
        "| p99 submit → decided at half the max rate | {p99:.0} ms | ≤ 100 ms | {} |",
        met(Some(p99 <= 100.0))
    );
    if let Some(ratio) = &first.ratio {
        let (fresh, loaded) = ratio.p50();
        let bytes = ratio.bytes().map(|(f, l)| l / f);
        println!(
            "| p50 latency, {} ballots ÷ none | {:.2} | ≤ 1.5 | {} |",
            ratio.seeded,
            loaded / fresh,
            met(Some(loaded / fresh <= 1.5))
        );
        println!(
            "| bytes written per vote, {} ballots ÷ none | {} | ≤ 1.5 | {} |",
            ratio.seeded,
            bytes.map_or_else(|| "n/a".to_owned(), |b| format!("{b:.2}")),
            met(bytes.map(|b| b <= 1.5))
        );
    }
    if let Some(idle) = &first.idle {
        let rates: Vec<String> = idle
            .iter()
            .map(|r| format!("{:.2} ({})", r.rate(), r.role))
            .collect();
        let worst = idle.iter().map(Idle::rate).fold(0.0, f64::max);
        println!(
            "| idle MongoDB commands/s per palmdao replica | {} | ≤ 2 | {} |",
            rates.join("; "),
            met(Some(worst <= 2.0))
        );
    }
}
