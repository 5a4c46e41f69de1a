//! Sign-In with Ethereum (EIP-4361): parse the message a wallet signed,
//! format one (for the development CLI and tests), and verify it against the
//! server's rules: domain, URI, allowed chain ids, time window, and the
//! EIP-191 signature recovering to the stated address.
//!
//! The parser follows the EIP's ABNF exactly; text it does not derive is
//! [`SiweError::Malformed`]. Line by line: `[scheme "://"] domain` (an RFC
//! 3986 authority with a non-empty host) and the fixed preamble; the address
//! (`0x` + 40 hex digits in EIP-55 checksum form); a blank line; an optional
//! statement (`reserved / unreserved / " "` only) and a blank line; `URI:` an
//! RFC 3986 URI; `Version: 1`; `Chain ID:` decimal digits; `Nonce:` at least
//! 8 letters or digits; `Issued At:` an RFC 3339 date-time; then, each
//! optional and in this order, `Expiration Time:`, `Not Before:`,
//! `Request ID:` (`*pchar`) and `Resources:` with one `- URI` per line. No
//! other line, no trailing line break. RFC 3986 itself is checked by
//! `iri-string`. The reference implementation's published vectors are
//! `tests/siwe_vectors.rs`.
//!
//! Nonce freshness (single use, short TTL) is the server's job: it holds the
//! nonce store. [`SiweMessage::nonce`] is what it looks up.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, SecondsFormat, Utc};

use crate::eth::{self, Address, AddressText, personal_message_hash};

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
    /// Message version; the grammar allows only `1`.
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
    /// A chain this server does not accept.
    #[error("chain id {0} is not accepted")]
    ChainNotAllowed(u64),
    /// Past its expiration time.
    #[error("the message expired")]
    Expired,
    /// Before its not-before time.
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

/// RFC 3986 `unreserved` (ALPHA / DIGIT / "-" / "." / "_" / "~").
fn unreserved(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_' | '~')
}

/// RFC 3986 `reserved` (gen-delims / sub-delims).
fn reserved(c: char) -> bool {
    matches!(
        c,
        ':' | '/'
            | '?'
            | '#'
            | '['
            | ']'
            | '@'
            | '!'
            | '$'
            | '&'
            | '\''
            | '('
            | ')'
            | '*'
            | '+'
            | ','
            | ';'
            | '='
    )
}

/// `pchar = unreserved / pct-encoded / sub-delims / ":" / "@"`, repeated.
fn is_pchars(text: &str) -> bool {
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        let ok = if c == '%' {
            chars.next().is_some_and(|h| h.is_ascii_hexdigit())
                && chars.next().is_some_and(|h| h.is_ascii_hexdigit())
        } else {
            unreserved(c) || (reserved(c) && !matches!(c, '/' | '?' | '#' | '[' | ']'))
        };
        if !ok {
            return false;
        }
    }
    true
}

/// An RFC 3986 `URI` (absolute, with a scheme).
fn is_uri(text: &str) -> bool {
    iri_string::types::UriStr::new(text).is_ok()
}

/// An RFC 3986 `authority` naming a host: `[ userinfo "@" ] host [ ":" port ]`.
fn is_authority(text: &str) -> bool {
    // Checked as the authority of a URI that has nothing else, so the RFC
    // 3986 grammar (IP literals, percent-encoding, ports) is iri-string's.
    let uri = format!("x://{text}");
    let Ok(uri) = iri_string::types::UriStr::new(&uri) else {
        return false;
    };
    let host = text.rsplit_once('@').map_or(text, |(_, rest)| rest);
    uri.authority_str() == Some(text)
        && uri.path_str().is_empty()
        && !host.is_empty()
        && !host.starts_with(':')
}

/// RFC 3986 `scheme = ALPHA *( ALPHA / DIGIT / "+" / "-" / "." )`.
fn is_scheme(text: &str) -> bool {
    let mut chars = text.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
}

