//! Idempotency memory: which (route, event id) pairs were already synced, and the newest
//! event time synced per guest. Kept in bounded moka caches and made durable on the
//! compacted `<prefix>.relay.idempotency` topic, which every worker tails from the
//! beginning, so a restarted or rebalanced worker knows what any worker already synced.
//!
//! A mark is written only after the sync succeeded. A crash between the two leads to one
//! more sync attempt with the same `X-Idempotency-Key`, which the sink deduplicates.

use crate::config::Config;
use crate::kafka::{client_config, now_ms, EventProducer, ProduceError};
use crate::metrics::Metrics;
use crate::schema::{Codec, IdempotencyMark};
use moka::future::Cache;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::{Message, Offset, TopicPartitionList};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{oneshot, watch};

const GUEST_PREFIX: &str = "guest:";

/// The idempotency memory of one worker process.
pub struct IdempotencyStore {
    handled: Cache<String, ()>,
    guest_times: Cache<String, i64>,
    producer: Arc<EventProducer>,
    codec: Codec,
    topic: String,
    metrics: Arc<Metrics>,
}

impl IdempotencyStore {
    /// An empty store writing to `topic`.
    pub fn new(
        cfg: &Config,
        topic: &str,
        codec: Codec,
        producer: Arc<EventProducer>,
        metrics: Arc<Metrics>,
    ) -> Arc<Self> {
        Arc::new(IdempotencyStore {
            handled: Cache::builder()
                .max_capacity(cfg.idempotency_capacity)
                .time_to_live(cfg.idempotency_ttl)
                .build(),
            guest_times: Cache::builder()
                .max_capacity(cfg.idempotency_capacity)
                .time_to_live(cfg.idempotency_ttl)
                .build(),
            producer,
            codec,
            topic: topic.to_string(),
            metrics,
        })
    }

    /// Whether `key` was already synced; counts a hit.
    pub async fn seen(&self, key: &str) -> bool {
        let hit = self.handled.contains_key(key);
        if hit {
            self.metrics.idempotency_hits_total.inc();
        }
        hit
    }

    /// Makes `key` durable and remembered.
    pub async fn remember(
        &self,
        key: &str,
        event_time_ms: Option<i64>,
    ) -> Result<(), ProduceError> {
        self.write(key, event_time_ms).await?;
        self.handled.insert(key.to_string(), ()).await;
        Ok(())
    }

    /// The newest event time already synced for `guest_id`.
    pub async fn newest_guest_time(&self, guest_id: &str) -> Option<i64> {
        self.guest_times.get(guest_id).await
    }

    /// Records that `guest_id` was synced with an event from `event_time_ms`.
    pub async fn remember_guest_time(
        &self,
        guest_id: &str,
        event_time_ms: i64,
    ) -> Result<(), ProduceError> {
        if self
            .newest_guest_time(guest_id)
            .await
            .is_some_and(|t| t >= event_time_ms)
        {
            return Ok(());
        }
        self.write(&format!("{GUEST_PREFIX}{guest_id}"), Some(event_time_ms))
            .await?;
        self.apply_guest_time(guest_id, event_time_ms).await;
        Ok(())
    }

    async fn apply_guest_time(&self, guest_id: &str, t: i64) {
        self.guest_times
            .entry(guest_id.to_string())
            .and_upsert_with(|old| std::future::ready(old.map_or(t, |e| (*e.value()).max(t))))
            .await;
    }

    async fn write(&self, key: &str, event_time_ms: Option<i64>) -> Result<(), ProduceError> {
        let mark = IdempotencyMark {
            handled_at_ms: now_ms(),
            event_time_ms,
        };
        // A fixed record of two numbers against a compiled-in schema cannot fail to encode.
        let value = self.codec.encode(&mark).expect("IdempotencyMark encodes");
        self.producer
            .send(&self.topic, key, &value, &[])
            .await
            .map(|_| ())
    }

    /// Applies one record of the idempotency topic.
    async fn apply(&self, key: &str, value: Option<&[u8]>) {
        if let Some(guest) = key.strip_prefix(GUEST_PREFIX) {
            let mark = value.and_then(|v| self.codec.decode::<IdempotencyMark>(v).ok());
            if let Some(t) = mark.and_then(|m| m.event_time_ms) {
                self.apply_guest_time(guest, t).await;
            }
        } else if value.is_some() {
            self.handled.insert(key.to_string(), ()).await;
        }
    }

    /// Number of remembered keys (approximate; for memory measurements).
    pub fn len(&self) -> u64 {
        self.handled.entry_count()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Tails the idempotency topic from the beginning until `shutdown`; resolves once what
    /// the topic held at the start has been applied (or after `catch_up_limit`).
    pub async fn start_tail(
        self: &Arc<Self>,
        cfg: &Config,
        shutdown: watch::Receiver<bool>,
        catch_up_limit: Duration,
    ) -> Result<tokio::task::JoinHandle<()>, rdkafka::error::KafkaError> {
        let consumer: StreamConsumer = client_config(
            cfg,
            &[
                (
                    "group.id",
                    &format!("{}-idempotency-tail", cfg.consumer_group),
                ),
                ("enable.auto.commit", "false"),
                ("enable.partition.eof", "false"),
            ],
        )
        .create()?;
        let topic = self.topic.clone();
        let (consumer, ends) =
            tokio::task::spawn_blocking(move || -> Result<_, rdkafka::error::KafkaError> {
                let timeout = Duration::from_secs(10);
                let md = consumer.fetch_metadata(Some(&topic), timeout)?;
                let mut tpl = TopicPartitionList::new();
                let mut ends = HashMap::new();
                for p in md
                    .topics()
                    .iter()
                    .filter(|t| t.name() == topic)
                    .flat_map(|t| t.partitions())
                {
                    let (low, high) = consumer.fetch_watermarks(&topic, p.id(), timeout)?;
                    tpl.add_partition_offset(&topic, p.id(), Offset::Beginning)?;
                    if high > low {
                        ends.insert(p.id(), high);
                    }
                }
                consumer.assign(&tpl)?;
                Ok((consumer, ends))
            })
            .await
            .expect("metadata task does not panic")?;
        let (caught_up_tx, caught_up_rx) = oneshot::channel();
        let store = self.clone();
        let task = tokio::spawn(store.tail(consumer, ends, caught_up_tx, shutdown));
        if tokio::time::timeout(catch_up_limit, caught_up_rx)
            .await
            .is_err()
        {
            tracing::warn!(
                "idempotency topic not fully read within {catch_up_limit:?}; continuing"
            );
        }
        Ok(task)
    }

    async fn tail(
        self: Arc<Self>,
        consumer: StreamConsumer,
        mut pending: HashMap<i32, i64>,
        caught_up: oneshot::Sender<()>,
        mut shutdown: watch::Receiver<bool>,
    ) {
        let mut caught_up = Some(caught_up);
        let mut applied = 0u64;
        loop {
            if pending.is_empty() {
                if let Some(tx) = caught_up.take() {
                    tracing::info!(applied, "idempotency memory loaded");
                    let _ = tx.send(());
                }
            }
            let msg = tokio::select! {
                _ = shutdown.wait_for(|s| *s) => return,
                m = consumer.recv() => m,
            };
            match msg {
                Ok(m) => {
                    let key = String::from_utf8_lossy(m.key().unwrap_or_default()).into_owned();
                    self.apply(&key, m.payload()).await;
                    applied += 1;
                    if pending
                        .get(&m.partition())
                        .is_some_and(|end| m.offset() + 1 >= *end)
                    {
                        pending.remove(&m.partition());
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "idempotency tail error");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
            }
        }
    }
}
