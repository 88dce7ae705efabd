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
        let region_setting = v.get_or_default("RELAY_GENESYS_REGION");
        // The region matters only where a base is not given (both given: the simulator, or
        // a region newer than this list), but then it must be one Genesys has.
        let region = if v.get("RELAY_GENESYS_API_BASE").is_some()
            && v.get("RELAY_GENESYS_LOGIN_BASE").is_some()
        {
            region_setting
        } else {
            region_domain(&region_setting)?.to_string()
        };
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

/// Genesys Cloud's regions: the SDK's name and the domain its `api.` and `login.` hosts
/// are under. Source: `PureCloudRegionHosts` of the official Python SDK
/// (MyPureCloud/platform-client-sdk-python,
/// `build/PureCloudPlatformClientV2/purecloud_region_hosts.py`), which maps each name to
/// `https://api.<domain>`.
pub(crate) const REGIONS: &[(&str, &str)] = &[
    ("us_east_1", "mypurecloud.com"),
    ("eu_west_1", "mypurecloud.ie"),
    ("ap_southeast_2", "mypurecloud.com.au"),
    ("ap_northeast_1", "mypurecloud.jp"),
    ("eu_central_1", "mypurecloud.de"),
    ("us_west_2", "usw2.pure.cloud"),
    ("ca_central_1", "cac1.pure.cloud"),
    ("ap_northeast_2", "apne2.pure.cloud"),
    ("eu_west_2", "euw2.pure.cloud"),
    ("ap_south_1", "aps1.pure.cloud"),
    ("us_east_2", "use2.us-gov-pure.cloud"),
    ("sa_east_1", "sae1.pure.cloud"),
    ("me_central_1", "mec1.pure.cloud"),
    ("ap_northeast_3", "apne3.pure.cloud"),
    ("eu_central_2", "euc2.pure.cloud"),
    ("mx_central_1", "mxc1.pure.cloud"),
    ("ap_southeast_1", "apse1.pure.cloud"),
];

/// The domain of `RELAY_GENESYS_REGION`: a region domain (`mypurecloud.de`) or the SDK's
/// name for it (`eu_central_1`, also written `eu-central-1`). Anything else fails naming
/// the setting and the closest valid region, instead of failing later at DNS.
pub(crate) fn region_domain(value: &str) -> Result<&'static str, ConfigError> {
    let wanted = value.trim().to_ascii_lowercase();
    let as_name = wanted.replace('-', "_");
    if let Some((_, domain)) = REGIONS
        .iter()
        .find(|(name, domain)| *domain == wanted || *name == as_name)
    {
        return Ok(domain);
    }
    let (name, domain) = REGIONS
        .iter()
        .min_by_key(|(name, domain)| {
            edit_distance(&wanted, domain).min(edit_distance(&as_name, name))
        })
        .expect("the region list is not empty");
    Err(invalid(
        "RELAY_GENESYS_REGION",
        format!(
            "{value:?} is not a Genesys Cloud region; the closest is {domain} ({}). Valid: a \
             region domain or its SDK name: {}",
            name.replace('_', "-"),
            REGIONS
                .iter()
                .map(|(_, d)| *d)
                .collect::<Vec<_>>()
                .join(", ")
        ),
    ))
}

/// Levenshtein distance (for the "closest region" hint).
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let above = row[j + 1];
            row[j + 1] = (above + 1)
                .min(row[j] + 1)
                .min(diagonal + usize::from(ca != *cb));
            diagonal = above;
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(pairs: &[(&str, &str)]) -> Result<GenesysSettings, ConfigError> {
        GenesysSettings::read(&Vars::from_pairs(pairs))
    }

    #[test]
    fn regions_are_the_sdks_and_a_wrong_one_names_the_closest() {
        assert_eq!(region_domain("mypurecloud.de").unwrap(), "mypurecloud.de");
        assert_eq!(region_domain("eu-central-1").unwrap(), "mypurecloud.de");
        assert_eq!(region_domain("us_east_1").unwrap(), "mypurecloud.com");
        assert_eq!(
            region_domain("APSE1.pure.cloud").unwrap(),
            "apse1.pure.cloud"
        );
        for (typo, closest) in [
            ("mypurecloud.co", "mypurecloud.com"),
            ("mypurecloud.eu", "mypurecloud.ie"),
            ("usw1.pure.cloud", "usw2.pure.cloud"),
            ("eu-central-3", "mypurecloud.de"),
            ("us-east-3", "mypurecloud.com"),
        ] {
            let err = read(&[("RELAY_GENESYS_REGION", typo)])
                .unwrap_err()
                .to_string();
            assert!(
                err.contains("RELAY_GENESYS_REGION")
                    && err.contains(typo)
                    && err.contains(&format!("the closest is {closest}")),
                "{err}"
            );
        }
        // Both bases given: the region is not used, so it is not checked (a simulator, or
        // a region newer than the list).
        read(&[
            ("RELAY_GENESYS_REGION", "new1.pure.cloud"),
            ("RELAY_GENESYS_API_BASE", "https://api.new1.pure.cloud"),
            ("RELAY_GENESYS_LOGIN_BASE", "https://login.new1.pure.cloud"),
        ])
        .unwrap();
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
