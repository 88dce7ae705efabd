//! Fuzzing the ingress: the envelope parser and the webhook authentication with proptest
//! (never a panic, Ok only for what fits), then random requests against a real ingress on a
//! real broker (no 5xx but 503, and the raw topic holds exactly what was answered 202).
//!
//! `PROPTEST_CASES` scales the property tests (default 256 each); `FUZZ_HTTP_REQUESTS` and
//! `FUZZ_HTTP_SEED` the HTTP test (default 200 requests, a fixed seed).

use crate::common::*;
use genesys_relay::app::{self, Role};
use genesys_relay::config::Secret;
use genesys_relay::event::{parse_event, EnvelopeError};
use genesys_relay::ingress::{AuthError, WebhookAuth};
use genesys_relay::kafka::headers;
use genesys_relay::schema::{Codec, RawEvent};
use proptest::prelude::*;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rdkafka::message::Headers;
use rdkafka::Message;
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;
use std::time::Duration;

const SECRET: &str = "fuzz-webhook-secret-7f3a";
const NOW: i64 = 1_795_507_200;

/// What an accepted body must look like: an object of one of the shapes.
fn assert_fits_a_shape(body: &[u8], event: &RawEvent) {
    let value: Value = serde_json::from_slice(body).expect("Ok only for valid JSON");
    let obj = value.as_object().expect("Ok only for an object");
    let non_empty_str = |v: Option<&Value>| {
        v.and_then(Value::as_str)
            .is_some_and(|s| !s.trim().is_empty())
    };
    let notification_fits = |n: &Map<String, Value>| {
        assert!(non_empty_str(n.get("topicName")), "{value}");
        assert!(n.get("eventBody").is_some_and(Value::is_object), "{value}");
        assert_eq!(n["topicName"].as_str(), event.topic_name.as_deref());
    };
    match event.shape.as_str() {
        "ENVELOPE" if obj.contains_key("eventType") => {
            assert!(non_empty_str(obj.get("eventType")), "{value}");
            assert!(obj.get("data").is_some_and(Value::is_object), "{value}");
            assert_eq!(obj["eventType"].as_str(), Some(event.event_type.as_str()));
        }
        "ENVELOPE" => {
            // Seed 002's bare conversation start.
            assert!(non_empty_str(obj.get("conversationId")), "{value}");
            assert_eq!(event.event_type, "conversation:created");
        }
        "NOTIFICATION" => notification_fits(obj),
        "EVENTBRIDGE" => {
            assert!(non_empty_str(obj.get("id")), "{value}");
            assert!(non_empty_str(obj.get("detail-type")), "{value}");
            assert_eq!(obj["id"].as_str(), event.eventbridge_id.as_deref());
            notification_fits(obj["detail"].as_object().expect("detail is an object"));
        }
        other => panic!("unknown shape {other}"),
    }
    for field in [
        Some(&event.event_id),
        Some(&event.event_type),
        event.conversation_id.as_ref(),
        event.guest_id.as_ref(),
        event.topic_name.as_ref(),
        event.participant_id.as_ref(),
    ]
    .into_iter()
    .flatten()
    {
        assert!(field.len() <= genesys_relay::event::MAX_FIELD_BYTES);
    }
    assert!(!event.event_id.is_empty());
    assert_eq!(
        event.payload.as_bytes(),
        body,
        "payload is the body as delivered"
    );
}

fn check(body: &[u8]) -> Result<RawEvent, EnvelopeError> {
    let r = parse_event(body, 7, None);
    if let Ok(e) = &r {
        assert_fits_a_shape(body, e);
    }
    r
}

/// Any JSON value, nested a few levels, with big strings and odd numbers.
fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        ".*".prop_map(Value::String),
        (0usize..200_000).prop_map(|n| Value::String("x".repeat(n))),
        Just(Value::String(String::new())),
        Just(Value::String("2026-11-24T08:00:00.000Z".into())),
    ];
    leaf.prop_recursive(4, 64, 8, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..8).prop_map(Value::Array),
            prop::collection::btree_map(".*", inner, 0..8)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Objects close to the two shapes: the known fields with arbitrary values.
