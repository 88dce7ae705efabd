//! Idempotency memory: the terminal outcome of each (route, event id) pair — synced, or
//! dead-lettered — and the newest event time synced per guest. Kept in bounded moka caches
//! and made durable on the compacted `<prefix>.relay.idempotency` topic, which every worker
//! tails from the beginning, so a restarted or rebalanced worker knows what any worker
//! already synced or dead-lettered.
//!
//! A synced mark is written only after the sync succeeded. A crash between the two leads
//! to one more sync attempt with the same `X-Idempotency-Key`, which the sink deduplicates.
//! A dead-lettered mark is written only after the dead letter was acknowledged: a crash
//! between a mark and its dead letter would lose the event.
//!
//! Precedence: a synced mark supersedes a dead-lettered mark of the same key (a replay
//! synced it), never the reverse (the event is at the sink whatever a later attempt did).
//!
//! Invariants: a full cache evicts the least recently used mark, never a mark
//! just written (moka's default TinyLFU admission would refuse most new marks, since each
//! is written once); a mark lives `RELAY_IDEMPOTENCY_TTL` from when it was *handled*, also
//! when it is loaded at start-up (older marks are not loaded); and the consumers start
//! only once the topic has been read to its end: a load slower than its limit is logged
//! as an error and waited for, never silently partial.

use crate::clock::now_ms;
use crate::kafka::{
    assign_from_beginning, client_config, headers, EventProducer, KafkaSettings, ProduceError,
    RelayClientContext,
};
use crate::metrics::Metrics;
use crate::schema::{Codec, IdempotencyMark, MarkOutcome};
use moka::future::Cache;
use moka::policy::EvictionPolicy;
use moka::Expiry;
use rdkafka::consumer::StreamConsumer;
use rdkafka::Message;
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{oneshot, watch};

/// How often the tail checks that its topic still exists; two answers in a row saying it
/// does not end the tail (a worker that can no longer learn other workers' marks would
/// sync again what they synced).
const TOPIC_CHECK_INTERVAL: Duration = Duration::from_secs(5);

/// Why the idempotency tail stopped before shutdown.
#[derive(Debug, thiserror::Error)]
pub(crate) enum TailError {
    #[error("the idempotency topic {0} no longer exists (deleted?); marks of other workers can no longer be learned")]
    TopicGone(String),
}

/// The idempotency memory of one worker process.
pub(crate) struct IdempotencyStore {
    /// Key -> its mark; expires `ttl` after it was handled.
    handled: Cache<String, Marked>,
    ttl: Duration,
    guest_times: Cache<String, i64>,
    producer: Arc<EventProducer>,
    codec: Codec,
    topic: String,
    metrics: Arc<Metrics>,
    /// Random id of this process, sent with each mark it writes (`relay-mark-writer`).
    writer: String,
    /// Keys being handled right now, see [`IdempotencyStore::claim`].
    claims: std::sync::Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

/// What the memory keeps of one mark.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Marked {
    /// Unix ms; the mark expires `ttl` after it.
    handled_at_ms: i64,
    outcome: MarkOutcome,
}

/// Exclusive handling of one idempotency key in this process; released on drop.
pub struct KeyClaim {
    key: String,
    store: Arc<IdempotencyStore>,
    guard: Option<tokio::sync::OwnedMutexGuard<()>>,
}

impl Drop for KeyClaim {
    fn drop(&mut self) {
        drop(self.guard.take());
        let mut claims = self.store.claims.lock().expect("claims lock");
        // Only the map holds it now: nobody handles or waits for this key.
        if claims
            .get(&self.key)
            .is_some_and(|m| Arc::strong_count(m) == 1)
        {
            claims.remove(&self.key);
        }
    }
}

/// The idempotency key of one event on one route, `<route>:<event id>`: the key of its
/// mark on the idempotency topic and the `X-Idempotency-Key` of its downstream writes.
/// Built only here, so the worker and `dlq replay` cannot disagree on its form.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct IdempotencyKey(String);

impl IdempotencyKey {
    pub(crate) fn new(route: &str, event_id: &str) -> Self {
        IdempotencyKey(format!("{route}:{event_id}"))
    }

    pub(crate) fn as_str(&self) -> &str {
        &self.0
    }
}

