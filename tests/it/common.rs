//! Shared test fixtures: a real Apache Kafka broker (KRaft, single node, shared by every test
//! of the test program), dedicated brokers and a 3-node cluster for tests that stop or kill
//! brokers, relay configurations pointing at them, and Kafka read-back helpers.
//!
//! Invariant: no broker outlives the test process. Each broker runs under a watchdog shell
//! that SIGKILLs it once the test process is gone (statics are never dropped, and a test that
//! panics or is killed skips `Drop`). `RELAY_TEST_BROKER=tansu` runs Tansu instead (its binary
//! from `TANSU_BIN` or `.tools/bin/tansu`); single-node only.
#![allow(dead_code)]

use genesys_relay::app::Config;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::OwnedMessage;
use rdkafka::{ClientConfig, Message};
use std::collections::HashMap;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn use_tansu() -> bool {
    std::env::var("RELAY_TEST_BROKER").is_ok_and(|b| b == "tansu")
}

/// One broker process (a Kafka KRaft node, or Tansu) under its watchdog shell.
struct Node {
    port: u16,
    /// `kafka-broker.sh` arguments after `--dir`/`--port` (node id, controller port, voters,
    /// cluster id): the same on every restart, so the node rejoins its cluster.
    args: Vec<String>,
    dir: PathBuf,
    watchdog: Option<Child>,
}

impl Node {
    fn new(dir: PathBuf, port: u16, args: Vec<String>) -> Node {
        Node {
            port,
            args,
            dir,
            watchdog: None,
        }
    }

    fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Starts the process; with `wait`, returns once it accepts connections.
    fn spawn(&mut self, remove_dir_on_exit: bool, wait: bool) {
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
        let (program, args) = if use_tansu() {
            let url = format!("tcp://{}", self.addr());
            // Tansu 0.6 resolves the sqlite path against its working directory.
            let args = [
                "broker",
                "--listener-url",
                &url,
                "--advertised-listener-url",
                &url,
            ]
            .into_iter()
            .chain(["--storage-engine", "sqlite://tansu.db", "--silent"])
            .map(String::from)
            .collect();
            (tansu_bin(&root), args)
        } else {
            let dir = self.dir.display().to_string();
            let port = self.port.to_string();
            let mut args: Vec<String> = vec!["--dir".into(), dir, "--port".into(), port];
            args.extend(self.args.iter().cloned());
            (root.join("scripts/kafka-broker.sh"), args)
        };
        // $1 = test process, $2 = remove the folder at exit, $3 = the broker program, then its
        // arguments. The shell records the broker's pid (for SIGKILL), forwards SIGTERM (a
        // graceful stop, waited for so the data folder's lock is free for a restart) and
        // SIGKILLs the broker when the test process is gone.
        let script = r#"parent=$1 rm_dir=$2; shift 2
            "$@" >>broker.out 2>&1 & pid=$!
            echo $pid >broker.pid
            trap 'kill $pid 2>/dev/null; wait $pid; exit 0' TERM
            while kill -0 $parent 2>/dev/null && kill -0 $pid 2>/dev/null; do sleep 0.5; done
            kill -9 $pid 2>/dev/null; wait $pid
            if [ "$rm_dir" = 1 ] && ! kill -0 $parent 2>/dev/null; then rm -rf "$PWD"; fi"#;
        std::fs::create_dir_all(&self.dir).unwrap();
        let child = Command::new("sh")
            .current_dir(&self.dir)
            .arg("-c")
            .arg(script)
            .arg("watchdog")
            .arg(std::process::id().to_string())
            .arg(if remove_dir_on_exit { "1" } else { "0" })
            .arg(program)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn the broker watchdog");
        self.watchdog = Some(child);
        if wait {
            self.wait_listening();
        }
    }

