//! The composition root: the one place that wires every long-running role (`serve`,
//! `ingress`, `listen`, `worker`). [`start`] reads top-down: check the settings a role needs, build
//! the shared pieces once (metrics, topics, one HTTP client, codec, producer, shutdown
//! channel), start each part the role runs, then the admin server. On shutdown the parts
//! stop in order: ingress stops accepting and finishes its requests, workers drain and
//! commit, the producer flushes.
//!
//! [`Config`] is the whole configuration: one typed slice per part, each read and checked
//! by the part that owns it; every `start_*` hands its part only its slice.
//!
//! Adding a role: a variant of [`Role`], its settings check in `check_settings`, and one
//! `start_*` function called from [`start`].

use crate::admin_server::{self, Readiness};
use crate::config::{ConfigError, LogFormat, Url, Vars};
use crate::genesys::{GenesysClient, GenesysSettings};
use crate::idempotency::IdempotencyStore;
use crate::ingress::{Ingress, IngressSettings};
use crate::kafka::{
    check_cluster, client_config, ensure_topics, ConsumerLoop, ConsumerOptions, EventProducer,
    KafkaSettings, Topics,
};
use crate::listen::ListenSettings;
use crate::metrics::Metrics;
use crate::pipeline::{
    FailureHandOff, Processor, RetryPolicy, RouteHandlers, RouteTable, WorkerSettings,
};
use crate::schema::{Codec, SchemaRegistry};
use crate::shutdown;
use crate::sinks::{CmsSink, HttpForwarder};
use crate::supervise::{Part, PartFailed, Supervisor};
use rdkafka::ClientConfig;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// The whole configuration of one relay process: each part's settings, read and checked
/// by that part, plus the few settings every part shares.
#[derive(Debug, Clone)]
pub struct Config {
    pub kafka: KafkaSettings,
    pub ingress: IngressSettings,
    pub genesys: GenesysSettings,
    pub worker: WorkerSettings,
    pub listen: ListenSettings,
    /// `RELAY_ADMIN_TOKEN`: the operator console.
    pub console: crate::console::ConsoleSettings,
    /// `RELAY_ADMIN_ADDR`: where `/healthz`, `/readyz` and `/metrics` listen.
    pub admin_addr: SocketAddr,
    /// `RELAY_SCHEMA_REGISTRY_URL`: Confluent wire format and registered schemas when set.
    pub schema_registry_url: Option<Url>,
    /// `RELAY_HTTP_TIMEOUT`: timeout of each outbound request.
    pub http_timeout: Duration,
    /// `RELAY_SHUTDOWN_TIMEOUT`: longest drain of in-flight events on SIGTERM.
    pub shutdown_timeout: Duration,
    /// `RELAY_LOG_FORMAT`.
    pub log_format: LogFormat,
}

impl Config {
    /// Reads the process environment, over the TOML file when one is given.
    pub fn load(file: Option<&Path>) -> Result<Self, ConfigError> {
        Self::read(&Vars::load(file)?)
    }

    /// Builds the configuration from `RELAY_*` variables; unset ones take the defaults of
    /// the settings table.
    pub fn from_vars(vars: &HashMap<String, String>) -> Result<Self, ConfigError> {
        Self::read(&Vars::new(vars.clone()))
    }

    /// Every part reads its own slice.
    pub fn read(v: &Vars) -> Result<Self, ConfigError> {
        Ok(Config {
            kafka: KafkaSettings::read(v)?,
            ingress: IngressSettings::read(v)?,
            genesys: GenesysSettings::read(v)?,
            worker: WorkerSettings::read(v)?,
            listen: ListenSettings::read(v)?,
            console: crate::console::ConsoleSettings::read(v)?,
            admin_addr: v.parse("RELAY_ADMIN_ADDR")?,
            schema_registry_url: v.url_opt("RELAY_SCHEMA_REGISTRY_URL")?,
            http_timeout: v.duration("RELAY_HTTP_TIMEOUT")?,
            shutdown_timeout: v.duration("RELAY_SHUTDOWN_TIMEOUT")?,
            log_format: LogFormat::read(v)?,
        })
    }

