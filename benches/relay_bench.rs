//! Benchmarks of genesys-relay against a real Apache Kafka broker and the project's simulators.
//!
//! `cargo bench --bench relay_bench -- <scenario> [--runs N] [--events N] [...]`
//!
//! Scenarios (each starts its own broker on a free port in a temp dir):
//! - `ingress`: raw producer ceiling (pre-encoded records, the crate's producer) against
//!   HTTP ingress (`POST /webhooks/genesys`, 202 after `acks=all`), same record bytes,
//!   same broker, same concurrency, interleaved runs; then p50/p99 latency of both at a
//!   fixed moderate rate.
//! - `worker`: N raw events preloaded, then `Role::Worker` with RELAY_MAX_IN_FLIGHT 1, 32,
//!   256 against simulators at 20 ms per call; events/s until the CMS has N syncs.
//! - `e2e`: `serve` in-process, paced webhooks; latency = CMS write time - 202 time.
//! - `retry`: short retry delays, CMS `fail_next` bursts while fresh traffic flows;
//!   lateness = CMS write time of a retried event - its `relay-not-before`.
//! - `memory`: peak RSS (VmHWM) of the `serve` binary as a child under load, and the RSS
//!   of a moka idempotency cache holding 1,000,000 keys.
//! - `cms`: guest_sync through each CMS adapter (`json`, `contentful`, `sanity`; their
//!   simulators at `--latency-ms`): N conversations created, then N updated, through the
//!   ingress; events/s and CMS calls per event of each phase, counted by the simulator.
//!
//! Options: `--runs N`, `--events N`, `--concurrency N`, `--rate N` (events/s),
//! `--seconds N`, `--latency-ms N` (simulator latency), `--serial-events N` (worker at
//! in-flight 1), `--in-flight 1,32,256`. Every scenario prints min/median/max tables.

// The broker fixture (a dedicated Kafka node per scenario run) is the integration tests'.
#[path = "../tests/it/common.rs"]
mod common;
use common::{free_port, unique_prefix, Broker};

use genesys_relay::app::Config;
use genesys_relay::app::{self, Role};
use genesys_relay::clock::now_ms;
use genesys_relay::event::{parse_event, record_key};
use genesys_relay::kafka::{ensure_topics, headers, EventProducer, Topics};
use genesys_relay::metrics::Metrics;
use genesys_relay::schema::Codec;
use rdkafka::message::{Headers, OwnedMessage};
use rdkafka::Message;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

// ---------------------------------------------------------------------------------------
// Options

#[derive(Debug, Clone)]
struct Opts {
    scenario: String,
    runs: usize,
    events: Option<usize>,
    concurrency: usize,
    rate: Option<f64>,
    seconds: Option<f64>,
    latency_ms: u64,
    serial_events: usize,
    in_flight: Vec<usize>,
}

fn parse_opts() -> Opts {
    let mut args = std::env::args().skip(1).filter(|a| a != "--bench");
    let mut o = Opts {
        scenario: String::new(),
        runs: 3,
        events: None,
        concurrency: 64,
        rate: None,
        seconds: None,
        latency_ms: 20,
        serial_events: 200,
        in_flight: vec![1, 32, 256],
    };
    while let Some(a) = args.next() {
        let mut val = |name: &str| {
            args.next()
                .unwrap_or_else(|| panic!("{name} needs a value"))
        };
        match a.as_str() {
            "--runs" => o.runs = val("--runs").parse().expect("--runs N"),
            "--events" => o.events = Some(val("--events").parse().expect("--events N")),
            "--concurrency" => {
                o.concurrency = val("--concurrency").parse().expect("--concurrency N")
            }
            "--rate" => o.rate = Some(val("--rate").parse().expect("--rate N")),
            "--seconds" => o.seconds = Some(val("--seconds").parse().expect("--seconds N")),
            "--latency-ms" => o.latency_ms = val("--latency-ms").parse().expect("--latency-ms"),
            "--serial-events" => {
                o.serial_events = val("--serial-events").parse().expect("--serial-events")
            }
            "--in-flight" => {
                o.in_flight = val("--in-flight")
                    .split(',')
                    .map(|s| s.trim().parse().expect("--in-flight 1,32,256"))
                    .collect()
            }
            s if s.starts_with("--") => panic!("unknown option {s}"),
            s if o.scenario.is_empty() => o.scenario = s.to_string(),
            s => panic!("unexpected argument {s}"),
        }
    }
    o.runs = o.runs.max(1);
    o
}

