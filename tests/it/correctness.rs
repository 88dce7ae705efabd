//! The at-least-once and no-double-send promises of docs/processing.md under
//! rebalances, full caches, panics, oversized hand-offs and hostile settings. Each test
//! counts what the relay *sent* (CMS `writes_by_key`, `redundant_by_key`, `events_by_relay_event_id`,
//! records per `relay-event-id` on the enriched topic), not only what a sink accepted.

use crate::common::*;
use genesys_relay::app::Config;
use genesys_relay::app::{self, Role};
use genesys_relay::kafka::{
    headers, read_topic_to_end_within, ConsumerLoop, ConsumerOptions, Handled, MessageHandler,
};
use genesys_relay::metrics::Metrics;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, OwnedMessage};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};
use serde_json::json;
use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

fn created(i: usize, prefix: &str) -> serde_json::Value {
    envelope(
        "conversation:created",
        &format!("{prefix}-{i}"),
        &format!("2026-11-24T08:{:02}:{:02}.000Z", (i / 60) % 60, i % 60),
        json!({"conversationId": format!("conv-{prefix}-{i}")}),
    )
}

/// Records per `relay-event-id` on `topic`.
fn per_event_id(broker: &Broker, topic: &str, expected: usize) -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    for m in read_records(broker, topic, expected, Duration::from_secs(20)) {
        let id = m
            .headers()
            .and_then(|h| {
                h.iter()
                    .find(|x| x.key == headers::EVENT_ID)
                    .and_then(|x| x.value)
            })
            .map(|v| String::from_utf8_lossy(v).into_owned())
            .unwrap_or_default();
        *out.entry(id).or_default() += 1;
    }
    out
}

fn counts(stats: &serde_json::Value, field: &str) -> BTreeMap<String, u64> {
    stats[field]
        .as_object()
        .map(|m| {
            m.iter()
                .map(|(k, v)| (k.clone(), v.as_u64().unwrap_or(0)))
                .collect()
        })
        .unwrap_or_default()
}

/// Committed offset lag of `group` on `topic`, summed over partitions.
fn group_lag(addr: &str, group: &str, topic: &str) -> Option<i64> {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", addr)
        .set("group.id", group)
        .create()
        .ok()?;
    let t = Duration::from_secs(5);
    let md = c.fetch_metadata(Some(topic), t).ok()?;
    let mut tpl = TopicPartitionList::new();
    let mut highs = HashMap::new();
    for p in md.topics().iter().flat_map(|t| t.partitions()) {
        highs.insert(p.id(), c.fetch_watermarks(topic, p.id(), t).ok()?.1);
        tpl.add_partition(topic, p.id());
    }
    let committed = c.committed_offsets(tpl, t).ok()?;
    Some(
        committed
            .elements()
            .iter()
            .map(|e| {
                let at = match e.offset() {
                    Offset::Offset(o) => o,
                    _ => 0,
                };
                (highs[&e.partition()] - at).max(0)
            })
            .sum(),
    )
}

/// `relay_consumer_lag` partitions a process exports for `topic`.
fn lag_partitions(metrics: &str, topic: &str) -> Vec<String> {
    metrics
        .lines()
        .filter(|l| {
            l.starts_with("relay_consumer_lag{") && l.contains(&format!("topic=\"{topic}\""))
        })
        .filter_map(|l| l.split("partition=\"").nth(1))
        .filter_map(|r| r.split('"').next())
        .map(str::to_string)
        .collect()
}

