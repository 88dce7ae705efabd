//! The CMS simulator can disagree with its client: `apply_then_fail_rate` stores a write
//! and then fails its answer (an error status, a TCP reset, or no answer before the
//! client's timeout), and the counters say what the client *sent* (`writes_by_key`,
//! `redundant_by_key`) and how each write was answered (`answers_by_key`).

use genesys_sim::{start_cms, SimServer};
use reqwest::Client;
use serde_json::{json, Value};
use std::time::Duration;

async fn cms() -> SimServer {
    start_cms("127.0.0.1:0".parse().unwrap()).await.unwrap()
}

async fn stats(client: &Client, sim: &SimServer) -> Value {
    client
        .get(format!("{}/__sim/stats", sim.base_url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

async fn faults(client: &Client, sim: &SimServer, faults: Value) {
    let r = client
        .post(format!("{}/__sim/faults", sim.base_url()))
        .json(&faults)
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.text().await.unwrap());
}

async fn write(client: &Client, sim: &SimServer, path: &str, key: &str) -> reqwest::Result<u16> {
    let body = json!({"id": "e-1", "type": "guest_session", "fields": {"a": 1}, "eventId": "ev"});
    client
        .post(format!("{}{path}", sim.base_url()))
        .header("X-Idempotency-Key", key)
        .json(&body)
        .send()
        .await
        .map(|r| r.status().as_u16())
}

#[tokio::test]
async fn an_applied_write_whose_answer_fails_is_stored_and_its_retry_is_a_replay() {
    let sim = cms().await;
    let client = Client::builder()
        .timeout(Duration::from_millis(500))
        .build()
        .unwrap();
    for (mode, path, key) in [
        ("status", "/v1/entries", "k-status"),
        ("reset", "/v1/events", "k-reset"),
        ("no_answer", "/v1/events", "k-hang"),
    ] {
        faults(
            &client,
            &sim,
            json!({"apply_then_fail_rate": 1, "apply_then_fail_modes": [mode], "apply_then_fail_hang_ms": 2000}),
        )
        .await;
        let first = write(&client, &sim, path, key).await;
        match mode {
            "status" => assert_eq!(first.ok(), Some(503)),
            "reset" => {
                let e = first.expect_err("a reset connection is no answer");
                eprintln!("the client saw the reset as: {e:?}");
                // A TCP RST before any byte of the answer: ECONNRESET, not a timeout.
                assert!(format!("{e:?}").contains("ConnectionReset"), "{e:?}");
            }
            _ => assert!(first.is_err_and(|e| e.is_timeout())),
        }
        faults(&client, &sim, json!({"apply_then_fail_rate": 0})).await;
        // The client retries the write it never saw succeed: a replay, not redundant.
        let retry = write(&client, &sim, path, key).await.unwrap();
        assert!((200..300).contains(&retry), "{mode}: {retry}");
        // A third write after the 2xx is a send the client should not have made.
        write(&client, &sim, path, key).await.unwrap();

        let s = stats(&client, &sim).await;
        assert_eq!(s["writes_by_key"][key], 3, "{mode}: {s}");
        assert_eq!(s["syncs_by_key"][key], 1, "{mode}: applied once");
        assert_eq!(s["replays_by_key"][key], 2, "{mode}");
        assert_eq!(s["redundant_by_key"][key], 1, "{mode}: only the third");
        assert_eq!(
            s["answers_by_key"][key],
            json!([format!("applied_then:{mode}"), "replayed", "replayed"]),
            "{mode}"
        );
        assert_eq!(s["apply_then_fail_by_key"][key], json!([mode]));
    }
    let s = stats(&client, &sim).await;
    assert_eq!(s["requests"]["POST /v1/events"]["reset"], 1, "{s}");
    assert_eq!(s["requests"]["POST /v1/events"]["no_answer"], 1, "{s}");
    sim.shutdown().await;
}

#[tokio::test]
async fn writes_answered_with_an_injected_fault_are_counted_as_sent() {
    let sim = cms().await;
    let client = Client::new();
    faults(&client, &sim, json!({"fail_next": 2})).await;
    assert_eq!(
        write(&client, &sim, "/v1/events", "k").await.ok(),
        Some(503)
    );
    assert_eq!(
        write(&client, &sim, "/v1/events", "k").await.ok(),
        Some(503)
    );
    assert_eq!(
        write(&client, &sim, "/v1/events", "k").await.ok(),
        Some(202)
    );
    let s = stats(&client, &sim).await;
    assert_eq!(s["writes_by_key"]["k"], 3);
    assert_eq!(s["attempts_by_key"]["k"], 1, "only one reached the handler");
    assert_eq!(s["redundant_by_key"], json!({}), "retries after errors");
    assert_eq!(
        s["answers_by_key"]["k"],
        json!(["injected:503", "injected:503", "applied"])
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn a_write_whose_client_gave_up_during_the_latency_is_sent_but_never_applied() {
    let sim = cms().await;
    let client = Client::builder()
        .timeout(Duration::from_millis(300))
        .build()
        .unwrap();
    faults(&client, &sim, json!({"latency_ms": 1000})).await;
    let gave_up = write(&client, &sim, "/v1/events", "k").await;
    assert!(gave_up.is_err_and(|e| e.is_timeout()));
    // Past the latency: a handler still running would have stored the write by now.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let s = stats(&client, &sim).await;
    assert_eq!(s["writes_by_key"]["k"], 1, "{s}");
    assert_eq!(s["syncs_by_key"], json!({}), "{s}");
    assert_eq!(s["answers_by_key"], json!({}), "{s}");
    sim.shutdown().await;
}