impl IdempotencyStore {
    /// An empty store writing to `topic`.
    pub(crate) fn new(
        capacity: u64,
        ttl: Duration,
        topic: &str,
        codec: Codec,
        producer: Arc<EventProducer>,
        metrics: Arc<Metrics>,
    ) -> Arc<Self> {
        Arc::new(IdempotencyStore {
            handled: Cache::builder()
                .max_capacity(capacity)
                .eviction_policy(EvictionPolicy::lru())
                .expire_after(SinceHandled { ttl })
                .build(),
            ttl,
            guest_times: Cache::builder()
                .max_capacity(capacity)
                .eviction_policy(EvictionPolicy::lru())
                .time_to_live(ttl)
                .build(),
            producer,
            codec,
            topic: topic.to_string(),
            metrics,
            writer: format!("{:016x}", rand::random::<u64>()),
            claims: std::sync::Mutex::new(HashMap::new()),
        })
    }

    /// Waits until no other task of this process handles `key`, then holds it. Two records
    /// of one event can be handled at once by different consumers (the raw topic and a
    /// retry tier: a client redelivered an event that was also deferred); without the claim
    /// both would find no mark and both would send. Check [`Self::seen`] after claiming.
    pub(crate) async fn claim(self: &Arc<Self>, key: &str) -> KeyClaim {
        let lock = self
            .claims
            .lock()
            .expect("claims lock")
            .entry(key.to_string())
            .or_default()
            .clone();
        let guard = lock.lock_owned().await;
        KeyClaim {
            key: key.to_string(),
            store: self.clone(),
            guard: Some(guard),
        }
    }

    /// Whether `key` was already synced; counts a hit.
    pub(crate) async fn seen(&self, key: &str) -> bool {
        let hit = self.outcome(key).await == Some(MarkOutcome::Synced);
        if hit {
            self.metrics.idempotency_hits_total.inc();
        }
        hit
    }

    /// Whether `key` was dead-lettered and not synced since.
    pub(crate) async fn dead_lettered(&self, key: &str) -> bool {
        self.outcome(key).await == Some(MarkOutcome::DeadLettered)
    }

    async fn outcome(&self, key: &str) -> Option<MarkOutcome> {
        // Presence first: a key never marked costs no read (which would count as a use).
        if !self.handled.contains_key(key) {
            return None;
        }
        self.handled.get(key).await.map(|m| m.outcome)
    }

    /// Makes `key` remembered and durable, and for a guest sync the guest's newest event
    /// time too: one record per synced event keeps the write cost of a sync at one ack.
    /// The memory is updated before the write, so this process never sends the event again
    /// even when the write fails (e.g. its partition's leader died): a duplicate raw record
    /// of an event the ingress answered 503 for arrives right after it during a failover.
    pub(crate) async fn remember(
        &self,
        key: &str,
        event_time_ms: Option<i64>,
        guest_id: Option<&str>,
    ) -> Result<(), ProduceError> {
        let mark = IdempotencyMark {
            handled_at_ms: now_ms(),
            event_time_ms,
            guest_id: guest_id.map(str::to_string),
            outcome: MarkOutcome::Synced,
        };
        // Remembered here even when the write fails: the sync happened, so this process
        // must not send it again; only other processes (and a restart) miss the mark.
        self.write(key, &mark).await
    }

    /// Makes `key` remembered and durable as dead-lettered. Call only once the dead letter
    /// is acknowledged. A key already marked synced keeps its mark and nothing is written:
    /// the compacted topic keeps only a key's last record, which must not be this one.
    pub(crate) async fn remember_dead_lettered(&self, key: &str) -> Result<(), ProduceError> {
        if self.outcome(key).await == Some(MarkOutcome::Synced) {
            return Ok(());
        }
        let mark = IdempotencyMark {
            handled_at_ms: now_ms(),
            event_time_ms: None,
            guest_id: None,
            outcome: MarkOutcome::DeadLettered,
        };
        self.write(key, &mark).await
    }

    /// Applies `mark` here, then writes it to the topic.
    async fn write(&self, key: &str, mark: &IdempotencyMark) -> Result<(), ProduceError> {
        // A fixed record against a compiled-in schema cannot fail to encode.
        let value = self.codec.encode(mark).expect("IdempotencyMark encodes");
        self.apply(key, mark).await;
        self.producer
            .send(
                &self.topic,
                key,
                &value,
                &[(headers::MARK_WRITER, self.writer.as_str())],
            )
            .await?;
        Ok(())
    }