fn main() {
    let o = parse_opts();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    println!(
        "# relay_bench {} (runs {}, nproc {})",
        o.scenario,
        o.runs,
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    match o.scenario.as_str() {
        "ingress" => rt.block_on(ingress(&o)),
        "worker" => rt.block_on(worker(&o)),
        "e2e" => rt.block_on(e2e(&o)),
        "retry" => rt.block_on(retry(&o)),
        "memory" => rt.block_on(memory(&o)),
        "cms" => rt.block_on(cms(&o)),
        "codec" => codec_bench(&o),
        "cache-once" => rt.block_on(cache_once()),
        "" | "all" => {
            for s in ["ingress", "worker", "e2e", "retry", "memory"] {
                let o = Opts {
                    scenario: s.into(),
                    ..o.clone()
                };
                match s {
                    "ingress" => rt.block_on(ingress(&o)),
                    "worker" => rt.block_on(worker(&o)),
                    "e2e" => rt.block_on(e2e(&o)),
                    "retry" => rt.block_on(retry(&o)),
                    _ => rt.block_on(memory(&o)),
                }
            }
        }
        other => panic!("unknown scenario {other}: ingress, worker, e2e, retry, memory, cms"),
    }
}

// ---------------------------------------------------------------------------------------
// Statistics and tables

fn sorted(mut v: Vec<f64>) -> Vec<f64> {
    v.sort_by(|a, b| a.partial_cmp(b).expect("no NaN"));
    v
}

/// Nearest-rank percentile of sorted values.
fn pct(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn median(v: &[f64]) -> f64 {
    let s = sorted(v.to_vec());
    if s.is_empty() {
        return f64::NAN;
    }
    let n = s.len();
    if n % 2 == 1 {
        s[n / 2]
    } else {
        (s[n / 2 - 1] + s[n / 2]) / 2.0
    }
}

struct Table {
    title: String,
    rows: Vec<(String, Vec<f64>)>,
}

impl Table {
    fn new(title: impl Into<String>) -> Self {
        Table {
            title: title.into(),
            rows: Vec::new(),
        }
    }
    fn row(&mut self, name: impl Into<String>, values: Vec<f64>) {
        self.rows.push((name.into(), values));
    }
    fn print(&self) {
        println!("\n## {}\n", self.title);
        println!("| metric | min | median | max | runs |");
        println!("|---|---:|---:|---:|---|");
        for (name, v) in &self.rows {
            let s = sorted(v.clone());
            let fmt = |x: f64| {
                if x.is_nan() {
                    "-".to_string()
                } else if x.abs() >= 100.0 {
                    format!("{x:.0}")
                } else if x.abs() >= 1.0 {
                    format!("{x:.2}")
                } else {
                    format!("{x:.3}")
                }
            };
            let all: Vec<String> = v.iter().map(|x| fmt(*x)).collect();
            println!(
                "| {name} | {} | {} | {} | {} |",
                fmt(*s.first().unwrap_or(&f64::NAN)),
                fmt(median(v)),
                fmt(*s.last().unwrap_or(&f64::NAN)),
                all.join(" ")
            );
        }
    }
}

// ---------------------------------------------------------------------------------------
// Broker, configuration, simulators

/// The tests' relay settings, with the product defaults the tests shorten restored.
fn relay_vars(broker: &Broker, prefix: &str, extra: &[(&str, String)]) -> HashMap<String, String> {
    let mut vars = common::relay_vars(
        broker,
        prefix,
        &[
            ("RELAY_TOPIC_PARTITIONS", "6"),
            ("RELAY_PRODUCE_TIMEOUT", "5s"),
            ("RELAY_SHUTDOWN_TIMEOUT", "30s"),
        ],
    );
    for (k, v) in extra {
        vars.insert(k.to_string(), v.clone());
    }
    vars
}

fn config(vars: &HashMap<String, String>) -> Config {
    Config::from_vars(vars).expect("valid bench config")
}

struct Sims {
    genesys: genesys_sim::SimServer,
    cms: genesys_sim::SimServer,
    http: reqwest::Client,
}

impl Sims {
    async fn start(latency_ms: u64) -> Sims {
        let any: SocketAddr = "127.0.0.1:0".parse().expect("addr");
        let s = Sims {
            genesys: genesys_sim::start_genesys(any, Default::default())
                .await
                .expect("genesys sim"),
            cms: genesys_sim::start_cms(any).await.expect("cms sim"),
            http: reqwest::Client::new(),
        };
        let lat = json!({ "latency_ms": latency_ms });
        s.faults(&s.genesys.base_url(), &lat).await;
        s.faults(&s.cms.base_url(), &lat).await;
        s
    }

    fn vars(&self) -> Vec<(&'static str, String)> {
        let g = self.genesys.base_url();
        let c = self.cms.base_url();
        vec![
            ("RELAY_GENESYS_API_BASE", g.clone()),
            ("RELAY_GENESYS_LOGIN_BASE", g),
            ("RELAY_GENESYS_CLIENT_ID", "sim-client".into()),
            ("RELAY_GENESYS_CLIENT_SECRET", "sim-secret".into()),
            ("RELAY_CMS_URL", format!("{c}/v1/entries")),
            // The simulator enforces no request budget here, and the bench measures the
            // relay, not the Genesys budget (which holds one process to
            // RELAY_GENESYS_RATE_LIMIT calls per minute, 240 by default).
            ("RELAY_GENESYS_RATE_LIMIT", "1000000".into()),
        ]
    }

    async fn faults(&self, base: &str, faults: &Value) {
        let r = self
            .http
            .post(format!("{base}/__sim/faults"))
            .json(faults)
            .send()
            .await
            .expect("sim faults");
        assert!(r.status().is_success());
    }

    async fn cms_stats(&self) -> Value {
        self.http
            .get(format!("{}/__sim/stats", self.cms.base_url()))
            .send()
            .await
            .expect("cms stats")
            .json()
            .await
            .expect("cms stats json")
    }

    async fn shutdown(self) {
        self.genesys.shutdown().await;
        self.cms.shutdown().await;
    }
}

/// Accepted CMS writes: idempotency key -> write time (unix ms) of the first one.
fn cms_writes(stats: &Value) -> HashMap<String, i64> {
    let mut out = HashMap::new();
    for w in stats["writes"].as_array().into_iter().flatten() {
        if let (Some(k), Some(at)) = (w["key"].as_str(), w["at_ms"].as_i64()) {
            out.entry(k.to_string()).or_insert(at);
        }
    }
    out
}

fn syncs_count(stats: &Value) -> usize {
    stats["syncs_by_key"].as_object().map_or(0, |m| m.len())
}

/// The value of one sample in a Prometheus text exposition.
fn metric_value(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| {
            l.strip_prefix(series)
                .and_then(|rest| rest.strip_prefix(' '))
                .and_then(|v| v.trim().parse().ok())
        })
        .unwrap_or(0.0)
}

const SYNCED: &str = "relay_events_processed_total{outcome=\"synced\",route=\"guest_sync\"}";

// ---------------------------------------------------------------------------------------
// Events

/// A guest-sync webhook of ~600 bytes; every event has its own conversation and guest, so
/// the worker makes exactly one Genesys call and one CMS call (a create) per event.
fn event_body(tag: &str, i: usize) -> bytes::Bytes {
    let body = json!({
        "eventType": "conversation:updated",
        "eventId": format!("{tag}-{i}"),
        "timestamp": now_ms(),
        "data": {
            "conversationId": format!("c-{tag}-{i}"),
            "guestId": format!("g-{tag}-{i}"),
            "channel": {"platform": "Webmessaging", "type": "Private", "messageId": format!("m-{tag}-{i}-0f6c3c2e9d8b4a7f")},
            "participants": [
                {"id": format!("p-{tag}-{i}-a"), "purpose": "customer", "state": "connected"},
                {"id": format!("p-{tag}-{i}-b"), "purpose": "agent", "state": "alerting"}
            ],
            "attributes": {"cart_value": 129.95, "last_page": "/checkout/payment", "session_id": format!("s-{tag}-{i}"), "loyalty_tier": "gold", "locale": "en-GB"}
        }
    });
    bytes::Bytes::from(serde_json::to_vec(&body).expect("json"))
}

/// The record the ingress would write for `body`: (key, value, event id).
fn encode_record(codec: &Codec, body: &[u8]) -> (String, Vec<u8>, String) {
    let event = parse_event(body, now_ms(), None).expect("valid event");
    let value = codec.encode(&event).expect("encodes");
    (record_key(&event).to_string(), value, event.event_id)
}

/// Writes pre-encoded records with `concurrency` sends outstanding; returns the elapsed time.
async fn produce_all(
    producer: &Arc<EventProducer>,
    topic: &str,
    records: Arc<Vec<(String, Vec<u8>, String)>>,
    concurrency: usize,
) -> (Duration, usize) {
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let (p, t, r, next) = (
            producer.clone(),
            topic.to_string(),
            records.clone(),
            next.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let mut errors = 0;
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some((key, value, id)) = r.get(i) else {
                    return errors;
                };
                if p.send(&t, key, value, &[(headers::EVENT_ID, id.as_str())])
                    .await
                    .is_err()
                {
                    errors += 1;
                }
            }
        }));
    }
    let mut errors = 0;
    for t in tasks {
        errors += t.await.expect("producer task");
    }
    (started.elapsed(), errors)
}

