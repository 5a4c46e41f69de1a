//! A palmdao process under test, with helpers to call its API and sign in.

use std::time::Duration;

use chrono::Utc;
use palm_core::eth::{AddressText, LocalKey, keccak256};
use palm_core::siwe::SiweMessage;
use palm_testkit::process::{ServiceProcess, binary};
use serde_json::{Value, json};

use crate::ServiceEnv;

/// A deterministic test key from a seed.
pub fn key(seed: &str) -> LocalKey {
    LocalKey::from_bytes(&keccak256(seed.as_bytes())).unwrap()
}

/// A response: status, headers and JSON body (`Null` if none).
#[derive(Debug)]
pub struct Reply {
    /// HTTP status.
    pub status: u16,
    /// Response headers.
    pub headers: reqwest::header::HeaderMap,
    /// JSON body.
    pub body: Value,
}

impl Reply {
    /// The `Location` header.
    pub fn location(&self) -> Option<&str> {
        self.headers
            .get(reqwest::header::LOCATION)
            .and_then(|v| v.to_str().ok())
    }

    /// The problem body's `code`.
    pub fn code(&self) -> &str {
        self.body["code"].as_str().unwrap_or_default()
    }
}

/// A running palmdao and an HTTP client for it.
#[derive(Debug)]
pub struct Palmdao {
    process: ServiceProcess,
    /// `http://host:port` of the public API.
    pub base: String,
    /// The isolation it runs in (prefix, database).
    pub env: ServiceEnv,
    /// `host:port` of its admin server (`/readyz`, `/metrics`).
    pub admin: String,
    http: reqwest::Client,
}

impl Palmdao {
    /// Starts palmdao in a fresh isolation (prefix, database).
    pub async fn start() -> Self {
        Self::start_with(&[]).await
    }

    /// Starts palmdao with extra environment variables.
    pub async fn start_with(extra: &[(&str, &str)]) -> Self {
        Self::start_in(ServiceEnv::new(), extra).await
    }

    /// Starts palmdao in `env` (a second replica on another's prefix and
    /// database, say) with extra environment variables.
    pub async fn start_in(env: ServiceEnv, extra: &[(&str, &str)]) -> Self {
        let process = ServiceProcess::spawn(binary("palmdao"), &env.vars(extra));
        let addr = process
            .logged_addr("public api listening", Duration::from_secs(20))
            .await;
        // Ready means its queues are declared and MongoDB answers: before
        // that a result published to it would be unroutable.
        let admin = process.admin_addr(Duration::from_secs(20)).await;
        palm_testkit::eventually("palmdao ready", Duration::from_secs(30), || {
            let admin = admin.clone();
            async move { (crate::get(&admin, "/readyz").await.0 == 200).then_some(()) }
        })
        .await;
        Self {
            process,
            admin,
            base: format!("http://{addr}"),
            env,
            http: palm_service::http::client(),
        }
    }

    /// Calls `path` with `method`, a bearer token and a JSON body if given.
    pub async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        token: Option<&str>,
        body: Option<&Value>,
    ) -> Reply {
        let mut request = self.http.request(method, format!("{}{path}", self.base));
        if let Some(body) = body {
            request = request.json(body);
        }
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.unwrap();
        Reply {
            status: response.status().as_u16(),
            headers: response.headers().clone(),
            body: response.json().await.unwrap_or(Value::Null),
        }
    }

    /// GETs `path`, with a bearer token if given.
    pub async fn get(&self, path: &str, token: Option<&str>) -> (u16, Value) {
        let reply = self.call(reqwest::Method::GET, path, token, None).await;
        (reply.status, reply.body)
    }

    /// Sends `body` as JSON with `method`.
    pub async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        token: Option<&str>,
        body: &Value,
    ) -> (u16, Value) {
        let reply = self.call(method, path, token, Some(body)).await;
        (reply.status, reply.body)
    }

    /// POSTs raw bytes with a content type.
    pub async fn raw_post(
        &self,
        path: &str,
        content_type: &str,
        body: Vec<u8>,
    ) -> (u16, String, Value) {
        let response = self
            .http
            .post(format!("{}{path}", self.base))
            .header("content-type", content_type)
            .body(body)
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        let kind = response
            .headers()
            .get("content-type")
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default();
        (status, kind, response.json().await.unwrap_or(Value::Null))
    }

    /// A fresh sign-in nonce.
    pub async fn nonce(&self) -> String {
        let (status, body) = self.get("/v1/auth/nonce", None).await;
        assert_eq!(status, 200, "{body}");
        body["nonce"].as_str().unwrap().to_owned()
    }

    /// A message as a wallet would build it for this server.
    pub fn message(&self, key: &LocalKey, nonce: &str) -> SiweMessage {
        format!(
            "palm.test wants you to sign in with your Ethereum account:\n{}\n\nSign in to Palm\n\nURI: https://palm.test/v1/auth/siwe\nVersion: 1\nChain ID: 1\nNonce: {nonce}\nIssued At: {}",
            key.address().to_checksummed(),
            Utc::now().format("%Y-%m-%dT%H:%M:%SZ")
        )
        .parse()
        .unwrap()
    }

    /// Signs `message` with `key` and posts it.
    pub async fn sign_in_with(&self, message: &SiweMessage, key: &LocalKey) -> (u16, Value) {
        let text = message.to_string();
        let signature = key.sign_personal(text.as_bytes()).unwrap().to_string();
        self.send(
            reqwest::Method::POST,
            "/v1/auth/siwe",
            None,
            &json!({ "message": text, "signature": signature }),
        )
        .await
    }

    /// Signs in as `key` and returns the response body.
    pub async fn sign_in(&self, key: &LocalKey) -> Value {
        let nonce = self.nonce().await;
        let (status, body) = self.sign_in_with(&self.message(key, &nonce), key).await;
        assert_eq!(status, 200, "{body}");
        body
    }

    /// Joins community `slug` as `token`'s owner (asserts `201`).
    pub async fn join(&self, slug: &str, token: &str) {
        let (status, body) = self
            .send(
                reqwest::Method::POST,
                &format!("/v1/communities/{slug}/join"),
                Some(token),
                &json!({}),
            )
            .await;
        assert_eq!(status, 201, "{body}");
    }

    /// A new PalmID from a fresh key named after `seed`, signed in; returns
    /// the key and the session token.
    pub async fn new_member(&self, seed: &str) -> (LocalKey, String) {
        let key = key(&format!("{seed}-{}", uuid::Uuid::new_v4()));
        let token = self.sign_in(&key).await["token"]
            .as_str()
            .unwrap()
            .to_owned();
        (key, token)
    }

    /// Every line the process printed so far.
    pub fn output(&self) -> Vec<String> {
        self.process.output()
    }

    /// The process itself, to signal it or wait for it.
    pub fn process_mut(&mut self) -> &mut ServiceProcess {
        &mut self.process
    }

    /// SIGTERM, a clean exit, and teardown.
    pub async fn stop(mut self) {
        self.process.sigterm();
        assert_eq!(self.process.wait(Duration::from_secs(15)).await, Some(0));
        self.env.teardown(&palmdao::queues()).await;
    }
}

