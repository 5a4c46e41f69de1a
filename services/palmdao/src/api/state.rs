//! [`AppState`]: what every handler can reach (the store, the sign-in
//! rules, the session keys, the community level gate), and [`location`] for
//! created resources. A leaf of the API: handlers use it, it uses none of
//! them.

use std::sync::Arc;
use std::time::Duration;

use palm_core::InvalidSetting;
use palm_core::siwe::SiweRules;

use super::session::SessionKeys;
use crate::settings::Settings;
use crate::store::Store;

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    pub(super) inner: Arc<Inner>,
}

pub(super) struct Inner {
    store: Store,
    pub(super) siwe: SiweRules,
    pub(super) nonce_ttl: Duration,
    pub(super) sessions: SessionKeys,
    create_community_level: u32,
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState")
            .field("siwe", &self.inner.siwe)
            .finish_non_exhaustive()
    }
}

impl AppState {
    /// State for the API on `store` with `settings`' auth rules.
    pub fn new(store: Store, settings: &Settings) -> Result<Self, InvalidSetting> {
        let auth = &settings.auth;
        Ok(Self {
            inner: Arc::new(Inner {
                store,
                siwe: auth.rules()?,
                nonce_ttl: Duration::from_secs(auth.nonce_ttl_secs),
                sessions: SessionKeys::new(
                    &auth.session_key,
                    Duration::from_secs(auth.session_ttl_secs),
                ),
                create_community_level: settings.communities.create_min_level,
            }),
        })
    }

    pub(crate) fn store(&self) -> &Store {
        &self.inner.store
    }

    pub(crate) fn create_community_level(&self) -> u32 {
        self.inner.create_community_level
    }
}

/// A `Location` header for a created resource.
pub(crate) fn location(path: &str) -> axum::http::HeaderMap {
    let mut headers = axum::http::HeaderMap::new();
    if let Ok(value) = axum::http::HeaderValue::from_str(path) {
        headers.insert(axum::http::header::LOCATION, value);
    }
    headers
}

/// The session extractor's keys ([`super::session::Session`]).
impl axum::extract::FromRef<AppState> for SessionKeys {
    fn from_ref(state: &AppState) -> Self {
        state.inner.sessions.clone()
    }
}