/// A second worker joining mid-run while the sink is
/// slow. Every event reaches the enriched topic and the forward backend exactly once, and
/// each worker exports lag only for the partitions it owns.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_joining_mid_run_never_makes_a_record_handled_twice() {
    let broker = Broker::start();
    let sims = Sims::start().await;
    let prefix = unique_prefix("revoke");
    let n = 120;
    let extra = [
        ("RELAY_TOPIC_PARTITIONS", "2"),
        ("RELAY_MAX_IN_FLIGHT", "2"),
        ("RELAY_SHUTDOWN_TIMEOUT", "8s"),
        ("RELAY_KAFKA_STATISTICS_INTERVAL_MS", "1000"),
    ];
    let cfg = stack_config(&broker, &sims, &prefix, &extra);
    let ingress = app::start(cfg.clone(), Role::Ingress).await.unwrap();
    let addr = ingress.ingress_addr.unwrap();
    sims.cms_faults(json!({"latency_ms": 500})).await;
    let first = app::start(cfg.clone(), Role::Worker).await.unwrap();
    for i in 0..n {
        post_event(&sims.http, addr, &created(i, "rv")).await;
    }
    // A few events in, the second member joins and takes a partition.
    assert!(
        wait_until(Duration::from_secs(60), || async {
            counts(&sims.cms_stats().await, "events_by_relay_event_id").len() >= 6
        })
        .await
    );
    let second = app::start(cfg.clone(), Role::Worker).await.unwrap();
    let enriched = format!("{prefix}.conversations.enriched");
    let raw = format!("{prefix}.events.raw");
    let group = format!("{prefix}-group");
    let done = wait_until(Duration::from_secs(180), || {
        let (a, g, r) = (broker.addr(), group.clone(), raw.clone());
        async move {
            tokio::task::spawn_blocking(move || group_lag(&a, &g, &r) == Some(0))
                .await
                .unwrap()
        }
    })
    .await;
    assert!(done, "the group did not commit to the end");
    // Let both export their lag once more after the last rebalance.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (m1, m2) = (first.metrics.render(), second.metrics.render());
    let cms = sims.cms_stats().await;
    let forwarded = counts(&cms, "events_by_relay_event_id");
    let on_topic = per_event_id(&broker, &enriched, n + 20);
    let twice_forwarded: Vec<_> = forwarded.iter().filter(|(_, c)| **c != 1).collect();
    let twice_on_topic: Vec<_> = on_topic.iter().filter(|(_, c)| **c != 1).collect();
    eprintln!(
        "forwarded {} ids ({} more than once), enriched {} ids ({} more than once)",
        forwarded.len(),
        twice_forwarded.len(),
        on_topic.len(),
        twice_on_topic.len()
    );
    assert_eq!(forwarded.len(), n, "every event forwarded");
    assert_eq!(on_topic.len(), n, "every event enriched");
    assert!(
        twice_forwarded.is_empty(),
        "forwarded more than once: {twice_forwarded:?}"
    );
    assert_nothing_sent_twice(&cms);
    assert!(
        twice_on_topic.is_empty(),
        "enriched more than once: {twice_on_topic:?}"
    );
    let (p1, p2) = (lag_partitions(&m1, &raw), lag_partitions(&m2, &raw));
    assert!(
        p1.iter().all(|p| !p2.contains(p)),
        "both members export lag of one partition: {p1:?} / {p2:?}"
    );
    second.stop().await;
    first.stop().await;
    ingress.stop().await;
}

/// With a small idempotency capacity N, 3N distinct syncs, then the newest N/2
/// delivered again: all are `duplicate` and nothing is sent again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_idempotency_cache_still_knows_recent_events() {
    let broker = Broker::start();
    let sims = Sims::start().await;
    let prefix = unique_prefix("capacity");
    let cap = 40;
    let cap_s = cap.to_string();
    // A budget that never defers: this test is about the cache, so syncs must happen in
    // the order the events were sent (a deferred event would be synced later than newer ones).
    let extra = [
        ("RELAY_IDEMPOTENCY_CAPACITY", cap_s.as_str()),
        ("RELAY_GENESYS_RATE_LIMIT", "100000"),
    ];
    let relay = app::start(stack_config(&broker, &sims, &prefix, &extra), Role::Serve)
        .await
        .unwrap();
    let addr = relay.ingress_addr.unwrap();
    let total = 3 * cap;
    // One at a time, each synced before the next is sent: "newest" then means the most
    // recently synced (events sent in a burst are handled concurrently, in any order).
    for i in 0..total {
        post_event(&sims.http, addr, &created(i, "cap")).await;
        assert!(
            wait_until(Duration::from_secs(60), || async {
                counts(&sims.cms_stats().await, "events_by_relay_event_id").len() == i + 1
            })
            .await,
            "event {i} forwarded"
        );
    }
    let newest: Vec<usize> = (total - cap / 2..total).collect();
    for i in &newest {
        post_event(&sims.http, addr, &created(*i, "cap")).await;
    }
    let duplicate =
        "relay_events_processed_total{outcome=\"duplicate\",route=\"conversation_enrich\"}";
    let synced = "relay_events_processed_total{outcome=\"synced\",route=\"conversation_enrich\"}";
    let settled = wait_until(Duration::from_secs(60), || async {
        let m = relay.metrics.render();
        metric_value(&m, duplicate) + metric_value(&m, synced) >= (total + newest.len()) as f64
    })
    .await;
    let m = relay.metrics.render();
    let attempts = counts(&sims.cms_stats().await, "writes_by_key");
    let resent: Vec<_> = newest
        .iter()
        .map(|i| format!("conversation_enrich:cap-{i}"))
        .filter(|k| attempts.get(k).copied().unwrap_or(0) != 1)
        .collect();
    eprintln!(
        "duplicates {} of {}, re-sent {}",
        metric_value(&m, duplicate),
        newest.len(),
        resent.len()
    );
    assert!(settled, "redeliveries not handled");
    assert!(
        resent.is_empty(),
        "recent events sent again: {:?}",
        resent
            .iter()
            .map(|k| (k, attempts.get(k)))
            .collect::<Vec<_>>()
    );
    assert_eq!(metric_value(&m, duplicate), newest.len() as f64);
    relay.stop().await;
}