/// Plays the validators: publishes results on palmdao's exchange.
#[derive(Debug)]
pub struct FakeValidator {
    /// Its broker connection.
    pub broker: palm_amqp::Broker,
    /// Its publisher.
    pub publisher: palm_amqp::Publisher,
}

impl FakeValidator {
    /// Connects on `palmdao`'s prefix.
    pub async fn connect(palmdao: &Palmdao) -> Self {
        let settings = palmdao.env.amqp_settings();
        let broker = palm_amqp::Broker::start(
            settings.clone(),
            palm_amqp::Topology::new(&settings, Vec::new()),
        );
        broker
            .wait_connected(Duration::from_secs(20))
            .await
            .unwrap();
        let publisher = palm_amqp::Publisher::new(broker.clone());
        Self { broker, publisher }
    }

    /// Requests a `discord` verification as `token`'s owner, answers it as
    /// verified with `subject` under `kind` (any verifier kind: the set is
    /// open), and waits until palmdao applied it.
    pub async fn verify(
        &self,
        palmdao: &Palmdao,
        token: &str,
        palm_id: &str,
        kind: &str,
        subject: &str,
    ) {
        let body =
            json!({ "kind": "discord", "code": "code", "redirect_uri": "https://palm.test/cb" });
        let (status, request) = palmdao
            .send(
                reqwest::Method::POST,
                "/v1/me/verifications",
                Some(token),
                &body,
            )
            .await;
        assert_eq!(status, 202, "{request}");
        let id = request["id"].as_str().unwrap().to_owned();
        let event = palm_core::Envelope::new(
            "test-validator",
            palm_core::events::VerificationCompleted {
                verification_id: uuid::Uuid::parse_str(&id).unwrap(),
                palm_id: uuid::Uuid::parse_str(palm_id).unwrap(),
                kind: kind.to_owned(),
                outcome: palm_core::events::VerificationOutcome::Verified {
                    subject: subject.to_owned(),
                    display_name: None,
                },
            },
        );
        let message = palm_amqp::OutgoingMessage::event(self.broker.names(), &event);
        self.publisher.publish(&message).await.unwrap();
        palm_testkit::eventually(
            "the verification applied",
            Duration::from_secs(20),
            || async {
                let (_, view) = palmdao
                    .get(&format!("/v1/me/verifications/{id}"), Some(token))
                    .await;
                (view["status"] == "verified").then_some(())
            },
        )
        .await;
    }

    /// Adds a `discord` and an `email` verifier to a wallet-only PalmID,
    /// making it level 3 (enough to create communities).
    pub async fn raise_to_level_three(&self, palmdao: &Palmdao, token: &str, palm_id: &str) {
        let discord = format!("d{}", uuid::Uuid::new_v4().simple());
        self.verify(palmdao, token, palm_id, "discord", &discord)
            .await;
        let email = format!("{}@palm.test", uuid::Uuid::new_v4().simple());
        self.verify(palmdao, token, palm_id, "email", &email).await;
    }

    /// Disconnects.
    pub async fn close(self) {
        self.broker.close().await;
    }
}
