//! Deleting what a test declared, so quorum queues do not pile up on the
//! shared broker run after run.

use lapin::options::{ExchangeDeleteOptions, QueueDeleteOptions};
use lapin::{Connection, ConnectionProperties};

/// Deletes the named queues and exchanges; missing ones are fine.
pub async fn delete(url: &str, queues: &[String], exchanges: &[String]) {
    let Ok(connection) = Connection::connect(url, ConnectionProperties::default()).await else {
        return;
    };
    for queue in queues {
        // A failed delete closes the channel, so each gets its own.
        if let Ok(channel) = connection.create_channel().await {
            let _ = channel
                .queue_delete(queue.as_str().into(), QueueDeleteOptions::default())
                .await;
        }
    }
    for exchange in exchanges {
        if let Ok(channel) = connection.create_channel().await {
            let _ = channel
                .exchange_delete(exchange.as_str().into(), ExchangeDeleteOptions::default())
                .await;
        }
    }
    let _ = connection.close(200, "cleanup".into()).await;
}