/// Handles records for the panic test: panics on value `boom`, remembers the rest.
struct Panicky {
    handled: Mutex<Vec<String>>,
    panicked: Mutex<Vec<String>>,
}

impl MessageHandler for Panicky {
    fn handle(&self, msg: OwnedMessage) -> Pin<Box<dyn Future<Output = Handled> + Send + '_>> {
        Box::pin(async move {
            let v = String::from_utf8_lossy(msg.payload().unwrap_or_default()).into_owned();
            if v == "boom" {
                panic!("handler bug on {v}");
            }
            self.handled.lock().unwrap().push(v);
            Handled::Done
        })
    }

    fn handle_panic(
        &self,
        msg: OwnedMessage,
        panic: String,
    ) -> Pin<Box<dyn Future<Output = Handled> + Send + '_>> {
        Box::pin(async move {
            let v = String::from_utf8_lossy(msg.payload().unwrap_or_default()).into_owned();
            self.panicked.lock().unwrap().push(format!("{v}: {panic}"));
            Handled::Done
        })
    }
}

/// The relay's topics for `prefix` (the test broker does not create topics on use).
async fn create_topics(cfg: &Config, prefix: &str) {
    let topics = genesys_relay::kafka::Topics::new(prefix, cfg.worker.retry_delays.len());
    genesys_relay::kafka::ensure_topics(cfg, &topics)
        .await
        .unwrap();
}

fn produce(broker: &Broker, topic: &str, records: &[(&str, &str)]) {
    let p: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", broker.addr())
        .create()
        .unwrap();
    for (k, v) in records {
        p.send(BaseRecord::to(topic).key(*k).payload(*v)).unwrap();
    }
    p.flush(Duration::from_secs(10)).unwrap();
}

/// A panicking handler hands its record to `handle_panic` (the processor
/// dead-letters it there), the key's later records are handled, and the partition commits
/// past it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_handler_frees_its_key_and_its_partition() {
    let broker = Broker::start();
    let prefix = unique_prefix("panic");
    let cfg = relay_config(&broker, &prefix, &[]);
    create_topics(&cfg, &prefix).await;
    let topic = format!("{prefix}.events.raw");
    let group = format!("{prefix}-group");
    produce(
        &broker,
        &topic,
        &[("k", "a"), ("k", "boom"), ("k", "c"), ("other", "d")],
    );
    let cc = genesys_relay::kafka::client_config(
        &cfg,
        &[("group.id", &group), ("auto.offset.reset", "earliest")],
    );
    let opts = ConsumerOptions {
        max_in_flight: 4,
        commit_interval: Duration::from_millis(200),
        honour_not_before: false,
        drain_timeout: Duration::from_secs(2),
    };
    let lp = ConsumerLoop::new(cc, &[&topic], opts, Arc::new(Metrics::new())).unwrap();
    let handler = Arc::new(Panicky {
        handled: Mutex::default(),
        panicked: Mutex::default(),
    });
    let (tx, rx) = tokio::sync::watch::channel(false);
    let run = tokio::spawn(lp.run(handler.clone(), rx));
    let ok = wait_until(Duration::from_secs(60), || {
        let (a, g, t) = (broker.addr(), group.clone(), topic.clone());
        async move {
            tokio::task::spawn_blocking(move || group_lag(&a, &g, &t) == Some(0))
                .await
                .unwrap()
        }
    })
    .await;
    let handled = handler.handled.lock().unwrap().clone();
    let panicked = handler.panicked.lock().unwrap().clone();
    let _ = tx.send(true);
    let _ = run.await;
    assert!(
        handled.contains(&"c".to_string()),
        "the key is blocked: {handled:?}"
    );
    assert_eq!(panicked.len(), 1, "{panicked:?}");
    assert!(panicked[0].starts_with("boom: handler bug on boom"));
    assert!(ok, "the partition did not commit past the panic");
}

