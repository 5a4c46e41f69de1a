//! A PalmID: a handle and the verifiers (wallets, Discord, …) that back it.
//! Its level is how many distinct kinds of verifier back it.

use chrono::{DateTime, Utc};
use uuid::Uuid;

/// A PalmID as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct PalmId {
    /// The PalmID (a UUID as text).
    pub id: String,
    /// Public handle.
    pub handle: String,
    /// Creation time.
    pub created_at: DateTime<Utc>,
    /// Every verifier, oldest first.
    pub verifiers: Vec<Verifier>,
}

/// A proven external identity.
#[derive(Debug, Clone, PartialEq)]
pub struct Verifier {
    /// `wallet`, `discord`, …
    pub kind: String,
    /// The external identity (address, Discord user id).
    pub subject: String,
    /// Name at the provider, when it has one.
    pub display_name: Option<String>,
    /// When it was proven.
    pub verified_at: DateTime<Utc>,
}

impl PalmId {
    /// The level: how many distinct verifier kinds back this PalmID.
    pub fn level(&self) -> u32 {
        level_of(self.verifiers.iter().map(|v| v.kind.as_str()))
    }

    /// Linked wallets, lower-case hex.
    pub fn wallets(&self) -> Vec<String> {
        self.verifiers
            .iter()
            .filter(|v| v.kind == "wallet")
            .map(|v| v.subject.clone())
            .collect()
    }

    /// The kinds of verifier held, sorted, each once.
    pub fn verifier_kinds(&self) -> Vec<String> {
        let mut kinds: Vec<String> = self.verifiers.iter().map(|v| v.kind.clone()).collect();
        kinds.sort();
        kinds.dedup();
        kinds
    }
}

/// The level of a PalmID whose verifiers have `kinds`: how many distinct
/// kinds there are. palmdao also stores it in the document (`level`) with
/// every change of the verifiers, for the platform metrics' index.
pub fn level_of<'a>(kinds: impl IntoIterator<Item = &'a str>) -> u32 {
    let kinds: std::collections::BTreeSet<&str> = kinds.into_iter().collect();
    u32::try_from(kinds.len()).unwrap_or(u32::MAX)
}

/// The handle a PalmID starts with: `palm-` and the last ten hex digits of
/// its id.
pub fn initial_handle(palm_id: Uuid) -> String {
    format!("palm-{}", &palm_id.simple().to_string()[22..])
}

/// One spelling per identity: wallet addresses in lower-case hex.
pub fn normalize_subject(kind: &str, subject: &str) -> String {
    if kind == "wallet" {
        subject.to_ascii_lowercase()
    } else {
        subject.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_level_counts_distinct_kinds() {
        assert_eq!(level_of([]), 0);
        assert_eq!(level_of(["wallet", "wallet"]), 1);
        assert_eq!(level_of(["wallet", "discord", "wallet"]), 2);
    }

    #[test]
    fn wallets_are_one_spelling_and_other_subjects_are_kept() {
        assert_eq!(normalize_subject("wallet", "0xABcd"), "0xabcd");
        assert_eq!(normalize_subject("discord", "AbC"), "AbC");
    }

    #[test]
    fn the_initial_handle_ends_with_the_id() {
        let id = Uuid::parse_str("0190f3c2-8a4e-7b1c-9d2e-3f4a5b6c7d8e").unwrap();
        assert_eq!(initial_handle(id), "palm-4a5b6c7d8e");
    }
}
