//! Real Genesys shapes through the worker (real broker, genesys-sim over HTTP): attributes
//! from the event with no Genesys call, attributes from a queue conversation's customer,
//! the legacy envelope, enrichment through the conversation cache, the request budget
//! against a Genesys per-token limit, and hostile `Retry-After` values from the CMS.
//!
//! EventBridge and notification events are written to the raw topic as the ingress
//! records them (`RawEvent` with `shape`, `event_type` with `{id}`, `topic_name`, the
//! body as delivered), so these tests exercise the worker whatever the ingress parses.

use crate::common::*;
use genesys_relay::app::{self, Role};
use genesys_relay::kafka::{EventProducer, Topics};
use genesys_relay::metrics::Metrics;
use genesys_relay::schema::{Codec, EnrichedConversation, RawEvent, Shape};
use rdkafka::Message;
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::{Duration, Instant};

const CONVERSATION_GET: &str = "GET /api/v2/conversations/{conversationId}";
const DLQ_ANY: [&str; 4] = ["retryable", "permanent", "poison", "exhausted"];

/// An EventBridge event (API destination body) carrying `topic` and `body`.
fn eventbridge(id: &str, topic: &str, generic: &str, body: Value) -> Value {
    json!({
        "version": "0",
        "id": id,
        "detail-type": generic,
        "source": "aws.partner/genesys.com/cloud/org-1/relay",
        "account": "123456789012",
        "time": "2026-11-25T08:30:00Z",
        "region": "eu-west-1",
        "resources": [],
        "detail": {
            "topicName": topic,
            "version": "2",
            "eventBody": body,
            "metadata": {"CorrelationId": format!("corr-{id}")},
            "timestamp": "2026-11-25T08:30:00.123Z"
        }
    })
}

/// What the ingress records for a delivery, beside the body.
struct Recorded<'a> {
    shape: Shape,
    event_type: &'a str,
    topic: Option<&'a str>,
    conversation: Option<&'a str>,
    participant: Option<&'a str>,
    event_time_ms: i64,
}

/// The `RawEvent` the ingress records for a delivery.
fn raw(event_id: &str, r: Recorded<'_>, payload: &Value) -> RawEvent {
    RawEvent {
        event_id: event_id.into(),
        event_type: r.event_type.into(),
        shape: r.shape,
        conversation_id: r.conversation.map(Into::into),
        guest_id: None,
        event_time_ms: Some(r.event_time_ms),
        received_at_ms: r.event_time_ms,
        payload: payload.to_string(),
        traceparent: None,
        topic_name: r.topic.map(Into::into),
        participant_id: r.participant.map(Into::into),
        eventbridge_id: None,
    }
}

/// Writes raw events to the raw topic (keyed by conversation id, as the ingress does).
async fn produce(cfg: &genesys_relay::app::Config, events: &[RawEvent]) {
    let topics = cfg.topics();
    let producer = EventProducer::new(cfg, Arc::new(Metrics::new())).unwrap();
    let codec = Codec::single_object();
    for e in events {
        let key = e
            .conversation_id
            .clone()
            .unwrap_or_else(|| e.event_id.clone());
        let value = codec.encode(e).unwrap();
        producer
            .send(
                &topics.raw,
                &key,
                &value,
                &[("relay-event-id", &e.event_id)],
            )
            .await
            .unwrap();
    }
}

fn dlq_total(metrics: &str) -> f64 {
    DLQ_ANY
        .iter()
        .map(|c| metric_value(metrics, &format!("relay_dlq_total{{class=\"{c}\"}}")))
        .sum()
}