/// Posts every body with `concurrency` requests outstanding; returns elapsed and non-202s.
async fn post_all(
    http: &reqwest::Client,
    url: &str,
    bodies: Arc<Vec<bytes::Bytes>>,
    concurrency: usize,
) -> (Duration, usize) {
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let (http, url, bodies, next) =
            (http.clone(), url.to_string(), bodies.clone(), next.clone());
        tasks.push(tokio::spawn(async move {
            let mut errors = 0;
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(body) = bodies.get(i) else {
                    return errors;
                };
                if !post_ok(&http, &url, body.clone()).await {
                    errors += 1;
                }
            }
        }));
    }
    let mut errors = 0;
    for t in tasks {
        errors += t.await.expect("http task");
    }
    (started.elapsed(), errors)
}

async fn post_ok(http: &reqwest::Client, url: &str, body: bytes::Bytes) -> bool {
    match http
        .post(url)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
    {
        Ok(r) => {
            let ok = r.status() == 202;
            let _ = r.bytes().await;
            ok
        }
        Err(_) => false,
    }
}

/// One paced request: when it was due, how long it took, when (unix ms) its 202 arrived.
struct Paced {
    index: usize,
    latency: Duration,
    accepted_at_ms: Option<i64>,
}

/// Open-loop pacing: request `i` starts at `start + i / rate`, whatever earlier ones do.
async fn paced<F, Fut>(rate: f64, count: usize, send: F) -> Vec<Paced>
where
    F: Fn(usize) -> Fut,
    Fut: std::future::Future<Output = bool> + Send + 'static,
{
    let start = tokio::time::Instant::now() + Duration::from_millis(50);
    let mut tasks = Vec::with_capacity(count);
    for i in 0..count {
        tokio::time::sleep_until(start + Duration::from_secs_f64(i as f64 / rate)).await;
        let fut = send(i);
        tasks.push(tokio::spawn(async move {
            let t0 = Instant::now();
            let ok = fut.await;
            Paced {
                index: i,
                latency: t0.elapsed(),
                accepted_at_ms: ok.then(now_ms),
            }
        }));
    }
    let mut out = Vec::with_capacity(count);
    for t in tasks {
        out.push(t.await.expect("paced task"));
    }
    out
}

fn latency_ms_sorted(results: &[Paced]) -> Vec<f64> {
    sorted(
        results
            .iter()
            .filter(|r| r.accepted_at_ms.is_some())
            .map(|r| r.latency.as_secs_f64() * 1000.0)
            .collect(),
    )
}

// ---------------------------------------------------------------------------------------
// Scenario: codec (CPU cost of the per-record work the ingress and the worker do)

fn codec_bench(o: &Opts) {
    let n = o.events.unwrap_or(100_000);
    let codec = Codec::single_object();
    let bodies: Vec<_> = (0..n).map(|i| event_body("codec", i)).collect();
    let (mut parse_us, mut enc_us, mut dec_us) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..o.runs {
        let t = Instant::now();
        let events: Vec<_> = bodies
            .iter()
            .map(|b| parse_event(b, 0, None).expect("valid"))
            .collect();
        parse_us.push(t.elapsed().as_secs_f64() * 1e6 / n as f64);
        let t = Instant::now();
        let values: Vec<_> = events
            .iter()
            .map(|e| codec.encode(e).expect("encodes"))
            .collect();
        enc_us.push(t.elapsed().as_secs_f64() * 1e6 / n as f64);
        let t = Instant::now();
        for v in &values {
            let e: genesys_relay::schema::RawEvent = codec.decode(v).expect("decodes");
            std::hint::black_box(e);
        }
        dec_us.push(t.elapsed().as_secs_f64() * 1e6 / n as f64);
    }
    let mut t = Table::new(format!(
        "Per-record CPU, {n} records (microseconds per record)"
    ));
    t.row("parse_event (webhook JSON -> RawEvent)", parse_us);
    t.row("Codec::encode (RawEvent -> Avro single-object)", enc_us);
    t.row("Codec::decode (Avro -> RawEvent)", dec_us);
    t.print();
}

// ---------------------------------------------------------------------------------------
// Scenario: ingress

/// The Benthos peer (benches/peer, built by scripts/bench.sh into `BENCH_PEER_BIN`): an
/// `http_server` input answering 202 only after its Kafka output got acks=all, writing to
/// `topic` on `broker`. `None` when no peer binary is given.
struct Peer {
    child: std::process::Child,
    url: String,
    _dir: tempfile::TempDir,
}

