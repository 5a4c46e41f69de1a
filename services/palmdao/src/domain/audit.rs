//! Audit subjects: every staged event names the PalmIDs and communities it
//! concerns, and the audit routes list events by subject.

use uuid::Uuid;

/// Subject naming a PalmID.
pub fn palm_subject(palm_id: Uuid) -> String {
    format!("palm_id:{palm_id}")
}

/// Subject naming a community by id.
pub fn community_subject(community_id: &str) -> String {
    format!("community:{community_id}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subjects_name_their_kind() {
        let id = Uuid::nil();
        assert_eq!(
            palm_subject(id),
            "palm_id:00000000-0000-0000-0000-000000000000"
        );
        assert_eq!(community_subject("c"), "community:c");
    }
}
