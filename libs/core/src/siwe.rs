//! Sign-In with Ethereum (EIP-4361): parse the message a wallet signed,
//! format one (for the development CLI and tests), and verify it against the
//! server's rules: domain, URI, version, allowed chain ids, time window, and
//! the EIP-191 signature recovering to the stated address.
//!
//! Nonce freshness (single use, short TTL) is the server's job: it holds the
//! nonce store. [`SiweMessage::nonce`] is what it looks up.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, SecondsFormat, Utc};

use crate::eth::{Address, Signature, personal_message_hash};

/// A parsed EIP-4361 message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SiweMessage {
    /// Optional URI scheme before the domain (`https`).
    pub scheme: Option<String>,
    /// RFC 3986 authority requesting the sign-in.
    pub domain: String,
    /// Account signing in (EIP-55 checksummed in the message).
    pub address: Address,
    /// Human-readable assertion; no line breaks.
    pub statement: Option<String>,
    /// Subject of the signing (the login endpoint).
    pub uri: String,
    /// Message version; only `1` exists.
    pub version: String,
    /// EIP-155 chain id the session binds to.
    pub chain_id: u64,
    /// Server-issued random token against replay (≥ 8 alphanumerics).
    pub nonce: String,
    /// When the message was issued.
    pub issued_at: DateTime<Utc>,
    /// After this the message is no longer valid.
    pub expiration_time: Option<DateTime<Utc>>,
    /// Before this the message is not yet valid.
    pub not_before: Option<DateTime<Utc>>,
    /// Optional system-specific request id.
    pub request_id: Option<String>,
    /// Resources the user wishes to have resolved.
    pub resources: Vec<String>,
}

/// Why a sign-in was refused. [`SiweError::code`] is stable for API clients.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SiweError {
    /// The text is not an EIP-4361 message.
    #[error("malformed sign-in message: {0}")]
    Malformed(String),
    /// Signed for another site.
    #[error("the message is for domain `{0}`")]
    WrongDomain(String),
    /// Signed for another endpoint.
    #[error("the message is for URI `{0}`")]
    WrongUri(String),
    /// Not version 1.
    #[error("unsupported message version `{0}`")]
    UnsupportedVersion(String),
    /// A chain this server does not accept.
    #[error("chain id {0} is not accepted")]
    ChainNotAllowed(u64),
    /// Past its expiration time.
    #[error("the message expired")]
    Expired,
    /// Before its not-before time, or issued in the future.
    #[error("the message is not valid yet")]
    NotYetValid,
    /// The signature is not a 65-byte recoverable signature.
    #[error("malformed signature")]
    MalformedSignature,
    /// The signature does not come from the stated address.
    #[error("the signature is not from the stated address")]
    SignerMismatch,
}

impl SiweError {
    /// Stable machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Malformed(_) => "siwe_malformed",
            Self::WrongDomain(_) => "siwe_wrong_domain",
            Self::WrongUri(_) => "siwe_wrong_uri",
            Self::UnsupportedVersion(_) => "siwe_unsupported_version",
            Self::ChainNotAllowed(_) => "siwe_chain_not_allowed",
            Self::Expired => "siwe_expired",
            Self::NotYetValid => "siwe_not_yet_valid",
            Self::MalformedSignature => "siwe_malformed_signature",
            Self::SignerMismatch => "siwe_signer_mismatch",
        }
    }
}

/// What the server accepts.
#[derive(Debug, Clone)]
pub struct SiweRules {
    /// The one domain sign-ins must name.
    pub domain: String,
    /// The one URI sign-ins must name.
    pub uri: String,
    /// Accepted chain ids.
    pub chain_ids: Vec<u64>,
    /// Tolerated clock difference between wallet and server.
    pub clock_skew: chrono::Duration,
}

impl SiweRules {
    /// Rules built from the `<section>.domain/uri/chain_ids/clock_skew_secs`
    /// settings every service that checks sign-in messages shares, checked
    /// so a bad value names its key.
    pub fn from_settings(
        section: &str,
        domain: &str,
        uri: &str,
        chain_ids: &[u64],
        clock_skew_secs: u64,
    ) -> Result<Self, crate::InvalidSetting> {
        let bad =
            |field: &str, reason: &str| Err(crate::InvalidSetting::new(section, field, reason));
        if domain.is_empty() {
            return bad("domain", "must name the sign-in domain");
        }
        if !(uri.starts_with("https://") || uri.starts_with("http://")) {
            return bad("uri", "must be an http(s) URI");
        }
        if chain_ids.is_empty() {
            return bad("chain_ids", "must list at least one chain id");
        }
        if clock_skew_secs > 3600 {
            return bad("clock_skew_secs", "must be at most 3600");
        }
        Ok(Self {
            domain: domain.to_owned(),
            uri: uri.to_owned(),
            chain_ids: chain_ids.to_vec(),
            clock_skew: chrono::Duration::seconds(i64::try_from(clock_skew_secs).unwrap_or(3600)),
        })
    }
}

