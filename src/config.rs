//! Relay configuration: environment variables (`RELAY_*`), optionally layered over a TOML
//! file given with `--config`. The environment wins over the file.
//!
//! Each component asks for what it needs (`Config::genesys`, `Config::cms_url`), so a
//! missing required setting stops start-up with one line naming the variable.
//!
//! Invariant: [`SETTINGS`] is the one list of settings. Every default `from_vars` applies
//! is taken from it (parsed like a set value), the README's settings table and the
//! binary's `--help` are rendered from it, and unit tests fail when the code reads a
//! `RELAY_*` name the list lacks, or the list names one the code never reads.

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
    /// How the attribute's string value is converted.
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

/// One `RELAY_*` setting: its name, its default and what it means. [`SETTINGS`] is the one
/// source of the README's settings table (a unit test renders the table from it and
/// compares) and of every default [`Config::from_vars`] applies.
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

/// `RELAY_KAFKA_BROKERS` default.
pub const DEFAULT_KAFKA_BROKERS: &str = "localhost:9092";
/// `RELAY_TOPIC_PREFIX` default.
pub const DEFAULT_TOPIC_PREFIX: &str = "genesys";
/// `RELAY_CONSUMER_GROUP` default.
pub const DEFAULT_CONSUMER_GROUP: &str = "genesys-relay";
/// `RELAY_CREATE_TOPICS` default.
pub const DEFAULT_CREATE_TOPICS: &str = "true";
/// `RELAY_TOPIC_PARTITIONS` default.
pub const DEFAULT_TOPIC_PARTITIONS: &str = "6";
/// `RELAY_TOPIC_REPLICATION` default: 1 suits one dev broker; production sets 3.
pub const DEFAULT_TOPIC_REPLICATION: &str = "1";
/// `RELAY_HTTP_ADDR` default.
pub const DEFAULT_HTTP_ADDR: &str = "0.0.0.0:8080";
/// `RELAY_ADMIN_ADDR` default.
pub const DEFAULT_ADMIN_ADDR: &str = "0.0.0.0:9464";
/// `RELAY_WEBHOOK_SECRET_HEADER` default.
pub const DEFAULT_WEBHOOK_SECRET_HEADER: &str = "X-Relay-Secret";
/// `RELAY_WEBHOOK_AUTH` default: a credential is required.
pub const DEFAULT_WEBHOOK_AUTH: &str = "required";
/// `RELAY_PRODUCE_TIMEOUT` default.
pub const DEFAULT_PRODUCE_TIMEOUT: &str = "5s";
/// Genesys Cloud region when `RELAY_GENESYS_REGION` is not set.
pub const DEFAULT_GENESYS_REGION: &str = "mypurecloud.com";
/// Requests per minute when `RELAY_GENESYS_RATE_LIMIT` is not set: headroom under the
/// documented default of 300 per client-credentials token.
pub const DEFAULT_GENESYS_RATE_LIMIT: &str = "240";
/// `RELAY_GENESYS_BUDGET_MAX_WAIT` default.
pub const DEFAULT_GENESYS_BUDGET_MAX_WAIT: &str = "5s";
/// `RELAY_GENESYS_CACHE_TTL` default: short, attributes change during a conversation.
pub const DEFAULT_GENESYS_CACHE_TTL: &str = "10s";
/// `RELAY_CMS_ENTRY_KEY` default.
pub const DEFAULT_CMS_ENTRY_KEY: &str = "conversation";
/// The attributes the replaced guest-sync service mapped (`cart_value` was a number there).
pub const DEFAULT_ATTRIBUTE_MAP: &str = "cart_value:number,last_page,session_id,loyalty_tier";
/// `RELAY_RETRY_DELAYS` default: three tiers.
pub const DEFAULT_RETRY_DELAYS: &str = "5s,60s,600s";
/// `RELAY_MAX_IN_FLIGHT` default.
pub const DEFAULT_MAX_IN_FLIGHT: &str = "256";
/// `RELAY_HTTP_TIMEOUT` default.
pub const DEFAULT_HTTP_TIMEOUT: &str = "10s";
/// `RELAY_IDEMPOTENCY_CAPACITY` default.
pub const DEFAULT_IDEMPOTENCY_CAPACITY: &str = "1000000";
/// `RELAY_IDEMPOTENCY_TTL` default.
pub const DEFAULT_IDEMPOTENCY_TTL: &str = "7d";
/// `RELAY_SHUTDOWN_TIMEOUT` default.
pub const DEFAULT_SHUTDOWN_TIMEOUT: &str = "30s";
/// `RELAY_LOG_FORMAT` default.
pub const DEFAULT_LOG_FORMAT: &str = "human";
/// `RELAY_LOG` default (read by the binary's logging set-up, not by [`Config`]).
pub const DEFAULT_LOG_FILTER: &str = "info,librdkafka=warn,rdkafka=warn";
/// librdkafka's default `message.max.bytes`, used when `RELAY_KAFKA_MESSAGE_MAX_BYTES` is unset.
pub const LIBRDKAFKA_MESSAGE_MAX_BYTES: usize = 1_000_000;

