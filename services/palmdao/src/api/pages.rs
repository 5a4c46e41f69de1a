//! Bounded cursor pagination, one shape for every list (and the text-size
//! rule the listed threads and proposals share): `?limit=1..100`
//! (default 20) and `?cursor=` taken from the previous page's `next_cursor`.
//! A list reads `limit + 1` records in its sort order (the queries are in
//! [`crate::store`]); the extra one only tells whether a next page exists.

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
    #[param(schema_with = limit_schema)]
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

/// The schema of `?limit` ([`super::limits::PAGE_SIZE`]).
pub fn limit_schema() -> utoipa::openapi::schema::Object {
    super::limits::PAGE_SIZE.schema()
}

/// The validated page size.
pub fn limit(requested: Option<u32>) -> Result<i64, Problem> {
    let limit = i64::from(requested.unwrap_or(DEFAULT_LIMIT));
    super::limits::PAGE_SIZE.check("limit", limit)?;
    Ok(limit)
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

impl<T> Paged<T> {
    /// The page from up to `limit + 1` records read in cursor order, each
    /// shown as its view: `cursor` names where the next page starts after
    /// the last one shown.
    pub fn of<R: Into<T>>(mut records: Vec<R>, limit: i64, cursor: impl Fn(&R) -> String) -> Self {
        let limit = usize::try_from(limit).unwrap_or(usize::MAX);
        let more = records.len() > limit;
        records.truncate(limit);
        let next_cursor = more.then(|| records.last().map(&cursor)).flatten();
        Self {
            items: records.into_iter().map(Into::into).collect(),
            next_cursor,
        }
    }
}

/// The title and body rule of discussions and proposals: a title of 1–200
/// characters (not blank), a body of at most 20,000 ([`super::limits`]).
pub fn check_title_and_body(title: &str, body: &str) -> Result<(), Problem> {
    super::limits::TITLE.check("title", title)?;
    super::limits::BODY.check("body", body)
}

/// The schema of a title ([`super::limits::TITLE`]).
pub fn title_schema() -> utoipa::openapi::schema::Object {
    super::limits::TITLE.schema()
}

/// The schema of a body ([`super::limits::BODY`]).
pub fn body_schema() -> utoipa::openapi::schema::Object {
    super::limits::BODY.schema()
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
