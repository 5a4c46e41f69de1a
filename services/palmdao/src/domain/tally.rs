//! Ballots and the tally (ADR 0029): a PalmID's counted vote on a proposal
//! is its **ballot**; a later signed vote replaces an earlier one (signed
//! timestamp, then vote id: Snapshot's rule); the tally is the sum of the
//! ballots' allocations, their number and their power.

/// A PalmID's counted vote on a proposal.
#[derive(Debug, Clone, PartialEq)]
pub struct Ballot {
    /// The vote counted.
    pub vote_id: String,
    /// Its signed timestamp (Unix seconds): later replaces earlier.
    pub timestamp: i64,
    /// Power per choice, from choice 1.
    pub allocation: Vec<f64>,
    /// Its voting power.
    pub power: f64,
}

impl Ballot {
    /// Whether this ballot is newer than `other` and so replaces it: a later
    /// signed timestamp, or the same one and a greater vote id (vote ids are
    /// UUIDv7 text, so for one voter this is also the later submission).
    pub fn supersedes(&self, other: &Ballot) -> bool {
        (self.timestamp, &self.vote_id) > (other.timestamp, &other.vote_id)
    }
}

/// A proposal's tally.
#[derive(Debug, Clone, PartialEq)]
pub struct Tally {
    /// Power per choice, indexed from choice 1.
    pub per_choice: Vec<f64>,
    /// Distinct PalmIDs counted.
    pub voters: u64,
    /// Sum of the counted ballots' power.
    pub total_power: f64,
}

impl Tally {
    /// Whether the counted power reaches `quorum`.
    pub fn meets(&self, quorum: f64) -> bool {
        self.total_power >= quorum
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ballot(timestamp: i64, vote: &str) -> Ballot {
        Ballot {
            vote_id: vote.into(),
            timestamp,
            allocation: vec![1.0, 0.0],
            power: 1.0,
        }
    }

    #[test]
    fn a_later_vote_supersedes_and_an_earlier_one_does_not() {
        assert!(ballot(2, "a").supersedes(&ballot(1, "z")));
        assert!(!ballot(1, "z").supersedes(&ballot(2, "a")));
        assert!(ballot(1, "b").supersedes(&ballot(1, "a")));
        assert!(!ballot(1, "a").supersedes(&ballot(1, "a")));
    }
}
