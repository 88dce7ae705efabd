//! OAuth 2.0 client-credentials tokens for the Genesys Cloud API: fetched once, cached,
//! and refreshed shortly before they expire, with a single refresh in flight however
//! many tasks ask at the same moment.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Deserialize;

use super::GenesysConfig;
use super::{HttpError, SERVICE};
use crate::config::Secret;
use crate::metrics::Metrics;
use crate::outbound;

/// Refresh when less than this share of the token's lifetime remains...
const REFRESH_FRACTION: u32 = 10;
/// ...or this much time, whichever is smaller.
const REFRESH_MARGIN_MAX: Duration = Duration::from_secs(60);
/// Used when the answer carries no `expires_in`; short, so a wrong guess heals quickly.
const DEFAULT_LIFETIME: Duration = Duration::from_secs(300);
/// Bounds on a token's lifetime whatever `expires_in` says: 0 would make every call
/// fetch a token, and an absurd value would overflow `Instant` arithmetic. Genesys Cloud
/// issues client-credentials tokens for 86,400 s by default (docs/genesys-api.md#endpoints).
const MIN_LIFETIME: Duration = Duration::from_secs(5);
const MAX_LIFETIME: Duration = Duration::from_secs(2 * 86_400);

#[derive(Debug)]
struct CachedToken {
    token: Secret,
    /// From here on the token is still valid but due for a refresh.
    refresh_at: Instant,
    expires_at: Instant,
}

#[derive(Debug, Default)]
struct State {
    cached: Option<CachedToken>,
    /// Bumped after every refresh attempt, so a task that waited for someone else's
    /// attempt can tell that it happened.
    attempts: u64,
    /// The error of the latest attempt, if it failed; shared with the tasks that waited
    /// for it instead of each hammering a failing token endpoint in turn.
    last_error: Option<HttpError>,
}

#[derive(Deserialize)]
struct TokenAnswer {
    access_token: String,
    #[serde(default)]
    expires_in: Option<u64>,
}

/// Supplies bearer tokens for the Genesys Cloud API (OAuth 2.0 client credentials).
pub struct TokenSource {
    cfg: GenesysConfig,
    http: reqwest::Client,
    metrics: Arc<Metrics>,
    state: Mutex<State>,
    /// Held for the whole of a refresh: the one-refresh-in-flight guarantee.
    refresh: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for TokenSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenSource")
            .field("login_base", &self.cfg.login_base)
            .field("client_id", &self.cfg.client_id)
            .finish_non_exhaustive()
    }
}

impl TokenSource {
    pub fn new(cfg: GenesysConfig, http: reqwest::Client, metrics: Arc<Metrics>) -> Self {
        TokenSource {
            cfg,
            http,
            metrics,
            state: Mutex::new(State::default()),
            refresh: tokio::sync::Mutex::new(()),
        }
    }

    /// A valid access token, from the cache when it is not yet due for a refresh.
    pub async fn token(&self) -> Result<String, HttpError> {
        let seen_attempts = {
            let state = self.lock_state();
            if let Some(token) = fresh(&state) {
                return Ok(token);
            }
            state.attempts
        };

        let _refreshing = self.refresh.lock().await;
        {
            // Someone else may have refreshed (or failed to) while we waited for the lock.
            let state = self.lock_state();
            if let Some(token) = fresh(&state) {
                return Ok(token);
            }
            if state.attempts != seen_attempts {
                if let Some(err) = &state.last_error {
                    return unexpired(&state).ok_or_else(|| err.clone());
                }
            }
        }

        let result = self.fetch().await;
        let mut state = self.lock_state();
        state.attempts += 1;
        match result {
            Ok(cached) => {
                let token = cached.token.expose().to_string();
                state.cached = Some(cached);
                state.last_error = None;
                Ok(token)
            }
            Err(err) => {
                state.last_error = Some(err.clone());
                // A failed early refresh is no reason to stop using a token that is
                // still valid; the next call past `refresh_at` tries again.
                match unexpired(&state) {
                    Some(old) => {
                        tracing::warn!(error = %err, "Genesys token refresh failed; using the current token until it expires");
                        Ok(old)
                    }
                    None => Err(err),
                }
            }
        }
    }

    /// Drops the cached token, but only if it is still `token`: a task holding an old
    /// token that got a 401 must not throw away the fresh one another task just fetched.
    pub fn invalidate(&self, token: &str) {
        let mut state = self.lock_state();
        if state
            .cached
            .as_ref()
            .is_some_and(|c| c.token.expose() == token)
        {
            state.cached = None;
        }
    }

