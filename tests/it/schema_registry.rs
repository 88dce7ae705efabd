//! Registry mode end to end (docs/contract.md#records-and-their-evolution): with
//! `RELAY_SCHEMA_REGISTRY_URL` the relay registers its schemas at start-up and writes the
//! Confluent wire format (`00`, a 4-byte big-endian schema id, the Avro datum) with the
//! registered ids; its own worker decodes those records. Real broker, real simulators,
//! including the schema registry simulator.

use crate::common::*;
use genesys_relay::app::{self, Role};
use genesys_relay::schema::{AvroRecord, Codec, EnrichedConversation, RawEvent};
use rdkafka::message::OwnedMessage;
use rdkafka::Message;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

/// Reads `expected` records of `topic` off the async runtime.
async fn records(broker: &Broker, topic: String, expected: usize) -> Vec<OwnedMessage> {
    let addr = broker.addr();
    tokio::task::spawn_blocking(move || {
        read_records_at(&addr, &topic, expected, Duration::from_secs(60))
    })
    .await
    .unwrap()
}

/// The schema id of a Confluent-framed value; fails on any other framing.
fn schema_id(value: &[u8]) -> u32 {
    assert!(value.len() > 5, "value too short: {value:?}");
    assert_eq!(value[0], 0, "Confluent magic byte, got {value:?}");
    u32::from_be_bytes([value[1], value[2], value[3], value[4]])
}

async fn get_json(http: &reqwest::Client, url: String) -> (u16, Value) {
    let resp = http.get(url).send().await.unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap())
}

/// Asserts that the registry knows `id` as version 1 (and the only version) of `subject`,
/// and that the schema behind it is `T`'s schema, logical types included.
async fn assert_registered<T: AvroRecord>(
    http: &reqwest::Client,
    registry: &str,
    subject: &str,
    id: u32,
) {
    let (status, body) = get_json(http, format!("{registry}/schemas/ids/{id}")).await;
    assert_eq!(status, 200, "{body}");
    let text = body["schema"].as_str().unwrap();
    let schema = apache_avro::Schema::parse_str(text).unwrap();
    assert_eq!(&schema, T::schema(), "schema {id} is {}", T::NAME);
    let (status, versions) =
        get_json(http, format!("{registry}/subjects/{subject}/versions")).await;
    assert_eq!((status, versions), (200, json!([1])), "{subject}");
    let (status, v1) = get_json(http, format!("{registry}/subjects/{subject}/versions/1")).await;
    assert_eq!(status, 200);
    assert_eq!(v1["id"], id, "{subject} version 1 is schema {id}");
}

