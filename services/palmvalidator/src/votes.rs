//! Deciding a submitted vote from the facts in its job alone: the signature,
//! then eligibility, then what the choice is worth.
//!
//! The checks run in a fixed order and the first failure is the reason, so
//! one vote always gets the same answer:
//!
//! 1. **Signature.** The EIP-712 `Vote` is rebuilt from the job (proposal id,
//!    choice, signed timestamp, stated address, app) and its signer
//!    recovered. A signature or signed field that cannot be read →
//!    `malformed_signature`; a signer other than the stated address (the vote
//!    was changed after signing, or someone else signed) → `signer_mismatch`;
//!    a signer that is not one of the PalmID's linked wallets →
//!    `wallet_not_linked`.
//! 2. **Window**, at `submitted_at` (palmdao's receive time; the signed
//!    timestamp is the voter's claim): before `start` → `not_started`, at or
//!    after `end` → `ended`. Then the signed timestamp itself, which orders
//!    a voter's ballots (the later one wins), so a timestamp from the future
//!    would make a ballot no later vote can replace: more than
//!    [`MAX_CLOCK_AHEAD_SECS`] ahead of `submitted_at` → `timestamp_in_future`
//!    (Snapshot refuses the same at 300 s); more than that before the
//!    proposal's `start` → `timestamp_outside_window`.
//! 3. **Eligibility**: not a member of the community → `not_a_member`; a
//!    level below the proposal's minimum → `level_too_low`.
//! 4. **Choice**: a voting type this build does not know →
//!    `unknown_voting_type`; a choice that does not fit it → `invalid_choice`.
//! 5. **Power**: a strategy this build does not know → `unknown_strategy`.
//!
//! `wrong_app` (listed on `VoteRejected`) is never produced: palmdao puts its
//! own app domain into every job, and the signature covers it, so a vote
//! signed for another app already fails as `signer_mismatch`.

use palm_core::eth;
use palm_core::events::VoteSubmitted;
use palm_core::vote::{VoteDomain, VoteMessage};
use palm_core::voting;

/// How far a signed timestamp may run ahead of palmdao's clock, and before
/// a proposal's start: wallets' clocks drift, but not by minutes
/// (Snapshot's sequencer uses the same 300 s).
pub const MAX_CLOCK_AHEAD_SECS: i64 = 300;

/// Why a vote was rejected; [`Rejection::code`] is the reason on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Rejection {
    /// The signature, or a signed field (address, timestamp), is unreadable.
    MalformedSignature,
    /// The signature is not the stated address's over this vote.
    SignerMismatch,
    /// The signer is not one of the PalmID's wallets.
    WalletNotLinked,
    /// Submitted before voting opened.
    NotStarted,
    /// Submitted once voting had closed.
    Ended,
    /// Signed with a timestamp too far ahead of the time it was submitted.
    TimestampInFuture,
    /// Signed with a timestamp too long before the proposal's start.
    TimestampOutsideWindow,
    /// Not a member of the proposal's community.
    NotAMember,
    /// PalmID level below the proposal's minimum.
    LevelTooLow,
    /// The choice does not fit the voting type.
    InvalidChoice,
    /// The proposal names a voting type this build does not know.
    UnknownVotingType,
    /// The proposal names a strategy this build does not know.
    UnknownStrategy,
}

impl Rejection {
    /// Every reason, in the order they are checked.
    pub const ALL: [Self; 12] = [
        Self::MalformedSignature,
        Self::SignerMismatch,
        Self::WalletNotLinked,
        Self::NotStarted,
        Self::Ended,
        Self::TimestampInFuture,
        Self::TimestampOutsideWindow,
        Self::NotAMember,
        Self::LevelTooLow,
        Self::InvalidChoice,
        Self::UnknownVotingType,
        Self::UnknownStrategy,
    ];

    /// Stable machine-readable reason (`VoteRejected::reason`).
    pub fn code(self) -> &'static str {
        match self {
            Self::MalformedSignature => "malformed_signature",
            Self::SignerMismatch => "signer_mismatch",
            Self::WalletNotLinked => "wallet_not_linked",
            Self::NotStarted => "not_started",
            Self::Ended => "ended",
            Self::TimestampInFuture => "timestamp_in_future",
            Self::TimestampOutsideWindow => "timestamp_outside_window",
            Self::NotAMember => "not_a_member",
            Self::LevelTooLow => "level_too_low",
            Self::InvalidChoice => "invalid_choice",
            Self::UnknownVotingType => "unknown_voting_type",
            Self::UnknownStrategy => "unknown_strategy",
        }
    }
}

