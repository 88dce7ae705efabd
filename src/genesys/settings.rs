//! The Genesys Cloud slice of the settings: region (or simulator bases), OAuth client
//! credentials, the request budget and the conversation cache.
//!
//! Invariant: the credentials are optional when read (the ingress needs none) and
//! required by [`GenesysSettings::config`], which the parts that call Genesys use at start-up,
//! so a missing one stops start-up naming the variable.

use std::time::Duration;

use crate::config::{invalid, parse_url, ConfigError, Secret, Vars};

/// Credentials, endpoints and request budget of the Genesys Cloud Platform API, complete.
#[derive(Debug, Clone)]
pub struct GenesysConfig {
    /// `https://api.<region>`, or `RELAY_GENESYS_API_BASE` (the simulator).
    pub api_base: String,
    /// `https://login.<region>`, or `RELAY_GENESYS_LOGIN_BASE` (the simulator).
    pub login_base: String,
    /// `RELAY_GENESYS_CLIENT_ID`: the OAuth client-credentials client.
    pub client_id: String,
    /// `RELAY_GENESYS_CLIENT_SECRET`.
    pub client_secret: Secret,
    /// `RELAY_GENESYS_RATE_LIMIT`: requests per minute this process may spend.
    pub rate_limit_per_minute: u32,
    /// `RELAY_GENESYS_BUDGET_MAX_WAIT`: the longest wait for a budget slot inside a worker
    /// lane; a later slot turns the event into a retry record due at that slot.
    pub budget_max_wait: Duration,
    /// `RELAY_GENESYS_CACHE_TTL`: how long a fetched conversation is reused (0 = off).
    pub cache_ttl: Duration,
}

/// The `RELAY_GENESYS_*` settings as read; [`GenesysSettings::config`] requires the
/// credentials.
#[derive(Debug, Clone)]
pub struct GenesysSettings {
    api_base: String,
    login_base: String,
    client_id: Option<String>,
    client_secret: Option<Secret>,
    rate_limit_per_minute: u32,
    budget_max_wait: Duration,
    cache_ttl: Duration,
}

impl GenesysSettings {
    pub fn read(v: &Vars) -> Result<Self, ConfigError> {
        let region = v.get_or_default("RELAY_GENESYS_REGION");
        if region.contains('/') || region.contains(':') || region.starts_with('.') {
            return Err(invalid(
                "RELAY_GENESYS_REGION",
                format!("{region:?} is not a region domain such as mypurecloud.de"),
            ));
        }
        let base = |name: &str, host: &str| -> Result<String, ConfigError> {
            let base = match v.get(name) {
                Some(set) => {
                    parse_url(name, &set)?;
                    set
                }
                None => format!("https://{host}.{region}"),
            };
            Ok(base.trim_end_matches('/').to_string())
        };
        Ok(GenesysSettings {
            api_base: base("RELAY_GENESYS_API_BASE", "api")?,
            login_base: base("RELAY_GENESYS_LOGIN_BASE", "login")?,
            client_id: v.get("RELAY_GENESYS_CLIENT_ID"),
            client_secret: v.secret("RELAY_GENESYS_CLIENT_SECRET"),
            rate_limit_per_minute: match v.parse("RELAY_GENESYS_RATE_LIMIT")? {
                0 => return Err(invalid("RELAY_GENESYS_RATE_LIMIT", "must be at least 1")),
                n => n,
            },
            budget_max_wait: v.duration("RELAY_GENESYS_BUDGET_MAX_WAIT")?,
            cache_ttl: v.duration("RELAY_GENESYS_CACHE_TTL")?,
        })
    }

    /// The complete configuration; the credentials are required here.
    pub fn config(&self) -> Result<GenesysConfig, ConfigError> {
        Ok(GenesysConfig {
            api_base: self.api_base.clone(),
            login_base: self.login_base.clone(),
            client_id: self
                .client_id
                .clone()
                .ok_or(ConfigError::Missing("RELAY_GENESYS_CLIENT_ID"))?,
            client_secret: self
                .client_secret
                .clone()
                .ok_or(ConfigError::Missing("RELAY_GENESYS_CLIENT_SECRET"))?,
            rate_limit_per_minute: self.rate_limit_per_minute,
            budget_max_wait: self.budget_max_wait,
            cache_ttl: self.cache_ttl,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(pairs: &[(&str, &str)]) -> Result<GenesysSettings, ConfigError> {
        GenesysSettings::read(&Vars::from_pairs(pairs))
    }

    #[test]
    fn missing_credentials_are_named() {
        let g = read(&[("RELAY_GENESYS_CLIENT_ID", "id")]).unwrap();
        let err = g.config().unwrap_err().to_string();
        assert_eq!(err, "missing required setting RELAY_GENESYS_CLIENT_SECRET");
    }

    #[test]
    fn region_sets_both_hosts_and_bases_override() {
        let with = |pairs: &[(&str, &str)]| {
            let creds = [
                ("RELAY_GENESYS_CLIENT_ID", "i"),
                ("RELAY_GENESYS_CLIENT_SECRET", "s"),
            ];
            let g = read(&[pairs, &creds[..]].concat())
                .unwrap()
                .config()
                .unwrap();
            (g.api_base, g.login_base)
        };
        assert_eq!(
            with(&[]),
            (
                "https://api.mypurecloud.com".into(),
                "https://login.mypurecloud.com".into()
            )
        );
        assert_eq!(
            with(&[("RELAY_GENESYS_REGION", "mypurecloud.de")]),
            (
                "https://api.mypurecloud.de".into(),
                "https://login.mypurecloud.de".into()
            )
        );
        assert_eq!(
            with(&[
                ("RELAY_GENESYS_REGION", "usw2.pure.cloud"),
                ("RELAY_GENESYS_API_BASE", "http://sim:1/"),
            ]),
            (
                "http://sim:1".into(),
                "https://login.usw2.pure.cloud".into()
            )
        );
        assert!(read(&[("RELAY_GENESYS_REGION", "https://x")]).is_err());
        let err = read(&[("RELAY_GENESYS_LOGIN_BASE", "sim:1")]).unwrap_err();
        assert!(
            err.to_string().contains("RELAY_GENESYS_LOGIN_BASE"),
            "{err}"
        );
        assert!(read(&[("RELAY_GENESYS_RATE_LIMIT", "0")]).is_err());
    }
}