    /// The topic names derived from the prefix and the number of retry tiers.
    pub fn topics(&self) -> Topics {
        Topics::new(&self.kafka.topic_prefix, self.worker.retry_delays.len())
    }

    /// The slice the operator commands (`dlq list`, `dlq replay`) and the console's
    /// dead-letter pages take.
    pub fn operator(&self) -> crate::operator::OperatorSettings {
        crate::operator::OperatorSettings {
            kafka: self.kafka.clone(),
            topics: self.topics(),
            schema_registry_url: self.schema_registry_url.clone(),
            http_timeout: self.http_timeout,
        }
    }
}

impl AsRef<KafkaSettings> for Config {
    fn as_ref(&self) -> &KafkaSettings {
        &self.kafka
    }
}

/// Which parts a process runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Serve,
    Ingress,
    Worker,
    /// The Notifications API source alone (`serve` runs it too when topics are set).
    Listen,
}

impl Role {
    fn runs_listener(self, cfg: &Config) -> bool {
        self == Role::Listen || (self == Role::Serve && cfg.listen.enabled())
    }
    fn runs_ingress(self) -> bool {
        matches!(self, Role::Serve | Role::Ingress)
    }
    fn runs_worker(self) -> bool {
        matches!(self, Role::Serve | Role::Worker)
    }
}

