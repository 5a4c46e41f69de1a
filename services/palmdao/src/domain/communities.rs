//! Communities and memberships: who may create and join one (PalmID level
//! gates) and who administers it.

use chrono::{DateTime, Utc};
use uuid::Uuid;

/// Level needed to join a community.
pub const JOIN_LEVEL: u32 = 1;

/// A community's minimum voting level when its creator names none.
pub const DEFAULT_VOTE_LEVEL: u32 = 1;

/// A community.
#[derive(Debug, Clone, PartialEq)]
pub struct Community {
    /// Id (a UUID as text).
    pub id: String,
    /// Unique, URL-safe name.
    pub slug: String,
    /// Display name.
    pub name: String,
    /// Description.
    pub description: String,
    /// PalmIDs of the admins.
    pub admins: Vec<String>,
    /// Default minimum level to vote on its proposals.
    pub min_vote_level: u32,
    /// Creation time.
    pub created_at: DateTime<Utc>,
}

impl Community {
    /// Whether `palm_id` administers this community.
    pub fn is_admin(&self, palm_id: Uuid) -> bool {
        let palm_id = palm_id.to_string();
        self.admins.contains(&palm_id)
    }
}

/// A PalmID's membership of a community.
#[derive(Debug, Clone, PartialEq)]
pub struct Membership {
    /// The member.
    pub palm_id: String,
    /// `admin` or `member`.
    pub role: String,
    /// When they joined.
    pub joined_at: DateTime<Utc>,
}

/// A PalmID below the level an action needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LevelTooLow {
    /// The level the action needs.
    pub needed: u32,
    /// The PalmID's level.
    pub has: u32,
}

/// `Err` unless a PalmID of level `has` reaches `needed`.
pub fn require_level(needed: u32, has: u32) -> Result<(), LevelTooLow> {
    if has < needed {
        Err(LevelTooLow { needed, has })
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn community(admins: &[Uuid]) -> Community {
        Community {
            id: "c".into(),
            slug: "s".into(),
            name: "n".into(),
            description: String::new(),
            admins: admins.iter().map(Uuid::to_string).collect(),
            min_vote_level: DEFAULT_VOTE_LEVEL,
            created_at: DateTime::default(),
        }
    }

    #[test]
    fn only_listed_admins_administer() {
        let admin = Uuid::now_v7();
        let other = Uuid::now_v7();
        assert!(community(&[admin]).is_admin(admin));
        assert!(!community(&[admin]).is_admin(other));
        assert!(!community(&[]).is_admin(admin));
    }

    #[test]
    fn a_level_gate_lets_equal_and_higher_through() {
        assert_eq!(require_level(3, 3), Ok(()));
        assert_eq!(require_level(1, 2), Ok(()));
        assert_eq!(require_level(3, 2), Err(LevelTooLow { needed: 3, has: 2 }));
    }
}
