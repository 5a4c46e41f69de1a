//! The limits on what clients send, each stated once: a rule gives both the
//! OpenAPI schema of a field (`#[schema(schema_with = …)]`) and the server's
//! check of it, so the document and the server cannot drift apart, and a
//! request the document allows is not refused for its shape (issue 14;
//! `make check-api` fuzzes the running server against the document).
//!
//! - Lengths count Unicode code points (`chars()`), as JSON Schema's
//!   `minLength`/`maxLength` do.
//! - Patterns use only ASCII character classes, which ECMA-262, Python's
//!   `re` and Rust's `regex` read alike; each is paired with the function
//!   that checks it (the unit tests below hold them to the same examples).
//! - Integers may arrive as `3` or `3.0` (JSON Schema's `integer` is any
//!   number without a fraction; many JSON encoders write floats); anything
//!   with a fraction or out of range is refused.
//!
//! What a schema cannot state — the order of two times, whether a choice
//! fits the proposal it votes on, what a signed message says — is refused
//! with its own stable `code` (listed on the operation's responses), never
//! with the generic `validation_failed` of a shape rule.

use serde::{Deserialize, Deserializer};
use utoipa::openapi::RefOr;
use utoipa::openapi::schema::{
    AnyOfBuilder, ArrayBuilder, KnownFormat, Object, ObjectBuilder, Schema, SchemaFormat, Type,
};

use super::problem::Problem;

/// The largest integer a JavaScript client holds exactly (2^53 − 1):
/// timestamps, weights and quorums above it cannot be signed or sent as a
/// browser would.
pub const MAX_SAFE_INTEGER: i64 = (1 << 53) - 1;

/// Most choices a proposal may have.
pub const MAX_CHOICES: usize = 20;

/// A string rule.
#[derive(Debug, Clone, Copy)]
pub struct Text {
    /// Fewest characters.
    pub min: usize,
    /// Most characters.
    pub max: usize,
    /// The JSON Schema `pattern` (unanchored, as JSON Schema reads it).
    pub pattern: Option<&'static str>,
    /// Whether a value matches `pattern`; `None` when another check (a
    /// parser) enforces the format the pattern describes.
    fits: Option<fn(&str) -> bool>,
    /// The rule in words, for the document and for errors.
    pub rule: &'static str,
}

impl Text {
    /// The property's schema.
    pub fn schema(&self) -> Object {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .min_length((self.min > 0).then_some(self.min))
            .max_length(Some(self.max))
            .pattern(self.pattern)
            .description(Some(self.rule))
            .build()
    }

    /// `422 validation_failed` unless `value` keeps the rule.
    pub fn check(&self, field: &str, value: &str) -> Result<(), Problem> {
        let length = value.chars().count();
        let shaped = self.fits.is_none_or(|fits| fits(value));
        if (self.min..=self.max).contains(&length) && shaped {
            Ok(())
        } else {
            Err(Problem::validation(format!("{field}: {}", self.rule)))
        }
    }
}