/// Why the relay could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    #[error("kafka: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    #[error(transparent)]
    KafkaUnreachable(#[from] crate::kafka::StartupCheckError),
    #[error(transparent)]
    Schema(#[from] crate::schema::SchemaError),
    #[error("cannot listen: {0}")]
    Bind(#[from] warp::Error),
    #[error("ingress: {0}")]
    Ingress(#[from] crate::ingress::ServeError),
    #[error("cannot build HTTP client: {0}")]
    Http(#[from] reqwest::Error),
    #[error("listen: {0}")]
    Listen(#[from] crate::listen::ListenError),
}

/// A started relay; [`RunningRelay::stop`] shuts it down gracefully.
pub struct RunningRelay {
    pub ingress_addr: Option<SocketAddr>,
    pub admin_addr: SocketAddr,
    pub metrics: Arc<Metrics>,
    shutdown_tx: watch::Sender<bool>,
    parts: Supervisor,
    producer: Arc<EventProducer>,
}

impl RunningRelay {
    /// A sender that triggers the same graceful shutdown as [`RunningRelay::stop`].
    pub fn shutdown_sender(&self) -> watch::Sender<bool> {
        self.shutdown_tx.clone()
    }

    /// Waits until every part has stopped: after a shutdown signal, or after a part
    /// failed or ended on its own, which stops the others and is returned (the binary
    /// exits non-zero with it; see `supervise`).
    pub async fn wait(self) -> Result<(), PartFailed> {
        let result = self.parts.wait(&self.shutdown_tx).await;
        self.producer.flush(Duration::from_secs(10)).await;
        match &result {
            Ok(()) => tracing::info!("relay stopped"),
            Err(e) => tracing::error!(error = %e, "relay stopped after a failure"),
        }
        result
    }

    /// Signals shutdown and waits for a graceful stop (a failure is logged by `wait`).
    pub async fn stop(self) {
        let _ = self.shutdown_tx.send(true);
        let _ = self.wait().await;
    }
}

/// Starts the parts of `role` and returns once they are listening / subscribed.
pub async fn start(cfg: Config, role: Role) -> Result<RunningRelay, StartError> {
    check_settings(&cfg, role)?;
    let shared = Shared::build(&cfg).await?;
    let (shutdown_tx, shutdown_rx) = shutdown::channel();
    let mut parts = Parts::default();
    if role.runs_ingress() {
        start_ingress(&cfg, &shared, &shutdown_rx, &mut parts)?;
    }
    let listen_status = if role.runs_listener(&cfg) {
        Some(start_listener(&cfg, &shared, &shutdown_rx, &mut parts).await?)
    } else {
        None
    };
    if role.runs_worker() {
        start_worker(&cfg, &shared, &shutdown_rx, &mut parts).await?;
    }
    let console = console_for(&cfg, &shared, role, listen_status);
    let admin_addr = start_admin(&cfg, &shared, console, &shutdown_rx, &mut parts)?;
    Ok(RunningRelay {
        ingress_addr: parts.ingress_addr,
        admin_addr,
        metrics: shared.metrics,
        shutdown_tx,
        parts: parts.supervisor,
        producer: shared.producer,
    })
}

/// Fails fast on missing or unsafe settings, before touching the broker.
fn check_settings(cfg: &Config, role: Role) -> Result<(), StartError> {
    if role.runs_ingress() {
        crate::ingress::check_settings(&cfg.ingress, cfg.kafka.message_max_bytes)?;
    }
    if role.runs_worker() {
        cfg.genesys.config()?;
        cfg.worker.cms_endpoint()?;
    }
    Ok(())
}

/// What every part uses, built once per process.
struct Shared {
    metrics: Arc<Metrics>,
    topics: Topics,
    http: reqwest::Client,
    codec: Codec,
    producer: Arc<EventProducer>,
}

impl Shared {
    /// The raw topic as the ingress and the listener write it.
    fn raw_topic(&self) -> crate::event::RawTopic {
        crate::event::RawTopic {
            producer: self.producer.clone(),
            codec: self.codec.clone(),
            topic: self.topics.raw.clone(),
        }
    }

    async fn build(cfg: &Config) -> Result<Self, StartError> {
        let metrics = Arc::new(start_up_metrics());
        let topics = cfg.topics();
        // First contact with the cluster: bounded, and a failure names the brokers and why.
        let kafka = cfg.kafka.clone();
        tokio::task::spawn_blocking(move || check_cluster(&kafka))
            .await
            .expect("the cluster check does not panic")?;
        if cfg.kafka.create_topics {
            ensure_topics(&cfg.kafka, &topics).await?;
        }
        let http = http_client(cfg)?;
        let codec = codec_for(cfg.schema_registry_url.as_ref(), &topics, &http).await?;
        let producer = Arc::new(EventProducer::new(&cfg.kafka, metrics.clone())?);
        Ok(Shared {
            metrics,
            topics,
            http,
            codec,
            producer,
        })
    }
}

/// Every series, with the worker's route, outcome and skip series declared at zero.
fn start_up_metrics() -> Metrics {
    let metrics = Metrics::new();
    crate::pipeline::declare_series(&metrics);
    metrics
}

/// What the started parts hand back: their tasks, and what `/readyz` and callers need.
#[derive(Default)]
struct Parts {
    supervisor: Supervisor,
    consumers_assigned: Vec<Arc<AtomicBool>>,
    ingress_addr: Option<SocketAddr>,
}

/// The one outbound HTTP client (Genesys, CMS, forward, schema registry, trigger
/// registration): one connection pool, one timeout.
pub fn http_client(cfg: &Config) -> Result<reqwest::Client, reqwest::Error> {
    reqwest::Client::builder()
        .timeout(cfg.http_timeout)
        .pool_max_idle_per_host(cfg.worker.max_in_flight)
        .build()
}

/// The codec for the configured wire format, registering schemas when a registry is set.
async fn codec_for(
    registry: Option<&Url>,
    topics: &Topics,
    http: &reqwest::Client,
) -> Result<Codec, StartError> {
    match registry {
        None => Ok(Codec::single_object()),
        Some(url) => Ok(
            SchemaRegistry::new(url.as_str().trim_end_matches('/'), http.clone())
                .codec(&topics.raw, &topics.enriched, &topics.idempotency)
                .await?,
        ),
    }
}

/// The webhook endpoint: accepts events onto the raw topic.
fn start_ingress(
    cfg: &Config,
    shared: &Shared,
    shutdown_rx: &watch::Receiver<bool>,
    parts: &mut Parts,
) -> Result<(), StartError> {
    let ingress = Arc::new(Ingress::new(
        &cfg.ingress,
        cfg.kafka.message_max_bytes,
        shared.raw_topic(),
        shared.metrics.clone(),
    )?);
    let scheme = if ingress.is_tls() { "https" } else { "http" };
    let max_body_bytes = ingress.max_body_bytes();
    let (addr, server) = ingress.bind(
        cfg.ingress.http_addr,
        shutdown::signalled(shutdown_rx.clone()),
    )?;
    tracing::info!(%addr, scheme, max_body_bytes, "ingress listening");
    parts.ingress_addr = Some(addr);
    parts.supervisor.spawn(
        Part::Ingress,
        shutdown::drain_within(server, shutdown_rx.clone(), cfg.shutdown_timeout, "ingress"),
    );
    Ok(())
}

/// The Notifications API source: subscribed channels' notifications onto the raw topic.
/// Returns the listener's per-topic status, which the console shows.
async fn start_listener(
    cfg: &Config,
    shared: &Shared,
    shutdown_rx: &watch::Receiver<bool>,
    parts: &mut Parts,
) -> Result<Arc<crate::listen::ListenStatus>, StartError> {
    let timeouts = crate::listen::Timeouts {
        shutdown: cfg.shutdown_timeout,
        connect: cfg.http_timeout,
    };
    let genesys = GenesysClient::new(
        cfg.genesys.config()?,
        shared.http.clone(),
        shared.metrics.clone(),
    );
    let status = Arc::new(crate::listen::ListenStatus::new(shared.metrics.clone()));
    let task = crate::listen::start(
        &cfg.listen,
        timeouts,
        genesys,
        shared.raw_topic(),
        shared.metrics.clone(),
        shutdown_rx.clone(),
        Arc::clone(&status),
    )
    .await?;
    parts.supervisor.adopt(Part::Listener, task);
    Ok(status)
}

/// The worker: the idempotency tail, then two consumer loops (fresh events on the raw
/// topic, due retries on the retry topics) feeding one `Processor`.
async fn start_worker(
    cfg: &Config,
    shared: &Shared,
    shutdown_rx: &watch::Receiver<bool>,
    parts: &mut Parts,
) -> Result<(), StartError> {
    let Shared {
        metrics,
        topics,
        http,
        codec,
        producer,
    } = shared;
    let worker = &cfg.worker;
    metrics.init_retry_tiers(worker.retry_delays.len());
    let idempotency = IdempotencyStore::new(
        worker.idempotency_capacity,
        worker.idempotency_ttl,
        &topics.idempotency,
        codec.clone(),
        producer.clone(),
        metrics.clone(),
    );
    let tail = idempotency
        .start_tail(&cfg.kafka, shutdown_rx.clone(), Duration::from_secs(60))
        .await?;
    let handlers = RouteHandlers {
        genesys: GenesysClient::new(cfg.genesys.config()?, http.clone(), metrics.clone()),
        cms: CmsSink::new(worker.cms_endpoint()?, http.clone(), metrics.clone()),
        forwarder: worker
            .forward_url
            .as_ref()
            .map(|u| HttpForwarder::new(u.as_str().into(), http.clone(), metrics.clone())),
        producer: producer.clone(),
        codec: codec.clone(),
        enriched_topic: topics.enriched.clone(),
        attribute_map: worker.attribute_map.clone(),
        entry_key: worker.cms_entry_key,
        guest_scope: worker.guest_scope,
        idempotency: idempotency.clone(),
    };
    let processor = Arc::new(Processor {
        codec: codec.clone(),
        router: RouteTable::new(&worker.routes, worker.forward_url.is_some()),
        handlers,
        idempotency,
        hand_off: FailureHandOff {
            producer: producer.clone(),
            topics: topics.clone(),
            policy: RetryPolicy::new(worker.retry_delays.clone()),
            metrics: metrics.clone(),
            shutdown: shutdown_rx.clone(),
        },
        metrics: metrics.clone(),
    });
    let opts = |honour_not_before| ConsumerOptions {
        max_in_flight: worker.max_in_flight,
        commit_interval: Duration::from_millis(500),
        honour_not_before,
        drain_timeout: cfg.shutdown_timeout,
    };
    let raw = ConsumerLoop::new(
        consumer_config(&cfg.kafka, &cfg.kafka.consumer_group),
        &[&topics.raw],
        opts(false),
        metrics.clone(),
    )?;
    // Retries run in their own group so a rebalance of one never stalls the other.
    let retry_topics: Vec<&str> = topics.retry.iter().map(String::as_str).collect();
    let retry = ConsumerLoop::new(
        consumer_config(&cfg.kafka, &format!("{}-retry", cfg.kafka.consumer_group)),
        &retry_topics,
        opts(true),
        metrics.clone(),
    )?;
    // Readiness follows the raw consumer only: with more workers than retry partitions a
    // worker may rightly hold no retry partition.
    parts.consumers_assigned.push(raw.assigned_flag());
    let supervisor = &mut parts.supervisor;
    supervisor.spawn(
        Part::RawConsumer,
        raw.run(processor.clone(), shutdown_rx.clone()),
    );
    supervisor.spawn(
        Part::RetryConsumer,
        retry.run(processor, shutdown_rx.clone()),
    );
    supervisor.adopt(Part::IdempotencyTail, tail);
    Ok(())
}

/// Settings of a worker's consumer group.
fn consumer_config(kafka: &KafkaSettings, group: &str) -> ClientConfig {
    client_config(
        kafka,
        &[
            ("group.id", group),
            ("auto.offset.reset", "earliest"),
            ("enable.partition.eof", "false"),
            ("fetch.wait.max.ms", "100"),
        ],
    )
}

/// `/healthz`, `/readyz` (producer reachable, consumers assigned) and `/metrics`; started
/// last so readiness sees every consumer.
fn start_admin(
    cfg: &Config,
    shared: &Shared,
    console: crate::console::Console,
    shutdown_rx: &watch::Receiver<bool>,
    parts: &mut Parts,
) -> Result<SocketAddr, StartError> {
    let readiness = Readiness {
        producer: shared.producer.clone(),
        consumers_assigned: parts.consumers_assigned.clone(),
    };
    let (addr, admin) = admin_server::bind(
        cfg.admin_addr,
        shared.metrics.clone(),
        readiness,
        Arc::new(console),
        shutdown::signalled(shutdown_rx.clone()),
    )?;
    tracing::info!(%addr, "admin listening");
    parts.supervisor.spawn(
        Part::Admin,
        shutdown::drain_within(admin, shutdown_rx.clone(), cfg.shutdown_timeout, "admin"),
    );
    Ok(addr)
}

/// The operator console of this process (off without `RELAY_ADMIN_TOKEN`).
fn console_for(
    cfg: &Config,
    shared: &Shared,
    role: Role,
    listen_status: Option<Arc<crate::listen::ListenStatus>>,
) -> crate::console::Console {
    let host = std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".into());
    let role_name = format!("{role:?}").to_lowercase();
    let mut listen_configured = cfg.listen.topics.clone();
    match &cfg.listen.queues {
        crate::listen::QueueSelection::Off => {}
        crate::listen::QueueSelection::All => listen_configured.push("queues: all".into()),
        crate::listen::QueueSelection::Ids(ids) => {
            listen_configured.push(format!("queues: {}", ids.join(", ")))
        }
    }
    crate::console::Console::new(crate::console::ConsoleContext {
        settings: cfg.console.clone(),
        operator: crate::operator::OperatorSettings {
            topics: shared.topics.clone(),
            ..cfg.operator()
        },
        consumer_group: cfg.kafka.consumer_group.clone(),
        producer: shared.producer.clone(),
        metrics: shared.metrics.clone(),
        codec: shared.codec.clone(),
        process: format!("{role_name} on {host} (pid {})", std::process::id()),
        genesys_budget_per_minute: if role.runs_worker() {
            cfg.genesys.config().ok().map(|g| g.rate_limit_per_minute)
        } else {
            None
        },
        listen_configured,
        listen_status: listen_status.map(|st| st as Arc<dyn crate::console::ListenStatus>),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{KAFKA_PASSTHROUGH, SETTINGS};
    use std::collections::BTreeSet;

    /// `from_vars` reads exactly the listed settings (besides `RELAY_KAFKA_*` passthrough,
    /// and `RELAY_LOG`, which the binary's logging reads).
    #[test]
    fn from_vars_reads_exactly_the_listed_settings() {
        let vars = Vars::new(HashMap::new());
        Config::read(&vars).unwrap();
        let read: BTreeSet<String> = vars
            .names_read()
            .into_iter()
            .filter(|n| {
                !n.starts_with("RELAY_KAFKA_")
                    || n == "RELAY_KAFKA_BROKERS"
                    || n == "RELAY_KAFKA_STARTUP_TIMEOUT"
            })
            .collect();
        let listed: BTreeSet<String> = SETTINGS
            .iter()
            .map(|s| s.name.to_string())
            .filter(|n| n != KAFKA_PASSTHROUGH && n != "RELAY_LOG")
            .collect();
        assert_eq!(read, listed, "read by from_vars vs listed in SETTINGS");
    }

    /// Every family the dashboard queries is exported from start-up, so a panel shows zero
    /// instead of "no data" (`relay_consumer_lag` only once partitions are assigned).
    #[test]
    fn every_dashboard_family_exists_at_start_up() {
        let dashboard = include_str!("../grafana/dashboards/genesys-relay.json");
        let metrics = start_up_metrics();
        // The worker declares its retry tiers as it starts.
        metrics.init_retry_tiers(3);
        let text = metrics.render();
        let mut missing = Vec::new();
        for (i, _) in dashboard.match_indices("relay_") {
            let name: String = dashboard[i..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            let family = name.trim_end_matches("_bucket").to_string();
            if family == "relay_consumer_lag" || missing.contains(&family) {
                continue;
            }
            if !text.lines().any(|l| {
                l.starts_with(&format!("{family}{{"))
                    || l.starts_with(&format!("{family} "))
                    || l.starts_with(&format!("{family}_bucket{{"))
            }) {
                missing.push(family);
            }
        }
        assert!(missing.is_empty(), "no series at start-up: {missing:?}");
    }

    /// Each part gets its slice: a value set for one part shows up in that part's settings.
    #[test]
    fn each_part_reads_its_slice() {
        let vars: HashMap<String, String> = [
            ("RELAY_TOPIC_PREFIX", "acme"),
            ("RELAY_RETRY_DELAYS", "1s,2s"),
            ("RELAY_HTTP_ADDR", "127.0.0.1:1"),
            ("RELAY_LISTEN_TOPICS", "v2.users.u.presence"),
            ("RELAY_SCHEMA_REGISTRY_URL", "http://registry:8081"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let c = Config::from_vars(&vars).unwrap();
        assert_eq!(c.topics(), Topics::new("acme", 2));
        assert_eq!(c.ingress.http_addr.port(), 1);
        assert!(Role::Serve.runs_listener(&c));
        assert_eq!(c.schema_registry_url.unwrap().host_str(), Some("registry"));
        let bad = [(
            "RELAY_SCHEMA_REGISTRY_URL".to_string(),
            "registry".to_string(),
        )];
        let err = Config::from_vars(&bad.into_iter().collect()).unwrap_err();
        assert!(
            err.to_string().contains("RELAY_SCHEMA_REGISTRY_URL"),
            "{err}"
        );
    }
}
