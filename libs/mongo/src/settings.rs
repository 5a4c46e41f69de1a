//! The `mongo.*` configuration section and the client built from it.

use std::time::Duration;

use mongodb::bson::doc;
use mongodb::event::EventHandler;
use mongodb::event::command::CommandEvent;
use mongodb::options::{ClientOptions, ReadPreference, SelectionCriteria, WriteConcern};
use mongodb::{Client, Database};
use palm_core::InvalidSetting;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

/// How a service reaches MongoDB.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MongoSettings {
    /// Connection string listing every replica-set member and the set name;
    /// a secret because it holds credentials.
    pub url: SecretString,
    /// Database holding this environment's collections.
    pub database: String,
    /// Read from secondaries when possible (read-only services like metrics).
    pub secondary_preferred: bool,
    /// How long an operation waits for a usable server before failing.
    pub server_selection_timeout_ms: u64,
    /// Count every command sent (one per round trip) in
    /// `palm_mongo_commands_total{command}`. Off by default: the driver then
    /// decodes each command and reply a second time into a monitoring event,
    /// measured at about +12 µs of CPU per command and up to twice the CPU
    /// of reading a large batch (the outbox relay's reads).
    pub command_metrics: bool,
}

impl Default for MongoSettings {
    fn default() -> Self {
        Self {
            url: SecretString::from("mongodb://127.0.0.1:27017/?replicaSet=rs0"),
            database: "palm".into(),
            secondary_preferred: false,
            server_selection_timeout_ms: 5_000,
            command_metrics: false,
        }
    }
}

impl MongoSettings {
    /// Checks values that parse but cannot work.
    pub fn validate(&self) -> Result<(), InvalidSetting> {
        let url = self.url.expose_secret();
        if !(url.starts_with("mongodb://") || url.starts_with("mongodb+srv://")) {
            return Err(InvalidSetting::new(
                "mongo",
                "url",
                "must start with mongodb:// or mongodb+srv://",
            ));
        }
        if self.database.is_empty() || self.database.contains(['/', '\\', '.', ' ', '"', '$']) {
            return Err(InvalidSetting::new(
                "mongo",
                "database",
                "must be a valid MongoDB database name",
            ));
        }
        if self.server_selection_timeout_ms == 0 {
            return Err(InvalidSetting::new(
                "mongo",
                "server_selection_timeout_ms",
                "must be above 0",
            ));
        }
        Ok(())
    }
}

/// Builds the client with Palm's rules — majority writes, retryable writes,
/// bounded server selection — and returns the configured database. Does not
/// wait for the server: readiness reports it. With `command_metrics`, every
/// command the client sends (each is one round trip) is counted in
/// `palm_mongo_commands_total{command}`.
pub async fn connect(settings: &MongoSettings, app_name: &str) -> mongodb::error::Result<Database> {
    let mut options = ClientOptions::parse(settings.url.expose_secret()).await?;
    options.app_name = Some(app_name.to_owned());
    options.write_concern = Some(WriteConcern::majority());
    options.retry_writes = Some(true);
    options.server_selection_timeout =
        Some(Duration::from_millis(settings.server_selection_timeout_ms));
    if settings.secondary_preferred {
        options.selection_criteria = Some(SelectionCriteria::ReadPreference(
            ReadPreference::SecondaryPreferred { options: None },
        ));
    }
    if settings.command_metrics {
        options.command_event_handler = Some(EventHandler::callback(count_command));
    }
    let client = Client::with_options(options)?;
    Ok(client.database(&settings.database))
}

/// Counts a command as it is sent, labelled by its name (`find`, `insert`,
/// `update`, `getMore`, …: a small fixed set), so an operator or a benchmark
/// sees the round trips a request or a relay pass costs. Connection
/// handshakes and server monitoring are not commands and are not counted.
fn count_command(event: CommandEvent) {
    if let CommandEvent::Started(started) = event {
        metrics::counter!("palm_mongo_commands_total", "command" => started.command_name)
            .increment(1);
    }
}

/// Whether the database answers a ping.
pub async fn ping(database: &Database) -> bool {
    database.run_command(doc! { "ping": 1 }).await.is_ok()
}

/// A readiness check: up while the database answers a ping.
pub fn readiness_check(
    database: &Database,
) -> impl Fn() -> std::pin::Pin<Box<dyn std::future::Future<Output = bool> + Send>> + Send + Sync + 'static
{
    let database = database.clone();
    move || {
        let database = database.clone();
        Box::pin(async move { ping(&database).await })
    }
}
