//! Layered configuration: built-in defaults (each settings type's `Default`,
//! through `#[serde(default)]`) → `config/<PALM_ENV>.toml` → environment
//! variables `PALM__SECTION__KEY`. After loading, the settings validate
//! themselves; any failure names the offending key.

use std::path::PathBuf;

use palm_core::InvalidSetting;
use serde::de::DeserializeOwned;

use crate::RuntimeSettings;

/// A service's complete settings. `Debug` must redact secrets (they are
/// `secrecy` types): `--check-config` prints it.
pub trait ServiceSettings: DeserializeOwned + std::fmt::Debug {
    /// Keys whose environment value is a comma-separated list.
    const LIST_KEYS: &'static [&'static str] = &["amqp.retry_delays_ms"];

    /// Checks values that parse but cannot work.
    fn validate(&self) -> Result<(), InvalidSetting>;

    /// The shared runtime sections.
    fn runtime(&self) -> &RuntimeSettings;
}

/// Why the configuration could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// `PALM_ENV` names an environment without a config file.
    #[error("PALM_ENV={env} but {path} does not exist")]
    MissingFile {
        /// Value of `PALM_ENV`.
        env: String,
        /// File looked for.
        path: PathBuf,
    },
    /// A value is missing or of the wrong type (the message names the key).
    #[error("invalid configuration: {0}")]
    Load(#[from] config::ConfigError),
    /// A value parsed but is not acceptable.
    #[error(transparent)]
    Invalid(#[from] InvalidSetting),
}

/// Loads and validates `S`. The config directory is `PALM_CONFIG_DIR`
/// (default `config`); the environment is `PALM_ENV` (default `local`, whose
/// file is optional).
pub fn load<S: ServiceSettings>() -> Result<S, ConfigError> {
    let env = std::env::var("PALM_ENV").ok();
    let dir = PathBuf::from(std::env::var("PALM_CONFIG_DIR").unwrap_or_else(|_| "config".into()));
    let file = dir.join(format!("{}.toml", env.as_deref().unwrap_or("local")));
    if let Some(env) = &env
        && !file.exists()
    {
        return Err(ConfigError::MissingFile {
            env: env.clone(),
            path: file,
        });
    }
    let mut environment = config::Environment::with_prefix("PALM")
        .prefix_separator("__")
        .separator("__")
        .try_parsing(true)
        .list_separator(",");
    for key in S::LIST_KEYS {
        environment = environment.with_list_parse_key(key);
    }
    let settings: S = config::Config::builder()
        .add_source(config::File::from(file).required(false))
        .add_source(environment)
        .build()?
        .try_deserialize()?;
    settings.validate()?;
    Ok(settings)
}
