//! Deciding a Discord verification: from an OAuth2 authorization code to a
//! verified Discord user id, or a rejection with a reason.
//!
//! 1. `POST /oauth2/token` (form-encoded: the code, the redirect URI it was
//!    issued for, the application's client id and secret) → an access token.
//!    `400 invalid_grant` (a wrong, used or expired code, or a redirect URI
//!    it was not issued for) rejects with `discord_invalid_code`; another
//!    `400` the user's request caused (`invalid_request`, `invalid_scope`)
//!    with `discord_oauth_refused`.
//! 2. The token must carry the `identify` scope (`discord_missing_scope`).
//! 3. `GET /users/@me` with the token → id, username. A token Discord
//!    refuses here rejects with `discord_oauth_refused`.
//! 4. The id's snowflake carries the account's creation time: younger than
//!    `discord.min_account_age_days` rejects with `discord_account_too_young`.
//! 5. With a guild to check, `GET /guilds/{guild}/members/{user}` with the
//!    **bot token** (the bot route, not the user's
//!    `/users/@me/guilds/{guild}/member`: it needs no extra OAuth2 scope from
//!    the user, and the bot must be in the guild anyway to grant the role).
//!    Not a member, with `discord.require_guild_membership`, rejects with
//!    `discord_not_in_guild`.
//! 6. A member gets `discord.grant_role_id` (bot token,
//!    `PUT /guilds/{guild}/members/{user}/roles/{role}`, idempotent). A
//!    failed grant is logged and counted but does not undo the proven
//!    identity.
//!
//! Any other answer (our credentials refused, the bot not in the guild, a
//! body that does not parse) is not the user's fault: it is an
//! [`VerifyError::Unexpected`], retried later and finally dead-lettered for
//! an operator to replay once the cause is fixed.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use palm_core::events::{DiscordVerificationRequested, VerificationOutcome};
use palm_service::metrics;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use tokio_util::sync::CancellationToken;

use crate::DiscordSettings;
use crate::client::{Answer, Auth, Call, DiscordClient, Stopping, form_urlencoded};
use crate::ratelimit::Route;

/// Milliseconds from the Unix epoch to Discord's (2015-01-01T00:00:00Z).
pub const DISCORD_EPOCH_MS: u64 = 1_420_070_400_000;

/// Discord's JSON error code for "Unknown Guild": the bot is not in it.
const UNKNOWN_GUILD: u64 = 10_004;

/// Why a verification is rejected. Each has its own stable code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejection {
    /// The code is wrong, used or expired, or was issued for another
    /// redirect URI.
    InvalidCode,
    /// Discord refused the request or the token for another reason the
    /// user's side caused.
    OauthRefused,
    /// The user did not grant the `identify` scope.
    MissingScope,
    /// The account is younger than the configured minimum.
    AccountTooYoung,
    /// The account is not a member of the required guild.
    NotInGuild,
}

impl Rejection {
    /// Every rejection, for docs and tests.
    pub const ALL: [Self; 5] = [
        Self::InvalidCode,
        Self::OauthRefused,
        Self::MissingScope,
        Self::AccountTooYoung,
        Self::NotInGuild,
    ];

    /// The machine-readable reason in `verification.completed`.
    pub fn code(self) -> &'static str {
        match self {
            Self::InvalidCode => "discord_invalid_code",
            Self::OauthRefused => "discord_oauth_refused",
            Self::MissingScope => "discord_missing_scope",
            Self::AccountTooYoung => "discord_account_too_young",
            Self::NotInGuild => "discord_not_in_guild",
        }
    }
}

/// A verification that could not be decided now.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    /// The service is stopping and Discord cannot be called now (it is
    /// unreachable, or the limits would make the job wait too long).
    #[error(transparent)]
    Stopping(#[from] Stopping),
    /// Discord answered something that says nothing about the user.
    #[error("unexpected answer from discord: {0:#}")]
    Unexpected(anyhow::Error),
}

fn unexpected(what: &str, answer: &Answer) -> VerifyError {
    let body = String::from_utf8_lossy(&answer.body);
    let body: String = body.chars().take(200).collect();
    VerifyError::Unexpected(anyhow::anyhow!(
        "{what}: status {}, body {body:?}",
        answer.status
    ))
}

