//! Webhook authentication (DESIGN section 5): a static secret header, or an HMAC-SHA256
//! signature `t=<unix seconds>,v1=<hex>` over `"<t>.<body>"` within a replay window.
//! Comparisons are constant-time; neither the secret nor a computed MAC is ever logged.

use crate::config::Secret;
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
            // Hashing both sides first keeps the comparison constant-time in the length too.
            let a = Sha256::digest(given);
            let b = Sha256::digest(self.secret.expose().as_bytes());
            return if bool::from(a.ct_eq(&b)) {
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
}
