//! Who may use the console, and proof that a mutating request comes from its own pages.
//!
//! Access is `RELAY_ADMIN_TOKEN`, either as `Authorization: Bearer <token>` (scripts) or
//! through the login form, which sets a session cookie. The cookie is stateless:
//! `<expiry ms>.<HMAC-SHA256(token, "session|" + expiry)>`, so it works across restarts
//! and behind a load balancer spreading requests over several processes, and every
//! session ends when the token is rotated. The CSRF token of a session is
//! `HMAC-SHA256(token, "csrf|" + cookie)`; every form that changes something carries it.
//!
//! Invariants: comparisons of secrets are constant-time; the token never appears in a
//! page, a cookie or a log line; a cookie-authenticated POST without the session's CSRF
//! token is refused (bearer requests need none: a browser never adds that header on its
//! own, which is what CSRF abuses).

use crate::config::Secret;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use warp::http::HeaderMap;

/// Name of the session cookie.
pub(crate) const COOKIE: &str = "relay_console_session";
/// How long a login lasts.
pub(crate) const SESSION_MS: i64 = 8 * 60 * 60 * 1000;

/// How a request proved it may use the console.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Access {
    /// `Authorization: Bearer` with the token.
    Bearer,
    /// A valid session cookie; carries the cookie value (the CSRF token derives from it).
    Session(String),
}

/// Why a request was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// No credential at all: the browser is sent to the login form.
    NoCredential,
    /// A bearer token or cookie that is wrong or expired.
    Invalid,
}

/// The token and the keys derived from it.
#[derive(Clone)]
pub(crate) struct Keys {
    token: Secret,
}

impl Keys {
    pub(crate) fn new(token: Secret) -> Self {
        Keys { token }
    }

    fn mac(&self, purpose: &str, data: &str) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(self.token.expose().as_bytes())
            .expect("HMAC takes a key of any length");
        mac.update(purpose.as_bytes());
        mac.update(b"|");
        mac.update(data.as_bytes());
        hex::encode(mac.finalize().into_bytes())
    }

    /// True when `candidate` is the token (constant-time over digests, so the length of
    /// the token does not leak either).
    pub(crate) fn token_matches(&self, candidate: &str) -> bool {
        let a = Sha256::digest(candidate.as_bytes());
        let b = Sha256::digest(self.token.expose().as_bytes());
        a.ct_eq(&b).into()
    }

    /// A new session cookie value that expires `SESSION_MS` after `now_ms`.
    pub(crate) fn new_session(&self, now_ms: i64) -> String {
        let expiry = now_ms + SESSION_MS;
        format!("{expiry}.{}", self.mac("session", &expiry.to_string()))
    }

    /// True when `cookie` was issued with this token and has not expired.
    pub(crate) fn session_valid(&self, cookie: &str, now_ms: i64) -> bool {
        let Some((expiry, mac)) = cookie.split_once('.') else {
            return false;
        };
        let Ok(exp) = expiry.parse::<i64>() else {
            return false;
        };
        let expected = self.mac("session", expiry);
        let ok: bool = expected.as_bytes().ct_eq(mac.as_bytes()).into();
        ok && exp > now_ms
    }

    /// The CSRF token of a session.
    pub(crate) fn csrf_for(&self, session: &str) -> String {
        self.mac("csrf", session)
    }

    /// True when `candidate` is the CSRF token of `session`.
    pub(crate) fn csrf_valid(&self, session: &str, candidate: &str) -> bool {
        self.csrf_for(session)
            .as_bytes()
            .ct_eq(candidate.as_bytes())
            .into()
    }

    /// Checks the request's credential: a bearer token wins over a cookie.
    pub(crate) fn check(&self, headers: &HeaderMap, now_ms: i64) -> Result<Access, Refusal> {
        if let Some(auth) = headers.get("authorization").and_then(|v| v.to_str().ok()) {
            return match auth.strip_prefix("Bearer ") {
                Some(t) if self.token_matches(t.trim()) => Ok(Access::Bearer),
                _ => Err(Refusal::Invalid),
            };
        }
        match cookie(headers, COOKIE) {
            None => Err(Refusal::NoCredential),
            Some(c) if self.session_valid(&c, now_ms) => Ok(Access::Session(c)),
            Some(_) => Err(Refusal::Invalid),
        }
    }
}