/// RFC 3339 `date-time`, exactly: `full-date "T" full-time`, where "T" and
/// "Z" may be lowercase (ABNF strings are case-insensitive) but nothing else
/// (no space separator, no missing offset, no week dates).
fn parse_time(text: &str, field: &str) -> Result<DateTime<Utc>, SiweError> {
    let bad = || malformed(&format!("{field} is not an RFC 3339 date-time"));
    let b = text.as_bytes();
    let digits = |range: std::ops::Range<usize>| {
        b.get(range)
            .is_some_and(|d| d.iter().all(u8::is_ascii_digit))
    };
    let shape = b.len() >= 20
        && digits(0..4)
        && b[4] == b'-'
        && digits(5..7)
        && b[7] == b'-'
        && digits(8..10)
        && matches!(b[10], b'T' | b't')
        && digits(11..13)
        && b[13] == b':'
        && digits(14..16)
        && b[16] == b':'
        && digits(17..19);
    if !shape {
        return Err(bad());
    }
    let mut rest = &text[19..];
    if let Some(fraction) = rest.strip_prefix('.') {
        let end = fraction
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(fraction.len());
        if end == 0 {
            return Err(bad());
        }
        rest = &fraction[end..];
    }
    let offset_ok = matches!(rest, "Z" | "z")
        || (rest.len() == 6
            && matches!(rest.as_bytes()[0], b'+' | b'-')
            && rest.as_bytes()[1..3].iter().all(u8::is_ascii_digit)
            && rest.as_bytes()[3] == b':'
            && rest.as_bytes()[4..6].iter().all(u8::is_ascii_digit));
    if !offset_ok {
        return Err(bad());
    }
    DateTime::parse_from_rfc3339(text)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|_| bad())
}

/// The lines of a message, each taken by what the grammar expects next.
struct Lines<'a>(std::iter::Peekable<std::str::Split<'a, char>>);

impl<'a> Lines<'a> {
    /// The next line, which must start with `tag`; its value after the tag.
    fn tagged(&mut self, tag: &str) -> Result<&'a str, SiweError> {
        self.0
            .next()
            .and_then(|line| line.strip_prefix(tag))
            .ok_or_else(|| malformed(&format!("expected the `{}` line", tag.trim_end())))
    }

    /// The next line's value if it starts with `tag`, else nothing taken.
    fn optional(&mut self, tag: &str) -> Option<&'a str> {
        let value = self.0.peek()?.strip_prefix(tag)?;
        self.0.next();
        Some(value)
    }

    /// The next line, which must be empty.
    fn blank(&mut self, after: &str) -> Result<(), SiweError> {
        match self.0.next() {
            Some("") => Ok(()),
            _ => Err(malformed(&format!("expected a blank line after {after}"))),
        }
    }
}

