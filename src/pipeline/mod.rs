//! The worker: two consumer loops (fresh events on the raw topic, due retries on the
//! retry topics) feeding one [`Processor`] that routes each event, syncs it downstream
//! with an idempotency key, and hands failures to a retry tier or the dead-letter topic.

mod event_view;
mod failure;
mod hand_off;
mod processor;
mod retry_policy;
mod router;
mod routes;

pub use failure::{ErrorClass, Failure};
pub use hand_off::{FailureHandOff, HandOff, Provenance};
pub use processor::Processor;
pub use retry_policy::{NextStep, RetryPolicy};
pub use router::{Route, RouteTable, DEFAULT_ROUTES};
pub use routes::{Outcome, Routes};

use crate::app::StartError;
use crate::config::Config;
use crate::genesys::GenesysClient;
use crate::idempotency::IdempotencyStore;
use crate::kafka::{client_config, ConsumerLoop, ConsumerOptions, EventProducer, Topics};
use crate::metrics::Metrics;
use crate::schema::Codec;
use crate::sinks::{CmsClient, HttpForwarder};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// A started worker: its consumer loops and the idempotency tail.
pub struct Worker {
    tasks: Vec<JoinHandle<()>>,
    assigned: Vec<Arc<AtomicBool>>,
}

impl Worker {
    pub async fn start(
        cfg: &Config,
        topics: &Topics,
        codec: Codec,
        producer: Arc<EventProducer>,
        metrics: Arc<Metrics>,
        shutdown: watch::Receiver<bool>,
    ) -> Result<Self, StartError> {
        metrics.init_retry_tiers(cfg.retry_delays.len());
        let http = reqwest::Client::builder()
            .timeout(cfg.http_timeout)
            .pool_max_idle_per_host(cfg.max_in_flight)
            .build()?;
        let idempotency = IdempotencyStore::new(
            cfg,
            &topics.idempotency,
            codec.clone(),
            producer.clone(),
            metrics.clone(),
        );
        let tail = idempotency
            .start_tail(cfg, shutdown.clone(), Duration::from_secs(60))
            .await?;
        let routes = Routes {
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
            codec,
            router: RouteTable::new(&cfg.routes, cfg.forward_url.is_some()),
            routes,
            idempotency,
            hand_off: FailureHandOff {
                producer,
                topics: topics.clone(),
                policy: RetryPolicy::new(cfg.retry_delays.clone()),
                metrics: metrics.clone(),
                shutdown: shutdown.clone(),
            },
            metrics: metrics.clone(),
        });
        let opts = |honour_not_before| ConsumerOptions {
            max_in_flight: cfg.max_in_flight,
            commit_interval: Duration::from_millis(500),
            honour_not_before,
            drain_timeout: cfg.shutdown_timeout,
        };
        let consumer_config = |group: &str| {
            client_config(
                cfg,
                &[
                    ("group.id", group),
                    ("auto.offset.reset", "earliest"),
                    ("enable.partition.eof", "false"),
                    ("fetch.wait.max.ms", "100"),
                ],
            )
        };
        let raw = ConsumerLoop::new(
            consumer_config(&cfg.consumer_group),
            &[&topics.raw],
            opts(false),
            metrics.clone(),
        )?;
        // Retries run in their own group so a rebalance of one never stalls the other.
        let retry_topics: Vec<&str> = topics.retry.iter().map(String::as_str).collect();
        let retry = ConsumerLoop::new(
            consumer_config(&format!("{}-retry", cfg.consumer_group)),
            &retry_topics,
            opts(true),
            metrics,
        )?;
        // Readiness follows the raw consumer only: with more workers than retry partitions a
        // worker may rightly hold no retry partition.
        let assigned = vec![raw.assigned_flag()];
        let tasks = vec![
            tokio::spawn(raw.run(processor.clone(), shutdown.clone())),
            tokio::spawn(retry.run(processor, shutdown)),
            tail,
        ];
        Ok(Worker { tasks, assigned })
    }

    /// Flags that are true while each consumer has partitions assigned (for `/readyz`).
    pub fn assigned_flags(&self) -> Vec<Arc<AtomicBool>> {
        self.assigned.clone()
    }

    pub fn into_tasks(self) -> Vec<JoinHandle<()>> {
        self.tasks
    }
}