/// What a valid vote is worth.
#[derive(Debug, Clone, PartialEq)]
pub struct Counted {
    /// The voter's power under the proposal's strategy.
    pub voting_power: f64,
    /// Power per choice, indexed like the proposal's choices.
    pub allocation: Vec<f64>,
}

/// Decides `vote` for votes signed under `domain`.
pub fn decide(vote: &VoteSubmitted, domain: &VoteDomain) -> Result<Counted, Rejection> {
    check_signature(vote, domain)?;

    let rules = &vote.proposal;
    if vote.submitted_at < rules.start {
        return Err(Rejection::NotStarted);
    }
    if vote.submitted_at >= rules.end {
        return Err(Rejection::Ended);
    }
    if vote.timestamp
        > vote
            .submitted_at
            .timestamp()
            .saturating_add(MAX_CLOCK_AHEAD_SECS)
    {
        return Err(Rejection::TimestampInFuture);
    }
    if vote.timestamp < rules.start.timestamp().saturating_sub(MAX_CLOCK_AHEAD_SECS) {
        return Err(Rejection::TimestampOutsideWindow);
    }
    if !vote.voter.is_member {
        return Err(Rejection::NotAMember);
    }
    if vote.voter.level < rules.min_level {
        return Err(Rejection::LevelTooLow);
    }

    let voting_type =
        voting::voting_type(&rules.voting_type).ok_or(Rejection::UnknownVotingType)?;
    // The strategy is reported after the choice (the documented order), but
    // its power is needed to allocate.
    let strategy = voting::strategy(&rules.strategy);
    let voting_power = strategy.map_or(1.0, |s| s.power(&vote.voter));
    let choice_count = usize::try_from(rules.choice_count).map_err(|_| Rejection::InvalidChoice)?;
    let allocation = voting_type
        .allocate(&vote.choice, choice_count, voting_power)
        .map_err(|_| Rejection::InvalidChoice)?;
    if strategy.is_none() {
        return Err(Rejection::UnknownStrategy);
    }
    Ok(Counted {
        voting_power,
        allocation,
    })
}

