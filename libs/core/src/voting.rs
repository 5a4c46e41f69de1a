//! Voting types and voting-power strategies: the two open sets a proposal
//! names by string (`voting_type`, `strategy`).
//!
//! A [`VotingType`] reads a vote's choice (JSON whose shape depends on the
//! type) and turns it into an *allocation*: the voting power each choice
//! receives, indexed like the proposal's choices (choice `k` at index
//! `k - 1`). The tally is then a plain per-index sum, so the consumer of a
//! validated vote needs no per-type logic. A [`Strategy`] turns the facts
//! about a voter into a voting power.
//!
//! Choices are numbered from 1, as voters see them.
//!
//! | type | choice | allocation |
//! |---|---|---|
//! | `single-choice` | an integer `k` in `1..=n` | all the power to `k` |
//! | `approval` | a non-empty array of distinct integers in `1..=n` | the **full** power to each approved choice |
//! | `weighted` | an object `{"k": w}`, keys `1..=n` in plain decimal, weights positive integers | `power × w / Σw` to each `k` |
//!
//! Approval follows Snapshot and approval voting proper: approving a choice
//! gives it the voter's whole power, so approving more choices does not
//! dilute any of them. The allocation of an approval vote therefore sums to
//! `power × approvals`, not to `power`; turnout and quorum must be counted
//! from the vote's voting power, never from the sum of its allocation. For
//! `single-choice` and `weighted` the allocation sums to the power.
//!
//! | strategy | power |
//! |---|---|
//! | `one-person-one-vote` | `1` |
//! | `level-weighted` | the voter's PalmID level |
//!
//! # Adding a type or a strategy
//! A new voting type (`quadratic`, `ranked-choice`) or strategy is one more
//! implementation of the trait and one more entry in [`VOTING_TYPES`] or
//! [`STRATEGIES`]; nothing else changes — the signed vote carries the choice
//! as canonical JSON text whatever its shape ([`crate::vote`]), palmdao's
//! intake and the validator look the type up by name here, and the tally sums
//! allocations.

use std::collections::BTreeSet;

use serde_json::Value;

use crate::events::VoterFacts;

/// Upper bound on a proposal's number of choices that a voting type accepts:
/// far above the product's 20, it only keeps a corrupt message from making
/// the validator allocate without limit.
pub const MAX_CHOICE_COUNT: usize = 256;

/// The largest weight a weighted vote may give a choice: JavaScript's
/// `Number.MAX_SAFE_INTEGER` (2^53 − 1), the largest integer a browser
/// client can put in a vote exactly — and every weight is then exact as an
/// `f64` and storable as a BSON integer.
pub const MAX_WEIGHT: u64 = (1 << 53) - 1;

/// Why a choice does not fit a voting type, in words for logs and API errors.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct InvalidChoice(pub String);

impl InvalidChoice {
    fn new(reason: impl Into<String>) -> Self {
        Self(reason.into())
    }
}

/// How a voting type reads a choice.
pub trait VotingType: Send + Sync {
    /// The name proposals use (`single-choice`).
    fn name(&self) -> &'static str;

    /// The power each of the `choice_count` choices receives from a vote of
    /// `power` with `choice`, or why `choice` is not a vote of this type.
    fn allocate(
        &self,
        choice: &Value,
        choice_count: usize,
        power: f64,
    ) -> Result<Vec<f64>, InvalidChoice>;

    /// Whether `choice` is a vote of this type over `choice_count` choices.
    fn fits(&self, choice: &Value, choice_count: usize) -> bool {
        self.allocate(choice, choice_count, 1.0).is_ok()
    }
}

/// How a strategy turns a voter into a voting power.
pub trait Strategy: Send + Sync {
    /// The name proposals use (`one-person-one-vote`).
    fn name(&self) -> &'static str;

    /// The voter's voting power.
    fn power(&self, voter: &VoterFacts) -> f64;
}

/// Every voting type, by name.
pub static VOTING_TYPES: &[&dyn VotingType] = &[&SingleChoice, &Approval, &Weighted];

/// Every strategy, by name.
pub static STRATEGIES: &[&dyn Strategy] = &[&OnePersonOneVote, &LevelWeighted];

/// The voting type called `name`, if there is one.
pub fn voting_type(name: &str) -> Option<&'static dyn VotingType> {
    VOTING_TYPES.iter().copied().find(|t| t.name() == name)
}

/// The strategy called `name`, if there is one.
pub fn strategy(name: &str) -> Option<&'static dyn Strategy> {
    STRATEGIES.iter().copied().find(|s| s.name() == name)
}

/// An all-zero allocation over `choice_count` choices, or why there cannot be one.
fn empty_allocation(choice_count: usize) -> Result<Vec<f64>, InvalidChoice> {
    if choice_count == 0 || choice_count > MAX_CHOICE_COUNT {
        return Err(InvalidChoice::new(format!(
            "a proposal has 1 to {MAX_CHOICE_COUNT} choices, not {choice_count}"
        )));
    }
    Ok(vec![0.0; choice_count])
}