/// The settings table that names the passthrough of every other `RELAY_KAFKA_*` variable.
const KAFKA_PASSTHROUGH: &str = "RELAY_KAFKA_*";

use SettingDefault::{Absent, Value};

/// Every `RELAY_*` setting, in the order of the README table.
pub const SETTINGS: &[Setting] = &[
    Setting { name: "RELAY_KAFKA_BROKERS", default: Value(DEFAULT_KAFKA_BROKERS), doc: "bootstrap servers" },
    Setting { name: KAFKA_PASSTHROUGH, default: Absent(""), doc: "any other rdkafka setting: the name is lower-cased and `_` becomes `.` (`RELAY_KAFKA_SECURITY_PROTOCOL=SASL_SSL` sets `security.protocol`); `RELAY_KAFKA_ACKS` may only be `all` (or `-1`)" },
    Setting { name: "RELAY_TOPIC_PREFIX", default: Value(DEFAULT_TOPIC_PREFIX), doc: "prefix of every topic name" },
    Setting { name: "RELAY_CONSUMER_GROUP", default: Value(DEFAULT_CONSUMER_GROUP), doc: "consumer group of the raw topic (retries use `<group>-retry`)" },
    Setting { name: "RELAY_CREATE_TOPICS", default: Value(DEFAULT_CREATE_TOPICS), doc: "create missing topics at start-up; set `false` where the relay has no admin rights" },
    Setting { name: "RELAY_TOPIC_PARTITIONS", default: Value(DEFAULT_TOPIC_PARTITIONS), doc: "partitions of topics the relay creates" },
    Setting { name: "RELAY_TOPIC_REPLICATION", default: Value(DEFAULT_TOPIC_REPLICATION), doc: "replication factor of topics the relay creates (use 3 in production)" },
    Setting { name: "RELAY_TOPIC_MIN_INSYNC_REPLICAS", default: Absent("unset (broker default)"), doc: "`min.insync.replicas` of topics the relay creates (e.g. 2 with replication 3); must not exceed the replication factor" },
    Setting { name: "RELAY_HTTP_ADDR", default: Value(DEFAULT_HTTP_ADDR), doc: "ingress listener" },
    Setting { name: "RELAY_ADMIN_ADDR", default: Value(DEFAULT_ADMIN_ADDR), doc: "`/healthz`, `/readyz`, `/metrics`" },
    Setting { name: "RELAY_ADMIN_TOKEN", default: Absent("unset: the console is off"), doc: "turns on the operator console at `/console` on the admin listener (at least 16 characters; bearer token or sign-in form); see [docs/console.md](docs/console.md)" },
    Setting { name: "RELAY_WEBHOOK_SECRET", default: Absent("unset"), doc: "accepts the secret header or a valid `X-Relay-Signature`" },
    Setting { name: "RELAY_WEBHOOK_SECRET_HEADER", default: Value(DEFAULT_WEBHOOK_SECRET_HEADER), doc: "name of the static secret header" },
    Setting { name: "RELAY_WEBHOOK_BASIC_USER", default: Absent("unset"), doc: "with `RELAY_WEBHOOK_BASIC_PASSWORD`: accepts HTTP Basic with these (one without the other stops start-up)" },
    Setting { name: "RELAY_WEBHOOK_BASIC_PASSWORD", default: Absent("unset"), doc: "see `RELAY_WEBHOOK_BASIC_USER`" },
    Setting { name: "RELAY_WEBHOOK_AUTH", default: Value(DEFAULT_WEBHOOK_AUTH), doc: "with no credential set the ingress refuses to start; `none` allows it (local only)" },
    Setting { name: "RELAY_TLS_CERT", default: Absent("unset"), doc: "with `RELAY_TLS_KEY`: PEM files, the ingress serves HTTPS" },
    Setting { name: "RELAY_TLS_KEY", default: Absent("unset"), doc: "see `RELAY_TLS_CERT`" },
    Setting { name: "RELAY_MAX_BODY_BYTES", default: Absent("`message.max.bytes` minus 16 KiB (`983616`)"), doc: "larger bodies get 413; must fit `message.max.bytes` minus 16 KiB (checked at start-up)" },
    Setting { name: "RELAY_PRODUCE_TIMEOUT", default: Value(DEFAULT_PRODUCE_TIMEOUT), doc: "longest wait for the broker's acknowledgement before 503" },
    Setting { name: "RELAY_GENESYS_REGION", default: Value(DEFAULT_GENESYS_REGION), doc: "Genesys Cloud region: API `https://api.<region>`, OAuth `https://login.<region>` (e.g. `mypurecloud.de`, `usw2.pure.cloud`)" },
    Setting { name: "RELAY_GENESYS_API_BASE", default: Absent("from the region"), doc: "Platform API base override (the simulator)" },
    Setting { name: "RELAY_GENESYS_LOGIN_BASE", default: Absent("from the region"), doc: "OAuth base override" },
    Setting { name: "RELAY_GENESYS_CLIENT_ID", default: Absent("required by `worker`/`serve`/`triggers`"), doc: "OAuth client-credentials id" },
    Setting { name: "RELAY_GENESYS_CLIENT_SECRET", default: Absent("required by `worker`/`serve`/`triggers`"), doc: "OAuth client secret (never logged)" },
    Setting { name: "RELAY_GENESYS_RATE_LIMIT", default: Value(DEFAULT_GENESYS_RATE_LIMIT), doc: "Genesys requests per minute this process spends (one paced budget; lowered when `inin-ratelimit-allowed` says less); at least 1" },
    Setting { name: "RELAY_GENESYS_BUDGET_MAX_WAIT", default: Value(DEFAULT_GENESYS_BUDGET_MAX_WAIT), doc: "longest wait for a budget slot inside a worker lane; a later slot makes the event a retry record due then (no attempt counted)" },
    Setting { name: "RELAY_GENESYS_CACHE_TTL", default: Value(DEFAULT_GENESYS_CACHE_TTL), doc: "a fetched conversation is reused this long; concurrent lookups of one id share one request (`0s`: off)" },
    Setting { name: "RELAY_ROUTES", default: Absent("unset"), doc: "`pattern=route,...` tried before the default route table (`{id}` = one id, `*` = any tail; routes `guest_sync`, `conversation_enrich`, `forward`, `skip`); see [docs/contract.md](docs/contract.md#routes)" },
    Setting { name: "RELAY_CMS_ENTRY_KEY", default: Value(DEFAULT_CMS_ENTRY_KEY), doc: "CMS entry id of a guest sync: `conversation`, `participant` or `external_contact` (falls back to the conversation id)" },
    Setting { name: "RELAY_CMS_URL", default: Absent("required by `worker`/`serve`"), doc: "CMS entries collection, e.g. `http://cms/v1/entries`" },
    Setting { name: "RELAY_CMS_API_KEY", default: Absent("unset"), doc: "sent as `Authorization: Bearer` to the CMS" },
    Setting { name: "RELAY_FORWARD_URL", default: Absent("unset"), doc: "HTTP backend for forwarded and enriched events; unset means unrouted events are skipped (counted)" },
    Setting { name: "RELAY_ATTRIBUTE_MAP", default: Value(DEFAULT_ATTRIBUTE_MAP), doc: "customer attribute -> CMS field: `name[:type][=field]`, type `string` (default), `number` or `bool`; Genesys attributes are strings, a value that does not convert dead-letters the event as permanent with a message naming it" },
    Setting { name: "RELAY_RETRY_DELAYS", default: Value(DEFAULT_RETRY_DELAYS), doc: "one retry tier per delay (`genesys.events.retry.1..N`)" },
    Setting { name: "RELAY_MAX_IN_FLIGHT", default: Value(DEFAULT_MAX_IN_FLIGHT), doc: "events handled concurrently per consumer (different keys; one key stays in order)" },
    Setting { name: "RELAY_HTTP_TIMEOUT", default: Value(DEFAULT_HTTP_TIMEOUT), doc: "timeout of each Genesys, CMS and backend request" },
    Setting { name: "RELAY_IDEMPOTENCY_CAPACITY", default: Value(DEFAULT_IDEMPOTENCY_CAPACITY), doc: "keys kept in memory (the topic keeps all)" },
    Setting { name: "RELAY_IDEMPOTENCY_TTL", default: Value(DEFAULT_IDEMPOTENCY_TTL), doc: "how long a key is kept in memory" },
    Setting { name: "RELAY_IDEMPOTENCY_RETENTION", default: Absent("unset"), doc: "when set (e.g. `30d`), the idempotency topic the relay creates is `compact,delete` with this retention; otherwise compact only" },
    Setting { name: "RELAY_SCHEMA_REGISTRY_URL", default: Absent("unset"), doc: "when set, schemas are registered and values use the Confluent wire format" },
    Setting { name: "RELAY_SHUTDOWN_TIMEOUT", default: Value(DEFAULT_SHUTDOWN_TIMEOUT), doc: "longest drain of in-flight events on SIGTERM" },
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
    Setting { name: "RELAY_LOG_FORMAT", default: Value(DEFAULT_LOG_FORMAT), doc: "`human` (or `text`) or `json`" },
    Setting { name: "RELAY_LOG", default: Value(DEFAULT_LOG_FILTER), doc: "tracing filter" },
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
fn default_value(name: &str) -> Option<&'static str> {
    SETTINGS
        .iter()
        .find(|s| s.name == name)
        .and_then(|s| match s.default {
            Value(v) => Some(v),
            Absent(_) => None,
        })
}

