//! The webhook ingress against a real broker: what is answered 202 is in the raw topic
//! (key, decoded Avro value), bad input is refused and writes nothing, and a broker outage
//! is a quick 503 that heals without restarting the relay.

use crate::common::*;
use genesys_relay::app::{self, Role};
use genesys_relay::config::Secret;
use genesys_relay::ingress::WebhookAuth;
use genesys_relay::kafka::headers;
use genesys_relay::schema::{Codec, RawEvent};
use rdkafka::message::Headers;
use rdkafka::Message;
use std::collections::HashSet;
use std::time::{Duration, Instant};

/// (name, expected status, body, content type, extra headers)
type Case = (
    &'static str,
    u16,
    Vec<u8>,
    Option<&'static str>,
    Vec<(&'static str, String)>,
);

fn url(relay: &app::RunningRelay) -> String {
    format!("http://{}/webhooks/genesys", relay.ingress_addr.unwrap())
}

fn guest_event(i: usize) -> serde_json::Value {
    serde_json::json!({
        "eventType": "conversation:updated",
        "eventId": format!("evt-{i}"),
        "timestamp": "2026-11-24T08:00:00.000Z",
        "data": {"conversationId": format!("conv-{}", i % 50), "guestId": format!("guest-{i}")}
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousand_concurrent_posts_are_all_in_the_topic() {
    let broker = Broker::start();
    let prefix = unique_prefix("bulk");
    let relay = app::start(relay_config(&broker, &prefix, &[]), Role::Ingress)
        .await
        .unwrap();
    let client = reqwest::Client::new();
    let target = url(&relay);
    let posts = (0..1000).map(|i| {
        let (client, target) = (client.clone(), target.clone());
        async move {
            let resp = client
                .post(&target)
                .json(&guest_event(i))
                .send()
                .await
                .unwrap();
            let status = resp.status().as_u16();
            let body: serde_json::Value = resp.json().await.unwrap();
            (status, body)
        }
    });
    let answers = futures::future::join_all(posts).await;
    for (i, (status, body)) in answers.iter().enumerate() {
        assert_eq!(*status, 202, "post {i}: {body}");
        assert_eq!(body["status"], "accepted");
        assert_eq!(body["eventId"], format!("evt-{i}"));
    }

    let records = read_records(
        &broker,
        &format!("{prefix}.events.raw"),
        1000,
        Duration::from_secs(60),
    );
    assert_eq!(records.len(), 1000);
    let codec = Codec::single_object();
    let mut ids = HashSet::new();
    for r in &records {
        let event: RawEvent = codec.decode(r.payload().unwrap()).unwrap();
        let i: usize = event.event_id.trim_start_matches("evt-").parse().unwrap();
        assert_eq!(
            key_of(r),
            format!("conv-{}", i % 50),
            "record key is the conversation id"
        );
        assert_eq!(
            event.guest_id.as_deref(),
            Some(format!("guest-{i}").as_str())
        );
        assert_eq!(event.event_type, "conversation:updated");
        let payload: serde_json::Value = serde_json::from_str(&event.payload).unwrap();
        assert_eq!(payload, guest_event(i), "payload is the body as delivered");
        let hdr = r
            .headers()
            .unwrap()
            .iter()
            .find(|h| h.key == headers::EVENT_ID)
            .unwrap();
        assert_eq!(hdr.value.unwrap(), event.event_id.as_bytes());
        ids.insert(event.event_id);
    }
    assert_eq!(ids.len(), 1000, "1,000 distinct events");
    relay.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_refused_and_writes_nothing() {
    let broker = Broker::start();
    let prefix = unique_prefix("bad");
    let cfg = relay_config(
        &broker,
        &prefix,
        &[
            ("RELAY_WEBHOOK_SECRET", "s3cret"),
            ("RELAY_MAX_BODY_BYTES", "2048"),
        ],
    );
    let relay = app::start(cfg, Role::Ingress).await.unwrap();
    let client = reqwest::Client::new();
    let target = url(&relay);
    let good = serde_json::to_vec(&guest_event(1)).unwrap();
    let auth = WebhookAuth::new(Secret::new("s3cret"));
    let now = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64
    };

    let send = |body: Vec<u8>, ct: Option<&'static str>, hdrs: Vec<(&'static str, String)>| {
        let mut req = client.post(&target).body(body);
        if let Some(ct) = ct {
            req = req.header("content-type", ct);
        }
        for (k, v) in hdrs {
            req = req.header(k, v);
        }
        async move {
            let resp = req.send().await.unwrap();
            let status = resp.status().as_u16();
            (status, resp.text().await.unwrap())
        }
    };
    let secret = || vec![("x-relay-secret", "s3cret".to_string())];
    let cases: Vec<Case> = vec![
        (
            "no credentials",
            401,
            good.clone(),
            Some("application/json"),
            vec![],
        ),
        (
            "wrong secret",
            401,
            good.clone(),
            Some("application/json"),
            vec![("x-relay-secret", "nope".into())],
        ),
        (
            "signature of another body",
            401,
            good.clone(),
            Some("application/json"),
            vec![("x-relay-signature", auth.sign(b"{}", now()))],
        ),
        (
            "stale signature",
            401,
            good.clone(),
            Some("application/json"),
            vec![("x-relay-signature", auth.sign(&good, now() - 3600))],
        ),
        (
            "signature of wrong length",
            401,
            good.clone(),
            Some("application/json"),
            vec![("x-relay-signature", format!("t={},v1=abcdef", now()))],
        ),
        (
            "malformed json",
            400,
            b"{\"eventType\": ".to_vec(),
            Some("application/json"),
            secret(),
        ),
        (
            "not an envelope",
            400,
            b"{\"hello\":1}".to_vec(),
            Some("application/json"),
            secret(),
        ),
        (
            "data not an object",
            400,
            br#"{"eventType":"x","data":[]}"#.to_vec(),
            Some("application/json"),
            secret(),
        ),
        (
            "invalid utf-8",
            400,
            vec![b'{', 0xff, 0xfe, b'}'],
            Some("application/json"),
            secret(),
        ),
        (
            "text content type",
            415,
            good.clone(),
            Some("text/plain"),
            secret(),
        ),
        ("no content type", 415, good.clone(), None, secret()),
        (
            "oversized body",
            413,
            format!(
                "{{\"eventType\":\"x\",\"data\":{{\"pad\":\"{}\"}}}}",
                "a".repeat(4096)
            )
            .into_bytes(),
            Some("application/json"),
            secret(),
        ),
    ];
    for (name, want, body, ct, hdrs) in cases {
        let (status, text) = send(body, ct, hdrs).await;
        assert_eq!(status, want, "{name}: {text}");
        assert!(
            !text.contains("s3cret"),
            "{name}: the secret must not be echoed"
        );
    }
    // The same credentials in good form are accepted, both ways.
    let (status, _) = send(good.clone(), Some("application/json"), secret()).await;
    assert_eq!(status, 202);
    let signed = vec![("x-relay-signature", auth.sign(&good, now()))];
    let (status, _) = send(
        good.clone(),
        Some("application/json; charset=utf-8"),
        signed,
    )
    .await;
    assert_eq!(status, 202, "a redelivery is accepted again");

    let raw = format!("{prefix}.events.raw");
    let records = read_records(&broker, &raw, 3, Duration::from_secs(10));
    assert_eq!(records.len(), 2, "only the two accepted posts were written");
    let metrics = relay.metrics.render();
    assert!(
        metrics.contains("relay_ingress_requests_total{status=\"401\"} 5"),
        "{metrics}"
    );
    relay.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_outage_answers_503_then_recovers_without_restart() {
    // Its own broker: the test stops and restarts it. The relay runs with the product
    // defaults: an idempotent producer and the default produce timeout, which must give
    // the 503 inside the 5 s after which an EventBridge API destination gives up.
    let mut broker = Broker::dedicated();
    let prefix = unique_prefix("outage");
    let mut vars = relay_vars(&broker, &prefix, &[]);
    vars.remove("RELAY_PRODUCE_TIMEOUT");
    let cfg = genesys_relay::app::Config::from_vars(&vars).unwrap();
    let relay = app::start(cfg, Role::Ingress).await.unwrap();
    let client = reqwest::Client::new();
    let target = url(&relay);
    assert_eq!(
        client
            .post(&target)
            .json(&guest_event(1))
            .send()
            .await
            .unwrap()
            .status(),
        202
    );

    broker.stop();
    let started = Instant::now();
    let resp = client
        .post(&target)
        .json(&guest_event(2))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 503);
    assert_eq!(resp.headers()["retry-after"], "1");
    assert!(
        started.elapsed() < Duration::from_millis(4500),
        "503 within the default produce timeout, inside EventBridge's 5 s: {:?}",
        started.elapsed()
    );

    broker.restart();
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut accepted = false;
    while Instant::now() < deadline {
        let resp = client
            .post(&target)
            .json(&guest_event(3))
            .send()
            .await
            .unwrap();
        if resp.status() == 202 {
            accepted = true;
            break;
        }
        assert_eq!(resp.status(), 503);
        eprintln!("still 503: {}", resp.text().await.unwrap());
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert!(accepted, "the relay recovers once the broker is back");
    let raw = format!("{prefix}.events.raw");
    let ids: HashSet<String> =
        raw_event_ids(&read_records(&broker, &raw, 2, Duration::from_secs(20)));
    assert!(ids.contains("evt-1") && ids.contains("evt-3"), "{ids:?}");
    relay.stop().await;
}

// ------------------------------------------------------------- shapes, auth, TLS, limits

const CONV: &str = "3a7d6c2e-1111-4a4a-9b9b-00000000c0de";

fn sha256_hex(parts: &[&[u8]]) -> String {
    use sha2::Digest;
    let mut h = sha2::Sha256::new();
    for p in parts {
        h.update(p);
    }
    hex::encode(h.finalize())
}

/// Posts `body` as JSON with `headers`; (status, answer text).
async fn post_raw(
    client: &reqwest::Client,
    target: &str,
    body: Vec<u8>,
    headers: &[(&str, String)],
) -> (u16, String) {
    let mut req = client
        .post(target)
        .header("content-type", "application/json")
        .body(body);
    for (k, v) in headers {
        req = req.header(*k, v);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    (status, resp.text().await.unwrap())
}

/// The raw-topic records, decoded, by event id.
fn raw_by_id(
    broker: &Broker,
    prefix: &str,
    expected: usize,
) -> std::collections::HashMap<String, (String, RawEvent)> {
    let records = read_records(
        broker,
        &format!("{prefix}.events.raw"),
        expected,
        Duration::from_secs(30),
    );
    assert_eq!(records.len(), expected, "records in the raw topic");
    let codec = Codec::single_object();
    records
        .iter()
        .map(|r| {
            let e: RawEvent = codec.decode(r.payload().unwrap()).unwrap();
            (e.event_id.clone(), (key_of(r), e))
        })
        .collect()
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// Each delivery shape (docs/connecting.md#what-the-ingress-accepts) accepted with the
/// right id, type, key, time, topic and participant, read back from the raw topic; a future
/// time is clamped to receipt.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_shape_is_written_with_the_right_id_type_key_and_time() {
    let broker = Broker::start();
    let prefix = unique_prefix("shapes");
    let relay = app::start(relay_config(&broker, &prefix, &[]), Role::Ingress)
        .await
        .unwrap();
    let client = reqwest::Client::new();
    let target = url(&relay);
    let topic = format!("v2.detail.events.conversation.{CONV}.customer.start");

    // 1. EventBridge event, as an API destination POSTs it.
    let eventbridge = format!(
        r#"{{"version":"0","id":"6a7e8feb-b491-4cf7-a9f1-bf3703467718","detail-type":"v2.detail.events.conversation.{{id}}.customer.start","source":"aws.partner/genesys.com/cloud/org-1/relay","account":"123456789012","time":"2026-11-25T08:30:00Z","region":"eu-central-1","resources":[],"detail":{{"topicName":"{topic}","version":"2","eventBody":{{"eventTime":1795595400123,"conversationId":"{CONV}","participantId":"cust-1","mediaType":"MESSAGE","direction":"INBOUND"}},"metadata":{{"CorrelationId":"corr-1"}},"timestamp":"2026-11-25T08:30:00.500Z"}}}}"#
    );
    // 2. EventBridge without eventTime: detail.timestamp.
    let eb_queue = r#"{"version":"0","id":"eb-queue-1","detail-type":"v2.routing.queues.{id}.conversations","source":"aws.partner/genesys.com/cloud/org-1/relay","account":"123456789012","time":"2026-11-25T08:31:00Z","region":"eu-central-1","resources":[],"detail":{"topicName":"v2.routing.queues.8a1b4c2dq.conversations","version":"2","eventBody":{"id":"conv-from-object","participants":[{"id":"p-c","purpose":"customer","attributes":{"cart_value":"10"}}]},"metadata":{"CorrelationId":"corr-2"},"timestamp":"2026-11-25T08:31:00.250Z"}}"#.to_string();
    // 3. A notification (Notifications API / Data Action body), odd spacing kept as sent.
    let attr_topic = format!("v2.detail.events.conversation.{CONV}.attributes");
    let attr_body = format!(
        r#"{{ "eventTime": 1795595460000, "conversationId": "{CONV}", "participantId": "cust-1", "attributes": {{ "cart_value": "42.50", "last_page": "/checkout" }} }}"#
    );
    let notification = format!(
        r#"{{"topicName":"{attr_topic}","version":"2","eventBody":{attr_body},"metadata":{{"CorrelationId":"shared"}}}}"#
    );
    // 4. A notification from the future: clamped to receipt.
    let future = format!(
        r#"{{"topicName":"v2.detail.events.conversation.{CONV}.customer.end","version":"2","eventBody":{{"eventTime":{},"conversationId":"{CONV}"}}}}"#,
        now_ms() + 3_600_000
    );
    // 5-7. The seeds' own legacy shapes.
    let seed000 = r#"{"eventType":"conversation:updated","timestamp":"2026-11-24T08:00:00.000Z","data":{"id":"conv-000","guest":{"id":"guest-000"}}}"#.to_string();
    let seed004 = r#"{"eventType":"conversation:updated","eventId":"evt-004","timestamp":"2026-11-24T08:00:04.000Z","data":{"conversationId":"conv-004"}}"#.to_string();
    let seed002 =
        r#"{"conversationId":"conv-002","timestamp":"2026-11-24T08:00:02.000Z"}"#.to_string();

    let before = now_ms();
    let mut answered = Vec::new();
    for body in [
        &eventbridge,
        &eb_queue,
        &notification,
        &future,
        &seed000,
        &seed004,
        &seed002,
    ] {
        let (status, text) = post_raw(&client, &target, body.clone().into_bytes(), &[]).await;
        assert_eq!(status, 202, "{body}: {text}");
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        answered.push(v["eventId"].as_str().unwrap().to_string());
    }
    let after = now_ms();
    let raw = raw_by_id(&broker, &prefix, 7);

    // An EventBridge event's id is its notification's; EventBridge's own id rides along.
    let (key, e) = &raw[&answered[0]];
    assert_eq!(key, CONV);
    assert_eq!(
        e.eventbridge_id.as_deref(),
        Some("6a7e8feb-b491-4cf7-a9f1-bf3703467718")
    );
    assert_eq!(e.shape.as_str(), "EVENTBRIDGE");
    assert_eq!(
        e.event_type,
        "v2.detail.events.conversation.{id}.customer.start"
    );
    assert_eq!(e.topic_name.as_deref(), Some(topic.as_str()));
    assert_eq!(e.participant_id.as_deref(), Some("cust-1"));
    assert_eq!(e.event_time_ms, Some(1_795_595_400_123));
    assert_eq!(e.payload, eventbridge, "the body exactly as delivered");

    let (key, e) = &raw[&answered[1]];
    assert_eq!(e.eventbridge_id.as_deref(), Some("eb-queue-1"));
    assert_eq!(key, "conv-from-object", "a conversation object's id");
    assert_eq!(e.event_type, "v2.routing.queues.{id}.conversations");
    assert_eq!(e.event_time_ms, Some(1_795_595_460_250));

    let notification_id = genesys_relay::event::id::notification_id(
        &attr_topic,
        &serde_json::from_str(&attr_body).unwrap(),
    );
    assert_eq!(answered[2], notification_id);
    let (key, e) = &raw[&notification_id];
    assert_eq!(key, CONV);
    assert_eq!(e.shape.as_str(), "NOTIFICATION");
    assert_eq!(
        e.event_type,
        "v2.detail.events.conversation.{id}.attributes"
    );
    assert_eq!(e.event_time_ms, Some(1_795_595_460_000));
    assert_eq!(e.participant_id.as_deref(), Some("cust-1"));

    let (_, e) = &raw[&answered[3]];
    let t = e.event_time_ms.unwrap();
    assert!(
        (before..=after).contains(&t),
        "a time an hour ahead is clamped to receipt: {t} not in {before}..{after}"
    );
    assert_eq!(e.event_time_ms, Some(e.received_at_ms));

    let (key, e) = &raw[&sha256_hex(&[seed000.as_bytes()])];
    assert_eq!(key, "conv-000", "seed 000: data.id is the conversation");
    assert_eq!(e.guest_id.as_deref(), Some("guest-000"));
    assert_eq!(e.event_type, "conversation:updated");
    assert_eq!(e.shape.as_str(), "ENVELOPE");
    assert_eq!(e.event_time_ms, Some(1_795_507_200_000));

    let (key, e) = &raw["evt-004"];
    assert_eq!(key, "conv-004");
    assert_eq!(e.event_time_ms, Some(1_795_507_204_000));

    let (key, e) = &raw[&sha256_hex(&[seed002.as_bytes()])];
    assert_eq!(key, "conv-002");
    assert_eq!(
        e.event_type, "conversation:created",
        "seed 002: a conversation start"
    );

    // A redelivery of the notification with another CorrelationId is the same event.
    let again = notification.replace("\"shared\"", "\"other\"");
    let (status, text) = post_raw(&client, &target, again.into_bytes(), &[]).await;
    assert_eq!(status, 202);
    assert!(text.contains(&notification_id), "{text}");
    relay.stop().await;
}

/// Bad variants of every shape: 400 with a message naming what is wrong, nothing written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_variants_of_each_shape_get_400_saying_what_is_wrong() {
    let broker = Broker::start();
    let prefix = unique_prefix("bad-shapes");
    let relay = app::start(relay_config(&broker, &prefix, &[]), Role::Ingress)
        .await
        .unwrap();
    let client = reqwest::Client::new();
    let target = url(&relay);
    let long = "x".repeat(2000);
    let cases: Vec<(String, &str)> = vec![
        (r#"{"detail-type":"x","detail":{"topicName":"t","eventBody":{}}}"#.into(), "field id must be a non-empty string"),
        (r#"{"id":"e","detail":{"topicName":"t","eventBody":{}}}"#.into(), "field detail-type must be a non-empty string"),
        (r#"{"id":"e","detail-type":"x","detail":"{}"}"#.into(), "field detail must be an object"),
        (r#"{"id":"e","detail-type":"x","detail":{"eventBody":{}}}"#.into(), "field detail.topicName must be a non-empty string"),
        (r#"{"id":"e","detail-type":"x","detail":{"topicName":"t"}}"#.into(), "field detail.eventBody must be an object"),
        (r#"{"id":"e","detail-type":"x","detail":{"topicName":"t","eventBody":{"eventTime":true}}}"#.into(), "field detail.eventBody.eventTime must be Unix milliseconds or an RFC 3339 time"),
        (format!(r#"{{"id":"{long}","detail-type":"x","detail":{{"topicName":"t","eventBody":{{}}}}}}"#), "field id is longer than 1024 bytes"),
        (r#"{"topicName":"","eventBody":{}}"#.into(), "field topicName must be a non-empty string"),
        (r#"{"topicName":"t","eventBody":[1]}"#.into(), "field eventBody must be an object"),
        (r#"{"topicName":"t","eventBody":{"eventTime":{}}}"#.into(), "field eventBody.eventTime must be"),
        (r#"{"eventType":"","data":{}}"#.into(), "field eventType must be a non-empty string"),
        (r#"{"eventType":"x"}"#.into(), "field data must be present"),
        (r#"{"eventType":"x","data":{},"eventId":7}"#.into(), "field eventId must be a string"),
        (r#"{"eventType":"x","data":{},"timestamp":[]}"#.into(), "field timestamp must be"),
        (r#"{"conversationId":null}"#.into(), "field conversationId must be a non-empty string"),
        (r#"{"hello":"world"}"#.into(), "neither an EventBridge event"),
        (r#"["not","an","object"]"#.into(), "body must be a JSON object"),
        (r#"{"topicName":"t","eventBody":{}"#.into(), "body is not valid JSON"),
    ];
    for (body, want) in &cases {
        let (status, text) = post_raw(&client, &target, body.clone().into_bytes(), &[]).await;
        assert_eq!(status, 400, "{body}: {text}");
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        let error = v["error"].as_str().unwrap();
        assert!(
            error.contains(want),
            "{body}: {error:?} should say {want:?}"
        );
    }
    assert_eq!(
        topic_size(&broker, &format!("{prefix}.events.raw")),
        0,
        "nothing written"
    );
    relay.stop().await;
}

/// HTTP Basic beside the static header: each accepted, wrong ones 401, nothing echoed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn basic_auth_right_and_wrong() {
    use base64::Engine;
    let broker = Broker::start();
    let prefix = unique_prefix("basic");
    let cfg = relay_config(
        &broker,
        &prefix,
        &[
            ("RELAY_WEBHOOK_BASIC_USER", "eventbridge"),
            ("RELAY_WEBHOOK_BASIC_PASSWORD", "BASICPASS-7Yt2"),
            ("RELAY_WEBHOOK_SECRET", "HEADERSECRET-3Kq"),
        ],
    );
    let relay = app::start(cfg, Role::Ingress).await.unwrap();
    let client = reqwest::Client::new();
    let target = url(&relay);
    let basic = |user: &str, password: &str| {
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
        )
    };
    let body = |i: usize| {
        format!(r#"{{"eventType":"conversation:updated","eventId":"basic-{i}","data":{{}}}}"#)
            .into_bytes()
    };
    let cases: Vec<(u16, Vec<(&str, String)>)> = vec![
        (
            202,
            vec![("authorization", basic("eventbridge", "BASICPASS-7Yt2"))],
        ),
        (202, vec![("x-relay-secret", "HEADERSECRET-3Kq".into())]),
        (401, vec![("authorization", basic("eventbridge", "wrong"))]),
        (
            401,
            vec![("authorization", basic("someone", "BASICPASS-7Yt2"))],
        ),
        (401, vec![("authorization", "Basic not-base64!".into())]),
        (401, vec![("authorization", "Bearer BASICPASS-7Yt2".into())]),
        (401, vec![]),
        // A right credential beside a wrong one is accepted (any configured method).
        (
            202,
            vec![
                ("x-relay-secret", "nope".into()),
                ("authorization", basic("eventbridge", "BASICPASS-7Yt2")),
            ],
        ),
    ];
    let mut accepted = 0;
    for (i, (want, headers)) in cases.iter().enumerate() {
        let (status, text) = post_raw(&client, &target, body(i), headers).await;
        assert_eq!(status, *want, "case {i} {headers:?}: {text}");
        assert!(!text.contains("BASICPASS") && !text.contains("HEADERSECRET"));
        if status == 202 {
            accepted += 1;
        }
    }
    let raw = raw_by_id(&broker, &prefix, accepted);
    assert_eq!(raw.len(), 3);
    relay.stop().await;
}

/// With no credential configured, the ingress refuses to start (one line naming the
/// settings) before touching the broker, unless RELAY_WEBHOOK_AUTH=none.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingress_without_credentials_refuses_to_start() {
    let broker = Broker::start();
    let prefix = unique_prefix("noauth");
    let mut vars = relay_vars(&broker, &prefix, &[]);
    vars.remove("RELAY_WEBHOOK_AUTH");
    // A broker that does not exist: the refusal must come before any broker call.
    vars.insert("RELAY_KAFKA_BROKERS".into(), "127.0.0.1:1".into());
    let cfg = genesys_relay::app::Config::from_vars(&vars).unwrap();
    let err = match app::start(cfg, Role::Ingress).await {
        Ok(_) => panic!("started without credentials"),
        Err(e) => e.to_string(),
    };
    assert!(
        err.contains("RELAY_WEBHOOK_SECRET")
            && err.contains("RELAY_WEBHOOK_BASIC_USER")
            && err.contains("RELAY_WEBHOOK_AUTH=none"),
        "{err}"
    );

    // The binary: exits non-zero quickly with that one line.
    let started = Instant::now();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_genesys-relay"))
        .arg("ingress")
        .env_clear()
        .envs(&vars)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "one line: {stderr}");
    assert!(lines[0].contains("RELAY_WEBHOOK_AUTH=none"), "{stderr}");
    assert!(started.elapsed() < Duration::from_secs(30));

    // Explicitly none: it starts and accepts unauthenticated requests.
    let relay = app::start(relay_config(&broker, &prefix, &[]), Role::Ingress)
        .await
        .unwrap();
    let (status, _) = post_raw(
        &reqwest::Client::new(),
        &url(&relay),
        br#"{"conversationId":"c-open"}"#.to_vec(),
        &[],
    )
    .await;
    assert_eq!(status, 202);
    relay.stop().await;
}

/// RELAY_TLS_CERT / RELAY_TLS_KEY: the ingress speaks HTTPS (a self-signed certificate made
/// here, trusted by the client), and plain HTTP on that port gets no 202.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_ingress_over_real_https() {
    let broker = Broker::start();
    let prefix = unique_prefix("tls");
    let cert = rcgen::generate_simple_self_signed(vec!["relay.test".to_string()]).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (cert_path, key_path) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::write(&cert_path, cert.cert.pem()).unwrap();
    std::fs::write(&key_path, cert.key_pair.serialize_pem()).unwrap();
    let cfg = relay_config(
        &broker,
        &prefix,
        &[
            ("RELAY_WEBHOOK_SECRET", "tls-secret"),
            ("RELAY_TLS_CERT", cert_path.to_str().unwrap()),
            ("RELAY_TLS_KEY", key_path.to_str().unwrap()),
        ],
    );
    let relay = app::start(cfg, Role::Ingress).await.unwrap();
    let addr = relay.ingress_addr.unwrap();
    let client = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(cert.cert.pem().as_bytes()).unwrap())
        .resolve("relay.test", addr)
        .build()
        .unwrap();
    let https = format!("https://relay.test:{}/webhooks/genesys", addr.port());
    let body = br#"{"eventType":"conversation:updated","eventId":"tls-1","data":{"conversationId":"c-tls"}}"#;
    let (status, text) = post_raw(
        &client,
        &https,
        body.to_vec(),
        &[("x-relay-secret", "tls-secret".into())],
    )
    .await;
    assert_eq!(status, 202, "{text}");
    let (status, _) = post_raw(&client, &https, body.to_vec(), &[]).await;
    assert_eq!(status, 401, "TLS does not replace authentication");
    // Plain HTTP to the TLS port is not served.
    let plain = reqwest::Client::new()
        .post(format!("http://{addr}/webhooks/genesys"))
        .header("content-type", "application/json")
        .header("x-relay-secret", "tls-secret")
        .body(body.to_vec())
        .send()
        .await;
    assert!(
        plain.as_ref().map_or(true, |r| r.status() != 202),
        "{plain:?}"
    );
    let raw = raw_by_id(&broker, &prefix, 1);
    assert_eq!(raw["tls-1"].0, "c-tls");
    relay.stop().await;

    // A missing key file stops start-up with the setting's name.
    let bad = relay_config(
        &broker,
        &prefix,
        &[
            ("RELAY_TLS_CERT", cert_path.to_str().unwrap()),
            ("RELAY_TLS_KEY", "/nonexistent/key.pem"),
        ],
    );
    let err = app::start(bad, Role::Ingress)
        .await
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("RELAY_TLS_KEY"), "{err}");
}

/// A body of the largest accepted size, with every id at its longest, is written (202);
/// one byte more is 413. Before this rule, 1,000,001..1,048,576-byte bodies passed the
/// limit and then failed in the producer: 503 forever. A limit that does not fit the
/// producer's message.max.bytes stops start-up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn body_limit_fits_message_max_bytes() {
    let broker = Broker::start();
    let prefix = unique_prefix("limit");
    let err = app::start(
        relay_config(&broker, &prefix, &[("RELAY_MAX_BODY_BYTES", "1048576")]),
        Role::Ingress,
    )
    .await
    .err()
    .expect("a limit over message.max.bytes is refused")
    .to_string();
    assert!(
        err.contains("RELAY_MAX_BODY_BYTES") && err.contains("message.max.bytes"),
        "{err}"
    );

    let relay = app::start(relay_config(&broker, &prefix, &[]), Role::Ingress)
        .await
        .unwrap();
    let cfg = relay_config(&broker, &prefix, &[]);
    let max =
        genesys_relay::ingress::max_body_bytes(&cfg.ingress, cfg.kafka.message_max_bytes).unwrap();
    assert_eq!(
        max,
        1_000_000 - genesys_relay::ingress::RECORD_OVERHEAD_BYTES
    );
    let client = reqwest::Client::new();
    let target = url(&relay);
    let long_id = "e".repeat(genesys_relay::event::MAX_FIELD_BYTES);
    let long_conv = "c".repeat(genesys_relay::event::MAX_FIELD_BYTES);
    let sized = |len: usize, id: &str| {
        let head = format!(
            r#"{{"eventType":"conversation:updated","eventId":"{id}","data":{{"conversationId":"{long_conv}","guestId":"{long_conv}","pad":""#
        );
        let tail = r#""}}"#;
        let pad = len - head.len() - tail.len();
        format!("{head}{}{tail}", "p".repeat(pad)).into_bytes()
    };
    let traceparent = (
        "traceparent",
        "t".repeat(genesys_relay::event::MAX_FIELD_BYTES),
    );
    let at_max = sized(max, &long_id);
    assert_eq!(at_max.len(), max);
    let (status, text) =
        post_raw(&client, &target, at_max, std::slice::from_ref(&traceparent)).await;
    assert_eq!(status, 202, "{text}");
    let over = sized(max + 1, "over");
    let (status, text) = post_raw(&client, &target, over, &[]).await;
    assert_eq!(status, 413, "{text}");
    // The old gap: a 1,000,001-byte body is now refused up front, not a 503.
    let (status, _) = post_raw(&client, &target, sized(1_000_001, "gap"), &[]).await;
    assert_eq!(status, 413);
    // A sender still writing when its size is refused reads the 413, not a broken pipe:
    // it has written only the head when the answer is decided, and the rest after.
    let answer = post_head_then_body(relay.ingress_addr.unwrap(), 2_000_000).await;
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    let raw = raw_by_id(&broker, &prefix, 1);
    let (key, e) = &raw[&long_id];
    assert_eq!(key, &long_conv);
    assert_eq!(e.payload.len(), max);
    relay.stop().await;
}

/// Writes a request head declaring `len` bytes, waits until the ingress has had time to
/// refuse it, then writes the body; the answer's head, or the write error.
async fn post_head_then_body(addr: std::net::SocketAddr, len: usize) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut conn = tokio::net::TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "POST /webhooks/genesys HTTP/1.1\r\nhost: relay\r\ncontent-type: application/json\r\ncontent-length: {len}\r\n\r\n"
    );
    conn.write_all(head.as_bytes()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let chunk = vec![b' '; 64 * 1024];
    let mut written = 0;
    while written < len {
        let n = chunk.len().min(len - written);
        if let Err(e) = conn.write_all(&chunk[..n]).await {
            return format!("writing the body failed after {written} bytes: {e}");
        }
        written += n;
    }
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    while !answer.windows(4).any(|w| w == b"\r\n\r\n") {
        match conn.read(&mut buf).await {
            Ok(0) => break,
            Ok(n) => answer.extend_from_slice(&buf[..n]),
            Err(e) => return format!("reading the answer failed: {e}"),
        }
    }
    String::from_utf8_lossy(&answer).into_owned()
}
