//! Where the test dependencies are, and names that keep tests apart.

/// RabbitMQ URL: `PALM_AMQP_URL`, or the local broker.
pub fn amqp_url() -> String {
    std::env::var("PALM_AMQP_URL")
        .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".to_owned())
}

/// MongoDB URL: `PALM_MONGO_URL`, set by `make test` (real MongoDB or the
/// nx-27017 stand-in).
pub fn mongo_url() -> String {
    std::env::var("PALM_MONGO_URL").unwrap_or_else(|_| {
        panic!(
            "PALM_MONGO_URL is not set: run the tests with `make test`, which starts the \
             MongoDB stand-in, or point PALM_MONGO_URL at a MongoDB"
        )
    })
}

fn short_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()[..10].to_owned()
}

/// A fresh exchange/queue prefix (`t-1a2b3c4d5e`).
pub fn unique_prefix() -> String {
    format!("t-{}", short_id())
}

/// A fresh database name (`t_1a2b3c4d5e`).
pub fn unique_database() -> String {
    format!("t_{}", short_id())
}
