//! The platform snapshot: every `palm_platform_…` value of one refresh, as
//! stored in MongoDB (one document every replica reads) and as the series
//! `/metrics` shows.

use std::collections::BTreeMap;

use palm_mongo::mongodb::bson::DateTime;
use serde::{Deserialize, Serialize};

/// Collection holding the latest snapshot (one document).
pub const COLLECTION: &str = "platform_snapshots";
/// `_id` of the latest snapshot.
pub const LATEST: &str = "latest";

/// Statuses of a verification request (palmdao's `verifications.status`).
pub const VERIFICATION_STATUSES: [&str; 3] = ["pending", "verified", "rejected"];
/// Verifier kinds shipped today; others appear as they are seen.
pub const VERIFIER_KINDS: [&str; 2] = ["wallet", "discord"];
/// Statuses of a proposal.
pub const PROPOSAL_STATUSES: [&str; 3] = ["pending", "active", "closed"];
/// Statuses of a vote.
pub const VOTE_STATUSES: [&str; 3] = ["pending", "valid", "rejected"];
/// Windows of `palm_platform_active_voters`.
pub const WINDOWS: [&str; 2] = ["24h", "7d"];

/// One refresh's values.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    /// When the refresh started (the values are as of then).
    pub taken_at: DateTime,
    /// How long the refresh took.
    pub refresh_seconds: f64,
    /// PalmIDs by level (`"1"`, `"2"`, …; `"unknown"` for a document
    /// without a stored level).
    pub palm_ids: BTreeMap<String, i64>,
    /// Verification requests by kind, then status.
    pub verifications: BTreeMap<String, BTreeMap<String, i64>>,
    /// Communities.
    pub communities: i64,
    /// Memberships.
    pub memberships: i64,
    /// Proposals by status.
    pub proposals: BTreeMap<String, i64>,
    /// Votes by status.
    pub votes: BTreeMap<String, i64>,
    /// Distinct PalmIDs that submitted a vote, by window (`24h`, `7d`).
    pub active_voters: BTreeMap<String, i64>,
    /// Age of the oldest unpublished event at `taken_at`, by collection.
    pub outbox_lag_seconds: BTreeMap<String, f64>,
    /// `finished_at` of the newest successful backup.
    pub backup_finished_at: Option<DateTime>,
    /// Its size.
    pub backup_size_bytes: i64,
}

impl Default for Snapshot {
    fn default() -> Self {
        Self {
            taken_at: DateTime::from_millis(0),
            refresh_seconds: 0.0,
            palm_ids: BTreeMap::new(),
            verifications: BTreeMap::new(),
            communities: 0,
            memberships: 0,
            proposals: BTreeMap::new(),
            votes: BTreeMap::new(),
            active_voters: BTreeMap::new(),
            outbox_lag_seconds: BTreeMap::new(),
            backup_finished_at: None,
            backup_size_bytes: 0,
        }
    }
}

/// One series of `/metrics`.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    /// Metric name.
    pub name: &'static str,
    /// Labels, in order.
    pub labels: Vec<(&'static str, String)>,
    /// Value.
    pub value: f64,
}

fn series(name: &'static str, labels: &[(&'static str, &str)], value: f64) -> Series {
    Series {
        name,
        labels: labels.iter().map(|(k, v)| (*k, (*v).to_owned())).collect(),
        value,
    }
}

fn count(map: &BTreeMap<String, i64>, key: &str) -> f64 {
    map.get(key).copied().unwrap_or(0) as f64
}

impl Snapshot {
    /// Every `palm_platform_…` gauge this snapshot gives (not the age,
    /// which depends on when it is scraped). Label values known in advance
    /// (statuses, windows, the outbox collections, today's verifier kinds,
    /// level 1) are always present, at 0 when nothing has them.
    pub fn series(&self, outbox_collections: &[&str]) -> Vec<Series> {
        let mut out = Vec::new();
        let mut levels: Vec<&str> = self.palm_ids.keys().map(String::as_str).collect();
        if !levels.contains(&"1") {
            levels.push("1");
        }
        for level in levels {
            out.push(series(
                "palm_platform_palm_ids",
                &[("level", level)],
                count(&self.palm_ids, level),
            ));
        }
        let mut kinds: Vec<&str> = self.verifications.keys().map(String::as_str).collect();
        for kind in VERIFIER_KINDS {
            if !kinds.contains(&kind) {
                kinds.push(kind);
            }
        }
        for kind in kinds {
            let empty = BTreeMap::new();
            let by_status = self.verifications.get(kind).unwrap_or(&empty);
            for status in VERIFICATION_STATUSES {
                out.push(series(
                    "palm_platform_verifications",
                    &[("kind", kind), ("status", status)],
                    count(by_status, status),
                ));
            }
        }
        out.push(series(
            "palm_platform_communities",
            &[],
            self.communities as f64,
        ));
        out.push(series(
            "palm_platform_memberships",
            &[],
            self.memberships as f64,
        ));
        for status in PROPOSAL_STATUSES {
            out.push(series(
                "palm_platform_proposals",
                &[("status", status)],
                count(&self.proposals, status),
            ));
        }
        for status in VOTE_STATUSES {
            out.push(series(
                "palm_platform_votes",
                &[("status", status)],
                count(&self.votes, status),
            ));
        }
        for window in WINDOWS {
            out.push(series(
                "palm_platform_active_voters",
                &[("window", window)],
                count(&self.active_voters, window),
            ));
        }
        for collection in outbox_collections {
            out.push(series(
                "palm_platform_outbox_lag_seconds",
                &[("collection", collection)],
                self.outbox_lag_seconds
                    .get(*collection)
                    .copied()
                    .unwrap_or(0.0),
            ));
        }
        out.push(series(
            "palm_platform_snapshot_refresh_duration_seconds",
            &[],
            self.refresh_seconds,
        ));
        out.push(series(
            "palm_platform_backup_last_success_timestamp_seconds",
            &[],
            self.backup_finished_at
                .map_or(0.0, |t| t.timestamp_millis() as f64 / 1000.0),
        ));
        out.push(series(
            "palm_platform_backup_last_size_bytes",
            &[],
            self.backup_size_bytes as f64,
        ));
        out
    }

