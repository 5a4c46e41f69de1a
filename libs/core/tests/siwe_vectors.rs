//! The SIWE (EIP-4361) reference implementation's published test vectors
//! (`spruceid/siwe`, `test/`; see `fixtures/siwe/README.md` for revisions
//! and licence), run against `palm_core::siwe`: every positive vector parses
//! to its fields or verifies, every negative one is refused.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use palm_core::eth::AddressText;
use palm_core::siwe::{self, SiweError, SiweMessage, SiweRules};
use serde_json::Value;

fn fixture(name: &str) -> BTreeMap<String, Value> {
    let path = format!("{}/tests/fixtures/siwe/{name}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn time(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text)
        .unwrap_or_else(|e| panic!("{text}: {e}"))
        .with_timezone(&Utc)
}

fn field<'a>(fields: &'a Value, name: &str) -> Option<&'a str> {
    fields.get(name).and_then(Value::as_str)
}

/// Negative vectors of these revisions that the EIP-4361 grammar itself
/// accepts, so a parser that follows the grammar exactly must accept them
/// too. Each is checked to still be in the fixture and to parse, so this
/// list cannot go stale silently.
const CONTRADICT_THE_GRAMMAR: [(&str, &str); 2] = [
    (
        "domain not RFC4501 authority",
        "`not_rfc4501` is an RFC 3986 reg-name (`_` is unreserved); a later upstream revision \
         of this vector uses `#notrfc4501`",
    ),
    (
        "version not 1",
        "the message says `Version: 1` and is otherwise the valid base message; a later upstream \
         revision uses `Version: 3`",
    ),
];

