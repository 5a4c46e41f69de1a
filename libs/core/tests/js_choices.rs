//! Votes signed the way a browser dApp signs them: the choice text in the
//! typed data is JavaScript's `JSON.stringify(choice)`, which orders
//! integer-like object keys numerically (`{"2":1,"10":3}`). Issue 14: such a
//! vote must verify for every voting type and up to 20 choices.
//!
//! The signed text comes from an implementation independent of
//! `palm_core::vote`: node's own `JSON.stringify` when `node` is installed,
//! and always a JavaScript-order serializer written out below (checked
//! against node where node runs). The typed data is the JSON document a
//! wallet receives, read by alloy, not Palm's `sol!` struct.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;

use palm_core::eth::{AddressText, LocalKey, TypedData};
use palm_core::vote::{VoteDomain, VoteMessage, canonical_choice};
use palm_core::voting;
use serde_json::{Value, json};

/// A choice as a dApp builds it in JavaScript, keys in insertion order.
#[derive(Debug, Clone)]
enum JsChoice {
    Number(u64),
    Array(Vec<u64>),
    Object(Vec<(String, u64)>),
}

impl JsChoice {
    /// A JavaScript expression that builds this value (keys as written).
    fn literal(&self) -> String {
        match self {
            Self::Number(n) => n.to_string(),
            Self::Array(items) => format!(
                "[{}]",
                items
                    .iter()
                    .map(u64::to_string)
                    .collect::<Vec<_>>()
                    .join(",")
            ),
            Self::Object(entries) => format!(
                "{{{}}}",
                entries
                    .iter()
                    .map(|(k, v)| format!("{k:?}:{v}"))
                    .collect::<Vec<_>>()
                    .join(",")
            ),
        }
    }

    /// `JSON.stringify` by ECMA-262's OrdinaryOwnPropertyKeys: array-index
    /// keys (canonical numerals below 2^32 - 1) ascending, then the other
    /// string keys in insertion order.
    fn stringify_by_hand(&self) -> String {
        match self {
            Self::Number(_) | Self::Array(_) => self.literal(),
            Self::Object(entries) => {
                let is_index = |k: &str| {
                    !k.is_empty()
                        && k.bytes().all(|b| b.is_ascii_digit())
                        && (k == "0" || !k.starts_with('0'))
                        && k.len() <= 10
                        && k.parse::<u64>().is_ok_and(|n| n < (1 << 32) - 1)
                };
                let mut indices: Vec<&(String, u64)> =
                    entries.iter().filter(|(k, _)| is_index(k)).collect();
                indices.sort_by_key(|(k, _)| k.parse::<u64>().unwrap());
                let others = entries.iter().filter(|(k, _)| !is_index(k));
                let body: Vec<String> = indices
                    .into_iter()
                    .chain(others)
                    .map(|(k, v)| format!("\"{k}\":{v}"))
                    .collect();
                format!("{{{}}}", body.join(","))
            }
        }
    }
}

/// `JSON.stringify` of each expression by node, or `None` without node.
fn stringify_with_node(literals: &[String]) -> Option<Vec<String>> {
    let script = format!(
        "for (const v of [{}]) console.log(JSON.stringify(v));",
        literals.join(",")
    );
    let output = Command::new("node").arg("-e").arg(script).output().ok()?;
    assert!(
        output.status.success(),
        "node failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    Some(
        String::from_utf8(output.stdout)
            .unwrap()
            .lines()
            .map(str::to_owned)
            .collect(),
    )
}

/// Every voting type's choices over 1 to 20 choices, keys inserted in an
/// order JavaScript will not keep (descending, then interleaved).
fn choices() -> Vec<(&'static str, usize, JsChoice)> {
    let mut all = Vec::new();
    for n in 1..=20_u64 {
        let count = usize::try_from(n).unwrap();
        all.push(("single-choice", count, JsChoice::Number(n)));
        all.push(("approval", count, JsChoice::Array((1..=n).rev().collect())));
        let descending = (1..=n).rev().map(|k| (k.to_string(), k * 7 % 11 + 1));
        all.push(("weighted", count, JsChoice::Object(descending.collect())));
        let interleaved = (1..=n)
            .filter(|k| k % 2 == 0)
            .chain((1..=n).filter(|k| k % 2 == 1))
            .map(|k| (k.to_string(), 1));
        all.push(("weighted", count, JsChoice::Object(interleaved.collect())));
    }
    all.push((
        "weighted",
        10,
        JsChoice::Object(vec![("2".into(), 1), ("10".into(), 3)]),
    ));
    all
}

