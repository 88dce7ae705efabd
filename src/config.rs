//! Settings: the one table of `RELAY_*` variables ([`SETTINGS`]), the reader every part
//! reads its own typed settings through ([`Vars`]), and the validation helpers they share.
//! Variables come from the environment, optionally layered over a TOML file given with
//! `--config`; the environment wins over the file.
//!
//! This module is the floor of the crate: it imports nothing from it. Each part owns a
//! settings struct with a `read(&Vars)` that parses and checks its slice (for example
//! `kafka::KafkaSettings`, `ingress::IngressSettings`); `app::Config` composes them. Adding a
//! setting touches two places: its [`SETTINGS`] row and the reader of the part that uses it.
//!
//! Invariant: [`SETTINGS`] is the one list of settings. Every default a reader applies is
//! taken from it (parsed like a set value), the README's settings table and the binary's
//! `--help` are rendered from it, and unit tests fail when the code reads a `RELAY_*` name
//! the list lacks, or the list names one the code never reads.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::path::Path;
use std::time::Duration;

pub use reqwest::Url;

/// Why the configuration could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("missing required setting {0}")]
    Missing(&'static str),
    #[error("invalid value for {name}: {reason}")]
    Invalid { name: String, reason: String },
    #[error("cannot read config file {path}: {reason}")]
    File { path: String, reason: String },
    #[error(
        "the ingress needs a credential: set RELAY_WEBHOOK_SECRET or RELAY_WEBHOOK_BASIC_USER and \
         RELAY_WEBHOOK_BASIC_PASSWORD (or RELAY_WEBHOOK_AUTH=none to accept unauthenticated requests)"
    )]
    NoWebhookCredential,
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

/// How logs are written (`RELAY_LOG_FORMAT`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Human,
    Json,
}

impl LogFormat {
    /// Reads `RELAY_LOG_FORMAT`.
    pub fn read(v: &Vars) -> Result<Self, ConfigError> {
        v.one_of(
            "RELAY_LOG_FORMAT",
            &[
                ("human", LogFormat::Human),
                ("text", LogFormat::Human),
                ("json", LogFormat::Json),
            ],
        )
    }
}

/// One `RELAY_*` setting: its name, its default and what it means. [`SETTINGS`] is the one
/// source of the README's settings table (a unit test renders the table from it and
/// compares) and of every default a settings reader applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Setting {
    pub name: &'static str,
    pub default: SettingDefault,
    /// One line for the README table (Markdown).
    pub doc: &'static str,
}