#[test]
fn parsing_positive_vectors_parse_to_their_fields() {
    let vectors = fixture("parsing_positive.json");
    assert_eq!(vectors.len(), 8);
    for (name, vector) in &vectors {
        let text = vector["message"].as_str().unwrap();
        let fields = &vector["fields"];
        let parsed: SiweMessage = text
            .parse()
            .unwrap_or_else(|e| panic!("{name}: refused: {e}"));
        assert_eq!(
            Some(parsed.domain.as_str()),
            field(fields, "domain"),
            "{name}"
        );
        assert_eq!(
            Some(parsed.address.to_checksummed().as_str()),
            field(fields, "address"),
            "{name}"
        );
        assert_eq!(
            parsed.statement.as_deref(),
            field(fields, "statement"),
            "{name}"
        );
        assert_eq!(Some(parsed.uri.as_str()), field(fields, "uri"), "{name}");
        assert_eq!(
            Some(parsed.version.as_str()),
            field(fields, "version"),
            "{name}"
        );
        assert_eq!(
            Some(parsed.chain_id.to_string().as_str()),
            field(fields, "chainId"),
            "{name}"
        );
        assert_eq!(
            Some(parsed.nonce.as_str()),
            field(fields, "nonce"),
            "{name}"
        );
        assert_eq!(
            parsed.issued_at,
            time(field(fields, "issuedAt").unwrap()),
            "{name}"
        );
        let resources: Vec<&str> = fields
            .get("resources")
            .and_then(Value::as_array)
            .map(|r| r.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        assert_eq!(parsed.resources, resources, "{name}");
    }
}

#[test]
fn parsing_negative_vectors_are_malformed() {
    let vectors = fixture("parsing_negative.json");
    assert_eq!(vectors.len(), 34);
    let mut refused = 0;
    for (name, vector) in &vectors {
        let text = vector.as_str().unwrap();
        let result = text.parse::<SiweMessage>();
        if let Some((_, why)) = CONTRADICT_THE_GRAMMAR.iter().find(|(n, _)| n == name) {
            assert!(result.is_ok(), "{name} ({why}): {result:?}");
            continue;
        }
        assert!(
            matches!(result, Err(SiweError::Malformed(_))),
            "{name}: accepted as {result:?}"
        );
        refused += 1;
    }
    assert_eq!(refused, 32);
}

#[test]
fn invalid_uri_vectors_are_malformed() {
    let vectors = fixture("invalid_uris.json");
    assert_eq!(vectors.len(), 16);
    for (name, vector) in &vectors {
        let result = vector.as_str().unwrap().parse::<SiweMessage>();
        assert!(
            matches!(result, Err(SiweError::Malformed(_))),
            "{name}: accepted as {result:?}"
        );
    }
}

/// The message text the reference implementation's `prepareMessage` builds
/// from the fields (written out here, independent of Palm's formatter).
fn reference_text(fields: &Value) -> String {
    let get = |name: &str| field(fields, name);
    let mut prefix = format!(
        "{} wants you to sign in with your Ethereum account:\n{}",
        get("domain").unwrap(),
        get("address").unwrap()
    );
    prefix.push_str("\n\n");
    if let Some(statement) = get("statement") {
        prefix.push_str(statement);
        prefix.push('\n');
    }
    let mut suffix = vec![
        format!("URI: {}", get("uri").unwrap()),
        format!("Version: {}", get("version").unwrap()),
        format!("Chain ID: {}", fields["chainId"]),
        format!("Nonce: {}", get("nonce").unwrap()),
        format!("Issued At: {}", get("issuedAt").unwrap()),
    ];
    for (name, tag) in [
        ("expirationTime", "Expiration Time"),
        ("notBefore", "Not Before"),
        ("requestId", "Request ID"),
    ] {
        if let Some(value) = get(name) {
            suffix.push(format!("{tag}: {value}"));
        }
    }
    format!("{prefix}\n{}", suffix.join("\n"))
}

/// What the server accepts for a vector: its own domain, URI and chain
/// (or the vector's `domainBinding`), no clock tolerance.
fn rules(fields: &Value) -> SiweRules {
    SiweRules {
        domain: field(fields, "domainBinding")
            .or(field(fields, "domain"))
            .unwrap()
            .to_owned(),
        uri: field(fields, "uri").unwrap().to_owned(),
        chain_ids: vec![fields["chainId"].as_u64().unwrap()],
        clock_skew: chrono::Duration::zero(),
    }
}

fn verify_vector(fields: &Value) -> Result<SiweMessage, SiweError> {
    let text = reference_text(fields);
    let now = field(fields, "time").map_or_else(Utc::now, time);
    let message = siwe::verify(
        &text,
        field(fields, "signature").unwrap(),
        &rules(fields),
        now,
    )?;
    // Palm's formatter writes the same text back (for the vectors' times,
    // which carry their milliseconds or none).
    assert_eq!(message.to_string(), text);
    Ok(message)
}

#[test]
fn verification_positive_vectors_verify() {
    let vectors = fixture("verification_positive.json");
    assert_eq!(vectors.len(), 4);
    for (name, fields) in &vectors {
        let message = verify_vector(fields).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(
            Some(message.address.to_checksummed().as_str()),
            field(fields, "address")
        );
    }
}

#[test]
fn verification_negative_vectors_are_refused_with_their_reason() {
    let vectors = fixture("verification_negative.json");
    assert_eq!(vectors.len(), 7);
    let expected = |name: &str| match name {
        "expired message" | "custom time" => "siwe_expired",
        "domain binding" => "siwe_wrong_domain",
        "malformed signature" => "siwe_malformed_signature",
        "wrong signature" => "siwe_signer_mismatch",
        "not yet valid" => "siwe_not_yet_valid",
        // The nonce is the server's to check (palmdao's nonce store answers
        // `siwe_nonce_invalid`); the message verifies, its nonce is not the
        // one the server issued.
        "custom nonce" => "nonce",
        other => panic!("a vector this test does not know: {other}"),
    };
    for (name, fields) in &vectors {
        let result = verify_vector(fields);
        if expected(name) == "nonce" {
            let message = result.unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_ne!(Some(message.nonce.as_str()), field(fields, "matchNonce"));
            continue;
        }
        assert_eq!(
            result.map(|m| m.nonce).map_err(|e| e.code()),
            Err(expected(name)),
            "{name}"
        );
    }
}
