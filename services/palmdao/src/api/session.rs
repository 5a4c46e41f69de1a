//! Session tokens: `v1.<payload>.<mac>`, where the payload is base64url JSON
//! `{sub, iat, exp}` and the MAC is HMAC-SHA256 over `v1.<payload>` with the
//! secret `auth.session_key`. Stateless and expiring; the key never leaves
//! the server and rotating it ends every session.

use std::time::Duration;

use axum::extract::{FromRef, FromRequestParts};
use axum::http::request::Parts;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use uuid::Uuid;

use super::problem::Problem;

type HmacSha256 = Hmac<Sha256>;

/// Signs and checks tokens.
#[derive(Clone, Debug)]
pub struct SessionKeys {
    key: SecretString,
    ttl: Duration,
}

#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    sub: Uuid,
    iat: i64,
    exp: i64,
}

impl SessionKeys {
    /// Keys from the configured secret.
    pub fn new(key: &SecretString, ttl: Duration) -> Self {
        Self {
            key: key.clone(),
            ttl,
        }
    }

    fn mac(&self, signed: &str) -> HmacSha256 {
        // HMAC accepts keys of any length; validation requires ≥ 32 bytes.
        let mut mac = HmacSha256::new_from_slice(self.key.expose_secret().as_bytes())
            .unwrap_or_else(|_| unreachable!("HMAC takes any key length"));
        mac.update(signed.as_bytes());
        mac
    }

    /// A token for `palm_id`, and when it expires.
    pub fn issue(&self, palm_id: Uuid, now: DateTime<Utc>) -> (String, DateTime<Utc>) {
        let expires =
            now + chrono::Duration::from_std(self.ttl).unwrap_or(chrono::Duration::hours(24));
        let claims = Claims {
            sub: palm_id,
            iat: now.timestamp(),
            exp: expires.timestamp(),
        };
        let payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&claims).unwrap_or_default());
        let signed = format!("v1.{payload}");
        let mac = URL_SAFE_NO_PAD.encode(self.mac(&signed).finalize().into_bytes());
        (format!("{signed}.{mac}"), expires)
    }

    /// The PalmID of a valid, unexpired token.
    pub fn verify(&self, token: &str, now: DateTime<Utc>) -> Option<Uuid> {
        let (signed, mac) = token.rsplit_once('.')?;
        let payload = signed.strip_prefix("v1.")?;
        let mac = URL_SAFE_NO_PAD.decode(mac).ok()?;
        self.mac(signed).verify_slice(&mac).ok()?;
        let claims: Claims = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).ok()?).ok()?;
        (claims.exp > now.timestamp()).then_some(claims.sub)
    }
}

/// The signed-in PalmID of a request; rejects with `401` otherwise.
#[derive(Debug, Clone, Copy)]
pub struct Session(pub Uuid);

/// For any router state that hands out its [`SessionKeys`] (axum's
/// `FromRef`), so this module needs nothing of the state it runs in.
impl<S> FromRequestParts<S> for Session
where
    S: Send + Sync,
    SessionKeys: FromRef<S>,
{
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let token = parts
            .headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(bearer_token)
            .ok_or_else(Problem::unauthenticated)?;
        SessionKeys::from_ref(state)
            .verify(token, Utc::now())
            .map(Session)
            .ok_or_else(Problem::unauthenticated)
    }
}

/// The token of an `Authorization: Bearer <token>` value. The scheme is
/// matched case-insensitively (RFC 9110 §11.1: auth schemes are
/// case-insensitive; RFC 6750 §2.1), with any amount of spaces after it.
fn bearer_token(value: &str) -> Option<&str> {
    let (scheme, token) = value.trim().split_once(' ')?;
    let token = token.trim_start();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys() -> SessionKeys {
        SessionKeys::new(&SecretString::from("k".repeat(32)), Duration::from_secs(60))
    }

    #[test]
    fn the_bearer_scheme_is_case_insensitive() {
        assert_eq!(bearer_token("Bearer abc"), Some("abc"));
        assert_eq!(bearer_token("bearer abc"), Some("abc"));
        assert_eq!(bearer_token("BEARER   abc"), Some("abc"));
        assert_eq!(bearer_token("Basic abc"), None);
        assert_eq!(bearer_token("Bearer "), None);
        assert_eq!(bearer_token("Bearerabc"), None);
    }

    #[test]
    fn a_token_verifies_until_it_expires() {
        let id = Uuid::now_v7();
        let now = Utc::now();
        let (token, expires) = keys().issue(id, now);
        assert_eq!(keys().verify(&token, now), Some(id));
        assert_eq!(keys().verify(&token, expires), None);
    }

    #[test]
    fn a_forged_or_foreign_token_is_refused() {
        let now = Utc::now();
        let (token, _) = keys().issue(Uuid::now_v7(), now);
        let other = SessionKeys::new(&SecretString::from("x".repeat(32)), Duration::from_secs(60));
        assert_eq!(other.verify(&token, now), None);
        let (signed, mac) = token.rsplit_once('.').unwrap();
        let claims = Claims {
            sub: Uuid::now_v7(),
            iat: 0,
            exp: i64::MAX,
        };
        let forged_payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&claims).unwrap());
        assert_eq!(
            keys().verify(&format!("v1.{forged_payload}.{mac}"), now),
            None
        );
        assert_eq!(keys().verify(signed, now), None);
        assert_eq!(keys().verify("garbage", now), None);
    }
}