/// What an unset setting means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SettingDefault {
    /// This value, parsed exactly as a set value would be.
    Value(&'static str),
    /// No value: the text says what happens then (Markdown).
    Absent(&'static str),
}

/// The settings table row that names the passthrough of every other `RELAY_KAFKA_*` variable.
pub const KAFKA_PASSTHROUGH: &str = "RELAY_KAFKA_*";

use SettingDefault::{Absent, Value};

/// Every `RELAY_*` setting, in the order of the README table.
pub const SETTINGS: &[Setting] = &[
    Setting { name: "RELAY_KAFKA_BROKERS", default: Value("localhost:9092"), doc: "bootstrap servers" },
    Setting { name: KAFKA_PASSTHROUGH, default: Absent(""), doc: "any other rdkafka setting: the name is lower-cased and `_` becomes `.` (`RELAY_KAFKA_SECURITY_PROTOCOL=SASL_SSL` sets `security.protocol`); `RELAY_KAFKA_ACKS` may only be `all` (or `-1`)" },
    Setting { name: "RELAY_TOPIC_PREFIX", default: Value("genesys"), doc: "prefix of every topic name" },
    Setting { name: "RELAY_CONSUMER_GROUP", default: Value("genesys-relay"), doc: "consumer group of the raw topic (retries use `<group>-retry`)" },
    Setting { name: "RELAY_CREATE_TOPICS", default: Value("true"), doc: "create missing topics at start-up; set `false` where the relay has no admin rights" },
    Setting { name: "RELAY_TOPIC_PARTITIONS", default: Value("6"), doc: "partitions of topics the relay creates" },
    Setting { name: "RELAY_TOPIC_REPLICATION", default: Value("1"), doc: "replication factor of topics the relay creates (use 3 in production)" },
    Setting { name: "RELAY_TOPIC_MIN_INSYNC_REPLICAS", default: Absent("unset (broker default)"), doc: "`min.insync.replicas` of topics the relay creates (e.g. 2 with replication 3); must not exceed the replication factor" },
    Setting { name: "RELAY_HTTP_ADDR", default: Value("0.0.0.0:8080"), doc: "ingress listener" },
    Setting { name: "RELAY_ADMIN_ADDR", default: Value("0.0.0.0:9464"), doc: "`/healthz`, `/readyz`, `/metrics`" },
    Setting { name: "RELAY_WEBHOOK_SECRET", default: Absent("unset"), doc: "accepts the secret header or a valid `X-Relay-Signature`" },
    Setting { name: "RELAY_WEBHOOK_SECRET_HEADER", default: Value("X-Relay-Secret"), doc: "name of the static secret header" },
    Setting { name: "RELAY_WEBHOOK_BASIC_USER", default: Absent("unset"), doc: "with `RELAY_WEBHOOK_BASIC_PASSWORD`: accepts HTTP Basic with these (one without the other stops start-up)" },
    Setting { name: "RELAY_WEBHOOK_BASIC_PASSWORD", default: Absent("unset"), doc: "see `RELAY_WEBHOOK_BASIC_USER`" },
    Setting { name: "RELAY_WEBHOOK_AUTH", default: Value("required"), doc: "with no credential set the ingress refuses to start; `none` allows it (local only)" },
    Setting { name: "RELAY_TLS_CERT", default: Absent("unset"), doc: "with `RELAY_TLS_KEY`: PEM files, the ingress serves HTTPS" },
    Setting { name: "RELAY_TLS_KEY", default: Absent("unset"), doc: "see `RELAY_TLS_CERT`" },
    Setting { name: "RELAY_MAX_BODY_BYTES", default: Absent("`message.max.bytes` minus 16 KiB (`983616`)"), doc: "larger bodies get 413; must fit `message.max.bytes` minus 16 KiB (checked at start-up)" },
    Setting { name: "RELAY_INGRESS_HEADER_TIMEOUT", default: Value("10s"), doc: "a request head (and a TLS handshake) must arrive within this of its first byte, a new connection's first one within this of connecting; else the connection is closed" },
    Setting { name: "RELAY_INGRESS_BODY_TIMEOUT", default: Value("10s"), doc: "a request body must arrive within this; else `408` and the connection is closed" },
    Setting { name: "RELAY_INGRESS_IDLE_TIMEOUT", default: Value("60s"), doc: "a keep-alive connection silent this long between requests is closed" },
    Setting { name: "RELAY_INGRESS_MAX_CONNECTIONS", default: Value("1024"), doc: "open ingress connections at most; one more is closed on accept (counted); keep it under the process's file limit" },
    Setting { name: "RELAY_PRODUCE_TIMEOUT", default: Value("3s"), doc: "longest wait for the broker's acknowledgement before 503; keep it under 5 s, EventBridge API destinations give up after 5 s (docs/connecting.md)" },
    Setting { name: "RELAY_GENESYS_REGION", default: Value("mypurecloud.com"), doc: "Genesys Cloud region: API `https://api.<region>`, OAuth `https://login.<region>` (e.g. `mypurecloud.de`, `usw2.pure.cloud`)" },
    Setting { name: "RELAY_GENESYS_API_BASE", default: Absent("from the region"), doc: "Platform API base override (the simulator)" },
    Setting { name: "RELAY_GENESYS_LOGIN_BASE", default: Absent("from the region"), doc: "OAuth base override" },
    Setting { name: "RELAY_GENESYS_CLIENT_ID", default: Absent("required by `worker`/`serve`/`triggers`"), doc: "OAuth client-credentials id" },
    Setting { name: "RELAY_GENESYS_CLIENT_SECRET", default: Absent("required by `worker`/`serve`/`triggers`"), doc: "OAuth client secret (never logged)" },
    Setting { name: "RELAY_GENESYS_RATE_LIMIT", default: Value("240"), doc: "Genesys requests per minute this process spends (one paced budget; lowered when `inin-ratelimit-allowed` says less); at least 1" },
    Setting { name: "RELAY_GENESYS_BUDGET_MAX_WAIT", default: Value("5s"), doc: "how far ahead budget slots are handed out: a call finding them taken waits its turn in its lane (backpressure); only a Genesys pause (window spent, 429) longer than this makes the event one retry record due at a promised slot (no attempt counted); see docs/genesys-api.md#the-request-budget" },
    Setting { name: "RELAY_GENESYS_CACHE_TTL", default: Value("10s"), doc: "a fetched conversation is reused this long; concurrent lookups of one id share one request (`0s`: off)" },
    Setting { name: "RELAY_ROUTES", default: Absent("unset"), doc: "`pattern=route,...` tried before the default route table (`{id}` = one id, `*` = any tail; routes `guest_sync`, `conversation_enrich`, `forward`, `skip`); see [docs/contract.md](docs/contract.md#routes)" },
    Setting { name: "RELAY_CMS_ENTRY_KEY", default: Value("conversation"), doc: "CMS entry id of a guest sync: `conversation`, `participant` or `external_contact` (falls back to the conversation id)" },
    Setting { name: "RELAY_CMS_URL", default: Absent("required by `worker`/`serve`"), doc: "CMS entries collection, e.g. `http://cms/v1/entries`" },
    Setting { name: "RELAY_CMS_API_KEY", default: Absent("unset"), doc: "sent as `Authorization: Bearer` to the CMS" },
    Setting { name: "RELAY_FORWARD_URL", default: Absent("unset"), doc: "HTTP backend for forwarded and enriched events; unset means unrouted events are skipped (counted)" },
    Setting { name: "RELAY_ATTRIBUTE_MAP", default: Value("cart_value:number,last_page,session_id,loyalty_tier"), doc: "customer attribute -> CMS field: `name[:type][=field]`, type `string` (default), `number` or `bool`; Genesys attributes are strings, a value that does not convert dead-letters the event as permanent with a message naming it" },
    Setting { name: "RELAY_RETRY_DELAYS", default: Value("5s,60s,600s"), doc: "one retry tier per delay (`genesys.events.retry.1..N`)" },
    Setting { name: "RELAY_MAX_IN_FLIGHT", default: Value("256"), doc: "events handled concurrently per consumer (different keys; one key stays in order)" },
    Setting { name: "RELAY_HTTP_TIMEOUT", default: Value("10s"), doc: "timeout of each Genesys, CMS and backend request" },
    Setting { name: "RELAY_IDEMPOTENCY_CAPACITY", default: Value("1000000"), doc: "keys kept in memory (the topic keeps all)" },
    Setting { name: "RELAY_IDEMPOTENCY_TTL", default: Value("7d"), doc: "how long a key is kept in memory" },
    Setting { name: "RELAY_IDEMPOTENCY_RETENTION", default: Absent("unset"), doc: "when set (e.g. `30d`), the idempotency topic the relay creates is `compact,delete` with this retention; otherwise compact only" },
    Setting { name: "RELAY_SCHEMA_REGISTRY_URL", default: Absent("unset"), doc: "when set, schemas are registered and values use the Confluent wire format" },
    Setting { name: "RELAY_SHUTDOWN_TIMEOUT", default: Value("30s"), doc: "longest drain of in-flight events on SIGTERM" },
    Setting { name: "RELAY_LISTEN_TOPICS", default: Absent("unset"), doc: "`listen`: literal notification topics, comma-separated; `serve` listens too when this or `RELAY_LISTEN_QUEUES` is set (docs/listen.md)" },
    Setting { name: "RELAY_LISTEN_QUEUES", default: Absent("unset"), doc: "`listen`: `all` or queue ids; one `v2.routing.queues.{id}.conversations` topic per queue (all pages, re-listed)" },
    Setting { name: "RELAY_LISTEN_QUEUE_REFRESH", default: Value("5m"), doc: "how often `RELAY_LISTEN_QUEUES=all` lists the queues again" },
    Setting { name: "RELAY_LISTEN_BUFFER", default: Value("10000"), doc: "notifications read and not yet acknowledged by Kafka; a full buffer stops reading the sockets" },
    Setting { name: "RELAY_LISTEN_MAX_TOPICS_PER_CHANNEL", default: Value("1000"), doc: "topics per notification channel (Genesys' limit)" },
    Setting { name: "RELAY_LISTEN_MAX_CHANNELS", default: Value("20"), doc: "channels this process may hold (Genesys' limit per client); one stays free for rotation" },
    Setting { name: "RELAY_LISTEN_ROTATE_BEFORE", default: Value("5m"), doc: "replace a channel this long before its `expires`" },
    Setting { name: "RELAY_LISTEN_OVERLAP", default: Value("2s"), doc: "how long the old socket is still read after its replacement is connected" },
    Setting { name: "RELAY_LISTEN_IDLE_TIMEOUT", default: Value("90s"), doc: "a socket silent this long is considered dead" },
    Setting { name: "RELAY_LISTEN_RECONNECT_MAX", default: Value("30s"), doc: "cap of the reconnect backoff" },
    Setting { name: "RELAY_LOG_FORMAT", default: Value("human"), doc: "`human` (or `text`) or `json`" },
    Setting { name: "RELAY_LOG", default: Value("info,librdkafka=warn,rdkafka=warn"), doc: "tracing filter" },
];

/// The settings table as Markdown, as it appears in the README.
pub fn settings_table() -> String {
    let mut out = String::from("| variable | default | meaning |\n| --- | --- | --- |\n");
    for s in SETTINGS {
        let default = match s.default {
            Value(v) => format!("`{v}`"),
            Absent(text) => text.to_string(),
        };
        out.push_str(&format!("| `{}` | {default} | {} |\n", s.name, s.doc));
    }
    out
}

/// The settings as plain text for the binary's `--help`.
pub fn settings_help() -> String {
    let plain = |md: &str| {
        // `[text](link)` -> `text`; backticks dropped.
        let mut out = String::new();
        let mut rest = md;
        while let Some(open) = rest.find('[') {
            let Some(mid) = rest[open..].find("](").map(|i| open + i) else {
                break;
            };
            let Some(close) = rest[mid..].find(')').map(|i| mid + i) else {
                break;
            };
            out.push_str(&rest[..open]);
            out.push_str(&rest[open + 1..mid]);
            rest = &rest[close + 1..];
        }
        out.push_str(rest);
        out.replace('`', "")
    };
    let mut out =
        String::from("Settings (environment variables, or the same keys in the --config file):\n");
    for s in SETTINGS {
        let default = match s.default {
            Value(v) => format!("default {v}"),
            Absent("") => String::new(),
            Absent(text) => plain(text),
        };
        out.push_str(&format!(
            "  {}  [{default}]\n      {}\n",
            s.name,
            plain(s.doc)
        ));
    }
    out
}

/// The default of a setting that has a value default.
pub fn default_value(name: &str) -> Option<&'static str> {
    SETTINGS
        .iter()
        .find(|s| s.name == name)
        .and_then(|s| match s.default {
            Value(v) => Some(v),
            Absent(_) => None,
        })
}

