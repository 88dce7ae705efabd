//! The consumer group end to end: webhook -> raw topic -> worker -> Genesys simulator ->
//! CMS simulator / enriched topic, with idempotency, skips, token refresh, 429 handling,
//! crash recovery and per-key ordering.

use crate::common::*;
use genesys_relay::app::{self, Role};
use genesys_relay::schema::{Codec, EnrichedConversation};
use rdkafka::Message;
use serde_json::json;
use std::time::Duration;

fn ts(i: usize) -> String {
    format!("2026-11-24T08:{:02}:{:02}.000Z", (i / 60) % 60, i % 60)
}

/// A legacy `conversation:updated` envelope; since guest sync reads the conversation
/// (the guest resource does not exist), the guest id names the conversation whose
/// customer attributes are synced (and the CMS entry).
fn guest_update(i: usize, _conversation: &str, guest: &str) -> serde_json::Value {
    envelope(
        "conversation:updated",
        &format!("evt-{i}"),
        &ts(i),
        json!({"conversationId": guest, "guestId": guest}),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guest_sync_end_to_end_and_a_redelivery_syncs_once() {
    let broker = Broker::start();
    let sims = Sims::start().await;
    let prefix = unique_prefix("guest");
    let relay = app::start(stack_config(&broker, &sims, &prefix, &[]), Role::Serve)
        .await
        .unwrap();
    let ingress = relay.ingress_addr.unwrap();
    sims.set_attributes("g-1", json!({"cart_value": "42.5", "last_page": "/checkout", "session_id": "s-9", "loyalty_tier": "gold", "unmapped": "1"})).await;

    let event = guest_update(1, "c-1", "g-1");
    post_event(&sims.http, ingress, &event).await;
    assert!(
        wait_until(Duration::from_secs(60), || async {
            sims.cms_stats().await["entries"].get("g-1").is_some()
        })
        .await,
        "entry synced"
    );
    let entry = &sims.cms_stats().await["entries"]["g-1"];
    assert_eq!(entry["cart_value"], 42.5);
    assert_eq!(entry["last_page"], "/checkout");
    assert_eq!(entry["session_id"], "s-9");
    assert_eq!(entry["loyalty_tier"], "gold");
    assert!(
        entry.get("unmapped").is_none(),
        "only mapped attributes are synced"
    );

    // The same webhook again: accepted, recognised downstream, not sent twice.
    post_event(&sims.http, ingress, &event).await;
    let handled = redelivery_recognised(&relay, &sims, "guest_sync:evt-1").await;
    let stats = sims.cms_stats().await;
    assert_nothing_sent_twice(&stats);
    assert_eq!(
        per_key(&stats, "writes_by_key").get("guest_sync:evt-1"),
        Some(&1)
    );
    assert!(handled, "the redelivery was recognised as a duplicate");
    let syncs = syncs_by_key(&stats);
    assert_eq!(syncs.get("guest_sync:evt-1"), Some(&1));
    assert_eq!(syncs.len(), 1);
    relay.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gone_guest_is_skipped_and_conflict_becomes_an_update() {
    let broker = Broker::start();
    let sims = Sims::start().await;
    let prefix = unique_prefix("skip");
    let relay = app::start(stack_config(&broker, &sims, &prefix, &[]), Role::Serve)
        .await
        .unwrap();
    let ingress = relay.ingress_addr.unwrap();
    // An entry that already exists: the relay's POST gets 409 and must PUT.
    let r = sims
        .http
        .post(format!("{}/v1/entries", sims.cms.base_url()))
        .header("X-Idempotency-Key", "seed")
        .json(&json!({"id": "g-2", "type": "guest_session", "fields": {"cart_value": 1}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    sims.set_attributes("g-2", json!({"cart_value": "99", "loyalty_tier": "silver"}))
        .await;

    post_event(&sims.http, ingress, &guest_update(1, "c-1", "gone-7")).await;
    post_event(&sims.http, ingress, &guest_update(2, "c-2", "g-2")).await;
    let synced = "relay_events_processed_total{outcome=\"synced\",route=\"guest_sync\"}";
    let skipped = "relay_skipped_total{reason=\"conversation_not_found\",route=\"guest_sync\"}";
    assert!(
        wait_until(Duration::from_secs(60), || async {
            let m = relay.metrics.render();
            metric_value(&m, synced) >= 1.0 && metric_value(&m, skipped) >= 1.0
        })
        .await,
        "{}",
        relay.metrics.render()
    );
    let stats = sims.cms_stats().await;
    assert!(
        stats["entries"].get("gone-7").is_none(),
        "a gone guest writes nothing"
    );
    assert_eq!(
        stats["entries"]["g-2"]["cart_value"], 99,
        "409 was followed by an update"
    );
    assert_eq!(stats["requests"]["POST /v1/entries"]["409"], 1);
    assert_eq!(stats["requests"]["PUT /v1/entries/{id}"]["200"], 1);
    assert_eq!(syncs_by_key(&stats).get("guest_sync:evt-2"), Some(&1));
    assert_nothing_sent_twice(&stats);
    relay.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_expiry_refreshes_once_and_429_waits() {
    let broker = Broker::start();
    let sims = Sims::start().await;
    let prefix = unique_prefix("token");
    sims.genesys_faults(json!({"token_ttl_s": 3})).await;
    let relay = app::start(stack_config(&broker, &sims, &prefix, &[]), Role::Serve)
        .await
        .unwrap();
    let ingress = relay.ingress_addr.unwrap();
    for i in 0..10 {
        post_event(
            &sims.http,
            ingress,
            &guest_update(i, &format!("c-{i}"), &format!("g-{i}")),
        )
        .await;
    }
    assert!(sims.wait_for_syncs(10, Duration::from_secs(60)).await);
    assert_eq!(
        sims.genesys_stats().await["token_requests"],
        1,
        "one token for the first burst"
    );

    tokio::time::sleep(Duration::from_secs(4)).await; // the token expired
    sims.genesys_faults(json!({"token_ttl_s": 3600})).await; // the next token outlives the test
    for i in 10..30 {
        post_event(
            &sims.http,
            ingress,
            &guest_update(i, &format!("c-{i}"), &format!("g-{i}")),
        )
        .await;
    }
    assert!(sims.wait_for_syncs(30, Duration::from_secs(60)).await);
    let g = sims.genesys_stats().await;
    assert_eq!(
        g["token_requests"], 2,
        "20 concurrent events after expiry cause exactly one refresh: {g}"
    );

    sims.genesys_faults(json!({"rate_limit_next": 2, "retry_after_s": 1}))
        .await;
    let started = std::time::Instant::now();
    post_event(&sims.http, ingress, &guest_update(30, "c-30", "g-30")).await;
    assert!(sims.wait_for_syncs(31, Duration::from_secs(60)).await);
    assert!(
        started.elapsed() >= Duration::from_millis(1800),
        "two Retry-After: 1 waits were honoured"
    );
    let g = sims.genesys_stats().await;
    assert_eq!(
        g["requests"]["GET /api/v2/conversations/{conversationId}"]["429"], 2,
        "{g}"
    );
    let m = relay.metrics.render();
    assert_eq!(
        metric_value(
            &m,
            "relay_events_processed_total{outcome=\"dead_lettered\",route=\"guest_sync\"}"
        ),
        0.0
    );
    assert!(syncs_by_key(&sims.cms_stats().await)
        .values()
        .all(|n| *n == 1));
    relay.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conversation_created_is_enriched_onto_the_topic() {
    let broker = Broker::start();
    let sims = Sims::start().await;
    let prefix = unique_prefix("enrich");
    let relay = app::start(stack_config(&broker, &sims, &prefix, &[]), Role::Serve)
        .await
        .unwrap();
    let event = envelope(
        "conversation:created",
        "evt-c",
        &ts(1),
        json!({"conversationId": "conv-42"}),
    );
    post_event(&sims.http, relay.ingress_addr.unwrap(), &event).await;

    let records = tokio::task::spawn_blocking({
        let topic = format!("{prefix}.conversations.enriched");
        let addr = broker.addr();
        move || {
            let b = BrokerRef(addr);
            b.read(&topic)
        }
    })
    .await
    .unwrap();
    assert_eq!(records.len(), 1);
    let rec: EnrichedConversation = Codec::single_object()
        .decode(records[0].payload().unwrap())
        .unwrap();
    assert_eq!(rec.conversation_id, "conv-42");
    assert_eq!(rec.event_id, "evt-c");
    assert!(
        !rec.participants.is_empty(),
        "participants come from the API"
    );
    let api: serde_json::Value = serde_json::from_str(&rec.conversation_json).unwrap();
    assert_eq!(api["id"], "conv-42");
    assert_eq!(key_of(&records[0]), "conv-42");
    // The backend POST carried the idempotency key.
    assert!(
        wait_until(Duration::from_secs(10), || async {
            syncs_by_key(&sims.cms_stats().await).get("conversation_enrich:evt-c") == Some(&1)
        })
        .await
    );
    relay.stop().await;
}

/// Reads a topic on a blocking thread without borrowing the `Broker` fixture.
struct BrokerRef(String);
impl BrokerRef {
    fn read(&self, topic: &str) -> Vec<rdkafka::message::OwnedMessage> {
        use rdkafka::consumer::{BaseConsumer, Consumer};
        let consumer: BaseConsumer = rdkafka::ClientConfig::new()
            .set("bootstrap.servers", &self.0)
            .set("group.id", unique_prefix("read"))
            .set("auto.offset.reset", "earliest")
            .create()
            .unwrap();
        consumer.subscribe(&[topic]).unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while std::time::Instant::now() < deadline {
            if let Some(Ok(m)) = consumer.poll(Duration::from_millis(200)) {
                return vec![m.detach()];
            }
        }
        vec![]
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_key_stays_in_order_while_other_keys_progress() {
    let broker = Broker::start();
    let sims = Sims::start().await;
    let prefix = unique_prefix("order");
    sims.cms_faults(json!({"latency_ms": 40})).await;
    let relay = app::start(stack_config(&broker, &sims, &prefix, &[]), Role::Serve)
        .await
        .unwrap();
    let ingress = relay.ingress_addr.unwrap();
    // 30 events for one conversation (one key), posted in order, then 30 for other keys.
    for i in 0..30 {
        post_event(&sims.http, ingress, &guest_update(i, "c-hot", "g-hot")).await;
    }
    for i in 30..60 {
        post_event(
            &sims.http,
            ingress,
            &guest_update(i, &format!("c-{i}"), &format!("g-{i}")),
        )
        .await;
    }
    assert!(sims.wait_for_syncs(60, Duration::from_secs(90)).await);
    let writes = sims.cms_stats().await["writes"].as_array().unwrap().clone();
    let hot: Vec<usize> = writes
        .iter()
        .filter(|w| w["entry_id"] == "g-hot")
        .map(|w| {
            w["key"]
                .as_str()
                .unwrap()
                .trim_start_matches("guest_sync:evt-")
                .parse()
                .unwrap()
        })
        .collect();
    assert_eq!(
        hot,
        (0..30).collect::<Vec<_>>(),
        "one key's events reach the sink in order"
    );
    let last_hot = writes
        .iter()
        .rposition(|w| w["entry_id"] == "g-hot")
        .unwrap();
    let others_before = writes[..last_hot]
        .iter()
        .filter(|w| w["entry_id"] != "g-hot")
        .count();
    assert!(
        others_before >= 10,
        "other keys progressed while the hot key was busy ({others_before} before its last write)"
    );
    relay.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_worker_is_replaced_and_nothing_is_lost_or_synced_twice() {
    let broker = Broker::start();
    let sims = Sims::start().await;
    let prefix = unique_prefix("kill");
    sims.cms_faults(json!({"latency_ms": 30})).await;
    let ingress = app::start(relay_config(&broker, &prefix, &[]), Role::Ingress)
        .await
        .unwrap();
    for i in 0..150 {
        post_event(
            &sims.http,
            ingress.ingress_addr.unwrap(),
            &guest_update(i, &format!("c-{}", i % 40), &format!("g-{i}")),
        )
        .await;
    }
    let mut vars = relay_vars(&broker, &prefix, &[("RELAY_MAX_IN_FLIGHT", "8")]);
    vars.extend(sims.vars());
    let spawn_worker = || {
        std::process::Command::new(env!("CARGO_BIN_EXE_genesys-relay"))
            .arg("worker")
            .env_clear()
            .envs(&vars)
            .env("RELAY_LOG", "warn")
            .spawn()
            .unwrap()
    };
    let mut first = spawn_worker();
    assert!(
        wait_until(Duration::from_secs(60), || async {
            syncs_by_key(&sims.cms_stats().await).len() >= 30
        })
        .await
    );
    first.kill().unwrap(); // SIGKILL: no drain, no final commit
    first.wait().unwrap();
    let before_kill = sims.cms_stats().await;
    let synced_by_first = syncs_by_key(&before_kill).len();
    assert!(synced_by_first < 150, "the first worker was killed mid-run");
    // Genesys redelivers 20 events the first worker synced: the replacement must know
    // them from the idempotency topic, whether or not their offsets were committed.
    let redelivered: Vec<usize> = (0..150)
        .filter(|i| {
            before_kill["answers_by_key"][format!("guest_sync:evt-{i}")] == json!(["applied"])
        })
        .take(20)
        .collect();
    assert_eq!(redelivered.len(), 20);
    for i in &redelivered {
        post_event(
            &sims.http,
            ingress.ingress_addr.unwrap(),
            &guest_update(*i, &format!("c-{}", i % 40), &format!("g-{i}")),
        )
        .await;
    }

    let mut second = spawn_worker();
    let all = sims.wait_for_syncs(150, Duration::from_secs(120)).await;
    let _ = second.kill();
    second.wait().unwrap();
    assert!(
        all,
        "every event was handled: {} of 150",
        syncs_by_key(&sims.cms_stats().await).len()
    );
    // Let redeliveries still being handled reach the CMS before counting.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let stats = sims.cms_stats().await;
    let syncs = syncs_by_key(&stats);
    let twice: Vec<_> = syncs.iter().filter(|(_, n)| **n != 1).collect();
    assert!(twice.is_empty(), "no key stored twice: {twice:?}");
    // What the relay sent again after a 2xx: only what the killed worker had in flight
    // (synced, mark not yet acknowledged), at most RELAY_MAX_IN_FLIGHT (8) of its raw
    // loop plus 8 of its retry loop (idle here: no failures). The replacement read the
    // idempotency topic to its end before consuming, so no tail lag adds to this.
    let redundant = redundant_sends(&stats);
    let total: u64 = redundant.values().sum();
    eprintln!("redundant sends after one SIGKILL: {total} ({redundant:?})");
    assert!(
        total <= 16,
        "{total} redundant sends after one kill (bound 8 + 8): {redundant:?}"
    );
    let redelivered_resent: Vec<_> = redelivered
        .iter()
        .map(|i| format!("guest_sync:evt-{i}"))
        .filter(|k| redundant.contains_key(k))
        .collect();
    assert!(
        redelivered_resent.len() <= 8,
        "redelivered events the first worker had synced were sent again: {redelivered_resent:?}"
    );
    ingress.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_older_event_never_overwrites_newer_guest_state_even_after_a_restart() {
    let broker = Broker::start();
    let sims = Sims::start().await;
    let prefix = unique_prefix("stale");
    let newer = envelope(
        "conversation:updated",
        "evt-new",
        "2026-11-24T10:00:00Z",
        json!({"conversationId": "g-s", "guestId": "g-s"}),
    );
    let older = |id: &str| {
        envelope(
            "conversation:updated",
            id,
            "2026-11-24T09:00:00Z",
            json!({"conversationId": "g-s", "guestId": "g-s"}),
        )
    };
    let stale = "relay_skipped_total{reason=\"stale\",route=\"guest_sync\"}";

    let relay = app::start(stack_config(&broker, &sims, &prefix, &[]), Role::Serve)
        .await
        .unwrap();
    post_event(&sims.http, relay.ingress_addr.unwrap(), &newer).await;
    assert!(sims.wait_for_syncs(1, Duration::from_secs(60)).await);
    post_event(&sims.http, relay.ingress_addr.unwrap(), &older("evt-old-1")).await;
    assert!(
        wait_until(Duration::from_secs(30), || async {
            metric_value(&relay.metrics.render(), stale) == 1.0
        })
        .await
    );
    relay.stop().await;

    // A new process learns the guest's newest event time from the idempotency topic.
    let relay = app::start(stack_config(&broker, &sims, &prefix, &[]), Role::Serve)
        .await
        .unwrap();
    post_event(&sims.http, relay.ingress_addr.unwrap(), &older("evt-old-2")).await;
    assert!(
        wait_until(Duration::from_secs(60), || async {
            metric_value(&relay.metrics.render(), stale) == 1.0
        })
        .await,
        "the restarted worker skips the older event as stale"
    );
    let stats = sims.cms_stats().await;
    assert_eq!(stats["entries"]["g-s"]["eventId"], "evt-new");
    assert_eq!(
        syncs_by_key(&stats).len(),
        1,
        "only the newer event was synced"
    );
    relay.stop().await;
}
