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

/// Credentials, endpoints and request budget of the Genesys Cloud Platform API.
#[derive(Debug, Clone)]
pub struct GenesysConfig {
    /// `https://api.<region>`, or `RELAY_GENESYS_API_BASE` (the simulator).
    pub api_base: String,
    /// `https://login.<region>`, or `RELAY_GENESYS_LOGIN_BASE` (the simulator).
    pub login_base: String,
    pub client_id: String,
    pub client_secret: Secret,
    /// `RELAY_GENESYS_RATE_LIMIT`: requests per minute this process may spend.
    pub rate_limit_per_minute: u32,
    /// `RELAY_GENESYS_BUDGET_MAX_WAIT`: the longest wait for a budget slot inside a worker
    /// lane; a later slot turns the event into a retry record due at that slot.
    pub budget_max_wait: Duration,
    /// `RELAY_GENESYS_CACHE_TTL`: how long a fetched conversation is reused (0 = off).
    pub cache_ttl: Duration,
}

/// Genesys Cloud region when `RELAY_GENESYS_REGION` is not set.
pub const DEFAULT_GENESYS_REGION: &str = "mypurecloud.com";
/// Requests per minute when `RELAY_GENESYS_RATE_LIMIT` is not set: headroom under the
/// documented default of 300 per client-credentials token.
pub const DEFAULT_GENESYS_RATE_LIMIT: u32 = 240;
/// `RELAY_GENESYS_BUDGET_MAX_WAIT` default.
pub const DEFAULT_GENESYS_BUDGET_MAX_WAIT: Duration = Duration::from_secs(5);
/// `RELAY_GENESYS_CACHE_TTL` default: short, attributes change during a conversation.
pub const DEFAULT_GENESYS_CACHE_TTL: Duration = Duration::from_secs(10);

/// How a Genesys attribute value (a string) becomes a CMS field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttributeType {
    String,
    Number,
    Bool,
}

/// One entry of `RELAY_ATTRIBUTE_MAP`: `name[:type][=field]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttributeMapping {
    /// The Genesys attribute name.
    pub name: String,
    pub kind: AttributeType,
    /// The CMS field name.
    pub field: String,
}

/// Which id names the CMS entry of a guest sync (`RELAY_CMS_ENTRY_KEY`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryKey {
    Conversation,
    Participant,
    ExternalContact,
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
    genesys_rate_limit: u32,
    genesys_budget_max_wait: Duration,
    genesys_cache_ttl: Duration,
    genesys_client_id: Option<String>,
    genesys_client_secret: Option<Secret>,
    cms_url: Option<String>,
    pub cms_api_key: Option<Secret>,
    pub forward_url: Option<String>,
    pub retry_delays: Vec<Duration>,
    pub max_in_flight: usize,
    pub schema_registry_url: Option<String>,
    /// `RELAY_ATTRIBUTE_MAP`: Genesys attribute -> typed CMS field.
    pub attribute_map: Vec<AttributeMapping>,
    /// `RELAY_CMS_ENTRY_KEY`.
    pub cms_entry_key: EntryKey,
    /// `RELAY_ROUTES`: `(pattern, route)` pairs tried before the default table.
    pub routes: Vec<(String, String)>,
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

/// The attributes the replaced guest-sync service mapped (`cart_value` was a number there).
pub const DEFAULT_ATTRIBUTE_MAP: &str = "cart_value:number,last_page,session_id,loyalty_tier";

/// Route names `RELAY_ROUTES` may use.
pub const ROUTE_NAMES: &[&str] = &["guest_sync", "conversation_enrich", "forward", "skip"];

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
        let region = get("RELAY_GENESYS_REGION").unwrap_or_else(|| DEFAULT_GENESYS_REGION.into());
        if region.contains('/') || region.contains(':') || region.starts_with('.') {
            return Err(invalid(
                "RELAY_GENESYS_REGION",
                format!("{region:?} is not a region domain such as mypurecloud.de"),
            ));
        }
        let cms_entry_key = match get("RELAY_CMS_ENTRY_KEY").as_deref() {
            None | Some("conversation") => EntryKey::Conversation,
            Some("participant") => EntryKey::Participant,
            Some("external_contact") => EntryKey::ExternalContact,
            Some(other) => {
                return Err(invalid(
                    "RELAY_CMS_ENTRY_KEY",
                    format!("{other:?} is not conversation, participant or external_contact"),
                ))
            }
        };
        let routes = parse_routes(&get("RELAY_ROUTES").unwrap_or_default())?;
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
                .unwrap_or_else(|| format!("https://api.{region}")),
            genesys_login_base: get("RELAY_GENESYS_LOGIN_BASE")
                .unwrap_or_else(|| format!("https://login.{region}")),
            genesys_rate_limit: match parse_or(
                vars,
                "RELAY_GENESYS_RATE_LIMIT",
                DEFAULT_GENESYS_RATE_LIMIT,
            )? {
                0 => return Err(invalid("RELAY_GENESYS_RATE_LIMIT", "must be at least 1")),
                n => n,
            },
            genesys_budget_max_wait: duration_or(
                vars,
                "RELAY_GENESYS_BUDGET_MAX_WAIT",
                DEFAULT_GENESYS_BUDGET_MAX_WAIT,
            )?,
            genesys_cache_ttl: duration_or(
                vars,
                "RELAY_GENESYS_CACHE_TTL",
                DEFAULT_GENESYS_CACHE_TTL,
            )?,
            genesys_client_id: get("RELAY_GENESYS_CLIENT_ID"),
            genesys_client_secret: get("RELAY_GENESYS_CLIENT_SECRET").map(Secret::new),
            cms_url: get("RELAY_CMS_URL"),
            cms_api_key: get("RELAY_CMS_API_KEY").map(Secret::new),
            forward_url: get("RELAY_FORWARD_URL"),
            retry_delays,
            max_in_flight: parse_or(vars, "RELAY_MAX_IN_FLIGHT", 256usize)?.max(1),
            schema_registry_url: get("RELAY_SCHEMA_REGISTRY_URL"),
            attribute_map,
            cms_entry_key,
            routes,
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
            rate_limit_per_minute: self.genesys_rate_limit,
            budget_max_wait: self.genesys_budget_max_wait,
            cache_ttl: self.genesys_cache_ttl,
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

