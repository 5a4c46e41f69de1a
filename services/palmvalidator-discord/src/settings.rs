//! The `discord.*` configuration section: where Discord is, the OAuth2
//! application and bot credentials (secrets, from the environment only), the
//! rules an account must meet, and the limits the client keeps under.

use std::time::Duration;

use palm_core::InvalidSetting;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

/// Discord's own invalid-request limit: this many 401, 403 and 429 answers
/// from one IP within ten minutes get it banned for a while. The budget must
/// stay below it.
pub const DISCORD_INVALID_REQUEST_LIMIT: u32 = 10_000;

/// Discord's global limit for one bot token, per second.
pub const DISCORD_GLOBAL_LIMIT_PER_SECOND: u32 = 50;

/// `discord.*`.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DiscordSettings {
    /// Base URL of the HTTP API, versioned (`https://discord.com/api/v10`);
    /// tests point it at a local fake.
    pub base_url: String,
    /// The OAuth2 application's client id.
    pub client_id: String,
    /// The OAuth2 application's client secret (secret; set
    /// `PALM__DISCORD__CLIENT_SECRET`).
    pub client_secret: SecretString,
    /// The bot token (secret; `PALM__DISCORD__BOT_TOKEN`), needed for the
    /// guild-membership check and the role grant.
    pub bot_token: Option<SecretString>,
    /// Accounts younger than this many days are rejected
    /// (`discord_account_too_young`): fresh accounts are the cheap sybils.
    pub min_account_age_days: u32,
    /// The community's guild (snowflake); membership is looked up with the
    /// bot token when set.
    pub guild_id: Option<String>,
    /// Reject accounts that are not members of `guild_id`
    /// (`discord_not_in_guild`).
    pub require_guild_membership: bool,
    /// Role granted (with the bot token) to a verified member of `guild_id`.
    pub grant_role_id: Option<String>,
    /// Requests per second across everything this process sends; below
    /// Discord's global 50 so that nothing else on the token (and network
    /// jitter) pushes it over.
    pub max_requests_per_second: u32,
    /// Invalid answers (401, 403, 429) within ten minutes at which the
    /// service stops calling Discord and reports not-ready, well before
    /// Discord's 10,000 ban threshold.
    pub invalid_request_budget: u32,
    /// One HTTP request, connect to last byte.
    pub request_timeout_ms: u64,
    /// In-process retries of a request that failed with a 5xx or timed out,
    /// before the job is handed back to the queue as a transient failure.
    pub max_retries: u32,
    /// First backoff delay of those retries (exponential, jittered).
    pub retry_min_ms: u64,
    /// Longest backoff delay of those retries.
    pub retry_max_ms: u64,
    /// How often an unreachable Discord is probed until it answers again.
    pub probe_interval_ms: u64,
}

impl Default for DiscordSettings {
    fn default() -> Self {
        Self {
            base_url: "https://discord.com/api/v10".into(),
            client_id: String::new(),
            client_secret: SecretString::from(""),
            bot_token: None,
            min_account_age_days: 30,
            guild_id: None,
            require_guild_membership: false,
            grant_role_id: None,
            max_requests_per_second: 40,
            invalid_request_budget: 8_000,
            request_timeout_ms: 10_000,
            max_retries: 3,
            retry_min_ms: 200,
            retry_max_ms: 5_000,
            probe_interval_ms: 2_000,
        }
    }
}

