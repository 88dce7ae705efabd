//! No secret reaches a log line or `/metrics`, even at `RELAY_LOG=trace`, in both log
//! formats: the Genesys client secret, the webhook secret, the CMS API key, and every access
//! token the Genesys simulator issued (captured by a small proxy in front of its token
//! endpoint), nor any `Bearer`/`Basic` credential.
//!
//! The run: the `serve` binary with the simulators, a webhook secret, a client secret and
//! a CMS API key; accepted events (static secret and HMAC signature), refused ones (wrong
//! secret, wrong signature), token expiry and refresh, a CMS 503 and a 401 from Genesys.

use crate::common::*;
use base64::Engine;
use genesys_relay::config::Secret;
use genesys_relay::ingress::WebhookAuth;
use genesys_sim::{start_genesys, GenesysSimOptions};
use serde_json::json;
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use warp::Filter;

const CLIENT_ID: &str = "relay-client-id";
const CLIENT_SECRET: &str = "CLIENTSECRET-q8Zr2mXv5Lp";
const WEBHOOK_SECRET: &str = "WEBHOOKSECRET-Jw4Tn7Kd1Ys";
const CMS_API_KEY: &str = "CMSAPIKEY-Hc3Vb9Qe6Ru";

/// A proxy in front of the simulator's `POST /oauth/token` that remembers every token.
async fn token_proxy(upstream: String, tokens: Arc<Mutex<Vec<String>>>) -> SocketAddr {
    let http = reqwest::Client::new();
    let route = warp::path!("oauth" / "token")
        .and(warp::post())
        .and(warp::header::headers_cloned())
        .and(warp::body::bytes())
        .then(move |headers: warp::http::HeaderMap, body: bytes::Bytes| {
            let (http, upstream, tokens) = (http.clone(), upstream.clone(), tokens.clone());
            async move {
                let mut req = http.post(format!("{upstream}/oauth/token")).body(body);
                for name in ["authorization", "content-type"] {
                    if let Some(v) = headers.get(name) {
                        req = req.header(name, v.as_bytes());
                    }
                }
                let resp = req.send().await.unwrap();
                let status = resp.status().as_u16();
                let text = resp.text().await.unwrap();
                if let Ok(v) = serde_json::from_str::<serde_json::Value>(&text) {
                    if let Some(t) = v["access_token"].as_str() {
                        tokens.lock().unwrap().push(t.to_string());
                    }
                }
                warp::http::Response::builder()
                    .status(status)
                    .header("content-type", "application/json")
                    .body(text)
                    .unwrap()
            }
        });
    let (addr, server) = warp::serve(route).bind_ephemeral(([127, 0, 0, 1], 0));
    tokio::spawn(server);
    addr
}

/// Kills the relay when the test ends, also on a failed assertion.
struct ChildGuard(std::process::Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// Every place a secret could show: the text as found, lower-cased where that matters.
fn leaks(text: &str, tokens: &[String]) -> Vec<String> {
    let basic =
        base64::engine::general_purpose::STANDARD.encode(format!("{CLIENT_ID}:{CLIENT_SECRET}"));
    let mut found = Vec::new();
    for (name, secret) in [
        ("client secret", CLIENT_SECRET),
        ("webhook secret", WEBHOOK_SECRET),
        ("CMS API key", CMS_API_KEY),
        ("Basic credentials", basic.as_str()),
    ] {
        if text.contains(secret) {
            found.push(format!("{name} in: {}", line_with(text, secret)));
        }
    }
    for t in tokens {
        if text.contains(t.as_str()) {
            found.push(format!("access token in: {}", line_with(text, t)));
        }
    }
    // Any bearer or basic credential, whatever its value, and any Authorization value.
    for marker in ["bearer ", "basic ", "authorization: ", "\"authorization\":"] {
        for (i, _) in text.to_ascii_lowercase().match_indices(marker) {
            let rest = &text[i + marker.len()..];
            let value: String = rest
                .trim_start_matches(['"', ' '])
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || "-_=+/.".contains(*c))
                .collect();
            if value.len() >= 8 {
                found.push(format!(
                    "{marker:?} credential in: {}",
                    line_with(text, &text[i..i + marker.len()])
                ));
            }
        }
    }
    found
}