const PREAMBLE: &str = " wants you to sign in with your Ethereum account:";

fn malformed(what: &str) -> SiweError {
    SiweError::Malformed(what.to_owned())
}

fn parse_time(text: &str, field: &str) -> Result<DateTime<Utc>, SiweError> {
    DateTime::parse_from_rfc3339(text)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|_| malformed(&format!("{field} is not an RFC 3339 time")))
}

impl FromStr for SiweMessage {
    type Err = SiweError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let mut lines = text.split('\n').peekable();
        let first = lines.next().ok_or_else(|| malformed("empty"))?;
        let origin = first
            .strip_suffix(PREAMBLE)
            .ok_or_else(|| malformed("first line"))?;
        let (scheme, domain) = match origin.split_once("://") {
            Some((scheme, domain)) => (Some(scheme.to_owned()), domain.to_owned()),
            None => (None, origin.to_owned()),
        };
        if domain.is_empty() || domain.contains(char::is_whitespace) {
            return Err(malformed("domain"));
        }
        let address = lines.next().ok_or_else(|| malformed("address line"))?;
        let address = Address::parse_checksummed(address)
            .map_err(|_| malformed("address must be EIP-55 checksummed"))?;
        if lines.next() != Some("") {
            return Err(malformed("blank line after the address"));
        }
        let statement = match lines.next() {
            Some("") => None,
            Some(statement) => {
                if lines.next() != Some("") {
                    return Err(malformed("blank line after the statement"));
                }
                Some(statement.to_owned())
            }
            None => return Err(malformed("truncated")),
        };
        let mut field = |tag: &str| -> Result<String, SiweError> {
            lines
                .next()
                .and_then(|line| line.strip_prefix(tag))
                .map(str::to_owned)
                .ok_or_else(|| malformed(tag.trim_end_matches(": ")))
        };
        let uri = field("URI: ")?;
        let version = field("Version: ")?;
        let chain_id = field("Chain ID: ")?
            .parse()
            .map_err(|_| malformed("Chain ID"))?;
        let nonce = field("Nonce: ")?;
        if nonce.len() < 8 || !nonce.chars().all(|c| c.is_ascii_alphanumeric()) {
            return Err(malformed("Nonce must be at least 8 letters or digits"));
        }
        let issued_at = parse_time(&field("Issued At: ")?, "Issued At")?;
        let mut optional = |tag: &str| -> Option<String> {
            let value = lines.peek()?.strip_prefix(tag)?.to_owned();
            lines.next();
            Some(value)
        };
        let expiration_time = optional("Expiration Time: ")
            .map(|t| parse_time(&t, "Expiration Time"))
            .transpose()?;
        let not_before = optional("Not Before: ")
            .map(|t| parse_time(&t, "Not Before"))
            .transpose()?;
        let request_id = optional("Request ID: ");
        let mut resources = Vec::new();
        if lines.peek() == Some(&"Resources:") {
            lines.next();
            while let Some(resource) = lines.peek().and_then(|l| l.strip_prefix("- ")) {
                resources.push(resource.to_owned());
                lines.next();
            }
        }
        if let Some(extra) = lines.next() {
            return Err(malformed(&format!("unexpected line `{extra}`")));
        }
        Ok(Self {
            scheme,
            domain,
            address,
            statement,
            uri,
            version,
            chain_id,
            nonce,
            issued_at,
            expiration_time,
            not_before,
            request_id,
            resources,
        })
    }
}

