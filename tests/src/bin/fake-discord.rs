//! The tests' fake Discord ([`palm_tests::fake_discord::FakeDiscord`]) as a
//! standalone server, so `docker/compose.yaml` is complete offline:
//! palmvalidator-discord points `discord.base_url` at it and reports ready.
//!
//! `fake-discord [--listen ADDR]`, or `FAKE_DISCORD_ADDR`; default
//! `0.0.0.0:8090`. The API is under `/api/v10`; it knows the credentials in
//! [`palm_tests::fake_discord`] (`CLIENT_ID`, `CLIENT_SECRET`, `BOT_TOKEN`).
//! Stops on SIGTERM or Ctrl-C, exit 0.

use std::process::ExitCode;

use palm_tests::fake_discord::FakeDiscord;
use tokio::signal::unix::{SignalKind, signal};

#[tokio::main]
async fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let addr = match (args.next().as_deref(), args.next(), args.next()) {
        (None, _, _) => {
            std::env::var("FAKE_DISCORD_ADDR").unwrap_or_else(|_| "0.0.0.0:8090".into())
        }
        (Some("--listen"), Some(addr), None) => addr,
        _ => {
            eprintln!("usage: fake-discord [--listen ADDR]   (or FAKE_DISCORD_ADDR)");
            return ExitCode::from(64);
        }
    };
    let fake = FakeDiscord::start_on(&addr).await;
    eprintln!("fake-discord: serving Discord's API at {}", fake.base_url);
    let Ok(mut terminate) = signal(SignalKind::terminate()) else {
        eprintln!("fake-discord: cannot handle SIGTERM");
        return ExitCode::FAILURE;
    };
    tokio::select! {
        _ = terminate.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
    eprintln!("fake-discord: stopping");
    ExitCode::SUCCESS
}