/// Step 1: the signer is the stated address and one of the voter's wallets.
fn check_signature(vote: &VoteSubmitted, domain: &VoteDomain) -> Result<(), Rejection> {
    let signature =
        eth::parse_signature(&vote.signature).map_err(|_| Rejection::MalformedSignature)?;
    let stated = eth::parse_address(&vote.address).map_err(|_| Rejection::MalformedSignature)?;
    let timestamp = u64::try_from(vote.timestamp).map_err(|_| Rejection::MalformedSignature)?;
    let message = VoteMessage {
        proposal: vote.proposal_id.to_string(),
        choice: vote.choice.clone(),
        timestamp,
        voter: stated,
        app: vote.app.clone(),
    };
    let signer = message
        .recover(domain, &signature)
        .map_err(|_| Rejection::MalformedSignature)?;
    if signer != stated {
        return Err(Rejection::SignerMismatch);
    }
    let linked = vote
        .voter
        .wallets
        .iter()
        .filter_map(|wallet| eth::parse_address(wallet).ok())
        .any(|wallet| wallet == signer);
    if !linked {
        return Err(Rejection::WalletNotLinked);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use chrono::{Duration, Utc};
    use palm_core::eth::{AddressText, LocalKey, keccak256};
    use palm_core::events::{ProposalRules, VoterFacts};
    use serde_json::{Value, json};
    use uuid::Uuid;

    fn key(seed: &str) -> LocalKey {
        LocalKey::from_bytes(&keccak256(seed.as_bytes())).unwrap()
    }

    /// A valid single-choice vote for choice 2 of 3 by `signer`.
    fn signed(signer: &LocalKey, domain: &VoteDomain) -> VoteSubmitted {
        let now = Utc::now();
        let mut vote = VoteSubmitted {
            vote_id: Uuid::now_v7(),
            proposal_id: Uuid::now_v7(),
            palm_id: Uuid::now_v7(),
            choice: json!(2),
            timestamp: now.timestamp(),
            address: signer.address().to_checksummed(),
            signature: String::new(),
            app: "palm.test".into(),
            submitted_at: now,
            voter: VoterFacts {
                wallets: vec![signer.address().to_lower_hex()],
                level: 2,
                is_member: true,
            },
            proposal: ProposalRules {
                voting_type: "single-choice".into(),
                choice_count: 3,
                start: now - Duration::hours(1),
                end: now + Duration::hours(1),
                min_level: 1,
                strategy: "one-person-one-vote".into(),
            },
        };
        sign(&mut vote, signer, domain);
        vote
    }

    fn sign(vote: &mut VoteSubmitted, signer: &LocalKey, domain: &VoteDomain) {
        let message = VoteMessage {
            proposal: vote.proposal_id.to_string(),
            choice: vote.choice.clone(),
            timestamp: u64::try_from(vote.timestamp).unwrap(),
            voter: vote.address.parse().unwrap(),
            app: vote.app.clone(),
        };
        vote.signature = message.sign(domain, signer).unwrap().to_string();
    }

    fn with_choice(voting_type: &str, strategy: &str, choice: Value) -> VoteSubmitted {
        let domain = VoteDomain::default();
        let alice = key("alice");
        let mut vote = signed(&alice, &domain);
        vote.proposal.voting_type = voting_type.into();
        vote.proposal.strategy = strategy.into();
        vote.choice = choice;
        sign(&mut vote, &alice, &domain);
        vote
    }

    /// Issue 14: a browser wallet signs `JSON.stringify(choice)`, whose
    /// integer-like keys are in numeric order (`{"1":…,"2":…,…,"10":…}`),
    /// written here by hand into the wallet's typed-data document.
    #[test]
    fn a_weighted_vote_signed_over_javascripts_text_counts() {
        let domain = VoteDomain::default();
        let alice = key("alice");
        let mut vote = signed(&alice, &domain);
        vote.proposal.voting_type = "weighted".into();
        vote.proposal.choice_count = 20;
        let js_text = format!(
            "{{{}}}",
            (1..=20)
                .map(|k| format!("\"{k}\":{}", 21 - k))
                .collect::<Vec<_>>()
                .join(",")
        );
        vote.choice = serde_json::from_str(&js_text).unwrap();
        let document: palm_core::eth::TypedData = serde_json::from_value(json!({
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
                "proposal": vote.proposal_id.to_string(),
                "choice": js_text,
                "timestamp": vote.timestamp,
                "voter": vote.address,
                "app": vote.app,
            }
        }))
        .unwrap();
        let digest = document.eip712_signing_hash().unwrap();
        vote.signature = alice.sign_prehash(&digest).unwrap().to_string();
        let counted = decide(&vote, &domain).unwrap();
        assert_eq!(counted.allocation.len(), 20);
        assert!((counted.allocation.iter().sum::<f64>() - 1.0).abs() < 1e-9);
    }

    #[test]
    fn a_signed_eligible_vote_counts_with_its_allocation() {
        let domain = VoteDomain::default();
        let vote = signed(&key("alice"), &domain);
        assert_eq!(
            decide(&vote, &domain),
            Ok(Counted {
                voting_power: 1.0,
                allocation: vec![0.0, 1.0, 0.0]
            })
        );

        let approval = with_choice("approval", "level-weighted", json!([1, 3]));
        assert_eq!(
            decide(&approval, &domain),
            Ok(Counted {
                voting_power: 2.0,
                allocation: vec![2.0, 0.0, 2.0]
            })
        );
        let weighted = with_choice("weighted", "level-weighted", json!({ "1": 3, "2": 1 }));
        assert_eq!(
            decide(&weighted, &domain),
            Ok(Counted {
                voting_power: 2.0,
                allocation: vec![1.5, 0.5, 0.0]
            })
        );
    }

    #[test]
    fn a_vote_is_accepted_by_any_linked_wallet_in_any_letter_case() {
        let domain = VoteDomain::default();
        let alice = key("alice");
        let mut vote = signed(&alice, &domain);
        vote.voter.wallets = vec![
            key("other").address().to_lower_hex(),
            "not an address".into(),
            alice.address().to_checksummed(),
        ];
        vote.address = alice.address().to_lower_hex();
        sign(&mut vote, &alice, &domain);
        assert!(decide(&vote, &domain).is_ok());
    }

    #[test]
    fn the_signature_is_checked_first_and_names_what_is_wrong() {
        let domain = VoteDomain::default();
        let alice = key("alice");
        let base = signed(&alice, &domain);
        let rejects = |change: &dyn Fn(&mut VoteSubmitted), reason: Rejection| {
            let mut vote = base.clone();
            // Also ineligible, so the signature must be what decides.
            vote.voter.is_member = false;
            change(&mut vote);
            assert_eq!(decide(&vote, &domain), Err(reason), "{vote:?}");
        };
        rejects(
            &|v| v.signature = "0x1234".into(),
            Rejection::MalformedSignature,
        );
        rejects(
            &|v| v.address = "alice".into(),
            Rejection::MalformedSignature,
        );
        rejects(&|v| v.timestamp = -1, Rejection::MalformedSignature);
        rejects(&|v| v.choice = json!(3), Rejection::SignerMismatch);
        rejects(&|v| v.timestamp += 1, Rejection::SignerMismatch);
        rejects(
            &|v| v.app = "evil.example".into(),
            Rejection::SignerMismatch,
        );
        rejects(
            &|v| v.proposal_id = Uuid::now_v7(),
            Rejection::SignerMismatch,
        );
        rejects(
            &|v| v.address = key("bob").address().to_lower_hex(),
            Rejection::SignerMismatch,
        );
        rejects(
            &|v| v.voter.wallets = vec![key("bob").address().to_lower_hex()],
            Rejection::WalletNotLinked,
        );
        let other_chain = VoteDomain {
            chain_id: 10,
            ..VoteDomain::default()
        };
        let mut vote = base.clone();
        vote.voter.is_member = false;
        assert_eq!(decide(&vote, &other_chain), Err(Rejection::SignerMismatch));
    }

    #[test]
    fn the_window_is_checked_at_submission_not_at_the_signed_time() {
        let domain = VoteDomain::default();
        let vote = signed(&key("alice"), &domain);
        let mut early = vote.clone();
        early.submitted_at = vote.proposal.start - Duration::seconds(1);
        assert_eq!(decide(&early, &domain), Err(Rejection::NotStarted));
        let mut at_start = vote.clone();
        at_start.submitted_at = vote.proposal.start;
        at_start.timestamp = vote.proposal.start.timestamp();
        sign(&mut at_start, &key("alice"), &domain);
        assert!(decide(&at_start, &domain).is_ok());
        let mut at_end = vote.clone();
        at_end.submitted_at = vote.proposal.end;
        assert_eq!(decide(&at_end, &domain), Err(Rejection::Ended));
    }

    #[test]
    fn a_signed_timestamp_from_the_future_or_before_the_window_is_refused() {
        let domain = VoteDomain::default();
        let alice = key("alice");
        let at = |offset: Duration| {
            let mut vote = signed(&alice, &domain);
            vote.timestamp = (vote.submitted_at + offset).timestamp();
            sign(&mut vote, &alice, &domain);
            vote
        };
        // A wallet clock a little ahead is fine; a year ahead would make a
        // ballot that no later vote could replace.
        assert!(decide(&at(Duration::seconds(MAX_CLOCK_AHEAD_SECS)), &domain).is_ok());
        assert_eq!(
            decide(&at(Duration::seconds(MAX_CLOCK_AHEAD_SECS + 1)), &domain),
            Err(Rejection::TimestampInFuture)
        );
        assert_eq!(
            decide(&at(Duration::days(365)), &domain),
            Err(Rejection::TimestampInFuture)
        );
        // The proposal opened an hour ago (see `signed`).
        assert!(decide(&at(-Duration::minutes(64)), &domain).is_ok());
        assert_eq!(
            decide(&at(-Duration::minutes(66)), &domain),
            Err(Rejection::TimestampOutsideWindow)
        );
    }

    #[test]
    fn eligibility_choice_and_strategy_each_have_their_reason_in_order() {
        let domain = VoteDomain::default();
        let base = signed(&key("alice"), &domain);
        let mut outsider = base.clone();
        outsider.voter.is_member = false;
        outsider.voter.level = 0;
        assert_eq!(decide(&outsider, &domain), Err(Rejection::NotAMember));
        let mut low = base.clone();
        low.proposal.min_level = 3;
        low.proposal.voting_type = "quadratic".into();
        assert_eq!(decide(&low, &domain), Err(Rejection::LevelTooLow));
        let mut unknown = base.clone();
        unknown.proposal.voting_type = "quadratic".into();
        unknown.proposal.strategy = "token-weighted".into();
        assert_eq!(decide(&unknown, &domain), Err(Rejection::UnknownVotingType));
        let bad_choice = with_choice("single-choice", "token-weighted", json!(4));
        assert_eq!(decide(&bad_choice, &domain), Err(Rejection::InvalidChoice));
        let bad_strategy = with_choice("single-choice", "token-weighted", json!(1));
        assert_eq!(
            decide(&bad_strategy, &domain),
            Err(Rejection::UnknownStrategy)
        );
    }

    #[test]
    fn every_reason_has_its_own_code() {
        let all = [
            Rejection::MalformedSignature,
            Rejection::SignerMismatch,
            Rejection::WalletNotLinked,
            Rejection::NotStarted,
            Rejection::Ended,
            Rejection::NotAMember,
            Rejection::LevelTooLow,
            Rejection::InvalidChoice,
            Rejection::UnknownVotingType,
            Rejection::UnknownStrategy,
        ];
        let codes: std::collections::BTreeSet<_> = all.iter().map(|r| r.code()).collect();
        assert_eq!(codes.len(), all.len());
    }
}
