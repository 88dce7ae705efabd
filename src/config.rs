//! Relay configuration: environment variables (`RELAY_*`), optionally layered over a TOML
//! file given with `--config`. The environment wins over the file.
//!
//! Each component asks for what it needs (`Config::genesys`, `Config::cms_url`), so a
//! missing required setting stops start-up with one line naming the variable.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

/// Why the configuration could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("missing required setting {0}")]
    Missing(&'static str),
    #[error("invalid value for {name}: {reason}")]
    Invalid { name: String, reason: String },
    #[error("cannot read config file {path}: {reason}")]
    File { path: String, reason: String },
}

/// A value that must never reach a log line or a metric label.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }
    /// The secret itself; call only where it is sent or compared.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// How logs are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Human,
    Json,
}

/// Credentials and endpoints of the Genesys Cloud Platform API.
#[derive(Debug, Clone)]
pub struct GenesysConfig {
    /// e.g. `https://api.mypurecloud.com`, or the simulator.
    pub api_base: String,
    /// e.g. `https://login.mypurecloud.com`, or the simulator.
    pub login_base: String,
    pub client_id: String,
    pub client_secret: Secret,
}

/// The whole configuration of one relay process.
#[derive(Debug, Clone)]
pub struct Config {
    pub kafka_brokers: String,
    /// Every other `RELAY_KAFKA_*` variable, as rdkafka property names.
    pub kafka_passthrough: BTreeMap<String, String>,
    pub topic_prefix: String,
    pub consumer_group: String,
    pub create_topics: bool,
    pub topic_partitions: i32,
    pub topic_replication: i32,
    /// `min.insync.replicas` of topics the relay creates; `None` keeps the broker's default.
    pub topic_min_insync_replicas: Option<i32>,
    pub http_addr: SocketAddr,
    pub admin_addr: SocketAddr,
    pub webhook_secret: Option<Secret>,
    pub webhook_secret_header: String,
    pub max_body_bytes: usize,
    pub produce_timeout: Duration,
    genesys_api_base: String,
    genesys_login_base: String,
    genesys_client_id: Option<String>,
    genesys_client_secret: Option<Secret>,
    cms_url: Option<String>,
    pub cms_api_key: Option<Secret>,
    pub forward_url: Option<String>,
    pub retry_delays: Vec<Duration>,
    pub max_in_flight: usize,
    pub schema_registry_url: Option<String>,
    /// Genesys attribute name -> CMS field name.
    pub attribute_map: Vec<(String, String)>,
    pub http_timeout: Duration,
    pub idempotency_capacity: u64,
    pub idempotency_ttl: Duration,
    /// Retention of the idempotency topic when the relay creates it; `None` = compact only.
    pub idempotency_retention: Option<Duration>,
    pub shutdown_timeout: Duration,
    pub log_format: LogFormat,
    /// `RELAY_LISTEN_*`: the Notifications API source.
    pub listen: crate::listen::ListenSettings,
}

/// Settings that are `RELAY_KAFKA_*` but are not rdkafka passthrough.
const KAFKA_OWN_KEYS: &[&str] = &["RELAY_KAFKA_BROKERS"];

/// The attributes the replaced guest-sync service mapped.
pub const DEFAULT_ATTRIBUTE_MAP: &str = "cart_value,last_page,session_id,loyalty_tier";

impl Config {
    /// Reads the process environment, over the TOML file when one is given.
    pub fn load(file: Option<&Path>) -> Result<Self, ConfigError> {
        let mut vars = match file {
            Some(path) => read_toml(path)?,
            None => HashMap::new(),
        };
        vars.extend(std::env::vars().filter(|(k, _)| k.starts_with("RELAY_")));
        Self::from_vars(&vars)
    }

