//! Webhook authentication (docs/connecting.md#authentication-required): a static secret
//! header (EventBridge "API key" connections, Data Action custom headers), HTTP Basic
//! (EventBridge "Basic" connections, Data Action Basic Auth credentials), or an HMAC-SHA256
//! signature `t=<unix seconds>,v1=<hex>` over `"<t>.<body>"` within a replay window. Any
//! configured method accepts a request. Comparisons are constant-time; no secret, password
//! or computed MAC is ever logged.

use crate::config::Secret;
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// How far a signature's timestamp may be from now.
pub const REPLAY_WINDOW_SECS: i64 = 300;

/// Why a request was not authenticated; all are answered 401.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AuthError {
    #[error("missing credentials")]
    Missing,
    #[error("wrong secret")]
    WrongSecret,
    #[error("malformed signature header")]
    MalformedSignature,
    #[error("signature timestamp outside the replay window")]
    Stale,
    #[error("wrong signature")]
    WrongSignature,
    #[error("malformed Basic credentials")]
    MalformedBasic,
    #[error("wrong user or password")]
    WrongBasic,
}

/// HTTP Basic credentials the ingress accepts (RFC 7617).
#[derive(Debug, Clone)]
pub struct BasicAuth {
    user: Secret,
    password: Secret,
}

impl BasicAuth {
    pub(crate) fn new(user: Secret, password: Secret) -> Self {
        BasicAuth { user, password }
    }

    /// Checks an `Authorization` header value; `None` when it is not a Basic credential
    /// (another scheme is not this method's to judge).
    pub(crate) fn verify(&self, authorization: &[u8]) -> Option<Result<(), AuthError>> {
        let text = std::str::from_utf8(authorization).ok()?;
        let (scheme, encoded) = text.trim().split_once(' ')?;
        if !scheme.eq_ignore_ascii_case("basic") {
            return None;
        }
        let Ok(decoded) = base64::engine::general_purpose::STANDARD.decode(encoded.trim()) else {
            return Some(Err(AuthError::MalformedBasic));
        };
        let Some(colon) = decoded.iter().position(|b| *b == b':') else {
            return Some(Err(AuthError::MalformedBasic));
        };
        let (user, password) = (&decoded[..colon], &decoded[colon + 1..]);
        // Both compared, always, so the time does not tell which one was wrong.
        let user_ok = ct_equal(user, self.user.expose().as_bytes());
        let password_ok = ct_equal(password, self.password.expose().as_bytes());
        Some(if user_ok & password_ok {
            Ok(())
        } else {
            Err(AuthError::WrongBasic)
        })
    }
}

/// Equal in constant time, also in the length (both sides are hashed first).
fn ct_equal(a: &[u8], b: &[u8]) -> bool {
    bool::from(Sha256::digest(a).ct_eq(&Sha256::digest(b)))
}

/// What a request presented.
#[derive(Debug, Default, Clone, Copy)]
pub struct Presented<'a> {
    /// The value of the static secret header.
    pub(crate) static_header: Option<&'a [u8]>,
    /// The `X-Relay-Signature` value.
    pub(crate) signature: Option<&'a str>,
    /// The `Authorization` value.
    pub(crate) authorization: Option<&'a [u8]>,
}

/// Every credential the ingress is configured with; at least one, unless authentication
/// was explicitly turned off (`RELAY_WEBHOOK_AUTH=none`, then there is no `IngressAuth`).
#[derive(Debug, Clone)]
pub struct IngressAuth {
    pub(crate) secret: Option<WebhookAuth>,
    pub(crate) basic: Option<BasicAuth>,
}

