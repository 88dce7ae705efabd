//! Shared test fixtures: a real Tansu broker (Kafka protocol) on a free port, relay
//! configurations pointing at it, and Kafka read-back helpers.
#![allow(dead_code)]

use genesys_relay::config::Config;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::OwnedMessage;
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};
use std::collections::HashMap;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// The Tansu binary: `TANSU_BIN`, else the project's tools folder.
fn tansu_bin() -> PathBuf {
    if let Ok(p) = std::env::var("TANSU_BIN") {
        return p.into();
    }
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".tools/bin/tansu");
    assert!(
        p.exists(),
        "Tansu is not installed: run scripts/install-tansu.sh (looked for {})",
        p.display()
    );
    p
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A Tansu broker process with sqlite storage; killed on drop, and also when the test
/// process dies (a watchdog shell polls the parent).
pub struct Broker {
    pub port: u16,
    dir: tempfile::TempDir,
    child: Option<Child>,
}

impl Broker {
    pub fn start() -> Broker {
        let dir = tempfile::tempdir().unwrap();
        let mut b = Broker {
            port: free_port(),
            dir,
            child: None,
        };
        b.spawn();
        b
    }

    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    fn spawn(&mut self) {
        let url = format!("tcp://127.0.0.1:{}", self.port);
        // Tansu 0.6 resolves the sqlite path against its working directory.
        let storage = "sqlite://tansu.db";
        let script = format!(
            "\"$0\" broker --listener-url {url} --advertised-listener-url {url} --storage-engine {storage} --silent & pid=$!; \
             trap 'kill $pid 2>/dev/null; exit 0' TERM; \
             while kill -0 {parent} 2>/dev/null && kill -0 $pid 2>/dev/null; do sleep 0.5; done; kill $pid 2>/dev/null",
            parent = std::process::id()
        );
        let child = Command::new("sh")
            .current_dir(self.dir.path())
            .arg("-c")
            .arg(script)
            .arg(tansu_bin())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn tansu");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        let addr: SocketAddr = self.addr().parse().unwrap();
        while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
            assert!(Instant::now() < deadline, "tansu did not start listening");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Stops the broker (data stays on disk).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = Command::new("kill").arg(c.id().to_string()).status();
            let _ = c.wait();
        }
        let addr: SocketAddr = self.addr().parse().unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect_timeout(&addr, Duration::from_millis(100)).is_ok()
            && Instant::now() < deadline
        {
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Starts it again on the same port with the same data.
    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        self.stop();
    }
}

static PREFIX_SEQ: AtomicU32 = AtomicU32::new(0);

/// A topic prefix no other test uses.
pub fn unique_prefix(name: &str) -> String {
    format!(
        "t{}-{}-{}",
        std::process::id(),
        name,
        PREFIX_SEQ.fetch_add(1, Ordering::Relaxed)
    )
}

