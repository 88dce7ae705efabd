//! `dlq list` and `dlq replay` against a real broker: dead letters written with realistic
//! headers are listed with those headers parsed, and replay writes the same key and value
//! bytes to the raw topic with `relay-replayed-from` and without `relay-attempt`.

use crate::common::*;
use genesys_relay::app::Config;
use genesys_relay::kafka::{ensure_topics, headers, EventProducer, Topics};
use genesys_relay::metrics::Metrics;
use genesys_relay::operator::{
    list_dead_letters, replay_dead_letters, DeadLetter, OperatorError, ReplaySelection,
};
use rdkafka::message::{Header, Headers, OwnedHeaders, OwnedMessage};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{ClientConfig, Message};
use std::sync::Arc;
use std::time::Duration;

const FIRST_FAILURE: i64 = 1_795_507_200_000;
const TRACEPARENT: &str = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";

/// A value that is not text, so byte-for-byte equality means something.
fn value_of(i: usize) -> Vec<u8> {
    let mut v = vec![0xc3, 0x01, 0x00, 0xff];
    v.extend(format!("avro-ish payload {i}").as_bytes());
    v
}

/// Writes 3 dead letters with relay headers and one with no headers and a garbage value;
/// returns (partition, offset) of each, in write order.
async fn seed(broker: &Broker, dlq: &str) -> Vec<(i32, i64)> {
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", broker.addr())
        .create()
        .unwrap();
    let mut at = Vec::new();
    for i in 0..3 {
        let (attempt, first, offset) = (
            (i + 1).to_string(),
            (FIRST_FAILURE + i as i64).to_string(),
            (100 + i).to_string(),
        );
        let error = format!(
            "CMS answered HTTP 422 for guest-{i}: {}",
            "field invalid; ".repeat(10)
        );
        let h = OwnedHeaders::new()
            .insert(Header {
                key: headers::EVENT_ID,
                value: Some(&format!("evt-{i}")),
            })
            .insert(Header {
                key: headers::ATTEMPT,
                value: Some(&attempt),
            })
            .insert(Header {
                key: headers::ORIGINAL_TOPIC,
                value: Some("x.events.retry.1"),
            })
            .insert(Header {
                key: headers::ORIGINAL_PARTITION,
                value: Some("1"),
            })
            .insert(Header {
                key: headers::ORIGINAL_OFFSET,
                value: Some(&offset),
            })
            .insert(Header {
                key: headers::FIRST_FAILURE_AT,
                value: Some(&first),
            })
            .insert(Header {
                key: headers::ROUTE,
                value: Some("guest-sync"),
            })
            .insert(Header {
                key: headers::ERROR_CLASS,
                value: Some(if i == 2 { "poison" } else { "exhausted" }),
            })
            .insert(Header {
                key: headers::ERROR,
                value: Some(&error),
            })
            .insert(Header {
                key: headers::TRACEPARENT,
                value: Some(TRACEPARENT),
            });
        let key = format!("conv-{i}");
        let value = value_of(i);
        let record = FutureRecord::to(dlq).key(&key).payload(&value).headers(h);
        let d = producer
            .send(record, Duration::from_secs(10))
            .await
            .unwrap();
        at.push((d.partition, d.offset));
    }
    let garbage = [0xde, 0xad, 0xbe, 0xef, 0x00, 0x7b];
    let record = FutureRecord::to(dlq).key("odd").payload(&garbage[..]);
    let d = producer
        .send(record, Duration::from_secs(10))
        .await
        .unwrap();
    at.push((d.partition, d.offset));
    at
}

struct Fixture {
    broker: Broker,
    cfg: Config,
    topics: Topics,
    producer: EventProducer,
    seeded: Vec<(i32, i64)>,
}

async fn fixture(name: &str) -> Fixture {
    let broker = Broker::start();
    let prefix = unique_prefix(name);
    let cfg = relay_config(&broker, &prefix, &[]);
    let topics = cfg.topics();
    ensure_topics(&cfg, &topics).await.unwrap();
    let seeded = seed(&broker, &topics.dlq).await;
    let producer = EventProducer::new(&cfg, Arc::new(Metrics::new())).unwrap();
    Fixture {
        broker,
        cfg,
        topics,
        producer,
        seeded,
    }
}

fn header<'a>(m: &'a OwnedMessage, name: &str) -> Option<&'a str> {
    headers::header_str(m, name)
}

fn find<'a>(letters: &'a [DeadLetter], id: &str) -> &'a DeadLetter {
    letters
        .iter()
        .find(|d| d.event_id.as_deref() == Some(id))
        .unwrap()
}