fn near_shapes() -> impl Strategy<Value = Value> {
    let field = prop_oneof![
        Just("eventType"),
        Just("eventId"),
        Just("timestamp"),
        Just("data"),
        Just("topicName"),
        Just("version"),
        Just("eventBody"),
        Just("metadata"),
        Just("conversationId"),
        Just("guestId"),
        Just("id"),
        Just("detail-type"),
        Just("detail"),
    ];
    prop::collection::vec((field, any_json()), 0..6).prop_map(|pairs| {
        let mut m = Map::new();
        for (k, v) in pairs {
            m.insert(k.to_string(), v);
        }
        Value::Object(m)
    })
}

proptest! {
    #![proptest_config(ProptestConfig { failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic(body in prop::collection::vec(any::<u8>(), 0..4096)) {
        let _ = check(&body);
    }

    #[test]
    fn arbitrary_json_never_panics(v in any_json()) {
        let body = serde_json::to_vec(&v).unwrap();
        let r = check(&body);
        if !v.is_object() {
            prop_assert_eq!(r.unwrap_err(), EnvelopeError::NotAnObject);
        }
    }

    #[test]
    fn near_shapes_are_ok_only_when_they_fit(v in near_shapes()) {
        let body = serde_json::to_vec(&v).unwrap();
        let _ = check(&body);
    }

    #[test]
    fn good_envelopes_with_odd_values_are_accepted(
        event_type in "[a-z:]{1,20}",
        id in prop::option::of(".{1,64}"),
        data in prop::collection::btree_map("[a-zA-Z]{1,10}", any_json(), 0..5),
    ) {
        let mut v = json!({"eventType": event_type, "data": Value::Object(data.into_iter().collect())});
        if let Some(id) = &id {
            v["eventId"] = json!(id);
        }
        let body = serde_json::to_vec(&v).unwrap();
        let e = check(&body).expect("a well-formed envelope is accepted");
        if let Some(id) = id {
            prop_assert_eq!(e.event_id, id);
        }
    }

    #[test]
    fn good_eventbridge_events_with_odd_bodies_are_accepted(
        id in "[a-f0-9-]{1,64}",
        topic in prop::sample::select(vec![
            "v2.detail.events.conversation.c1.customer.start",
            "v2.detail.events.conversation.c1.attributes",
            "v2.routing.queues.q1.conversations",
            "v2.users.u1.conversations.messages",
            "v2.some.future.topic", // deliberately not a Genesys topic (fallback path)
        ]),
        body in prop::collection::btree_map("[a-zA-Z]{1,12}", any_json(), 0..6),
        time in prop::option::of(any::<i64>()),
    ) {
        let mut event_body = Value::Object(body.into_iter().collect());
        event_body.as_object_mut().unwrap().remove("eventTime");
        if let Some(t) = time {
            event_body["eventTime"] = json!(t);
        }
        let v = json!({"version": "0", "id": id, "detail-type": "t",
            "detail": {"topicName": topic, "version": "2", "eventBody": event_body}});
        let bytes = serde_json::to_vec(&v).unwrap();
        match check(&bytes) {
            Ok(e) => {
                // The notification's id; EventBridge's is kept beside it.
                prop_assert_eq!(e.eventbridge_id.as_deref(), Some(id.as_str()));
                prop_assert_eq!(e.event_id.len(), 64);
                prop_assert_eq!(e.shape.as_str(), "EVENTBRIDGE");
                if let Some(t) = time {
                    // Received at 7: later than 7 + 5 min is clamped to 7.
                    let want = if t > 7 + 300_000 { 7 } else { t };
                    prop_assert_eq!(e.event_time_ms, Some(want));
                }
            }
            // Only an over-long id read from the body may refuse it.
            Err(err) => prop_assert!(matches!(err, EnvelopeError::TooLong(_)), "{err}"),
        }
    }

    #[test]
    fn invalid_utf8_inside_a_string_is_refused(
        prefix in "[a-z]{0,10}",
        bad in prop::sample::select(vec![vec![0xffu8], vec![0xc3], vec![0xed, 0xa0, 0x80], vec![0xf8, 0x88, 0x80, 0x80, 0x80]]),
    ) {
        let mut body = br#"{"eventType":"x","data":{},"eventId":""#.to_vec();
        body.extend_from_slice(prefix.as_bytes());
        body.extend_from_slice(&bad);
        body.extend_from_slice(b"\"}");
        prop_assert!(matches!(check(&body), Err(EnvelopeError::Json(_))));
    }
}

