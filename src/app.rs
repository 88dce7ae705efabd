//! Wiring of the long-running roles (`serve`, `ingress`, `listen`, `worker`): builds the shared
//! pieces once, starts the listeners and consumers, and stops them in order on shutdown:
//! ingress stops accepting and finishes its requests, workers drain and commit, the
//! producer flushes.

use crate::admin_server::{self, Readiness};
use crate::config::Config;
use crate::ingress::Ingress;
use crate::kafka::{ensure_topics, EventProducer, Topics};
use crate::metrics::Metrics;
use crate::schema::{Codec, SchemaRegistry};
use crate::shutdown;
use std::net::SocketAddr;
use std::sync::Arc;
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
        self.producer
            .flush(std::time::Duration::from_secs(10))
            .await;
        tracing::info!("relay stopped");
    }

    /// Signals shutdown and waits for a graceful stop.
    pub async fn stop(self) {
        let _ = self.shutdown_tx.send(true);
        self.wait().await;
    }
}

/// The codec for the configured wire format, registering schemas when a registry is set.
pub async fn codec_for(cfg: &Config, topics: &Topics) -> Result<Codec, StartError> {
    match &cfg.schema_registry_url {
        None => Ok(Codec::single_object()),
        Some(url) => {
            let http = reqwest::Client::builder()
                .timeout(cfg.http_timeout)
                .build()?;
            Ok(SchemaRegistry::new(url, http)
                .codec(&topics.raw, &topics.enriched, &topics.idempotency)
                .await?)
        }
    }
}

/// Starts the parts of `role` and returns once they are listening / subscribed.
pub async fn start(cfg: Config, role: Role) -> Result<RunningRelay, StartError> {
    let metrics = Arc::new(Metrics::new());
    let topics = Topics::new(&cfg.topic_prefix, cfg.retry_delays.len());
    // Fail fast on missing or unsafe settings before touching the broker.
    if role.runs_ingress() {
        crate::ingress::check_settings(&cfg)?;
    }
    if role.runs_worker() {
        cfg.genesys()?;
        cfg.cms_url()?;
    }
    if cfg.create_topics {
        ensure_topics(&cfg, &topics).await?;
    }
    let codec = codec_for(&cfg, &topics).await?;
    let producer = Arc::new(EventProducer::new(&cfg, metrics.clone())?);
    let (shutdown_tx, shutdown_rx) = shutdown::channel();
    let mut tasks = Vec::new();
    let mut consumers_assigned = Vec::new();

    let mut ingress_addr = None;
    if role.runs_ingress() {
        let ingress = Arc::new(Ingress::new(
            &cfg,
            producer.clone(),
            codec.clone(),
            topics.raw.clone(),
            metrics.clone(),
        )?);
        let scheme = if ingress.is_tls() { "https" } else { "http" };
        let max_body_bytes = ingress.max_body_bytes();
        let (addr, server) =
            ingress.bind(cfg.http_addr, shutdown::signalled(shutdown_rx.clone()))?;
        tracing::info!(%addr, scheme, max_body_bytes, "ingress listening");
        ingress_addr = Some(addr);
        tasks.push(tokio::spawn(bounded_drain(
            server,
            shutdown_rx.clone(),
            cfg.shutdown_timeout,
            "ingress",
        )));
    }
    if role.runs_listener(&cfg) {
        tasks.push(
            crate::listen::start(
                &cfg,
                producer.clone(),
                codec.clone(),
                topics.raw.clone(),
                metrics.clone(),
                shutdown_rx.clone(),
            )
            .await?,
        );
    }
    if role.runs_worker() {
        let worker = crate::pipeline::Worker::start(
            &cfg,
            &topics,
            codec.clone(),
            producer.clone(),
            metrics.clone(),
            shutdown_rx.clone(),
        )
        .await?;
        consumers_assigned.extend(worker.assigned_flags());
        tasks.extend(worker.into_tasks());
    }
    let readiness = Readiness {
        producer: producer.clone(),
        consumers_assigned,
    };
    let (admin_addr, admin) = admin_server::bind(
        cfg.admin_addr,
        metrics.clone(),
        readiness,
        shutdown::signalled(shutdown_rx.clone()),
    )?;
    tracing::info!(addr = %admin_addr, "admin listening");
    tasks.push(tokio::spawn(bounded_drain(
        admin,
        shutdown_rx.clone(),
        cfg.shutdown_timeout,
        "admin",
    )));
    Ok(RunningRelay {
        ingress_addr,
        admin_addr,
        metrics,
        shutdown_tx,
        tasks,
        producer,
    })
}

/// Runs a warp server whose graceful shutdown waits for open connections; after the
/// shutdown signal, connections still open past `grace` (an idle keep-alive a client never
/// closes, for example) are dropped so the process exits in bounded time.
async fn bounded_drain(
    server: impl std::future::Future<Output = ()>,
    shutdown_rx: watch::Receiver<bool>,
    grace: std::time::Duration,
    name: &'static str,
) {
    let deadline = async {
        shutdown::signalled(shutdown_rx).await;
        tokio::time::sleep(grace).await;
    };
    tokio::select! {
        _ = server => {}
        _ = deadline => tracing::warn!(server = name, "connections still open after the grace period; closing them"),
    }
}