impl DiscordSettings {
    /// Checks values that parse but cannot work; the error names the key.
    pub fn validate(&self) -> Result<(), InvalidSetting> {
        let bad = |field: &str, reason: &str| Err(InvalidSetting::new("discord", field, reason));
        if !is_snowflake(&self.client_id) {
            return bad(
                "client_id",
                "must be the OAuth2 application's id (set PALM__DISCORD__CLIENT_ID)",
            );
        }
        if self.client_secret.expose_secret().is_empty() {
            return bad(
                "client_secret",
                "must be set (PALM__DISCORD__CLIENT_SECRET, from a Secret)",
            );
        }
        let base = self.base_url.trim_end_matches('/');
        if !(base.starts_with("https://") || base.starts_with("http://"))
            || base.len() <= "https://".len()
        {
            return bad("base_url", "must be an http(s) URL");
        }
        if self
            .bot_token
            .as_ref()
            .is_some_and(|token| token.expose_secret().is_empty())
        {
            return bad("bot_token", "must not be empty when set");
        }
        if let Some(guild) = &self.guild_id
            && !is_snowflake(guild)
        {
            return bad("guild_id", "must be a Discord snowflake (digits)");
        }
        if self.require_guild_membership && self.guild_id.is_none() {
            return bad("require_guild_membership", "needs discord.guild_id");
        }
        if (self.require_guild_membership || self.grant_role_id.is_some())
            && self.bot_token.is_none()
        {
            return bad(
                "bot_token",
                "must be set (PALM__DISCORD__BOT_TOKEN) to check guild membership or grant a role",
            );
        }
        if let Some(role) = &self.grant_role_id {
            if !is_snowflake(role) {
                return bad("grant_role_id", "must be a Discord snowflake (digits)");
            }
            if self.guild_id.is_none() {
                return bad("grant_role_id", "needs discord.guild_id");
            }
        }
        if self.max_requests_per_second == 0
            || self.max_requests_per_second >= DISCORD_GLOBAL_LIMIT_PER_SECOND
        {
            return bad(
                "max_requests_per_second",
                "must be between 1 and 49 (Discord's global limit is 50/s)",
            );
        }
        if self.invalid_request_budget == 0
            || self.invalid_request_budget >= DISCORD_INVALID_REQUEST_LIMIT
        {
            return bad(
                "invalid_request_budget",
                "must be between 1 and 9999 (Discord bans at 10,000 per 10 minutes)",
            );
        }
        if self.request_timeout_ms == 0 {
            return bad("request_timeout_ms", "must be above 0");
        }
        if self.retry_min_ms == 0 || self.retry_min_ms > self.retry_max_ms {
            return bad(
                "retry_min_ms",
                "must be above 0 and at most discord.retry_max_ms",
            );
        }
        if self.probe_interval_ms == 0 {
            return bad("probe_interval_ms", "must be above 0");
        }
        Ok(())
    }

    /// `base_url` without a trailing slash.
    pub fn base(&self) -> &str {
        self.base_url.trim_end_matches('/')
    }

    /// The minimum account age.
    pub fn min_account_age(&self) -> Duration {
        Duration::from_secs(u64::from(self.min_account_age_days) * 86_400)
    }

    /// The guild whose membership is looked up, if any: only when it is
    /// required or a role is to be granted (and a bot token can ask).
    pub fn membership_guild(&self) -> Option<&str> {
        let wanted = self.require_guild_membership || self.grant_role_id.is_some();
        (wanted && self.bot_token.is_some())
            .then_some(self.guild_id.as_deref())
            .flatten()
    }
}

fn is_snowflake(value: &str) -> bool {
    !value.is_empty() && value.len() <= 20 && value.bytes().all(|b| b.is_ascii_digit())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn valid() -> DiscordSettings {
        DiscordSettings {
            base_url: "http://127.0.0.1:9/api/v10".into(),
            client_id: "1234567890".into(),
            client_secret: SecretString::from("secret"),
            ..DiscordSettings::default()
        }
    }

    #[test]
    fn defaults_plus_credentials_validate() {
        valid().validate().unwrap();
        assert_eq!(
            DiscordSettings::default().validate().unwrap_err().key,
            "discord.client_id"
        );
    }

    #[test]
    fn bad_values_name_their_key() {
        let key = |change: &dyn Fn(&mut DiscordSettings)| {
            let mut settings = valid();
            change(&mut settings);
            settings.validate().unwrap_err().key
        };
        assert_eq!(
            key(&|s| s.base_url = "discord.com".into()),
            "discord.base_url"
        );
        assert_eq!(
            key(&|s| s.client_secret = SecretString::from("")),
            "discord.client_secret"
        );
        assert_eq!(
            key(&|s| s.require_guild_membership = true),
            "discord.require_guild_membership"
        );
        assert_eq!(
            key(&|s| {
                s.require_guild_membership = true;
                s.guild_id = Some("42".into());
            }),
            "discord.bot_token"
        );
        assert_eq!(
            key(&|s| s.guild_id = Some("my-guild".into())),
            "discord.guild_id"
        );
        assert_eq!(
            key(&|s| s.max_requests_per_second = 50),
            "discord.max_requests_per_second"
        );
        assert_eq!(
            key(&|s| s.invalid_request_budget = 10_000),
            "discord.invalid_request_budget"
        );
        assert_eq!(key(&|s| s.retry_min_ms = 0), "discord.retry_min_ms");
    }

    #[test]
    fn membership_is_looked_up_only_when_it_matters_and_a_bot_can_ask() {
        let mut settings = valid();
        settings.guild_id = Some("42".into());
        assert_eq!(settings.membership_guild(), None);
        settings.bot_token = Some(SecretString::from("bot"));
        assert_eq!(settings.membership_guild(), None);
        settings.require_guild_membership = true;
        assert_eq!(settings.membership_guild(), Some("42"));
    }

    #[test]
    fn secrets_stay_out_of_debug_output() {
        let mut settings = valid();
        settings.bot_token = Some(SecretString::from("bot-token-value"));
        let debug = format!("{settings:?}");
        assert!(!debug.contains("bot-token-value") && !debug.contains("\"secret\""));
    }
}
