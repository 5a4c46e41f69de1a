//! The vote pipeline end to end: signed votes submitted to palmdao
//! (`POST /v1/proposals/{id}/votes` → 202), validated by palmvalidator,
//! applied by palmdao and counted in the tally. All real processes (release
//! builds), RabbitMQ and MongoDB.
//!
//! For 1 and then 2 validator instances it prints:
//! - **throughput**: `BENCH_VOTES` votes submitted by `BENCH_CONCURRENCY`
//!   clients as fast as palmdao takes them; votes/s = votes ÷ (first
//!   submission → last vote counted);
//! - **latency** at about half that rate: a paced run, each vote's
//!   submit-to-decided time read afterwards from the vote documents
//!   (`decided_at − submitted_at`, both stamped by palmdao, so one clock and
//!   no polling load), p50 / p99 / max.
//!
//! Votes are real EIP-712 signatures from `BENCH_VOTERS` signed-in members,
//! all signed before any timed window. Run: `make bench-votes`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use chrono::{Duration as Span, Utc};
use futures_util::TryStreamExt;
use mongodb::bson::{Document, doc};
use palm_core::eth::{AddressText, LocalKey};
use palm_core::vote::{VoteDomain, VoteMessage};
use palm_testkit::process::{ServiceProcess, binary};
use palm_tests::palmdao::{Palmdao, key};
use reqwest::Method;
use serde_json::{Value, json};
use uuid::Uuid;

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

struct Voter {
    key: LocalKey,
    token: String,
}

/// A vote ready to send: the voter's token and the request body.
struct Ballot {
    token: String,
    body: Value,
}

/// Signs `count` distinct votes round-robin over `voters`.
fn sign(proposal: &str, voters: &[Voter], count: usize, first_timestamp: u64) -> Vec<Ballot> {
    (0..count)
        .map(|i| {
            let voter = &voters[i % voters.len()];
            let choice = u32::try_from(i % 3).unwrap() + 1;
            let timestamp = first_timestamp + i as u64;
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
/// (unpaced if `None`). Every answer must be 202.
async fn submit(
    http: &reqwest::Client,
    url: &str,
    ballots: Arc<Vec<Ballot>>,
    concurrency: usize,
    rate: Option<f64>,
) {
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
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(ballot) = ballots.get(i) else { break };
                    if let Some(rate) = rate {
                        let due = started + Duration::from_secs_f64(i as f64 / rate);
                        tokio::time::sleep_until(due.into()).await;
                    }
                    let response = http
                        .post(&url)
                        .bearer_auth(&ballot.token)
                        .json(&ballot.body)
                        .send()
                        .await
                        .unwrap();
                    assert_eq!(response.status(), 202, "{:?}", response.text().await);
                }
            })
        })
        .collect();
    for worker in workers {
        worker.await.unwrap();
    }
}

