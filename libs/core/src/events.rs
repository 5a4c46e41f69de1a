//! Payloads of the domain events listed in `PRODUCT.md`, one struct per event
//! type. The type string is also the routing key. Open sets (verifier kinds,
//! voting types, strategies) are strings here so a new kind needs no change to
//! the contract; the services parse them into their own enums at the edge.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::Event;

macro_rules! event {
    ($ty:ty, $name:literal, $version:literal) => {
        impl Event for $ty {
            const TYPE: &'static str = $name;
            const SCHEMA_VERSION: u32 = $version;
        }
    };
}

/// A PalmID was created by its first sign-in.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PalmIdCreated {
    /// The new PalmID.
    pub palm_id: Uuid,
    /// Its initial handle.
    pub handle: String,
    /// Kind of the verifier it was created with (`wallet`).
    pub first_verifier: String,
}
event!(PalmIdCreated, "palm_id.created", 1);

/// A PalmID's public profile changed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PalmIdUpdated {
    /// The PalmID.
    pub palm_id: Uuid,
    /// Its handle after the change.
    pub handle: String,
}
event!(PalmIdUpdated, "palm_id.updated", 1);

/// A PalmID gained a verifier (its level may have risen).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PalmIdVerifierAdded {
    /// The PalmID.
    pub palm_id: Uuid,
    /// Kind of the new verifier.
    pub kind: String,
}
event!(PalmIdVerifierAdded, "palm_id.verifier_added", 1);

/// A community was created; its creator is its first admin.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CommunityCreated {
    /// Community id (UUID v7).
    pub community_id: Uuid,
    /// Unique URL-safe name.
    pub slug: String,
    /// Display name.
    pub name: String,
    /// PalmID of the creator, now admin.
    pub admin_palm_id: Uuid,
}
event!(CommunityCreated, "community.created", 1);

/// A PalmID joined a community.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MemberJoined {
    /// Community joined.
    pub community_id: Uuid,
    /// Its slug, so consumers need no lookup.
    pub community_slug: String,
    /// The new member.
    pub palm_id: Uuid,
}
event!(MemberJoined, "member.joined", 1);

/// A PalmID left a community.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MemberLeft {
    /// Community left.
    pub community_id: Uuid,
    /// The former member.
    pub palm_id: Uuid,
}
event!(MemberLeft, "member.left", 1);

/// A proposal was created by a community admin.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProposalCreated {
    /// Proposal id (UUID v7).
    pub proposal_id: Uuid,
    /// Owning community.
    pub community_id: Uuid,
    /// Title shown to voters.
    pub title: String,
    /// `single-choice`, `approval`, `weighted`, …
    pub voting_type: String,
    /// Choice labels, 2 to 20.
    pub choices: Vec<String>,
    /// Voting opens.
    pub start: DateTime<Utc>,
    /// Voting closes.
    pub end: DateTime<Utc>,
}
event!(ProposalCreated, "proposal.created", 1);

/// A discussion thread was started in a community.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DiscussionCreated {
    /// The discussion (UUID v7).
    pub discussion_id: Uuid,
    /// Owning community.
    pub community_id: Uuid,
    /// The member who started it.
    pub author_palm_id: Uuid,
    /// Its title.
    pub title: String,
}
event!(DiscussionCreated, "discussion.created", 1);

/// A proposal's voting window opened.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProposalOpened {
    /// The proposal.
    pub proposal_id: Uuid,
    /// Owning community.
    pub community_id: Uuid,
}
event!(ProposalOpened, "proposal.opened", 1);

/// A proposal closed with its final tally.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProposalClosed {
    /// The proposal.
    pub proposal_id: Uuid,
    /// Owning community.
    pub community_id: Uuid,
    /// Voting power per choice, indexed like the proposal's choices.
    pub tally: Vec<f64>,
    /// Number of distinct PalmIDs whose vote counted.
    pub voters: u64,
    /// Whether the quorum was reached.
    pub quorum_met: bool,
}
event!(ProposalClosed, "proposal.closed", 1);

/// A wallet link was requested: the validator checks the SIWE proof.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WalletVerificationRequested {
    /// Verification id the result refers to.
    pub verification_id: Uuid,
    /// PalmID to link the wallet to.
    pub palm_id: Uuid,
    /// The EIP-4361 message as signed.
    pub message: String,
    /// Hex `0x…` EIP-191 signature over `message`.
    pub signature: String,
}
event!(
    WalletVerificationRequested,
    "verification.requested.wallet",
    1
);

