//! The acknowledged producer: `acks=all`, idempotent, bounded in time.
//!
//! A send either ends with the broker's acknowledgement or with an error within
//! `RELAY_PRODUCE_TIMEOUT`; a full local queue fails at once instead of waiting, so the
//! ingress can answer 503 quickly and never accepts what was not written.

use super::client_config;
use super::client_context::RelayClientContext;
use super::KafkaSettings;
use crate::metrics::Metrics;
use rdkafka::error::KafkaError;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};

/// The producer with the relay's client callbacks (errors logged as they happen).
type RelayProducer = FutureProducer<RelayClientContext>;
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::util::Timeout;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

/// Why a record was not written.
#[derive(Debug, thiserror::Error)]
pub enum ProduceError {
    #[error("producer queue is full")]
    QueueFull,
    #[error("broker did not acknowledge within {0:?}")]
    Timeout(Duration),
    #[error("kafka: {0}")]
    Kafka(#[from] KafkaError),
}

/// Writes records and waits for `acks=all`.
pub struct EventProducer {
    /// Replaced when librdkafka reports a fatal (idempotence) error, which makes the old
    /// instance unusable for good, or when the broker keeps rejecting its producer state
    /// (a broker restarted without it answers every batch with an error).
    inner: RwLock<Arc<RelayProducer>>,
    last_replaced: std::sync::Mutex<Instant>,
    cfg: KafkaSettings,
    timeout: Duration,
    metrics: Arc<Metrics>,
}

impl EventProducer {
    pub fn new(cfg: &impl AsRef<KafkaSettings>, metrics: Arc<Metrics>) -> Result<Self, KafkaError> {
        let cfg = cfg.as_ref();
        Ok(EventProducer {
            inner: RwLock::new(Arc::new(Self::create(cfg)?)),
            last_replaced: std::sync::Mutex::new(Instant::now()),
            cfg: cfg.clone(),
            timeout: cfg.produce_timeout,
            metrics,
        })
    }

    fn create(cfg: &KafkaSettings) -> Result<RelayProducer, KafkaError> {
        let timeout_ms = cfg.produce_timeout.as_millis().max(1).to_string();
        client_config(
            cfg,
            &[
                ("acks", "all"),
                ("enable.idempotence", "true"),
                ("message.timeout.ms", &timeout_ms),
                ("linger.ms", "2"),
                ("queue.buffering.max.messages", "200000"),
                ("compression.type", "lz4"),
            ],
        )
        .create_with_context(RelayClientContext::new("producer"))
    }

    fn current(&self) -> Arc<RelayProducer> {
        self.inner.read().expect("producer lock").clone()
    }

    /// Writes one record and returns (partition, offset) once the broker acknowledged it.
    pub async fn send(
        &self,
        topic: &str,
        key: &str,
        value: &[u8],
        headers: &[(&str, &str)],
    ) -> Result<(i32, i64), ProduceError> {
        let started = Instant::now();
        let producer = self.current();
        let mut owned = OwnedHeaders::new_with_capacity(headers.len());
        for (k, v) in headers {
            owned = owned.insert(Header {
                key: k,
                value: Some(*v),
            });
        }
        let record = FutureRecord::to(topic)
            .key(key)
            .payload(value)
            .headers(owned);
        let delivery = producer.send(record, Timeout::After(Duration::ZERO));
        // message.timeout.ms bounds a queued record, but librdkafka times out a record already
        // in flight to a dead leader only with its request (request.timeout.ms, 30 s by
        // default): the outer timeout is what keeps the answer within RELAY_PRODUCE_TIMEOUT.
        let result = match tokio::time::timeout(self.timeout, delivery).await {
            Err(_) => Err(ProduceError::Timeout(self.timeout)),
            Ok(Ok(d)) => Ok((d.partition, d.offset)),
            Ok(Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _))) => {
                Err(ProduceError::QueueFull)
            }
            Ok(Err((KafkaError::MessageProduction(RDKafkaErrorCode::MessageTimedOut), _))) => {
                Err(ProduceError::Timeout(self.timeout))
            }
            Ok(Err((e, _))) => Err(ProduceError::Kafka(e)),
        };
        match &result {
            Ok(_) => self
                .metrics
                .produce_duration_seconds
                .observe(started.elapsed().as_secs_f64()),
            Err(ProduceError::Kafka(e)) => self.replace_after(&producer, e),
            Err(_) => {}
        }
        result
    }

    fn replace_after(&self, failed: &Arc<RelayProducer>, error: &KafkaError) {
        let fatal = failed.client().fatal_error();
        {
            let mut last = self.last_replaced.lock().expect("producer lock");
            if fatal.is_none() && last.elapsed() < Duration::from_secs(2) {
                return;
            }
            *last = Instant::now();
        }
        let mut slot = self.inner.write().expect("producer lock");
        if Arc::ptr_eq(&slot, failed) {
            tracing::warn!(%error, fatal = ?fatal, "producer rejected by the broker; creating a new one");
            match Self::create(&self.cfg) {
                Ok(p) => *slot = Arc::new(p),
                Err(e) => tracing::error!(error = %e, "cannot recreate producer"),
            }
        }
    }

    /// Whether the cluster answers a metadata request within `timeout`.
    pub(crate) async fn broker_reachable(&self, timeout: Duration) -> bool {
        let producer = self.current();
        tokio::task::spawn_blocking(move || producer.client().fetch_metadata(None, timeout).is_ok())
            .await
            .unwrap_or(false)
    }

    /// Waits until every queued record is delivered or `timeout` passes.
    pub async fn flush(&self, timeout: Duration) {
        let producer = self.current();
        let _ = tokio::task::spawn_blocking(move || producer.flush(timeout)).await;
    }
}
