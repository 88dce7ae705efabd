//! Non-blocking retries and the dead-letter topic: tier delays, context headers, poison
//! records, exhaustion, fresh traffic while a retry waits, and restarts with retries pending.

use crate::common::*;
use genesys_relay::app::{self, Role};
use genesys_relay::kafka::headers;
use rdkafka::message::{Headers, OwnedMessage};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::Message;
use serde_json::json;
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// A legacy `conversation:updated` envelope; since guest sync reads the conversation
/// (the guest resource does not exist), the guest id names the conversation whose
/// customer attributes are synced (and the CMS entry).
fn guest_update(i: usize, _conversation: &str, guest: &str) -> serde_json::Value {
    let ts = format!("2026-11-24T09:{:02}:{:02}.000Z", (i / 60) % 60, i % 60);
    envelope(
        "conversation:updated",
        &format!("evt-{i}"),
        &ts,
        json!({"conversationId": guest, "guestId": guest}),
    )
}

fn hdrs(m: &OwnedMessage) -> HashMap<String, String> {
    m.headers()
        .map(|h| {
            h.iter()
                .map(|x| {
                    (
                        x.key.to_string(),
                        String::from_utf8_lossy(x.value.unwrap_or_default()).into_owned(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

async fn read_async(
    broker: &Broker,
    topic: String,
    expected: usize,
    timeout: Duration,
) -> Vec<OwnedMessage> {
    let addr = broker.addr();
    tokio::task::spawn_blocking(move || read_records_at(&addr, &topic, expected, timeout))
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_503s_then_success_syncs_once_after_tiered_delays() {
    let broker = Broker::start();
    let sims = Sims::start().await;
    let prefix = unique_prefix("r503");
    let cfg = stack_config(
        &broker,
        &sims,
        &prefix,
        &[("RELAY_RETRY_DELAYS", "300ms,600ms,5s")],
    );
    let relay = app::start(cfg, Role::Serve).await.unwrap();
    sims.cms_faults(json!({"fail_next": 2, "error_status": 503}))
        .await;
    let started = Instant::now();
    post_event(
        &sims.http,
        relay.ingress_addr.unwrap(),
        &guest_update(1, "c-1", "g-1"),
    )
    .await;
    assert!(sims.wait_for_syncs(1, Duration::from_secs(60)).await);
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(900),
        "two tiers of 300 ms and 600 ms were waited ({took:?})"
    );
    // What the relay sent: the two writes answered 503, then one answered 2xx, and
    // nothing after it.
    let stats = sims.cms_stats().await;
    assert_eq!(syncs_by_key(&stats).get("guest_sync:evt-1"), Some(&1));
    assert_eq!(
        stats["answers_by_key"]["guest_sync:evt-1"],
        json!(["injected:503", "injected:503", "applied"])
    );
    assert_nothing_sent_twice(&stats);

    for (tier, delay_ms) in [(1, 300), (2, 600)] {
        let recs = read_async(
            &broker,
            format!("{prefix}.events.retry.{tier}"),
            1,
            Duration::from_secs(10),
        )
        .await;
        assert_eq!(recs.len(), 1, "one record in tier {tier}");
        let h = hdrs(&recs[0]);
        assert_eq!(h[headers::ATTEMPT], tier.to_string());
        assert_eq!(h[headers::ERROR_CLASS], "retryable");
        assert_eq!(h[headers::EVENT_ID], "evt-1");
        assert_eq!(h[headers::ORIGINAL_TOPIC], format!("{prefix}.events.raw"));
        let not_before: i64 = h[headers::NOT_BEFORE].parse().unwrap();
        let ts = recs[0].timestamp().to_millis().unwrap();
        let scheduled = not_before - ts;
        // The record's timestamp is taken a moment after not-before was computed.
        assert!(
            scheduled >= delay_ms - 25 && scheduled <= delay_ms * 12 / 10 + 50,
            "tier {tier} delay {scheduled} ms"
        );
    }
    let m = relay.metrics.render();
    assert_eq!(
        metric_value(&m, "relay_retry_scheduled_total{tier=\"1\"}"),
        1.0
    );
    assert_eq!(
        metric_value(&m, "relay_retry_scheduled_total{tier=\"2\"}"),
        1.0
    );
    assert_eq!(
        metric_value(
            &m,
            "relay_events_processed_total{outcome=\"retried\",route=\"guest_sync\"}"
        ),
        2.0
    );
    // Seconds later still nothing sent after the 2xx.
    assert_nothing_sent_twice(&sims.cms_stats().await);
    relay.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_400_is_dead_lettered_at_once_with_context_headers() {
    let broker = Broker::start();
    let sims = Sims::start().await;
    let prefix = unique_prefix("r400");
    let relay = app::start(
        stack_config(&broker, &sims, &prefix, &[("RELAY_RETRY_DELAYS", "200ms")]),
        Role::Serve,
    )
    .await
    .unwrap();
    sims.cms_faults(json!({"fail_next": 1, "error_status": 400}))
        .await;
    post_event(
        &sims.http,
        relay.ingress_addr.unwrap(),
        &guest_update(7, "c-7", "g-7"),
    )
    .await;

    let dlq = read_async(
        &broker,
        format!("{prefix}.events.dlq"),
        1,
        Duration::from_secs(60),
    )
    .await;
    assert_eq!(dlq.len(), 1);
    let raw = read_async(
        &broker,
        format!("{prefix}.events.raw"),
        1,
        Duration::from_secs(10),
    )
    .await;
    let h = hdrs(&dlq[0]);
    assert_eq!(h[headers::ERROR_CLASS], "permanent");
    assert_eq!(h[headers::ROUTE], "guest_sync");
    assert_eq!(h[headers::EVENT_ID], "evt-7");
    assert_eq!(h[headers::ATTEMPT], "0");
    assert_eq!(h[headers::ORIGINAL_TOPIC], raw[0].topic());
    assert_eq!(
        h[headers::ORIGINAL_PARTITION],
        raw[0].partition().to_string()
    );
    assert_eq!(h[headers::ORIGINAL_OFFSET], raw[0].offset().to_string());
    assert!(h[headers::ERROR].contains("400"), "{}", h[headers::ERROR]);
    assert!(h.contains_key(headers::FIRST_FAILURE_AT));
    assert_eq!(dlq[0].payload(), raw[0].payload(), "the value is unchanged");
    assert_eq!(dlq[0].key(), raw[0].key());
    assert_eq!(
        read_async(
            &broker,
            format!("{prefix}.events.retry.1"),
            1,
            Duration::from_secs(2)
        )
        .await
        .len(),
        0,
        "no retry"
    );
    assert!(syncs_by_key(&sims.cms_stats().await).is_empty());
    let m = relay.metrics.render();
    assert_eq!(
        metric_value(&m, "relay_dlq_total{class=\"permanent\"}"),
        1.0
    );
    relay.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn always_503_is_exhausted_after_the_last_tier() {
    let broker = Broker::start();
    let sims = Sims::start().await;
    let prefix = unique_prefix("rexh");
    let relay = app::start(
        stack_config(
            &broker,
            &sims,
            &prefix,
            &[("RELAY_RETRY_DELAYS", "100ms,200ms")],
        ),
        Role::Serve,
    )
    .await
    .unwrap();
    sims.cms_faults(json!({"error_rate": 1.0, "error_status": 503}))
        .await;
    post_event(
        &sims.http,
        relay.ingress_addr.unwrap(),
        &guest_update(3, "c-3", "g-3"),
    )
    .await;
    let dlq = read_async(
        &broker,
        format!("{prefix}.events.dlq"),
        1,
        Duration::from_secs(60),
    )
    .await;
    assert_eq!(dlq.len(), 1);
    let h = hdrs(&dlq[0]);
    assert_eq!(h[headers::ERROR_CLASS], "exhausted");
    assert_eq!(h[headers::ATTEMPT], "2", "both retries were made");
    assert_eq!(
        h[headers::ORIGINAL_TOPIC],
        format!("{prefix}.events.raw"),
        "context survives the tiers"
    );
    let stats = sims.cms_stats().await;
    assert_eq!(
        stats["requests"]["POST /v1/entries"]["503"], 3,
        "first attempt + 2 retries"
    );
    let m = relay.metrics.render();
    assert_eq!(
        metric_value(&m, "relay_dlq_total{class=\"exhausted\"}"),
        1.0
    );
    relay.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_poison_record_is_dead_lettered_and_the_partition_moves_on() {
    let broker = Broker::start();
    let sims = Sims::start().await;
    let prefix = unique_prefix("poison");
    let relay = app::start(stack_config(&broker, &sims, &prefix, &[]), Role::Serve)
        .await
        .unwrap();
    let producer = test_producer(&broker);
    let raw = format!("{prefix}.events.raw");
    let garbage = b"\xc3\x01not avro at all".to_vec();
    producer
        .send(
            FutureRecord::to(&raw).key("c-p").payload(&garbage),
            Duration::from_secs(5),
        )
        .await
        .unwrap();
    // The same key lands in the same partition, behind the poison record.
    post_event(
        &sims.http,
        relay.ingress_addr.unwrap(),
        &guest_update(1, "c-p", "g-p"),
    )
    .await;
    assert!(sims.wait_for_syncs(1, Duration::from_secs(60)).await);
    let dlq = read_async(
        &broker,
        format!("{prefix}.events.dlq"),
        1,
        Duration::from_secs(10),
    )
    .await;
    assert_eq!(dlq.len(), 1);
    assert_eq!(hdrs(&dlq[0])[headers::ERROR_CLASS], "poison");
    assert_eq!(
        dlq[0].payload().unwrap(),
        &garbage[..],
        "poison value kept byte for byte"
    );
    relay.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fresh_events_flow_while_a_retry_waits() {
    let broker = Broker::start();
    let sims = Sims::start().await;
    let prefix = unique_prefix("flow");
    let relay = app::start(
        stack_config(&broker, &sims, &prefix, &[("RELAY_RETRY_DELAYS", "30s")]),
        Role::Serve,
    )
    .await
    .unwrap();
    let ingress = relay.ingress_addr.unwrap();
    sims.cms_faults(json!({"fail_next": 1, "error_status": 503}))
        .await;
    post_event(&sims.http, ingress, &guest_update(0, "c-wait", "g-wait")).await;
    let retried = "relay_retry_scheduled_total{tier=\"1\"}";
    assert!(
        wait_until(Duration::from_secs(60), || async {
            metric_value(&relay.metrics.render(), retried) == 1.0
        })
        .await
    );

    let mut latencies = Vec::new();
    for i in 1..=20 {
        let started = Instant::now();
        post_event(
            &sims.http,
            ingress,
            &guest_update(i, &format!("c-{i}"), &format!("g-{i}")),
        )
        .await;
        let key = format!("guest_sync:evt-{i}");
        assert!(
            wait_until(Duration::from_secs(20), || async {
                syncs_by_key(&sims.cms_stats().await).contains_key(&key)
            })
            .await
        );
        latencies.push(started.elapsed());
    }
    latencies.sort();
    eprintln!(
        "fresh-event latency while a retry waits: p50 {:?}, max {:?}",
        latencies[10], latencies[19]
    );
    assert!(
        latencies[19] < Duration::from_secs(10),
        "fresh events are not stalled: {latencies:?}"
    );
    assert!(
        !syncs_by_key(&sims.cms_stats().await).contains_key("guest_sync:evt-0"),
        "the retry has not fired early"
    );
    relay.stop().await;
}

/// Retries pending at a stop fire after the restart, none before its due time, none lost;
/// a retry record that arrives again after it was handled is a duplicate, never resent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_with_pending_retries_loses_none_and_fires_none_early() {
    let broker = Broker::start();
    let sims = Sims::start().await;
    let prefix = unique_prefix("restart");
    let extra = [("RELAY_RETRY_DELAYS", "4s")];
    let relay = app::start(stack_config(&broker, &sims, &prefix, &extra), Role::Serve)
        .await
        .unwrap();
    sims.cms_faults(json!({"fail_next": 10, "error_status": 503}))
        .await;
    for i in 0..10 {
        post_event(
            &sims.http,
            relay.ingress_addr.unwrap(),
            &guest_update(i, &format!("c-{i}"), &format!("g-{i}")),
        )
        .await;
    }
    let retried = "relay_retry_scheduled_total{tier=\"1\"}";
    assert!(
        wait_until(Duration::from_secs(60), || async {
            metric_value(&relay.metrics.render(), retried) == 10.0
        })
        .await
    );
    relay.stop().await;

    let relay = app::start(stack_config(&broker, &sims, &prefix, &extra), Role::Serve)
        .await
        .unwrap();
    assert!(
        sims.wait_for_syncs(10, Duration::from_secs(60)).await,
        "none lost"
    );
    let retries = read_async(
        &broker,
        format!("{prefix}.events.retry.1"),
        10,
        Duration::from_secs(10),
    )
    .await;
    let due: HashMap<String, i64> = retries
        .iter()
        .map(|r| {
            (
                format!("guest_sync:{}", hdrs(r)[headers::EVENT_ID]),
                hdrs(r)[headers::NOT_BEFORE].parse().unwrap(),
            )
        })
        .collect();
    let stats = sims.cms_stats().await;
    let mut errors = Vec::new();
    for w in stats["writes"].as_array().unwrap() {
        let key = w["key"].as_str().unwrap();
        let at = w["at_ms"].as_i64().unwrap();
        assert!(
            at >= due[key],
            "{key} synced {} ms before it was due",
            due[key] - at
        );
        errors.push(at - due[key]);
    }
    errors.sort();
    eprintln!(
        "retry delay error after restart (ms): p50 {} max {}",
        errors[errors.len() / 2],
        errors[errors.len() - 1]
    );

    // A retry record handled after the restart arrives again (a worker killed before its
    // commit leaves one behind): recognised as already synced, never sent again.
    let producer = test_producer(&broker);
    reproduce(&producer, &format!("{prefix}.events.retry.1"), &retries[0]).await;
    let redelivered_key = format!("guest_sync:{}", hdrs(&retries[0])[headers::EVENT_ID]);
    let handled = redelivery_recognised(&relay, &sims, &redelivered_key).await;
    let stats = sims.cms_stats().await;
    assert!(syncs_by_key(&stats).values().all(|n| *n == 1));
    assert_nothing_sent_twice(&stats);
    assert!(
        handled,
        "the redelivered retry record was recognised as a duplicate"
    );
    relay.stop().await;
}

/// Writes `m` again to `topic` with its key, value and headers: a redelivery as a worker
/// killed before its commit would leave it.
async fn reproduce(producer: &FutureProducer, topic: &str, m: &OwnedMessage) {
    let mut record = FutureRecord::to(topic)
        .key(m.key().unwrap())
        .payload(m.payload().unwrap());
    if let Some(h) = m.headers() {
        record = record.headers(h.clone());
    }
    producer.send(record, Duration::from_secs(5)).await.unwrap();
}

/// A dead-lettered event's outcome is recorded: a redelivery of its raw record or of its
/// last retry record (the CMS healthy again) is skipped as `already_dead_lettered` and
/// never reaches the CMS; an operator replay is still handled, through a retry tier too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redelivery_of_a_dead_lettered_event_is_skipped_but_a_replay_is_synced() {
    use genesys_relay::kafka::EventProducer;
    use genesys_relay::metrics::Metrics;
    use genesys_relay::operator::{replay_dead_letters, ReplaySelection};
    use std::sync::Arc;
    let broker = Broker::start();
    let sims = Sims::start().await;
    let prefix = unique_prefix("dlmark");
    let cfg = stack_config(&broker, &sims, &prefix, &[("RELAY_RETRY_DELAYS", "100ms")]);
    let relay = app::start(cfg.clone(), Role::Serve).await.unwrap();
    // Attempt 0 and its one retry fail: the event is dead-lettered `exhausted`.
    sims.cms_faults(json!({"fail_next": 2, "error_status": 503}))
        .await;
    post_event(
        &sims.http,
        relay.ingress_addr.unwrap(),
        &guest_update(5, "c-5", "g-5"),
    )
    .await;
    let dlq = read_async(
        &broker,
        format!("{prefix}.events.dlq"),
        1,
        Duration::from_secs(60),
    )
    .await;
    assert_eq!(hdrs(&dlq[0])[headers::ERROR_CLASS], "exhausted");
    let raw_topic = format!("{prefix}.events.raw");
    let retry_topic = format!("{prefix}.events.retry.1");
    let raw = read_async(&broker, raw_topic.clone(), 1, Duration::from_secs(10)).await;
    let retry = read_async(&broker, retry_topic.clone(), 1, Duration::from_secs(10)).await;
    let key = "guest_sync:evt-5";
    let writes = |stats: &serde_json::Value| stats["writes_by_key"][key].as_u64().unwrap_or(0);
    assert_eq!(writes(&sims.cms_stats().await), 2);

    // Redeliveries with a healthy CMS: the raw record and the last retry record.
    let producer = test_producer(&broker);
    reproduce(&producer, &raw_topic, &raw[0]).await;
    reproduce(&producer, &retry_topic, &retry[0]).await;
    let skipped = "relay_skipped_total{reason=\"already_dead_lettered\",route=\"guest_sync\"}";
    assert!(
        wait_until(Duration::from_secs(30), || async {
            metric_value(&relay.metrics.render(), skipped) >= 2.0
        })
        .await,
        "both redeliveries skipped; CMS saw {:?}",
        sims.cms_stats().await["answers_by_key"][key]
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    let stats = sims.cms_stats().await;
    assert_eq!(writes(&stats), 2, "a redelivery reached the CMS");
    assert!(syncs_by_key(&stats).is_empty());
    assert_eq!(metric_value(&relay.metrics.render(), skipped), 2.0);

    // A replay whose first attempt fails: its retry record is still the replay.
    sims.cms_faults(json!({"fail_next": 1, "error_status": 503}))
        .await;
    let operator = EventProducer::new(&cfg, Arc::new(Metrics::new())).unwrap();
    let sel = ReplaySelection {
        event_ids: vec!["evt-5".into()],
        all: false,
    };
    let report = replay_dead_letters(&cfg.operator(), &operator, &sel, false)
        .await
        .unwrap();
    assert_eq!(
        (report.replayed, report.already_synced.len()),
        (1, 0),
        "a dead-lettered mark is not a synced one"
    );
    assert!(sims.wait_for_syncs(1, Duration::from_secs(30)).await);
    // The first retry, its redelivery, and the replay's retry.
    let retries = read_async(&broker, retry_topic, 3, Duration::from_secs(10)).await;
    let replayed = retries
        .iter()
        .filter(|m| headers::header_str(m, headers::REPLAYED_FROM).is_some())
        .count();
    assert_eq!(
        (retries.len(), replayed),
        (3, 1),
        "the replay's retry record carries relay-replayed-from"
    );
    assert_eq!(syncs_by_key(&sims.cms_stats().await)[key], 1);
    assert_eq!(metric_value(&relay.metrics.render(), skipped), 2.0);
    // Counted once its synced mark is written.
    let synced = "relay_events_processed_total{outcome=\"synced\",route=\"guest_sync\"}";
    assert!(
        wait_until(Duration::from_secs(10), || async {
            metric_value(&relay.metrics.render(), synced) >= 1.0
        })
        .await
    );

    // Synced now: replaying it again is refused as already synced.
    let report = replay_dead_letters(&cfg.operator(), &operator, &sel, true)
        .await
        .unwrap();
    assert_eq!(report.already_synced, vec!["evt-5".to_string()]);
    relay.stop().await;
}