    fn wait_listening(&mut self) {
        // Generous: a JVM starts in ~5 s on an idle 2-core machine, far slower when busy.
        let deadline = Instant::now() + Duration::from_secs(120);
        let addr: SocketAddr = self.addr().parse().unwrap();
        while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
            let exited = self
                .watchdog
                .as_mut()
                .is_some_and(|c| c.try_wait().ok().flatten().is_some());
            if exited || Instant::now() > deadline {
                let out = std::fs::read_to_string(self.dir.join("broker.out")).unwrap_or_default();
                panic!(
                    "the broker on {} did not start (logs in {}):\n{out}",
                    self.addr(),
                    self.dir.display()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// SIGTERM (a graceful, controlled shutdown), waited for; the data stays.
    fn stop(&mut self) {
        if let Some(mut c) = self.watchdog.take() {
            let _ = Command::new("kill").arg(c.id().to_string()).status();
            let _ = c.wait();
        }
        self.wait_closed();
    }

    /// SIGKILL of the broker itself (no shutdown work at all); the data stays.
    fn kill(&mut self) {
        if let Some(mut c) = self.watchdog.take() {
            if let Ok(pid) = std::fs::read_to_string(self.dir.join("broker.pid")) {
                let _ = Command::new("kill").args(["-9", pid.trim()]).status();
            }
            let _ = c.wait();
        }
        self.wait_closed();
    }

    fn wait_closed(&self) {
        let addr: SocketAddr = self.addr().parse().unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        while TcpStream::connect_timeout(&addr, Duration::from_millis(100)).is_ok()
            && Instant::now() < deadline
        {
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// The Tansu binary: `TANSU_BIN`, else the project's tools folder.
fn tansu_bin(root: &Path) -> PathBuf {
    if let Ok(p) = std::env::var("TANSU_BIN") {
        return p.into();
    }
    let p = root.join(".tools/bin/tansu");
    assert!(
        p.exists(),
        "Tansu is not installed: run scripts/install-tansu.sh"
    );
    p
}

/// A broker for tests. [`Broker::start`] hands out the test program's shared broker (started
/// on first use): tests on it keep to their own topic prefix and consumer group. A test that
/// stops, restarts or kills its broker takes a [`Broker::dedicated`] one.
pub struct Broker {
    pub port: u16,
    /// `None` for the shared broker.
    own: Option<(Node, tempfile::TempDir)>,
}

static SHARED: OnceLock<u16> = OnceLock::new();

impl Broker {
    /// The shared broker of this test program.
    pub fn start() -> Broker {
        let port = *SHARED.get_or_init(|| {
            let dir = std::env::temp_dir().join(format!(
                "relay-test-broker-{}-{}",
                std::process::id(),
                free_port()
            ));
            let mut node = Node::new(dir, free_port(), single_node_args());
            // The folder goes with the broker when the test process exits (the watchdog).
            node.spawn(true, true);
            let port = node.port;
            // The node (and its watchdog) lives as long as the test process.
            std::mem::forget(node);
            port
        });
        Broker { port, own: None }
    }

    /// A broker of its own, for a test that stops, restarts or kills it.
    pub fn dedicated() -> Broker {
        let tmp = tempfile::tempdir().unwrap();
        let mut node = Node::new(tmp.path().join("broker"), free_port(), single_node_args());
        node.spawn(false, true);
        Broker {
            port: node.port,
            own: Some((node, tmp)),
        }
    }

    /// A broker of its own whose client listener is `SASL_PLAINTEXT` with the `PLAIN`
    /// mechanism, accepting these `(user, password)` pairs (Kafka's `PlainLoginModule` JAAS
    /// entry, `user_<name>="<password>"`). Apache Kafka only (Tansu has no SASL).
    pub fn dedicated_sasl_plain(users: &[(&str, &str)]) -> Broker {
        assert!(!use_tansu(), "SASL needs Apache Kafka");
        let tmp = tempfile::tempdir().unwrap();
        let port = free_port();
        let mut args = single_node_args();
        let cport = args[1].clone();
        let accounts: String = users
            .iter()
            .map(|(user, password)| format!(" user_{user}=\"{password}\""))
            .collect();
        for kv in [
            format!("listeners=SASL_PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{cport}"),
            format!("advertised.listeners=SASL_PLAINTEXT://127.0.0.1:{port}"),
            "listener.security.protocol.map=SASL_PLAINTEXT:SASL_PLAINTEXT,CONTROLLER:PLAINTEXT"
                .into(),
            "inter.broker.listener.name=SASL_PLAINTEXT".into(),
            "sasl.enabled.mechanisms=PLAIN".into(),
            "sasl.mechanism.inter.broker.protocol=PLAIN".into(),
            format!(
                "listener.name.sasl_plaintext.plain.sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule \
                 required username=\"broker\" password=\"broker-secret\" user_broker=\"broker-secret\"{accounts};"
            ),
        ] {
            args.extend(["--set".to_string(), kv]);
        }
        let mut node = Node::new(tmp.path().join("broker"), port, args);
        node.spawn(false, true);
        Broker {
            port: node.port,
            own: Some((node, tmp)),
        }
    }

    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    fn own(&mut self, what: &str) -> &mut Node {
        match &mut self.own {
            Some((node, _)) => node,
            None => panic!("{what} on the shared test broker: take Broker::dedicated()"),
        }
    }

    /// Stops the broker gracefully (data stays on disk). Dedicated brokers only.
    pub fn stop(&mut self) {
        self.own("stop()").stop();
    }

    /// SIGKILLs the broker (data stays on disk). Dedicated brokers only.
    pub fn kill(&mut self) {
        self.own("kill()").kill();
    }

    /// Starts it again on the same port with the same data. Dedicated brokers only.
    pub fn restart(&mut self) {
        let node = self.own("restart()");
        node.stop();
        node.spawn(false, true);
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        if let Some((node, _)) = &mut self.own {
            node.kill();
        }
    }
}

/// Node 1 voting alone, its controller on a free port.
fn single_node_args() -> Vec<String> {
    let cport = free_port();
    vec![
        "--controller-port".into(),
        cport.to_string(),
        "--voters".into(),
        format!("1@127.0.0.1:{cport}"),
    ]
}

/// A 3-node Kafka KRaft cluster (every node broker and controller), for failover tests.
pub struct Cluster {
    nodes: Vec<Node>,
    _tmp: tempfile::TempDir,
}

impl Cluster {
    pub fn start(n: usize) -> Cluster {
        assert!(
            !use_tansu(),
            "a Kafka cluster needs RELAY_TEST_BROKER unset"
        );
        let tmp = tempfile::tempdir().unwrap();
        let cports: Vec<u16> = (0..n).map(|_| free_port()).collect();
        let voters = cports
            .iter()
            .enumerate()
            .map(|(i, c)| format!("{}@127.0.0.1:{c}", i + 1))
            .collect::<Vec<_>>()
            .join(",");
        // Kafka's cluster id: 16 random bytes, URL-safe base64 without padding.
        let cluster_id = {
            use base64::Engine;
            let bytes: [u8; 16] = rand::random();
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
        };
        let mut nodes: Vec<Node> = cports
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let args = [
                    "--node-id",
                    &(i + 1).to_string(),
                    "--controller-port",
                    &c.to_string(),
                    "--voters",
                    &voters,
                    "--cluster-id",
                    &cluster_id,
                ]
                .map(String::from)
                .to_vec();
                Node::new(tmp.path().join(format!("node{}", i + 1)), free_port(), args)
            })
            .collect();
        // All at once: a node's controller waits for a quorum of the others.
        for node in &mut nodes {
            node.spawn(false, false);
        }
        for node in &mut nodes {
            node.wait_listening();
        }
        Cluster { nodes, _tmp: tmp }
    }

    /// Every node's address, comma-separated (`bootstrap.servers`).
    pub fn bootstrap(&self) -> String {
        self.nodes
            .iter()
            .map(Node::addr)
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The node whose client port is `port` (as metadata names brokers by address).
    pub fn node_of_port(&self, port: u16) -> Option<usize> {
        self.nodes.iter().position(|n| n.port == port)
    }

    /// The node id (1-based) as Kafka metadata names it, for node index `i`.
    pub fn node_id(&self, i: usize) -> i32 {
        i as i32 + 1
    }

    /// SIGKILLs node `i` (0-based).
    pub fn kill(&mut self, i: usize) {
        self.nodes[i].kill();
    }

    /// Starts node `i` again with its data; returns once it accepts connections.
    pub fn restart(&mut self, i: usize) {
        self.nodes[i].spawn(false, true);
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for node in &mut self.nodes {
            node.kill();
        }
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
    relay_vars_at(&broker.addr(), prefix, extra)
}

/// [`relay_vars`] by bootstrap address (a cluster's list).
pub fn relay_vars_at(
    brokers: &str,
    prefix: &str,
    extra: &[(&str, &str)],
) -> HashMap<String, String> {
    let mut vars: HashMap<String, String> = [
        ("RELAY_KAFKA_BROKERS", brokers.to_string()),
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
    genesys_relay::kafka::assign_from_beginning(&consumer, topic, Duration::from_secs(10)).unwrap();
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
    pub genesys: genesys_sim::SimServer,
    pub cms: genesys_sim::SimServer,
    pub http: reqwest::Client,
}

impl Sims {
    pub async fn start() -> Sims {
        let any: SocketAddr = "127.0.0.1:0".parse().unwrap();
        Sims {
            genesys: genesys_sim::start_genesys(any, Default::default())
                .await
                .unwrap(),
            cms: genesys_sim::start_cms(any).await.unwrap(),
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

    /// Answers of the Genesys simulator to `route` (e.g.
    /// `GET /api/v2/conversations/{conversationId}`) with `status`.
    pub async fn genesys_requests(&self, route: &str, status: u16) -> u64 {
        self.genesys_stats().await["requests"][route][status.to_string()]
            .as_u64()
            .unwrap_or(0)
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
        // The stats hold a few maps per key: for a large run, polling them every 200 ms
        // would cost the relays under test (same process) a good part of a core.
        let every = Duration::from_millis((n as u64 / 10).max(200));
        let deadline = Instant::now() + timeout;
        loop {
            if syncs_by_key(&self.cms_stats().await).len() == n {
                return true;
            }
            if Instant::now() > deadline {
                return false;
            }
            tokio::time::sleep(every).await;
        }
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

    /// Sets the customer attributes of conversation `id` (string values, as in Genesys).
    pub async fn set_attributes(&self, id: &str, attributes: serde_json::Value) {
        let r = self
            .http
            .put(format!(
                "{}/__sim/conversations/{id}/attributes",
                self.genesys.base_url()
            ))
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

/// A per-key count map of the CMS simulator's stats (`writes_by_key`, `redundant_by_key`...).
pub fn per_key(stats: &serde_json::Value, field: &str) -> std::collections::BTreeMap<String, u64> {
    stats[field]
        .as_object()
        .map(|m| {
            m.iter()
                .map(|(k, v)| (k.clone(), v.as_u64().unwrap_or(0)))
                .collect()
        })
        .unwrap_or_default()
}

/// Redundant sends: per idempotency key, the writes the CMS / forward backend received
/// after an earlier write of that key had been answered 2xx to the relay (a retry after
/// a failed answer is not one). What the relay *sent*, not what the sink stored: the
/// sink answers a known key from its stored reply, so `syncs_by_key` cannot show these.
pub fn redundant_sends(stats: &serde_json::Value) -> std::collections::BTreeMap<String, u64> {
    assert!(
        stats.get("redundant_by_key").is_some(),
        "the CMS simulator reports no redundant_by_key"
    );
    per_key(stats, "redundant_by_key")
}

/// Asserts the relay sent no write of a key after that key's write was answered 2xx.
pub fn assert_nothing_sent_twice(stats: &serde_json::Value) {
    let redundant = redundant_sends(stats);
    let detail: Vec<String> = redundant
        .keys()
        .take(10)
        .map(|k| {
            format!(
                "{k}: {} writes, answered {}",
                stats["writes_by_key"][k], stats["answers_by_key"][k]
            )
        })
        .collect();
    assert!(
        redundant.is_empty(),
        "{} keys sent again after a 2xx ({} redundant sends): {detail:?}",
        redundant.len(),
        redundant.values().sum::<u64>()
    );
}

/// Waits until `relay` counted a `guest_sync` redelivery of CMS key `key` as a duplicate,
/// or the CMS got a second write of it (a failing run ends early), then lets a send that
/// raced the metric arrive; whether the redelivery was recognised.
pub async fn redelivery_recognised(
    relay: &genesys_relay::app::RunningRelay,
    sims: &Sims,
    key: &str,
) -> bool {
    let duplicate = "relay_events_processed_total{outcome=\"duplicate\",route=\"guest_sync\"}";
    let recognised = wait_until(Duration::from_secs(30), || async {
        metric_value(&relay.metrics.render(), duplicate) >= 1.0
            || per_key(&sims.cms_stats().await, "writes_by_key")
                .get(key)
                .is_some_and(|n| *n > 1)
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    recognised
}

/// A producer to `broker` with the client's defaults, for writing records by hand.
pub fn test_producer(broker: &Broker) -> rdkafka::producer::FutureProducer {
    ClientConfig::new()
        .set("bootstrap.servers", broker.addr())
        .create()
        .unwrap()
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