/// The `RELAY_*` variables of one load, and (for the settings test) which names were read.
/// Every part reads its settings through this; each helper names the setting in its error.
pub struct Vars {
    map: HashMap<String, String>,
    read: RefCell<BTreeSet<String>>,
}

impl Vars {
    pub fn new(map: HashMap<String, String>) -> Self {
        Vars {
            map,
            read: Default::default(),
        }
    }

    /// Variables from `(name, value)` pairs (tests and tools).
    pub fn from_pairs(pairs: &[(&str, &str)]) -> Self {
        Vars::new(
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        )
    }

    /// The process environment's `RELAY_*` variables, over the TOML file when one is given.
    pub fn load(file: Option<&Path>) -> Result<Self, ConfigError> {
        let mut map = match file {
            Some(path) => read_toml(path)?,
            None => HashMap::new(),
        };
        map.extend(std::env::vars().filter(|(k, _)| k.starts_with("RELAY_")));
        Ok(Vars::new(map))
    }

    /// The names read so far (the settings test compares them with [`SETTINGS`]).
    pub fn names_read(&self) -> BTreeSet<String> {
        self.read.borrow().clone()
    }

    /// The set value, trimmed; empty counts as unset.
    pub fn get(&self, name: &str) -> Option<String> {
        self.read.borrow_mut().insert(name.to_string());
        self.map
            .get(name)
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty())
    }

    /// Every set variable whose name starts with `prefix`, except `except`, untrimmed
    /// (the `RELAY_KAFKA_*` passthrough).
    pub fn with_prefix(&self, prefix: &str, except: &[&str]) -> BTreeMap<String, String> {
        self.map
            .iter()
            .filter(|(k, _)| k.starts_with(prefix) && !except.contains(&k.as_str()))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }

    /// The set value, else the setting's default from [`SETTINGS`].
    pub fn get_or_default(&self, name: &str) -> String {
        self.get(name).unwrap_or_else(|| {
            default_value(name)
                .unwrap_or_else(|| panic!("{name} has no value default in SETTINGS"))
                .to_string()
        })
    }

    /// The set value (else the default) parsed with `FromStr`.
    pub fn parse<T>(&self, name: &str) -> Result<T, ConfigError>
    where
        T: std::str::FromStr,
        T::Err: fmt::Display,
    {
        self.get_or_default(name)
            .parse()
            .map_err(|e: T::Err| invalid(name, e.to_string()))
    }

    /// The set value parsed with `FromStr`, or `None` when unset.
    pub fn parse_opt<T>(&self, name: &str) -> Result<Option<T>, ConfigError>
    where
        T: std::str::FromStr,
        T::Err: fmt::Display,
    {
        self.get(name)
            .map(|v| v.parse().map_err(|e: T::Err| invalid(name, e.to_string())))
            .transpose()
    }

    /// A duration such as `5s` or `7d` (else the default).
    pub fn duration(&self, name: &str) -> Result<Duration, ConfigError> {
        parse_duration(name, &self.get_or_default(name))
    }

    /// A duration, or `None` when unset.
    pub fn duration_opt(&self, name: &str) -> Result<Option<Duration>, ConfigError> {
        self.get(name).map(|v| parse_duration(name, &v)).transpose()
    }

    /// A comma-separated list of durations (else the default), at least one.
    pub fn durations(&self, name: &str) -> Result<Vec<Duration>, ConfigError> {
        let delays = split_list(&self.get_or_default(name))
            .iter()
            .map(|s| parse_duration(name, s))
            .collect::<Result<Vec<_>, _>>()?;
        if delays.is_empty() {
            return Err(invalid(name, "at least one delay is needed"));
        }
        Ok(delays)
    }

    /// An absolute `http`/`https` URL, or `None` when unset.
    pub fn url_opt(&self, name: &str) -> Result<Option<Url>, ConfigError> {
        self.get(name).map(|v| parse_url(name, &v)).transpose()
    }

    /// A secret, or `None` when unset.
    pub fn secret(&self, name: &str) -> Option<Secret> {
        self.get(name).map(Secret::new)
    }

    /// The value (else the default) as one of `choices`; the error lists them.
    pub fn one_of<T: Copy>(&self, name: &str, choices: &[(&str, T)]) -> Result<T, ConfigError> {
        let value = self.get_or_default(name);
        choices
            .iter()
            .find(|(text, _)| *text == value)
            .map(|(_, t)| *t)
            .ok_or_else(|| {
                let names: Vec<&str> = choices.iter().map(|(text, _)| *text).collect();
                invalid(
                    name,
                    format!("{value:?} is not one of {}", names.join(", ")),
                )
            })
    }

    /// Two settings that only make sense together: both or neither, else the missing one
    /// is named.
    pub fn both_or_neither(
        &self,
        first: &'static str,
        second: &'static str,
    ) -> Result<Option<(String, String)>, ConfigError> {
        match (self.get(first), self.get(second)) {
            (Some(a), Some(b)) => Ok(Some((a, b))),
            (None, None) => Ok(None),
            (Some(_), None) => Err(ConfigError::Missing(second)),
            (None, Some(_)) => Err(ConfigError::Missing(first)),
        }
    }
}