fn lower_digits_dash(value: &str) -> bool {
    value
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

fn lower_digits_dash_underscore(value: &str) -> bool {
    value
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
}

/// Blank is nothing but spaces, tabs and line breaks (JSON's whitespace).
fn not_blank(value: &str) -> bool {
    value
        .chars()
        .any(|c| !matches!(c, ' ' | '\t' | '\n' | '\r'))
}

fn hex(value: &str) -> bool {
    value.chars().all(|c| c.is_ascii_hexdigit())
}

/// `0x`, 64 bytes of `r ‖ s`, and a recovery byte of 0, 1, 27 or 28.
fn recoverable_signature(value: &str) -> bool {
    value.strip_prefix("0x").is_some_and(|digits| {
        digits.len() == 130
            && hex(digits)
            && matches!(
                digits[128..].to_ascii_lowercase().as_str(),
                "00" | "01" | "1b" | "1c"
            )
    })
}

fn address(value: &str) -> bool {
    value
        .strip_prefix("0x")
        .is_some_and(|digits| digits.len() == 40 && hex(digits))
}

fn http_uri(value: &str) -> bool {
    value.starts_with("http://") || value.starts_with("https://")
}

/// A community's slug.
pub const SLUG: Text = Text {
    min: 3,
    max: 40,
    pattern: Some("^[a-z0-9-]+$"),
    fits: Some(lower_digits_dash),
    rule: "3 to 40 of a-z, 0-9 and '-'",
};

/// A PalmID's handle.
pub const HANDLE: Text = Text {
    min: 3,
    max: 32,
    pattern: Some("^[a-z0-9_-]+$"),
    fits: Some(lower_digits_dash_underscore),
    rule: "3 to 32 of a-z, 0-9, '-' and '_'",
};

/// A community's display name.
pub const COMMUNITY_NAME: Text = Text {
    min: 1,
    max: 100,
    pattern: Some("[^ \t\n\r]"),
    fits: Some(not_blank),
    rule: "1 to 100 characters, not all blank",
};

/// A community's description.
pub const DESCRIPTION: Text = Text {
    min: 0,
    max: 2000,
    pattern: None,
    fits: None,
    rule: "at most 2000 characters",
};

/// The title of a discussion or proposal.
pub const TITLE: Text = Text {
    min: 1,
    max: 200,
    pattern: Some("[^ \t\n\r]"),
    fits: Some(not_blank),
    rule: "1 to 200 characters, not all blank",
};

/// The body of a discussion or proposal.
pub const BODY: Text = Text {
    min: 0,
    max: 20_000,
    pattern: None,
    fits: None,
    rule: "at most 20000 characters",
};

/// One choice's label on a proposal.
pub const CHOICE_LABEL: Text = Text {
    min: 1,
    max: 100,
    pattern: Some("[^ \t\n\r]"),
    fits: Some(not_blank),
    rule: "1 to 100 characters, not all blank",
};

/// An EIP-4361 message. The pattern states its first three lines; the SIWE
/// parser checks the whole grammar (`siwe_malformed` otherwise).
pub const SIWE_MESSAGE: Text = Text {
    min: 1,
    max: 4096,
    pattern: Some(
        "^([A-Za-z][A-Za-z0-9+.-]*://)?[^ \t\n\r]+ wants you to sign in with your Ethereum account:\n0x[0-9a-fA-F]{40}\n\n",
    ),
    fits: None,
    rule: "an EIP-4361 message of at most 4096 characters",
};

/// A secp256k1 signature as wallets write it.
pub const SIGNATURE: Text = Text {
    min: 132,
    max: 132,
    pattern: Some("^0x[0-9a-fA-F]{128}(00|01|1[bBcC])$"),
    fits: Some(recoverable_signature),
    rule: "0x and 65 bytes of hex (r, s, and v of 0, 1, 27 or 28)",
};

/// An Ethereum address, in any letter case (a vote's signature binds it).
pub const ADDRESS: Text = Text {
    min: 42,
    max: 42,
    pattern: Some("^0x[0-9a-fA-F]{40}$"),
    fits: Some(address),
    rule: "0x and 20 bytes of hex",
};

/// A Discord OAuth2 authorization code.
pub const OAUTH_CODE: Text = Text {
    min: 1,
    max: 512,
    pattern: None,
    fits: None,
    rule: "1 to 512 characters",
};

/// The redirect URI an OAuth2 code was issued for.
pub const REDIRECT_URI: Text = Text {
    min: 8,
    max: 2048,
    pattern: Some("^https?://"),
    fits: Some(http_uri),
    rule: "an http(s) URI of at most 2048 characters",
};

/// An integer rule.
#[derive(Debug, Clone, Copy)]
pub struct Range {
    /// Smallest value.
    pub min: i64,
    /// Largest value.
    pub max: i64,
    /// The rule in words.
    pub rule: &'static str,
}

impl Range {
    /// The property's schema.
    pub fn schema(&self) -> Object {
        ObjectBuilder::new()
            .schema_type(Type::Integer)
            .format(Some(SchemaFormat::KnownFormat(KnownFormat::Int64)))
            .minimum(Some(self.min))
            .maximum(Some(self.max))
            .description(Some(self.rule))
            .build()
    }

    /// `422 validation_failed` unless `value` is in range.
    pub fn check(&self, field: &str, value: i64) -> Result<(), Problem> {
        if (self.min..=self.max).contains(&value) {
            Ok(())
        } else {
            Err(Problem::validation(format!("{field}: {}", self.rule)))
        }
    }
}

/// A minimum PalmID level.
pub const LEVEL: Range = Range {
    min: 1,
    max: 10,
    rule: "a PalmID level from 1 to 10",
};

/// Unix seconds as a vote signs them (EIP-712 `uint64`, sent as a
/// JavaScript number).
pub const TIMESTAMP: Range = Range {
    min: 0,
    max: MAX_SAFE_INTEGER,
    rule: "Unix seconds, 0 to 2^53-1",
};

/// Page sizes of every list.
pub const PAGE_SIZE: Range = Range {
    min: 1,
    max: 100,
    rule: "items per page, 1 to 100 (default 20)",
};

/// A proposal's quorum: voting power, a number from 0 to 2^53 − 1.
pub fn quorum_schema() -> Object {
    ObjectBuilder::new()
        .schema_type(Type::Number)
        .format(Some(SchemaFormat::KnownFormat(KnownFormat::Double)))
        .minimum(Some(0))
        .maximum(Some(MAX_SAFE_INTEGER))
        .description(Some(
            "Voting power needed for the result to count (0, the default: none); at most 2^53-1",
        ))
        .build()
}

/// `422 validation_failed` unless `quorum` is a number from 0 to 2^53 − 1.
pub fn check_quorum(quorum: f64) -> Result<(), Problem> {
    #[allow(clippy::cast_precision_loss, reason = "2^53 - 1 is exact in f64")]
    let max = MAX_SAFE_INTEGER as f64;
    if (0.0..=max).contains(&quorum) {
        Ok(())
    } else {
        Err(Problem::validation("quorum: a number from 0 to 2^53-1"))
    }
}

/// The shapes a vote's choice may take, whatever the proposal: a choice
/// number (`single-choice`), a set of them (`approval`), or weights by
/// choice number (`weighted`). Which one fits, and up to which number,
/// depends on the proposal (`choice_does_not_fit`).
pub fn choice_schema() -> RefOr<Schema> {
    let max = i64::try_from(MAX_CHOICES).unwrap_or(i64::MAX);
    let number = || {
        ObjectBuilder::new()
            .schema_type(Type::Integer)
            .minimum(Some(1))
            .maximum(Some(max))
    };
    let approval = ArrayBuilder::new()
        .items(number().build())
        .min_items(Some(1))
        .max_items(Some(MAX_CHOICES))
        .unique_items(true)
        .description(Some("approval: distinct choice numbers"))
        .build();
    let weight = ObjectBuilder::new()
        .schema_type(Type::Integer)
        .minimum(Some(1))
        .maximum(Some(MAX_SAFE_INTEGER))
        .build();
    let key = ObjectBuilder::new()
        .schema_type(Type::String)
        .pattern(Some("^([1-9]|1[0-9]|20)$"))
        .build();
    let weighted = ObjectBuilder::new()
        .schema_type(Type::Object)
        .property_names(Some(key))
        .additional_properties(Some(RefOr::T(Schema::Object(weight))))
        .min_properties(Some(1))
        .max_properties(Some(MAX_CHOICES))
        .description(Some(
            "weighted: weights from 1 to 2^53-1 by choice number (\"1\", not \"01\")",
        ))
        .build();
    let any_of = AnyOfBuilder::new()
        .item(
            number()
                .description(Some("single-choice: one choice number"))
                .build(),
        )
        .item(approval)
        .item(weighted)
        .description(Some(
            "Choice numbers count from 1; its shape is the proposal's voting type's",
        ))
        .build();
    RefOr::T(Schema::AnyOf(any_of))
}

/// `choice` with every whole number written as an integer (`2.0` → `2`):
/// JSON Schema's integers include `2.0`, and a JavaScript client, whose
/// text the vote's signature covers, writes that number as `2`.
pub fn whole_numbers_as_integers(choice: serde_json::Value) -> serde_json::Value {
    use serde_json::Value;
    match choice {
        Value::Number(number) if number.as_i64().is_none() && number.as_u64().is_none() => {
            #[allow(clippy::cast_precision_loss, reason = "2^53 - 1 is exact in f64")]
            let safe = MAX_SAFE_INTEGER as f64;
            match number.as_f64() {
                Some(f) if f.fract() == 0.0 && f.abs() <= safe => {
                    #[allow(clippy::cast_possible_truncation, reason = "whole and within 2^53")]
                    let whole = f as i64;
                    Value::from(whole)
                }
                _ => Value::Number(number),
            }
        }
        Value::Array(items) => {
            Value::Array(items.into_iter().map(whole_numbers_as_integers).collect())
        }
        Value::Object(entries) => Value::Object(
            entries
                .into_iter()
                .map(|(key, value)| (key, whole_numbers_as_integers(value)))
                .collect(),
        ),
        other => other,
    }
}

/// Whether `choice` has one of the shapes of [`choice_schema`].
pub fn choice_has_a_shape(choice: &serde_json::Value) -> bool {
    palm_core::voting::VOTING_TYPES
        .iter()
        .any(|voting_type| voting_type.fits(choice, MAX_CHOICES))
}

/// An integer sent as `3` or `3.0`, into any integer type it fits;
/// `#[serde(deserialize_with = "limits::integer")]`.
pub fn integer<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: TryFrom<i64>,
{
    let number = serde_json::Number::deserialize(deserializer)?;
    let whole = number.as_i64().or_else(|| {
        number
            .as_f64()
            .filter(|f| f.fract() == 0.0 && f.abs() < 9.2e18)
            // In range and whole: the cast is exact.
            .map(|f| {
                #[allow(clippy::cast_possible_truncation, reason = "checked above")]
                let whole = f as i64;
                whole
            })
    });
    whole
        .and_then(|value| T::try_from(value).ok())
        .ok_or_else(|| serde::de::Error::custom(format!("{number} is not an integer in range")))
}

/// [`integer`] for an optional field (with `#[serde(default)]`).
pub fn optional_integer<'de, D, T>(deserializer: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: TryFrom<i64>,
{
    #[derive(Deserialize)]
    struct Whole<T: TryFrom<i64>>(#[serde(deserialize_with = "integer")] T);
    Ok(Option::<Whole<T>>::deserialize(deserializer)?.map(|Whole(value)| value))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn text_rules_check_lengths_in_characters_and_their_patterns() {
        assert!(SLUG.check("slug", "garden-2").is_ok());
        assert!(SLUG.check("slug", "ga").is_err());
        assert!(SLUG.check("slug", "Garden").is_err());
        assert!(SLUG.check("slug", "garden\n").is_err());
        assert!(HANDLE.check("handle", "al_ice-1").is_ok());
        assert!(TITLE.check("title", &"é".repeat(200)).is_ok());
        assert!(TITLE.check("title", &"é".repeat(201)).is_err());
        assert!(TITLE.check("title", " \t\r\n").is_err());
        assert!(TITLE.check("title", "\u{3000}").is_ok());
        assert!(DESCRIPTION.check("description", "").is_ok());
        let r_s = "ab".repeat(64);
        for v in ["00", "01", "1b", "1C"] {
            assert!(SIGNATURE.check("signature", &format!("0x{r_s}{v}")).is_ok());
        }
        assert!(SIGNATURE.check("signature", &format!("0x{r_s}1d")).is_err());
        assert!(SIGNATURE.check("signature", &format!("0x{r_s}zz")).is_err());
        assert!(
            ADDRESS
                .check("address", &format!("0x{}", "aB".repeat(20)))
                .is_ok()
        );
        assert!(
            ADDRESS
                .check("address", &format!("0x{}", "g".repeat(40)))
                .is_err()
        );
        assert!(
            REDIRECT_URI
                .check("redirect_uri", "https://x.io/cb")
                .is_ok()
        );
        assert!(REDIRECT_URI.check("redirect_uri", "ftp://x.io/cb").is_err());
    }

    #[test]
    fn the_schema_states_the_checked_limits() {
        let schema = serde_json::to_value(SLUG.schema()).unwrap();
        assert_eq!(schema["minLength"], 3);
        assert_eq!(schema["maxLength"], 40);
        assert_eq!(schema["pattern"], "^[a-z0-9-]+$");
        let schema = serde_json::to_value(LEVEL.schema()).unwrap();
        assert_eq!(
            (schema["minimum"].clone(), schema["maximum"].clone()),
            (json!(1), json!(10))
        );
    }

    #[derive(Debug, Deserialize)]
    struct Numbers {
        #[serde(deserialize_with = "integer")]
        level: u32,
        #[serde(default, deserialize_with = "optional_integer")]
        min_level: Option<u32>,
    }

    #[test]
    fn integers_may_be_written_as_whole_floats() {
        let parsed: Numbers =
            serde_json::from_value(json!({ "level": 3.0, "min_level": 2 })).unwrap();
        assert_eq!((parsed.level, parsed.min_level), (3, Some(2)));
        let parsed: Numbers =
            serde_json::from_value(json!({ "level": 3, "min_level": null })).unwrap();
        assert_eq!(parsed.min_level, None);
        let parsed: Numbers = serde_json::from_value(json!({ "level": 3 })).unwrap();
        assert_eq!(parsed.min_level, None);
        for bad in [
            json!(3.5),
            json!(-1),
            json!(1e30),
            json!("3"),
            json!(4_294_967_296_u64),
        ] {
            assert!(
                serde_json::from_value::<Numbers>(json!({ "level": bad })).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn whole_floats_in_a_choice_become_integers() {
        let choice = whole_numbers_as_integers(json!({ "1": 2.0, "2": [3.0, 1.5], "3": 1e300 }));
        assert_eq!(choice, json!({ "1": 2, "2": [3, 1.5], "3": 1e300 }));
        assert!(choice["1"].is_u64());
    }

    #[test]
    fn every_choice_shape_is_one_a_voting_type_takes() {
        assert!(choice_has_a_shape(&json!(20)));
        assert!(choice_has_a_shape(&json!([1, 20])));
        assert!(choice_has_a_shape(&json!({ "20": MAX_SAFE_INTEGER })));
        assert!(!choice_has_a_shape(&json!(21)));
        assert!(!choice_has_a_shape(&json!({ "01": 1 })));
        assert!(!choice_has_a_shape(&json!("1")));
    }

    #[test]
    fn a_weighted_choice_sent_with_whole_floats_has_a_shape() {
        let sent: serde_json::Value = serde_json::from_str(
            r#"{"20": 321504244.0, "2": 640, "9": 187, "14": 3750312821934658.0, "5": 140113, "10": 1}"#,
        )
        .unwrap();
        assert!(choice_has_a_shape(&whole_numbers_as_integers(sent)));
    }

    #[derive(Debug, Deserialize)]
    struct Timestamp {
        #[serde(deserialize_with = "integer")]
        timestamp: i64,
    }

    #[test]
    fn whole_floats_with_sixteen_digits_are_read_exactly_in_every_integer_field() {
        // Between 2^51 and 2^53 a float's step is 0.5 or 1: a parser one
        // step off turns a whole number into a fraction or another integer.
        let parsed: Timestamp =
            serde_json::from_str(r#"{"timestamp": 3750312821934658.0}"#).unwrap();
        assert_eq!(parsed.timestamp, 3_750_312_821_934_658);
        let parsed: Timestamp =
            serde_json::from_str(r#"{"timestamp": 9007199254740991.0}"#).unwrap();
        assert_eq!(parsed.timestamp, 9_007_199_254_740_991);
        for sent in ["20.0", "[1.0, 20.0]", r#"{"1": 9007199254740991.0}"#] {
            let choice = whole_numbers_as_integers(serde_json::from_str(sent).unwrap());
            assert!(choice_has_a_shape(&choice), "{sent}");
        }
    }
}