/// A legacy `conversation:updated` envelope; since guest sync reads the conversation
/// (the guest resource does not exist), the guest id names the conversation whose
/// customer attributes are synced (and the CMS entry).
fn guest_update(event_id: &str, _conversation: &str, guest: &str) -> Value {
    envelope(
        "conversation:updated",
        event_id,
        "2026-11-24T08:00:01.000Z",
        json!({"conversationId": guest, "guestId": guest}),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registry_mode_end_to_end_with_idempotent_registration() {
    let broker = Broker::start();
    let sims = Sims::start().await;
    let any: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let registry = genesys_sim::start_schema_registry(any).await.unwrap();
    let registry_url = registry.base_url();
    let http = &sims.http;
    let prefix = unique_prefix("registry");
    let extra = [("RELAY_SCHEMA_REGISTRY_URL", registry_url.as_str())];
    let relay = app::start(stack_config(&broker, &sims, &prefix, &extra), Role::Serve)
        .await
        .unwrap();
    let ingress = relay.ingress_addr.unwrap();
    sims.set_attributes("g-1", json!({"cart_value": "10", "loyalty_tier": "gold"}))
        .await;
    sims.set_attributes("g-2", json!({"cart_value": "20"}))
        .await;

    post_event(http, ingress, &guest_update("evt-1", "c-1", "g-1")).await;
    let created = envelope(
        "conversation:created",
        "evt-c",
        "2026-11-24T08:00:02.000Z",
        json!({"conversationId": "conv-42"}),
    );
    post_event(http, ingress, &created).await;

    // (a) Raw records carry the id registered under `<prefix>.events.raw-value`.
    let raw_subject = format!("{prefix}.events.raw-value");
    let raw = records(&broker, format!("{prefix}.events.raw"), 2).await;
    assert_eq!(raw.len(), 2);
    let raw_id = schema_id(raw[0].payload().unwrap());
    assert_eq!(schema_id(raw[1].payload().unwrap()), raw_id);
    assert_registered::<RawEvent>(http, &registry_url, &raw_subject, raw_id).await;
    let (_, body) = get_json(http, format!("{registry_url}/schemas/ids/{raw_id}")).await;
    let text = body["schema"].as_str().unwrap();
    assert!(
        text.contains(r#""logicalType":"timestamp-millis""#) && text.contains(r#""default":null"#),
        "the full schema is registered, not its canonical form: {text}"
    );

    // (b) The enriched record uses the id of `<prefix>.conversations.enriched-value`.
    let enriched_subject = format!("{prefix}.conversations.enriched-value");
    let enriched = records(&broker, format!("{prefix}.conversations.enriched"), 1).await;
    assert_eq!(enriched.len(), 1);
    let enriched_id = schema_id(enriched[0].payload().unwrap());
    assert_ne!(enriched_id, raw_id);
    assert_registered::<EnrichedConversation>(http, &registry_url, &enriched_subject, enriched_id)
        .await;
    // The datum after the header is the record (decoded as a registry-aware reader would).
    let codec = Codec::with_registry_ids(HashMap::from([
        (RawEvent::NAME, raw_id),
        (EnrichedConversation::NAME, enriched_id),
    ]));
    let rec: EnrichedConversation = codec.decode(enriched[0].payload().unwrap()).unwrap();
    assert_eq!(
        (rec.event_id.as_str(), rec.conversation_id.as_str()),
        ("evt-c", "conv-42")
    );
    let mut raw_ids: Vec<String> = raw
        .iter()
        .map(|m| {
            codec
                .decode::<RawEvent>(m.payload().unwrap())
                .unwrap()
                .event_id
        })
        .collect();
    raw_ids.sort();
    assert_eq!(raw_ids, ["evt-1", "evt-c"]);

    // (c) The worker decoded the registry-framed raw record and synced the guest.
    assert!(
        wait_until(Duration::from_secs(60), || async {
            syncs_by_key(&sims.cms_stats().await).get("guest_sync:evt-1") == Some(&1)
        })
        .await,
        "guest synced in registry mode: {}",
        sims.cms_stats().await
    );
    assert_eq!(sims.cms_stats().await["entries"]["g-1"]["cart_value"], 10);

    // (d) A second relay registering against the same registry gets the same ids, and
    // no subject grows a second version; the first relay's worker reads its records.
    let second = app::start(relay_config(&broker, &prefix, &extra), Role::Ingress)
        .await
        .unwrap();
    post_event(
        http,
        second.ingress_addr.unwrap(),
        &guest_update("evt-2", "c-2", "g-2"),
    )
    .await;
    let raw = records(&broker, format!("{prefix}.events.raw"), 3).await;
    assert_eq!(raw.len(), 3);
    assert!(raw
        .iter()
        .all(|m| schema_id(m.payload().unwrap()) == raw_id));
    assert_registered::<RawEvent>(http, &registry_url, &raw_subject, raw_id).await;
    assert_registered::<EnrichedConversation>(http, &registry_url, &enriched_subject, enriched_id)
        .await;
    let (_, stats) = get_json(http, format!("{registry_url}/__sim/stats")).await;
    assert_eq!(stats["schemas"], 3, "{stats}");
    assert_eq!(
        stats["requests"]["POST /subjects/{subject}/versions"],
        json!({"200": 6}),
        "three registrations per relay: {stats}"
    );
    assert_eq!(
        stats["subjects"][format!("{prefix}.relay.idempotency-value")]
            .as_array()
            .map(Vec::len),
        Some(1),
        "{stats}"
    );
    assert!(
        wait_until(Duration::from_secs(60), || async {
            syncs_by_key(&sims.cms_stats().await).get("guest_sync:evt-2") == Some(&1)
        })
        .await,
        "the second relay's record was decoded by the first relay's worker"
    );
    assert_eq!(
        metric_value(&relay.metrics.render(), "relay_dlq_total{class=\"poison\"}"),
        0.0,
        "nothing failed to decode"
    );

    second.stop().await;
    relay.stop().await;
    registry.shutdown().await;
}

/// A `RawEvent` as written by the relay before schema v2 (no `topic_name`, no `participant_id`).
#[derive(serde::Serialize)]
struct RawEventV1 {
    event_id: String,
    event_type: String,
    shape: String,
    conversation_id: Option<String>,
    guest_id: Option<String>,
    event_time_ms: Option<i64>,
    received_at_ms: i64,
    payload: String,
    traceparent: Option<String>,
}

fn v1_schema_text() -> &'static str {
    include_str!("../../schemas/history/raw_event.v1.avsc")
}

/// The v1 datum of a guest update (no framing).
fn v1_datum(event_id: &str, conversation: &str, guest: &str) -> Vec<u8> {
    let schema = apache_avro::Schema::parse_str(v1_schema_text()).unwrap();
    let payload = guest_update(event_id, conversation, guest).to_string();
    let record = RawEventV1 {
        event_id: event_id.into(),
        event_type: "conversation:updated".into(),
        shape: "ENVELOPE".into(),
        conversation_id: Some(conversation.into()),
        guest_id: Some(guest.into()),
        event_time_ms: Some(1_795_507_201_000),
        received_at_ms: 1_795_507_201_500,
        payload,
        traceparent: None,
    };
    apache_avro::to_avro_datum(&schema, apache_avro::to_value(&record).unwrap()).unwrap()
}

/// Schema evolution end to end (docs/contract.md#records-and-their-evolution): records
/// written with the previous `RawEvent` schema (v1, before `topic_name`/`participant_id`)
/// are still handled by today's relay:
/// (a) in registry mode, a record carrying the id an earlier relay registered for v1;
/// (b) the committed single-object fixture (`tests/fixtures/raw_event_v1.avro`, v1
/// fingerprint) sitting in the dead-letter topic and replayed with `dlq replay`.
/// Both reach the CMS; nothing is dead-lettered as poison.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_of_the_previous_schema_decode_via_registry_and_dlq_replay() {
    use genesys_relay::kafka::{headers, EventProducer};
    use genesys_relay::operator::{replay_dead_letters, ReplaySelection};

    let broker = Broker::start();
    let sims = Sims::start().await;
    let any: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let registry = genesys_sim::start_schema_registry(any).await.unwrap();
    let registry_url = registry.base_url();
    let http = &sims.http;
    let prefix = unique_prefix("evolution");

    // An earlier relay registered v1 under the raw subject.
    let resp = http
        .post(format!(
            "{registry_url}/subjects/{prefix}.events.raw-value/versions"
        ))
        .header("content-type", "application/vnd.schemaregistry.v1+json")
        .json(&json!({ "schema": v1_schema_text() }))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let v1_id = resp.json::<Value>().await.unwrap()["id"].as_u64().unwrap() as u32;

    // Guest sync reads the customer's attributes from the conversation (v1 records carry
    // no attributes of their own).
    sims.set_attributes("conv-v1", json!({"cart_value": "11"}))
        .await;
    sims.set_attributes("conv-reg", json!({"cart_value": "22"}))
        .await;
    let extra = [("RELAY_SCHEMA_REGISTRY_URL", registry_url.as_str())];
    let cfg = stack_config(&broker, &sims, &prefix, &extra);
    let relay = app::start(cfg.clone(), Role::Serve).await.unwrap();

    // (a) A v1 record in the Confluent framing, with the v1 id.
    let producer = EventProducer::new(&cfg, relay.metrics.clone()).unwrap();
    let mut framed = vec![0];
    framed.extend_from_slice(&v1_id.to_be_bytes());
    framed.extend_from_slice(&v1_datum("evt-v1-registry", "conv-reg", "guest-reg"));
    producer
        .send(
            &format!("{prefix}.events.raw"),
            "conv-reg",
            &framed,
            &[(headers::EVENT_ID, "evt-v1-registry")],
        )
        .await
        .unwrap();

    // (b) The committed v1 fixture as a dead letter, then replayed.
    let fixture = std::fs::read(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/raw_event_v1.avro"),
    )
    .unwrap();
    assert_eq!(&fixture[..2], &[0xC3, 0x01], "single-object encoding");
    let raw_topic = format!("{prefix}.events.raw");
    producer
        .send(
            &format!("{prefix}.events.dlq"),
            "conv-v1",
            &fixture,
            &[
                (headers::EVENT_ID, "evt-v1"),
                (headers::ATTEMPT, "3"),
                (headers::ORIGINAL_TOPIC, raw_topic.as_str()),
                (headers::ORIGINAL_PARTITION, "0"),
                (headers::ORIGINAL_OFFSET, "0"),
                (headers::FIRST_FAILURE_AT, "1795507201000"),
                (headers::ROUTE, "guest_sync"),
                (headers::ERROR_CLASS, "retries_exhausted"),
                (headers::ERROR, "CMS answered 503"),
            ],
        )
        .await
        .unwrap();
    let selection = ReplaySelection {
        event_ids: vec!["evt-v1".into()],
        all: false,
    };
    let report = replay_dead_letters(&cfg.operator(), &producer, &selection, false)
        .await
        .unwrap();
    assert_eq!(report.replayed, 1);

    assert!(
        wait_until(Duration::from_secs(60), || async {
            let syncs = syncs_by_key(&sims.cms_stats().await);
            syncs.get("guest_sync:evt-v1-registry") == Some(&1)
                && syncs.get("guest_sync:evt-v1") == Some(&1)
        })
        .await,
        "both v1 records synced: {}",
        sims.cms_stats().await
    );
    let stats = sims.cms_stats().await;
    assert_eq!(stats["entries"]["conv-reg"]["cart_value"], 22);
    assert_eq!(stats["entries"]["conv-v1"]["cart_value"], 11);
    assert_eq!(
        metric_value(&relay.metrics.render(), "relay_dlq_total{class=\"poison\"}"),
        0.0,
        "no v1 record failed to decode"
    );
    relay.stop().await;
    registry.shutdown().await;
}