/// The `RELAY_*` variables of one load, and (for the settings test) which names were read.
pub(crate) struct Vars<'a> {
    map: &'a HashMap<String, String>,
    read: std::cell::RefCell<std::collections::BTreeSet<String>>,
}

impl<'a> Vars<'a> {
    pub(crate) fn new(map: &'a HashMap<String, String>) -> Self {
        Vars {
            map,
            read: Default::default(),
        }
    }

    /// The set value, trimmed; empty counts as unset.
    pub(crate) fn get(&self, name: &str) -> Option<String> {
        self.read.borrow_mut().insert(name.to_string());
        self.map
            .get(name)
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty())
    }

    /// The set value, else the setting's default from [`SETTINGS`].
    pub(crate) fn get_or_default(&self, name: &str) -> String {
        self.get(name).unwrap_or_else(|| {
            default_value(name)
                .unwrap_or_else(|| panic!("{name} has no value default in SETTINGS"))
                .to_string()
        })
    }

    pub(crate) fn parse<T>(&self, name: &str) -> Result<T, ConfigError>
    where
        T: std::str::FromStr,
        T::Err: fmt::Display,
    {
        self.get_or_default(name)
            .parse()
            .map_err(|e: T::Err| invalid(name, e.to_string()))
    }

    pub(crate) fn parse_opt<T>(&self, name: &str) -> Result<Option<T>, ConfigError>
    where
        T: std::str::FromStr,
        T::Err: fmt::Display,
    {
        self.get(name)
            .map(|v| v.parse().map_err(|e: T::Err| invalid(name, e.to_string())))
            .transpose()
    }

    pub(crate) fn duration(&self, name: &str) -> Result<Duration, ConfigError> {
        humantime::parse_duration(&self.get_or_default(name))
            .map_err(|e| invalid(name, e.to_string()))
    }

    pub(crate) fn duration_opt(&self, name: &str) -> Result<Option<Duration>, ConfigError> {
        self.get(name)
            .map(|v| humantime::parse_duration(&v).map_err(|e| invalid(name, e.to_string())))
            .transpose()
    }
}