impl fmt::Display for SiweMessage {
    /// The canonical text a wallet signs.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let time = |t: &DateTime<Utc>| t.to_rfc3339_opts(SecondsFormat::AutoSi, true);
        if let Some(scheme) = &self.scheme {
            write!(f, "{scheme}://")?;
        }
        write!(
            f,
            "{}{PREAMBLE}\n{}\n\n",
            self.domain,
            self.address.to_checksummed()
        )?;
        if let Some(statement) = &self.statement {
            writeln!(f, "{statement}")?;
        }
        write!(
            f,
            "\nURI: {}\nVersion: {}\nChain ID: {}\nNonce: {}\nIssued At: {}",
            self.uri,
            self.version,
            self.chain_id,
            self.nonce,
            time(&self.issued_at)
        )?;
        if let Some(t) = &self.expiration_time {
            write!(f, "\nExpiration Time: {}", time(t))?;
        }
        if let Some(t) = &self.not_before {
            write!(f, "\nNot Before: {}", time(t))?;
        }
        if let Some(id) = &self.request_id {
            write!(f, "\nRequest ID: {id}")?;
        }
        if !self.resources.is_empty() {
            write!(f, "\nResources:")?;
            for resource in &self.resources {
                write!(f, "\n- {resource}")?;
            }
        }
        Ok(())
    }
}