/// When the account with this Discord user id was created.
pub fn created_at(user_id: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis((user_id >> 22) + DISCORD_EPOCH_MS)
}

/// Decides Discord verifications. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Verifier {
    client: DiscordClient,
    client_id: String,
    client_secret: SecretString,
    min_account_age: Duration,
    guild: Option<String>,
    require_membership: bool,
    grant_role: Option<String>,
}

#[derive(Debug, Deserialize)]
struct TokenAnswer {
    access_token: String,
    #[serde(default)]
    scope: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
struct OauthError {
    #[serde(default)]
    error: String,
}

#[derive(Debug, Deserialize)]
struct User {
    id: String,
    username: String,
}

#[derive(Debug, Default, Deserialize)]
struct ApiError {
    #[serde(default)]
    code: u64,
}

impl Verifier {
    /// A verifier under `settings`, calling Discord through `client`.
    pub fn new(client: DiscordClient, settings: &DiscordSettings) -> Self {
        Self {
            client,
            client_id: settings.client_id.clone(),
            client_secret: settings.client_secret.clone(),
            min_account_age: settings.min_account_age(),
            guild: settings.membership_guild().map(str::to_owned),
            require_membership: settings.require_guild_membership,
            grant_role: settings.grant_role_id.clone(),
        }
    }

    /// The client, for readiness and the prober.
    pub fn client(&self) -> &DiscordClient {
        &self.client
    }

    /// Decides `job` at `now`.
    pub async fn verify(
        &self,
        job: &DiscordVerificationRequested,
        now: SystemTime,
        shutdown: &CancellationToken,
    ) -> Result<VerificationOutcome, VerifyError> {
        let token = match self.exchange(job, shutdown).await? {
            Ok(token) => token,
            Err(rejection) => return Ok(rejected(rejection)),
        };
        if let Some(scope) = &token.scope
            && !scope.split_whitespace().any(|s| s == "identify")
        {
            return Ok(rejected(Rejection::MissingScope));
        }
        let user = match self.current_user(&token.access_token, shutdown).await? {
            Ok(user) => user,
            Err(rejection) => return Ok(rejected(rejection)),
        };
        let Ok(user_id) = user.id.parse::<u64>() else {
            return Err(VerifyError::Unexpected(anyhow::anyhow!(
                "discord user id {:?} is not a snowflake",
                user.id
            )));
        };
        let age = now
            .duration_since(created_at(user_id))
            .unwrap_or(Duration::ZERO);
        if age < self.min_account_age {
            tracing::info!(discord_user = %user.id, age_days = age.as_secs() / 86_400, "discord account too young");
            return Ok(rejected(Rejection::AccountTooYoung));
        }
        if let Some(guild) = &self.guild {
            let member = self.is_member(guild, &user.id, shutdown).await?;
            if !member && self.require_membership {
                return Ok(rejected(Rejection::NotInGuild));
            }
            if member && let Some(role) = &self.grant_role {
                self.grant(guild, &user.id, role, shutdown).await?;
            }
        }
        tracing::info!(discord_user = %user.id, "discord account verified");
        Ok(VerificationOutcome::Verified {
            subject: user.id,
            display_name: Some(user.username),
        })
    }

    async fn exchange(
        &self,
        job: &DiscordVerificationRequested,
        shutdown: &CancellationToken,
    ) -> Result<Result<TokenAnswer, Rejection>, VerifyError> {
        let form = form_urlencoded(&[
            ("grant_type", "authorization_code"),
            ("code", &job.code),
            ("redirect_uri", &job.redirect_uri),
            ("client_id", &self.client_id),
            ("client_secret", self.client_secret.expose_secret()),
        ]);
        let call = Call {
            route: Route::new("POST /oauth2/token"),
            method: reqwest::Method::POST,
            path: "/oauth2/token".into(),
            auth: Auth::None,
            form: Some(form),
        };
        let answer = self.client.send(&call, shutdown).await?;
        if answer.is_success() {
            return answer
                .json::<TokenAnswer>()
                .map(Ok)
                .ok_or_else(|| unexpected("token answer without an access token", &answer));
        }
        let error = answer.json::<OauthError>().unwrap_or_default();
        match (answer.status, error.error.as_str()) {
            (400, "invalid_grant") => Ok(Err(Rejection::InvalidCode)),
            (400, "invalid_request" | "invalid_scope") => Ok(Err(Rejection::OauthRefused)),
            _ => {
                tracing::error!(status = answer.status, error = %error.error, "discord refused the code exchange for a reason that is not the user's (check discord.client_id and client_secret)");
                Err(unexpected("code exchange refused", &answer))
            }
        }
    }

