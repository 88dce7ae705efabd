//! The CMS adapters against the APIs they speak: Contentful and Sanity through their
//! simulators in `genesys-sim`, Strapi against a real Strapi 5 server (installed by
//! `scripts/install-strapi.sh`, started here on loopback with its own SQLite file) behind a
//! counting proxy. Every check counts what the relay sent: requests per route, writes
//! per entry and per `X-Relay-Event-Id`.
//!
//! The Strapi server is shared by the tests of this program (one start, ~15 s); each test
//! writes its own entries. Like the brokers, it runs under a watchdog shell that kills it
//! once the test process is gone.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use genesys_relay::config::Secret;
use genesys_relay::metrics::Metrics;
use genesys_relay::outbound::HttpError;
use genesys_relay::sinks::cms::settings::{ContentfulSettings, SanitySettings, StrapiSettings};
use genesys_relay::sinks::cms::{ContentfulClient, SanityClient, StrapiClient};
use genesys_relay::sinks::{CmsSink, GuestEntry, UpsertOutcome};
use genesys_sim::{ContentfulSimOptions, SanitySimOptions};
use serde_json::{json, Map, Value};

use super::common::{free_port, unique_prefix};

fn fields(event_id: &str, t: i64, tier: &str) -> Map<String, Value> {
    json!({"loyalty_tier": tier, "cart_value": 12.5, "eventId": event_id, "eventTimeMs": t})
        .as_object()
        .unwrap()
        .clone()
}

/// One upsert of `entry` for event `event_id` at `t`.
async fn upsert(
    sink: &CmsSink,
    entry: &str,
    event_id: &str,
    t: i64,
    tier: &str,
) -> Result<UpsertOutcome, HttpError> {
    let f = fields(event_id, t, tier);
    let key = format!("guest_sync:{event_id}");
    sink.upsert_guest_session(&GuestEntry {
        entry_id: entry,
        fields: &f,
        event_id,
        event_time_ms: Some(t),
        idempotency_key: &key,
    })
    .await
}