/// The document a wallet signs (`eth_signTypedData_v4`) with `choice_text`.
fn wallet_document(choice_text: &str, voter: &LocalKey) -> TypedData {
    serde_json::from_value(json!({
        "types": {
            "EIP712Domain": [
                { "name": "name", "type": "string" },
                { "name": "version", "type": "string" },
                { "name": "chainId", "type": "uint256" }
            ],
            "Vote": [
                { "name": "proposal", "type": "string" },
                { "name": "choice", "type": "string" },
                { "name": "timestamp", "type": "uint64" },
                { "name": "voter", "type": "address" },
                { "name": "app", "type": "string" }
            ]
        },
        "primaryType": "Vote",
        "domain": { "name": "Palm", "version": "1", "chainId": 1 },
        "message": {
            "proposal": "0192f0c4-0000-7000-8000-000000000001",
            "choice": choice_text,
            "timestamp": 1_700_000_000_u64,
            "voter": voter.address().to_checksummed(),
            "app": "palm.example"
        }
    }))
    .unwrap()
}

fn palm_vote(choice: Value, voter: &LocalKey) -> VoteMessage {
    VoteMessage {
        proposal: "0192f0c4-0000-7000-8000-000000000001".into(),
        choice,
        timestamp: 1_700_000_000,
        voter: voter.address(),
        app: "palm.example".into(),
    }
}

#[test]
fn the_example_of_the_issue_is_javascripts_text() {
    let choice = JsChoice::Object(vec![("2".into(), 1), ("10".into(), 3)]);
    assert_eq!(choice.stringify_by_hand(), r#"{"2":1,"10":3}"#);
    assert_eq!(
        canonical_choice(&json!({ "2": 1, "10": 3 })),
        r#"{"2":1,"10":3}"#
    );
    if let Some(node) = stringify_with_node(&[choice.literal()]) {
        assert_eq!(node, [r#"{"2":1,"10":3}"#]);
    }
}

#[test]
fn a_vote_signed_over_javascripts_text_verifies_for_every_type_and_up_to_20_choices() {
    let all = choices();
    let literals: Vec<String> = all.iter().map(|(_, _, c)| c.literal()).collect();
    let node = stringify_with_node(&literals);
    if node.is_none() {
        eprintln!(
            "node is not installed: the JavaScript order comes from the serializer in this test only"
        );
    }
    let voter = LocalKey::from_seed(b"browser wallet").unwrap();
    let domain = VoteDomain::default();
    for (i, (voting_type, count, choice)) in all.iter().enumerate() {
        let by_hand = choice.stringify_by_hand();
        let text = match &node {
            Some(node) => {
                assert_eq!(node[i], by_hand, "node and the serializer disagree");
                node[i].clone()
            }
            None => by_hand,
        };
        let parsed: Value = serde_json::from_str(&text).unwrap();
        assert!(
            voting::voting_type(voting_type)
                .unwrap()
                .fits(&parsed, *count),
            "{voting_type} over {count}: {text}"
        );
        let digest = wallet_document(&text, &voter)
            .eip712_signing_hash()
            .unwrap();
        let signature = voter.sign_prehash(&digest).unwrap();
        // The API receives the choice as JSON, in whatever key order.
        assert_eq!(
            palm_vote(parsed, &voter)
                .recover(&domain, &signature)
                .unwrap(),
            voter.address(),
            "{voting_type} over {count}: {text}"
        );
        let reordered: Value = serde_json::from_str(&choice.literal()).unwrap();
        assert_eq!(
            palm_vote(reordered, &voter)
                .recover(&domain, &signature)
                .unwrap(),
            voter.address()
        );
    }
}

/// Palm accepts exactly the JavaScript text: a signature over another
/// spelling of the same choice (keys in code-point order) does not verify.
#[test]
fn only_the_javascript_text_is_the_signed_form() {
    let voter = LocalKey::from_seed(b"browser wallet").unwrap();
    let code_point_order = r#"{"10":3,"2":1}"#;
    let digest = wallet_document(code_point_order, &voter)
        .eip712_signing_hash()
        .unwrap();
    let signature = voter.sign_prehash(&digest).unwrap();
    assert_ne!(
        palm_vote(json!({ "2": 1, "10": 3 }), &voter)
            .recover(&VoteDomain::default(), &signature)
            .unwrap(),
        voter.address()
    );
}
