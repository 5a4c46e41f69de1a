//! Proposals: their rules (voting type, strategy, window, quorum, minimum
//! level) and their lifecycle — `pending` until the start, `active` until
//! the end, then `closed` — and whether a choice fits a voting type.

use chrono::{DateTime, Utc};
use palm_core::voting;
use serde_json::Value;

/// The statuses a proposal goes through.
pub const STATUSES: [&str; 3] = ["pending", "active", "closed"];

/// A proposal as stored (its ballots are apart: `store::ballots`).
#[derive(Debug, Clone, PartialEq)]
pub struct Proposal {
    /// Id.
    pub id: String,
    /// Community id.
    pub community_id: String,
    /// Title.
    pub title: String,
    /// Body.
    pub body: String,
    /// Choice labels; choice numbers count from 1 in this order.
    pub choices: Vec<String>,
    /// Voting type.
    pub voting_type: String,
    /// Voting opens.
    pub start: DateTime<Utc>,
    /// Voting closes.
    pub end: DateTime<Utc>,
    /// Quorum.
    pub quorum: f64,
    /// Minimum voter level.
    pub min_level: u32,
    /// Strategy.
    pub strategy: String,
    /// The status the scheduler last set, if any.
    pub status: Option<String>,
    /// Creator.
    pub created_by: String,
    /// The final tally, once it closed.
    pub final_tally: Option<crate::domain::tally::Tally>,
}

impl Proposal {
    /// Its status at `now`: the one the scheduler set (so it may trail the
    /// clock by a moment), or the one its window gives.
    pub fn status(&self, now: DateTime<Utc>) -> String {
        self.status
            .clone()
            .unwrap_or_else(|| status_at(self.start, self.end, now).to_owned())
    }
}

/// The status a window from `start` to `end` gives at `now`.
pub fn status_at(start: DateTime<Utc>, end: DateTime<Utc>, now: DateTime<Utc>) -> &'static str {
    if now < start {
        "pending"
    } else if now < end {
        "active"
    } else {
        "closed"
    }
}

/// Whether a voting window from `start` to `end` may be set at `now`: the
/// end after the start and in the future.
pub fn window_is_valid(start: DateTime<Utc>, end: DateTime<Utc>, now: DateTime<Utc>) -> bool {
    end > start && end > now
}

/// Whether `choice` fits `voting_type` with `count` choices (numbered from
/// 1), by the voting type's own rule in `palm_core::voting`.
pub fn choice_fits(voting_type: &str, choice: &Value, count: usize) -> bool {
    voting::voting_type(voting_type).is_some_and(|t| t.fits(choice, count))
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone as _;
    use serde_json::json;

    use super::*;

    #[test]
    fn choices_fit_their_voting_type() {
        assert!(choice_fits("single-choice", &json!(2), 3));
        assert!(!choice_fits("single-choice", &json!(4), 3));
        assert!(!choice_fits("single-choice", &json!([1]), 3));
        assert!(choice_fits("approval", &json!([1, 3]), 3));
        assert!(!choice_fits("approval", &json!([1, 1]), 3));
        assert!(!choice_fits("approval", &json!([]), 3));
        assert!(choice_fits("weighted", &json!({ "1": 2, "3": 1 }), 3));
        assert!(!choice_fits("weighted", &json!({ "1": 2, "3": 0.5 }), 3));
        assert!(!choice_fits("weighted", &json!({ "4": 1 }), 3));
        assert!(!choice_fits("weighted", &json!({ "1": -1 }), 3));
        assert!(!choice_fits("weighted", &json!({ "01": 1 }), 3));
        assert!(!choice_fits("quadratic", &json!(1), 3));
    }

    #[test]
    fn a_window_is_pending_then_active_then_closed() {
        let at = |s| Utc.timestamp_opt(s, 0).unwrap();
        assert_eq!(status_at(at(10), at(20), at(9)), "pending");
        assert_eq!(status_at(at(10), at(20), at(10)), "active");
        assert_eq!(status_at(at(10), at(20), at(20)), "closed");
        assert!(window_is_valid(at(10), at(20), at(15)));
        assert!(!window_is_valid(at(10), at(10), at(0)));
        assert!(!window_is_valid(at(10), at(20), at(20)));
    }
}