/// Parses `text` and checks it against `rules` at `now`, then checks that
/// `signature` (EIP-191 over the exact text) comes from the stated address.
/// Returns the message for the caller to consume its nonce.
pub fn verify(
    text: &str,
    signature: &str,
    rules: &SiweRules,
    now: DateTime<Utc>,
) -> Result<SiweMessage, SiweError> {
    let message: SiweMessage = text.parse()?;
    if message.domain != rules.domain {
        return Err(SiweError::WrongDomain(message.domain));
    }
    if message.uri != rules.uri {
        return Err(SiweError::WrongUri(message.uri));
    }
    if message.version != "1" {
        return Err(SiweError::UnsupportedVersion(message.version));
    }
    if !rules.chain_ids.contains(&message.chain_id) {
        return Err(SiweError::ChainNotAllowed(message.chain_id));
    }
    if message
        .expiration_time
        .is_some_and(|t| t <= now - rules.clock_skew)
    {
        return Err(SiweError::Expired);
    }
    if message.issued_at > now + rules.clock_skew
        || message
            .not_before
            .is_some_and(|t| t > now + rules.clock_skew)
    {
        return Err(SiweError::NotYetValid);
    }
    let signature: Signature = signature
        .parse()
        .map_err(|_| SiweError::MalformedSignature)?;
    let signer = signature
        .recover(&personal_message_hash(text.as_bytes()))
        .map_err(|_| SiweError::MalformedSignature)?;
    if signer != message.address {
        return Err(SiweError::SignerMismatch);
    }
    Ok(message)
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;
    use crate::eth::{LocalKey, keccak256};

    /// The example message of the EIP-4361 specification.
    const SPEC_EXAMPLE: &str = "service.invalid wants you to sign in with your Ethereum account:
0xC02aaA39b223FE8D0A0e5C4F27eAD9083C756Cc2

I accept the ServiceOrg Terms of Service: https://service.invalid/tos

URI: https://service.invalid/login
Version: 1
Chain ID: 1
Nonce: 32891756
Issued At: 2021-09-30T16:25:24Z
Resources:
- ipfs://bafybeiemxf5abjwjbikoz4mc3a3dla6ual3jsgpdr4cjr3oz3evfyavhwq/
- https://example.com/my-web2-claim.json";

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 22, 12, 0, 0).unwrap()
    }

    fn rules() -> SiweRules {
        SiweRules {
            domain: "palm.example".into(),
            uri: "https://palm.example/v1/auth/siwe".into(),
            chain_ids: vec![1, 10],
            clock_skew: chrono::Duration::seconds(30),
        }
    }

    fn key(seed: &[u8]) -> LocalKey {
        LocalKey::from_bytes(&keccak256(seed)).unwrap()
    }

    fn message(signer: &LocalKey) -> SiweMessage {
        SiweMessage {
            scheme: None,
            domain: "palm.example".into(),
            address: signer.address(),
            statement: Some("Sign in to Palm".into()),
            uri: "https://palm.example/v1/auth/siwe".into(),
            version: "1".into(),
            chain_id: 1,
            nonce: "k3Jd8sPq2Lm9".into(),
            issued_at: now() - chrono::Duration::seconds(5),
            expiration_time: Some(now() + chrono::Duration::minutes(10)),
            not_before: None,
            request_id: None,
            resources: vec![],
        }
    }

    fn signed(message: &SiweMessage, signer: &LocalKey) -> (String, String) {
        let text = message.to_string();
        let signature = signer.sign_personal(text.as_bytes()).unwrap().to_hex();
        (text, signature)
    }

    #[test]
    fn parses_and_reformats_the_specification_example() {
        let message: SiweMessage = SPEC_EXAMPLE.parse().unwrap();
        assert_eq!(message.domain, "service.invalid");
        assert_eq!(message.nonce, "32891756");
        assert_eq!(message.resources.len(), 2);
        assert_eq!(message.to_string(), SPEC_EXAMPLE);
    }

    #[test]
    fn a_valid_sign_in_verifies() {
        let alice = key(b"alice");
        let (text, signature) = signed(&message(&alice), &alice);
        let verified = verify(&text, &signature, &rules(), now()).unwrap();
        assert_eq!(verified.address, alice.address());
        // Without a statement, and with every optional field.
        let mut full = message(&alice);
        full.statement = None;
        full.not_before = Some(now() - chrono::Duration::minutes(1));
        full.request_id = Some("req-1".into());
        full.resources = vec!["https://palm.example/terms".into()];
        let (text, signature) = signed(&full, &alice);
        assert_eq!(verify(&text, &signature, &rules(), now()).unwrap(), full);
    }

    #[test]
    fn each_rule_rejects_with_its_own_code() {
        let alice = key(b"alice");
        let reject = |m: SiweMessage| {
            let (text, signature) = signed(&m, &alice);
            verify(&text, &signature, &rules(), now())
                .unwrap_err()
                .code()
        };
        let base = message(&alice);
        assert_eq!(
            reject(SiweMessage {
                domain: "evil.example".into(),
                ..base.clone()
            }),
            "siwe_wrong_domain"
        );
        assert_eq!(
            reject(SiweMessage {
                uri: "https://evil.example/x".into(),
                ..base.clone()
            }),
            "siwe_wrong_uri"
        );
        assert_eq!(
            reject(SiweMessage {
                version: "2".into(),
                ..base.clone()
            }),
            "siwe_unsupported_version"
        );
        assert_eq!(
            reject(SiweMessage {
                chain_id: 5,
                ..base.clone()
            }),
            "siwe_chain_not_allowed"
        );
        assert_eq!(
            reject(SiweMessage {
                expiration_time: Some(now() - chrono::Duration::minutes(1)),
                ..base.clone()
            }),
            "siwe_expired"
        );
        assert_eq!(
            reject(SiweMessage {
                not_before: Some(now() + chrono::Duration::minutes(5)),
                ..base.clone()
            }),
            "siwe_not_yet_valid"
        );
        assert_eq!(
            reject(SiweMessage {
                issued_at: now() + chrono::Duration::minutes(5),
                ..base
            }),
            "siwe_not_yet_valid"
        );
    }

    #[test]
    fn a_tampered_message_or_another_signer_is_rejected() {
        let alice = key(b"alice");
        let (text, signature) = signed(&message(&alice), &alice);
        let tampered = text.replace("Sign in to Palm", "Sign in to Palm and pay");
        assert_eq!(
            verify(&tampered, &signature, &rules(), now()),
            Err(SiweError::SignerMismatch)
        );

        let mallory = key(b"mallory");
        let (text, _) = signed(&message(&alice), &alice);
        let forged = mallory.sign_personal(text.as_bytes()).unwrap().to_hex();
        assert_eq!(
            verify(&text, &forged, &rules(), now()),
            Err(SiweError::SignerMismatch)
        );
        assert_eq!(
            verify(&text, "0xdeadbeef", &rules(), now()),
            Err(SiweError::MalformedSignature)
        );
    }

    #[test]
    fn malformed_messages_say_what_is_wrong() {
        let parse = |text: &str| text.parse::<SiweMessage>().unwrap_err();
        assert_eq!(parse("hello"), malformed("first line"));
        let lowercase = SPEC_EXAMPLE.replace(
            "0xC02aaA39b223FE8D0A0e5C4F27eAD9083C756Cc2",
            "0xc02aaa39b223fe8d0a0e5c4f27ead9083c756cc2",
        );
        assert_eq!(
            parse(&lowercase),
            malformed("address must be EIP-55 checksummed")
        );
        assert_eq!(
            parse(&SPEC_EXAMPLE.replace("Nonce: 32891756", "Nonce: 1")),
            malformed("Nonce must be at least 8 letters or digits")
        );
        assert_eq!(
            parse(&SPEC_EXAMPLE.replace("Version: 1\n", "")),
            malformed("Version")
        );
        assert_eq!(
            parse(&format!("{SPEC_EXAMPLE}\ntrailing")),
            malformed("unexpected line `trailing`")
        );
    }
}