/// A retry record that cannot fit under `message.max.bytes` once the relay
/// headers are added is dead-lettered (without its value, saying why), and the partition
/// moves on. The ingress itself can no longer write such a record (its body limit is checked
/// against `message.max.bytes` at start-up), so the near-limit raw record comes from another
/// producer, as one written by an earlier relay with a larger limit would.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hand_off_too_large_for_the_broker_is_dead_lettered() {
    let broker = Broker::start();
    let sims = Sims::start().await;
    let prefix = unique_prefix("oversize");
    let limit = 20_000usize;
    let limit_s = limit.to_string();
    let extra = [
        ("RELAY_KAFKA_MESSAGE_MAX_BYTES", limit_s.as_str()),
        ("RELAY_MAX_BODY_BYTES", "3000"),
        ("RELAY_RETRY_DELAYS", "200ms"),
    ];
    let relay = app::start(stack_config(&broker, &sims, &prefix, &extra), Role::Serve)
        .await
        .unwrap();
    let addr = relay.ingress_addr.unwrap();
    // Every forward fails with 503: retryable, so the record goes to the retry tier.
    sims.cms_faults(json!({"error_rate": 1.0, "error_status": 503}))
        .await;
    let body = |id: &str, fill: usize| {
        json!({"eventType": "user:presence", "eventId": id, "timestamp": "2026-11-24T08:00:00Z",
               "data": {"userId": "u-1", "fill": "x".repeat(fill)}})
    };
    // A probe measures what the ingress adds to a body in the raw record.
    post_event(&sims.http, addr, &body("probe", 1000)).await;
    let raw_topic = format!("{prefix}.events.raw");
    let probe = read_records(&broker, &raw_topic, 1, Duration::from_secs(20));
    let size = |m: &OwnedMessage| {
        m.payload().map_or(0, <[u8]>::len)
            + m.key().map_or(0, <[u8]>::len)
            + m.headers().map_or(0, |h| {
                h.iter()
                    .map(|x| x.key.len() + x.value.map_or(0, <[u8]>::len))
                    .sum()
            })
    };
    let overhead = size(&probe[0]) - serde_json::to_vec(&body("probe", 1000)).unwrap().len();
    // The big one fits the raw topic with ~150 bytes to spare; the retry headers do not.
    let fill = limit - 150 - overhead - serde_json::to_vec(&body("big", 0)).unwrap().len();
    {
        use genesys_relay::schema::{Codec, RawEvent};
        let codec = Codec::single_object();
        let mut big: RawEvent = codec.decode(probe[0].payload().unwrap()).unwrap();
        big.event_id = "big".into();
        big.payload = serde_json::to_string(&body("big", fill)).unwrap();
        let value = codec.encode(&big).unwrap();
        let p: BaseProducer = ClientConfig::new()
            .set("bootstrap.servers", broker.addr())
            .create()
            .unwrap();
        let key = probe[0].key().unwrap().to_vec();
        p.send(
            BaseRecord::to(&raw_topic)
                .key(&key)
                .payload(&value)
                .headers(
                    rdkafka::message::OwnedHeaders::new().insert(rdkafka::message::Header {
                        key: headers::EVENT_ID,
                        value: Some("big"),
                    }),
                ),
        )
        .map_err(|(e, _)| e)
        .unwrap();
        p.flush(Duration::from_secs(20)).unwrap();
    }
    let dlq = format!("{prefix}.events.dlq");
    let letters = read_records(&broker, &dlq, 2, Duration::from_secs(60));
    let big = letters.iter().find(|m| {
        m.headers().is_some_and(|h| {
            h.iter()
                .any(|x| x.key == headers::EVENT_ID && x.value == Some(b"big".as_slice()))
        })
    });
    let header = |m: &OwnedMessage, name: &str| {
        m.headers()
            .and_then(|h| h.iter().find(|x| x.key == name).and_then(|x| x.value))
            .map(|v| String::from_utf8_lossy(v).into_owned())
    };
    let big = big.unwrap_or_else(|| {
        panic!(
            "the oversized event was not dead-lettered; dead letters: {:?}",
            letters
                .iter()
                .map(|m| header(m, headers::EVENT_ID))
                .collect::<Vec<_>>()
        )
    });
    assert_eq!(
        header(big, headers::ERROR_CLASS).as_deref(),
        Some("permanent")
    );
    let error = header(big, headers::ERROR).unwrap_or_default();
    assert!(error.contains("too large"), "{error}");
    assert_eq!(
        header(big, headers::ORIGINAL_TOPIC).as_deref(),
        Some(raw_topic.as_str())
    );
    relay.stop().await;
}