impl IngressAuth {
    /// Accepts when any presented credential of a configured method is right; else the
    /// first failure, or `Missing` when nothing usable was presented.
    pub(crate) fn verify(
        &self,
        given: Presented<'_>,
        body: &[u8],
        now_secs: i64,
    ) -> Result<(), AuthError> {
        let mut first_error = None;
        if let (Some(secret), true) = (
            &self.secret,
            given.static_header.is_some() || given.signature.is_some(),
        ) {
            match secret.verify(given.static_header, given.signature, body, now_secs) {
                Ok(()) => return Ok(()),
                Err(e) => first_error = Some(e),
            }
            // A wrong static header does not hide a right signature sent beside it.
            if given.static_header.is_some()
                && given.signature.is_some()
                && secret.verify(None, given.signature, body, now_secs).is_ok()
            {
                return Ok(());
            }
        }
        if let (Some(basic), Some(header)) = (&self.basic, given.authorization) {
            match basic.verify(header) {
                Some(Ok(())) => return Ok(()),
                Some(Err(e)) => {
                    first_error.get_or_insert(e);
                }
                None => {}
            }
        }
        Err(first_error.unwrap_or(AuthError::Missing))
    }
}

/// The configured credential check.
#[derive(Debug, Clone)]
pub struct WebhookAuth {
    secret: Secret,
}

impl WebhookAuth {
    pub fn new(secret: Secret) -> Self {
        WebhookAuth { secret }
    }

    /// Checks the static header value or, when absent, the signature header.
    pub fn verify(
        &self,
        static_header: Option<&[u8]>,
        signature_header: Option<&str>,
        body: &[u8],
        now_secs: i64,
    ) -> Result<(), AuthError> {
        if let Some(given) = static_header {
            return if ct_equal(given, self.secret.expose().as_bytes()) {
                Ok(())
            } else {
                Err(AuthError::WrongSecret)
            };
        }
        let header = signature_header.ok_or(AuthError::Missing)?;
        let (t, sig) = parse_signature(header)?;
        // abs_diff: `now - t` overflows for a timestamp far in the past (t=-9223372036854775808).
        if now_secs.abs_diff(t) > REPLAY_WINDOW_SECS.unsigned_abs() {
            return Err(AuthError::Stale);
        }
        let mut mac = self.mac();
        mac.update(t.to_string().as_bytes());
        mac.update(b".");
        mac.update(body);
        mac.verify_slice(&sig)
            .map_err(|_| AuthError::WrongSignature)
    }

    /// The `X-Relay-Signature` value for `body` at `t` (for senders and tests).
    pub fn sign(&self, body: &[u8], t: i64) -> String {
        let mut mac = self.mac();
        mac.update(format!("{t}.").as_bytes());
        mac.update(body);
        format!("t={t},v1={}", hex::encode(mac.finalize().into_bytes()))
    }

    fn mac(&self) -> Hmac<Sha256> {
        Hmac::<Sha256>::new_from_slice(self.secret.expose().as_bytes())
            .expect("HMAC takes any key length")
    }
}