    /// The newest event time already synced for `guest_id`.
    pub(crate) async fn newest_guest_time(&self, guest_id: &str) -> Option<i64> {
        self.guest_times.get(guest_id).await
    }

    /// Applies one mark, written here or read from the topic; a mark older than the TTL
    /// is not applied, nor a dead-lettered mark over a synced one.
    async fn apply(&self, key: &str, mark: &IdempotencyMark) {
        if remaining_life(self.ttl, mark.handled_at_ms, now_ms()).is_zero() {
            return;
        }
        let new = Marked {
            handled_at_ms: mark.handled_at_ms,
            outcome: mark.outcome,
        };
        self.handled
            .entry(key.to_string())
            .and_upsert_with(|old| {
                std::future::ready(match old.map(|e| e.into_value()) {
                    Some(known) if known.outcome == MarkOutcome::Synced => known,
                    _ => new,
                })
            })
            .await;
        if let (Some(guest), Some(t)) = (&mark.guest_id, mark.event_time_ms) {
            self.guest_times
                .entry(guest.clone())
                .and_upsert_with(|old| std::future::ready(old.map_or(t, |e| (*e.value()).max(t))))
                .await;
        }
    }

    /// Tails the idempotency topic from the beginning until `shutdown`; resolves once what
    /// the topic held at the start has been applied (or after `catch_up_limit`).
    pub(crate) async fn start_tail(
        self: &Arc<Self>,
        kafka: &KafkaSettings,
        shutdown: watch::Receiver<bool>,
        catch_up_limit: Duration,
    ) -> Result<tokio::task::JoinHandle<Result<(), TailError>>, rdkafka::error::KafkaError> {
        let consumer: StreamConsumer<RelayClientContext> = client_config(
            kafka,
            &[
                (
                    "group.id",
                    &format!("{}-idempotency-tail", kafka.consumer_group),
                ),
                ("enable.auto.commit", "false"),
                ("enable.partition.eof", "false"),
            ],
        )
        .create_with_context(RelayClientContext::new("idempotency tail"))?;
        let topic = self.topic.clone();
        let (consumer, ends) =
            tokio::task::spawn_blocking(move || -> Result<_, rdkafka::error::KafkaError> {
                let ends = assign_from_beginning(&consumer, &topic, Duration::from_secs(10))?;
                Ok((consumer, ends))
            })
            .await
            .expect("metadata task does not panic")?;
        let (caught_up_tx, mut caught_up_rx) = oneshot::channel();
        let behind = Arc::new(AtomicUsize::new(ends.len()));
        let store = self.clone();
        let task = tokio::spawn(store.tail(
            Arc::new(consumer),
            ends,
            caught_up_tx,
            behind.clone(),
            shutdown.clone(),
        ));
        // Handling events with a partly loaded memory would sync again what was synced
        // before: wait, and say so loudly while it takes longer than `catch_up_limit`.
        let started = Instant::now();
        let mut stop = shutdown;
        loop {
            tokio::select! {
                r = &mut caught_up_rx => {
                    if r.is_err() {
                        tracing::error!("idempotency tail ended before the memory was loaded");
                    }
                    break;
                }
                _ = stop.wait_for(|s| *s) => break,
                _ = tokio::time::sleep(catch_up_limit) => tracing::error!(
                    waited_s = started.elapsed().as_secs(),
                    partitions_behind = behind.load(Ordering::Relaxed),
                    "idempotency memory still loading; the worker does not consume until it is loaded"
                ),
            }
        }
        Ok(task)
    }

    /// Whether `msg` is a mark this process wrote.
    fn written_here<M: Message>(&self, msg: &M) -> bool {
        use rdkafka::message::Headers;
        msg.headers().is_some_and(|h| {
            h.iter()
                .any(|x| x.key == headers::MARK_WRITER && x.value == Some(self.writer.as_bytes()))
        })
    }