/// An error naming the setting and why its value is unusable.
pub fn invalid(name: &str, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        name: name.into(),
        reason: reason.into(),
    }
}

/// A duration such as `5s`, `1m 30s` or `7d`.
pub fn parse_duration(name: &str, value: &str) -> Result<Duration, ConfigError> {
    humantime::parse_duration(value).map_err(|e| invalid(name, format!("{value:?}: {e}")))
}

/// An absolute `http` or `https` URL.
pub fn parse_url(name: &str, value: &str) -> Result<Url, ConfigError> {
    let url = Url::parse(value).map_err(|e| invalid(name, format!("{value:?}: {e}")))?;
    if !matches!(url.scheme(), "http" | "https") || !url.has_host() {
        return Err(invalid(name, format!("{value:?} is not an http(s) URL")));
    }
    Ok(url)
}

/// `a, b,,c` -> `["a", "b", "c"]`.
pub fn split_list(value: &str) -> Vec<String> {
    value
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
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
    use std::collections::BTreeSet;

    const README: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/README.md");
    const TABLE_BEGIN: &str = "<!-- settings table: generated from src/config.rs SETTINGS -->\n";
    const TABLE_END: &str = "<!-- end of settings table -->";

    /// The README's settings table is [`settings_table`]; `UPDATE_README=1` rewrites it.
    #[test]
    fn readme_settings_table_is_rendered_from_settings() {
        let readme = std::fs::read_to_string(README).unwrap();
        let start = readme
            .find(TABLE_BEGIN)
            .expect("README lacks the settings table marker")
            + TABLE_BEGIN.len();
        let end = start
            + readme[start..]
                .find(TABLE_END)
                .expect("README lacks the end marker");
        let want = settings_table();
        if readme[start..end] == want {
            return;
        }
        if std::env::var_os("UPDATE_README").is_some() {
            let updated = format!("{}{want}{}", &readme[..start], &readme[end..]);
            std::fs::write(README, updated).unwrap();
            return;
        }
        panic!(
            "the README settings table differs from SETTINGS in src/config.rs; run \
             `UPDATE_README=1 cargo test --lib config::` to regenerate it. Expected:\n{want}"
        );
    }

    /// Every `"RELAY_..."` literal in `src/` is a listed setting (or Kafka passthrough):
    /// no module reads a setting the README does not show.
    #[test]
    fn every_setting_named_in_the_source_is_listed() {
        fn rust_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
            for entry in std::fs::read_dir(dir).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    rust_files(&path, out);
                } else if path.extension().is_some_and(|e| e == "rs") {
                    out.push(path);
                }
            }
        }
        let mut files = Vec::new();
        rust_files(
            &Path::new(env!("CARGO_MANIFEST_DIR")).join("src"),
            &mut files,
        );
        let listed: BTreeSet<&str> = SETTINGS.iter().map(|s| s.name).collect();
        let mut unlisted = BTreeSet::new();
        for file in files {
            let text = std::fs::read_to_string(&file).unwrap();
            for (i, _) in text.match_indices("\"RELAY_") {
                let name: String = text[i + 1..]
                    .chars()
                    .take_while(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || *c == '_')
                    .collect();
                let closed = text[i + 1 + name.len()..].starts_with('"');
                let prefix_only = name == "RELAY_";
                if closed
                    && !prefix_only
                    && !name.starts_with("RELAY_KAFKA_")
                    && !listed.contains(name.as_str())
                {
                    unlisted.insert(format!("{name} ({})", file.display()));
                }
            }
        }
        assert!(
            unlisted.is_empty(),
            "settings missing from SETTINGS: {unlisted:?}"
        );
    }

    #[test]
    fn help_lists_every_setting_with_its_default() {
        let help = settings_help();
        for s in SETTINGS {
            assert!(help.contains(s.name), "{} missing from --help", s.name);
            if let Value(v) = s.default {
                assert!(help.contains(&format!("default {v}]")), "{}", s.name);
            }
        }
        assert!(!help.contains('`') && !help.contains("]("), "{help}");
    }

    #[test]
    fn helpers_name_the_setting() {
        let v = Vars::from_pairs(&[
            ("RELAY_RETRY_DELAYS", "5s,soon"),
            ("RELAY_CMS_URL", "cms/v1"),
            ("RELAY_FORWARD_URL", "ftp://host/x"),
            ("RELAY_TLS_CERT", "c.pem"),
            ("RELAY_LOG_FORMAT", "xml"),
        ]);
        let err = v.durations("RELAY_RETRY_DELAYS").unwrap_err().to_string();
        assert!(
            err.contains("RELAY_RETRY_DELAYS") && err.contains("soon"),
            "{err}"
        );
        let err = v.url_opt("RELAY_CMS_URL").unwrap_err().to_string();
        assert!(err.contains("RELAY_CMS_URL"), "{err}");
        let err = v.url_opt("RELAY_FORWARD_URL").unwrap_err().to_string();
        assert!(err.contains("RELAY_FORWARD_URL"), "{err}");
        let err = v
            .both_or_neither("RELAY_TLS_CERT", "RELAY_TLS_KEY")
            .unwrap_err()
            .to_string();
        assert_eq!(err, "missing required setting RELAY_TLS_KEY");
        let err = LogFormat::read(&v).unwrap_err().to_string();
        assert!(
            err.contains("RELAY_LOG_FORMAT") && err.contains("json"),
            "{err}"
        );
        assert_eq!(v.durations("RELAY_IDEMPOTENCY_TTL").unwrap().len(), 1);
        assert_eq!(
            Vars::new(HashMap::new())
                .durations("RELAY_RETRY_DELAYS")
                .unwrap(),
            [5, 60, 600].map(Duration::from_secs)
        );
    }

    #[test]
    fn every_value_default_parses_as_its_reader_expects() {
        // A reader parses the default like a set value: an empty default could never parse.
        for s in SETTINGS {
            if let Value(v) = s.default {
                assert!(!v.is_empty(), "{}: empty value default", s.name);
            }
        }
    }
}
