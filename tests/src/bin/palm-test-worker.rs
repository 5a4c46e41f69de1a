//! Test fixture: a service whose consumer takes a while per message and
//! applies each message's effect once (idempotency record + counter), so
//! tests can signal it mid-message and check nothing was lost or doubled.
//! Runs on the real service runtime, like every Palm binary.

use std::time::Duration;

use mongodb::bson::{Document, doc};
use palm_amqp::{
    AmqpSettings, Broker, Consumer, HandlerError, Incoming, Publisher, QueueSpec, Topology,
};
use palm_core::InvalidSetting;
use palm_mongo::{Idempotency, MongoSettings};
use palm_service::{Runtime, RuntimeSettings, ServiceSettings};
use serde::Deserialize;

const QUEUE: &str = "worker.jobs";

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
struct Settings {
    #[serde(flatten)]
    runtime: RuntimeSettings,
    amqp: AmqpSettings,
    mongo: MongoSettings,
    /// Time each message takes.
    work_ms: u64,
}

impl ServiceSettings for Settings {
    fn validate(&self) -> Result<(), InvalidSetting> {
        self.runtime.validate()?;
        self.amqp.validate()?;
        self.mongo.validate()
    }

    fn runtime(&self) -> &RuntimeSettings {
        &self.runtime
    }
}

async fn run(settings: Settings, runtime: Runtime) -> anyhow::Result<()> {
    runtime.readiness.expect(&["amqp"]);
    let database = palm_mongo::connect(&settings.mongo, "palm-test-worker").await?;
    Idempotency::ensure_indexes(&database, Duration::from_secs(3600)).await?;
    let broker = Broker::start(
        settings.amqp.clone(),
        Topology::new(&settings.amqp, vec![QueueSpec::new(QUEUE, &["job.#"])]),
    );
    runtime.readiness.register("amqp", broker.readiness_check());
    let publisher = Publisher::new(broker.clone());
    let idempotency = Idempotency::new(&database);
    let effects = database.collection::<Document>("effects");
    let work = Duration::from_millis(settings.work_ms);
    let handler = move |incoming: Incoming| {
        let idempotency = idempotency.clone();
        let effects = effects.clone();
        async move {
            let id = incoming
                .message_id
                .ok_or_else(|| HandlerError::permanent(anyhow::anyhow!("message without an id")))?;
            tracing::info!(message_id = %id, "job started");
            tokio::time::sleep(work).await;
            // The claim and the effect: a redelivered message finds its claim
            // and is acked without applying the effect again.
            if idempotency
                .claim(QUEUE, &id)
                .await
                .map_err(HandlerError::transient)?
            {
                effects
                    .update_one(doc! { "_id": &id }, doc! { "$inc": { "applied": 1 } })
                    .upsert(true)
                    .await
                    .map_err(HandlerError::transient)?;
            }
            tracing::info!(message_id = %id, "job done");
            Ok(())
        }
    };
    Consumer::new(&broker, &publisher, QUEUE, handler)
        .run(runtime.shutdown.clone())
        .await?;
    broker.close().await;
    Ok(())
}

fn main() -> std::process::ExitCode {
    palm_service::run("palm-test-worker", run)
}