async fn stats(base: &str) -> Value {
    reqwest::get(format!("{base}/__sim/stats"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// Requests a simulator answered on `route` (any status).
fn route_count(stats: &Value, route: &str) -> u64 {
    stats["requests"]
        .as_object()
        .map(|routes| {
            routes
                .iter()
                .filter(|(k, _)| k.starts_with(route))
                .map(|(_, v)| {
                    v.as_object()
                        .map_or(0, |s| s.values().filter_map(Value::as_u64).sum())
                })
                .sum()
        })
        .unwrap_or(0)
}

fn metrics() -> Arc<Metrics> {
    Arc::new(Metrics::new())
}

// ---------------------------------------------------------------- Contentful

async fn contentful_sim(rate: Option<u64>) -> genesys_sim::SimServer {
    genesys_sim::start_contentful(
        "127.0.0.1:0".parse().unwrap(),
        ContentfulSimOptions {
            rate_limit_per_second: rate,
            ..Default::default()
        },
    )
    .await
    .unwrap()
}

fn contentful(base: &str, token: &str, publish: bool, wait: Duration) -> CmsSink {
    CmsSink::Contentful(ContentfulClient::new(
        base.to_string(),
        ContentfulSettings {
            space: "sim-space".into(),
            environment: "master".into(),
            content_type: "guestSession".into(),
            locale: "en-US".into(),
            publish,
        },
        Secret::new(token),
        wait,
        reqwest::Client::new(),
        metrics(),
    ))
}

#[tokio::test]
async fn contentful_create_update_stale_and_redelivery() {
    let sim = contentful_sim(None).await;
    let base = sim.base_url();
    let sink = contentful(&base, "sim-cma-token", false, Duration::from_secs(5));
    let entry = "conv-1";
    let get = "GET /spaces/{space}/environments/{env}/entries/{id}";
    let put = "PUT /spaces/{space}/environments/{env}/entries/{id}";

    assert_eq!(
        upsert(&sink, entry, "e1", 100, "silver").await.unwrap(),
        UpsertOutcome::Created
    );
    let s = stats(&base).await;
    assert_eq!(
        (route_count(&s, get), route_count(&s, put)),
        (1, 1),
        "create: GET + PUT"
    );

    assert_eq!(
        upsert(&sink, entry, "e2", 200, "gold").await.unwrap(),
        UpsertOutcome::Updated
    );
    let s = stats(&base).await;
    assert_eq!(
        (route_count(&s, get), route_count(&s, put)),
        (2, 2),
        "update: GET + PUT"
    );

    assert_eq!(
        upsert(&sink, entry, "e0", 50, "bronze").await.unwrap(),
        UpsertOutcome::Stale
    );
    assert_eq!(
        upsert(&sink, entry, "e2", 200, "gold").await.unwrap(),
        UpsertOutcome::Unchanged
    );
    let s = stats(&base).await;
    assert_eq!(
        (route_count(&s, get), route_count(&s, put)),
        (4, 2),
        "stale and redelivery: GET only"
    );
    assert_eq!(s["writes_by_entry"][entry], 2);
    assert_eq!(s["writes_by_relay_event_id"], json!({"e1": 1, "e2": 1}));
    let stored = &s["entries"][entry];
    assert_eq!(stored["fields"]["loyalty_tier"], json!({"en-US": "gold"}));
    assert_eq!(stored["fields"]["eventTimeMs"], json!({"en-US": 200}));
    assert_eq!(stored["sys"]["version"], 2);
    assert!(stored["sys"].get("publishedVersion").is_none());
}

#[tokio::test]
async fn contentful_keeps_fields_the_relay_does_not_write() {
    let sim = contentful_sim(None).await;
    let base = sim.base_url();
    let sink = contentful(&base, "sim-cma-token", false, Duration::from_secs(5));
    upsert(&sink, "conv-k", "e1", 100, "silver").await.unwrap();
    // An editor adds a field between two relay writes.
    let http = reqwest::Client::new();
    let url = format!("{base}/spaces/sim-space/environments/master/entries/conv-k");
    let entry: Value = http
        .get(&url)
        .bearer_auth("sim-cma-token")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let mut edited = entry["fields"].clone();
    edited["notes"] = json!({"en-US": "VIP, call back"});
    let answer = http
        .put(&url)
        .bearer_auth("sim-cma-token")
        .header("X-Contentful-Version", entry["sys"]["version"].to_string())
        .json(&json!({"fields": edited}))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);
    assert_eq!(
        upsert(&sink, "conv-k", "e2", 200, "gold").await.unwrap(),
        UpsertOutcome::Updated
    );
    let s = stats(&base).await;
    assert_eq!(
        s["entries"]["conv-k"]["fields"]["notes"],
        json!({"en-US": "VIP, call back"})
    );
    assert_eq!(
        s["entries"]["conv-k"]["fields"]["loyalty_tier"],
        json!({"en-US": "gold"})
    );
}

#[tokio::test]
async fn contentful_publishing_adds_one_call() {
    let sim = contentful_sim(None).await;
    let base = sim.base_url();
    let sink = contentful(&base, "sim-cma-token", true, Duration::from_secs(5));
    upsert(&sink, "conv-p", "e1", 100, "silver").await.unwrap();
    upsert(&sink, "conv-p", "e2", 200, "gold").await.unwrap();
    let s = stats(&base).await;
    assert_eq!(
        route_count(
            &s,
            "PUT /spaces/{space}/environments/{env}/entries/{id}/published"
        ),
        2
    );
    let sys = &s["entries"]["conv-p"]["sys"];
    // create v1, publish -> v2, update v3, publish -> v4 (publishedVersion 3).
    assert_eq!(
        (sys["version"].as_u64(), sys["publishedVersion"].as_u64()),
        (Some(4), Some(3))
    );
}

#[tokio::test]
async fn contentful_concurrent_writers_never_lose_the_newest_event() {
    let sim = contentful_sim(None).await;
    let base = sim.base_url();
    let sink = Arc::new(contentful(
        &base,
        "sim-cma-token",
        false,
        Duration::from_secs(5),
    ));
    upsert(&sink, "conv-c", "e0", 1, "t0").await.unwrap();
    let mut tasks = Vec::new();
    for i in 1..=4i64 {
        let sink = Arc::clone(&sink);
        tasks.push(tokio::spawn(async move {
            // As the pipeline would: a retriable failure is tried again.
            for _ in 0..10 {
                match upsert(&sink, "conv-c", &format!("e{i}"), i * 10, &format!("t{i}")).await {
                    Ok(outcome) => return outcome,
                    Err(e) if e.is_retriable() => continue,
                    Err(e) => panic!("{e}"),
                }
            }
            panic!("event {i} never landed");
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let s = stats(&base).await;
    assert_eq!(
        s["entries"]["conv-c"]["fields"]["eventTimeMs"],
        json!({"en-US": 40}),
        "{s}"
    );
    assert_eq!(
        s["entries"]["conv-c"]["fields"]["loyalty_tier"],
        json!({"en-US": "t4"})
    );
}

#[tokio::test]
async fn contentful_rate_limit_is_waited_out_in_process() {
    let sim = contentful_sim(Some(2)).await;
    let base = sim.base_url();
    let sink = contentful(&base, "sim-cma-token", false, Duration::from_secs(10));
    let started = Instant::now();
    for i in 0..4 {
        // 2 requests each: 8 requests at 2/s.
        let outcome = upsert(&sink, &format!("conv-r{i}"), &format!("e{i}"), 100, "x")
            .await
            .unwrap();
        assert_eq!(outcome, UpsertOutcome::Created);
    }
    let s = stats(&base).await;
    assert!(s["rate_limited"].as_u64().unwrap() >= 1, "{s}");
    assert!(
        started.elapsed() >= Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );

    // A limit that resets later than the allowed wait goes back to the pipeline, retriable.
    let impatient = contentful(&base, "sim-cma-token", false, Duration::ZERO);
    let mut saw_limit = false;
    for i in 0..6 {
        match upsert(&impatient, &format!("conv-z{i}"), "ez", 100, "x").await {
            Ok(_) => {}
            Err(e) => {
                assert!(e.is_retriable(), "{e}");
                assert!(e.retry_after().is_some(), "{e}");
                saw_limit = true;
                break;
            }
        }
    }
    assert!(saw_limit, "a zero wait must hand the 429 back");
}

#[tokio::test]
async fn contentful_bad_token_is_permanent_and_not_leaked() {
    let sim = contentful_sim(None).await;
    let sink = contentful(
        &sim.base_url(),
        "wrong-secret-token",
        false,
        Duration::from_secs(1),
    );
    let err = upsert(&sink, "conv-b", "e1", 1, "x").await.unwrap_err();
    assert_eq!(err.status(), Some(401), "{err}");
    assert!(!err.is_retriable());
    assert!(err.to_string().contains("AccessTokenInvalid"), "{err}");
    assert!(!err.to_string().contains("wrong-secret-token"));
}

// ---------------------------------------------------------------- Sanity

async fn sanity_sim() -> genesys_sim::SimServer {
    genesys_sim::start_sanity("127.0.0.1:0".parse().unwrap(), SanitySimOptions::default())
        .await
        .unwrap()
}

fn sanity(base: &str, token: &str) -> CmsSink {
    CmsSink::Sanity(SanityClient::new(
        base.to_string(),
        SanitySettings {
            dataset: "production".into(),
            api_version: "2025-02-19".into(),
            doc_type: "guestSession".into(),
        },
        Secret::new(token),
        reqwest::Client::new(),
        metrics(),
    ))
}

#[tokio::test]
async fn sanity_create_update_stale_and_redelivery() {
    let sim = sanity_sim().await;
    let base = sim.base_url();
    let sink = sanity(&base, "sim-sanity-token");
    let doc = "GET /v{version}/data/doc/{dataset}/{ids}";
    let mutate = "POST /v{version}/data/mutate/{dataset}";

    assert_eq!(
        upsert(&sink, "conv-1", "e1", 100, "silver").await.unwrap(),
        UpsertOutcome::Created
    );
    assert_eq!(
        upsert(&sink, "conv-1", "e2", 200, "gold").await.unwrap(),
        UpsertOutcome::Updated
    );
    let s = stats(&base).await;
    assert_eq!(
        (route_count(&s, doc), route_count(&s, mutate)),
        (2, 2),
        "one read + one transaction per event"
    );
    assert_eq!(
        upsert(&sink, "conv-1", "e0", 50, "bronze").await.unwrap(),
        UpsertOutcome::Stale
    );
    assert_eq!(
        upsert(&sink, "conv-1", "e2", 200, "gold").await.unwrap(),
        UpsertOutcome::Unchanged
    );
    let s = stats(&base).await;
    assert_eq!(
        route_count(&s, mutate),
        2,
        "stale and redelivery send no mutation"
    );
    assert_eq!(s["mutations_by_relay_event_id"], json!({"e1": 1, "e2": 1}));
    let stored = &s["documents"]["guestSession-conv-1"];
    assert_eq!(stored["_type"], "guestSession");
    assert_eq!(stored["loyalty_tier"], "gold");
    assert_eq!(stored["eventTimeMs"], 200);
}

#[tokio::test]
async fn sanity_an_event_committed_before_is_not_committed_again() {
    let sim = sanity_sim().await;
    let base = sim.base_url();
    let sink = sanity(&base, "sim-sanity-token");
    // e2 and e3 share a millisecond: both are written, e3 last.
    upsert(&sink, "conv-t", "e2", 200, "gold").await.unwrap();
    upsert(&sink, "conv-t", "e3", 200, "platinum")
        .await
        .unwrap();
    // e2 again (a redelivery after its mark was lost): the stale rule lets it through (equal
    // time, other event), Sanity refuses its transaction id, and nothing changes.
    assert_eq!(
        upsert(&sink, "conv-t", "e2", 200, "gold").await.unwrap(),
        UpsertOutcome::Unchanged
    );
    let s = stats(&base).await;
    assert_eq!(
        s["documents"]["guestSession-conv-t"]["loyalty_tier"],
        "platinum"
    );
    assert_eq!(s["writes_by_document"]["guestSession-conv-t"], 2);
    assert_eq!(s["rejected_transactions"], 1);
}

#[tokio::test]
async fn sanity_concurrent_writers_never_lose_the_newest_event() {
    let sim = sanity_sim().await;
    let base = sim.base_url();
    let sink = Arc::new(sanity(&base, "sim-sanity-token"));
    upsert(&sink, "conv-c", "e0", 1, "t0").await.unwrap();
    let mut tasks = Vec::new();
    for i in 1..=4i64 {
        let sink = Arc::clone(&sink);
        tasks.push(tokio::spawn(async move {
            for _ in 0..10 {
                match upsert(&sink, "conv-c", &format!("e{i}"), i * 10, &format!("t{i}")).await {
                    Ok(outcome) => return outcome,
                    Err(e) if e.is_retriable() => continue,
                    Err(e) => panic!("{e}"),
                }
            }
            panic!("event {i} never landed");
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let s = stats(&base).await;
    assert_eq!(
        s["documents"]["guestSession-conv-c"]["eventTimeMs"], 40,
        "{s}"
    );
}

#[tokio::test]
async fn sanity_bad_token_is_permanent() {
    let sim = sanity_sim().await;
    let sink = sanity(&sim.base_url(), "wrong-secret-token");
    let err = upsert(&sink, "conv-b", "e1", 1, "x").await.unwrap_err();
    assert_eq!(err.status(), Some(401), "{err}");
    assert!(!err.is_retriable());
    assert!(!err.to_string().contains("wrong-secret-token"));
}

// ---------------------------------------------------------------- Strapi

/// The test program's Strapi server: its URL and the API token the bootstrap created.
pub struct Strapi {
    pub url: String,
    pub token: String,
}

static STRAPI: OnceLock<Strapi> = OnceLock::new();

/// The shared Strapi 5 server, started on first use.
pub fn strapi() -> &'static Strapi {
    STRAPI.get_or_init(start_strapi)
}

fn start_strapi() -> Strapi {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let out = Command::new(root.join("scripts/install-strapi.sh"))
        .arg("dir")
        .output()
        .unwrap();
    let dir = PathBuf::from(String::from_utf8(out.stdout).unwrap().trim());
    assert!(
        dir.join(".installed").exists(),
        "Strapi is not installed in {}: run scripts/install-strapi.sh",
        dir.display()
    );
    let data = std::env::temp_dir().join(format!(
        "relay-test-strapi-{}-{}",
        std::process::id(),
        free_port()
    ));
    std::fs::create_dir_all(&data).unwrap();
    let port = free_port();
    let token = format!("relay-test-{}", unique_prefix("strapi"));
    // $1 = test process, $2 = data folder; the server dies with the test process, and its
    // database with it.
    let script = r#"parent=$1 data=$2; shift 2
        "$@" >>"$data/strapi.out" 2>&1 & pid=$!
        while kill -0 $parent 2>/dev/null && kill -0 $pid 2>/dev/null; do sleep 0.5; done
        kill -9 $pid 2>/dev/null; wait $pid; rm -rf "$data""#;
    let mut child = Command::new("sh")
        .current_dir(&dir)
        .arg("-c")
        .arg(script)
        .arg("watchdog")
        .arg(std::process::id().to_string())
        .arg(&data)
        .arg(dir.join("node_modules/.bin/strapi"))
        .arg("start")
        .env("HOST", "127.0.0.1")
        .env("PORT", port.to_string())
        .env("NODE_ENV", "production")
        .env("DATABASE_FILENAME", data.join("strapi.db"))
        .env("RELAY_FIXTURE_API_TOKEN", &token)
        .env("STRAPI_TELEMETRY_DISABLED", "true")
        .env("STRAPI_DISABLE_UPDATE_NOTIFICATION", "true")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn the Strapi watchdog");
    let url = format!("http://127.0.0.1:{port}");
    // Strapi answers /_health once the bootstrap (and the token) is done. ~15 s on an idle
    // 2-core machine; far longer when it is busy.
    let deadline = Instant::now() + Duration::from_secs(240);
    loop {
        let healthy = health_status(port) == Some(204);
        if healthy {
            break;
        }
        let exited = child.try_wait().ok().flatten().is_some();
        if exited || Instant::now() > deadline {
            let log = std::fs::read_to_string(data.join("strapi.out")).unwrap_or_default();
            panic!("Strapi did not start on {url}:\n{log}");
        }
        std::thread::sleep(Duration::from_millis(300));
    }
    // The watchdog lives as long as the test process.
    std::mem::forget(child);
    Strapi { url, token }
}

/// The status of `GET /_health` on loopback `port`, by hand (no runtime needed here).
fn health_status(port: u16) -> Option<u16> {
    use std::io::{Read, Write};
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let mut stream =
        std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(300)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    stream
        .write_all(b"GET /_health HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        .ok()?;
    let mut head = [0u8; 12];
    stream.read_exact(&mut head).ok()?;
    std::str::from_utf8(&head[9..12]).ok()?.parse().ok()
}

/// One request the counting proxy forwarded.
#[derive(Debug, Clone)]
pub struct Forwarded {
    pub method: String,
    pub path: String,
    pub event_id: Option<String>,
    pub status: u16,
}

/// A reverse proxy in front of Strapi that records every request it forwards.
pub struct CountingProxy {
    pub url: String,
    pub seen: Arc<Mutex<Vec<Forwarded>>>,
}

impl CountingProxy {
    pub async fn start(upstream: &str) -> CountingProxy {
        use warp::Filter;
        let seen: Arc<Mutex<Vec<Forwarded>>> = Arc::default();
        let log = Arc::clone(&seen);
        let upstream = upstream.to_string();
        let http = reqwest::Client::new();
        let query = warp::query::raw().or(warp::any().map(String::new)).unify();
        let route = warp::method()
            .and(warp::path::full())
            .and(query)
            .and(warp::header::headers_cloned())
            .and(warp::body::bytes())
            .and_then(
                move |method: warp::http::Method,
                      path: warp::path::FullPath,
                      query: String,
                      headers: warp::http::HeaderMap,
                      body: bytes::Bytes| {
                    let (log, upstream, http) = (Arc::clone(&log), upstream.clone(), http.clone());
                    async move {
                        let mut url = format!("{upstream}{}", path.as_str());
                        if !query.is_empty() {
                            url = format!("{url}?{query}");
                        }
                        let mut request = http
                            .request(method.as_str().parse().unwrap(), url)
                            .body(body);
                        for (name, value) in headers.iter() {
                            if name != "host" && name != "content-length" {
                                request = request.header(name.as_str(), value.as_bytes());
                            }
                        }
                        let answer = request.send().await.unwrap();
                        let status = answer.status().as_u16();
                        let content_type = answer.headers().get("content-type").cloned();
                        let bytes = answer.bytes().await.unwrap();
                        log.lock().unwrap().push(Forwarded {
                            method: method.to_string(),
                            path: path.as_str().to_string(),
                            event_id: headers
                                .get("x-relay-event-id")
                                .and_then(|v| v.to_str().ok())
                                .map(str::to_string),
                            status,
                        });
                        let mut reply = warp::http::Response::new(warp::hyper::Body::from(bytes));
                        *reply.status_mut() = warp::http::StatusCode::from_u16(status).unwrap();
                        if let Some(ct) = content_type {
                            if let Ok(ct) = warp::http::HeaderValue::from_bytes(ct.as_bytes()) {
                                reply.headers_mut().insert("content-type", ct);
                            }
                        }
                        Ok::<_, std::convert::Infallible>(reply)
                    }
                },
            );
        let (addr, server) =
            warp::serve(route).bind_ephemeral(SocketAddr::from(([127, 0, 0, 1], 0)));
        tokio::spawn(server);
        CountingProxy {
            url: format!("http://{addr}"),
            seen,
        }
    }

    pub fn requests(&self) -> Vec<Forwarded> {
        self.seen.lock().unwrap().clone()
    }

    /// `(reads, writes)` so far: GETs and everything else.
    pub fn counts(&self) -> (usize, usize) {
        let seen = self.requests();
        let reads = seen.iter().filter(|f| f.method == "GET").count();
        (reads, seen.len() - reads)
    }
}

fn strapi_sink(url: &str, token: &str) -> CmsSink {
    CmsSink::Strapi(StrapiClient::new(
        url.to_string(),
        StrapiSettings {
            collection: "guest-sessions".into(),
            entry_field: "conversationId".into(),
        },
        Secret::new(token),
        reqwest::Client::new(),
        metrics(),
    ))
}

/// The stored entry, read directly from Strapi (not through the proxy).
async fn strapi_entry(conversation: &str) -> Option<Value> {
    let s = strapi();
    let body: Value = reqwest::Client::new()
        .get(format!("{}/api/guest-sessions", s.url))
        .query(&[("filters[conversationId][$eq]", conversation)])
        .bearer_auth(&s.token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    body["data"].as_array().unwrap().first().cloned()
}

#[tokio::test]
async fn strapi_create_update_stale_and_redelivery() {
    let s = strapi();
    let proxy = CountingProxy::start(&s.url).await;
    let sink = strapi_sink(&proxy.url, &s.token);
    let conv = unique_prefix("conv");

    assert_eq!(
        upsert(&sink, &conv, "e1", 100, "silver").await.unwrap(),
        UpsertOutcome::Created
    );
    assert_eq!(proxy.counts(), (1, 1), "create: find + POST");
    assert_eq!(
        upsert(&sink, &conv, "e2", 200, "gold").await.unwrap(),
        UpsertOutcome::Updated
    );
    assert_eq!(proxy.counts(), (2, 2), "update: find + PUT");
    assert_eq!(
        upsert(&sink, &conv, "e0", 50, "bronze").await.unwrap(),
        UpsertOutcome::Stale
    );
    assert_eq!(
        upsert(&sink, &conv, "e2", 200, "gold").await.unwrap(),
        UpsertOutcome::Unchanged
    );
    assert_eq!(proxy.counts(), (4, 2), "stale and redelivery: find only");
    let writes: HashMap<String, usize> = proxy
        .requests()
        .iter()
        .filter(|f| f.method != "GET")
        .fold(HashMap::new(), |mut m, f| {
            *m.entry(f.event_id.clone().unwrap_or_default()).or_default() += 1;
            m
        });
    assert_eq!(
        writes,
        HashMap::from([("e1".to_string(), 1), ("e2".to_string(), 1)])
    );
    for f in proxy.requests() {
        let ok = f.path.starts_with("/api/guest-sessions") && (200..300).contains(&f.status);
        assert!(ok, "{f:?}");
    }
    let stored = strapi_entry(&conv).await.unwrap();
    assert_eq!(stored["loyalty_tier"], "gold");
    assert_eq!(
        stored["eventTimeMs"], "200",
        "Strapi returns biginteger as a string"
    );
    assert_eq!(stored["cart_value"], 12.5);
}

#[tokio::test]
async fn strapi_concurrent_creates_make_one_entry() {
    let s = strapi();
    let sink = Arc::new(strapi_sink(&s.url, &s.token));
    let conv = unique_prefix("conv");
    let mut tasks = Vec::new();
    for i in 1..=3i64 {
        let (sink, conv) = (Arc::clone(&sink), conv.clone());
        tasks.push(tokio::spawn(async move {
            upsert(&sink, &conv, &format!("e{i}"), i * 10, &format!("t{i}"))
                .await
                .unwrap()
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let body: Value = reqwest::Client::new()
        .get(format!("{}/api/guest-sessions", s.url))
        .query(&[("filters[conversationId][$eq]", conv.as_str())])
        .bearer_auth(&s.token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(body["data"].as_array().unwrap().len(), 1, "{body}");
}

#[tokio::test]
async fn strapi_bad_token_is_permanent() {
    let s = strapi();
    let sink = strapi_sink(&s.url, "wrong-secret-token");
    let err = upsert(&sink, &unique_prefix("conv"), "e1", 1, "x")
        .await
        .unwrap_err();
    assert_eq!(err.status(), Some(401), "{err}");
    assert!(!err.is_retriable());
    assert!(err.to_string().contains("UnauthorizedError"), "{err}");
    assert!(!err.to_string().contains("wrong-secret-token"));
}

// ---------------------------------------------------------------- through the worker

use super::common::{envelope, metric_value, post_event, stack_config, wait_until, Broker, Sims};
use genesys_relay::app::{self, Role};

/// A CMS under test, seen from outside the relay: its settings, its request counts, what it
/// stores, and a way to write as another writer would.
enum Target {
    Contentful(genesys_sim::SimServer),
    Sanity(genesys_sim::SimServer),
    Strapi(CountingProxy),
}

impl Target {
    async fn start(kind: &str) -> Target {
        match kind {
            "contentful" => Target::Contentful(contentful_sim(None).await),
            "sanity" => Target::Sanity(sanity_sim().await),
            _ => Target::Strapi(CountingProxy::start(&strapi().url).await),
        }
    }

    fn good_token(&self) -> String {
        match self {
            Target::Contentful(_) => "sim-cma-token".into(),
            Target::Sanity(_) => "sim-sanity-token".into(),
            Target::Strapi(_) => strapi().token.clone(),
        }
    }

    /// The relay settings that point guest_sync at this CMS with `token`.
    fn vars(&self, token: &str) -> Vec<(&'static str, String)> {
        let mut vars = vec![("RELAY_CMS_API_KEY", token.to_string())];
        match self {
            Target::Contentful(sim) => vars.extend([
                ("RELAY_CMS_KIND", "contentful".to_string()),
                ("RELAY_CMS_URL", sim.base_url()),
                ("RELAY_CONTENTFUL_SPACE", "sim-space".into()),
            ]),
            Target::Sanity(sim) => vars.extend([
                ("RELAY_CMS_KIND", "sanity".to_string()),
                ("RELAY_CMS_URL", sim.base_url()),
                ("RELAY_SANITY_DATASET", "production".into()),
            ]),
            Target::Strapi(proxy) => vars.extend([
                ("RELAY_CMS_KIND", "strapi".to_string()),
                ("RELAY_CMS_URL", proxy.url.clone()),
            ]),
        }
        vars
    }

    /// `(reads, writes)` the CMS received so far (entry routes only).
    async fn calls(&self) -> (u64, u64) {
        match self {
            Target::Contentful(sim) => {
                let s = stats(&sim.base_url()).await;
                let get = route_count(&s, "GET /spaces/");
                (get, route_count(&s, "PUT /spaces/"))
            }
            Target::Sanity(sim) => {
                let s = stats(&sim.base_url()).await;
                (
                    route_count(&s, "GET /v{version}/data/doc"),
                    route_count(&s, "POST /v{version}/data/mutate"),
                )
            }
            Target::Strapi(proxy) => {
                let (r, w) = proxy.counts();
                (r as u64, w as u64)
            }
        }
    }

    /// The stored `(eventId, loyalty_tier)` of conversation `conv`'s entry.
    async fn stored(&self, conv: &str) -> Option<(String, String)> {
        let pick = |e: &Value, locale: Option<&str>| {
            let get = |name: &str| {
                let v = &e[name];
                let v = locale.map_or(v, |l| &v[l]);
                v.as_str().map(str::to_string)
            };
            Some((get("eventId")?, get("loyalty_tier").unwrap_or_default()))
        };
        match self {
            Target::Contentful(sim) => {
                let s = stats(&sim.base_url()).await;
                pick(&s["entries"][conv]["fields"], Some("en-US"))
            }
            Target::Sanity(sim) => {
                let s = stats(&sim.base_url()).await;
                pick(&s["documents"][format!("guestSession-{conv}")], None)
            }
            Target::Strapi(_) => pick(&strapi_entry(conv).await?, None),
        }
    }

    /// Another writer (an editor, another deployment) stores event `event_id` at `t` in the
    /// entry, bypassing this relay.
    async fn write_as_other(&self, conv: &str, event_id: &str, t: i64) {
        let http = reqwest::Client::new();
        match self {
            Target::Contentful(sim) => {
                let url = format!(
                    "{}/spaces/sim-space/environments/master/entries/{conv}",
                    sim.base_url()
                );
                let entry: Value = http
                    .get(&url)
                    .bearer_auth("sim-cma-token")
                    .send()
                    .await
                    .unwrap()
                    .json()
                    .await
                    .unwrap();
                let mut fields = entry["fields"].clone();
                fields["eventId"] = json!({"en-US": event_id});
                fields["eventTimeMs"] = json!({"en-US": t});
                let r = http
                    .put(&url)
                    .bearer_auth("sim-cma-token")
                    .header("X-Contentful-Version", entry["sys"]["version"].to_string())
                    .json(&json!({"fields": fields}))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status(), 200);
            }
            Target::Sanity(sim) => {
                let r = http
                    .post(format!("{}/v2025-02-19/data/mutate/production", sim.base_url()))
                    .bearer_auth("sim-sanity-token")
                    .json(&json!({"mutations": [{"patch": {"id": format!("guestSession-{conv}"), "set": {"eventId": event_id, "eventTimeMs": t}}}]}))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status(), 200);
            }
            Target::Strapi(_) => {
                let s = strapi();
                let entry = strapi_entry(conv).await.unwrap();
                let r = http
                    .put(format!(
                        "{}/api/guest-sessions/{}",
                        s.url,
                        entry["documentId"].as_str().unwrap()
                    ))
                    .bearer_auth(&s.token)
                    .json(&json!({"data": {"eventId": event_id, "eventTimeMs": t}}))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status(), 200);
            }
        }
    }
}

/// `conversation:updated` for `conv` at `2026-11-24T10:MM:SS`, `second` seconds in.
fn conversation_event(id: &str, conv: &str, second: u32) -> Value {
    envelope(
        "conversation:updated",
        id,
        &format!("2026-11-24T10:{:02}:{:02}.000Z", second / 60, second % 60),
        json!({"conversationId": conv, "guestId": conv}),
    )
}

/// Unix ms of [`conversation_event`]'s time.
fn event_ms(second: u32) -> i64 {
    // 2026-11-24T10:00:00Z
    1_795_514_400_000 + i64::from(second) * 1000
}

/// guest_sync end to end through a real broker and the worker: create, update, a
/// redelivery (caught by the relay's idempotency marks: no CMS call), a stale event (caught
/// by the CMS's stored event time after another writer moved the entry on), and the CMS
/// calls per update event.
async fn guest_sync_through_the_worker(kind: &str) {
    let broker = Broker::start();
    let sims = Sims::start().await;
    let target = Target::start(kind).await;
    let prefix = unique_prefix(kind);
    let conv = format!("{}-g", unique_prefix("c")).replace('-', "x");
    let vars = target.vars(&target.good_token());
    let extra: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let relay = app::start(stack_config(&broker, &sims, &prefix, &extra), Role::Serve)
        .await
        .unwrap();
    let ingress = relay.ingress_addr.unwrap();
    let landed = |event: &'static str| {
        let (target, conv) = (&target, conv.clone());
        async move {
            wait_until(Duration::from_secs(60), || async {
                target.stored(&conv).await.is_some_and(|(e, _)| e == event)
            })
            .await
        }
    };

    // Create.
    sims.set_attributes(&conv, json!({"loyalty_tier": "silver", "cart_value": "10"}))
        .await;
    post_event(&sims.http, ingress, &conversation_event("e1", &conv, 1)).await;
    assert!(
        landed("e1").await,
        "created: {:?}",
        target.stored(&conv).await
    );
    assert_eq!(target.calls().await, (1, 1), "create: one read, one write");

    // Updates: ten events of the conversation, each a new state.
    let before = target.calls().await;
    for i in 0..10u32 {
        post_event(
            &sims.http,
            ingress,
            &conversation_event(&format!("u{i}"), &conv, 10 + i),
        )
        .await;
    }
    assert!(
        landed("u9").await,
        "updated: {:?}",
        target.stored(&conv).await
    );
    let after = target.calls().await;
    let calls = (after.0 - before.0) + (after.1 - before.1);
    eprintln!(
        "{kind}: {calls} CMS calls for 10 update events ({} reads, {} writes)",
        after.0 - before.0,
        after.1 - before.1
    );
    assert!(
        calls <= 20,
        "{kind}: at most 2 CMS calls per update, got {calls} for 10"
    );

    // A redelivery: the relay's mark stops it before the CMS.
    post_event(&sims.http, ingress, &conversation_event("u9", &conv, 19)).await;
    let duplicate = "relay_events_processed_total{outcome=\"duplicate\",route=\"guest_sync\"}";
    assert!(
        wait_until(Duration::from_secs(30), || async {
            metric_value(&relay.metrics.render(), duplicate) >= 1.0
        })
        .await,
        "redelivery recognised"
    );
    assert_eq!(
        target.calls().await,
        after,
        "a redelivery makes no CMS call"
    );

    // Another writer stores a newer event; an event older than it (but newer than anything
    // this relay saw) is skipped by the CMS-side stale guard.
    target.write_as_other(&conv, "other", event_ms(100)).await;
    let mid = target.calls().await;
    post_event(&sims.http, ingress, &conversation_event("e-old", &conv, 50)).await;
    let stale = "relay_skipped_total{reason=\"stale\",route=\"guest_sync\"}";
    assert!(
        wait_until(Duration::from_secs(30), || async {
            metric_value(&relay.metrics.render(), stale) >= 1.0
        })
        .await,
        "stale event skipped: {}",
        relay.metrics.render()
    );
    assert_eq!(
        target.stored(&conv).await.unwrap().0,
        "other",
        "the newer state stays"
    );
    let end = target.calls().await;
    assert_eq!(end.1, mid.1, "the stale event wrote nothing");
    relay.stop().await;
}

/// A CMS that refuses the token (401): the event is dead-lettered as permanent at once.
async fn bad_token_is_dead_lettered(kind: &str) {
    let broker = Broker::start();
    let sims = Sims::start().await;
    let target = Target::start(kind).await;
    let prefix = unique_prefix(kind);
    let conv = format!("{}-b", unique_prefix("c")).replace('-', "x");
    let vars = target.vars("not-the-token");
    let extra: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let relay = app::start(stack_config(&broker, &sims, &prefix, &extra), Role::Serve)
        .await
        .unwrap();
    sims.set_attributes(&conv, json!({"loyalty_tier": "silver"}))
        .await;
    post_event(
        &sims.http,
        relay.ingress_addr.unwrap(),
        &conversation_event("e1", &conv, 1),
    )
    .await;
    let topic = format!("{prefix}.events.dlq");
    let addr = broker.addr();
    let dlq = tokio::task::spawn_blocking(move || {
        super::common::read_records_at(&addr, &topic, 1, Duration::from_secs(60))
    })
    .await
    .unwrap();
    assert_eq!(dlq.len(), 1, "dead-lettered");
    let m = relay.metrics.render();
    assert_eq!(
        metric_value(&m, "relay_dlq_total{class=\"permanent\"}"),
        1.0,
        "{m}"
    );
    assert_eq!(target.calls().await.1, 0, "nothing written");
    assert!(target.stored(&conv).await.is_none());
    relay.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn contentful_guest_sync_through_the_worker() {
    guest_sync_through_the_worker("contentful").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sanity_guest_sync_through_the_worker() {
    guest_sync_through_the_worker("sanity").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strapi_guest_sync_through_the_worker() {
    guest_sync_through_the_worker("strapi").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn contentful_bad_token_is_dead_lettered() {
    bad_token_is_dead_lettered("contentful").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sanity_bad_token_is_dead_lettered() {
    bad_token_is_dead_lettered("sanity").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strapi_bad_token_is_dead_lettered() {
    bad_token_is_dead_lettered("strapi").await;
}