    /// Seconds from `taken_at` to `now_ms` (never negative).
    pub fn age_seconds(&self, now_ms: i64) -> f64 {
        (now_ms - self.taken_at.timestamp_millis()).max(0) as f64 / 1000.0
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn value(series: &[Series], name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        series
            .iter()
            .find(|s| {
                s.name == name
                    && s.labels.len() == labels.len()
                    && s.labels
                        .iter()
                        .zip(labels)
                        .all(|((k, v), (lk, lv))| k == lk && v == lv)
            })
            .map(|s| s.value)
    }

    #[test]
    fn an_empty_snapshot_still_gives_every_known_series_at_zero() {
        let series = Snapshot::default().series(&["votes", "palm_ids"]);
        assert_eq!(
            value(&series, "palm_platform_palm_ids", &[("level", "1")]),
            Some(0.0)
        );
        for kind in VERIFIER_KINDS {
            for status in VERIFICATION_STATUSES {
                assert_eq!(
                    value(
                        &series,
                        "palm_platform_verifications",
                        &[("kind", kind), ("status", status)]
                    ),
                    Some(0.0)
                );
            }
        }
        for status in PROPOSAL_STATUSES {
            assert_eq!(
                value(&series, "palm_platform_proposals", &[("status", status)]),
                Some(0.0)
            );
        }
        for status in VOTE_STATUSES {
            assert_eq!(
                value(&series, "palm_platform_votes", &[("status", status)]),
                Some(0.0)
            );
        }
        for window in WINDOWS {
            assert_eq!(
                value(
                    &series,
                    "palm_platform_active_voters",
                    &[("window", window)]
                ),
                Some(0.0)
            );
        }
        assert_eq!(
            value(
                &series,
                "palm_platform_outbox_lag_seconds",
                &[("collection", "votes")]
            ),
            Some(0.0)
        );
        assert_eq!(value(&series, "palm_platform_communities", &[]), Some(0.0));
        assert_eq!(
            value(
                &series,
                "palm_platform_backup_last_success_timestamp_seconds",
                &[]
            ),
            Some(0.0)
        );
    }

    #[test]
    fn values_map_to_their_series_and_new_labels_appear() {
        let mut snapshot = Snapshot {
            communities: 4,
            backup_finished_at: Some(DateTime::from_millis(1_700_000_000_500)),
            backup_size_bytes: 1234,
            ..Snapshot::default()
        };
        snapshot.palm_ids.insert("3".into(), 7);
        snapshot
            .verifications
            .entry("email".into())
            .or_default()
            .insert("verified".into(), 2);
        snapshot.votes.insert("valid".into(), 9);
        snapshot.outbox_lag_seconds.insert("votes".into(), 1.5);
        let series = snapshot.series(&["votes"]);
        assert_eq!(
            value(&series, "palm_platform_palm_ids", &[("level", "3")]),
            Some(7.0)
        );
        assert_eq!(
            value(&series, "palm_platform_palm_ids", &[("level", "1")]),
            Some(0.0)
        );
        assert_eq!(
            value(
                &series,
                "palm_platform_verifications",
                &[("kind", "email"), ("status", "verified")]
            ),
            Some(2.0)
        );
        assert_eq!(
            value(&series, "palm_platform_votes", &[("status", "valid")]),
            Some(9.0)
        );
        assert_eq!(
            value(
                &series,
                "palm_platform_outbox_lag_seconds",
                &[("collection", "votes")]
            ),
            Some(1.5)
        );
        assert_eq!(value(&series, "palm_platform_communities", &[]), Some(4.0));
        assert_eq!(
            value(
                &series,
                "palm_platform_backup_last_success_timestamp_seconds",
                &[]
            ),
            Some(1_700_000_000.5)
        );
        assert_eq!(
            value(&series, "palm_platform_backup_last_size_bytes", &[]),
            Some(1234.0)
        );
    }

    #[test]
    fn a_snapshot_survives_its_document() {
        let mut snapshot = Snapshot {
            taken_at: DateTime::from_millis(1_700_000_000_000),
            refresh_seconds: 0.25,
            memberships: 3,
            ..Snapshot::default()
        };
        snapshot.proposals.insert("active".into(), 2);
        snapshot.active_voters.insert("7d".into(), 5);
        let document = palm_mongo::mongodb::bson::to_document(&snapshot).unwrap();
        let back: Snapshot = palm_mongo::mongodb::bson::from_document(document).unwrap();
        assert_eq!(back, snapshot);
        assert_eq!(back.age_seconds(1_700_000_002_500), 2.5);
        assert_eq!(back.age_seconds(0), 0.0);
    }
}