/// An attempt that fails after another attempt of the same event synced it
/// (its mark arrived meanwhile) neither retries nor dead-letters: never both synced and
/// dead-lettered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_synced_by_another_attempt_is_not_dead_lettered() {
    let broker = Broker::start();
    let sims = Sims::start().await;
    let prefix = unique_prefix("synced-dead");
    let extra = [("RELAY_RETRY_DELAYS", "100ms")];
    let cfg = stack_config(&broker, &sims, &prefix, &extra);
    let relay = app::start(cfg.clone(), Role::Serve).await.unwrap();
    let addr = relay.ingress_addr.unwrap();
    // Every forward takes 3 s and fails: attempt 1 goes to the retry tier, attempt 2 would
    // be exhausted.
    sims.cms_faults(json!({"latency_ms": 3000, "error_rate": 1.0, "error_status": 503}))
        .await;
    let event = json!({"eventType": "user:presence", "eventId": "sd-1",
                       "timestamp": "2026-11-24T08:00:00Z", "data": {"userId": "u-1"}});
    post_event(&sims.http, addr, &event).await;
    let retried = "relay_retry_scheduled_total{tier=\"1\"}";
    assert!(
        wait_until(Duration::from_secs(60), || async {
            metric_value(&relay.metrics.render(), retried) >= 1.0
        })
        .await
    );
    // Attempt 2 is now waiting on the slow CMS; another member's attempt syncs the event
    // and writes its mark, as a worker does.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mark = genesys_relay::schema::IdempotencyMark {
        handled_at_ms: genesys_relay::clock::now_ms(),
        event_time_ms: None,
        guest_id: None,
        outcome: genesys_relay::schema::MarkOutcome::Synced,
    };
    let value = genesys_relay::schema::Codec::single_object()
        .encode(&mark)
        .unwrap();
    let p: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", broker.addr())
        .create()
        .unwrap();
    p.send(
        BaseRecord::to(&format!("{prefix}.relay.idempotency"))
            .key("forward:sd-1")
            .payload(&value),
    )
    .unwrap();
    p.flush(Duration::from_secs(10)).unwrap();
    let duplicate = "relay_events_processed_total{outcome=\"duplicate\",route=\"forward\"}";
    let dead = "relay_events_processed_total{outcome=\"dead_lettered\",route=\"forward\"}";
    let ended = wait_until(Duration::from_secs(30), || async {
        let m = relay.metrics.render();
        metric_value(&m, duplicate) + metric_value(&m, dead) >= 1.0
    })
    .await;
    let m = relay.metrics.render();
    assert!(ended, "attempt 2 never ended\n{m}");
    assert_eq!(metric_value(&m, dead), 0.0, "dead-lettered although synced");
    assert_eq!(metric_value(&m, duplicate), 1.0);
    relay.stop().await;
}

/// A read that does not reach the end of the topic is an error, not a partial
/// answer (`dlq replay --all` relies on it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partial_topic_read_is_an_error() {
    let broker = Broker::start();
    let prefix = unique_prefix("partial");
    let cfg = relay_config(&broker, &prefix, &[]);
    create_topics(&cfg, &prefix).await;
    let topic = format!("{prefix}.events.dlq");
    let records: Vec<(String, String)> = (0..50)
        .map(|i| (format!("k{i}"), format!("v{i}")))
        .collect();
    let refs: Vec<(&str, &str)> = records
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    produce(&broker, &topic, &refs);
    let (c1, t1) = (cfg.clone(), topic.clone());
    let whole = tokio::task::spawn_blocking(move || {
        read_topic_to_end_within(&c1, &t1, Duration::from_secs(60), |_| {})
    })
    .await
    .unwrap();
    assert_eq!(whole.unwrap(), 50);
    let cut = tokio::task::spawn_blocking(move || {
        read_topic_to_end_within(&cfg, &topic, Duration::ZERO, |_| {})
    })
    .await
    .unwrap();
    assert!(
        cut.is_err(),
        "a read cut short passed for the whole topic: {cut:?}"
    );
}

