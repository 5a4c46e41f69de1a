//! Deciding a wallet verification: the Sign-In with Ethereum proof that the
//! PalmID controls the wallet it links.
//!
//! The message must satisfy the same rules as a sign-in (`auth.domain`,
//! `auth.uri`, `auth.chain_ids`, its time window with `auth.clock_skew_secs`)
//! and its EIP-191 signature must recover to the address it states. A
//! refusal carries the SIWE error's stable code (`siwe_wrong_domain`, …).
//! Nonce freshness is palmdao's: it holds the nonce store and consumed the
//! nonce when it took the request.

use chrono::{DateTime, Utc};
use palm_core::eth::AddressText;
use palm_core::events::{VerificationOutcome, WalletVerificationRequested};
use palm_core::siwe::{self, SiweRules};

/// The outcome of `job` under `rules` at `now`; a verified wallet's subject
/// is its lower-case hex address.
pub fn decide(
    job: &WalletVerificationRequested,
    rules: &SiweRules,
    now: DateTime<Utc>,
) -> VerificationOutcome {
    match siwe::verify(&job.message, &job.signature, rules, now) {
        Ok(message) => VerificationOutcome::Verified {
            subject: message.address.to_lower_hex(),
            display_name: None,
        },
        Err(error) => VerificationOutcome::Rejected {
            reason: error.code().to_owned(),
        },
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use palm_core::eth::{LocalKey, keccak256};
    use uuid::Uuid;

    fn rules() -> SiweRules {
        SiweRules {
            domain: "palm.test".into(),
            uri: "https://palm.test/v1/auth/siwe".into(),
            chain_ids: vec![1],
            clock_skew: chrono::Duration::seconds(30),
        }
    }

    fn job(domain: &str, key: &LocalKey, now: DateTime<Utc>) -> WalletVerificationRequested {
        let message = format!(
            "{domain} wants you to sign in with your Ethereum account:\n{}\n\nLink this wallet\n\nURI: https://palm.test/v1/auth/siwe\nVersion: 1\nChain ID: 1\nNonce: abcdefgh12\nIssued At: {}",
            key.address().to_checksummed(),
            now.format("%Y-%m-%dT%H:%M:%SZ")
        );
        WalletVerificationRequested {
            verification_id: Uuid::now_v7(),
            palm_id: Uuid::now_v7(),
            signature: key.sign_personal(message.as_bytes()).unwrap().to_string(),
            message,
        }
    }

    #[test]
    fn a_valid_proof_verifies_the_lower_case_address() {
        let key = LocalKey::from_bytes(&keccak256(b"wallet")).unwrap();
        let now = Utc::now();
        assert_eq!(
            decide(&job("palm.test", &key, now), &rules(), now),
            VerificationOutcome::Verified {
                subject: key.address().to_lower_hex(),
                display_name: None
            }
        );
    }

    #[test]
    fn a_refused_proof_carries_the_siwe_code() {
        let key = LocalKey::from_bytes(&keccak256(b"wallet")).unwrap();
        let now = Utc::now();
        let reason = |job: &WalletVerificationRequested| match decide(job, &rules(), now) {
            VerificationOutcome::Rejected { reason } => reason,
            other => panic!("verified: {other:?}"),
        };
        assert_eq!(reason(&job("evil.example", &key, now)), "siwe_wrong_domain");
        let mut forged = job("palm.test", &key, now);
        forged.signature = LocalKey::from_bytes(&keccak256(b"other"))
            .unwrap()
            .sign_personal(forged.message.as_bytes())
            .unwrap()
            .to_string();
        assert_eq!(reason(&forged), "siwe_signer_mismatch");
        let mut garbage = job("palm.test", &key, now);
        garbage.message = "hello".into();
        assert_eq!(reason(&garbage), "siwe_malformed");
    }
}