#[test]
fn deep_nesting_errors_cleanly_instead_of_overflowing_the_stack() {
    for depth in [129usize, 1_000, 10_000, 100_000] {
        let arrays = format!("{}{}", "[".repeat(depth), "]".repeat(depth));
        let objects = format!("{}1{}", "{\"a\":".repeat(depth), "}".repeat(depth));
        let inside = format!("{{\"eventType\":\"x\",\"data\":{{\"d\":{}}}}}", arrays);
        for body in [arrays.as_bytes(), objects.as_bytes(), inside.as_bytes()] {
            match check(body) {
                Err(EnvelopeError::Json(msg)) => {
                    assert!(msg.contains("recursion limit"), "depth {depth}: {msg}")
                }
                other => panic!("depth {depth}: {other:?}"),
            }
        }
    }
    // Just under serde_json's limit of 128 is fine.
    let ok = format!(
        "{{\"eventType\":\"x\",\"data\":{{\"d\":{}{}}}}}",
        "[".repeat(120),
        "]".repeat(120)
    );
    assert!(check(ok.as_bytes()).is_ok());
}

#[test]
fn huge_strings_and_wrong_types() {
    // Huge ids are refused by name (a record must stay near its body's size); a huge
    // payload elsewhere is fine.
    let big = "é".repeat(2_000_000);
    for (v, field) in [
        (json!({"eventType": big, "data": {}}), "eventType"),
        (
            json!({"eventType": "x", "eventId": big, "data": {}}),
            "eventId",
        ),
        (
            json!({"eventType": "x", "data": {"guestId": big}}),
            "data.guestId",
        ),
        (json!({"topicName": big, "eventBody": {}}), "topicName"),
        (
            json!({"id": big, "detail-type": "t", "detail": {"topicName": "t", "eventBody": {}}}),
            "id",
        ),
    ] {
        match check(&serde_json::to_vec(&v).unwrap()) {
            Err(EnvelopeError::TooLong(f)) => assert_eq!(f, field),
            other => panic!("{field}: {other:?}"),
        }
    }
    let e = check(&serde_json::to_vec(&json!({"eventType": "x", "data": {"note": big}})).unwrap())
        .unwrap();
    assert_eq!(e.event_type, "x");
    for (v, field) in [
        (json!({"eventType": 1, "data": {}}), "eventType"),
        (json!({"eventType": "x", "data": []}), "data"),
        (
            json!({"eventType": "x", "data": {}, "eventId": 5}),
            "eventId",
        ),
        (
            json!({"eventType": "x", "data": {}, "timestamp": {}}),
            "timestamp",
        ),
        (json!({"eventType": " ", "data": {}}), "eventType"),
        (json!({"topicName": "t", "eventBody": "s"}), "eventBody"),
        (json!({"topicName": null, "eventBody": {}}), "topicName"),
    ] {
        match check(&serde_json::to_vec(&v).unwrap()) {
            Err(EnvelopeError::WrongType(f, _)) => assert_eq!(f, field, "{v}"),
            other => panic!("{v}: {other:?}"),
        }
    }
    // Numbers beyond i64 as a timestamp: accepted without an event time, no panic.
    let e = check(br#"{"eventType":"x","data":{},"timestamp":1e300}"#).unwrap();
    assert_eq!(e.event_time_ms, None);
    let e = check(br#"{"eventType":"x","data":{},"timestamp":18446744073709551615}"#).unwrap();
    assert_eq!(e.event_time_ms, None);
}

fn auth() -> WebhookAuth {
    WebhookAuth::new(Secret::new(SECRET))
}

/// Signature headers: garbage, near-misses of the right format, wrong-length hex.
fn signature_header() -> impl Strategy<Value = String> {
    let t = prop_oneof![
        Just(NOW),
        NOW - 300..NOW + 300,
        any::<i64>(),
        Just(i64::MIN),
        Just(i64::MAX),
        Just(NOW - i64::MAX),
    ];
    let hex_of_len = (0usize..100)
        .prop_flat_map(|n| prop::collection::vec(any::<u8>(), n))
        .prop_map(hex::encode);
    prop_oneof![
        ".*",
        "[tv1=,0-9a-f]{0,120}",
        (t.clone(), hex_of_len.clone()).prop_map(|(t, h)| format!("t={t},v1={h}")),
        (t.clone(), "[0-9a-fA-F]{0,80}").prop_map(|(t, h)| format!("t={t},v1={h}")),
        (t.clone(), hex_of_len.clone()).prop_map(|(t, h)| format!("v1={h}, t={t}")),
        (t, hex_of_len).prop_map(|(t, h)| format!("t={t},v1={h},v1={h},t=x")),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn signatures_never_panic_and_wrong_ones_never_pass(
        header in signature_header(),
        body in prop::collection::vec(any::<u8>(), 0..256),
        now in prop_oneof![Just(NOW), any::<i64>(), Just(i64::MIN), Just(i64::MAX)],
    ) {
        // A random header is the right MAC with probability 2^-256.
        let r = auth().verify(None, Some(&header), &body, now);
        prop_assert!(r.is_err(), "{header:?} passed");
    }

    #[test]
    fn static_secret_passes_only_when_equal(given in prop::collection::vec(any::<u8>(), 0..64)) {
        let r = auth().verify(Some(&given), None, b"{}", NOW);
        prop_assert_eq!(r.is_ok(), given == SECRET.as_bytes());
    }

    #[test]
    fn a_tampered_signature_never_passes(
        body in prop::collection::vec(any::<u8>(), 0..256),
        offset in -300i64..=300,
        edit in 0usize..5,
        pos in any::<prop::sample::Index>(),
    ) {
        let a = auth();
        let good = a.sign(&body, NOW + offset);
        prop_assert_eq!(a.verify(None, Some(&good), &body, NOW), Ok(()));
        let (head, hex) = good.split_once(",v1=").unwrap();
        let i = pos.index(hex.len());
        let bad_hex = match edit {
            0 => {
                // Flip one nibble.
                let mut c: Vec<char> = hex.chars().collect();
                c[i] = if c[i] == '0' { '1' } else { '0' };
                c.into_iter().collect()
            }
            1 => hex[..i].to_string(),           // too short
            2 => format!("{hex}00"),             // too long
            3 => hex[..hex.len() - 1].to_string(), // odd length
            _ => format!("{}zz", &hex[..hex.len() - 2]), // not hex
        };
        let bad = format!("{head},v1={bad_hex}");
        let r = a.verify(None, Some(&bad), &body, NOW);
        prop_assert!(r.is_err(), "{bad}");
        // The right signature over another body fails too.
        let mut other = body.clone();
        other.push(b'x');
        prop_assert_eq!(a.verify(None, Some(&good), &other, NOW), Err(AuthError::WrongSignature));
    }
}

#[test]
fn extreme_timestamps_are_stale_not_a_panic() {
    let a = auth();
    for (t, now) in [
        (i64::MIN, NOW),
        (i64::MIN, i64::MAX),
        (i64::MAX, i64::MIN),
        (NOW - i64::MAX, NOW),
        (i64::MAX, -1),
    ] {
        let sig = a.sign(b"{}", t);
        assert_eq!(
            a.verify(None, Some(&sig), b"{}", now),
            Err(AuthError::Stale),
            "t={t} now={now}"
        );
    }
}

// ---------------------------------------------------------------- HTTP

fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

const MAX_BODY: usize = 16 * 1024;

fn random_body(rng: &mut StdRng, i: usize) -> Vec<u8> {
    let cid = format!("3a7d6c2e11114a4a9b9b{i:012}");
    match rng.gen_range(0..10) {
        0..=2 => serde_json::to_vec(&json!({
            "eventType": "conversation:updated",
            "eventId": format!("fz-{i}"),
            "timestamp": "2026-11-24T08:00:00.000Z",
            "data": {"conversationId": format!("c-{}", rng.gen_range(0..5)), "guestId": format!("g-{i}")}
        }))
        .unwrap(),
        3 if rng.gen_bool(0.5) => serde_json::to_vec(&json!({
            "version": "0",
            "id": format!("fz-eb-{i}"),
            "detail-type": "v2.detail.events.conversation.{id}.customer.start",
            "source": "aws.partner/genesys.com/cloud/org/fuzz",
            "detail": {
                "topicName": format!("v2.detail.events.conversation.{cid}.customer.start"),
                "version": "2",
                "eventBody": {"eventTime": rng.gen::<i64>(), "participantId": format!("p-{i}")},
                "timestamp": "2026-11-25T08:30:00.000Z"
            }
        }))
        .unwrap(),
        3 => serde_json::to_vec(&json!({
            "topicName": format!("v2.conversations.{cid}.transcription"),
            "version": "2",
            "eventBody": {"id": i},
            "metadata": {"CorrelationId": format!("fz-n-{i}")}
        }))
        .unwrap(),
        // Without an id: the body hash is the id (and a repeat shares it).
        4 => format!("{{\"eventType\":\"custom\",\"data\":{{\"n\":{}}}}}", rng.gen_range(0..3)).into_bytes(),
        5 => (0..rng.gen_range(0..300)).map(|_| rng.gen()).collect(),
        6 => {
            let mut b = br#"{"eventType":"x","data":{"s":""#.to_vec();
            b.extend([0xff, 0xfe]);
            b.extend(b"\"}}");
            b
        }
        7 => format!("{}{}", "[".repeat(5000), "]".repeat(5000)).into_bytes(),
        8 => format!(
            "{{\"eventType\":\"x\",\"data\":{{\"pad\":\"{}\"}}}}",
            "a".repeat(rng.gen_range(MAX_BODY - 200..MAX_BODY + 2000))
        )
        .into_bytes(),
        _ => serde_json::to_vec(&json!({
            "eventType": [1, 2],
            "data": rng.gen::<u32>(),
            "eventId": null,
        }))
        .unwrap(),
    }
}

fn random_content_type(rng: &mut StdRng) -> Option<&'static str> {
    let all = [
        Some("application/json"),
        Some("application/json"),
        Some("application/json; charset=utf-8"),
        Some("APPLICATION/JSON"),
        Some("application/cloudevents+json"),
        Some("text/plain"),
        Some("application/x-www-form-urlencoded"),
        Some(";;;"),
        None,
    ];
    all[rng.gen_range(0..all.len())]
}

fn random_auth(rng: &mut StdRng, body: &[u8]) -> Vec<(&'static str, Vec<u8>)> {
    let signer = auth();
    let now = now_secs();
    match rng.gen_range(0..12) {
        0..=2 => vec![("x-relay-secret", SECRET.as_bytes().to_vec())],
        3..=4 => vec![("x-relay-signature", signer.sign(body, now).into_bytes())],
        5 => vec![("x-relay-secret", b"wrong".to_vec())],
        6 => vec![("x-relay-secret", vec![0x80, 0xff, b'a'])],
        7 => vec![("x-relay-signature", signer.sign(b"other", now).into_bytes())],
        8 => vec![(
            "x-relay-signature",
            format!("t={now},v1={}", hex::encode([7u8; 17])).into_bytes(),
        )],
        9 => vec![(
            "x-relay-signature",
            format!("t={},v1={}", i64::MIN, hex::encode([7u8; 32])).into_bytes(),
        )],
        10 => vec![(
            "x-relay-signature",
            signer.sign(body, now - 3600).into_bytes(),
        )],
        _ => vec![],
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_requests_against_a_real_ingress() {
    let n: usize = std::env::var("FUZZ_HTTP_REQUESTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200);
    let seed: u64 = std::env::var("FUZZ_HTTP_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0x5eed);
    eprintln!("FUZZ_HTTP_SEED={seed} FUZZ_HTTP_REQUESTS={n}");
    let broker = Broker::start();
    let prefix = unique_prefix("fuzz");
    let max_body = MAX_BODY.to_string();
    let cfg = relay_config(
        &broker,
        &prefix,
        &[
            ("RELAY_WEBHOOK_SECRET", SECRET),
            ("RELAY_MAX_BODY_BYTES", &max_body),
        ],
    );
    let relay = app::start(cfg, Role::Ingress).await.unwrap();
    let target = format!("http://{}/webhooks/genesys", relay.ingress_addr.unwrap());
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap();
    let mut rng = StdRng::seed_from_u64(seed);
    let mut statuses: BTreeMap<u16, usize> = BTreeMap::new();
    let mut accepted: BTreeMap<String, usize> = BTreeMap::new();
    for i in 0..n {
        let body = random_body(&mut rng, i);
        let ct = random_content_type(&mut rng);
        let auth_headers = random_auth(&mut rng, &body);
        let mut req = client.post(&target).body(body.clone());
        if let Some(ct) = ct {
            req = req.header("content-type", ct);
        }
        for (k, v) in &auth_headers {
            req = req.header(*k, v.as_slice());
        }
        if rng.gen_bool(0.1) {
            req = req.header(
                "traceparent",
                "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
            );
        }
        let sent_at = std::time::Instant::now();
        let resp = req.send().await.unwrap_or_else(|e| {
            panic!("request {i} got no answer (a panic or a hang in the ingress?): {e}")
        });
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap();
        if sent_at.elapsed() > Duration::from_secs(2) {
            eprintln!(
                "slow request {i}: {status} after {:?}, {} bytes, {ct:?}",
                sent_at.elapsed(),
                body.len()
            );
        }
        *statuses.entry(status).or_default() += 1;
        assert!(
            status < 500 || status == 503,
            "request {i}: {status} {text}"
        );
        assert!(!text.contains(SECRET), "request {i} echoed the secret");
        if status == 202 {
            let v: Value = serde_json::from_str(&text).unwrap();
            *accepted
                .entry(v["eventId"].as_str().unwrap().to_string())
                .or_default() += 1;
        }
    }
    let total: usize = accepted.values().sum();
    eprintln!("statuses: {statuses:?}; {total} accepted");
    assert!(
        total > 0 && total < n,
        "a mix of accepted and refused: {statuses:?}"
    );

    let raw = format!("{prefix}.events.raw");
    let records = read_records(&broker, &raw, total + 1, Duration::from_secs(15));
    let mut written: BTreeMap<String, usize> = BTreeMap::new();
    let codec = Codec::single_object();
    for r in &records {
        let e: RawEvent = codec.decode(r.payload().unwrap()).unwrap();
        let hdr = r
            .headers()
            .unwrap()
            .iter()
            .find(|h| h.key == headers::EVENT_ID)
            .and_then(|h| h.value)
            .unwrap();
        assert_eq!(hdr, e.event_id.as_bytes());
        *written.entry(e.event_id).or_default() += 1;
    }
    assert_eq!(
        written, accepted,
        "the raw topic holds exactly the records of the requests answered 202"
    );
    relay.stop().await;
}