fn sel(ids: &[&str], all: bool) -> ReplaySelection {
    ReplaySelection {
        event_ids: ids.iter().map(|s| s.to_string()).collect(),
        all,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_parses_the_relay_headers_and_keeps_odd_records() {
    let f = fixture("dlqlist").await;
    let letters = list_dead_letters(&f.cfg.operator(), None).await.unwrap();
    assert_eq!(letters.len(), 4, "{letters:#?}");
    let sorted: Vec<(i32, i64)> = letters
        .iter()
        .map(|d| (d.topic_partition, d.offset))
        .collect();
    let mut expected = f.seeded.clone();
    expected.sort();
    assert_eq!(sorted, expected, "partition and offset order");

    for i in 0..3 {
        let d = find(&letters, &format!("evt-{i}"));
        assert_eq!((d.topic_partition, d.offset), f.seeded[i]);
        assert_eq!(d.key.as_deref(), Some(format!("conv-{i}").as_str()));
        assert_eq!(d.route.as_deref(), Some("guest-sync"));
        assert_eq!(
            d.class.as_deref(),
            Some(if i == 2 { "poison" } else { "exhausted" })
        );
        assert_eq!(d.attempts, Some(i as i64 + 1));
        assert_eq!(d.first_failure_at_ms, Some(FIRST_FAILURE + i as i64));
        assert!(d
            .error
            .as_deref()
            .unwrap()
            .starts_with(&format!("CMS answered HTTP 422 for guest-{i}")));
        assert_eq!(d.original_topic.as_deref(), Some("x.events.retry.1"));
        assert_eq!(d.original_partition, Some(1));
        assert_eq!(d.original_offset, Some(100 + i as i64));
        assert_eq!(d.value_len, value_of(i).len());
    }
    let odd = letters.iter().find(|d| d.event_id.is_none()).unwrap();
    assert_eq!((odd.topic_partition, odd.offset), f.seeded[3]);
    assert_eq!(odd.key.as_deref(), Some("odd"));
    assert_eq!(
        (
            odd.route.clone(),
            odd.class.clone(),
            odd.attempts,
            odd.error.clone()
        ),
        (None, None, None, None)
    );
    assert_eq!(odd.value_len, 6);

    let table = genesys_relay::operator::format_table(&letters);
    assert_eq!(table.lines().count(), 5, "{table}");
    assert!(table.contains("2026-11-24T08:00:00.000Z"), "{table}");
    assert_eq!(
        list_dead_letters(&f.cfg.operator(), Some(2)).await.unwrap(),
        letters[..2].to_vec()
    );

    // An empty (or absent) dead-letter topic lists nothing.
    let other = relay_config(&f.broker, &unique_prefix("empty"), &[]);
    assert!(list_dead_letters(&other.operator(), None)
        .await
        .unwrap()
        .is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_one_event_writes_the_same_record_to_raw() {
    let f = fixture("dlqone").await;
    let raw = f.topics.raw.clone();

    // A dry run reports and writes nothing.
    let report = replay_dead_letters(
        &f.cfg.operator(),
        &f.producer,
        &sel(&["evt-1"], false),
        true,
    )
    .await
    .unwrap();
    assert_eq!(
        (report.matched, report.replayed, report.dry_run),
        (1, 0, true)
    );
    assert!(report.missing.is_empty());
    assert_eq!(topic_size(&f.broker, &raw), 0, "a dry run writes nothing");

    let report = replay_dead_letters(
        &f.cfg.operator(),
        &f.producer,
        &sel(&["evt-1", "evt-nope"], false),
        false,
    )
    .await
    .unwrap();
    assert_eq!(
        (report.matched, report.replayed, report.dry_run),
        (1, 1, false)
    );
    assert_eq!(
        report.missing,
        vec!["evt-nope".to_string()],
        "an unknown id is reported"
    );

    let records = read_records(&f.broker, &raw, 2, Duration::from_secs(5));
    assert_eq!(records.len(), 1, "exactly one record replayed");
    let r = &records[0];
    assert_eq!(key_of(r), "conv-1");
    assert_eq!(
        r.payload().unwrap(),
        value_of(1).as_slice(),
        "value bytes unchanged"
    );
    assert_eq!(header(r, headers::EVENT_ID), Some("evt-1"));
    let (p, o) = f.seeded[1];
    assert_eq!(
        header(r, headers::REPLAYED_FROM),
        Some(format!("{}/{p}/{o}", f.topics.dlq).as_str())
    );
    assert_eq!(header(r, headers::TRACEPARENT), Some(TRACEPARENT));
    assert_eq!(header(r, headers::ATTEMPT), None, "a fresh attempt count");
    let names: Vec<String> = r
        .headers()
        .unwrap()
        .iter()
        .map(|h| h.key.to_string())
        .collect();
    assert_eq!(
        names.len(),
        3,
        "only event id, replayed-from and traceparent: {names:?}"
    );

    // Nothing selected is an error and writes nothing.
    let err = replay_dead_letters(&f.cfg.operator(), &f.producer, &sel(&[], false), false)
        .await
        .unwrap_err();
    assert!(matches!(err, OperatorError::NothingSelected));
    assert!(err.to_string().contains("--event-id"), "{err}");
    assert_eq!(topic_size(&f.broker, &raw), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_all_writes_every_dead_letter() {
    let f = fixture("dlqall").await;
    let report = replay_dead_letters(&f.cfg.operator(), &f.producer, &sel(&[], true), true)
        .await
        .unwrap();
    assert_eq!((report.matched, report.replayed), (4, 0));
    assert_eq!(topic_size(&f.broker, &f.topics.raw), 0);

    let report = replay_dead_letters(&f.cfg.operator(), &f.producer, &sel(&[], true), false)
        .await
        .unwrap();
    assert_eq!(
        (report.matched, report.replayed, report.superseded),
        (4, 4, 0)
    );
    let records = read_records(&f.broker, &f.topics.raw, 5, Duration::from_secs(5));
    assert_eq!(records.len(), 4);
    for r in &records {
        assert_eq!(header(r, headers::ATTEMPT), None);
        let from = header(r, headers::REPLAYED_FROM).unwrap();
        match header(r, headers::EVENT_ID) {
            Some(id) => {
                let i: usize = id.trim_start_matches("evt-").parse().unwrap();
                assert_eq!(key_of(r), format!("conv-{i}"));
                assert_eq!(r.payload().unwrap(), value_of(i).as_slice());
                let (p, o) = f.seeded[i];
                assert_eq!(from, format!("{}/{p}/{o}", f.topics.dlq));
            }
            None => {
                assert_eq!(key_of(r), "odd");
                assert_eq!(r.payload().unwrap(), &[0xde, 0xad, 0xbe, 0xef, 0x00, 0x7b]);
                let (p, o) = f.seeded[3];
                assert_eq!(from, format!("{}/{p}/{o}", f.topics.dlq));
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_lists_dead_letters_as_json() {
    let f = fixture("dlqbin").await;
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_genesys-relay"))
        .args(["dlq", "list", "--json"])
        .env("RELAY_KAFKA_BROKERS", f.broker.addr())
        .env("RELAY_TOPIC_PREFIX", &f.cfg.kafka.topic_prefix)
        .output()
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let list = json.as_array().unwrap();
    assert_eq!(list.len(), 4, "{json:#}");
    let d = list.iter().find(|d| d["event_id"] == "evt-0").unwrap();
    assert_eq!(d["key"], "conv-0");
    assert_eq!(d["route"], "guest-sync");
    assert_eq!(d["class"], "exhausted");
    assert_eq!(d["attempts"], 1);
    assert_eq!(d["first_failure_at_ms"], FIRST_FAILURE);
    assert_eq!(d["original_offset"], 100);
    assert!(list
        .iter()
        .any(|d| d["event_id"].is_null() && d["key"] == "odd"));

    // The table and the replay summary, end to end.
    let run = |args: &'static [&'static str]| {
        let (brokers, prefix) = (f.broker.addr(), f.cfg.kafka.topic_prefix.clone());
        async move {
            tokio::process::Command::new(env!("CARGO_BIN_EXE_genesys-relay"))
                .args(args)
                .env("RELAY_KAFKA_BROKERS", brokers)
                .env("RELAY_TOPIC_PREFIX", prefix)
                .output()
                .await
                .unwrap()
        }
    };
    let table = run(&["dlq", "list", "--limit", "2"]).await;
    assert!(table.status.success());
    assert_eq!(String::from_utf8_lossy(&table.stdout).lines().count(), 3);
    let dry = run(&["dlq", "replay", "--all", "--dry-run"]).await;
    assert_eq!(
        String::from_utf8_lossy(&dry.stdout),
        "dry run: would replay 4 dead letters\n"
    );
    let none = run(&["dlq", "replay"]).await;
    assert!(!none.status.success());
    assert!(String::from_utf8_lossy(&none.stderr).contains("nothing selected"));
    let missing = run(&[
        "dlq",
        "replay",
        "--event-id",
        "evt-2",
        "--event-id",
        "evt-x",
    ])
    .await;
    assert!(!missing.status.success(), "a missing id fails the command");
    assert_eq!(
        String::from_utf8_lossy(&missing.stdout),
        "replayed 1 of 1 dead letters\n"
    );
    assert!(String::from_utf8_lossy(&missing.stderr).contains("not found in"));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("evt-x"));
    assert_eq!(topic_size(&f.broker, &f.topics.raw), 1);
}