fn parse_signature(header: &str) -> Result<(i64, Vec<u8>), AuthError> {
    let mut t = None;
    let mut v1 = None;
    for part in header.split(',') {
        match part.trim().split_once('=') {
            Some(("t", v)) => t = v.parse::<i64>().ok(),
            Some(("v1", v)) => v1 = hex::decode(v).ok(),
            _ => {}
        }
    }
    match (t, v1) {
        (Some(t), Some(sig)) if sig.len() == 32 => Ok((t, sig)),
        _ => Err(AuthError::MalformedSignature),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn auth() -> WebhookAuth {
        WebhookAuth::new(Secret::new("s3cret"))
    }

    #[test]
    fn static_secret() {
        assert_eq!(auth().verify(Some(b"s3cret"), None, b"{}", 0), Ok(()));
        assert_eq!(
            auth().verify(Some(b"s3cre"), None, b"{}", 0),
            Err(AuthError::WrongSecret)
        );
        assert_eq!(auth().verify(None, None, b"{}", 0), Err(AuthError::Missing));
    }

    #[test]
    fn signature_round_trip_window_and_tampering() {
        let a = auth();
        let sig = a.sign(b"{\"x\":1}", 1000);
        assert_eq!(a.verify(None, Some(&sig), b"{\"x\":1}", 1100), Ok(()));
        assert_eq!(
            a.verify(None, Some(&sig), b"{\"x\":2}", 1100),
            Err(AuthError::WrongSignature)
        );
        assert_eq!(
            a.verify(None, Some(&sig), b"{\"x\":1}", 1000 + 301),
            Err(AuthError::Stale)
        );
        assert_eq!(
            a.verify(None, Some("t=1000,v1=abcd"), b"{}", 1000),
            Err(AuthError::MalformedSignature)
        );
        assert_eq!(
            a.verify(None, Some("garbage"), b"{}", 1000),
            Err(AuthError::MalformedSignature)
        );
        let other = WebhookAuth::new(Secret::new("other")).sign(b"{}", 1000);
        assert_eq!(
            a.verify(None, Some(&other), b"{}", 1000),
            Err(AuthError::WrongSignature)
        );
    }

    fn basic_header(user: &str, password: &str) -> Vec<u8> {
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
        )
        .into_bytes()
    }

    #[test]
    fn basic_credentials() {
        let b = BasicAuth::new(Secret::new("relay"), Secret::new("p:w d"));
        assert_eq!(b.verify(&basic_header("relay", "p:w d")), Some(Ok(())));
        assert_eq!(
            b.verify(b"bAsIc cmVsYXk6cDp3IGQ="),
            Some(Ok(())),
            "scheme is case-insensitive"
        );
        assert_eq!(
            b.verify(&basic_header("relay", "p:w")),
            Some(Err(AuthError::WrongBasic))
        );
        assert_eq!(
            b.verify(&basic_header("other", "p:w d")),
            Some(Err(AuthError::WrongBasic))
        );
        assert_eq!(b.verify(b"Basic !!!"), Some(Err(AuthError::MalformedBasic)));
        assert_eq!(
            b.verify(b"Basic bm9jb2xvbg=="),
            Some(Err(AuthError::MalformedBasic))
        );
        assert_eq!(b.verify(b"Bearer abc"), None);
        assert_eq!(b.verify(&[0xff, 0xfe]), None);
    }

    #[test]
    fn any_configured_method_accepts() {
        let both = IngressAuth {
            secret: Some(auth()),
            basic: Some(BasicAuth::new(Secret::new("u"), Secret::new("p"))),
        };
        let basic = basic_header("u", "p");
        let wrong_basic = basic_header("u", "x");
        let given = |s: Option<&'static [u8]>, a: Option<&[u8]>| -> Presented<'static> {
            Presented {
                static_header: s,
                signature: None,
                authorization: a.map(|a| &*Vec::leak(a.to_vec())),
            }
        };
        assert_eq!(both.verify(given(Some(b"s3cret"), None), b"{}", 0), Ok(()));
        assert_eq!(both.verify(given(None, Some(&basic)), b"{}", 0), Ok(()));
        assert_eq!(
            both.verify(given(Some(b"nope"), Some(&basic)), b"{}", 0),
            Ok(()),
            "a right Basic credential beside a wrong header"
        );
        assert_eq!(
            both.verify(given(None, Some(&wrong_basic)), b"{}", 0),
            Err(AuthError::WrongBasic)
        );
        assert_eq!(
            both.verify(given(None, Some(b"Bearer t")), b"{}", 0),
            Err(AuthError::Missing)
        );
        let secret_only = IngressAuth {
            secret: Some(auth()),
            basic: None,
        };
        assert_eq!(
            secret_only.verify(given(None, Some(&basic)), b"{}", 0),
            Err(AuthError::Missing),
            "Basic is not accepted when it is not configured"
        );
        let sig = auth().sign(b"{}", 100);
        let signed = Presented {
            static_header: Some(b"wrong"),
            signature: Some(&sig),
            authorization: None,
        };
        assert_eq!(secret_only.verify(signed, b"{}", 100), Ok(()));
    }
}
