//! `palmctl`: the development command line for Palm's public API (palmdao).
//!
//! Palm signs people in with Sign-In with Ethereum and takes votes as EIP-712
//! signatures, which normally needs a browser wallet. `palmctl` signs both
//! with a local development key (`--seed WORD` is keccak256 of the word), so
//! the README's walkthrough goes from nothing to a signed-in call and a
//! submitted vote from a shell. Those API commands are for development
//! only: the services never sign, and no key that holds anything belongs
//! here. `palmctl dlq …` is the operator's side: it talks to RabbitMQ, not
//! the API, and signs nothing (see `docs/operations-dlq.md`).
//!
//! # Layout
//! - [`args`]: the command line (flags, their environment variables, the
//!   usage text), parsed by hand.
//! - [`dlq`]: `palmctl dlq …`, the operator's commands for dead-letter
//!   queues (list, show without consuming, replay, purge), on RabbitMQ
//!   through `palm_amqp::dlq`, each action audited on stderr.
//! - this file: the commands, over a small JSON client ([`Api`]) that turns
//!   a non-2xx answer into an error carrying the problem document. Results
//!   go to stdout through [`out`], which treats a closed pipe
//!   (`palmctl … | head`) as the reader having had enough, not as a failure.
//!
//! The signing itself is `palm_core`'s: [`palm_core::siwe::SiweMessage`]
//! formats the sign-in text, [`palm_core::vote::VoteMessage`] the typed data,
//! so palmctl signs exactly what palmdao and the validator verify.

mod args;
mod dlq;

use std::fmt;
use std::io::{self, Write as _};
use std::process::ExitCode;

use anyhow::Context as _;
use chrono::{SubsecRound as _, Utc};
use palm_core::eth::{AddressText, LocalKey};
use palm_core::siwe::SiweMessage;
use palm_core::vote::{VoteDomain, VoteMessage};
use reqwest::Method;
use serde_json::{Value, json};

use crate::args::{Command, Invocation, Options, USAGE};