/// The index of choice number `value` (a JSON integer in `1..=choice_count`).
fn choice_index(value: &Value, choice_count: usize) -> Result<usize, InvalidChoice> {
    value
        .as_u64()
        .and_then(|n| usize::try_from(n).ok())
        .filter(|n| (1..=choice_count).contains(n))
        .map(|n| n - 1)
        .ok_or_else(|| {
            InvalidChoice::new(format!(
                "{value} is not a choice number between 1 and {choice_count}"
            ))
        })
}

/// `single-choice`: one choice number; all the power goes to it.
#[derive(Debug, Clone, Copy)]
pub struct SingleChoice;

impl VotingType for SingleChoice {
    fn name(&self) -> &'static str {
        "single-choice"
    }

    fn allocate(
        &self,
        choice: &Value,
        choice_count: usize,
        power: f64,
    ) -> Result<Vec<f64>, InvalidChoice> {
        let mut allocation = empty_allocation(choice_count)?;
        allocation[choice_index(choice, choice_count)?] = power;
        Ok(allocation)
    }
}

/// `approval`: a non-empty set of distinct choice numbers; each approved
/// choice receives the full power (Snapshot's rule, see the module doc).
#[derive(Debug, Clone, Copy)]
pub struct Approval;

impl VotingType for Approval {
    fn name(&self) -> &'static str {
        "approval"
    }

    fn allocate(
        &self,
        choice: &Value,
        choice_count: usize,
        power: f64,
    ) -> Result<Vec<f64>, InvalidChoice> {
        let mut allocation = empty_allocation(choice_count)?;
        let approved = choice
            .as_array()
            .ok_or_else(|| InvalidChoice::new("an approval vote is an array of choice numbers"))?;
        if approved.is_empty() {
            return Err(InvalidChoice::new(
                "an approval vote approves at least one choice",
            ));
        }
        let mut seen = BTreeSet::new();
        for value in approved {
            let index = choice_index(value, choice_count)?;
            if !seen.insert(index) {
                return Err(InvalidChoice::new(format!(
                    "choice {value} is approved twice"
                )));
            }
            allocation[index] = power;
        }
        Ok(allocation)
    }
}

/// `weighted`: positive integer weights per choice number; the power is
/// shared in proportion to the weights.
#[derive(Debug, Clone, Copy)]
pub struct Weighted;

impl VotingType for Weighted {
    fn name(&self) -> &'static str {
        "weighted"
    }

    fn allocate(
        &self,
        choice: &Value,
        choice_count: usize,
        power: f64,
    ) -> Result<Vec<f64>, InvalidChoice> {
        let mut weights = vec![0_u64; empty_allocation(choice_count)?.len()];
        let entries = choice.as_object().ok_or_else(|| {
            InvalidChoice::new("a weighted vote is an object of choice numbers to weights")
        })?;
        if entries.is_empty() {
            return Err(InvalidChoice::new(
                "a weighted vote weighs at least one choice",
            ));
        }
        for (key, weight) in entries {
            // Plain decimal keys only ("1", not "01" or "+1"): one choice has
            // one spelling, so no two keys can name the same choice.
            let index = key
                .parse::<usize>()
                .ok()
                .filter(|n| n.to_string() == *key && (1..=choice_count).contains(n))
                .map(|n| n - 1)
                .ok_or_else(|| {
                    InvalidChoice::new(format!(
                        "{key:?} is not a choice number between 1 and {choice_count}"
                    ))
                })?;
            weights[index] = weight
                .as_u64()
                .filter(|w| (1..=MAX_WEIGHT).contains(w))
                .ok_or_else(|| {
                    InvalidChoice::new(format!(
                        "the weight of choice {key} is {weight}, not an integer between 1 and {MAX_WEIGHT}"
                    ))
                })?;
        }
        // At most MAX_CHOICE_COUNT weights of at most 2^53 each: no overflow.
        let total: u128 = weights.iter().map(|w| u128::from(*w)).sum();
        let shares = weights
            .iter()
            .map(|w| power * (*w as f64) / (total as f64))
            .collect();
        Ok(shares)
    }
}

/// `one-person-one-vote`: every eligible voter has power 1.
#[derive(Debug, Clone, Copy)]
pub struct OnePersonOneVote;

impl Strategy for OnePersonOneVote {
    fn name(&self) -> &'static str {
        "one-person-one-vote"
    }

    fn power(&self, _voter: &VoterFacts) -> f64 {
        1.0
    }
}

/// `level-weighted`: a voter's power is their PalmID level (the number of
/// distinct verifier kinds), rewarding stronger identities.
#[derive(Debug, Clone, Copy)]
pub struct LevelWeighted;