    /// Builds the configuration from `RELAY_*` variables; missing optional ones take defaults.
    pub fn from_vars(vars: &HashMap<String, String>) -> Result<Self, ConfigError> {
        let get = |name: &str| {
            vars.get(name)
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty())
        };
        let kafka_passthrough = vars
            .iter()
            .filter(|(k, _)| k.starts_with("RELAY_KAFKA_") && !KAFKA_OWN_KEYS.contains(&k.as_str()))
            .map(|(k, v)| {
                let prop = k["RELAY_KAFKA_".len()..].to_lowercase().replace('_', ".");
                (prop, v.clone())
            })
            .collect();
        let retry_delays = parse_delays(
            "RELAY_RETRY_DELAYS",
            &get("RELAY_RETRY_DELAYS").unwrap_or_else(|| "5s,60s,600s".into()),
        )?;
        let attribute_map = parse_attribute_map(
            &get("RELAY_ATTRIBUTE_MAP").unwrap_or_else(|| DEFAULT_ATTRIBUTE_MAP.into()),
        )?;
        let log_format = match get("RELAY_LOG_FORMAT").as_deref() {
            None | Some("human") | Some("text") => LogFormat::Human,
            Some("json") => LogFormat::Json,
            Some(other) => {
                return Err(invalid(
                    "RELAY_LOG_FORMAT",
                    format!("{other:?} is not human or json"),
                ))
            }
        };
        let config = Config {
            kafka_brokers: get("RELAY_KAFKA_BROKERS").unwrap_or_else(|| "localhost:9092".into()),
            kafka_passthrough,
            topic_prefix: get("RELAY_TOPIC_PREFIX").unwrap_or_else(|| "genesys".into()),
            consumer_group: get("RELAY_CONSUMER_GROUP").unwrap_or_else(|| "genesys-relay".into()),
            create_topics: parse_or(vars, "RELAY_CREATE_TOPICS", true)?,
            topic_partitions: parse_or(vars, "RELAY_TOPIC_PARTITIONS", 6)?,
            topic_replication: parse_or(vars, "RELAY_TOPIC_REPLICATION", 1)?,
            topic_min_insync_replicas: match get("RELAY_TOPIC_MIN_INSYNC_REPLICAS") {
                None => None,
                Some(v) => Some(
                    v.parse::<i32>()
                        .map_err(|e| invalid("RELAY_TOPIC_MIN_INSYNC_REPLICAS", e.to_string()))?,
                ),
            },
            http_addr: parse_or(vars, "RELAY_HTTP_ADDR", "0.0.0.0:8080".parse().unwrap())?,
            admin_addr: parse_or(vars, "RELAY_ADMIN_ADDR", "0.0.0.0:9464".parse().unwrap())?,
            webhook_secret: get("RELAY_WEBHOOK_SECRET").map(Secret::new),
            webhook_secret_header: get("RELAY_WEBHOOK_SECRET_HEADER")
                .unwrap_or_else(|| "X-Relay-Secret".into()),
            max_body_bytes: parse_or(vars, "RELAY_MAX_BODY_BYTES", 1024 * 1024)?,
            produce_timeout: duration_or(vars, "RELAY_PRODUCE_TIMEOUT", Duration::from_secs(5))?,
            genesys_api_base: get("RELAY_GENESYS_API_BASE")
                .unwrap_or_else(|| "https://api.mypurecloud.com".into()),
            genesys_login_base: get("RELAY_GENESYS_LOGIN_BASE")
                .unwrap_or_else(|| "https://login.mypurecloud.com".into()),
            genesys_client_id: get("RELAY_GENESYS_CLIENT_ID"),
            genesys_client_secret: get("RELAY_GENESYS_CLIENT_SECRET").map(Secret::new),
            cms_url: get("RELAY_CMS_URL"),
            cms_api_key: get("RELAY_CMS_API_KEY").map(Secret::new),
            forward_url: get("RELAY_FORWARD_URL"),
            retry_delays,
            max_in_flight: parse_or(vars, "RELAY_MAX_IN_FLIGHT", 256usize)?.max(1),
            schema_registry_url: get("RELAY_SCHEMA_REGISTRY_URL"),
            attribute_map,
            http_timeout: duration_or(vars, "RELAY_HTTP_TIMEOUT", Duration::from_secs(10))?,
            idempotency_capacity: parse_or(vars, "RELAY_IDEMPOTENCY_CAPACITY", 1_000_000u64)?,
            idempotency_ttl: duration_or(
                vars,
                "RELAY_IDEMPOTENCY_TTL",
                Duration::from_secs(7 * 24 * 3600),
            )?,
            idempotency_retention: match get("RELAY_IDEMPOTENCY_RETENTION") {
                None => None,
                Some(v) => Some(
                    humantime::parse_duration(&v)
                        .map_err(|e| invalid("RELAY_IDEMPOTENCY_RETENTION", e.to_string()))?,
                ),
            },
            shutdown_timeout: duration_or(vars, "RELAY_SHUTDOWN_TIMEOUT", Duration::from_secs(30))?,
            log_format,
            listen: crate::listen::ListenSettings::from_vars(vars)?,
        };
        // A topic whose min.insync.replicas exceeds its replication factor rejects every
        // acks=all write; say so at start-up instead.
        if let Some(min_isr) = config.topic_min_insync_replicas {
            if min_isr < 1 || min_isr > config.topic_replication {
                return Err(invalid(
                    "RELAY_TOPIC_MIN_INSYNC_REPLICAS",
                    format!(
                        "{min_isr} is not between 1 and RELAY_TOPIC_REPLICATION ({})",
                        config.topic_replication
                    ),
                ));
            }
        }
        Ok(config)
    }

    /// Genesys Cloud credentials; required by the worker and by webhook registration.
    pub fn genesys(&self) -> Result<GenesysConfig, ConfigError> {
        Ok(GenesysConfig {
            api_base: self.genesys_api_base.trim_end_matches('/').to_string(),
            login_base: self.genesys_login_base.trim_end_matches('/').to_string(),
            client_id: self
                .genesys_client_id
                .clone()
                .ok_or(ConfigError::Missing("RELAY_GENESYS_CLIENT_ID"))?,
            client_secret: self
                .genesys_client_secret
                .clone()
                .ok_or(ConfigError::Missing("RELAY_GENESYS_CLIENT_SECRET"))?,
        })
    }

    /// The CMS entries collection URL; required by the worker's guest sync.
    pub fn cms_url(&self) -> Result<String, ConfigError> {
        self.cms_url
            .as_ref()
            .map(|u| u.trim_end_matches('/').to_string())
            .ok_or(ConfigError::Missing("RELAY_CMS_URL"))
    }
}

