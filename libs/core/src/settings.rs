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