impl FromStr for SiweMessage {
    type Err = SiweError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let mut lines = Lines(text.split('\n').peekable());
        let origin = lines
            .0
            .next()
            .and_then(|first| first.strip_suffix(PREAMBLE))
            .ok_or_else(|| malformed("the first line is not `<domain> wants you to sign in with your Ethereum account:`"))?;
        let (scheme, domain) = match origin.split_once("://") {
            Some((scheme, domain)) => {
                if !is_scheme(scheme) {
                    return Err(malformed("the scheme is not an RFC 3986 scheme"));
                }
                (Some(scheme.to_owned()), domain)
            }
            None => (None, origin),
        };
        if !is_authority(domain) {
            return Err(malformed("the domain is not an RFC 3986 authority"));
        }
        let address = lines
            .0
            .next()
            .ok_or_else(|| malformed("the address line is missing"))?;
        let address = eth::parse_checksummed_address(address)
            .map_err(|_| malformed("the address is not an EIP-55 checksummed address"))?;
        lines.blank("the address")?;
        // `[ statement LF ] LF`: a blank line then the URI means no
        // statement; otherwise this line is the statement (possibly empty)
        // and a blank line follows.
        let mut ahead = lines.0.clone();
        let statement = match (ahead.next(), ahead.next()) {
            (Some(""), Some(next)) if next.starts_with("URI: ") => {
                lines.0.next();
                None
            }
            (Some(statement), _) => {
                let statement = statement.to_owned();
                lines.0.next();
                if !statement
                    .chars()
                    .all(|c| c == ' ' || unreserved(c) || reserved(c))
                {
                    return Err(malformed(
                        "the statement has a character outside RFC 3986 reserved / unreserved / space",
                    ));
                }
                lines.blank("the statement")?;
                Some(statement)
            }
            (None, _) => return Err(malformed("the message ends after the address")),
        };
        let uri = lines.tagged("URI: ")?;
        if !is_uri(uri) {
            return Err(malformed("URI is not an RFC 3986 URI"));
        }
        let version = lines.tagged("Version: ")?;
        if version != "1" {
            return Err(malformed("Version must be 1"));
        }
        let chain_id = lines.tagged("Chain ID: ")?;
        if chain_id.is_empty() || !chain_id.bytes().all(|b| b.is_ascii_digit()) {
            return Err(malformed("Chain ID is not a decimal number"));
        }
        let chain_id = chain_id
            .parse()
            .map_err(|_| malformed("Chain ID is out of range"))?;
        let nonce = lines.tagged("Nonce: ")?;
        if nonce.len() < 8 || !nonce.chars().all(|c| c.is_ascii_alphanumeric()) {
            return Err(malformed("Nonce must be at least 8 letters or digits"));
        }
        let issued_at = parse_time(lines.tagged("Issued At: ")?, "Issued At")?;
        let expiration_time = lines
            .optional("Expiration Time: ")
            .map(|t| parse_time(t, "Expiration Time"))
            .transpose()?;
        let not_before = lines
            .optional("Not Before: ")
            .map(|t| parse_time(t, "Not Before"))
            .transpose()?;
        let request_id = lines.optional("Request ID: ");
        if request_id.is_some_and(|id| !is_pchars(id)) {
            return Err(malformed(
                "Request ID has a character outside RFC 3986 pchar",
            ));
        }
        let mut resources = Vec::new();
        if lines.0.peek() == Some(&"Resources:") {
            lines.0.next();
            for line in lines.0.by_ref() {
                let resource = line
                    .strip_prefix("- ")
                    .filter(|r| is_uri(r))
                    .ok_or_else(|| malformed("a resource is not `- ` and one RFC 3986 URI"))?;
                resources.push(resource.to_owned());
            }
        }
        if let Some(extra) = lines.0.next() {
            return Err(malformed(&format!("unexpected line `{extra}`")));
        }
        Ok(Self {
            scheme,
            domain: domain.to_owned(),
            address,
            statement,
            uri: uri.to_owned(),
            version: version.to_owned(),
            chain_id,
            nonce: nonce.to_owned(),
            issued_at,
            expiration_time,
            not_before,
            request_id: request_id.map(str::to_owned),
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
    if !rules.chain_ids.contains(&message.chain_id) {
        return Err(SiweError::ChainNotAllowed(message.chain_id));
    }
    if message
        .expiration_time
        .is_some_and(|t| t <= now - rules.clock_skew)
    {
        return Err(SiweError::Expired);
    }
    // The validity window is `Not Before` to `Expiration Time`, as the EIP
    // and its reference implementation judge it; `Issued At` is the
    // wallet's own statement and freshness comes from the server's nonce.
    if message
        .not_before
        .is_some_and(|t| t > now + rules.clock_skew)
    {
        return Err(SiweError::NotYetValid);
    }
    let signature = eth::parse_signature(signature).map_err(|_| SiweError::MalformedSignature)?;
    let signer = eth::recover(&signature, &personal_message_hash(text.as_bytes()))
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
    use crate::eth::LocalKey;

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
        LocalKey::from_seed(seed).unwrap()
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
        let signature = signer.sign_personal(text.as_bytes()).unwrap().to_string();
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
            "siwe_malformed"
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
        // A wallet clock ahead of ours is no reason to refuse.
        let ahead = SiweMessage {
            issued_at: now() + chrono::Duration::minutes(5),
            ..base
        };
        let (text, signature) = signed(&ahead, &alice);
        assert!(verify(&text, &signature, &rules(), now()).is_ok());
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
        let forged = mallory.sign_personal(text.as_bytes()).unwrap().to_string();
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
        let parse = |text: &str| match text.parse::<SiweMessage>() {
            Err(SiweError::Malformed(what)) => what,
            other => panic!("{text:?} parsed: {other:?}"),
        };
        assert!(parse("hello").contains("first line"));
        let lowercase = SPEC_EXAMPLE.replace(
            "0xC02aaA39b223FE8D0A0e5C4F27eAD9083C756Cc2",
            "0xc02aaa39b223fe8d0a0e5c4f27ead9083c756cc2",
        );
        assert!(parse(&lowercase).contains("EIP-55"));
        assert!(parse(&SPEC_EXAMPLE.replace("Nonce: 32891756", "Nonce: 1")).contains("Nonce"));
        assert!(parse(&SPEC_EXAMPLE.replace("Version: 1\n", "")).contains("Version"));
        assert!(parse(&SPEC_EXAMPLE.replace("Version: 1", "Version: 2")).contains("Version"));
        assert!(parse(&format!("{SPEC_EXAMPLE}\ntrailing")).contains("resource"));
        let bare = &SPEC_EXAMPLE[..SPEC_EXAMPLE.find("\nResources:").unwrap()];
        assert!(parse(&format!("{bare}\ntrailing")).contains("unexpected line `trailing`"));
        assert!(parse(&format!("{bare}\n")).contains("unexpected line"));
    }

    /// Issue 14: a resource line that is not one RFC 3986 URI.
    #[test]
    fn a_resource_must_be_one_uri() {
        for bad in [
            "- https://service.org/login - https://service.org/login/2",
            "- _not_a_rfc3986_valid_uri_",
            "-https://service.org/login",
            "- ",
            "https://service.org/login",
        ] {
            let text = SPEC_EXAMPLE.replace("- https://example.com/my-web2-claim.json", bad);
            assert!(
                matches!(text.parse::<SiweMessage>(), Err(SiweError::Malformed(_))),
                "{bad:?} was accepted"
            );
        }
        let alice = key(b"alice");
        let mut with_resources = message(&alice);
        with_resources.resources = vec!["https://palm.example/terms".into()];
        let (text, signature) = signed(&with_resources, &alice);
        let broken = text.replace(
            "- https://palm.example/terms",
            "- https://service.org/login - https://service.org/login/2",
        );
        let signature_over_broken = alice.sign_personal(broken.as_bytes()).unwrap().to_string();
        assert!(verify(&text, &signature, &rules(), now()).is_ok());
        assert_eq!(
            verify(&broken, &signature_over_broken, &rules(), now())
                .unwrap_err()
                .code(),
            "siwe_malformed"
        );
    }

    #[test]
    fn the_grammar_decides_each_line() {
        let parses = |text: &str| text.parse::<SiweMessage>();
        // A scheme before the domain; statements empty, absent or present.
        let with_scheme = format!("https://{SPEC_EXAMPLE}");
        assert_eq!(
            parses(&with_scheme).unwrap().scheme.as_deref(),
            Some("https")
        );
        assert!(parses(&format!("1https://{SPEC_EXAMPLE}")).is_err());
        let no_statement = SPEC_EXAMPLE.replace(
            "I accept the ServiceOrg Terms of Service: https://service.invalid/tos\n",
            "",
        );
        assert_eq!(parses(&no_statement).unwrap().statement, None);
        let empty_statement = SPEC_EXAMPLE.replace(
            "I accept the ServiceOrg Terms of Service: https://service.invalid/tos",
            "",
        );
        let parsed = parses(&empty_statement).unwrap();
        assert_eq!(parsed.statement.as_deref(), Some(""));
        assert_eq!(parsed.to_string(), empty_statement);
        for bad_statement in ["50% off", "say \"yes\"", "café", "tab\there", "a\rb"] {
            let text = SPEC_EXAMPLE.replace(
                "I accept the ServiceOrg Terms of Service: https://service.invalid/tos",
                bad_statement,
            );
            assert!(parses(&text).is_err(), "{bad_statement:?}");
        }
        // Domains: RFC 3986 authorities with a host.
        for good in [
            "[::1]:8080",
            "user:pw@host",
            "xn--bcher-kva.example",
            "a_b.example",
        ] {
            let text = SPEC_EXAMPLE.replacen("service.invalid", good, 1);
            assert!(parses(&text).is_ok(), "{good}");
        }
        for bad in [
            "",
            "#frag",
            "host/path",
            "host:port",
            "[::1",
            ":80",
            "a b",
            "x@y@z",
        ] {
            let text = SPEC_EXAMPLE.replacen("service.invalid", bad, 1);
            assert!(parses(&text).is_err(), "{bad:?}");
        }
        // Request IDs are pchars, possibly empty.
        let with_request = |id: &str| {
            SPEC_EXAMPLE.replace("\nResources:", &format!("\nRequest ID: {id}\nResources:"))
        };
        assert_eq!(
            parses(&with_request("")).unwrap().request_id.as_deref(),
            Some("")
        );
        assert!(parses(&with_request("a-b_c~d:e@f%20")).is_ok());
        for bad in ["a b", "a/b", "a?b", "%zz"] {
            assert!(parses(&with_request(bad)).is_err(), "{bad:?}");
        }
        // Times: RFC 3339 date-time only.
        for bad in [
            "2021-09-30 16:25:24Z",
            "2021-09-30T16:25:24",
            "2021-09-30T16:25Z",
            "2021-09-30T16:25:24.Z",
            "2021-09-30T16:25:24+0100",
            "2021-13-30T16:25:24Z",
        ] {
            let text = SPEC_EXAMPLE.replace("2021-09-30T16:25:24Z", bad);
            assert!(parses(&text).is_err(), "{bad:?}");
        }
        let lower = SPEC_EXAMPLE.replace("2021-09-30T16:25:24Z", "2021-09-30t16:25:24.5+02:00");
        assert!(parses(&lower).is_ok());
        // Chain ids are digits only and fit in 64 bits.
        for bad in ["-1", "+1", "0x1", "18446744073709551616", ""] {
            let text = SPEC_EXAMPLE.replace("Chain ID: 1", &format!("Chain ID: {bad}"));
            assert!(parses(&text).is_err(), "{bad:?}");
        }
        // `Resources:` with no resource is allowed; with a value on its line it is not.
        let bare = SPEC_EXAMPLE[..SPEC_EXAMPLE.find("\n- ").unwrap()].to_owned();
        assert!(parses(&bare).unwrap().resources.is_empty());
        assert!(parses(&bare.replace("Resources:", "Resources: x")).is_err());
    }
}