/// The whole configuration of one relay process. Each field comes from the setting it
/// names (see [`SETTINGS`] for defaults); the Genesys and CMS settings are read through
/// [`Config::genesys`] and [`Config::cms_url`], which fail naming what is missing.
#[derive(Debug, Clone)]
pub struct Config {
    /// `RELAY_KAFKA_BROKERS`: bootstrap servers.
    pub kafka_brokers: String,
    /// Every other `RELAY_KAFKA_*` variable, as rdkafka property names.
    pub kafka_passthrough: BTreeMap<String, String>,
    /// `RELAY_TOPIC_PREFIX`: first part of every topic name.
    pub topic_prefix: String,
    /// `RELAY_CONSUMER_GROUP`: group of the raw topic; the retry topics use `<group>-retry`.
    pub consumer_group: String,
    /// `RELAY_CREATE_TOPICS`: create missing topics at start-up.
    pub create_topics: bool,
    /// `RELAY_TOPIC_PARTITIONS`: partitions of topics the relay creates.
    pub topic_partitions: i32,
    /// `RELAY_TOPIC_REPLICATION`: replication factor of topics the relay creates.
    pub topic_replication: i32,
    /// `RELAY_TOPIC_MIN_INSYNC_REPLICAS`: `min.insync.replicas` of topics the relay
    /// creates; `None` keeps the broker's default.
    pub topic_min_insync_replicas: Option<i32>,
    /// `RELAY_HTTP_ADDR`: where the ingress listens.
    pub http_addr: SocketAddr,
    /// `RELAY_ADMIN_ADDR`: where `/healthz`, `/readyz` and `/metrics` listen.
    pub admin_addr: SocketAddr,
    /// `RELAY_WEBHOOK_SECRET`: static header value and HMAC key of `X-Relay-Signature`.
    pub webhook_secret: Option<Secret>,
    /// `RELAY_WEBHOOK_SECRET_HEADER`: the header that carries the static secret.
    pub webhook_secret_header: String,
    /// `RELAY_WEBHOOK_BASIC_USER`: HTTP Basic user (set together with the password).
    pub webhook_basic_user: Option<Secret>,
    /// `RELAY_WEBHOOK_BASIC_PASSWORD`: HTTP Basic password (set together with the user).
    pub webhook_basic_password: Option<Secret>,
    /// `RELAY_WEBHOOK_AUTH=none`: the ingress may run without any credential.
    pub webhook_auth_none: bool,
    /// `RELAY_TLS_CERT`: PEM certificate chain for HTTPS on the ingress.
    pub tls_cert: Option<std::path::PathBuf>,
    /// `RELAY_TLS_KEY`: PEM private key for HTTPS on the ingress.
    pub tls_key: Option<std::path::PathBuf>,
    /// `RELAY_MAX_BODY_BYTES`; unset = the largest body the producer's
    /// `message.max.bytes` can carry (see `ingress::body_limit`).
    pub max_body_bytes: Option<usize>,
    /// `RELAY_PRODUCE_TIMEOUT`: longest wait for the broker's acknowledgement.
    pub produce_timeout: Duration,
    /// `RELAY_GENESYS_API_BASE`, else `https://api.<RELAY_GENESYS_REGION>`.
    genesys_api_base: String,
    /// `RELAY_GENESYS_LOGIN_BASE`, else `https://login.<RELAY_GENESYS_REGION>`.
    genesys_login_base: String,
    /// `RELAY_GENESYS_RATE_LIMIT`: requests per minute, at least 1.
    genesys_rate_limit: u32,
    /// `RELAY_GENESYS_BUDGET_MAX_WAIT`.
    genesys_budget_max_wait: Duration,
    /// `RELAY_GENESYS_CACHE_TTL`.
    genesys_cache_ttl: Duration,
    /// `RELAY_GENESYS_CLIENT_ID`; required by [`Config::genesys`].
    genesys_client_id: Option<String>,
    /// `RELAY_GENESYS_CLIENT_SECRET`; required by [`Config::genesys`].
    genesys_client_secret: Option<Secret>,
    /// `RELAY_CMS_URL`; required by [`Config::cms_url`].
    cms_url: Option<String>,
    /// `RELAY_CMS_API_KEY`: sent as a bearer token to the CMS.
    pub cms_api_key: Option<Secret>,
    /// `RELAY_FORWARD_URL`: the HTTP backend of `forward` and enriched events.
    pub forward_url: Option<String>,
    /// `RELAY_RETRY_DELAYS`: one retry tier per delay, in order.
    pub retry_delays: Vec<Duration>,
    /// `RELAY_MAX_IN_FLIGHT`: records handled concurrently per consumer (at least 1).
    pub max_in_flight: usize,
    /// `RELAY_SCHEMA_REGISTRY_URL`: Confluent wire format and registered schemas when set.
    pub schema_registry_url: Option<String>,
    /// `RELAY_ATTRIBUTE_MAP`: Genesys attribute -> typed CMS field.
    pub attribute_map: Vec<AttributeMapping>,
    /// `RELAY_CMS_ENTRY_KEY`: which id names a guest sync's CMS entry.
    pub cms_entry_key: EntryKey,
    /// `RELAY_ROUTES`: `(pattern, route)` pairs tried before the default table.
    pub routes: Vec<(String, String)>,
    /// `RELAY_HTTP_TIMEOUT`: timeout of each outbound request.
    pub http_timeout: Duration,
    /// `RELAY_IDEMPOTENCY_CAPACITY`: idempotency marks kept in memory.
    pub idempotency_capacity: u64,
    /// `RELAY_IDEMPOTENCY_TTL`: how long a mark is kept in memory after its event was handled.
    pub idempotency_ttl: Duration,
    /// `RELAY_IDEMPOTENCY_RETENTION`: retention of the idempotency topic when the relay
    /// creates it; `None` = compact only.
    pub idempotency_retention: Option<Duration>,
    /// `RELAY_SHUTDOWN_TIMEOUT`: longest drain of in-flight events on SIGTERM.
    pub shutdown_timeout: Duration,
    /// `RELAY_LOG_FORMAT`.
    pub log_format: LogFormat,
    /// `RELAY_LISTEN_*`: the Notifications API source.
    pub listen: crate::listen::ListenSettings,
    /// `RELAY_ADMIN_TOKEN`: the operator console.
    pub console: crate::console::ConsoleSettings,
}