const ATTRIBUTES_TYPE: &str = "v2.detail.events.conversation.{id}.attributes";
const START_TYPE: &str = "v2.detail.events.conversation.{id}.customer.start";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attributes_from_events_sync_typed_fields_without_genesys_calls_and_legacy_still_syncs() {
    let broker = Broker::start();
    let sims = Sims::start().await;
    let prefix = unique_prefix("shapes");
    let cfg = stack_config(
        &broker,
        &sims,
        &prefix,
        &[(
            "RELAY_ATTRIBUTE_MAP",
            "cart_value:number,last_page,session_id,loyalty_tier,vip:bool=isVip",
        )],
    );
    let relay = app::start(cfg.clone(), Role::Serve).await.unwrap();

    // 1. An attributes detail event, as an EventBridge API destination delivers it.
    let conv = "5f8e2c1a-0000-4000-8000-00000000000a";
    let topic = format!("v2.detail.events.conversation.{conv}.attributes");
    let body = json!({
        "eventTime": 1_764_059_400_123_i64,
        "conversationId": conv,
        "participantId": "p-cust-1",
        "attributes": {"cart_value": "123.45", "last_page": "/checkout", "session_id": "s-1",
                       "loyalty_tier": "gold", "vip": "true", "unmapped": "x"}
    });
    let eb = eventbridge("eb-1", &topic, ATTRIBUTES_TYPE, body);
    // 2. A queue conversation notification: the customer participant carries attributes.
    let queue_conv = "5f8e2c1a-0000-4000-8000-00000000000b";
    let queue_topic = "v2.routing.queues.queue0002.conversations";
    let notification = json!({
        "topicName": queue_topic,
        "version": "2",
        "eventBody": {
            "id": queue_conv,
            "participants": [
                {"id": "p-acd", "purpose": "acd", "attributes": {}},
                {"id": "p-cust-2", "purpose": "customer", "externalContactId": "xc-2",
                 "attributes": {"cart_value": "7", "loyalty_tier": "silver", "vip": "false"}}
            ]
        },
        "metadata": {"CorrelationId": "corr-q"}
    });
    // 3. An attributes event whose value does not convert: a permanent failure.
    let bad_conv = "5f8e2c1a-0000-4000-8000-00000000000c";
    let bad = eventbridge(
        "eb-bad",
        &format!("v2.detail.events.conversation.{bad_conv}.attributes"),
        ATTRIBUTES_TYPE,
        json!({"eventTime": 1_764_059_400_000_i64, "conversationId": bad_conv, "participantId": "p-3",
               "attributes": {"cart_value": "a lot"}}),
    );
    produce(
        &cfg,
        &[
            raw(
                "eb-1",
                Recorded {
                    shape: Shape::EventBridge,
                    event_type: ATTRIBUTES_TYPE,
                    topic: Some(&topic),
                    conversation: Some(conv),
                    participant: Some("p-cust-1"),
                    event_time_ms: 1_764_059_400_123,
                },
                &eb,
            ),
            raw(
                "q-1",
                Recorded {
                    shape: Shape::Notification,
                    event_type: "v2.routing.queues.{id}.conversations",
                    topic: Some(queue_topic),
                    conversation: Some(queue_conv),
                    participant: None,
                    event_time_ms: 1_764_059_400_200,
                },
                &notification,
            ),
            raw(
                "eb-bad",
                Recorded {
                    shape: Shape::EventBridge,
                    event_type: ATTRIBUTES_TYPE,
                    topic: None,
                    conversation: Some(bad_conv),
                    participant: Some("p-3"),
                    event_time_ms: 1_764_059_400_000,
                },
                &bad,
            ),
        ],
    )
    .await;
    assert!(sims.wait_for_syncs(2, Duration::from_secs(60)).await);
    let permanent = "relay_dlq_total{class=\"permanent\"}";
    assert!(
        wait_until(Duration::from_secs(30), || async {
            metric_value(&relay.metrics.render(), permanent) == 1.0
        })
        .await,
        "the unconvertible value is dead-lettered as permanent"
    );
    let entries = sims.cms_stats().await["entries"].clone();
    assert_eq!(
        entries[conv],
        json!({"cart_value": 123.45, "last_page": "/checkout", "session_id": "s-1",
               "loyalty_tier": "gold", "isVip": true, "conversationId": conv,
               "participantId": "p-cust-1", "eventId": "eb-1", "eventTimeMs": 1_764_059_400_123_i64})
    );
    assert_eq!(entries[queue_conv]["cart_value"], 7);
    assert_eq!(entries[queue_conv]["isVip"], false);
    assert_eq!(entries[queue_conv]["participantId"], "p-cust-2");
    assert_eq!(entries[queue_conv]["externalContactId"], "xc-2");
    assert!(entries.get(bad_conv).is_none());
    // The events carried the attributes: not one Genesys call, not even a token.
    let g = sims.genesys_stats().await;
    assert_eq!(g["requests"], json!({}), "{g}");
    assert_eq!(g["token_requests"], 0);

    // 4. The legacy envelope still syncs, through one conversation GET.
    sims.set_attributes(
        "legacy-1",
        json!({"cart_value": "5.5", "loyalty_tier": "bronze"}),
    )
    .await;
    let legacy = envelope(
        "conversation:updated",
        "legacy-evt-1",
        "2026-11-25T08:31:00Z",
        json!({"conversationId": "legacy-1", "guestId": "g-legacy"}),
    );
    post_event(&sims.http, relay.ingress_addr.unwrap(), &legacy).await;
    assert!(sims.wait_for_syncs(3, Duration::from_secs(60)).await);
    let entry = &sims.cms_stats().await["entries"]["legacy-1"];
    assert_eq!(entry["cart_value"], 5.5);
    assert_eq!(entry["loyalty_tier"], "bronze");
    assert_eq!(sims.genesys_requests(CONVERSATION_GET, 200).await, 1);
    relay.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_customer_starts_of_five_conversations_make_five_gets() {
    let broker = Broker::start();
    let sims = Sims::start().await;
    let prefix = unique_prefix("cache");
    // A TTL far longer than the run, so "inside the TTL" holds on a busy machine.
    let cfg = stack_config(
        &broker,
        &sims,
        &prefix,
        &[("RELAY_GENESYS_CACHE_TTL", "120s")],
    );
    let relay = app::start(cfg.clone(), Role::Serve).await.unwrap();
    let events: Vec<RawEvent> = (0..50)
        .map(|i| {
            let conv = format!("start-conv-{}", i % 5);
            let topic = format!("v2.detail.events.conversation.{conv}.customer.start");
            let body = json!({"eventTime": 1_764_059_400_000_i64 + i as i64, "conversationId": conv,
                              "participantId": format!("p-{i}"), "mediaType": "MESSAGE", "direction": "INBOUND"});
            let payload = json!({"topicName": topic, "version": "2", "eventBody": body, "metadata": {"CorrelationId": "c"}});
            raw(&format!("start-{i}"), Recorded { shape: Shape::Notification, event_type: START_TYPE, topic: Some(&topic), conversation: Some(&conv), participant: Some(&format!("p-{i}")), event_time_ms: 1_764_059_400_000 + i as i64 }, &payload)
        })
        .collect();
    produce(&cfg, &events).await;
    let topics = Topics::new(&prefix, cfg.worker.retry_delays.len());
    let enriched = read_records(&broker, &topics.enriched, 50, Duration::from_secs(90));
    assert_eq!(enriched.len(), 50);
    let codec = Codec::single_object();
    let mut ids = std::collections::HashSet::new();
    for r in &enriched {
        let e: EnrichedConversation = codec.decode(r.payload().unwrap()).unwrap();
        assert!(e.conversation_id.starts_with("start-conv-"));
        assert_eq!(key_of(r), e.conversation_id);
        assert!(e
            .participants
            .iter()
            .any(|p| p.purpose.as_deref() == Some("customer")));
        ids.insert(e.event_id);
    }
    assert_eq!(ids.len(), 50, "one enriched record per event");
    assert_eq!(
        sims.genesys_requests(CONVERSATION_GET, 200).await,
        5,
        "one GET per conversation"
    );
    let hits = metric_value(&relay.metrics.render(), "relay_genesys_cache_hits_total");
    assert_eq!(hits, 45.0);
    relay.stop().await;
}

/// Genesys allows 60 requests per minute per token here; the relay is configured to
/// spend 60 per minute. 70 events, each needing a conversation GET, take about 70 s:
/// they cross a rate-limit window, wait their turn for a budget slot in their lanes, and
/// no request is ever refused for exceeding the budget.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_budget_keeps_the_relay_under_the_genesys_rate_limit() {
    const EVENTS: usize = 70;
    let broker = Broker::start();
    let sims = Sims::start().await;
    sims.genesys_faults(json!({"rate_limit_per_minute": 60}))
        .await;
    let prefix = unique_prefix("budget");
    let cfg = stack_config(
        &broker,
        &sims,
        &prefix,
        &[
            ("RELAY_GENESYS_RATE_LIMIT", "60"),
            ("RELAY_RETRY_DELAYS", "2s,30s,90s"),
        ],
    );
    let started = Instant::now();
    let relay = app::start(cfg, Role::Serve).await.unwrap();
    let ingress = relay.ingress_addr.unwrap();
    for i in 0..EVENTS {
        let body = envelope(
            "conversation:updated",
            &format!("budget-{i}"),
            "2026-11-25T08:00:00Z",
            json!({"conversationId": format!("budget-conv-{i}")}),
        );
        post_event(&sims.http, ingress, &body).await;
    }
    let all = sims.wait_for_syncs(EVENTS, Duration::from_secs(200)).await;
    let elapsed = started.elapsed();
    let g = sims.genesys_stats().await;
    let m = relay.metrics.render();
    assert!(
        all,
        "all {EVENTS} synced: {} after {elapsed:?}; {g}",
        syncs_by_key(&sims.cms_stats().await).len()
    );
    println!(
        "budget: {EVENTS} events in {elapsed:?}; deferred {}; genesys {}",
        metric_value(
            &m,
            "relay_events_processed_total{outcome=\"deferred\",route=\"guest_sync\"}"
        ),
        g["requests"]
    );
    assert_eq!(
        g["rate_limited"], 0,
        "no request exceeded the Genesys budget: {g}"
    );
    assert_eq!(sims.genesys_requests(CONVERSATION_GET, 429).await, 0);
    assert_eq!(
        sims.genesys_requests(CONVERSATION_GET, 200).await,
        EVENTS as u64
    );
    assert_eq!(dlq_total(&m), 0.0, "nothing dead-lettered");
    let stats = sims.cms_stats().await;
    assert!(syncs_by_key(&stats).values().all(|n| *n == 1));
    assert_nothing_sent_twice(&stats);
    relay.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_huge_retry_after_from_the_cms_is_capped_and_holds_nothing() {
    let broker = Broker::start();
    let sims = Sims::start().await;
    let prefix = unique_prefix("retryafter");
    let cfg = stack_config(
        &broker,
        &sims,
        &prefix,
        &[
            ("RELAY_RETRY_DELAYS", "1s,2s"),
            ("RELAY_TOPIC_PARTITIONS", "1"),
        ],
    );
    let relay = app::start(cfg, Role::Serve).await.unwrap();
    let ingress = relay.ingress_addr.unwrap();
    let mut posted = 0;
    for retry_after in ["18446744073709551615", "86400"] {
        // Three 429s with that Retry-After: three events share the one retry partition.
        sims.cms_faults(
            json!({"rate_limit_next": 3, "retry_after_s": retry_after.parse::<u64>().unwrap()}),
        )
        .await;
        let started = Instant::now();
        for i in 0..5 {
            let body = envelope(
                "conversation:updated",
                &format!("ra-{retry_after}-{i}"),
                "2026-11-25T08:00:00Z",
                json!({"conversationId": format!("ra-conv-{retry_after}-{i}")}),
            );
            post_event(&sims.http, ingress, &body).await;
        }
        posted += 5;
        assert!(
            sims.wait_for_syncs(posted, Duration::from_secs(60)).await,
            "Retry-After {retry_after}: every event synced within a minute, not a day"
        );
        println!(
            "Retry-After {retry_after}: 5 events synced in {:?}",
            started.elapsed()
        );
    }
    let m = relay.metrics.render();
    assert_eq!(
        metric_value(&m, "relay_retry_scheduled_total{tier=\"1\"}"),
        6.0
    );
    assert_eq!(dlq_total(&m), 0.0);
    assert_eq!(
        sims.cms_stats().await["requests"]["POST /v1/entries"]["429"],
        6
    );
    relay.stop().await;
}
