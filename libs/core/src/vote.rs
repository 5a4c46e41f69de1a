//! The signed vote: the EIP-712 typed data a voter's wallet signs, shared by
//! the client side (`palmctl`, tests) and the validator.
//!
//! ```text
//! EIP712Domain(string name,string version,uint256 chainId)
//! Vote(string proposal,string choice,uint64 timestamp,address voter,string app)
//! ```
//!
//! `choice` is signed as text: the choice's canonical JSON (compact, object
//! keys sorted) — `2`, `[1,3]`, `{"1":2,"3":1}`. One string field keeps the
//! typed data the same for every voting type, so a new type (`quadratic`,
//! `ranked-choice`) needs no new signing shape. The API receives the choice
//! as JSON and re-derives the same text with [`canonical_choice`].

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::eip712::{Eip712Error, TypedData};
use crate::eth::{Address, EthError, LocalKey, Signature};

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

/// The choice's canonical text: compact JSON with object keys sorted, so
/// the signer and the verifier derive the same bytes whatever key order the
/// JSON travelled in.
pub fn canonical_choice(choice: &Value) -> String {
    fn sorted(value: &Value) -> Value {
        match value {
            Value::Object(map) => {
                let mut entries: Vec<(&String, &Value)> = map.iter().collect();
                entries.sort_by(|a, b| a.0.cmp(b.0));
                Value::Object(
                    entries
                        .into_iter()
                        .map(|(k, v)| (k.clone(), sorted(v)))
                        .collect(),
                )
            }
            Value::Array(items) => Value::Array(items.iter().map(sorted).collect()),
            other => other.clone(),
        }
    }
    sorted(choice).to_string()
}

impl VoteMessage {
    /// The typed data a wallet is asked to sign (`eth_signTypedData_v4`).
    pub fn typed_data(&self, domain: &VoteDomain) -> TypedData {
        let document = json!({
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
            "domain": { "name": domain.name, "version": domain.version, "chainId": domain.chain_id },
            "message": {
                "proposal": self.proposal,
                "choice": canonical_choice(&self.choice),
                "timestamp": self.timestamp,
                "voter": self.voter.to_checksummed(),
                "app": self.app,
            }
        });
        // The document above is built from fixed, well-formed parts.
        serde_json::from_value(document).unwrap_or_else(|_| unreachable!("typed data shape"))
    }

    /// The digest signed.
    pub fn signing_hash(&self, domain: &VoteDomain) -> Result<[u8; 32], Eip712Error> {
        self.typed_data(domain).signing_hash()
    }

    /// Signs with `key` (development CLI and tests).
    pub fn sign(
        &self,
        domain: &VoteDomain,
        key: &LocalKey,
    ) -> Result<Signature, VoteSignatureError> {
        Ok(key.sign_prehash(&self.signing_hash(domain)?)?)
    }

    /// The address that signed `signature` over this vote.
    pub fn recover(
        &self,
        domain: &VoteDomain,
        signature: &Signature,
    ) -> Result<Address, VoteSignatureError> {
        Ok(signature.recover(&self.signing_hash(domain)?)?)
    }
}

/// Why a vote could not be signed or its signer recovered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VoteSignatureError {
    /// The vote does not fit the typed-data shape.
    #[error(transparent)]
    TypedData(#[from] Eip712Error),
    /// The signature is malformed or recovers no key.
    #[error(transparent)]
    Signature(#[from] EthError),
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::eth::keccak256;

    fn vote(voter: Address) -> VoteMessage {
        VoteMessage {
            proposal: "0192f0c4-0000-7000-8000-000000000001".into(),
            choice: json!({ "2": 1, "1": 3 }),
            timestamp: 1_700_000_000,
            voter,
            app: "palm.example".into(),
        }
    }

    #[test]
    fn canonical_choice_sorts_keys_and_is_compact() {
        assert_eq!(canonical_choice(&json!(2)), "2");
        assert_eq!(canonical_choice(&json!([1, 3])), "[1,3]");
        assert_eq!(
            canonical_choice(&json!({ "3": 1, "1": { "b": 1, "a": 2 } })),
            r#"{"1":{"a":2,"b":1},"3":1}"#
        );
    }

    #[test]
    fn a_signed_vote_recovers_its_signer_and_a_changed_one_does_not() {
        let key = LocalKey::from_bytes(&keccak256(b"voter")).unwrap();
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
        let key = LocalKey::from_bytes(&keccak256(b"voter")).unwrap();
        let a = vote(key.address());
        let mut b = a.clone();
        b.choice = json!({ "1": 3, "2": 1 });
        let domain = VoteDomain::default();
        assert_eq!(
            a.signing_hash(&domain).unwrap(),
            b.signing_hash(&domain).unwrap()
        );
    }

    #[test]
    fn the_type_string_is_the_documented_one() {
        let key = LocalKey::from_bytes(&keccak256(b"voter")).unwrap();
        let data = vote(key.address()).typed_data(&VoteDomain::default());
        assert_eq!(
            data.encode_type("Vote").unwrap(),
            "Vote(string proposal,string choice,uint64 timestamp,address voter,string app)"
        );
    }
}
