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
    pub fn seen(&self, key: &str) -> bool {
        let hit = self.handled.contains_key(key);
        if hit {
            self.metrics.idempotency_hits_total.inc();
        }
        hit
    }

    /// Makes `key` remembered and durable, and for a guest sync the guest's newest event
    /// time too: one record per synced event keeps the write cost of a sync at one ack.
    /// The memory is updated before the write, so this process never sends the event again
    /// even when the write fails (e.g. its partition's leader died): a duplicate raw record
    /// of an event the ingress answered 503 for arrives right after it during a failover.
    pub async fn remember(
        &self,
        key: &str,
        event_time_ms: Option<i64>,
        guest_id: Option<&str>,
    ) -> Result<(), ProduceError> {
        let mark = IdempotencyMark {
            handled_at_ms: now_ms(),
            event_time_ms,
            guest_id: guest_id.map(str::to_string),
        };
        // A fixed record against a compiled-in schema cannot fail to encode.
        let value = self.codec.encode(&mark).expect("IdempotencyMark encodes");
        self.apply(key, &mark).await;
        self.producer.send(&self.topic, key, &value, &[]).await?;
        Ok(())
    }

    /// The newest event time already synced for `guest_id`.
    pub async fn newest_guest_time(&self, guest_id: &str) -> Option<i64> {
        self.guest_times.get(guest_id).await
    }

    /// Applies one mark, written here or read from the topic.
    async fn apply(&self, key: &str, mark: &IdempotencyMark) {
        self.handled.insert(key.to_string(), ()).await;
        if let (Some(guest), Some(t)) = (&mark.guest_id, mark.event_time_ms) {
            self.guest_times
                .entry(guest.clone())
                .and_upsert_with(|old| std::future::ready(old.map_or(t, |e| (*e.value()).max(t))))
                .await;
        }
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
                    match m.payload().map(|v| self.codec.decode::<IdempotencyMark>(v)) {
                        Some(Ok(mark)) => self.apply(&key, &mark).await,
                        _ => tracing::warn!(%key, "undecodable idempotency mark; ignored"),
                    }
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