impl Strategy for LevelWeighted {
    fn name(&self) -> &'static str {
        "level-weighted"
    }

    fn power(&self, voter: &VoterFacts) -> f64 {
        f64::from(voter.level)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn allocate(name: &str, choice: Value, count: usize, power: f64) -> Vec<f64> {
        voting_type(name)
            .unwrap()
            .allocate(&choice, count, power)
            .unwrap_or_else(|e| panic!("{name} {choice}: {e}"))
    }

    fn refuses(name: &str, choice: Value, count: usize) {
        let result = voting_type(name).unwrap().allocate(&choice, count, 1.0);
        assert!(result.is_err(), "{name} took {choice}: {result:?}");
        assert!(!voting_type(name).unwrap().fits(&choice, count));
    }

    #[test]
    fn the_registries_find_each_type_and_strategy_by_its_name() {
        for name in ["single-choice", "approval", "weighted"] {
            assert_eq!(voting_type(name).unwrap().name(), name);
        }
        for name in ["one-person-one-vote", "level-weighted"] {
            assert_eq!(strategy(name).unwrap().name(), name);
        }
        assert!(voting_type("quadratic").is_none());
        assert!(voting_type("Single-Choice").is_none());
        assert!(strategy("token-weighted").is_none());
    }

    #[test]
    fn single_choice_gives_all_the_power_to_one_choice() {
        assert_eq!(
            allocate("single-choice", json!(2), 3, 2.0),
            vec![0.0, 2.0, 0.0]
        );
        assert_eq!(allocate("single-choice", json!(1), 2, 1.0), vec![1.0, 0.0]);
        assert_eq!(
            allocate("single-choice", json!(3), 3, 1.0),
            vec![0.0, 0.0, 1.0]
        );
    }

    #[test]
    fn single_choice_refuses_anything_but_one_choice_number() {
        for choice in [
            json!(0),
            json!(4),
            json!(-1),
            json!(1.5),
            json!("1"),
            json!([1]),
            json!({ "1": 1 }),
            json!(null),
            json!(true),
        ] {
            refuses("single-choice", choice, 3);
        }
    }

    #[test]
    fn approval_gives_the_full_power_to_every_approved_choice() {
        assert_eq!(
            allocate("approval", json!([1, 3]), 3, 2.0),
            vec![2.0, 0.0, 2.0]
        );
        assert_eq!(
            allocate("approval", json!([3, 2, 1]), 3, 1.0),
            vec![1.0, 1.0, 1.0]
        );
        assert_eq!(allocate("approval", json!([2]), 2, 1.0), vec![0.0, 1.0]);
    }

    #[test]
    fn approval_refuses_empty_duplicate_or_out_of_range_choices() {
        for choice in [
            json!([]),
            json!([1, 1]),
            json!([0]),
            json!([1, 4]),
            json!([1.0, 2.5]),
            json!(["1"]),
            json!(1),
            json!({ "1": 1 }),
        ] {
            refuses("approval", choice, 3);
        }
    }

    #[test]
    fn weighted_shares_the_power_in_proportion_to_the_weights() {
        assert_eq!(
            allocate("weighted", json!({ "1": 3, "3": 1 }), 3, 2.0),
            vec![1.5, 0.0, 0.5]
        );
        assert_eq!(
            allocate("weighted", json!({ "2": 7 }), 2, 1.0),
            vec![0.0, 1.0]
        );
        let shares = allocate("weighted", json!({ "1": 1, "2": 1, "3": 1 }), 3, 1.0);
        assert!((shares.iter().sum::<f64>() - 1.0).abs() < 1e-12);
        let huge = allocate(
            "weighted",
            json!({ "1": MAX_WEIGHT, "2": MAX_WEIGHT }),
            2,
            1.0,
        );
        assert_eq!(huge, vec![0.5, 0.5]);
    }

    #[test]
    fn weighted_refuses_bad_keys_and_weights() {
        for choice in [
            json!({}),
            json!({ "0": 1 }),
            json!({ "4": 1 }),
            json!({ "01": 1 }),
            json!({ "+1": 1 }),
            json!({ "one": 1 }),
            json!({ "1": 0 }),
            json!({ "1": -1 }),
            json!({ "1": 1.5 }),
            json!({ "1": "2" }),
            json!({ "1": 2, "2": 0.5 }),
            // Beyond what a JavaScript client can send exactly (the 2^63
            // of issue 14 once reached storage and failed there).
            json!({ "1": MAX_WEIGHT + 1 }),
            json!({ "1": 1_u64 << 63 }),
            json!({ "1": u64::MAX }),
            json!([1, 2]),
            json!(1),
        ] {
            refuses("weighted", choice, 3);
        }
    }

    #[test]
    fn no_type_accepts_a_proposal_without_choices_or_with_absurdly_many() {
        for name in ["single-choice", "approval", "weighted"] {
            refuses(name, json!(1), 0);
            refuses(name, json!([1]), MAX_CHOICE_COUNT + 1);
        }
        refuses("weighted", json!({ "1": 1 }), 0);
    }

    #[test]
    fn strategies_give_one_or_the_level() {
        let voter = VoterFacts {
            wallets: vec![],
            level: 3,
            is_member: true,
        };
        assert_eq!(strategy("one-person-one-vote").unwrap().power(&voter), 1.0);
        assert_eq!(strategy("level-weighted").unwrap().power(&voter), 3.0);
    }
}