fn line_with(text: &str, needle: &str) -> String {
    let line = text.lines().find(|l| l.contains(needle)).unwrap_or("");
    line.chars().take(400).collect()
}

async fn scenario(format: &str) {
    let broker = Broker::start();
    let tokens = Arc::new(Mutex::new(Vec::new()));
    let any: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let genesys = start_genesys(
        any,
        GenesysSimOptions {
            client_id: CLIENT_ID.into(),
            client_secret: CLIENT_SECRET.into(),
            token_ttl: Duration::from_secs(3600),
        },
    )
    .await
    .unwrap();
    let cms = genesys_sim::start_cms(any).await.unwrap();
    let login = token_proxy(genesys.base_url(), tokens.clone()).await;
    let http = reqwest::Client::new();
    let fault = |base: String, body: serde_json::Value| {
        let http = http.clone();
        async move {
            let r = http
                .post(format!("{base}/__sim/faults"))
                .json(&body)
                .send()
                .await
                .unwrap();
            assert!(r.status().is_success());
        }
    };
    fault(genesys.base_url(), json!({"token_ttl_s": 3})).await;

    let prefix = unique_prefix(&format!("secrets-{format}"));
    let (http_port, admin_port) = (free_port(), free_port());
    let mut vars = relay_vars(&broker, &prefix, &[]);
    for (k, v) in [
        ("RELAY_HTTP_ADDR", format!("127.0.0.1:{http_port}")),
        ("RELAY_ADMIN_ADDR", format!("127.0.0.1:{admin_port}")),
        ("RELAY_GENESYS_API_BASE", genesys.base_url()),
        ("RELAY_GENESYS_LOGIN_BASE", format!("http://{login}")),
        ("RELAY_GENESYS_CLIENT_ID", CLIENT_ID.into()),
        ("RELAY_GENESYS_CLIENT_SECRET", CLIENT_SECRET.into()),
        ("RELAY_CMS_URL", format!("{}/v1/entries", cms.base_url())),
        ("RELAY_CMS_API_KEY", CMS_API_KEY.into()),
        ("RELAY_WEBHOOK_SECRET", WEBHOOK_SECRET.into()),
        ("RELAY_RETRY_DELAYS", "300ms,600ms".into()),
        ("RELAY_LOG", "trace".into()),
        ("RELAY_LOG_FORMAT", format.into()),
    ] {
        vars.insert(k.into(), v);
    }
    let dir = tempfile::tempdir().unwrap();
    let (out_path, err_path) = (dir.path().join("stdout"), dir.path().join("stderr"));
    let mut child = ChildGuard(
        Command::new(env!("CARGO_BIN_EXE_genesys-relay"))
            .arg("serve")
            .env_clear()
            .envs(&vars)
            .stdout(std::fs::File::create(&out_path).unwrap())
            .stderr(std::fs::File::create(&err_path).unwrap())
            .stdin(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let target = format!("http://127.0.0.1:{http_port}/webhooks/genesys");
    let admin = format!("http://127.0.0.1:{admin_port}");
    assert!(
        wait_until(Duration::from_secs(60), || async {
            http.get(format!("{admin}/readyz"))
                .send()
                .await
                .is_ok_and(|r| r.status() == 200)
        })
        .await,
        "relay ready"
    );

    let signer = WebhookAuth::new(Secret::new(WEBHOOK_SECRET));
    let event = |i: usize| {
        serde_json::to_vec(&envelope(
            "conversation:updated",
            &format!("sec-{i}"),
            "2026-11-24T08:00:00.000Z",
            json!({"conversationId": format!("c-{i}"), "guestId": format!("g-{i}")}),
        ))
        .unwrap()
    };
    let post = |body: Vec<u8>, header: (&'static str, String)| {
        let req = http
            .post(&target)
            .header("content-type", "application/json")
            .header(header.0, header.1)
            .body(body);
        async move { req.send().await.unwrap().status().as_u16() }
    };
    assert_eq!(
        post(event(1), ("x-relay-secret", WEBHOOK_SECRET.into())).await,
        202
    );
    let wrong = format!("{WEBHOOK_SECRET}-wrong");
    assert_eq!(post(event(2), ("x-relay-secret", wrong)).await, 401);
    let body = event(3);
    let sig = signer.sign(&body, now_secs());
    assert_eq!(post(body, ("x-relay-signature", sig)).await, 202);
    let other = WebhookAuth::new(Secret::new("not-the-secret")).sign(&event(4), now_secs());
    assert_eq!(post(event(4), ("x-relay-signature", other)).await, 401);
    let synced = |n: usize| {
        let (http, cms) = (http.clone(), cms.base_url());
        move || {
            let (http, cms) = (http.clone(), cms.clone());
            async move {
                let stats: serde_json::Value = http
                    .get(format!("{cms}/__sim/stats"))
                    .send()
                    .await
                    .unwrap()
                    .json()
                    .await
                    .unwrap();
                syncs_by_key(&stats).len() >= n
            }
        }
    };
    assert!(wait_until(Duration::from_secs(60), synced(2)).await);

    // The token expires (3 s) and is refreshed; the new one lives long, so the injected
    // 401 below hits an API call (invalidate, refresh, retry once), not the token endpoint.
    tokio::time::sleep(Duration::from_secs(4)).await;
    fault(genesys.base_url(), json!({"token_ttl_s": 3600})).await;
    assert_eq!(
        post(event(5), ("x-relay-secret", WEBHOOK_SECRET.into())).await,
        202
    );
    assert!(wait_until(Duration::from_secs(60), synced(3)).await);
    fault(cms.base_url(), json!({"fail_next": 1, "error_status": 503})).await;
    fault(
        genesys.base_url(),
        json!({"fail_next": 1, "error_status": 401}),
    )
    .await;
    for i in 6..8 {
        let body = event(i);
        let sig = signer.sign(&body, now_secs());
        assert_eq!(post(body, ("x-relay-signature", sig)).await, 202);
    }
    assert!(wait_until(Duration::from_secs(60), synced(5)).await);
    let metrics = http
        .get(format!("{admin}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("relay_ingress_requests_total{status=\"401\"} 2"),
        "{metrics}"
    );

    // SIGTERM: a graceful stop, so the shutdown path logs too.
    Command::new("kill")
        .arg(child.0.id().to_string())
        .status()
        .unwrap();
    let stopped = (0..100).any(|_| {
        std::thread::sleep(Duration::from_millis(100));
        child.0.try_wait().unwrap().is_some()
    });
    assert!(stopped, "serve stops within 10 s of SIGTERM");

    let tokens = tokens.lock().unwrap().clone();
    assert!(
        tokens.len() >= 2,
        "the token was refreshed: {} issued",
        tokens.len()
    );
    let logs = format!(
        "{}\n{}",
        std::fs::read_to_string(&out_path).unwrap(),
        std::fs::read_to_string(&err_path).unwrap()
    );
    eprintln!(
        "{format}: {} log lines, {} bytes; {} tokens issued",
        logs.lines().count(),
        logs.len(),
        tokens.len()
    );
    assert!(logs.lines().count() > 100, "trace logging was on");
    assert!(logs.contains("webhook rejected"), "the 401s were logged");
    if format == "json" {
        let first = logs.lines().find(|l| !l.trim().is_empty()).unwrap();
        assert!(
            serde_json::from_str::<serde_json::Value>(first).is_ok(),
            "{first}"
        );
    }
    let in_logs = leaks(&logs, &tokens);
    let in_metrics = leaks(&metrics, &tokens);
    assert!(in_logs.is_empty(), "{format} logs leak: {in_logs:#?}");
    assert!(in_metrics.is_empty(), "/metrics leaks: {in_metrics:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_in_human_trace_logs_or_metrics() {
    scenario("human").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_in_json_trace_logs_or_metrics() {
    scenario("json").await;
}

#[test]
fn the_leak_detector_finds_what_it_looks_for() {
    let token = "tok_AbCdEf123456".to_string();
    assert!(leaks("all quiet", std::slice::from_ref(&token)).is_empty());
    assert!(!leaks(&format!("x {CLIENT_SECRET} y"), &[]).is_empty());
    assert!(!leaks(&format!("got {token}"), std::slice::from_ref(&token)).is_empty());
    assert!(!leaks("authorization: Bearer eyJhbGciOiJIUzI1NiJ9", &[]).is_empty());
    assert!(!leaks("{\"authorization\":\"Basic cmVsYXk6c2VjcmV0\"}", &[]).is_empty());
}
