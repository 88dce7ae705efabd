//! The ingress on the open internet: clients that open connections and stall (half a
//! request head, half a body, a silent keep-alive) are closed after their deadline, and
//! connections over the cap are refused at once, while a normal request still gets its
//! 202 once the stalled ones are gone. Everything is counted on the relay's side
//! (`relay_ingress_connections*`) and seen from the client's side (the socket closes).

use crate::common::*;
use genesys_relay::app::{self, Role};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const STALLED: usize = 300;
const CAP: usize = 300;
const OVER_CAP: usize = 40;
const BODY_STALLED: usize = 20;
const HEADER_TIMEOUT: Duration = Duration::from_secs(2);
const IDLE_TIMEOUT: Duration = Duration::from_secs(3);

/// Reads until the peer closes; the time it took, or `None` if still open at `within`.
async fn closed_within(stream: &mut TcpStream, within: Duration) -> Option<(Duration, Vec<u8>)> {
    let started = Instant::now();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let left = within.checked_sub(started.elapsed())?;
        match tokio::time::timeout(left, stream.read(&mut buf)).await {
            Err(_) => return None,
            Ok(Ok(0)) | Ok(Err(_)) => return Some((started.elapsed(), got)),
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
        }
    }
}

fn metric(relay: &app::RunningRelay, series: &str) -> f64 {
    metric_value(&relay.metrics.render(), series)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_clients_are_closed_and_the_cap_refuses_extra_connections() {
    let broker = Broker::start();
    let prefix = unique_prefix("slowloris");
    let cfg = relay_config(
        &broker,
        &prefix,
        &[
            ("RELAY_INGRESS_HEADER_TIMEOUT", "2s"),
            ("RELAY_INGRESS_BODY_TIMEOUT", "2s"),
            ("RELAY_INGRESS_IDLE_TIMEOUT", "3s"),
            ("RELAY_INGRESS_MAX_CONNECTIONS", &CAP.to_string()),
        ],
    );
    let relay = app::start(cfg, Role::Ingress).await.unwrap();
    let addr = relay.ingress_addr.unwrap();
    let url = format!("http://{addr}/webhooks/genesys");
    let event = |i: usize| {
        serde_json::json!({
            "eventType": "conversation:updated",
            "eventId": format!("slow-{i}"),
            "timestamp": "2026-11-24T08:00:00.000Z",
            "data": {"conversationId": format!("conv-{i}")}
        })
    };

    // A few hundred clients send half a request head and stall.
    let opened = Instant::now();
    let mut stalled = Vec::new();
    for _ in 0..STALLED {
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(b"POST /webhooks/genesys HTTP/1.1\r\nHost: relay\r\nContent-Type: appl")
            .await
            .unwrap();
        stalled.push(s);
    }
    assert!(
        wait_until(Duration::from_secs(2), || async {
            metric(&relay, "relay_ingress_connections") == CAP as f64
        })
        .await,
        "the stalled connections fill the cap: {}",
        metric(&relay, "relay_ingress_connections")
    );

    // While they hold the cap, more connections are refused at once (closed, not queued),
    // a normal request included.
    for _ in 0..OVER_CAP {
        let mut s = TcpStream::connect(addr).await.unwrap();
        let _ = s
            .write_all(b"GET /webhooks/genesys HTTP/1.1\r\nHost: relay\r\n\r\n")
            .await;
        let closed = closed_within(&mut s, Duration::from_secs(1)).await;
        assert!(
            matches!(&closed, Some((_, got)) if got.is_empty()),
            "a connection over the cap is closed at once, unanswered: {closed:?}"
        );
    }
    let refused = reqwest::Client::new()
        .post(&url)
        .json(&event(0))
        .send()
        .await;
    assert!(refused.is_err(), "over the cap: {refused:?}");
    assert!(
        metric(&relay, "relay_ingress_connections_refused_total") >= OVER_CAP as f64 + 1.0,
        "refusals counted"
    );

    // Every stalled connection is closed after the header timeout.
    let mut slowest = Duration::ZERO;
    for s in &mut stalled {
        let deadline = HEADER_TIMEOUT + Duration::from_secs(3);
        let Some((_, _)) = closed_within(s, deadline.saturating_sub(opened.elapsed())).await else {
            panic!(
                "a stalled half-request is still open {:?} after connecting",
                opened.elapsed()
            );
        };
        slowest = slowest.max(opened.elapsed());
    }
    println!("slowloris: {STALLED} stalled half-requests all closed within {slowest:?} of opening");
    assert!(
        wait_until(Duration::from_secs(2), || async {
            metric(&relay, "relay_ingress_connections") == 0.0
        })
        .await
    );
    assert_eq!(
        metric(
            &relay,
            "relay_ingress_connections_closed_total{reason=\"header_timeout\"}"
        ),
        STALLED as f64
    );

    // With them gone, a normal request gets its 202 again.
    let http = reqwest::Client::new();
    let ok = http.post(&url).json(&event(1)).send().await.unwrap();
    assert_eq!(ok.status(), 202);

    // Half a body: 408 within the body timeout, and the connection is closed.
    let mut bodies = Vec::new();
    for _ in 0..BODY_STALLED {
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(
            b"POST /webhooks/genesys HTTP/1.1\r\nHost: relay\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"eventType\":",
        )
        .await
        .unwrap();
        bodies.push(s);
    }
    for s in &mut bodies {
        let (took, got) = closed_within(s, Duration::from_secs(6))
            .await
            .expect("a stalled body is answered and closed");
        let answer = String::from_utf8_lossy(&got);
        assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
        assert!(took < Duration::from_secs(5), "{took:?}");
    }
    assert_eq!(
        metric(
            &relay,
            "relay_ingress_connections_closed_total{reason=\"body_timeout\"}"
        ),
        BODY_STALLED as f64
    );

    // A keep-alive connection that goes silent after a request is closed after the idle
    // timeout.
    let mut s = TcpStream::connect(addr).await.unwrap();
    let body = serde_json::to_vec(&event(2)).unwrap();
    let head = format!(
        "POST /webhooks/genesys HTTP/1.1\r\nHost: relay\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).await.unwrap();
    s.write_all(&body).await.unwrap();
    let mut buf = [0u8; 1024];
    let n = s.read(&mut buf).await.unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 202"));
    let answered = Instant::now();
    let (_, rest) = closed_within(&mut s, IDLE_TIMEOUT + Duration::from_secs(3))
        .await
        .expect("an idle keep-alive connection is closed");
    assert!(rest.is_empty());
    let idle = answered.elapsed();
    assert!(
        idle >= IDLE_TIMEOUT - Duration::from_millis(200),
        "{idle:?}"
    );
    // (The reqwest client's pooled connection from the 202 above is idle-closed too.)
    assert!(
        metric(
            &relay,
            "relay_ingress_connections_closed_total{reason=\"idle_timeout\"}"
        ) >= 1.0
    );
    relay.stop().await;
}
