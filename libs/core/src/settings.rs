//! The one error shape for a configuration value that loaded but is not
//! acceptable. Each lib validates its own settings section and reports the
//! full dotted key, so the operator sees exactly which variable to fix.

/// A configuration value that parsed but is not usable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid configuration value for key `{key}`: {reason}")]
pub struct InvalidSetting {
    /// Dotted key as it appears in the TOML file (`amqp.prefetch`); the
    /// environment variable is `PALM__` + the key upper-cased with `__`.
    pub key: String,
    /// Why the value was refused, in words an operator can act on.
    pub reason: String,
}

impl InvalidSetting {
    /// Builds the error for `section.field`.
    pub fn new(section: &str, field: &str, reason: impl Into<String>) -> Self {
        Self {
            key: format!("{section}.{field}"),
            reason: reason.into(),
        }
    }
}

/// Deserializes a list setting that may arrive as one value: the
/// environment source parses `PALM__AUTH__CHAIN_IDS=137` as the number 137
/// before it considers splitting on commas, so a one-element list must be
/// accepted as a bare value. Use with `#[serde(deserialize_with = ...)]`.
pub fn one_or_many<'de, D, T>(deserializer: D) -> Result<Vec<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: serde::Deserialize<'de>,
{
    use serde::de::{self, IntoDeserializer, SeqAccess, Visitor};

    // A visitor rather than an untagged enum: the config source's lenient
    // element conversion (list items arrive as strings) must reach `T`.
    struct OneOrMany<T>(std::marker::PhantomData<T>);

    impl<'de, T: serde::Deserialize<'de>> Visitor<'de> for OneOrMany<T> {
        type Value = Vec<T>;

        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("a list or a single value")
        }

        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<T>, A::Error> {
            let mut items = Vec::new();
            while let Some(item) = seq.next_element()? {
                items.push(item);
            }
            Ok(items)
        }

        fn visit_i64<E: de::Error>(self, value: i64) -> Result<Vec<T>, E> {
            T::deserialize(value.into_deserializer()).map(|item| vec![item])
        }

        fn visit_u64<E: de::Error>(self, value: u64) -> Result<Vec<T>, E> {
            T::deserialize(value.into_deserializer()).map(|item| vec![item])
        }

        fn visit_str<E: de::Error>(self, value: &str) -> Result<Vec<T>, E> {
            T::deserialize(value.into_deserializer()).map(|item| vec![item])
        }
    }

    deserializer.deserialize_any(OneOrMany(std::marker::PhantomData))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    struct Lists {
        #[serde(deserialize_with = "one_or_many")]
        ids: Vec<u64>,
    }

    #[test]
    fn a_list_setting_takes_one_value_or_many() {
        let one: Lists = serde_json::from_str(r#"{"ids": 137}"#).unwrap();
        assert_eq!(one.ids, vec![137]);
        let many: Lists = serde_json::from_str(r#"{"ids": [1, 10]}"#).unwrap();
        assert_eq!(many.ids, vec![1, 10]);
        assert!(serde_json::from_str::<Lists>(r#"{"ids": "x"}"#).is_err());
    }
}