/// The value of cookie `name` in the request's `Cookie` headers.
pub(crate) fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all("cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_string())
}

/// True when the browser reached the console over HTTPS: the admin listener itself
/// speaks plain HTTP, so HTTPS means a TLS-terminating proxy in front of it, which says so
/// with `X-Forwarded-Proto: https` (or `Forwarded: proto=https`).
pub(crate) fn served_over_https(headers: &HeaderMap) -> bool {
    let get = |name| headers.get(name).and_then(|v| v.to_str().ok());
    get("x-forwarded-proto").is_some_and(|p| p.trim().eq_ignore_ascii_case("https"))
        || get("forwarded").is_some_and(|f| {
            f.split([';', ','])
                .any(|p| p.trim().eq_ignore_ascii_case("proto=https"))
        })
}

/// The `Set-Cookie` value of a session (`Secure` when served over HTTPS).
pub(crate) fn session_cookie(value: &str, secure: bool) -> String {
    let secure = if secure { "; Secure" } else { "" };
    format!(
        "{COOKIE}={value}; Path=/console; HttpOnly; SameSite=Strict; Max-Age={}{secure}",
        SESSION_MS / 1000
    )
}

/// The `Set-Cookie` value that ends a session.
pub(crate) fn cleared_cookie(secure: bool) -> String {
    let secure = if secure { "; Secure" } else { "" };
    format!("{COOKIE}=; Path=/console; HttpOnly; SameSite=Strict; Max-Age=0{secure}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use warp::http::HeaderValue;

    fn keys() -> Keys {
        Keys::new(Secret::new("a-test-token-of-32-characters-xx"))
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn bearer_and_session_are_checked() {
        let k = keys();
        let now = 1_000_000;
        let ok = headers(&[("authorization", "Bearer a-test-token-of-32-characters-xx")]);
        assert_eq!(k.check(&ok, now), Ok(Access::Bearer));
        let wrong = headers(&[("authorization", "Bearer a-test-token-of-32-characters-xy")]);
        assert_eq!(k.check(&wrong, now), Err(Refusal::Invalid));
        assert_eq!(k.check(&HeaderMap::new(), now), Err(Refusal::NoCredential));

        let s = k.new_session(now);
        let with = headers(&[("cookie", &format!("a=b; {COOKIE}={s}"))]);
        assert_eq!(k.check(&with, now), Ok(Access::Session(s.clone())));
        assert_eq!(
            k.check(&with, now + SESSION_MS + 1),
            Err(Refusal::Invalid),
            "expired"
        );
        let other = Keys::new(Secret::new("another-token-of-32-characters-xx"));
        assert_eq!(
            other.check(&with, now),
            Err(Refusal::Invalid),
            "rotated token"
        );
        let forged = format!(
            "{}.{}",
            now + SESSION_MS * 100,
            &s[s.find('.').unwrap() + 1..]
        );
        assert!(
            !k.session_valid(&forged, now),
            "expiry is covered by the MAC"
        );
    }

    #[test]
    fn csrf_belongs_to_its_session() {
        let k = keys();
        let (a, b) = (k.new_session(1), k.new_session(2));
        assert!(k.csrf_valid(&a, &k.csrf_for(&a)));
        assert!(!k.csrf_valid(&a, &k.csrf_for(&b)));
        assert!(!k.csrf_valid(&a, ""));
    }

    #[test]
    fn cookie_is_secure_only_behind_https() {
        assert!(served_over_https(&headers(&[(
            "x-forwarded-proto",
            "https"
        )])));
        assert!(served_over_https(&headers(&[(
            "forwarded",
            "for=1.2.3.4;proto=https"
        )])));
        assert!(!served_over_https(&headers(&[(
            "x-forwarded-proto",
            "http"
        )])));
        assert!(session_cookie("v", true).ends_with("; Secure"));
        assert!(!session_cookie("v", false).contains("Secure"));
        assert!(session_cookie("v", false).contains("HttpOnly; SameSite=Strict"));
    }
}
