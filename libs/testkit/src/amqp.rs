//! A raw broker connection, for what a test does behind palm_amqp's back
//! (a per-message TTL, a queue with its own delivery limit).

use lapin::options::ConfirmSelectOptions;
use lapin::{Channel, Connection, ConnectionProperties};

/// A connection to `url` and a channel on it in publisher-confirm mode.
pub async fn confirmed_channel(url: &str) -> (Connection, Channel) {
    let connection = Connection::connect(url, ConnectionProperties::default())
        .await
        .unwrap();
    let channel = connection.create_channel().await.unwrap();
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await
        .unwrap();
    (connection, channel)
}
