//! Outgoing HTTP: the one way a Palm process builds an HTTP client.
//!
//! palmvalidator-discord calls Discord over HTTPS, so the workspace's
//! `reqwest` has rustls without a built-in crypto provider; rustls then needs
//! a process-wide provider before any client is built, or `reqwest` panics.
//! [`client_builder`] installs the `ring` provider (the one the MongoDB driver
//! already links) and hands out a builder; [`crate::run`] installs it first
//! thing for the clients libraries build themselves (the OTLP exporter).
//! `clippy.toml` forbids building a client any other way.

/// Installs the `ring` crypto provider for rustls, once per process.
pub fn install_crypto_provider() {
    // Err means a provider is already installed: the one we want, or one
    // another library chose; either way TLS works.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// A `reqwest` client builder, TLS ready.
#[allow(clippy::disallowed_methods)] // the one sanctioned construction site
pub fn client_builder() -> reqwest::ClientBuilder {
    install_crypto_provider();
    reqwest::Client::builder()
}

/// A `reqwest` client with default settings, TLS ready.
pub fn client() -> reqwest::Client {
    client_builder()
        .build()
        .unwrap_or_else(|error| panic!("an HTTP client with default settings: {error}"))
}

#[cfg(test)]
mod tests {
    #[tokio::test]
    async fn clients_speak_https() {
        // Without a TLS backend reqwest refuses an https URL before
        // connecting; with one, the attempt reaches the (closed) port.
        let error = super::client()
            .get("https://127.0.0.1:9/")
            .send()
            .await
            .unwrap_err();
        assert!(error.is_connect(), "{error:?}");
    }
}
