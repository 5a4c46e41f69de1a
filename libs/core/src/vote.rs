//! The signed vote: the EIP-712 typed data a voter's wallet signs, shared by
//! the client side (`palmctl`, tests) and the validator.
//!
//! ```text
//! EIP712Domain(string name,string version,uint256 chainId)
//! Vote(string proposal,string choice,uint64 timestamp,address voter,string app)
//! ```
//!
//! `choice` is signed as text: exactly what a browser dApp signs, the
//! choice's `JSON.stringify` — compact, object keys in JavaScript's order
//! (integer-like keys ascending numerically, so `{"2":1,"10":3}`), arrays in
//! their order: `2`, `[1,3]`, `{"1":2,"3":1}`. One string field keeps the
//! typed data the same for every voting type, so a new type (`quadratic`,
//! `ranked-choice`) needs no new signing shape. The API receives the choice
//! as JSON and re-derives the same text with [`canonical_choice`]; only that
//! text is accepted (one vote has one signed form).
//!
//! The struct is declared with alloy's `sol!`, so its type hash is fixed at
//! compile time; [`VoteMessage::typed_data`] is the same struct as the JSON
//! document wallets take (`eth_signTypedData_v4`).

use std::borrow::Cow;
use std::fmt::Write as _;

use alloy_primitives::U256;
use alloy_sol_types::{Eip712Domain, SolStruct};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::eth::{self, Address, B256, EthError, LocalKey, Signature, TypedData};

mod typed {
    #![allow(missing_docs, unreachable_pub)]
    alloy_sol_types::sol! {
        #[derive(Debug, serde::Serialize)]
        struct Vote {
            string proposal;
            string choice;
            uint64 timestamp;
            address voter;
            string app;
        }
    }
}

/// The EIP-712 domain votes are signed under (from configuration).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VoteDomain {
    /// Domain name, `Palm` by default.
    pub name: String,
    /// Domain version, `1` by default.
    pub version: String,
    /// EIP-155 chain id the wallet signs for.
    pub chain_id: u64,
}

impl Default for VoteDomain {
    fn default() -> Self {
        Self {
            name: "Palm".to_owned(),
            version: "1".to_owned(),
            chain_id: 1,
        }
    }
}

impl VoteDomain {
    fn eip712(&self) -> Eip712Domain {
        Eip712Domain::new(
            Some(Cow::Owned(self.name.clone())),
            Some(Cow::Owned(self.version.clone())),
            Some(U256::from(self.chain_id)),
            None,
            None,
        )
    }
}

/// One vote as signed.
#[derive(Debug, Clone, PartialEq)]
pub struct VoteMessage {
    /// The proposal id.
    pub proposal: String,
    /// The choice; its shape depends on the voting type.
    pub choice: Value,
    /// Unix seconds when the voter signed.
    pub timestamp: u64,
    /// The signing wallet.
    pub voter: Address,
    /// The app (domain) the vote was cast through.
    pub app: String,
}

/// The choice's signed text: what JavaScript's `JSON.stringify` writes for
/// it, so the text a browser wallet signed and the one the verifier derives
/// are the same bytes whatever key order the JSON travelled in.
///
/// Object keys that are array indices (`0`, `7`, `10`: canonical decimal
/// below 2^32 − 1) come first in ascending numeric order, as in every
/// JavaScript engine; other keys (no voting type has any) follow in code
/// point order, standing in for JavaScript's insertion order, which JSON
/// parsing does not keep.
pub fn canonical_choice(choice: &Value) -> String {
    let mut out = String::new();
    write_js(choice, &mut out);
    out
}

fn array_index(key: &str) -> Option<u32> {
    key.parse::<u32>()
        .ok()
        .filter(|n| *n != u32::MAX && n.to_string() == key)
}

fn write_js(value: &Value, out: &mut String) {
    match value {
        Value::Object(map) => {
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            entries.sort_by(|(a, _), (b, _)| match (array_index(a), array_index(b)) {
                (Some(a), Some(b)) => a.cmp(&b),
                (Some(_), None) => std::cmp::Ordering::Less,
                (None, Some(_)) => std::cmp::Ordering::Greater,
                (None, None) => a.cmp(b),
            });
            out.push('{');
            for (i, (key, item)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                let _ = write!(out, "{}:", Value::String(key.clone()));
                write_js(item, out);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_js(item, out);
            }
            out.push(']');
        }
        scalar => {
            let _ = write!(out, "{scalar}");
        }
    }
}