/// Parses `cart_value:number,last_page=lastPage`: `name[:type][=field]`, type `string`
/// (default), `number` or `bool`; a bare name maps to the same CMS field.
fn parse_attribute_map(value: &str) -> Result<Vec<AttributeMapping>, ConfigError> {
    let bad = |pair: &str, why: &str| {
        invalid(
            "RELAY_ATTRIBUTE_MAP",
            format!("{pair:?} is not name[:type][=field] ({why})"),
        )
    };
    value
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|pair| {
            let (left, field) = match pair.split_once('=') {
                Some((left, field)) => (left.trim(), Some(field.trim())),
                None => (pair, None),
            };
            let (name, kind) = match left.split_once(':') {
                Some((name, kind)) => (name.trim(), Some(kind.trim())),
                None => (left, None),
            };
            let kind = match kind {
                None | Some("string") => AttributeType::String,
                Some("number") => AttributeType::Number,
                Some("bool") => AttributeType::Bool,
                Some(_) => return Err(bad(pair, "type is string, number or bool")),
            };
            if name.is_empty() || field.is_some_and(str::is_empty) {
                return Err(bad(pair, "empty name or field"));
            }
            Ok(AttributeMapping {
                name: name.to_string(),
                kind,
                field: field.unwrap_or(name).to_string(),
            })
        })
        .collect()
}

/// Parses `RELAY_ROUTES`: `pattern=route` pairs separated by commas, route one of
/// [`ROUTE_NAMES`]; patterns are checked by the router.
fn parse_routes(value: &str) -> Result<Vec<(String, String)>, ConfigError> {
    value
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|pair| match pair.rsplit_once('=') {
            Some((pattern, route))
                if !pattern.trim().is_empty() && ROUTE_NAMES.contains(&route.trim()) =>
            {
                Ok((pattern.trim().to_string(), route.trim().to_string()))
            }
            _ => Err(invalid(
                "RELAY_ROUTES",
                format!("{pair:?} is not pattern=route with route one of {ROUTE_NAMES:?}"),
            )),
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
                AttributeMapping {
                    name: "cart_value".into(),
                    kind: AttributeType::String,
                    field: "cartValue".into()
                },
                AttributeMapping {
                    name: "tier".into(),
                    kind: AttributeType::String,
                    field: "tier".into()
                },
            ]
        );
    }

    #[test]
    fn attribute_map_types_and_errors() {
        let c = Config::from_vars(&vars(&[(
            "RELAY_ATTRIBUTE_MAP",
            "cart_value:number=cartValue,vip:bool,page:string",
        )]))
        .unwrap();
        let kinds: Vec<_> = c.attribute_map.iter().map(|m| m.kind).collect();
        assert_eq!(
            kinds,
            [
                AttributeType::Number,
                AttributeType::Bool,
                AttributeType::String
            ]
        );
        assert_eq!(c.attribute_map[0].field, "cartValue");
        for bad in ["x:float", "=field", "x="] {
            let err = Config::from_vars(&vars(&[("RELAY_ATTRIBUTE_MAP", bad)])).unwrap_err();
            assert!(err.to_string().contains("RELAY_ATTRIBUTE_MAP"), "{bad}");
        }
    }

    #[test]
    fn region_sets_both_hosts_and_bases_override() {
        let with = |pairs: &[(&str, &str)]| {
            let c = Config::from_vars(&vars(pairs)).unwrap();
            let g = Config::from_vars(&vars(
                &[
                    pairs,
                    &[
                        ("RELAY_GENESYS_CLIENT_ID", "i"),
                        ("RELAY_GENESYS_CLIENT_SECRET", "s"),
                    ][..],
                ]
                .concat(),
            ))
            .unwrap()
            .genesys()
            .unwrap();
            drop(c);
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
                ("RELAY_GENESYS_API_BASE", "http://sim:1"),
            ]),
            (
                "http://sim:1".into(),
                "https://login.usw2.pure.cloud".into()
            )
        );
        assert!(Config::from_vars(&vars(&[("RELAY_GENESYS_REGION", "https://x")])).is_err());
    }

    #[test]
    fn routes_and_entry_key_are_validated() {
        let c = Config::from_vars(&vars(&[
            (
                "RELAY_ROUTES",
                "v2.users.{id}.presence=forward, custom:*=skip",
            ),
            ("RELAY_CMS_ENTRY_KEY", "external_contact"),
        ]))
        .unwrap();
        assert_eq!(c.routes[1], ("custom:*".into(), "skip".into()));
        assert_eq!(c.cms_entry_key, EntryKey::ExternalContact);
        assert!(Config::from_vars(&vars(&[("RELAY_ROUTES", "x=nowhere")])).is_err());
        assert!(Config::from_vars(&vars(&[("RELAY_CMS_ENTRY_KEY", "guest")])).is_err());
    }
}