fn invalid(name: &str, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        name: name.into(),
        reason: reason.into(),
    }
}

pub(crate) fn parse_or<T>(
    vars: &HashMap<String, String>,
    name: &str,
    default: T,
) -> Result<T, ConfigError>
where
    T: std::str::FromStr,
    T::Err: fmt::Display,
{
    match vars.get(name).map(|v| v.trim()).filter(|v| !v.is_empty()) {
        None => Ok(default),
        Some(v) => v.parse().map_err(|e: T::Err| invalid(name, e.to_string())),
    }
}

pub(crate) fn duration_or(
    vars: &HashMap<String, String>,
    name: &str,
    default: Duration,
) -> Result<Duration, ConfigError> {
    match vars.get(name).map(|v| v.trim()).filter(|v| !v.is_empty()) {
        None => Ok(default),
        Some(v) => humantime::parse_duration(v).map_err(|e| invalid(name, e.to_string())),
    }
}

/// Parses `5s,60s,600s` into retry tier delays.
pub fn parse_delays(name: &str, value: &str) -> Result<Vec<Duration>, ConfigError> {
    let delays = value
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| humantime::parse_duration(s).map_err(|e| invalid(name, format!("{s:?}: {e}"))))
        .collect::<Result<Vec<_>, _>>()?;
    if delays.is_empty() {
        return Err(invalid(name, "at least one delay is needed"));
    }
    Ok(delays)
}

/// Parses `cart_value,last_page=lastPage`: a bare name maps to the same CMS field.
fn parse_attribute_map(value: &str) -> Result<Vec<(String, String)>, ConfigError> {
    value
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|pair| match pair.split_once('=') {
            Some((from, to)) if !from.trim().is_empty() && !to.trim().is_empty() => {
                Ok((from.trim().to_string(), to.trim().to_string()))
            }
            Some(_) => Err(invalid(
                "RELAY_ATTRIBUTE_MAP",
                format!("{pair:?} is not name=field"),
            )),
            None => Ok((pair.to_string(), pair.to_string())),
        })
        .collect()
}