impl VoteMessage {
    fn typed(&self) -> typed::Vote {
        typed::Vote {
            proposal: self.proposal.clone(),
            choice: canonical_choice(&self.choice),
            timestamp: self.timestamp,
            voter: self.voter,
            app: self.app.clone(),
        }
    }

    /// The typed data a wallet is asked to sign (`eth_signTypedData_v4`).
    /// The voter is written checksummed, as wallets display it.
    pub fn typed_data(&self, domain: &VoteDomain) -> TypedData {
        let mut data = TypedData::from_struct(&self.typed(), Some(domain.eip712()));
        data.message["voter"] = Value::String(self.voter.to_checksum(None));
        data
    }

    /// The digest signed.
    pub fn signing_hash(&self, domain: &VoteDomain) -> B256 {
        self.typed().eip712_signing_hash(&domain.eip712())
    }

    /// Signs with `key` (development CLI and tests).
    pub fn sign(&self, domain: &VoteDomain, key: &LocalKey) -> Result<Signature, EthError> {
        key.sign_prehash(&self.signing_hash(domain))
    }

    /// The address that signed `signature` over this vote.
    pub fn recover(&self, domain: &VoteDomain, signature: &Signature) -> Result<Address, EthError> {
        eth::recover(signature, &self.signing_hash(domain))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn vote(voter: Address) -> VoteMessage {
        VoteMessage {
            proposal: "0192f0c4-0000-7000-8000-000000000001".into(),
            choice: json!({ "2": 1, "1": 3 }),
            timestamp: 1_700_000_000,
            voter,
            app: "palm.example".into(),
        }
    }

    fn voter() -> LocalKey {
        LocalKey::from_seed(b"voter").unwrap()
    }

    #[test]
    fn canonical_choice_is_compact_with_javascript_key_order() {
        assert_eq!(canonical_choice(&json!(2)), "2");
        assert_eq!(canonical_choice(&json!([3, 1])), "[3,1]");
        assert_eq!(
            canonical_choice(&json!({ "10": 3, "2": 1 })),
            r#"{"2":1,"10":3}"#
        );
        assert_eq!(
            canonical_choice(&json!({ "b": 1, "01": 2, "a": { "y": 1, "x": 2 }, "3": 4 })),
            r#"{"3":4,"01":2,"a":{"x":2,"y":1},"b":1}"#
        );
        // 2^32 - 1 is no array index: it sorts with the other string keys.
        assert_eq!(
            canonical_choice(&json!({ "4294967295": 1, "4294967294": 2, "0": 3 })),
            r#"{"0":3,"4294967294":2,"4294967295":1}"#
        );
    }

    #[test]
    fn a_signed_vote_recovers_its_signer_and_a_changed_one_does_not() {
        let key = voter();
        let domain = VoteDomain::default();
        let signed = vote(key.address());
        let signature = signed.sign(&domain, &key).unwrap();
        assert_eq!(signed.recover(&domain, &signature).unwrap(), key.address());

        let mut tampered = signed.clone();
        tampered.choice = json!({ "1": 3, "2": 2 });
        assert_ne!(
            tampered.recover(&domain, &signature).unwrap(),
            key.address()
        );

        let other_chain = VoteDomain {
            chain_id: 5,
            ..VoteDomain::default()
        };
        assert_ne!(
            signed.recover(&other_chain, &signature).unwrap(),
            key.address()
        );
    }

    #[test]
    fn key_order_of_the_choice_does_not_change_the_digest() {
        let a = vote(voter().address());
        let mut b = a.clone();
        b.choice = json!({ "1": 3, "2": 1 });
        let domain = VoteDomain::default();
        assert_eq!(a.signing_hash(&domain), b.signing_hash(&domain));
    }

    #[test]
    fn the_wallet_document_is_the_documented_type_and_hashes_the_same() {
        let signed = vote(voter().address());
        let domain = VoteDomain::default();
        let data = signed.typed_data(&domain);
        assert_eq!(
            data.encode_type().unwrap(),
            "Vote(string proposal,string choice,uint64 timestamp,address voter,string app)"
        );
        // Through JSON, as a wallet receives it, to the same digest.
        let document = serde_json::to_value(&data).unwrap();
        assert_eq!(document["message"]["choice"], r#"{"1":3,"2":1}"#);
        assert_eq!(
            document["message"]["voter"],
            voter().address().to_checksum(None)
        );
        let wallet: TypedData = serde_json::from_value(document).unwrap();
        assert_eq!(
            wallet.eip712_signing_hash().unwrap(),
            signed.signing_hash(&domain)
        );
    }
}