    async fn tail(
        self: Arc<Self>,
        consumer: Arc<StreamConsumer<RelayClientContext>>,
        mut pending: HashMap<i32, i64>,
        caught_up: oneshot::Sender<()>,
        behind: Arc<AtomicUsize>,
        mut shutdown: watch::Receiver<bool>,
    ) -> Result<(), TailError> {
        let mut caught_up = Some(caught_up);
        let mut applied = 0u64;
        let mut check = tokio::time::interval(TOPIC_CHECK_INTERVAL);
        let mut gone_answers = 0;
        loop {
            if pending.is_empty() {
                if let Some(tx) = caught_up.take() {
                    tracing::info!(applied, "idempotency memory loaded");
                    let _ = tx.send(());
                }
            }
            let msg = tokio::select! {
                _ = shutdown.wait_for(|s| *s) => return Ok(()),
                _ = check.tick() => None,
                m = consumer.recv() => Some(m),
            };
            let Some(msg) = msg else {
                match topic_exists(consumer.clone(), self.topic.clone()).await {
                    Some(false) => gone_answers += 1,
                    Some(true) => gone_answers = 0,
                    None => {}
                }
                if gone_answers >= 2 {
                    return Err(TailError::TopicGone(self.topic.clone()));
                }
                continue;
            };
            match msg {
                Ok(m) => {
                    let key = String::from_utf8_lossy(m.key().unwrap_or_default()).into_owned();
                    match m.payload().map(|v| self.codec.decode::<IdempotencyMark>(v)) {
                        // This process's own marks were applied when written. Applying
                        // them again as they come back, or refreshing a key already known,
                        // would reorder the LRU by partition and read timing instead of by
                        // sync time, and could evict the newest marks. Only a synced mark
                        // over a dead-lettered one changes what is known.
                        Some(Ok(_)) if self.written_here(&m) => {}
                        Some(Ok(mark)) => {
                            let supersedes = mark.outcome == MarkOutcome::Synced
                                && self.dead_lettered(&key).await;
                            if supersedes || !self.handled.contains_key(&key) {
                                self.apply(&key, &mark).await;
                            }
                        }
                        _ => tracing::warn!(%key, "undecodable idempotency mark; ignored"),
                    }
                    applied += 1;
                    if pending
                        .get(&m.partition())
                        .is_some_and(|end| m.offset() + 1 >= *end)
                    {
                        pending.remove(&m.partition());
                        behind.store(pending.len(), Ordering::Relaxed);
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

/// Whether `topic` exists, per the broker's metadata; `None` when the broker does not
/// answer (an outage is not a deleted topic).
async fn topic_exists(
    consumer: Arc<StreamConsumer<RelayClientContext>>,
    topic: String,
) -> Option<bool> {
    use rdkafka::consumer::Consumer;
    use rdkafka::types::RDKafkaRespErr;
    tokio::task::spawn_blocking(move || {
        let metadata = consumer
            .fetch_metadata(Some(&topic), Duration::from_secs(5))
            .ok()?;
        let t = metadata.topics().iter().find(|t| t.name() == topic)?;
        Some(match t.error() {
            None => !t.partitions().is_empty(),
            Some(e) => e != RDKafkaRespErr::RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART,
        })
    })
    .await
    .ok()
    .flatten()
}

/// How long a mark handled at `handled_at_ms` has left to live at `now_ms` (zero when
/// expired); a handled time in the future (clock skew) counts as now.
fn remaining_life(ttl: Duration, handled_at_ms: i64, now_ms: i64) -> Duration {
    let age = u64::try_from(now_ms.saturating_sub(handled_at_ms)).unwrap_or(0);
    ttl.saturating_sub(Duration::from_millis(age))
}

/// Expires a mark `ttl` after it was handled, wherever and whenever it was applied.
struct SinceHandled {
    ttl: Duration,
}

impl Expiry<String, Marked> for SinceHandled {
    fn expire_after_create(
        &self,
        _key: &String,
        mark: &Marked,
        _created_at: std::time::Instant,
    ) -> Option<Duration> {
        Some(remaining_life(self.ttl, mark.handled_at_ms, now_ms()))
    }

    fn expire_after_update(
        &self,
        key: &String,
        mark: &Marked,
        updated_at: std::time::Instant,
        _current: Option<Duration>,
    ) -> Option<Duration> {
        self.expire_after_create(key, mark, updated_at)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store(capacity: u64, ttl: &str) -> Arc<IdempotencyStore> {
        let kafka = KafkaSettings::from_pairs(&[
            ("RELAY_KAFKA_BROKERS", "127.0.0.1:1"),
            ("RELAY_PRODUCE_TIMEOUT", "200ms"),
        ])
        .unwrap();
        let metrics = Arc::new(Metrics::new());
        let producer = Arc::new(EventProducer::new(&kafka, metrics.clone()).unwrap());
        IdempotencyStore::new(
            capacity,
            humantime::parse_duration(ttl).unwrap(),
            "t.relay.idempotency",
            Codec::single_object(),
            producer,
            metrics,
        )
    }

    fn mark(handled_at_ms: i64) -> IdempotencyMark {
        IdempotencyMark {
            handled_at_ms,
            event_time_ms: None,
            guest_id: None,
            outcome: MarkOutcome::Synced,
        }
    }

    fn dead_letter_mark(handled_at_ms: i64) -> IdempotencyMark {
        IdempotencyMark {
            outcome: MarkOutcome::DeadLettered,
            ..mark(handled_at_ms)
        }
    }

    /// At capacity, the newest marks are the ones kept.
    #[tokio::test]
    async fn a_full_cache_keeps_the_newest_marks() {
        let n = 200u64;
        let s = store(n, "1h");
        for i in 0..3 * n {
            s.apply(&format!("k-{i}"), &mark(now_ms())).await;
            if i % 50 == 0 {
                s.handled.run_pending_tasks().await;
            }
        }
        s.handled.run_pending_tasks().await;
        let newest: Vec<u64> = (3 * n - n / 2..3 * n).collect();
        let missing: Vec<&u64> = newest
            .iter()
            .filter(|i| !s.handled.contains_key(&format!("k-{i}")))
            .collect();
        assert!(
            missing.is_empty(),
            "recent marks evicted: {} of {}",
            missing.len(),
            newest.len()
        );
        assert!(s.handled.entry_count() <= n + n / 10, "capacity is kept");
    }

    /// A mark older than the TTL is not loaded; a younger one lives
    /// only what is left of its TTL.
    #[tokio::test]
    async fn loaded_marks_keep_their_age() {
        let s = store(100, "60s");
        let now = now_ms();
        s.apply("old", &mark(now - 61_000)).await;
        s.apply("young", &mark(now - 1_000)).await;
        s.apply("almost", &mark(now - 59_900)).await;
        assert!(!s.seen("old").await, "a mark past its TTL was loaded");
        assert!(s.seen("young").await);
        tokio::time::sleep(Duration::from_millis(400)).await;
        assert!(!s.seen("almost").await, "a loaded mark got a fresh TTL");
        assert_eq!(
            remaining_life(Duration::from_secs(60), now + 5_000, now),
            Duration::from_secs(60)
        );
        assert_eq!(
            remaining_life(Duration::from_secs(60), i64::MIN, i64::MAX),
            Duration::ZERO
        );
    }

    /// A mark whose write failed is still remembered here.
    #[tokio::test]
    async fn a_mark_that_failed_to_write_is_still_applied() {
        let s = store(100, "1h");
        let written = s.remember("guest_sync:e1", None, None).await;
        assert!(written.is_err(), "no broker at 127.0.0.1:1");
        assert!(s.seen("guest_sync:e1").await);
    }

    /// A synced mark supersedes a dead-lettered one; a dead-lettered mark never replaces
    /// a synced one, and is not even written for a key known synced.
    #[tokio::test]
    async fn a_synced_mark_supersedes_a_dead_lettered_one_never_the_reverse() {
        let s = store(100, "1h");
        s.apply("guest_sync:dl", &dead_letter_mark(now_ms())).await;
        assert!(s.dead_lettered("guest_sync:dl").await && !s.seen("guest_sync:dl").await);
        s.apply("guest_sync:dl", &mark(now_ms())).await;
        assert!(s.seen("guest_sync:dl").await && !s.dead_lettered("guest_sync:dl").await);
        s.apply("guest_sync:dl", &dead_letter_mark(now_ms())).await;
        assert!(
            s.seen("guest_sync:dl").await,
            "a dead-lettered mark replaced a synced one"
        );
        assert!(
            s.remember_dead_lettered("guest_sync:dl").await.is_ok(),
            "nothing is written (the broker at 127.0.0.1:1 would refuse it)"
        );
        assert!(s.seen("guest_sync:dl").await);
        assert!(
            s.remember_dead_lettered("guest_sync:other").await.is_err(),
            "a dead-lettered mark of an unknown key is written"
        );
        assert!(s.dead_lettered("guest_sync:other").await);
    }
}