/// `RELAY_KAFKA_ACKS` cannot weaken `acks=all`.
#[test]
fn a_weaker_acks_setting_is_refused() {
    let vars = |acks: &str| -> HashMap<String, String> {
        [("RELAY_KAFKA_ACKS".to_string(), acks.to_string())]
            .into_iter()
            .collect()
    };
    for weak in ["1", "0"] {
        let err = Config::from_vars(&vars(weak)).unwrap_err().to_string();
        assert!(err.contains("RELAY_KAFKA_ACKS"), "{err}");
    }
    for ok in ["all", "-1"] {
        assert!(Config::from_vars(&vars(ok)).is_ok());
    }
}

/// Kept as proof: an event sent to a retry tier lets a later
/// event of its guest pass (documented in docs/processing.md), and when the older one is
/// retried the stale guard skips it, so it never overwrites the newer state.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retried_older_event_never_overwrites_a_newer_one() {
    let broker = Broker::start();
    let sims = Sims::start().await;
    let prefix = unique_prefix("order");
    let extra = [("RELAY_RETRY_DELAYS", "5s")];
    let relay = app::start(stack_config(&broker, &sims, &prefix, &extra), Role::Serve)
        .await
        .unwrap();
    let addr = relay.ingress_addr.unwrap();
    // Guest sync reads the attributes of the conversation, whose id names the CMS entry.
    sims.set_attributes("c-o", json!({"cart_value": "1"})).await;
    let update = |id: &str, ts: &str| {
        envelope(
            "conversation:updated",
            id,
            ts,
            json!({"conversationId": "c-o", "guestId": "g-o"}),
        )
    };
    // The older event's write fails once: it goes to the retry tier.
    sims.cms_faults(json!({"fail_next": 1, "error_status": 503}))
        .await;
    post_event(&sims.http, addr, &update("o-old", "2026-11-24T09:00:00Z")).await;
    let retried = "relay_retry_scheduled_total{tier=\"1\"}";
    assert!(
        wait_until(Duration::from_secs(60), || async {
            metric_value(&relay.metrics.render(), retried) >= 1.0
        })
        .await
    );
    post_event(&sims.http, addr, &update("o-new", "2026-11-24T10:00:00Z")).await;
    let stale = "relay_skipped_total{reason=\"stale\",route=\"guest_sync\"}";
    assert!(
        wait_until(Duration::from_secs(60), || async {
            metric_value(&relay.metrics.render(), stale) >= 1.0
        })
        .await,
        "the retried older event was not skipped as stale"
    );
    let stats = sims.cms_stats().await;
    assert_eq!(stats["entries"]["c-o"]["eventId"], "o-new");
    assert_eq!(
        syncs_by_key(&stats).keys().collect::<Vec<_>>(),
        vec!["guest_sync:o-new"]
    );
    relay.stop().await;
}