/// Settings that are `RELAY_KAFKA_*` but are not rdkafka passthrough.
const KAFKA_OWN_KEYS: &[&str] = &["RELAY_KAFKA_BROKERS"];

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

    /// Builds the configuration from `RELAY_*` variables; unset ones take the defaults of
    /// [`SETTINGS`].
    pub fn from_vars(vars: &HashMap<String, String>) -> Result<Self, ConfigError> {
        Self::read(&Vars::new(vars))
    }

    fn read(v: &Vars<'_>) -> Result<Self, ConfigError> {
        let kafka_passthrough = v
            .map
            .iter()
            .filter(|(k, _)| k.starts_with("RELAY_KAFKA_") && !KAFKA_OWN_KEYS.contains(&k.as_str()))
            .map(|(k, v)| {
                let prop = k["RELAY_KAFKA_".len()..].to_lowercase().replace('_', ".");
                (prop, v.clone())
            })
            .collect();
        // The relay's promises rest on `acks=all` (docs/architecture.md): a weaker setting
        // would let the ingress answer 202 for a record a broker failure can lose.
        if let Some(acks) = v.get("RELAY_KAFKA_ACKS") {
            if !matches!(acks.to_ascii_lowercase().as_str(), "all" | "-1") {
                return Err(invalid(
                    "RELAY_KAFKA_ACKS",
                    format!("{acks:?} would weaken acks=all, which the relay requires; remove the setting"),
                ));
            }
        }
        let retry_delays = parse_delays(
            "RELAY_RETRY_DELAYS",
            &v.get_or_default("RELAY_RETRY_DELAYS"),
        )?;
        let attribute_map = parse_attribute_map(&v.get_or_default("RELAY_ATTRIBUTE_MAP"))?;
        let region = v.get_or_default("RELAY_GENESYS_REGION");
        if region.contains('/') || region.contains(':') || region.starts_with('.') {
            return Err(invalid(
                "RELAY_GENESYS_REGION",
                format!("{region:?} is not a region domain such as mypurecloud.de"),
            ));
        }
        let cms_entry_key = match v.get_or_default("RELAY_CMS_ENTRY_KEY").as_str() {
            "conversation" => EntryKey::Conversation,
            "participant" => EntryKey::Participant,
            "external_contact" => EntryKey::ExternalContact,
            other => {
                return Err(invalid(
                    "RELAY_CMS_ENTRY_KEY",
                    format!("{other:?} is not conversation, participant or external_contact"),
                ))
            }
        };
        let routes = parse_routes(&v.get("RELAY_ROUTES").unwrap_or_default())?;
        let webhook_auth_none = match v.get_or_default("RELAY_WEBHOOK_AUTH").as_str() {
            "required" => false,
            "none" => true,
            other => {
                return Err(invalid(
                    "RELAY_WEBHOOK_AUTH",
                    format!("{other:?} is not required or none"),
                ))
            }
        };
        let webhook_basic_user = v.get("RELAY_WEBHOOK_BASIC_USER").map(Secret::new);
        let webhook_basic_password = v.get("RELAY_WEBHOOK_BASIC_PASSWORD").map(Secret::new);
        match (&webhook_basic_user, &webhook_basic_password) {
            (Some(_), None) => return Err(ConfigError::Missing("RELAY_WEBHOOK_BASIC_PASSWORD")),
            (None, Some(_)) => return Err(ConfigError::Missing("RELAY_WEBHOOK_BASIC_USER")),
            _ => {}
        }
        let tls_cert = v.get("RELAY_TLS_CERT").map(std::path::PathBuf::from);
        let tls_key = v.get("RELAY_TLS_KEY").map(std::path::PathBuf::from);
        match (&tls_cert, &tls_key) {
            (Some(_), None) => return Err(ConfigError::Missing("RELAY_TLS_KEY")),
            (None, Some(_)) => return Err(ConfigError::Missing("RELAY_TLS_CERT")),
            _ => {}
        }
        let log_format = match v.get_or_default("RELAY_LOG_FORMAT").as_str() {
            "human" | "text" => LogFormat::Human,
            "json" => LogFormat::Json,
            other => {
                return Err(invalid(
                    "RELAY_LOG_FORMAT",
                    format!("{other:?} is not human or json"),
                ))
            }
        };
        let config = Config {
            kafka_brokers: v.get_or_default("RELAY_KAFKA_BROKERS"),
            kafka_passthrough,
            topic_prefix: v.get_or_default("RELAY_TOPIC_PREFIX"),
            consumer_group: v.get_or_default("RELAY_CONSUMER_GROUP"),
            create_topics: v.parse("RELAY_CREATE_TOPICS")?,
            topic_partitions: v.parse("RELAY_TOPIC_PARTITIONS")?,
            topic_replication: v.parse("RELAY_TOPIC_REPLICATION")?,
            topic_min_insync_replicas: v.parse_opt("RELAY_TOPIC_MIN_INSYNC_REPLICAS")?,
            http_addr: v.parse("RELAY_HTTP_ADDR")?,
            admin_addr: v.parse("RELAY_ADMIN_ADDR")?,
            webhook_secret: v.get("RELAY_WEBHOOK_SECRET").map(Secret::new),
            webhook_secret_header: v.get_or_default("RELAY_WEBHOOK_SECRET_HEADER"),
            webhook_basic_user,
            webhook_basic_password,
            webhook_auth_none,
            tls_cert,
            tls_key,
            max_body_bytes: v.parse_opt("RELAY_MAX_BODY_BYTES")?,
            produce_timeout: v.duration("RELAY_PRODUCE_TIMEOUT")?,
            genesys_api_base: v
                .get("RELAY_GENESYS_API_BASE")
                .unwrap_or_else(|| format!("https://api.{region}")),
            genesys_login_base: v
                .get("RELAY_GENESYS_LOGIN_BASE")
                .unwrap_or_else(|| format!("https://login.{region}")),
            genesys_rate_limit: match v.parse("RELAY_GENESYS_RATE_LIMIT")? {
                0 => return Err(invalid("RELAY_GENESYS_RATE_LIMIT", "must be at least 1")),
                n => n,
            },
            genesys_budget_max_wait: v.duration("RELAY_GENESYS_BUDGET_MAX_WAIT")?,
            genesys_cache_ttl: v.duration("RELAY_GENESYS_CACHE_TTL")?,
            genesys_client_id: v.get("RELAY_GENESYS_CLIENT_ID"),
            genesys_client_secret: v.get("RELAY_GENESYS_CLIENT_SECRET").map(Secret::new),
            cms_url: v.get("RELAY_CMS_URL"),
            cms_api_key: v.get("RELAY_CMS_API_KEY").map(Secret::new),
            forward_url: v.get("RELAY_FORWARD_URL"),
            retry_delays,
            max_in_flight: v.parse::<usize>("RELAY_MAX_IN_FLIGHT")?.max(1),
            schema_registry_url: v.get("RELAY_SCHEMA_REGISTRY_URL"),
            attribute_map,
            cms_entry_key,
            routes,
            http_timeout: v.duration("RELAY_HTTP_TIMEOUT")?,
            idempotency_capacity: v.parse("RELAY_IDEMPOTENCY_CAPACITY")?,
            idempotency_ttl: v.duration("RELAY_IDEMPOTENCY_TTL")?,
            idempotency_retention: v.duration_opt("RELAY_IDEMPOTENCY_RETENTION")?,
            shutdown_timeout: v.duration("RELAY_SHUTDOWN_TIMEOUT")?,
            log_format,
            listen: crate::listen::ListenSettings::read(v)?,
            console: crate::console::ConsoleSettings::read(v)?,
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

    /// The topic names derived from `topic_prefix` and the number of retry tiers.
    pub fn topics(&self) -> crate::kafka::Topics {
        crate::kafka::Topics::new(&self.topic_prefix, self.retry_delays.len())
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

    /// The producer's `message.max.bytes`: `RELAY_KAFKA_MESSAGE_MAX_BYTES`, else
    /// librdkafka's default (1,000,000).
    pub fn producer_message_max_bytes(&self) -> Result<usize, ConfigError> {
        match self.kafka_passthrough.get("message.max.bytes") {
            None => Ok(LIBRDKAFKA_MESSAGE_MAX_BYTES),
            Some(v) => v.trim().parse().map_err(|e: std::num::ParseIntError| {
                invalid("RELAY_KAFKA_MESSAGE_MAX_BYTES", e.to_string())
            }),
        }
    }

    /// The ingress credentials; with none configured the ingress refuses to start unless
    /// `RELAY_WEBHOOK_AUTH=none` (`Ok(None)`). Configured credentials are always enforced.
    pub fn ingress_auth(&self) -> Result<Option<crate::ingress::IngressAuth>, ConfigError> {
        use crate::ingress::{BasicAuth, IngressAuth, WebhookAuth};
        let secret = self.webhook_secret.clone().map(WebhookAuth::new);
        let basic = match (&self.webhook_basic_user, &self.webhook_basic_password) {
            (Some(u), Some(p)) => Some(BasicAuth::new(u.clone(), p.clone())),
            _ => None,
        };
        match (secret, basic) {
            (None, None) if self.webhook_auth_none => Ok(None),
            (None, None) => Err(ConfigError::NoWebhookCredential),
            (secret, basic) => Ok(Some(IngressAuth { secret, basic })),
        }
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
    use std::collections::BTreeSet;

    fn vars(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

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

    /// `from_vars` reads exactly the listed settings (besides `RELAY_KAFKA_*` passthrough,
    /// and `RELAY_LOG`, which the binary's logging reads).
    #[test]
    fn from_vars_reads_exactly_the_listed_settings() {
        let empty = HashMap::new();
        let vars = Vars::new(&empty);
        Config::read(&vars).unwrap();
        let read: BTreeSet<String> = vars
            .read
            .into_inner()
            .into_iter()
            .filter(|n| !n.starts_with("RELAY_KAFKA_") || KAFKA_OWN_KEYS.contains(&n.as_str()))
            .collect();
        let listed: BTreeSet<String> = SETTINGS
            .iter()
            .map(|s| s.name.to_string())
            .filter(|n| n != KAFKA_PASSTHROUGH && n != "RELAY_LOG")
            .collect();
        assert_eq!(read, listed, "read by from_vars vs listed in SETTINGS");
        for s in SETTINGS {
            if let Value(v) = s.default {
                assert!(!v.is_empty(), "{}: empty value default", s.name);
            }
        }
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
    fn defaults_follow_the_design() {
        let c = Config::from_vars(&HashMap::new()).unwrap();
        assert_eq!(c.kafka_brokers, "localhost:9092");
        assert_eq!(c.topic_prefix, "genesys");
        assert_eq!(c.max_body_bytes, None);
        assert_eq!(c.producer_message_max_bytes().unwrap(), 1_000_000);
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
        let c = Config::from_vars(&vars(&[
            ("RELAY_WEBHOOK_SECRET", "hunter2"),
            ("RELAY_WEBHOOK_BASIC_USER", "basic-user-7"),
            ("RELAY_WEBHOOK_BASIC_PASSWORD", "basic-pass-9"),
        ]))
        .unwrap();
        let printed = format!("{c:?} {:?}", c.ingress_auth().unwrap());
        for secret in ["hunter2", "basic-user-7", "basic-pass-9"] {
            assert!(!printed.contains(secret), "{secret} in {printed}");
        }
    }

    #[test]
    fn ingress_auth_is_required_unless_explicitly_none() {
        let err = Config::from_vars(&HashMap::new())
            .unwrap()
            .ingress_auth()
            .unwrap_err()
            .to_string();
        assert!(err.contains("RELAY_WEBHOOK_AUTH=none"), "{err}");
        assert!(!err.contains('\n'), "one line: {err}");
        let none = Config::from_vars(&vars(&[("RELAY_WEBHOOK_AUTH", "none")])).unwrap();
        assert!(none.ingress_auth().unwrap().is_none());
        // `none` never switches off a configured credential.
        let both = Config::from_vars(&vars(&[
            ("RELAY_WEBHOOK_AUTH", "none"),
            ("RELAY_WEBHOOK_SECRET", "s"),
        ]))
        .unwrap();
        assert!(both.ingress_auth().unwrap().is_some());
        let basic = Config::from_vars(&vars(&[
            ("RELAY_WEBHOOK_BASIC_USER", "u"),
            ("RELAY_WEBHOOK_BASIC_PASSWORD", "p"),
        ]))
        .unwrap();
        let auth = basic.ingress_auth().unwrap().unwrap();
        assert!(auth.basic.is_some() && auth.secret.is_none());
        let half = Config::from_vars(&vars(&[("RELAY_WEBHOOK_BASIC_USER", "u")])).unwrap_err();
        assert_eq!(
            half.to_string(),
            "missing required setting RELAY_WEBHOOK_BASIC_PASSWORD"
        );
        let typo = Config::from_vars(&vars(&[("RELAY_WEBHOOK_AUTH", "off")])).unwrap_err();
        assert!(typo.to_string().contains("RELAY_WEBHOOK_AUTH"));
        let tls = Config::from_vars(&vars(&[("RELAY_TLS_CERT", "c.pem")])).unwrap_err();
        assert_eq!(tls.to_string(), "missing required setting RELAY_TLS_KEY");
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
