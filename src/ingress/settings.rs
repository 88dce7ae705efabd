//! The ingress slice of the settings: listener address, webhook credentials, TLS files and
//! the body limit.
//!
//! Invariant: a credential is required unless `RELAY_WEBHOOK_AUTH=none` was set on purpose,
//! and `none` never switches off a configured credential; half a pair (Basic user without
//! password, certificate without key) stops start-up naming the missing setting.

use std::net::SocketAddr;
use std::path::PathBuf;

use super::{BasicAuth, IngressAuth, WebhookAuth};
use crate::config::{ConfigError, Secret, Vars};

/// What the ingress is configured with.
#[derive(Debug, Clone)]
pub struct IngressSettings {
    /// `RELAY_HTTP_ADDR`: where the ingress listens.
    pub http_addr: SocketAddr,
    /// `RELAY_WEBHOOK_SECRET`: static header value and HMAC key of `X-Relay-Signature`.
    pub(crate) secret: Option<Secret>,
    /// `RELAY_WEBHOOK_SECRET_HEADER`: the header that carries the static secret.
    pub(crate) secret_header: String,
    /// `RELAY_WEBHOOK_BASIC_USER` and `RELAY_WEBHOOK_BASIC_PASSWORD`, set together.
    pub(crate) basic: Option<(Secret, Secret)>,
    /// `RELAY_WEBHOOK_AUTH=none`: the ingress may run without any credential.
    pub(crate) auth_none: bool,
    /// `RELAY_TLS_CERT` and `RELAY_TLS_KEY`: PEM files for HTTPS, set together.
    pub(crate) tls: Option<(PathBuf, PathBuf)>,
    /// `RELAY_MAX_BODY_BYTES`; unset = the largest body the producer's
    /// `message.max.bytes` can carry (see `body_limit`).
    pub(crate) max_body_bytes: Option<usize>,
    /// `RELAY_INGRESS_*`: the connection cap and deadlines (`server`).
    pub(crate) limits: super::ConnectionLimits,
}

impl IngressSettings {
    pub fn read(v: &Vars) -> Result<Self, ConfigError> {
        let basic = v
            .both_or_neither("RELAY_WEBHOOK_BASIC_USER", "RELAY_WEBHOOK_BASIC_PASSWORD")?
            .map(|(u, p)| (Secret::new(u), Secret::new(p)));
        let tls = v
            .both_or_neither("RELAY_TLS_CERT", "RELAY_TLS_KEY")?
            .map(|(c, k)| (PathBuf::from(c), PathBuf::from(k)));
        Ok(IngressSettings {
            http_addr: v.parse("RELAY_HTTP_ADDR")?,
            secret: v.secret("RELAY_WEBHOOK_SECRET"),
            secret_header: v.get_or_default("RELAY_WEBHOOK_SECRET_HEADER"),
            basic,
            auth_none: v.one_of("RELAY_WEBHOOK_AUTH", &[("required", false), ("none", true)])?,
            tls,
            max_body_bytes: v.parse_opt("RELAY_MAX_BODY_BYTES")?,
            limits: super::ConnectionLimits::read(v)?,
        })
    }

    /// The ingress credentials; with none configured the ingress refuses to start unless
    /// `RELAY_WEBHOOK_AUTH=none` (`Ok(None)`). Configured credentials are always enforced.
    pub fn auth(&self) -> Result<Option<IngressAuth>, ConfigError> {
        let secret = self.secret.clone().map(WebhookAuth::new);
        let basic = self
            .basic
            .clone()
            .map(|(user, password)| BasicAuth::new(user, password));
        match (secret, basic) {
            (None, None) if self.auth_none => Ok(None),
            (None, None) => Err(ConfigError::NoWebhookCredential),
            (secret, basic) => Ok(Some(IngressAuth { secret, basic })),
        }
    }

    /// Reads the settings from `pairs` (tests).
    #[cfg(test)]
    pub(crate) fn from_pairs(pairs: &[(&str, &str)]) -> Result<Self, ConfigError> {
        Self::read(&Vars::from_pairs(pairs))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(pairs: &[(&str, &str)]) -> Result<IngressSettings, ConfigError> {
        IngressSettings::from_pairs(pairs)
    }

    #[test]
    fn secrets_do_not_print() {
        let s = read(&[
            ("RELAY_WEBHOOK_SECRET", "hunter2"),
            ("RELAY_WEBHOOK_BASIC_USER", "basic-user-7"),
            ("RELAY_WEBHOOK_BASIC_PASSWORD", "basic-pass-9"),
        ])
        .unwrap();
        let printed = format!("{s:?} {:?}", s.auth().unwrap());
        for secret in ["hunter2", "basic-user-7", "basic-pass-9"] {
            assert!(!printed.contains(secret), "{secret} in {printed}");
        }
    }

    #[test]
    fn auth_is_required_unless_explicitly_none() {
        let err = read(&[]).unwrap().auth().unwrap_err().to_string();
        assert!(err.contains("RELAY_WEBHOOK_AUTH=none"), "{err}");
        assert!(!err.contains('\n'), "one line: {err}");
        let none = read(&[("RELAY_WEBHOOK_AUTH", "none")]).unwrap();
        assert!(none.auth().unwrap().is_none());
        // `none` never switches off a configured credential.
        let both = read(&[
            ("RELAY_WEBHOOK_AUTH", "none"),
            ("RELAY_WEBHOOK_SECRET", "s"),
        ])
        .unwrap();
        assert!(both.auth().unwrap().is_some());
        let basic = read(&[
            ("RELAY_WEBHOOK_BASIC_USER", "u"),
            ("RELAY_WEBHOOK_BASIC_PASSWORD", "p"),
        ])
        .unwrap();
        let auth = basic.auth().unwrap().unwrap();
        assert!(auth.basic.is_some() && auth.secret.is_none());
        let half = read(&[("RELAY_WEBHOOK_BASIC_USER", "u")]).unwrap_err();
        assert_eq!(
            half.to_string(),
            "missing required setting RELAY_WEBHOOK_BASIC_PASSWORD"
        );
        let typo = read(&[("RELAY_WEBHOOK_AUTH", "off")]).unwrap_err();
        assert!(typo.to_string().contains("RELAY_WEBHOOK_AUTH"));
        let tls = read(&[("RELAY_TLS_CERT", "c.pem")]).unwrap_err();
        assert_eq!(tls.to_string(), "missing required setting RELAY_TLS_KEY");
    }
}