/// With a slow sink the backlog stays bounded also when a rebalance happens
/// while the loop holds its partitions paused for backpressure.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backpressure_holds_across_a_rebalance() {
    use genesys_relay::schema::{Codec, RawEvent};
    let broker = Broker::start();
    let sims = Sims::start().await;
    let prefix = unique_prefix("backpressure");
    let extra = [("RELAY_MAX_IN_FLIGHT", "1")];
    let relay = app::start(stack_config(&broker, &sims, &prefix, &extra), Role::Serve)
        .await
        .unwrap();
    sims.cms_faults(json!({"latency_ms": 2000})).await;
    post_event(&sims.http, relay.ingress_addr.unwrap(), &created(0, "bp")).await;
    let raw_topic = format!("{prefix}.events.raw");
    let template = read_records(&broker, &raw_topic, 1, Duration::from_secs(20));
    let codec = Codec::single_object();
    let event: RawEvent = codec.decode(template[0].payload().unwrap()).unwrap();
    let n = 20_000;
    let p: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", broker.addr())
        .set("queue.buffering.max.messages", "100000")
        .create()
        .unwrap();
    for i in 1..n {
        let mut e = event.clone();
        e.event_id = format!("bp-{i}");
        e.conversation_id = Some(format!("conv-bp-{i}"));
        let value = codec.encode(&e).unwrap();
        let key = format!("conv-bp-{i}");
        p.send(BaseRecord::to(&raw_topic).key(&key).payload(&value))
            .unwrap();
        if i % 1000 == 0 {
            p.poll(Duration::ZERO);
        }
    }
    p.flush(Duration::from_secs(120)).unwrap();
    let in_flight = || metric_value(&relay.metrics.render(), "relay_in_flight");
    let high = 1.0 + 4096.0;
    // The loop pauses at `high` and then drains one record per 2 s, so the backlog may be
    // a little below `high` by the time this first looks (a slow machine takes longer to
    // produce the 20,000 records than the relay takes to reach the threshold). Within 32
    // records of it is 64 s of draining, beyond this wait: the backlog did reach it.
    let reached = high - 32.0;
    assert!(
        wait_until(Duration::from_secs(60), || async { in_flight() >= reached }).await,
        "the backlog never reached the pause threshold ({high}): {}",
        in_flight()
    );
    // Another member joins (a rebalance), stays a few seconds, and leaves (another).
    let (addr, group, topic) = (broker.addr(), format!("{prefix}-group"), raw_topic.clone());
    let member = tokio::task::spawn_blocking(move || {
        let c: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", addr)
            .set("group.id", group)
            .set("enable.auto.commit", "false")
            .set("session.timeout.ms", "6000")
            .create()
            .unwrap();
        c.subscribe(&[&topic]).unwrap();
        let until = std::time::Instant::now() + Duration::from_secs(8);
        while std::time::Instant::now() < until {
            let _ = c.poll(Duration::from_millis(100));
        }
        c.unsubscribe();
        // Serve the revoke.
        for _ in 0..20 {
            let _ = c.poll(Duration::from_millis(100));
        }
    });
    let mut peak = 0.0f64;
    let until = std::time::Instant::now() + Duration::from_secs(25);
    while std::time::Instant::now() < until {
        peak = peak.max(in_flight());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    member.await.unwrap();
    // The documented bound plus what librdkafka may hand over while a pause takes effect.
    let bound = high + 1000.0;
    eprintln!("peak relay_in_flight after the rebalances: {peak} (bound {bound})");
    assert!(
        peak <= bound,
        "backlog grew to {peak} records (bound {bound})"
    );
    relay.stop().await;
}

/// Handles every record slowly and counts them.
struct Slow {
    started: std::sync::atomic::AtomicUsize,
}

impl MessageHandler for Slow {
    fn handle(&self, _msg: OwnedMessage) -> Pin<Box<dyn Future<Output = Handled> + Send + '_>> {
        Box::pin(async move {
            self.started
                .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            tokio::time::sleep(Duration::from_secs(4)).await;
            Handled::Done
        })
    }
}

