//! Bounded cursor pagination, one shape for every list: `?limit=1..100`
//! (default 20) and `?cursor=` taken from the previous page's `next_cursor`.
//! A list reads `limit + 1` documents in its sort order; the extra one only
//! tells whether a next page exists.

use serde::{Deserialize, Serialize};

use super::problem::Problem;

/// Largest page.
pub const MAX_LIMIT: u32 = 100;
/// Page size when none is asked for.
pub const DEFAULT_LIMIT: u32 = 20;

/// `?limit&cursor` of every list.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct Page {
    /// Items per page, 1–100 (default 20).
    #[param(minimum = 1, maximum = 100)]
    pub limit: Option<u32>,
    /// The `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

/// A page of items.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Paged<T> {
    /// The items.
    pub items: Vec<T>,
    /// Pass as `cursor` for the next page; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

/// The validated page size.
pub fn limit(requested: Option<u32>) -> Result<i64, Problem> {
    match requested.unwrap_or(DEFAULT_LIMIT) {
        limit @ 1..=MAX_LIMIT => Ok(i64::from(limit)),
        _ => Err(Problem::validation("limit must be between 1 and 100")),
    }
}

impl<T> Paged<T> {
    /// The page from up to `limit + 1` documents read in cursor order:
    /// `view` turns one into an item and `cursor` names where the next page
    /// starts after it.
    pub fn from_documents<D>(
        documents: &[D],
        limit: i64,
        view: impl Fn(&D) -> T,
        cursor: impl Fn(&D) -> String,
    ) -> Self {
        let limit = usize::try_from(limit).unwrap_or(usize::MAX);
        let shown = &documents[..documents.len().min(limit)];
        let next_cursor = (documents.len() > limit)
            .then(|| shown.last().map(&cursor))
            .flatten();
        Self {
            items: shown.iter().map(view).collect(),
            next_cursor,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_extra_document_only_signals_a_next_page() {
        let page = Paged::from_documents(&[1, 2, 3], 2, |n| n * 10, |n| n.to_string());
        assert_eq!(page.items, vec![10, 20]);
        assert_eq!(page.next_cursor.as_deref(), Some("2"));
        let last = Paged::from_documents(&[1, 2], 2, |n| n * 10, |n| n.to_string());
        assert_eq!(last.next_cursor, None);
    }

    #[test]
    fn limits_are_bounded() {
        assert_eq!(limit(None).unwrap(), 20);
        assert!(limit(Some(0)).is_err());
        assert!(limit(Some(101)).is_err());
    }
}
