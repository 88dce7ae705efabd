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
    // default, an idempotent producer.
    let mut broker = Broker::dedicated();
    let prefix = unique_prefix("outage");
    let cfg = relay_config(&broker, &prefix, &[("RELAY_PRODUCE_TIMEOUT", "2s")]);
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
        started.elapsed() < Duration::from_secs(10),
        "503 within the bounded produce timeout"
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