impl Peer {
    async fn start(broker: &Broker, topic: &str, concurrency: usize) -> Option<Peer> {
        let bin = std::env::var("BENCH_PEER_BIN").ok()?;
        let port = free_port();
        let dir = tempfile::tempdir().expect("tempdir");
        // The peer keys records by conversation id like the relay (a JSON parse per event).
        // The sync_response output after the Kafka one (fan_out_sequential) makes the answer
        // 202 and sends it only once Kafka acknowledged; without it Benthos answers 200.
        let config = format!(
            r#"http:
  enabled: false
logger:
  level: WARN
input:
  http_server:
    address: 127.0.0.1:{port}
    path: /webhooks/genesys
    allowed_verbs: [POST]
    sync_response:
      status: "202"
pipeline:
  threads: -1
  processors:
    - mutation: 'meta kafka_key = this.data.conversationId.or("")'
output:
  broker:
    pattern: fan_out_sequential
    outputs:
      - kafka_peer:
          seed_brokers: [ "{addr}" ]
          topic: "{topic}"
          timeout: 5s
          max_in_flight: {concurrency}
      - sync_response: {{}}
"#,
            addr = broker.addr()
        );
        let path = dir.path().join("peer.yaml");
        std::fs::write(&path, config).expect("peer config");
        let child = Command::new(bin)
            .args(["-c", path.to_str().expect("utf-8 path")])
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start the peer");
        let url = format!("http://127.0.0.1:{port}/webhooks/genesys");
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().expect("addr");
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(addr).is_err() {
            assert!(Instant::now() < deadline, "the peer did not start");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Some(Peer {
            child,
            url,
            _dir: dir,
        })
    }

    /// User+system CPU seconds of the peer process so far.
    fn cpu_seconds(&self) -> f64 {
        process_cpu_seconds(self.child.id())
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// User+system CPU seconds of process `pid` (`/proc/<pid>/stat` fields 14 and 15).
fn process_cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name, which is in parentheses and may hold spaces.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // After ')': state is index 0, so utime (field 14) is 11 and stime (15) is 12.
    (ticks(11) + ticks(12)) / clock_ticks_per_second()
}

fn clock_ticks_per_second() -> f64 {
    static HZ: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    *HZ.get_or_init(|| {
        Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
            .unwrap_or(100.0)
    })
}

async fn ingress(o: &Opts) {
    let n = o.events.unwrap_or(20_000);
    let c = o.concurrency;
    let rate = o.rate.unwrap_or(500.0);
    let lat_secs = o.seconds.unwrap_or(10.0);
    println!("events per run {n}, concurrency {c}; latency at {rate}/s for {lat_secs} s");
    let broker = Broker::dedicated();
    let prefix = unique_prefix("ingress");
    let vars = relay_vars(&broker, &prefix, &[]);
    let cfg = config(&vars);
    let topics = cfg.topics();
    ensure_topics(&cfg, &topics).await.expect("topics");
    let relay = app::start(cfg.clone(), Role::Ingress)
        .await
        .expect("ingress starts");
    let url = format!(
        "http://{}/webhooks/genesys",
        relay.ingress_addr.expect("ingress addr")
    );
    let producer = Arc::new(EventProducer::new(&cfg, Arc::new(Metrics::new())).expect("producer"));
    let codec = Codec::single_object();
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(c)
        .build()
        .expect("client");

    // Warm up both paths (connections, metadata, producer id).
    let warm: Arc<Vec<_>> = Arc::new((0..500).map(|i| event_body("warm", i)).collect());
    let warm_recs = Arc::new(warm.iter().map(|b| encode_record(&codec, b)).collect());
    produce_all(&producer, &topics.raw, warm_recs, c).await;
    post_all(&http, &url, warm.clone(), c).await;
    let peer = match std::env::var("BENCH_PEER_BIN") {
        Ok(_) => {
            let mut peer_cfg = cfg.clone();
            peer_cfg.kafka.topic_prefix = format!("{prefix}.peer");
            let peer_topics = Topics::new(&peer_cfg.kafka.topic_prefix, 0);
            ensure_topics(&peer_cfg, &peer_topics)
                .await
                .expect("peer topic");
            let peer = Peer::start(&broker, &peer_topics.raw, c).await;
            if let Some(p) = &peer {
                post_all(&http, &p.url, warm, c).await;
            }
            peer
        }
        Err(_) => {
            println!("(no BENCH_PEER_BIN: the Benthos peer is not run)");
            None
        }
    };

    let (mut raw_eps, mut http_eps, mut ratio) = (Vec::new(), Vec::new(), Vec::new());
    let (mut peer_eps, mut peer_ratio, mut peer_cpu) = (Vec::new(), Vec::new(), Vec::new());
    for run in 0..o.runs {
        let bodies: Vec<_> = (0..n).map(|i| event_body(&format!("r{run}"), i)).collect();
        let records: Arc<Vec<_>> =
            Arc::new(bodies.iter().map(|b| encode_record(&codec, b)).collect());
        let bodies = Arc::new(bodies);
        let (raw_t, raw_err) = produce_all(&producer, &topics.raw, records, c).await;
        let (http_t, http_err) = post_all(&http, &url, bodies, c).await;
        let r = n as f64 / raw_t.as_secs_f64();
        let h = n as f64 / http_t.as_secs_f64();
        println!(
            "run {run}: raw producer {r:.0} ev/s ({raw_err} errors), HTTP ingress {h:.0} ev/s ({http_err} non-202), ratio {:.2}",
            h / r
        );
        raw_eps.push(r);
        http_eps.push(h);
        ratio.push(h / r);
        if let Some(p) = &peer {
            let bodies: Arc<Vec<_>> =
                Arc::new((0..n).map(|i| event_body(&format!("p{run}"), i)).collect());
            let cpu0 = p.cpu_seconds();
            let (peer_t, peer_err) = post_all(&http, &p.url, bodies, c).await;
            let cpu = p.cpu_seconds() - cpu0;
            let e = n as f64 / peer_t.as_secs_f64();
            println!(
                "run {run}: Benthos peer {e:.0} ev/s ({peer_err} non-202), relay/peer {:.2}, peer CPU {:.0} us/event",
                h / e,
                cpu / n as f64 * 1e6
            );
            peer_eps.push(e);
            peer_ratio.push(h / e);
            peer_cpu.push(cpu / n as f64 * 1e6);
        }
    }
    let mut t = Table::new(format!(
        "Ingress ceiling: {n} events/run, concurrency {c}, interleaved (raw, then HTTP)"
    ));
    t.row("raw producer (events/s)", raw_eps);
    t.row("HTTP ingress, 202 after acks=all (events/s)", http_eps);
    t.row("ratio HTTP / raw", ratio);
    if peer.is_some() {
        t.row("Benthos peer, 202 after acks=all (events/s)", peer_eps);
        t.row("ratio relay HTTP / Benthos peer", peer_ratio);
        t.row("Benthos peer CPU per event (us, user+system)", peer_cpu);
    }
    t.print();

    // Latency at a fixed moderate rate, both paths, interleaved.
    let count = (rate * lat_secs) as usize;
    let mut lt = Table::new(format!(
        "Latency at {rate:.0} events/s for {lat_secs} s (ms; open-loop pacing)"
    ));
    let (mut raw50, mut raw99, mut h50, mut h99, mut ratio99) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for run in 0..o.runs {
        let records: Arc<Vec<_>> = Arc::new(
            (0..count)
                .map(|i| encode_record(&codec, &event_body(&format!("lr{run}"), i)))
                .collect(),
        );
        let raw = paced(rate, count, |i| {
            let (p, t, r) = (producer.clone(), topics.raw.clone(), records.clone());
            async move {
                let (k, v, id) = &r[i];
                p.send(&t, k, v, &[(headers::EVENT_ID, id.as_str())])
                    .await
                    .is_ok()
            }
        })
        .await;
        let bodies: Arc<Vec<_>> = Arc::new(
            (0..count)
                .map(|i| event_body(&format!("lh{run}"), i))
                .collect(),
        );
        let viahttp = paced(rate, count, |i| {
            let (http, url, b) = (http.clone(), url.clone(), bodies[i].clone());
            async move { post_ok(&http, &url, b).await }
        })
        .await;
        let (r, h) = (latency_ms_sorted(&raw), latency_ms_sorted(&viahttp));
        println!(
            "run {run}: raw p50 {:.2} p99 {:.2} ({} ok); HTTP p50 {:.2} p99 {:.2} ({} ok of {count})",
            pct(&r, 0.5),
            pct(&r, 0.99),
            r.len(),
            pct(&h, 0.5),
            pct(&h, 0.99),
            h.len()
        );
        raw50.push(pct(&r, 0.5));
        raw99.push(pct(&r, 0.99));
        h50.push(pct(&h, 0.5));
        h99.push(pct(&h, 0.99));
        ratio99.push(pct(&h, 0.99) / pct(&r, 0.99));
    }
    lt.row("raw producer p50", raw50);
    lt.row("raw producer p99", raw99);
    lt.row("HTTP ingress p50", h50);
    lt.row("HTTP ingress p99", h99);
    lt.row("ratio p99 HTTP / raw", ratio99);
    lt.print();
    let m = relay.metrics.render();
    println!(
        "\ningress 202 total {}, 503 total {}",
        metric_value(&m, "relay_ingress_requests_total{status=\"202\"}"),
        metric_value(&m, "relay_ingress_requests_total{status=\"503\"}")
    );
    relay.stop().await;
    producer.flush(Duration::from_secs(5)).await;
}

// ---------------------------------------------------------------------------------------
// Scenario: worker

async fn worker(o: &Opts) {
    let n = o.events.unwrap_or(10_000);
    println!(
        "events per run {n} ({} at in-flight 1), simulator latency {} ms on Genesys and CMS",
        o.serial_events, o.latency_ms
    );
    let codec = Codec::single_object();
    let mut table = Table::new(format!(
        "Worker throughput, guest sync, simulators at {} ms/call (events/s)",
        o.latency_ms
    ));
    for &in_flight in &o.in_flight {
        let count = if in_flight == 1 {
            o.serial_events.min(n)
        } else {
            n
        };
        let (mut steady, mut wall, mut stalled) = (Vec::new(), Vec::new(), 0);
        for run in 0..o.runs {
            // A fresh broker per run: one run's leftovers never slow the next.
            let broker = Broker::dedicated();
            let sims = Sims::start(o.latency_ms).await;
            let prefix = unique_prefix(&format!("w{in_flight}"));
            let mut extra = sims.vars();
            extra.push(("RELAY_MAX_IN_FLIGHT", in_flight.to_string()));
            let cfg = config(&relay_vars(&broker, &prefix, &extra));
            let topics = cfg.topics();
            ensure_topics(&cfg, &topics).await.expect("topics");
            let producer =
                Arc::new(EventProducer::new(&cfg, Arc::new(Metrics::new())).expect("producer"));
            let records: Arc<Vec<_>> = Arc::new(
                (0..count)
                    .map(|i| encode_record(&codec, &event_body(&prefix, i)))
                    .collect(),
            );
            let (_, errors) = produce_all(&producer, &topics.raw, records, 256).await;
            assert_eq!(errors, 0, "preload failed");
            let started_ms = now_ms();
            let relay = app::start(cfg, Role::Worker).await.expect("worker starts");
            if !wait_synced(&relay, count, Duration::from_secs(60)).await {
                println!("in-flight {in_flight} run {run}: STALLED (no progress for 60 s); run not counted");
                stalled += 1;
                stop_bounded(relay).await;
                sims.shutdown().await;
                continue;
            }
            let stats = sims.cms_stats().await;
            let writes = cms_writes(&stats);
            assert_eq!(syncs_count(&stats), count, "every event synced once");
            let first = *writes.values().min().expect("writes");
            let last = *writes.values().max().expect("writes");
            let s = count as f64 / ((last - first).max(1) as f64 / 1000.0);
            let w = count as f64 / ((last - started_ms).max(1) as f64 / 1000.0);
            println!(
                "in-flight {in_flight} run {run}: {count} events, steady {s:.0} ev/s (first to last CMS write), wall {w:.0} ev/s (incl. start-up and group join {:.1} s)",
                (first - started_ms) as f64 / 1000.0
            );
            steady.push(s);
            wall.push(w);
            stop_bounded(relay).await;
            sims.shutdown().await;
        }
        if stalled > 0 {
            table.row(
                format!("in-flight {in_flight}: stalled runs (not counted)"),
                vec![stalled as f64],
            );
        }
        table.row(
            format!("in-flight {in_flight}: steady (first to last CMS write)"),
            steady,
        );
        table.row(
            format!("in-flight {in_flight}: wall (from start, incl. group join)"),
            wall,
        );
    }
    table.print();
}

/// Waits until `count` guest syncs are counted; false when the count stops moving for
/// `stall` (the relay's state is printed then).
async fn wait_synced(relay: &app::RunningRelay, count: usize, stall: Duration) -> bool {
    let (mut last, mut moved) = (-1.0, Instant::now());
    loop {
        let text = relay.metrics.render();
        let v = metric_value(&text, SYNCED);
        if v >= count as f64 {
            return true;
        }
        if v > last {
            (last, moved) = (v, Instant::now());
        }
        if moved.elapsed() > stall {
            for l in text.lines().filter(|l| {
                l.starts_with("relay_events_processed_total")
                    || l.starts_with("relay_in_flight")
                    || l.starts_with("relay_sink_requests_total")
                    || l.starts_with("relay_genesys_requests_total")
                    || l.starts_with("relay_retry_scheduled_total")
            }) {
                println!("  stalled relay: {l}");
            }
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Stops a relay, giving up after 45 s (a wedged producer would otherwise hold the bench).
async fn stop_bounded(relay: app::RunningRelay) {
    if tokio::time::timeout(Duration::from_secs(45), relay.stop())
        .await
        .is_err()
    {
        println!("  relay did not stop within 45 s");
    }
}

// ---------------------------------------------------------------------------------------
// Scenario: e2e

async fn e2e(o: &Opts) {
    let rate = o.rate.unwrap_or(500.0);
    let secs = o.seconds.unwrap_or(20.0);
    let count = (rate * secs) as usize;
    println!(
        "{count} events per run at {rate}/s, serve in-process, simulators at {} ms/call",
        o.latency_ms
    );
    let mut t = Table::new(format!(
        "End to end: 202 -> CMS upsert at {rate:.0} events/s for {secs} s (ms)"
    ));
    let (mut p50, mut p99, mut max, mut ingress99) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for run in 0..o.runs {
        let broker = Broker::dedicated();
        let sims = Sims::start(o.latency_ms).await;
        let prefix = unique_prefix("e2e");
        let cfg = config(&relay_vars(&broker, &prefix, &sims.vars()));
        let relay = app::start(cfg, Role::Serve).await.expect("serve starts");
        let url = format!(
            "http://{}/webhooks/genesys",
            relay.ingress_addr.expect("addr")
        );
        wait_assigned(&relay).await;
        let http = reqwest::Client::new();
        let tag = format!("e{run}");
        let bodies: Arc<Vec<_>> = Arc::new((0..count).map(|i| event_body(&tag, i)).collect());
        let results = paced(rate, count, |i| {
            let (http, url, b) = (http.clone(), url.clone(), bodies[i].clone());
            async move { post_ok(&http, &url, b).await }
        })
        .await;
        let accepted = results
            .iter()
            .filter(|r| r.accepted_at_ms.is_some())
            .count();
        if !wait_synced(&relay, accepted, Duration::from_secs(60)).await {
            println!(
                "run {run}: STALLED before every accepted event was synced (counted as measured)"
            );
        }
        let writes = cms_writes(&sims.cms_stats().await);
        let lat = sorted(
            results
                .iter()
                .filter_map(|r| {
                    let at = r.accepted_at_ms?;
                    let w = writes.get(&format!("guest_sync:{tag}-{}", r.index))?;
                    Some((*w - at) as f64)
                })
                .collect(),
        );
        let ing = latency_ms_sorted(&results);
        println!(
            "run {run}: {accepted}/{count} accepted, {} synced; 202->CMS p50 {} p99 {} max {} ms; ingress p99 {:.1} ms",
            lat.len(),
            pct(&lat, 0.5),
            pct(&lat, 0.99),
            lat.last().copied().unwrap_or(f64::NAN),
            pct(&ing, 0.99)
        );
        p50.push(pct(&lat, 0.5));
        p99.push(pct(&lat, 0.99));
        max.push(lat.last().copied().unwrap_or(f64::NAN));
        ingress99.push(pct(&ing, 0.99));
        stop_bounded(relay).await;
        sims.shutdown().await;
    }
    t.row("202 -> CMS write p50", p50);
    t.row("202 -> CMS write p99", p99);
    t.row("202 -> CMS write max", max);
    t.row("ingress request p99 (same runs)", ingress99);
    t.print();
}

/// Waits until the worker's raw consumer has partitions (so timing excludes the group join).
async fn wait_assigned(relay: &app::RunningRelay) {
    let http = reqwest::Client::new();
    let url = format!("http://{}/readyz", relay.admin_addr);
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        if let Ok(r) = http.get(&url).send().await {
            if r.status().is_success() {
                return;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("relay not ready within 60 s");
}

// ---------------------------------------------------------------------------------------
// Scenario: retry

async fn retry(o: &Opts) {
    let rate = o.rate.unwrap_or(200.0);
    let secs = o.seconds.unwrap_or(20.0);
    let count = (rate * secs) as usize;
    println!(
        "{count} events per run at {rate}/s; RELAY_RETRY_DELAYS=1s,2s,4s; CMS fail_next 3 (503) every 500 ms; simulators at {} ms/call",
        o.latency_ms
    );
    let mut t = Table::new("Retry timing: CMS write of a retried event - relay-not-before (ms)");
    let (mut p50, mut p99, mut max, mut retried, mut sched) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for run in 0..o.runs {
        let broker = Broker::dedicated();
        let sims = Sims::start(o.latency_ms).await;
        let prefix = unique_prefix("retry");
        let mut extra = sims.vars();
        extra.push(("RELAY_RETRY_DELAYS", "1s,2s,4s".into()));
        let vars = relay_vars(&broker, &prefix, &extra);
        let cfg = config(&vars);
        let topics = cfg.topics();
        let relay = app::start(cfg.clone(), Role::Serve)
            .await
            .expect("serve starts");
        let url = format!(
            "http://{}/webhooks/genesys",
            relay.ingress_addr.expect("addr")
        );
        wait_assigned(&relay).await;
        let http = reqwest::Client::new();
        let tag = format!("rt{run}");
        let bodies: Arc<Vec<_>> = Arc::new((0..count).map(|i| event_body(&tag, i)).collect());
        let injector = {
            let (http, base) = (http.clone(), sims.cms.base_url());
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    let _ = http
                        .post(format!("{base}/__sim/faults"))
                        .json(&json!({"fail_next": 3, "error_status": 503}))
                        .send()
                        .await;
                }
            })
        };
        let results = paced(rate, count, |i| {
            let (http, url, b) = (http.clone(), url.clone(), bodies[i].clone());
            async move { post_ok(&http, &url, b).await }
        })
        .await;
        injector.abort();
        let _ = http
            .post(format!("{}/__sim/faults", sims.cms.base_url()))
            .json(&json!({"fail_next": 0}))
            .send()
            .await;
        let accepted = results
            .iter()
            .filter(|r| r.accepted_at_ms.is_some())
            .count();
        if !wait_synced(&relay, accepted, Duration::from_secs(60)).await {
            println!(
                "run {run}: STALLED before every accepted event was synced (counted as measured)"
            );
        }
        let writes = cms_writes(&sims.cms_stats().await);
        // The last retry record of each event holds the schedule its successful write met.
        let mut last_retry: HashMap<String, (i64, i64, i64)> = HashMap::new();
        for topic in &topics.retry {
            let (cfg, topic) = (cfg.clone(), topic.clone());
            let recs: Vec<OwnedMessage> = tokio::task::spawn_blocking(move || {
                let mut v = Vec::new();
                genesys_relay::kafka::read_topic_to_end(&cfg, &topic, |m| v.push(m))
                    .expect("read retry topic");
                v
            })
            .await
            .expect("reader");
            for m in recs {
                let h = |name: &str| -> Option<String> {
                    m.headers()?
                        .iter()
                        .find(|h| h.key == name)
                        .and_then(|h| h.value)
                        .map(|v| String::from_utf8_lossy(v).into_owned())
                };
                let (Some(id), Some(attempt), Some(nb)) = (
                    h(headers::EVENT_ID),
                    h(headers::ATTEMPT).and_then(|a| a.parse::<i64>().ok()),
                    h(headers::NOT_BEFORE).and_then(|a| a.parse::<i64>().ok()),
                ) else {
                    continue;
                };
                let ts = m.timestamp().to_millis().unwrap_or(nb);
                let e = last_retry.entry(id).or_insert((attempt, nb, ts));
                if attempt >= e.0 {
                    *e = (attempt, nb, ts);
                }
            }
        }
        let mut late = Vec::new();
        let mut scheduled_delay = Vec::new();
        for (id, (_, nb, ts)) in &last_retry {
            if let Some(w) = writes.get(&format!("guest_sync:{id}")) {
                late.push((*w - *nb) as f64);
                scheduled_delay.push((*nb - *ts) as f64);
            }
        }
        let late = sorted(late);
        println!(
            "run {run}: {accepted} accepted, {} retried events, {} of them synced; lateness p50 {} p99 {} max {} ms; min lateness {} ms",
            last_retry.len(),
            late.len(),
            pct(&late, 0.5),
            pct(&late, 0.99),
            late.last().copied().unwrap_or(f64::NAN),
            late.first().copied().unwrap_or(f64::NAN),
        );
        p50.push(pct(&late, 0.5));
        p99.push(pct(&late, 0.99));
        max.push(late.last().copied().unwrap_or(f64::NAN));
        retried.push(late.len() as f64);
        sched.push(median(&scheduled_delay));
        stop_bounded(relay).await;
        sims.shutdown().await;
    }
    t.row("lateness p50 (actual - scheduled)", p50);
    t.row("lateness p99", p99);
    t.row("lateness max", max);
    t.row("retried events measured", retried);
    t.row(
        "median scheduled delay of the last tier (not-before - record time)",
        sched,
    );
    t.print();
}

// ---------------------------------------------------------------------------------------
// Scenario: memory

fn proc_status_kb(pid: u32, field: &str) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    text.lines()
        .find(|l| l.starts_with(field))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// One idempotency-cache measurement (run by `memory` in a child process).
async fn cache_once() {
    let me = std::process::id();
    let before = proc_status_kb(me, "VmRSS:").expect("rss");
    let cache: moka::future::Cache<String, ()> = moka::future::Cache::builder()
        .max_capacity(1_000_000)
        .time_to_live(Duration::from_secs(7 * 24 * 3600))
        .build();
    for i in 0..1_000_000u64 {
        // The real key: route + ':' + event id (a 36-character UUID here).
        let key = format!(
            "guest_sync:{:08x}-{:04x}-4{:03x}-a{:03x}-{:012x}",
            i as u32,
            (i >> 16) & 0xffff,
            i & 0xfff,
            (i >> 4) & 0xfff,
            i.wrapping_mul(0x9e37_79b9_7f4a_7c15) & 0xffff_ffff_ffff
        );
        cache.insert(key, ()).await;
    }
    cache.run_pending_tasks().await;
    let after = proc_status_kb(me, "VmRSS:").expect("rss");
    let delta_kb = after.saturating_sub(before) as f64;
    println!(
        "idempotency cache: {} entries, RSS +{:.1} MiB ({:.0} bytes/key)",
        cache.entry_count(),
        delta_kb / 1024.0,
        delta_kb * 1024.0 / 1e6
    );
    println!("cache-rss-mib {:.1}", delta_kb / 1024.0);
}

async fn memory(o: &Opts) {
    // 1. Idempotency cache: 1,000,000 keys in a moka cache configured like src/idempotency.rs,
    //    each measurement in a fresh child process (freed memory stays in a process's RSS,
    //    so a second measurement in the same process would read low).
    let mut cache_mb = Vec::new();
    for _ in 0..o.runs {
        let out = Command::new(std::env::current_exe().expect("own path"))
            .arg("cache-once")
            .output()
            .expect("run cache measurement");
        let text = String::from_utf8_lossy(&out.stdout);
        print!("{text}");
        if let Some(mb) = text
            .lines()
            .find_map(|l| l.strip_prefix("cache-rss-mib "))
            .and_then(|v| v.trim().parse::<f64>().ok())
        {
            cache_mb.push(mb);
        }
    }

    // 2. Peak RSS of the `serve` binary under the load of the other scenarios.
    let rate = o.rate.unwrap_or(500.0);
    let secs = o.seconds.unwrap_or(20.0);
    let burst = o.events.unwrap_or(20_000);
    println!(
        "serve child: paced {rate}/s for {secs} s, then {burst} events at concurrency {}; simulators at {} ms/call",
        o.concurrency, o.latency_ms
    );
    let bin = env!("CARGO_BIN_EXE_genesys-relay");
    let (mut idle, mut peak, mut after) = (Vec::new(), Vec::new(), Vec::new());
    let mut cpu_per_event = Vec::new();
    for run in 0..o.runs {
        let broker = Broker::dedicated();
        let sims = Sims::start(o.latency_ms).await;
        let prefix = unique_prefix("mem");
        let http_port = free_port();
        let admin_port = free_port();
        let mut extra = sims.vars();
        extra.push(("RELAY_HTTP_ADDR", format!("127.0.0.1:{http_port}")));
        extra.push(("RELAY_ADMIN_ADDR", format!("127.0.0.1:{admin_port}")));
        let vars = relay_vars(&broker, &prefix, &extra);
        let mut child = Command::new(bin)
            .arg("serve")
            .env_clear()
            .envs(&vars)
            .env("RELAY_LOG", "warn")
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn serve");
        let pid = child.id();
        let http = reqwest::Client::builder()
            .pool_max_idle_per_host(o.concurrency)
            .build()
            .expect("client");
        let ready = format!("http://127.0.0.1:{admin_port}/readyz");
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(r) = http.get(&ready).send().await {
                if r.status().is_success() {
                    break;
                }
            }
            assert!(Instant::now() < deadline, "serve not ready");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let idle_kb = proc_status_kb(pid, "VmRSS:").unwrap_or(0);
        let cpu0 = process_cpu_seconds(pid);
        let url = format!("http://127.0.0.1:{http_port}/webhooks/genesys");
        let tag = format!("m{run}");
        let count = (rate * secs) as usize;
        let bodies: Arc<Vec<_>> = Arc::new((0..count).map(|i| event_body(&tag, i)).collect());
        let results = paced(rate, count, |i| {
            let (http, url, b) = (http.clone(), url.clone(), bodies[i].clone());
            async move { post_ok(&http, &url, b).await }
        })
        .await;
        let mut accepted = results
            .iter()
            .filter(|r| r.accepted_at_ms.is_some())
            .count();
        let burst_bodies: Arc<Vec<_>> = Arc::new(
            (0..burst)
                .map(|i| event_body(&format!("{tag}b"), i))
                .collect(),
        );
        let (_, errs) = post_all(&http, &url, burst_bodies, o.concurrency).await;
        accepted += burst - errs;
        let deadline = Instant::now() + Duration::from_secs(180);
        while syncs_count(&sims.cms_stats().await) < accepted && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(1000)).await;
        }
        let cpu = process_cpu_seconds(pid) - cpu0;
        let synced = syncs_count(&sims.cms_stats().await);
        println!(
            "run {run}: serve CPU {cpu:.1} s for {synced} events ({:.0} us/event)",
            cpu / synced.max(1) as f64 * 1e6
        );
        cpu_per_event.push(cpu / synced.max(1) as f64 * 1e6);
        let hwm = proc_status_kb(pid, "VmHWM:").unwrap_or(0);
        let now = proc_status_kb(pid, "VmRSS:").unwrap_or(0);
        println!(
            "run {run}: {accepted} accepted, {} synced; serve RSS idle {:.1} MiB, peak (VmHWM) {:.1} MiB, after {:.1} MiB",
            syncs_count(&sims.cms_stats().await),
            idle_kb as f64 / 1024.0,
            hwm as f64 / 1024.0,
            now as f64 / 1024.0
        );
        idle.push(idle_kb as f64 / 1024.0);
        peak.push(hwm as f64 / 1024.0);
        after.push(now as f64 / 1024.0);
        let _ = Command::new("kill").arg(pid.to_string()).status();
        let _ = child.wait();
        sims.shutdown().await;
    }
    let mut t = Table::new("Memory (MiB)");
    t.row("idempotency cache, 1,000,000 keys (RSS delta)", cache_mb);
    t.row("serve RSS when ready (idle)", idle);
    t.row("serve peak RSS (VmHWM) under load", peak);
    t.row("serve RSS after the load", after);
    t.print();
    let mut c = Table::new("Relay CPU per event (serve process: ingress + worker, user+system)");
    c.row("CPU microseconds per event", cpu_per_event);
    c.print();
}

// ---------------------------------------------------------------------------------------
// Scenario: cms

/// A guest event of conversation `c-{tag}-{i}` carrying its attributes (no Genesys call).
fn guest_event(tag: &str, i: usize, event: &str, tier: &str) -> bytes::Bytes {
    let body = json!({
        "eventType": "conversation:updated",
        "eventId": format!("{event}-{tag}-{i}"),
        "timestamp": now_ms(),
        "data": {
            "conversationId": format!("c-{tag}-{i}"),
            "guestId": format!("c-{tag}-{i}"),
            "attributes": {"cart_value": 129.95, "last_page": "/checkout/payment", "session_id": format!("s-{tag}-{i}"), "loyalty_tier": tier}
        }
    });
    bytes::Bytes::from(serde_json::to_vec(&body).expect("json"))
}

/// Every request a simulator answered on its API routes.
fn requests_total(stats: &Value) -> u64 {
    stats["requests"]
        .as_object()
        .into_iter()
        .flatten()
        .flat_map(|(_, by_status)| by_status.as_object().into_iter().flatten())
        .filter_map(|(_, n)| n.as_u64())
        .sum()
}

async fn cms(o: &Opts) {
    let n = o.events.unwrap_or(300);
    println!(
        "{n} conversations per run, created then updated through the ingress; simulators at {} ms/call, in-flight 256; Contentful without its 7 requests/s limit",
        o.latency_ms
    );
    let mut t = Table::new(format!(
        "guest_sync per CMS adapter ({n} creates, then {n} updates)"
    ));
    for kind in ["json", "contentful", "sanity"] {
        let (mut rates, mut create_calls, mut update_calls) = (Vec::new(), Vec::new(), Vec::new());
        for run in 0..o.runs {
            let broker = Broker::dedicated();
            let sims = Sims::start(o.latency_ms).await;
            let any: SocketAddr = "127.0.0.1:0".parse().expect("addr");
            let mut vars = sims.vars();
            let cms_sim = match kind {
                "contentful" => {
                    let sim = genesys_sim::start_contentful(
                        any,
                        genesys_sim::ContentfulSimOptions {
                            rate_limit_per_second: None,
                            ..Default::default()
                        },
                    )
                    .await
                    .expect("contentful sim");
                    vars.extend([
                        ("RELAY_CMS_KIND", "contentful".to_string()),
                        ("RELAY_CMS_URL", sim.base_url()),
                        ("RELAY_CMS_API_KEY", "sim-cma-token".into()),
                        ("RELAY_CONTENTFUL_SPACE", "sim-space".into()),
                    ]);
                    Some(sim)
                }
                "sanity" => {
                    let sim = genesys_sim::start_sanity(
                        any,
                        genesys_sim::SanitySimOptions {
                            mutations_per_second: None,
                            ..Default::default()
                        },
                    )
                    .await
                    .expect("sanity sim");
                    vars.extend([
                        ("RELAY_CMS_KIND", "sanity".to_string()),
                        ("RELAY_CMS_URL", sim.base_url()),
                        ("RELAY_CMS_API_KEY", "sim-sanity-token".into()),
                        ("RELAY_SANITY_DATASET", "production".into()),
                    ]);
                    Some(sim)
                }
                _ => None,
            };
            let cms_base = cms_sim
                .as_ref()
                .map_or_else(|| sims.cms.base_url(), |s| s.base_url());
            sims.faults(&cms_base, &json!({ "latency_ms": o.latency_ms }))
                .await;
            let prefix = unique_prefix("cms");
            let relay = app::start(config(&relay_vars(&broker, &prefix, &vars)), Role::Serve)
                .await
                .expect("serve starts");
            let url = format!(
                "http://{}/webhooks/genesys",
                relay.ingress_addr.expect("addr")
            );
            wait_assigned(&relay).await;
            let http = reqwest::Client::new();
            let tag = format!("{kind}{run}");
            let stats = || async {
                let r = http.get(format!("{cms_base}/__sim/stats")).send().await;
                requests_total(&r.expect("stats").json().await.expect("stats json"))
            };
            let started = Instant::now();
            let creates: Arc<Vec<_>> = Arc::new(
                (0..n)
                    .map(|i| guest_event(&tag, i, "create", "silver"))
                    .collect(),
            );
            post_all(&http, &url, creates, 32).await;
            let created = wait_synced(&relay, n, Duration::from_secs(60)).await;
            let after_creates = stats().await;
            let updates: Arc<Vec<_>> = Arc::new(
                (0..n)
                    .map(|i| guest_event(&tag, i, "update", "gold"))
                    .collect(),
            );
            post_all(&http, &url, updates, 32).await;
            let updated = wait_synced(&relay, 2 * n, Duration::from_secs(60)).await;
            let elapsed = started.elapsed().as_secs_f64();
            let total = stats().await;
            if !(created && updated) {
                println!("{kind} run {run}: STALLED (counted as measured)");
            }
            let (c, u) = (
                after_creates as f64 / n as f64,
                (total - after_creates) as f64 / n as f64,
            );
            println!(
                "{kind} run {run}: {:.0} events/s; CMS calls per create {c:.2}, per update {u:.2}",
                2.0 * n as f64 / elapsed
            );
            rates.push(2.0 * n as f64 / elapsed);
            create_calls.push(c);
            update_calls.push(u);
            stop_bounded(relay).await;
            if let Some(sim) = cms_sim {
                sim.shutdown().await;
            }
            sims.shutdown().await;
        }
        t.row(format!("{kind}: events/s (post to last sync)"), rates);
        t.row(format!("{kind}: CMS calls per create"), create_calls);
        t.row(format!("{kind}: CMS calls per update"), update_calls);
    }
    t.print();
}