/// `RELAY_*` settings for a relay on `broker` with `prefix`; `extra` overrides.
pub fn relay_vars(
    broker: &Broker,
    prefix: &str,
    extra: &[(&str, &str)],
) -> HashMap<String, String> {
    let mut vars: HashMap<String, String> = [
        ("RELAY_KAFKA_BROKERS", broker.addr()),
        ("RELAY_TOPIC_PREFIX", prefix.to_string()),
        ("RELAY_CONSUMER_GROUP", format!("{prefix}-group")),
        ("RELAY_TOPIC_PARTITIONS", "3".into()),
        ("RELAY_HTTP_ADDR", "127.0.0.1:0".into()),
        ("RELAY_ADMIN_ADDR", "127.0.0.1:0".into()),
        ("RELAY_PRODUCE_TIMEOUT", "3s".into()),
        ("RELAY_SHUTDOWN_TIMEOUT", "5s".into()),
        ("RELAY_KAFKA_SESSION_TIMEOUT_MS", "6000".into()),
        ("RELAY_KAFKA_HEARTBEAT_INTERVAL_MS", "500".into()),
        ("RELAY_KAFKA_MAX_POLL_INTERVAL_MS", "10000".into()),
        // Tests post without credentials unless they configure one (which is then enforced:
        // `none` only allows starting without any); the product default is auth required.
        ("RELAY_WEBHOOK_AUTH", "none".into()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    for (k, v) in extra {
        vars.insert(k.to_string(), v.to_string());
    }
    vars
}

pub fn relay_config(broker: &Broker, prefix: &str, extra: &[(&str, &str)]) -> Config {
    Config::from_vars(&relay_vars(broker, prefix, extra)).unwrap()
}

/// Reads every record of `topic` until `expected` arrived or `timeout` passed.
pub fn read_records(
    broker: &Broker,
    topic: &str,
    expected: usize,
    timeout: Duration,
) -> Vec<OwnedMessage> {
    read_records_at(&broker.addr(), topic, expected, timeout)
}

/// [`read_records`] by broker address, for blocking threads.
pub fn read_records_at(
    addr: &str,
    topic: &str,
    expected: usize,
    timeout: Duration,
) -> Vec<OwnedMessage> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", addr)
        .set("group.id", format!("reader-{}", unique_prefix("r")))
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let md = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    for t in md.topics().iter().filter(|t| t.name() == topic) {
        for p in t.partitions() {
            tpl.add_partition_offset(topic, p.id(), Offset::Beginning)
                .unwrap();
        }
    }
    consumer.assign(&tpl).unwrap();
    let mut out = Vec::new();
    let deadline = Instant::now() + timeout;
    while out.len() < expected && Instant::now() < deadline {
        if let Some(Ok(m)) = consumer.poll(Duration::from_millis(200)) {
            out.push(m.detach());
        }
    }
    out
}

/// Count of records currently in `topic` (sum of high watermarks minus low).
pub fn topic_size(broker: &Broker, topic: &str) -> i64 {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", broker.addr())
        .create()
        .unwrap();
    let md = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .unwrap();
    md.topics()
        .iter()
        .filter(|t| t.name() == topic)
        .flat_map(|t| t.partitions())
        .map(|p| {
            let (lo, hi) = consumer
                .fetch_watermarks(topic, p.id(), Duration::from_secs(10))
                .unwrap();
            hi - lo
        })
        .sum()
}

pub fn key_of(m: &OwnedMessage) -> String {
    String::from_utf8_lossy(m.key().unwrap_or_default()).into_owned()
}

/// The Genesys Cloud and CMS simulators on free ports.
pub struct Sims {
    pub genesys: genesys_relay::sim::SimServer,
    pub cms: genesys_relay::sim::SimServer,
    pub http: reqwest::Client,
}

impl Sims {
    pub async fn start() -> Sims {
        let any: SocketAddr = "127.0.0.1:0".parse().unwrap();
        Sims {
            genesys: genesys_relay::sim::start_genesys(any, Default::default())
                .await
                .unwrap(),
            cms: genesys_relay::sim::start_cms(any).await.unwrap(),
            http: reqwest::Client::new(),
        }
    }

    /// Worker settings pointing at these simulators (CMS entries + forward backend).
    pub fn vars(&self) -> Vec<(String, String)> {
        let g = self.genesys.base_url();
        let c = self.cms.base_url();
        vec![
            ("RELAY_GENESYS_API_BASE".into(), g.clone()),
            ("RELAY_GENESYS_LOGIN_BASE".into(), g),
            ("RELAY_GENESYS_CLIENT_ID".into(), "sim-client".into()),
            ("RELAY_GENESYS_CLIENT_SECRET".into(), "sim-secret".into()),
            ("RELAY_CMS_URL".into(), format!("{c}/v1/entries")),
            ("RELAY_FORWARD_URL".into(), format!("{c}/v1/events")),
        ]
    }

    pub async fn genesys_stats(&self) -> serde_json::Value {
        self.get_json(&format!("{}/__sim/stats", self.genesys.base_url()))
            .await
    }

    pub async fn cms_stats(&self) -> serde_json::Value {
        self.get_json(&format!("{}/__sim/stats", self.cms.base_url()))
            .await
    }

    async fn get_json(&self, url: &str) -> serde_json::Value {
        self.http
            .get(url)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    /// Waits until the CMS counts exactly `n` synced idempotency keys.
    pub async fn wait_for_syncs(&self, n: usize, timeout: Duration) -> bool {
        wait_until(timeout, || async {
            syncs_by_key(&self.cms_stats().await).len() == n
        })
        .await
    }

    pub async fn genesys_faults(&self, faults: serde_json::Value) {
        let r = self
            .http
            .post(format!("{}/__sim/faults", self.genesys.base_url()))
            .json(&faults)
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success());
    }

    pub async fn cms_faults(&self, faults: serde_json::Value) {
        let r = self
            .http
            .post(format!("{}/__sim/faults", self.cms.base_url()))
            .json(&faults)
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success());
    }

    pub async fn set_guest(&self, id: &str, attributes: serde_json::Value) {
        let r = self
            .http
            .put(format!("{}/__sim/guests/{id}", self.genesys.base_url()))
            .json(&serde_json::json!({ "attributes": attributes }))
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success());
    }
}

/// Settings for a relay running ingress and worker against `broker` and `sims`.
pub fn stack_config(broker: &Broker, sims: &Sims, prefix: &str, extra: &[(&str, &str)]) -> Config {
    let sim_vars = sims.vars();
    let mut all: Vec<(&str, &str)> = sim_vars
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    all.extend_from_slice(extra);
    relay_config(broker, prefix, &all)
}

/// Polls `check` every 200 ms until it returns true or `timeout` passes.
pub async fn wait_until<F, Fut>(timeout: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if check().await {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A webhook envelope.
pub fn envelope(
    event_type: &str,
    event_id: &str,
    timestamp: &str,
    data: serde_json::Value,
) -> serde_json::Value {
    serde_json::json!({"eventType": event_type, "eventId": event_id, "timestamp": timestamp, "data": data})
}

/// Posts `body` to the relay's ingress and asserts 202.
pub async fn post_event(http: &reqwest::Client, ingress: SocketAddr, body: &serde_json::Value) {
    let r = http
        .post(format!("http://{ingress}/webhooks/genesys"))
        .json(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202, "{}", r.text().await.unwrap());
}

/// Accepted writes per idempotency key at the CMS.
pub fn syncs_by_key(stats: &serde_json::Value) -> HashMap<String, u64> {
    stats["syncs_by_key"]
        .as_object()
        .map(|m| {
            m.iter()
                .map(|(k, v)| (k.clone(), v.as_u64().unwrap_or(0)))
                .collect()
        })
        .unwrap_or_default()
}

/// The value of one sample in a Prometheus text exposition, e.g. `relay_dlq_total{class="poison"}`.
pub fn metric_value(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| {
            l.strip_prefix(series)
                .and_then(|rest| rest.strip_prefix(' '))
                .and_then(|v| v.trim().parse().ok())
        })
        .unwrap_or(0.0)
}

/// The event ids of raw-topic records (single-object Avro `RawEvent`).
pub fn raw_event_ids(records: &[OwnedMessage]) -> std::collections::HashSet<String> {
    let codec = genesys_relay::schema::Codec::single_object();
    records
        .iter()
        .map(|r| {
            codec
                .decode::<genesys_relay::schema::RawEvent>(r.payload().unwrap())
                .unwrap()
                .event_id
        })
        .collect()
}
