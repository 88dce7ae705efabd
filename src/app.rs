//! The composition root: the one place that wires every long-running role (`serve`,
//! `ingress`, `listen`, `worker`). [`start`] reads top-down: check the settings a role needs, build
//! the shared pieces once (metrics, topics, one HTTP client, codec, producer, shutdown
//! channel), start each part the role runs, then the admin server. On shutdown the parts
//! stop in order: ingress stops accepting and finishes its requests, workers drain and
//! commit, the producer flushes.
//!
//! Adding a role: a variant of [`Role`], its settings check in `check_settings`, and one
//! `start_*` function called from [`start`].

use crate::admin_server::{self, Readiness};
use crate::config::Config;
use crate::genesys::GenesysClient;
use crate::idempotency::IdempotencyStore;
use crate::ingress::Ingress;
use crate::kafka::{
    client_config, ensure_topics, ConsumerLoop, ConsumerOptions, EventProducer, Topics,
};
use crate::metrics::Metrics;
use crate::pipeline::{FailureHandOff, Processor, RetryPolicy, RouteHandlers, RouteTable};
use crate::schema::{Codec, SchemaRegistry};
use crate::shutdown;
use crate::sinks::{CmsClient, HttpForwarder};
use rdkafka::ClientConfig;
use std::net::SocketAddr;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinHandle;

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
    Schema(#[from] crate::schema::SchemaError),
    #[error("cannot listen: {0}")]
    Bind(#[from] warp::Error),
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
    tasks: Vec<JoinHandle<()>>,
    producer: Arc<EventProducer>,
}

impl RunningRelay {
    /// A sender that triggers the same graceful shutdown as [`RunningRelay::stop`].
    pub fn shutdown_sender(&self) -> watch::Sender<bool> {
        self.shutdown_tx.clone()
    }

    /// Waits until every part has stopped (after a shutdown signal).
    pub async fn wait(self) {
        for task in self.tasks {
            let _ = task.await;
        }
        self.producer.flush(Duration::from_secs(10)).await;
        tracing::info!("relay stopped");
    }

    /// Signals shutdown and waits for a graceful stop.
    pub async fn stop(self) {
        let _ = self.shutdown_tx.send(true);
        self.wait().await;
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
    if role.runs_listener(&cfg) {
        start_listener(&cfg, &shared, &shutdown_rx, &mut parts).await?;
    }
    if role.runs_worker() {
        start_worker(&cfg, &shared, &shutdown_rx, &mut parts).await?;
    }
    let console = console_for(&cfg, &shared, role);
    let admin_addr = start_admin(&cfg, &shared, console, &shutdown_rx, &mut parts)?;
    Ok(RunningRelay {
        ingress_addr: parts.ingress_addr,
        admin_addr,
        metrics: shared.metrics,
        shutdown_tx,
        tasks: parts.tasks,
        producer: shared.producer,
    })
}

/// Fails fast on missing or unsafe settings, before touching the broker.
fn check_settings(cfg: &Config, role: Role) -> Result<(), StartError> {
    if role.runs_ingress() {
        crate::ingress::check_settings(cfg)?;
    }
    if role.runs_worker() {
        cfg.genesys()?;
        cfg.cms_url()?;
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
    async fn build(cfg: &Config) -> Result<Self, StartError> {
        let metrics = Arc::new(Metrics::new());
        let topics = cfg.topics();
        if cfg.create_topics {
            ensure_topics(cfg, &topics).await?;
        }
        let http = http_client(cfg)?;
        let codec = codec_for(cfg, &topics, &http).await?;
        let producer = Arc::new(EventProducer::new(cfg, metrics.clone())?);
        Ok(Shared {
            metrics,
            topics,
            http,
            codec,
            producer,
        })
    }
}

/// What the started parts hand back: their tasks, and what `/readyz` and callers need.
#[derive(Default)]
struct Parts {
    tasks: Vec<JoinHandle<()>>,
    consumers_assigned: Vec<Arc<AtomicBool>>,
    ingress_addr: Option<SocketAddr>,
}

/// The one outbound HTTP client (Genesys, CMS, forward, schema registry, trigger
/// registration): one connection pool, one timeout.
pub fn http_client(cfg: &Config) -> Result<reqwest::Client, reqwest::Error> {
    reqwest::Client::builder()
        .timeout(cfg.http_timeout)
        .pool_max_idle_per_host(cfg.max_in_flight)
        .build()
}

/// The codec for the configured wire format, registering schemas when a registry is set.
async fn codec_for(
    cfg: &Config,
    topics: &Topics,
    http: &reqwest::Client,
) -> Result<Codec, StartError> {
    match &cfg.schema_registry_url {
        None => Ok(Codec::single_object()),
        Some(url) => Ok(SchemaRegistry::new(url, http.clone())
            .codec(&topics.raw, &topics.enriched, &topics.idempotency)
            .await?),
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
        cfg,
        shared.producer.clone(),
        shared.codec.clone(),
        shared.topics.raw.clone(),
        shared.metrics.clone(),
    )?);
    let scheme = if ingress.is_tls() { "https" } else { "http" };
    let max_body_bytes = ingress.max_body_bytes();
    let (addr, server) = ingress.bind(cfg.http_addr, shutdown::signalled(shutdown_rx.clone()))?;
    tracing::info!(%addr, scheme, max_body_bytes, "ingress listening");
    parts.ingress_addr = Some(addr);
    parts.tasks.push(tokio::spawn(shutdown::drain_within(
        server,
        shutdown_rx.clone(),
        cfg.shutdown_timeout,
        "ingress",
    )));
    Ok(())
}

/// The Notifications API source: subscribed channels' notifications onto the raw topic.
async fn start_listener(
    cfg: &Config,
    shared: &Shared,
    shutdown_rx: &watch::Receiver<bool>,
    parts: &mut Parts,
) -> Result<(), StartError> {
    let task = crate::listen::start(
        cfg,
        shared.producer.clone(),
        shared.codec.clone(),
        shared.topics.raw.clone(),
        shared.metrics.clone(),
        shared.http.clone(),
        shutdown_rx.clone(),
    )
    .await?;
    parts.tasks.push(task);
    Ok(())
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
    metrics.init_retry_tiers(cfg.retry_delays.len());
    let idempotency = IdempotencyStore::new(
        cfg,
        &topics.idempotency,
        codec.clone(),
        producer.clone(),
        metrics.clone(),
    );
    let tail = idempotency
        .start_tail(cfg, shutdown_rx.clone(), Duration::from_secs(60))
        .await?;
    let handlers = RouteHandlers {
        genesys: GenesysClient::new(cfg.genesys()?, http.clone(), metrics.clone()),
        cms: CmsClient::new(
            cfg.cms_url()?,
            cfg.cms_api_key.clone(),
            http.clone(),
            metrics.clone(),
        ),
        forwarder: cfg
            .forward_url
            .clone()
            .map(|u| HttpForwarder::new(u, http.clone(), metrics.clone())),
        producer: producer.clone(),
        codec: codec.clone(),
        enriched_topic: topics.enriched.clone(),
        attribute_map: cfg.attribute_map.clone(),
        entry_key: cfg.cms_entry_key,
        idempotency: idempotency.clone(),
    };
    let processor = Arc::new(Processor {
        codec: codec.clone(),
        router: RouteTable::new(&cfg.routes, cfg.forward_url.is_some()),
        handlers,
        idempotency,
        hand_off: FailureHandOff {
            producer: producer.clone(),
            topics: topics.clone(),
            policy: RetryPolicy::new(cfg.retry_delays.clone()),
            metrics: metrics.clone(),
            shutdown: shutdown_rx.clone(),
        },
        metrics: metrics.clone(),
    });
    let opts = |honour_not_before| ConsumerOptions {
        max_in_flight: cfg.max_in_flight,
        commit_interval: Duration::from_millis(500),
        honour_not_before,
        drain_timeout: cfg.shutdown_timeout,
    };
    let raw = ConsumerLoop::new(
        consumer_config(cfg, &cfg.consumer_group),
        &[&topics.raw],
        opts(false),
        metrics.clone(),
    )?;
    // Retries run in their own group so a rebalance of one never stalls the other.
    let retry_topics: Vec<&str> = topics.retry.iter().map(String::as_str).collect();
    let retry = ConsumerLoop::new(
        consumer_config(cfg, &format!("{}-retry", cfg.consumer_group)),
        &retry_topics,
        opts(true),
        metrics.clone(),
    )?;
    // Readiness follows the raw consumer only: with more workers than retry partitions a
    // worker may rightly hold no retry partition.
    parts.consumers_assigned.push(raw.assigned_flag());
    parts.tasks.extend([
        tokio::spawn(raw.run(processor.clone(), shutdown_rx.clone())),
        tokio::spawn(retry.run(processor, shutdown_rx.clone())),
        tail,
    ]);
    Ok(())
}

/// Settings of a worker's consumer group.
fn consumer_config(cfg: &Config, group: &str) -> ClientConfig {
    client_config(
        cfg,
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
    parts.tasks.push(tokio::spawn(shutdown::drain_within(
        admin,
        shutdown_rx.clone(),
        cfg.shutdown_timeout,
        "admin",
    )));
    Ok(addr)
}

/// The operator console of this process (off without `RELAY_ADMIN_TOKEN`).
fn console_for(cfg: &Config, shared: &Shared, role: Role) -> crate::console::Console {
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
        config: cfg.clone(),
        topics: shared.topics.clone(),
        consumer_group: cfg.consumer_group.clone(),
        producer: shared.producer.clone(),
        metrics: shared.metrics.clone(),
        codec: shared.codec.clone(),
        process: format!("{role_name} on {host} (pid {})", std::process::id()),
        genesys_budget_per_minute: if role.runs_worker() {
            cfg.genesys().ok().map(|g| g.rate_limit_per_minute)
        } else {
            None
        },
        listen_configured,
        listen_status: None,
    })
}