/// A Discord link was requested: the Discord validator redeems the code.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DiscordVerificationRequested {
    /// Verification id the result refers to.
    pub verification_id: Uuid,
    /// PalmID to link the account to.
    pub palm_id: Uuid,
    /// OAuth2 authorization code.
    pub code: String,
    /// Redirect URI the code was issued for.
    pub redirect_uri: String,
}
event!(
    DiscordVerificationRequested,
    "verification.requested.discord",
    1
);

/// Outcome of a verification.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum VerificationOutcome {
    /// The external identity is proven.
    Verified {
        /// Stable external id: a checksummed address, a Discord user id.
        subject: String,
        /// Human-readable name, when the provider has one.
        display_name: Option<String>,
    },
    /// The proof was refused.
    Rejected {
        /// Machine-readable reason (`signature_mismatch`, `account_too_young`).
        reason: String,
    },
}

/// A verification finished.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VerificationCompleted {
    /// The verification.
    pub verification_id: Uuid,
    /// PalmID it was requested for.
    pub palm_id: Uuid,
    /// Verifier kind: `wallet`, `discord`, …
    pub kind: String,
    /// What was found.
    pub outcome: VerificationOutcome,
}
event!(VerificationCompleted, "verification.completed", 1);

/// Facts about the voter that the stateless validator needs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VoterFacts {
    /// Lower-case hex addresses linked to the PalmID.
    pub wallets: Vec<String>,
    /// PalmID level at submission.
    pub level: u32,
    /// Whether the PalmID is a member of the proposal's community.
    pub is_member: bool,
}

/// Proposal rules the validator applies.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProposalRules {
    /// `single-choice`, `approval`, `weighted`, …
    pub voting_type: String,
    /// Number of choices.
    pub choice_count: u32,
    /// Voting opens.
    pub start: DateTime<Utc>,
    /// Voting closes.
    pub end: DateTime<Utc>,
    /// Minimum PalmID level to vote.
    pub min_level: u32,
    /// Voting-power strategy: `one-person-one-vote`, `level-weighted`, …
    pub strategy: String,
}

/// A signed vote waiting for validation, with every fact needed to decide.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VoteSubmitted {
    /// Vote id.
    pub vote_id: Uuid,
    /// Proposal voted on.
    pub proposal_id: Uuid,
    /// Voting PalmID.
    pub palm_id: Uuid,
    /// Choice as signed; its shape depends on the voting type.
    pub choice: serde_json::Value,
    /// Unix seconds the voter signed.
    pub timestamp: i64,
    /// Address that signed.
    pub address: String,
    /// Hex EIP-712 signature.
    pub signature: String,
    /// App domain in the signed message.
    pub app: String,
    /// When palmdao took the vote: the time the voting window is checked at
    /// (the signed `timestamp` is the voter's claim, not trusted for it).
    pub submitted_at: DateTime<Utc>,
    /// The voter, as of submission.
    pub voter: VoterFacts,
    /// The proposal's rules.
    pub proposal: ProposalRules,
}
event!(VoteSubmitted, "vote.submitted", 1);

/// A vote passed validation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VoteValidated {
    /// Vote id.
    pub vote_id: Uuid,
    /// Proposal voted on.
    pub proposal_id: Uuid,
    /// Voting PalmID.
    pub palm_id: Uuid,
    /// Voting power under the proposal's strategy.
    pub voting_power: f64,
    /// The power given to each choice (indexed like the proposal's choices):
    /// the voting type's reading of the choice, so the tally is a plain sum
    /// and palmdao needs no per-type logic. It sums to `voting_power` for
    /// `single-choice` and `weighted`; `approval` gives each approved choice
    /// the full power (Snapshot's rule, see [`crate::voting`]), so count
    /// turnout and quorum from `voting_power`, not from this sum.
    pub allocation: Vec<f64>,
}
event!(VoteValidated, "vote.validated", 1);

/// A vote failed validation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VoteRejected {
    /// Vote id.
    pub vote_id: Uuid,
    /// Proposal voted on.
    pub proposal_id: Uuid,
    /// Voting PalmID.
    pub palm_id: Uuid,
    /// Machine-readable reason: `malformed_signature`, `signer_mismatch`
    /// (the signature is not the stated address's over this vote: tampered),
    /// `wallet_not_linked`, `wrong_app`, `not_started`, `ended`,
    /// `timestamp_in_future`, `timestamp_outside_window`, `not_a_member`, `level_too_low`, `invalid_choice`,
    /// `unknown_voting_type`, `unknown_strategy`.
    pub reason: String,
}
event!(VoteRejected, "vote.rejected", 1);