fn main() -> ExitCode {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let env = |name: &str| std::env::var(name).ok().filter(|value| !value.is_empty());
    let invocation = match args::parse(argv, env) {
        Ok(Some(invocation)) => invocation,
        Ok(None) => return exit(out(USAGE.trim_end())),
        Err(error) => {
            eprintln!("palmctl: {error}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("palmctl: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    exit(runtime.block_on(run(invocation)))
}

/// Exit code 0, or 1 with the error on stderr; a closed stdout is no error.
fn exit(result: anyhow::Result<()>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error)
            if error
                .downcast_ref::<io::Error>()
                .is_some_and(|e| e.kind() == io::ErrorKind::BrokenPipe) =>
        {
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("palmctl: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// Writes `text` and a newline to stdout.
fn out(text: &str) -> anyhow::Result<()> {
    let mut stdout = io::stdout().lock();
    writeln!(stdout, "{text}")?;
    stdout.flush()?;
    Ok(())
}

async fn run(Invocation { options, command }: Invocation) -> anyhow::Result<()> {
    let api = Api::new(&options);
    match command {
        Command::Address => {
            out(&signer(&options)?.address().to_checksummed())?;
        }
        Command::Login => {
            let key = signer(&options)?;
            let (message, signature) = siwe_sign_in(&api, &options, key, "Sign in to Palm").await?;
            let body = json!({ "message": message, "signature": signature });
            let session = api.call(Method::POST, "/v1/auth/siwe", Some(&body)).await?;
            let token = session["token"]
                .as_str()
                .context("the sign-in answer has no token")?;
            // Only the token on stdout, so `$(palmctl login)` captures it.
            eprintln!(
                "palmctl: signed in as {} (PalmID {}{})",
                key.address(),
                session["palm_id"].as_str().unwrap_or("?"),
                if session["created"] == true {
                    ", just created"
                } else {
                    ""
                }
            );
            out(token)?;
        }
        Command::Get { path } => print_json(&api.call(Method::GET, &path, None).await?)?,
        Command::Post { path, body } => {
            print_json(&api.call(Method::POST, &path, body.as_ref()).await?)?;
        }
        Command::Patch { path, body } => {
            print_json(&api.call(Method::PATCH, &path, Some(&body)).await?)?;
        }
        Command::LinkWallet { wallet } => {
            let (message, signature) =
                siwe_sign_in(&api, &options, &wallet, "Link this wallet to my PalmID").await?;
            let body = json!({ "kind": "wallet", "message": message, "signature": signature });
            print_json(
                &api.call(Method::POST, "/v1/me/verifications", Some(&body))
                    .await?,
            )?;
        }
        Command::Vote { proposal, choice } => {
            let key = signer(&options)?;
            let vote = VoteMessage {
                proposal: proposal.clone(),
                choice,
                timestamp: unix_now()?,
                voter: key.address(),
                app: options.domain.clone(),
            };
            let signature = vote.sign(&vote_domain(&options), key)?;
            let body = json!({
                "choice": vote.choice,
                "timestamp": vote.timestamp,
                "address": vote.voter.to_checksummed(),
                "signature": signature.to_string(),
            });
            let path = format!("/v1/proposals/{proposal}/votes");
            print_json(&api.call(Method::POST, &path, Some(&body)).await?)?;
        }
        Command::Dlq(command) => dlq::run(command).await?,
        Command::TypedData {
            proposal,
            choice,
            voter,
        } => {
            let vote = VoteMessage {
                proposal,
                choice,
                timestamp: unix_now()?,
                voter,
                app: options.domain.clone(),
            };
            print_json(&serde_json::to_value(
                vote.typed_data(&vote_domain(&options)),
            )?)?;
        }
    }
    Ok(())
}

/// The key a command signs with; argument parsing made sure it is there.
fn signer(options: &Options) -> anyhow::Result<&LocalKey> {
    options
        .key
        .as_ref()
        .context("no key: pass --key 0xHEX or --seed WORD")
}

fn unix_now() -> anyhow::Result<u64> {
    u64::try_from(Utc::now().timestamp()).context("the clock is before 1970")
}

fn vote_domain(options: &Options) -> VoteDomain {
    VoteDomain {
        chain_id: options.chain_id,
        ..VoteDomain::default()
    }
}

/// A fresh nonce, then an EIP-4361 message for `key` naming the configured
/// domain, URI and chain, signed with EIP-191. Returns the text and the
/// signature.
async fn siwe_sign_in(
    api: &Api,
    options: &Options,
    key: &LocalKey,
    statement: &str,
) -> anyhow::Result<(String, String)> {
    let nonce = api.call(Method::GET, "/v1/auth/nonce", None).await?;
    let nonce = nonce["nonce"]
        .as_str()
        .context("the nonce answer has no nonce")?;
    let now = Utc::now().trunc_subsecs(0);
    let message = SiweMessage {
        scheme: None,
        domain: options.domain.clone(),
        address: key.address(),
        statement: Some(statement.to_owned()),
        uri: options.uri.clone(),
        version: "1".to_owned(),
        chain_id: options.chain_id,
        nonce: nonce.to_owned(),
        issued_at: now,
        expiration_time: Some(now + chrono::Duration::minutes(10)),
        not_before: None,
        request_id: None,
        resources: Vec::new(),
    }
    .to_string();
    let signature = key.sign_personal(message.as_bytes())?.to_string();
    Ok((message, signature))
}

fn print_json(value: &Value) -> anyhow::Result<()> {
    if !value.is_null() {
        out(&serde_json::to_string_pretty(value)?)?;
    }
    Ok(())
}

/// A JSON client for the API, with the session token when there is one.
#[derive(Debug)]
struct Api {
    http: reqwest::Client,
    base: String,
    token: Option<String>,
}

/// A non-2xx answer: the problem document goes to stderr, exit code 1.
#[derive(Debug)]
struct Refused {
    method: Method,
    path: String,
    status: reqwest::StatusCode,
    body: String,
}

impl fmt::Display for Refused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {} answered {}", self.method, self.path, self.status)?;
        match serde_json::from_str::<Value>(&self.body) {
            Ok(problem) => write!(
                f,
                "\n{}",
                serde_json::to_string_pretty(&problem).map_err(|_| fmt::Error)?
            ),
            Err(_) if self.body.is_empty() => Ok(()),
            Err(_) => write!(f, "\n{}", self.body),
        }
    }
}

impl std::error::Error for Refused {}

impl Api {
    fn new(options: &Options) -> Self {
        Self {
            http: palm_service::http::client(),
            base: options.api.clone(),
            token: options.token.clone(),
        }
    }

    /// Sends `body` (if any) as JSON; returns the JSON answer, `null` for an
    /// empty one.
    async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> anyhow::Result<Value> {
        let mut request = self
            .http
            .request(method.clone(), format!("{}{path}", self.base));
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request.send().await.with_context(|| {
            format!(
                "cannot reach {} (is palmdao running? `make run`)",
                self.base
            )
        })?;
        let status = response.status();
        let text = response
            .text()
            .await
            .with_context(|| format!("reading the answer to {method} {path}"))?;
        if !status.is_success() {
            return Err(Refused {
                method,
                path: path.to_owned(),
                status,
                body: text,
            }
            .into());
        }
        if text.is_empty() {
            return Ok(Value::Null);
        }
        serde_json::from_str(&text)
            .with_context(|| format!("{method} {path} answered something that is not JSON: {text}"))
    }
}