/// A commit made while the broker is away fails; it is made again once the
/// broker is back, also for a partition that receives nothing more.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_commit_is_made_again_on_a_quiet_partition() {
    let broker = Arc::new(Mutex::new(Broker::dedicated()));
    let addr = broker.lock().unwrap().addr();
    let prefix = unique_prefix("commit");
    // Sessions outlive the outage, so the group does not rebalance and the record is not
    // handed to anyone again: only a commit made again can move the offset.
    let extra = [
        ("RELAY_KAFKA_SESSION_TIMEOUT_MS", "45000"),
        ("RELAY_KAFKA_MAX_POLL_INTERVAL_MS", "60000"),
    ];
    let cfg = relay_config(&broker.lock().unwrap(), &prefix, &extra);
    create_topics(&cfg, &prefix).await;
    let topic = format!("{prefix}.events.raw");
    let group = format!("{prefix}-group");
    produce(&broker.lock().unwrap(), &topic, &[("k", "one")]);
    let cc = genesys_relay::kafka::client_config(
        &cfg,
        &[("group.id", &group), ("auto.offset.reset", "earliest")],
    );
    let opts = ConsumerOptions {
        max_in_flight: 4,
        commit_interval: Duration::from_millis(200),
        honour_not_before: false,
        drain_timeout: Duration::from_secs(2),
    };
    let lp = ConsumerLoop::new(cc, &[&topic], opts, Arc::new(Metrics::new())).unwrap();
    let handler = Arc::new(Slow {
        started: Default::default(),
    });
    let (tx, rx) = tokio::sync::watch::channel(false);
    let run = tokio::spawn(lp.run(handler.clone(), rx));
    assert!(
        wait_until(Duration::from_secs(60), || async {
            handler.started.load(std::sync::atomic::Ordering::SeqCst) > 0
        })
        .await
    );
    // The handler finishes while the broker is away: the commits of its offset fail.
    let b = broker.clone();
    tokio::task::spawn_blocking(move || b.lock().unwrap().kill())
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(5)).await;
    let b = broker.clone();
    tokio::task::spawn_blocking(move || b.lock().unwrap().restart())
        .await
        .unwrap();
    let committed = wait_until(Duration::from_secs(60), || {
        let (a, g, t) = (addr.clone(), group.clone(), topic.clone());
        async move {
            tokio::task::spawn_blocking(move || group_lag(&a, &g, &t) == Some(0))
                .await
                .unwrap()
        }
    })
    .await;
    let handled = handler.started.load(std::sync::atomic::Ordering::SeqCst);
    let _ = tx.send(true);
    let _ = run.await;
    eprintln!("handled {handled} time(s)");
    assert!(
        committed,
        "the offset was never committed after the broker came back"
    );
}

/// Replay side: `dlq replay --all` does not replay a dead letter whose event
/// was synced after all (its idempotency mark exists); it reports it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_skips_dead_letters_of_events_synced_after_all() {
    use genesys_relay::operator::{replay_dead_letters, ReplaySelection};
    let broker = Broker::start();
    let prefix = unique_prefix("replay-synced");
    let cfg = relay_config(&broker, &prefix, &[]);
    create_topics(&cfg, &prefix).await;
    let p: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", broker.addr())
        .create()
        .unwrap();
    let dlq = format!("{prefix}.events.dlq");
    for id in ["synced-1", "failed-1"] {
        let hdrs = rdkafka::message::OwnedHeaders::new()
            .insert(rdkafka::message::Header {
                key: headers::EVENT_ID,
                value: Some(id),
            })
            .insert(rdkafka::message::Header {
                key: headers::ROUTE,
                value: Some("forward"),
            })
            .insert(rdkafka::message::Header {
                key: headers::ERROR_CLASS,
                value: Some("exhausted"),
            });
        p.send(BaseRecord::to(&dlq).key("k").payload("{}").headers(hdrs))
            .unwrap();
    }
    let mark = genesys_relay::schema::IdempotencyMark {
        handled_at_ms: genesys_relay::clock::now_ms(),
        event_time_ms: None,
        guest_id: None,
        outcome: genesys_relay::schema::MarkOutcome::Synced,
    };
    let value = genesys_relay::schema::Codec::single_object()
        .encode(&mark)
        .unwrap();
    p.send(
        BaseRecord::to(&format!("{prefix}.relay.idempotency"))
            .key("forward:synced-1")
            .payload(&value),
    )
    .unwrap();
    p.flush(Duration::from_secs(10)).unwrap();
    let producer =
        genesys_relay::kafka::EventProducer::new(&cfg, Arc::new(Metrics::new())).unwrap();
    let sel = ReplaySelection {
        event_ids: vec![],
        all: true,
    };
    let report = replay_dead_letters(&cfg.operator(), &producer, &sel, false)
        .await
        .unwrap();
    assert_eq!(report.already_synced, vec!["synced-1".to_string()]);
    assert_eq!((report.matched, report.replayed), (1, 1));
    let raw = read_records(
        &broker,
        &format!("{prefix}.events.raw"),
        2,
        Duration::from_secs(5),
    );
    let ids: Vec<_> = raw
        .iter()
        .filter_map(|m| {
            m.headers().and_then(|h| {
                h.iter()
                    .find(|x| x.key == headers::EVENT_ID)
                    .and_then(|x| x.value)
                    .map(|v| String::from_utf8_lossy(v).into_owned())
            })
        })
        .collect();
    assert_eq!(ids, vec!["failed-1".to_string()]);
}