/// Flattens a TOML file into `RELAY_*` variables: `kafka_brokers = "..."` and
/// `RELAY_KAFKA_BROKERS = "..."` mean the same.
fn read_toml(path: &Path) -> Result<HashMap<String, String>, ConfigError> {
    let file_err = |reason: String| ConfigError::File {
        path: path.display().to_string(),
        reason,
    };
    let text = std::fs::read_to_string(path).map_err(|e| file_err(e.to_string()))?;
    let table: toml::Table = text
        .parse()
        .map_err(|e: toml::de::Error| file_err(e.to_string()))?;
    table
        .into_iter()
        .map(|(key, value)| {
            let upper = key.to_uppercase();
            let name = if upper.starts_with("RELAY_") {
                upper
            } else {
                format!("RELAY_{upper}")
            };
            let value = match value {
                toml::Value::String(s) => s,
                toml::Value::Integer(i) => i.to_string(),
                toml::Value::Float(f) => f.to_string(),
                toml::Value::Boolean(b) => b.to_string(),
                other => return Err(file_err(format!("{key}: {other} is not a plain value"))),
            };
            Ok((name, value))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn defaults_follow_the_design() {
        let c = Config::from_vars(&HashMap::new()).unwrap();
        assert_eq!(c.kafka_brokers, "localhost:9092");
        assert_eq!(c.topic_prefix, "genesys");
        assert_eq!(c.max_body_bytes, 1024 * 1024);
        assert_eq!(c.max_in_flight, 256);
        assert_eq!(
            c.retry_delays,
            vec![
                Duration::from_secs(5),
                Duration::from_secs(60),
                Duration::from_secs(600)
            ]
        );
        assert_eq!(c.attribute_map.len(), 4);
    }

    #[test]
    fn min_insync_replicas_is_checked_against_replication() {
        let c = Config::from_vars(&HashMap::new()).unwrap();
        assert_eq!(c.topic_min_insync_replicas, None);
        let ok = vars(&[
            ("RELAY_TOPIC_REPLICATION", "3"),
            ("RELAY_TOPIC_MIN_INSYNC_REPLICAS", "2"),
        ]);
        assert_eq!(
            Config::from_vars(&ok).unwrap().topic_min_insync_replicas,
            Some(2)
        );
        for bad in ["4", "0", "two"] {
            let v = vars(&[
                ("RELAY_TOPIC_REPLICATION", "3"),
                ("RELAY_TOPIC_MIN_INSYNC_REPLICAS", bad),
            ]);
            let err = Config::from_vars(&v).unwrap_err().to_string();
            assert!(err.contains("RELAY_TOPIC_MIN_INSYNC_REPLICAS"), "{err}");
        }
    }

    #[test]
    fn kafka_passthrough_lowercases_and_dots() {
        let c = Config::from_vars(&vars(&[
            ("RELAY_KAFKA_SECURITY_PROTOCOL", "SASL_SSL"),
            ("RELAY_KAFKA_SESSION_TIMEOUT_MS", "6000"),
            ("RELAY_KAFKA_BROKERS", "b:9092"),
        ]))
        .unwrap();
        assert_eq!(
            c.kafka_passthrough.get("security.protocol").unwrap(),
            "SASL_SSL"
        );
        assert_eq!(
            c.kafka_passthrough.get("session.timeout.ms").unwrap(),
            "6000"
        );
        assert!(!c.kafka_passthrough.contains_key("brokers"));
    }

    #[test]
    fn missing_required_setting_is_named() {
        let c = Config::from_vars(&vars(&[("RELAY_GENESYS_CLIENT_ID", "id")])).unwrap();
        let err = c.genesys().unwrap_err().to_string();
        assert_eq!(err, "missing required setting RELAY_GENESYS_CLIENT_SECRET");
        assert_eq!(
            c.cms_url().unwrap_err().to_string(),
            "missing required setting RELAY_CMS_URL"
        );
    }

    #[test]
    fn secrets_do_not_print() {
        let c = Config::from_vars(&vars(&[("RELAY_WEBHOOK_SECRET", "hunter2")])).unwrap();
        assert!(!format!("{c:?}").contains("hunter2"));
    }

    #[test]
    fn bad_values_are_rejected_with_the_name() {
        let err = Config::from_vars(&vars(&[("RELAY_RETRY_DELAYS", "5s,soon")])).unwrap_err();
        assert!(err.to_string().contains("RELAY_RETRY_DELAYS"));
        let err = Config::from_vars(&vars(&[("RELAY_MAX_IN_FLIGHT", "many")])).unwrap_err();
        assert!(err.to_string().contains("RELAY_MAX_IN_FLIGHT"));
    }

    #[test]
    fn attribute_map_allows_renames() {
        let c = Config::from_vars(&vars(&[(
            "RELAY_ATTRIBUTE_MAP",
            "cart_value=cartValue, tier",
        )]))
        .unwrap();
        assert_eq!(
            c.attribute_map,
            vec![
                ("cart_value".into(), "cartValue".into()),
                ("tier".into(), "tier".into())
            ]
        );
    }
}