    fn lock_state(&self) -> std::sync::MutexGuard<'_, State> {
        // The state is always left consistent, so a panic elsewhere does not poison it.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    async fn fetch(&self) -> Result<CachedToken, HttpError> {
        let url = super::api_url(&self.cfg.login_base, &["oauth", "token"])?;
        let secret = self.cfg.client_secret.expose();
        let started = Instant::now();
        let sent = self
            .http
            .post(url)
            .basic_auth(&self.cfg.client_id, Some(secret))
            .form(&[("grant_type", "client_credentials")])
            .send()
            .await;
        let resp = match sent {
            Ok(resp) => resp,
            Err(err) => {
                let err = HttpError::transport(SERVICE, err);
                self.count(err.transport_label());
                return Err(err);
            }
        };
        let status = resp.status();
        self.count(&outbound::status_label(status));
        let retry_after = outbound::retry_after(resp.headers());
        let body = resp
            .bytes()
            .await
            .map_err(|e| HttpError::transport(SERVICE, e))?;
        if !status.is_success() {
            return Err(HttpError::Status {
                service: SERVICE,
                status: status.as_u16(),
                retry_after,
                // A server echoing our Authorization header would show the Basic
                // credentials, which are the secret in base64.
                body: outbound::error_body(&body, &[secret, &self.basic_credentials()]),
            });
        }
        // serde_json errors can quote values from the input, and this input is a token:
        // keep only where and what kind of error it was.
        let answer: TokenAnswer = serde_json::from_slice(&body).map_err(|e| {
            HttpError::Decode(format!(
                "token answer is not {{access_token, expires_in}} ({:?} error at line {} column {})",
                e.classify(),
                e.line(),
                e.column()
            ))
        })?;
        if answer.access_token.is_empty() {
            return Err(HttpError::Decode(
                "token answer has an empty access_token".into(),
            ));
        }
        self.metrics.genesys_token_refresh_total.inc();
        let lifetime = token_lifetime(answer.expires_in);
        let margin = (lifetime / REFRESH_FRACTION).min(REFRESH_MARGIN_MAX);
        // Measured from when we asked, not when the answer arrived: the server's clock
        // started no later than that. Bounded above, so this cannot overflow.
        let expires_at = started + lifetime;
        tracing::debug!(
            lifetime_s = lifetime.as_secs(),
            "fetched a Genesys Cloud access token"
        );
        Ok(CachedToken {
            token: Secret::new(answer.access_token),
            refresh_at: expires_at - margin,
            expires_at,
        })
    }

    fn basic_credentials(&self) -> String {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD.encode(format!(
            "{}:{}",
            self.cfg.client_id,
            self.cfg.client_secret.expose()
        ))
    }

    fn count(&self, status: &str) {
        self.metrics
            .genesys_requests_total
            .with_label_values(&["token", status])
            .inc();
    }
}

/// The lifetime to plan with for an answer's `expires_in` (seconds), clamped to
/// [`MIN_LIFETIME`]..=[`MAX_LIFETIME`].
fn token_lifetime(expires_in: Option<u64>) -> Duration {
    expires_in
        .map(Duration::from_secs)
        .unwrap_or(DEFAULT_LIFETIME)
        .clamp(MIN_LIFETIME, MAX_LIFETIME)
}

fn fresh(state: &State) -> Option<String> {
    state
        .cached
        .as_ref()
        .filter(|c| Instant::now() < c.refresh_at)
        .map(|c| c.token.expose().to_string())
}

/// The cached token if it has not expired yet, even though it may be due for a refresh.
fn unexpired(state: &State) -> Option<String> {
    state
        .cached
        .as_ref()
        .filter(|c| Instant::now() < c.expires_at)
        .map(|c| c.token.expose().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `expires_in` of 0 or absurd values neither panic nor make
    /// every call fetch a token.
    #[test]
    fn hostile_expires_in_is_bounded() {
        assert_eq!(token_lifetime(Some(0)), MIN_LIFETIME);
        assert_eq!(token_lifetime(Some(u64::MAX)), MAX_LIFETIME);
        assert_eq!(token_lifetime(None), DEFAULT_LIFETIME);
        assert_eq!(token_lifetime(Some(86_400)), Duration::from_secs(86_400));
        let now = Instant::now();
        for s in [0, 1, u64::MAX] {
            let lifetime = token_lifetime(Some(s));
            let margin = (lifetime / REFRESH_FRACTION).min(REFRESH_MARGIN_MAX);
            let expires_at = now + lifetime;
            assert!(expires_at - margin > now, "a fresh token is fresh for {s}");
        }
    }
}