    async fn current_user(
        &self,
        access_token: &str,
        shutdown: &CancellationToken,
    ) -> Result<Result<User, Rejection>, VerifyError> {
        let call = Call {
            route: Route::new("GET /users/@me"),
            method: reqwest::Method::GET,
            path: "/users/@me".into(),
            auth: Auth::Bearer(access_token),
            form: None,
        };
        let answer = self.client.send(&call, shutdown).await?;
        match answer.status {
            200 => answer
                .json::<User>()
                .map(Ok)
                .ok_or_else(|| unexpected("user without an id and username", &answer)),
            401 | 403 => Ok(Err(Rejection::OauthRefused)),
            _ => Err(unexpected("fetching the user", &answer)),
        }
    }

    async fn is_member(
        &self,
        guild: &str,
        user_id: &str,
        shutdown: &CancellationToken,
    ) -> Result<bool, VerifyError> {
        let call = Call {
            route: Route::in_guild("GET /guilds/{guild}/members/{user}", guild),
            method: reqwest::Method::GET,
            path: format!("/guilds/{guild}/members/{user_id}"),
            auth: Auth::Bot,
            form: None,
        };
        let answer = self.client.send(&call, shutdown).await?;
        match answer.status {
            200 => Ok(true),
            404 if answer.json::<ApiError>().unwrap_or_default().code != UNKNOWN_GUILD => Ok(false),
            _ => {
                tracing::error!(
                    status = answer.status,
                    guild,
                    "the guild membership check failed: is the bot in discord.guild_id, and is discord.bot_token right?"
                );
                Err(unexpected("checking guild membership", &answer))
            }
        }
    }

    async fn grant(
        &self,
        guild: &str,
        user_id: &str,
        role: &str,
        shutdown: &CancellationToken,
    ) -> Result<(), VerifyError> {
        let call = Call {
            route: Route::in_guild("PUT /guilds/{guild}/members/{user}/roles/{role}", guild),
            method: reqwest::Method::PUT,
            path: format!("/guilds/{guild}/members/{user_id}/roles/{role}"),
            auth: Auth::Bot,
            form: None,
        };
        let answer = self.client.send(&call, shutdown).await?;
        if answer.is_success() {
            metrics::counter!("palm_discord_roles_granted_total").increment(1);
        } else {
            metrics::counter!("palm_discord_role_grant_failures_total").increment(1);
            tracing::error!(
                status = answer.status,
                guild,
                role,
                discord_user = user_id,
                "could not grant the role: does the bot have Manage Roles above it?"
            );
        }
        Ok(())
    }
}

fn rejected(rejection: Rejection) -> VerificationOutcome {
    VerificationOutcome::Rejected {
        reason: rejection.code().to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    #[test]
    fn a_snowflake_carries_its_creation_time() {
        // Discord's documented example: 175928847299117063 was created
        // 2016-04-30 11:18:25.796 UTC.
        let created = created_at(175_928_847_299_117_063);
        assert_eq!(
            created.duration_since(UNIX_EPOCH).ok(),
            Some(Duration::from_millis(1_462_015_105_796))
        );
    }

    #[test]
    fn every_rejection_has_its_own_discord_prefixed_code() {
        let codes: BTreeSet<&str> = Rejection::ALL.iter().map(|r| r.code()).collect();
        assert_eq!(codes.len(), Rejection::ALL.len());
        assert!(codes.iter().all(|code| code.starts_with("discord_")));
    }
}