/// Votes palmdao has applied as valid so far, from its own counter.
async fn applied(admin: &str) -> f64 {
    let (_, metrics) = palm_tests::get(admin, "/metrics").await;
    metrics
        .lines()
        .filter(|l| l.starts_with("palm_votes_applied_total") && l.contains("outcome=\"valid\""))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Waits until palmdao has applied `count` more valid votes than `before`
/// (polling its metrics, which costs the database nothing); then returns
/// when the last of the votes submitted since `since` was decided and their
/// submit-to-decided times, read once from the vote documents.
async fn decided(
    admin: &str,
    before: f64,
    votes: &mongodb::Collection<Document>,
    proposal: &str,
    since: chrono::DateTime<Utc>,
    count: usize,
) -> (chrono::DateTime<Utc>, Vec<f64>) {
    let deadline = Instant::now() + Duration::from_secs(900);
    loop {
        let done = applied(admin).await - before;
        if done >= count as f64 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "only {done} of {count} votes applied"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let filter = doc! {
        "proposal_id": proposal,
        "submitted_at": { "$gte": mongodb::bson::DateTime::from_millis(since.timestamp_millis()) },
    };
    let documents: Vec<Document> = votes
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
    (last, latencies)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// The run's knobs.
struct Params {
    votes: usize,
    voters: usize,
    concurrency: usize,
}

/// One scenario on a fresh palmdao and database (so data left by an earlier
/// scenario cannot slow this one): `instances` validators, a throughput run,
/// then a paced run at half the measured rate. Returns the table row.
async fn scenario(params: &Params, instances: usize) -> String {
    let palmdao = Palmdao::start_with(&[("PALM__COMMUNITIES__CREATE_MIN_LEVEL", "1")]).await;
    let http = palm_service::http::client();

    // A community, an open proposal and its signed-in members.
    let admin = palmdao
        .sign_in(&key(&format!("admin-{}", Uuid::new_v4())))
        .await;
    let admin_token = admin["token"].as_str().unwrap();
    let slug = format!("b-{}", &Uuid::new_v4().simple().to_string()[..8]);
    let (status, _) = palmdao
        .send(
            Method::POST,
            "/v1/communities",
            Some(admin_token),
            &json!({ "slug": slug, "name": "Bench" }),
        )
        .await;
    assert_eq!(status, 201);
    let (status, proposal) = palmdao
        .send(
            Method::POST,
            &format!("/v1/communities/{slug}/proposals"),
            Some(admin_token),
            &json!({
                "title": "Bench", "choices": ["a", "b", "c"], "voting_type": "single-choice",
                "start": Utc::now(), "end": Utc::now() + Span::hours(2),
            }),
        )
        .await;
    assert_eq!(status, 201, "{proposal}");
    let proposal = proposal["id"].as_str().unwrap().to_owned();
    let mut voters = Vec::new();
    for _ in 0..params.voters {
        let (key, token) = palmdao.new_member("voter").await;
        palmdao.join(&slug, &token).await;
        voters.push(Voter { key, token });
    }
    let mongo = mongodb::Client::with_uri_str(palm_testkit::mongo_url())
        .await
        .unwrap();
    let votes = mongo
        .database(&palmdao.env.database)
        .collection::<Document>("votes");
    let url = format!("{}/v1/proposals/{proposal}/votes", palmdao.base);
    let mut timestamp = u64::try_from(Utc::now().timestamp()).unwrap();
    let mut validators: Vec<ServiceProcess> = Vec::new();
    for _ in 0..instances {
        let validator = ServiceProcess::spawn(binary("palmvalidator"), &palmdao.env.vars(&[]));
        let admin = validator.admin_addr(Duration::from_secs(20)).await;
        palm_testkit::eventually("validator ready", Duration::from_secs(30), || {
            let admin = admin.clone();
            async move { (palm_tests::get(&admin, "/readyz").await.0 == 200).then_some(()) }
        })
        .await;
        validators.push(validator);
    }
    let concurrency = params.concurrency;

    // Warm-up: a few hundred votes through the whole pipeline.
    let warmup = Arc::new(sign(&proposal, &voters, 300, timestamp));
    timestamp += 300;
    let (since, before) = (Utc::now(), applied(&palmdao.admin).await);
    submit(&http, &url, warmup, concurrency, None).await;
    decided(&palmdao.admin, before, &votes, &proposal, since, 300).await;

    // Throughput: as fast as palmdao takes them.
    let ballots = Arc::new(sign(&proposal, &voters, params.votes, timestamp));
    timestamp += params.votes as u64;
    let (since, before) = (Utc::now(), applied(&palmdao.admin).await);
    submit(&http, &url, ballots, concurrency, None).await;
    let (last, _) = decided(
        &palmdao.admin,
        before,
        &votes,
        &proposal,
        since,
        params.votes,
    )
    .await;
    let seconds = (last - since).num_milliseconds() as f64 / 1000.0;
    let max_rate = params.votes as f64 / seconds;

    // Latency at about half that rate.
    let paced_rate = max_rate / 2.0;
    let paced_count = ((paced_rate * 20.0) as usize).clamp(200, params.votes);
    let ballots = Arc::new(sign(&proposal, &voters, paced_count, timestamp));
    let (since, before) = (Utc::now(), applied(&palmdao.admin).await);
    submit(&http, &url, ballots, concurrency, Some(paced_rate)).await;
    let (_, latencies) = decided(
        &palmdao.admin,
        before,
        &votes,
        &proposal,
        since,
        paced_count,
    )
    .await;

    // The tally counts each voter once.
    let (_, results) = palmdao
        .get(&format!("/v1/proposals/{proposal}/results"), None)
        .await;
    assert_eq!(results["voters"], params.voters, "{results}");
    for mut validator in validators {
        validator.sigterm();
        validator.wait(Duration::from_secs(15)).await;
    }
    palmdao.stop().await;
    mongo
        .database(&palmdao_database_name(&votes))
        .drop()
        .await
        .ok();
    format!(
        "| {instances} | {max_rate:.0} | {paced_rate:.0}/s × {paced_count} | {:.0} ms | {:.0} ms | {:.0} ms |",
        percentile(&latencies, 50.0),
        percentile(&latencies, 99.0),
        latencies.last().copied().unwrap_or_default(),
    )
}

fn palmdao_database_name(collection: &mongodb::Collection<Document>) -> String {
    collection.namespace().db
}

#[tokio::main]
async fn main() {
    let params = Params {
        votes: env_or("BENCH_VOTES", 1000),
        voters: env_or("BENCH_VOTERS", 64),
        concurrency: env_or("BENCH_CONCURRENCY", 32),
    };
    println!(
        "vote pipeline: palmdao + N palmvalidator (release), {} votes per throughput run, \
         {} clients, {} voters, a fresh database per row; MongoDB: {}",
        params.votes,
        params.concurrency,
        params.voters,
        palm_testkit::mongo_url()
    );
    println!("(client, services, RabbitMQ and MongoDB share this machine's cores)");
    println!("| validators | votes/s (submit → counted) | paced at | p50 | p99 | max |");
    println!("|---|---|---|---|---|---|");
    for instances in [1, 2] {
        let row = scenario(&params, instances).await;
        println!("{row}");
    }
}
