//! The fault suite: a run of N guest-sync events while everything that can go wrong does,
//! then exact accounting of every event the ingress answered 202, against the rules of
//! docs/processing.md.
//!
//! Faults during the run:
//! - the CMS answers 503 to 30% of writes before applying them (`error_rate`), and for
//!   10% of the writes it applies it then fails the answer (`apply_then_fail_rate`: a
//!   503, a TCP reset, or no answer before the relay's `RELAY_HTTP_TIMEOUT`);
//! - for three seconds the CMS answers only after 4 s, above the relay's 3 s timeout;
//! - Genesys answers bursts of 429 with `Retry-After` (`rate_limit_next`, every 4 s), its
//!   tokens expire after 6 s (`token_ttl_s`) and every live token is revoked every 5 s
//!   (`POST /__sim/tokens/revoke`: the next request with one is answered 401);
//! - the broker (a dedicated Kafka node) is stopped gracefully and restarted, then later
//!   SIGKILLed and restarted; the ingress answers 503 meanwhile and the load generator
//!   redelivers until it gets 202, as Genesys Cloud does;
//! - in the run with kills, worker processes (`genesys-relay worker`, two at a time) are
//!   SIGKILLed three times and replaced (two kills after a broker restart, so the group
//!   rebalances on a restarted broker).
//!
//! Asserted in every run:
//! - every event answered 202 is in the raw topic, and accepted = synced + skipped +
//!   dead-lettered, none lost;
//! - skipped events are exactly the ones whose guest Genesys does not know (`gone-*`),
//!   never synced, and the Genesys simulator answered 404 for each skipped event's own
//!   conversation id (it lists the ids it answered 404 for);
//! - no event is both synced and dead-lettered, unless every write of its key after the
//!   applied one got an injected failure (the CMS logs each answer per key); any other
//!   such event counts toward the bound of the ownership loss (a kill, or a session a
//!   broker outage cost a worker) before its first 2xx, like a redundant send, and fails
//!   the run when no loss came before it (docs/processing.md: the dead letter and its
//!   mark are two writes, and a new owner's tail may not have read the mark yet);
//! - dead letters only of the class the injected faults can cause (`exhausted`: all of
//!   them are retryable, a second Genesys 401 after a revocation too);
//! - redundant sends (writes of a key the CMS had already answered 2xx; a retry after a
//!   failed answer is not one): none before the first ownership loss (a worker SIGKILL,
//!   or a group session a worker lost during a broker outage, read from its log); after
//!   that, counted per loss (each attributed to the last loss before it) and at most
//!   in-flight(raw) + in-flight(retry) + the marks written during the idempotency-tail
//!   lag measured just before that loss (docs/processing.md, "What remains");
//! - the consumer groups committed to the end of the raw and retry topics.
//!
//! Size: `FAULT_SUITE_EVENTS` (default 300); Genesys budget per worker:
//! `FAULT_SUITE_GENESYS_RATE_LIMIT` (default: the relay's own default, not set). How long
//! the groups may take to settle follows from both ([`settle_deadline`]). The large run is
//! `FAULT_SUITE_EVENTS=100000 FAULT_SUITE_GENESYS_RATE_LIMIT=1000000 cargo test --release
//! --test it fault_suite::with_worker_kills -- --nocapture --test-threads=1`.

use crate::common::*;
use genesys_relay::app::{self, Role};
use genesys_relay::clock::now_ms;
use genesys_relay::kafka::{headers, read_topic_to_end};
use genesys_relay::schema::{Codec, RawEvent};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Headers;
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};
use serde_json::json;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const RETRY_DELAYS: &str = "200ms,500ms,1s,2s,4s";
const RETRY_TIERS: usize = 5;
/// Every this many events the guest is `gone-*` (Genesys 404): a skip, not a failure.
const GONE_EVERY: usize = 10;

fn event_count() -> usize {
    std::env::var("FAULT_SUITE_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(300)
}

/// How long the consumer groups may take to reach the end of the raw and retry topics
/// after the load: a fixed margin for the faults (a broker restart, retry delays up to
/// 4 s, a rebalance), plus what the Genesys budget implies, plus a CPU allowance per event
/// for a debug build. The budget is per worker and each event costs one conversation GET
/// (half again for the GETs repeated after a kill or an expired cache entry); the worker
/// that owns two of the three partitions sets the pace, so it is 2/3 of the events at one
/// worker's budget, not half of them.
fn settle_deadline(events: usize, budget_per_minute: u64) -> Duration {
    let events = events as f64;
    let busiest_share = 2.0 / 3.0;
    let budget_bound = events * busiest_share * 1.5 * 60.0 / budget_per_minute as f64;
    Duration::from_secs_f64(120.0 + budget_bound + events * 0.015)
}

/// `expires_in` of the simulator's tokens during the run.
const TOKEN_TTL_S: u64 = 6;
/// Every this many seconds the simulator revokes every live token.
const REVOKE_EVERY_S: u64 = 5;
/// `RELAY_MAX_IN_FLIGHT` of the suite's workers: the bound of each of a worker's two
/// consumer loops (raw and retry).
const MAX_IN_FLIGHT: u64 = 32;
/// `RELAY_HTTP_TIMEOUT` of the suite's workers; the slow-CMS window and `no_answer`
/// failures stay longer than this.
const HTTP_TIMEOUT_MS: u64 = 3_000;
/// A chaos step waits at least this long after the previous one finished: a worker
/// restarted just before the broker goes down cannot start (it reads topic metadata and
/// the idempotency topic first) and exits, which a supervisor would restart but this
/// suite counts as a crash. Broker restarts take 5-25 s here, so the plan's times slip.
const MIN_STEP_GAP: Duration = Duration::from_secs(8);
/// How long the CMS answers later than the relay's timeout.
const SLOW_CMS_WINDOW: Duration = Duration::from_secs(3);
/// How far before an ownership loss the idempotency-tail lag is looked at.
const LAG_LOOKBACK_MS: i64 = 10_000;
/// One step of the chaos schedule.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Chaos {
    KillWorker(usize),
    BrokerStop,
    BrokerKill,
    BrokerUp,
    CmsSlow,
    CmsFast,
}

/// (second of the run, step). Worker kills only when `kills`.
fn schedule(kills: bool) -> Vec<(u64, Chaos)> {
    [
        (6, Chaos::KillWorker(0)),
        (10, Chaos::BrokerStop),
        (14, Chaos::BrokerUp),
        (18, Chaos::CmsSlow),
        (21, Chaos::CmsFast),
        (22, Chaos::KillWorker(1)),
        (26, Chaos::BrokerKill),
        (29, Chaos::BrokerUp),
        (34, Chaos::KillWorker(0)),
    ]
    .into_iter()
    .filter(|(_, step)| kills || !matches!(step, Chaos::KillWorker(_)))
    .collect()
}

/// Tails the idempotency topic from the test process like a worker's tail does, and
/// records (mark timestamp, how late it was read) in Unix ms: the idempotency-tail lag a
/// surviving worker had, measured from outside (the relay exports no such metric).
fn tail_lag_monitor(
    addr: String,
    topic: String,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<Vec<(i64, i64)>> {
    std::thread::spawn(move || {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", &addr)
            .set("group.id", unique_prefix("tail-lag"))
            .set("enable.auto.commit", "false")
            .create()
            .unwrap();
        while genesys_relay::kafka::assign_from_beginning(&consumer, &topic, Duration::from_secs(5))
            .is_err()
        {
            if stop.load(Ordering::Relaxed) {
                return Vec::new();
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        let mut marks = Vec::new();
        while !stop.load(Ordering::Relaxed) {
            if let Some(Ok(m)) = consumer.poll(Duration::from_millis(100)) {
                if let Some(ts) = m.timestamp().to_millis() {
                    marks.push((ts, now_ms() - ts));
                }
            }
        }
        marks
    })
}

/// A worker losing its partitions without handing them over cleanly: a SIGKILL, or its
/// group session expiring (a broker outage longer than the session timeout), read from
/// librdkafka's `SESSTMOUT` / `MAXPOLL` warnings in the worker logs. Either way, records
/// it had synced but not yet marked may be sent again by the next owner.
struct OwnershipLoss {
    what: String,
    at_ms: i64,
    /// Largest idempotency-tail lag of marks written in the `LAG_LOOKBACK_MS` before it.
    tail_lag_ms: i64,
    /// Marks (of any worker) written during that lag before the kill.
    marks_in_lag: u64,
    bound: u64,
    redundant: u64,
    /// Events synced after they were dead-lettered (beyond the injected-failure allowance),
    /// first answered 2xx after this loss.
    synced_after_dead_letter: Vec<String>,
}

/// Unix ms of `2026-12-02T06:49:58.586962Z` (the tracing timestamp of a log line).
fn parse_utc_ms(ts: &str) -> Option<i64> {
    let (date, time) = ts.strip_suffix('Z')?.split_once('T')?;
    let mut d = date.split('-').map(|x| x.parse::<i64>());
    let (y, m, day) = (d.next()?.ok()?, d.next()?.ok()?, d.next()?.ok()?);
    let (hms, frac) = time.split_once('.').unwrap_or((time, "0"));
    let mut t = hms.split(':').map(|x| x.parse::<i64>());
    let (hh, mm, ss) = (t.next()?.ok()?, t.next()?.ok()?, t.next()?.ok()?);
    let ms: i64 = format!("{frac:0<3}")[..3].parse().ok()?;
    // Days from the civil date (Howard Hinnant's algorithm).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (m + if m > 2 { -3 } else { 9 }) + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(((days * 86_400 + hh * 3_600 + mm * 60 + ss) * 1_000) + ms)
}

/// Group sessions the workers lost, from their logs: (Unix ms, log file). One per worker
/// process and second (its raw and retry consumers report it together).
fn session_losses(dir: &std::path::Path) -> Vec<(i64, String)> {
    let mut out = Vec::new();
    let mut paths: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    paths.sort();
    for p in paths {
        let text = std::fs::read_to_string(&p).unwrap_or_default();
        let mut last: Option<i64> = None;
        for line in text.lines() {
            if !(line.contains("SESSTMOUT") || line.contains("MAXPOLL")) {
                continue;
            }
            // Strip ANSI colour codes; the first word is the timestamp.
            let mut plain = String::new();
            let mut in_escape = false;
            for c in line.chars() {
                match (in_escape, c) {
                    (false, '\u{1b}') => in_escape = true,
                    (true, 'm') => in_escape = false,
                    (true, _) => {}
                    (false, c) => plain.push(c),
                }
            }
            let Some(at) = plain.split_whitespace().next().and_then(parse_utc_ms) else {
                continue;
            };
            if last.is_some_and(|l| at - l < 1_000) {
                continue;
            }
            last = Some(at);
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            out.push((at, name));
        }
    }
    out
}

/// Every injected fault is retryable, so an event they defeat is dead-lettered
/// `exhausted`. That includes a Genesys 401 on the try after a token refresh, which a
/// revocation landing between the refresh and the retry causes with valid credentials.
fn injected_faults_can_cause(letter: &DeadLetter) -> bool {
    letter.class == "exhausted"
}

/// Whether a CMS answer (`answers_by_key`) left the relay without a 2xx.
fn failed_answer(answer: &str) -> bool {
    answer.starts_with("injected:") || answer.contains("_then:")
}

/// Whether a CMS answer stored the write.
fn applied(answer: &str) -> bool {
    answer == "applied" || answer.starts_with("applied_then:")
}

fn guest_of(i: usize) -> String {
    if i % GONE_EVERY == 7 {
        format!("gone-{i}")
    } else {
        format!("g-{i}")
    }
}

fn event(i: usize) -> serde_json::Value {
    let ts = format!(
        "2026-11-24T{:02}:{:02}:{:02}.000Z",
        (i / 3600) % 24,
        (i / 60) % 60,
        i % 60
    );
    envelope(
        "conversation:updated",
        &format!("fs-{i}"),
        &ts,
        json!({"conversationId": guest_of(i), "guestId": guest_of(i)}),
    )
}

/// Worker child processes; each writes its stderr to a file in `dir`.
struct Workers {
    vars: HashMap<String, String>,
    /// `FAULT_SUITE_LOG_DIR` keeps the worker logs; else a temporary directory.
    dir: std::path::PathBuf,
    _tmp: Option<tempfile::TempDir>,
    slots: Vec<Option<Child>>,
    started: usize,
    /// Unix ms of every SIGKILL.
    kills_at: Vec<i64>,
}

impl Workers {
    fn spawn(&mut self, slot: usize) {
        self.started += 1;
        let log =
            std::fs::File::create(self.dir.join(format!("worker-{slot}-{}.log", self.started)))
                .unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_genesys-relay"))
            .arg("worker")
            .env_clear()
            .envs(&self.vars)
            .env(
                "RELAY_LOG",
                std::env::var("FAULT_SUITE_WORKER_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn worker");
        self.slots[slot] = Some(child);
    }

    /// SIGKILL: no drain, no final commit, no producer flush.
    fn kill(&mut self, slot: usize) {
        if let Some(mut c) = self.slots[slot].take() {
            c.kill().unwrap();
            self.kills_at.push(now_ms());
            c.wait().unwrap();
        }
    }

    /// Workers that exited on their own (a crash or a start-up failure): (slot, status).
    fn exited(&mut self) -> Vec<(usize, std::process::ExitStatus)> {
        self.slots
            .iter_mut()
            .enumerate()
            .filter_map(|(i, c)| {
                c.as_mut()
                    .and_then(|c| c.try_wait().unwrap().map(|s| (i, s)))
            })
            .collect()
    }

    fn logs(&self) -> String {
        let mut out = String::new();
        let mut paths: Vec<_> = std::fs::read_dir(&self.dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        paths.sort();
        for p in paths {
            let text = std::fs::read_to_string(&p).unwrap_or_default();
            let tail: Vec<&str> = text.lines().rev().take(15).collect();
            out.push_str(&format!("--- {}\n", p.display()));
            for l in tail.into_iter().rev() {
                out.push_str(l);
                out.push('\n');
            }
        }
        out
    }
}

impl Drop for Workers {
    fn drop(&mut self) {
        for slot in 0..self.slots.len() {
            if let Some(mut c) = self.slots[slot].take() {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
    }
}

/// High watermark minus committed offset, summed over `topics`, for `group` (0: all done).
fn group_lag(addr: &str, group: &str, topics: &[String]) -> Option<i64> {
    group_lag_by_partition(addr, group, topics).map(|v| v.iter().map(|(_, _, lag)| lag).sum())
}

/// (topic, partition, lag) for every partition of `topics`.
fn group_lag_by_partition(
    addr: &str,
    group: &str,
    topics: &[String],
) -> Option<Vec<(String, i32, i64)>> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", addr)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .create()
        .ok()?;
    let timeout = Duration::from_secs(5);
    let mut tpl = TopicPartitionList::new();
    let mut highs = HashMap::new();
    for topic in topics {
        let md = consumer.fetch_metadata(Some(topic), timeout).ok()?;
        for p in md
            .topics()
            .iter()
            .filter(|t| t.name() == topic)
            .flat_map(|t| t.partitions())
        {
            let (_, high) = consumer.fetch_watermarks(topic, p.id(), timeout).ok()?;
            highs.insert((topic.clone(), p.id()), high);
            tpl.add_partition(topic, p.id());
        }
    }
    let committed = consumer.committed_offsets(tpl, timeout).ok()?;
    let mut lags = Vec::new();
    for e in committed.elements() {
        let high = highs[&(e.topic().to_string(), e.partition())];
        let at = match e.offset() {
            Offset::Offset(o) => o,
            _ => 0,
        };
        lags.push((e.topic().to_string(), e.partition(), (high - at).max(0)));
    }
    Some(lags)
}

/// The members of `group` as the broker sees them (for diagnosis).
fn group_members(addr: &str, group: &str) -> String {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", addr)
        .create()
        .unwrap();
    match consumer.fetch_group_list(Some(group), Duration::from_secs(5)) {
        Ok(list) => list
            .groups()
            .iter()
            .map(|g| {
                format!(
                    "state {} with {} members: {:?}",
                    g.state(),
                    g.members().len(),
                    g.members()
                        .iter()
                        .map(|m| m.id().to_string())
                        .collect::<Vec<_>>()
                )
            })
            .collect::<Vec<_>>()
            .join("; "),
        Err(e) => format!("cannot list: {e}"),
    }
}

/// Event ids (by `relay-event-id`) and error classes of the dead-letter topic.
/// One dead letter's headers, as the suite checks them.
struct DeadLetter {
    class: String,
    attempt: String,
    error: String,
}

fn dead_letters(cfg: &genesys_relay::app::Config, topic: &str) -> HashMap<String, DeadLetter> {
    let mut out = HashMap::new();
    let _ = read_topic_to_end(cfg, topic, |m| {
        let header = |name: &str| {
            m.headers().and_then(|h| {
                h.iter()
                    .find(|x| x.key == name)
                    .and_then(|x| x.value)
                    .map(|v| String::from_utf8_lossy(v).into_owned())
            })
        };
        if let Some(id) = header(headers::EVENT_ID) {
            let letter = DeadLetter {
                class: header(headers::ERROR_CLASS).unwrap_or_default(),
                attempt: header(headers::ATTEMPT).unwrap_or_default(),
                error: header(headers::ERROR).unwrap_or_default(),
            };
            out.insert(id, letter);
        }
    });
    out
}

/// In CI: every fault but worker kills; the relay must send nothing twice, except after a
/// group session that a broker outage cost a worker (the tests' 6 s session is shorter
/// than a broker restart here), and then within that loss's bound. A 120 s session
/// avoided the losses, but in two of three such runs nothing reached the restarted broker
/// afterwards (cause not established), so this run keeps the tests' settings.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_worker_kills_events_are_accounted_for_and_nothing_is_sent_twice() {
    run(false).await;
}

/// Every fault, worker SIGKILLs included; redundant sends, and events synced by a
/// redelivery after they were dead-lettered, stay within each kill's bound.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_worker_kills_events_are_accounted_for_and_resends_stay_within_each_kill() {
    run(true).await;
}

async fn run(kills: bool) {
    let started = Instant::now();
    let n = event_count();
    let broker = Arc::new(Mutex::new(Broker::dedicated()));
    let addr = broker.lock().unwrap().addr();
    let sims = Sims::start().await;
    let prefix = unique_prefix("faults");
    // The Genesys budget per worker: the shipped default unless
    // FAULT_SUITE_GENESYS_RATE_LIMIT raises it (every event costs one conversation GET, so
    // 100,000 events at the default would take about 3.5 h with two workers).
    let budget_override = std::env::var("FAULT_SUITE_GENESYS_RATE_LIMIT").ok();
    let budget: u64 = budget_override
        .as_deref()
        .or(genesys_relay::config::default_value(
            "RELAY_GENESYS_RATE_LIMIT",
        ))
        .and_then(|v| v.parse().ok())
        .expect("a Genesys budget in requests per minute");
    eprintln!("fault suite: {n} events, Genesys budget {budget} per minute per worker");
    let mut extra = vec![
        ("RELAY_RETRY_DELAYS", RETRY_DELAYS),
        ("RELAY_PRODUCE_TIMEOUT", "2s"),
        ("RELAY_HTTP_TIMEOUT", "3s"),
        ("RELAY_MAX_IN_FLIGHT", "32"),
        ("RELAY_SHUTDOWN_TIMEOUT", "5s"),
    ];
    if let Some(b) = &budget_override {
        extra.push(("RELAY_GENESYS_RATE_LIMIT", b.as_str()));
    }
    let cfg = {
        let b = broker.lock().unwrap();
        stack_config(&b, &sims, &prefix, &extra)
    };
    let ingress = app::start(cfg.clone(), Role::Ingress).await.unwrap();
    let target = format!("http://{}/webhooks/genesys", ingress.ingress_addr.unwrap());

    sims.cms_faults(json!({
        "error_rate": 0.3,
        "error_status": 503,
        "apply_then_fail_rate": 0.1,
        "apply_then_fail_hang_ms": 3 * HTTP_TIMEOUT_MS,
    }))
    .await;
    let tail_stop = Arc::new(AtomicBool::new(false));
    let tail = tail_lag_monitor(
        addr.clone(),
        format!("{prefix}.relay.idempotency"),
        tail_stop.clone(),
    );
    // Genesys issues tokens for 5 minutes to 48 hours (the SDK's
    // `OAuthClient.accessTokenValiditySeconds`); 6 s is this run's accelerated clock,
    // above the relay's 5 s floor for `expires_in`, so the relay's own view of a token's
    // life is right and it refreshes ahead of expiry. Early 401s come from revocations.
    sims.genesys_faults(json!({"token_ttl_s": TOKEN_TTL_S, "retry_after_s": 1}))
        .await;

    let mut vars = {
        let b = broker.lock().unwrap();
        relay_vars(&b, &prefix, &extra)
    };
    vars.extend(sims.vars());
    let (log_dir, tmp) = match std::env::var("FAULT_SUITE_LOG_DIR") {
        Ok(d) => {
            std::fs::create_dir_all(&d).unwrap();
            (std::path::PathBuf::from(d), None)
        }
        Err(_) => {
            let t = tempfile::tempdir().unwrap();
            (t.path().to_path_buf(), Some(t))
        }
    };
    let workers = Arc::new(Mutex::new(Workers {
        vars,
        dir: log_dir.clone(),
        _tmp: tmp,
        slots: vec![None, None],
        started: 0,
        kills_at: Vec::new(),
    }));
    {
        let mut w = workers.lock().unwrap();
        w.spawn(0);
        w.spawn(1);
    }

    // The load generator: up to 16 deliveries at a time, each redelivered on 503 (and on a
    // broken connection) until it is answered 202. Paced so the run spans the faults.
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(15))
        .build()
        .unwrap();
    let pace = Duration::from_secs(40) / n as u32;
    // A broker that never comes back must fail the run in minutes, not after every
    // event's own deadline (seen once: after a SIGKILL restart nothing reached the broker
    // for 8 minutes although it listened).
    let load_deadline = Instant::now() + Duration::from_secs(40 + 300);
    let answered_503 = Arc::new(AtomicU64::new(0));
    let send_errors = Arc::new(AtomicU64::new(0));
    let load = {
        let (answered_503, send_errors) = (answered_503.clone(), send_errors.clone());
        tokio::spawn(async move {
            let permits = Arc::new(tokio::sync::Semaphore::new(16));
            let mut tasks = Vec::with_capacity(n);
            let mut tick = tokio::time::interval(pace.max(Duration::from_micros(10)));
            for i in 0..n {
                tick.tick().await;
                let permit = permits.clone().acquire_owned().await.unwrap();
                let (http, target) = (http.clone(), target.clone());
                let (answered_503, send_errors) = (answered_503.clone(), send_errors.clone());
                tasks.push(tokio::spawn(async move {
                    let _permit = permit;
                    let body = event(i);
                    let deadline = (Instant::now() + Duration::from_secs(120)).min(load_deadline);
                    while Instant::now() < deadline {
                        match http.post(&target).json(&body).send().await {
                            Ok(r) if r.status() == 202 => return Ok(i),
                            Ok(r) if r.status() == 503 => {
                                answered_503.fetch_add(1, Ordering::Relaxed);
                                let wait = r
                                    .headers()
                                    .get("retry-after")
                                    .and_then(|v| v.to_str().ok())
                                    .and_then(|v| v.parse().ok())
                                    .unwrap_or(1);
                                tokio::time::sleep(Duration::from_secs(wait)).await;
                            }
                            Ok(r) => {
                                let status = r.status();
                                return Err(format!(
                                    "event {i}: {status} {}",
                                    r.text().await.unwrap_or_default()
                                ));
                            }
                            Err(_) => {
                                send_errors.fetch_add(1, Ordering::Relaxed);
                                tokio::time::sleep(Duration::from_millis(200)).await;
                            }
                        }
                    }
                    Err(format!("event {i}: never answered 202"))
                }));
            }
            futures::future::join_all(tasks).await
        })
    };

    // The chaos schedule, on the wall clock of the run.
    let load_done = Arc::new(AtomicBool::new(false));
    let chaos_log = Arc::new(Mutex::new(Vec::<String>::new()));
    let chaos = {
        let (workers, broker, load_done, chaos_log) = (
            workers.clone(),
            broker.clone(),
            load_done.clone(),
            chaos_log.clone(),
        );
        let sims_genesys = sims.genesys.base_url();
        let sims_cms = sims.cms.base_url();
        tokio::spawn(async move {
            let t0 = Instant::now();
            let note = |s: String| {
                eprintln!("[{:>5.1}s] {s}", t0.elapsed().as_secs_f64());
                chaos_log.lock().unwrap().push(s);
            };
            let http = reqwest::Client::new();
            let plan = schedule(kills);
            let mut next = 0;
            let mut last_burst = 0;
            let mut last_revoke = 0;
            let mut last_step_done: Option<Instant> = None;
            while !(next == plan.len() && load_done.load(Ordering::Relaxed)) {
                let now = t0.elapsed().as_secs();
                if now >= last_burst + 4 {
                    last_burst = now;
                    let _ = http
                        .post(format!("{sims_genesys}/__sim/faults"))
                        .json(&json!({"rate_limit_next": 3, "retry_after_s": 1}))
                        .send()
                        .await;
                    note("genesys: next 3 requests answer 429 Retry-After: 1".into());
                }
                if now >= last_revoke + REVOKE_EVERY_S {
                    last_revoke = now;
                    let _ = http
                        .post(format!("{sims_genesys}/__sim/tokens/revoke"))
                        .send()
                        .await;
                    note("genesys: every live token revoked".into());
                }
                // The slow-CMS window lasts its own length; every other step waits the gap.
                let gap = match plan.get(next) {
                    Some((_, Chaos::CmsFast)) => SLOW_CMS_WINDOW,
                    _ => MIN_STEP_GAP,
                };
                let gap_over = last_step_done.is_none_or(|done| done.elapsed() >= gap);
                let due = next < plan.len() && now >= plan[next].0 && gap_over;
                if due {
                    let step = plan[next].1;
                    next += 1;
                    let broker_op = |op: fn(&mut Broker)| {
                        let b = broker.clone();
                        tokio::task::spawn_blocking(move || op(&mut b.lock().unwrap()))
                    };
                    let cms_latency = |ms: u64| {
                        http.post(format!("{sims_cms}/__sim/faults"))
                            .json(&json!({ "latency_ms": ms }))
                            .send()
                    };
                    match step {
                        Chaos::KillWorker(slot) => {
                            workers.lock().unwrap().kill(slot);
                            note(format!("SIGKILL worker {slot}"));
                            tokio::time::sleep(Duration::from_secs(1)).await;
                            workers.lock().unwrap().spawn(slot);
                            note(format!("worker {slot} restarted"));
                        }
                        Chaos::BrokerStop => {
                            broker_op(Broker::stop).await.unwrap();
                            note("broker stopped (SIGTERM)".into());
                        }
                        Chaos::BrokerKill => {
                            broker_op(Broker::kill).await.unwrap();
                            note("broker SIGKILLed".into());
                        }
                        Chaos::BrokerUp => {
                            broker_op(Broker::restart).await.unwrap();
                            note("broker restarted".into());
                        }
                        Chaos::CmsSlow => {
                            cms_latency(HTTP_TIMEOUT_MS + 1_000).await.unwrap();
                            note("cms: every answer 4 s late (relay timeout 3 s)".into());
                        }
                        Chaos::CmsFast => {
                            cms_latency(0).await.unwrap();
                            note("cms: no added latency".into());
                        }
                    }
                    last_step_done = Some(Instant::now());
                }
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        })
    };

    let results: Vec<Result<usize, String>> = load
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.unwrap())
        .collect();
    load_done.store(true, Ordering::Relaxed);
    chaos.await.unwrap();
    let load_took = started.elapsed();
    let failures: Vec<String> = results
        .iter()
        .filter_map(|r| r.as_ref().err().cloned())
        .collect();
    assert!(
        failures.is_empty(),
        "deliveries failed: {:?}",
        &failures[..failures.len().min(10)]
    );
    let accepted: HashSet<String> = results
        .iter()
        .filter_map(|r| r.as_ref().ok())
        .map(|i| format!("fs-{i}"))
        .collect();
    eprintln!(
        "load done after {load_took:?}: {} accepted, {} answers were 503, {} send errors",
        accepted.len(),
        answered_503.load(Ordering::Relaxed),
        send_errors.load(Ordering::Relaxed)
    );

    // Settle: the consumer groups have committed to the end of the raw and retry topics.
    let raw_topic = format!("{prefix}.events.raw");
    let retry_topics: Vec<String> = (1..=RETRY_TIERS)
        .map(|t| format!("{prefix}.events.retry.{t}"))
        .collect();
    let group = format!("{prefix}-group");
    let retry_group = format!("{group}-retry");
    let settle_limit = settle_deadline(n, budget);
    eprintln!("settle deadline {settle_limit:?}");
    let settled = wait_until(settle_limit, || {
        let (addr, raw_topic, retry_topics) =
            (addr.clone(), raw_topic.clone(), retry_topics.clone());
        let (group, retry_group) = (group.clone(), retry_group.clone());
        async move {
            tokio::task::spawn_blocking(move || {
                let raw = group_lag(&addr, &group, std::slice::from_ref(&raw_topic));
                let retry = group_lag(&addr, &retry_group, &retry_topics);
                matches!((raw, retry), (Some(0), Some(0)))
            })
            .await
            .unwrap()
        }
    })
    .await;
    if !settled {
        let (a, raw_topic, retry_topics) = (addr.clone(), raw_topic.clone(), retry_topics.clone());
        let (g1, g2) = (group.clone(), retry_group.clone());
        let lags = tokio::task::spawn_blocking(move || {
            let (addr, group, retry_group) = (a, g1, g2);
            let mut all = group_lag_by_partition(&addr, &group, &[raw_topic]).unwrap_or_default();
            all.extend(
                group_lag_by_partition(&addr, &retry_group, &retry_topics).unwrap_or_default(),
            );
            all
        })
        .await
        .unwrap();
        eprintln!("NOT SETTLED; lag by partition: {lags:?}");
        for g in [&group, &retry_group] {
            let (addr, g2) = (addr.clone(), g.clone());
            let members = tokio::task::spawn_blocking(move || group_members(&addr, &g2))
                .await
                .unwrap();
            eprintln!("group {g}: {members}");
        }
    }
    let crashed = workers.lock().unwrap().exited();
    let settle_took = started.elapsed() - load_took;
    tail_stop.store(true, Ordering::Relaxed);
    let marks = tokio::task::spawn_blocking(move || tail.join().unwrap())
        .await
        .unwrap();

    // Accounting.
    let cms = sims.cms_stats().await;
    let syncs = syncs_by_key(&cms);
    let (dlq, raw_ids) = {
        let cfg = cfg.clone();
        let (dlq_topic, raw_topic) = (format!("{prefix}.events.dlq"), raw_topic.clone());
        tokio::task::spawn_blocking(move || {
            let dlq = dead_letters(&cfg, &dlq_topic);
            let codec = Codec::single_object();
            let mut raw = HashMap::<String, usize>::new();
            read_topic_to_end(&cfg, &raw_topic, |m| {
                if let Some(Ok(e)) = m.payload().map(|p| codec.decode::<RawEvent>(p)) {
                    *raw.entry(e.event_id).or_default() += 1;
                }
            })
            .unwrap();
            (dlq, raw)
        })
        .await
        .unwrap()
    };
    let answers_of = |key: &str| -> Vec<String> {
        cms["answers_by_key"][key]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|x| x.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    };
    let mut synced = 0;
    let mut skipped = Vec::new();
    let mut dead = 0;
    let mut synced_and_dead_ids = Vec::new();
    let mut synced_and_dead_unexplained = Vec::new();
    // (first 2xx at, key) of the unexplained ones, attributed to an ownership loss below.
    let mut synced_after_dead_letter: Vec<(i64, String)> = Vec::new();
    let first_ok_at = |key: &str| cms["first_ok_at_by_key"][key].as_i64();
    let mut lost = Vec::new();
    let mut missing_from_raw = Vec::new();
    let mut gone_synced = Vec::new();
    for i in 0..n {
        let id = format!("fs-{i}");
        if !accepted.contains(&id) {
            continue;
        }
        if !raw_ids.contains_key(&id) {
            missing_from_raw.push(id.clone());
        }
        let key = format!("guest_sync:{id}");
        let is_synced = syncs.contains_key(&key);
        let is_dead = dlq.contains_key(&id);
        let gone = guest_of(i).starts_with("gone-");
        if gone && is_synced {
            gone_synced.push(id.clone());
        }
        match (is_synced, is_dead) {
            (true, true) => {
                synced += 1;
                // Allowed only when the relay never got a 2xx after the write was stored:
                // every later write of the key got an injected failure.
                let answers = answers_of(&key);
                let first_applied = answers.iter().position(|a| applied(a));
                let explained = first_applied
                    .is_some_and(|at| answers[at + 1..].iter().all(|a| failed_answer(a)));
                if !explained {
                    // A new owner may sync a redelivery before its tail has read the dead
                    // letter's mark: counted toward the ownership loss before the 2xx
                    // (a kill, or a session a broker outage cost a worker), if any.
                    match first_ok_at(&key) {
                        Some(at) => synced_after_dead_letter.push((at, key.clone())),
                        None => synced_and_dead_unexplained.push(format!("{key}: {answers:?}")),
                    }
                }
                synced_and_dead_ids.push(id.clone());
            }
            (true, false) => synced += 1,
            (false, true) => dead += 1,
            (false, false) if gone => skipped.push(id.clone()),
            (false, false) => lost.push(id.clone()),
        }
    }
    let twice: BTreeMap<&String, &u64> = syncs.iter().filter(|(_, v)| **v != 1).collect();
    let writes = per_key(&cms, "writes_by_key");
    let sent: u64 = writes.values().sum();
    let replays: u64 = per_key(&cms, "replays_by_key").values().sum();
    let redundant = redundant_sends(&cms);
    let redundant_total: u64 = redundant.values().sum();
    let mut apply_then_fail: BTreeMap<String, u64> = BTreeMap::new();
    for modes in cms["apply_then_fail_by_key"]
        .as_object()
        .into_iter()
        .flat_map(|m| m.values())
    {
        for mode in modes.as_array().into_iter().flatten() {
            *apply_then_fail
                .entry(mode.as_str().unwrap_or("?").to_string())
                .or_default() += 1;
        }
    }
    let redelivered_raw = raw_ids.values().filter(|c| **c > 1).count();
    let extra_raw = raw_ids.keys().filter(|k| !accepted.contains(*k)).count();
    let mut dlq_classes: BTreeMap<&str, usize> = BTreeMap::new();
    for letter in dlq.values() {
        *dlq_classes.entry(letter.class.as_str()).or_default() += 1;
    }
    let g = sims.genesys_stats().await;
    let genesys_404 = g["requests"]["GET /api/v2/conversations/{conversationId}"]["404"]
        .as_u64()
        .unwrap_or(0);
    let cms_requests = &cms["requests"];
    let (kills_at, started_workers) = {
        let w = workers.lock().unwrap();
        (w.kills_at.clone(), w.started)
    };

    // Redundant sends per ownership loss: each is attributed to the last loss before it
    // arrived.
    let sessions_lost = session_losses(&log_dir);
    let mut losses: Vec<(i64, String)> = kills_at
        .iter()
        .map(|at| (*at, "SIGKILL".to_string()))
        .chain(
            sessions_lost
                .iter()
                .map(|(at, log)| (*at, format!("session lost ({log})"))),
        )
        .collect();
    losses.sort();
    let run_started_ms = now_ms() - started.elapsed().as_millis() as i64;
    let mut budgets: Vec<OwnershipLoss> = losses
        .into_iter()
        .map(|(at_ms, what)| {
            let tail_lag_ms = marks
                .iter()
                .filter(|(ts, _)| *ts <= at_ms && *ts >= at_ms - LAG_LOOKBACK_MS)
                .map(|(_, lag)| *lag)
                .max()
                .unwrap_or(0)
                .max(0);
            let marks_in_lag = marks
                .iter()
                .filter(|(ts, _)| *ts <= at_ms && *ts >= at_ms - tail_lag_ms)
                .count() as u64;
            OwnershipLoss {
                what,
                at_ms,
                tail_lag_ms,
                marks_in_lag,
                bound: 2 * MAX_IN_FLIGHT + marks_in_lag,
                redundant: 0,
                synced_after_dead_letter: Vec::new(),
            }
        })
        .collect();
    let mut redundant_before_any_loss = Vec::new();
    for w in cms["redundant_writes"].as_array().into_iter().flatten() {
        let at = w["at_ms"].as_i64().unwrap_or(0);
        match budgets.iter_mut().rev().find(|b| b.at_ms <= at) {
            Some(b) => b.redundant += 1,
            None => redundant_before_any_loss.push(w["key"].to_string()),
        }
    }
    for (at, key) in &synced_after_dead_letter {
        match budgets.iter_mut().rev().find(|b| b.at_ms <= *at) {
            Some(b) => b.synced_after_dead_letter.push(key.clone()),
            None => synced_and_dead_unexplained.push(format!(
                "{key} (no ownership loss before its 2xx): {:?}",
                answers_of(key)
            )),
        }
    }
    let max_lag = marks.iter().map(|(_, l)| *l).max().unwrap_or(0);

    eprintln!("\n=== fault suite accounting ({n} events, worker kills: {kills}) ===");
    let row = |k: &str, v: String| eprintln!("{k:<50} {v:>12}");
    row("events sent", n.to_string());
    row("answered 202", accepted.len().to_string());
    row(
        "503 answers redelivered",
        answered_503.load(Ordering::Relaxed).to_string(),
    );
    row("in raw topic (distinct ids)", raw_ids.len().to_string());
    row(
        "  ids written more than once (redeliveries)",
        redelivered_raw.to_string(),
    );
    row("  ids in raw never answered 202", extra_raw.to_string());
    row(
        "  202 but missing from raw",
        missing_from_raw.len().to_string(),
    );
    row("synced (guest_sync:<id> stored at CMS)", synced.to_string());
    row("skipped (gone guest)", skipped.len().to_string());
    row(
        "  genesys 404 answers (>= skipped)",
        genesys_404.to_string(),
    );
    row("dead-lettered", dead.to_string());
    row("  dlq classes", format!("{dlq_classes:?}"));
    row(
        "  synced and also dead-lettered",
        synced_and_dead_ids.len().to_string(),
    );
    row(
        "    of which not explained by injected failures",
        (synced_and_dead_unexplained.len() + synced_after_dead_letter.len()).to_string(),
    );
    row(
        "      counted toward an ownership loss's bound",
        synced_after_dead_letter.len().to_string(),
    );
    row("lost", lost.len().to_string());
    row(
        "idempotency keys stored more than once",
        twice.len().to_string(),
    );
    row("gone guests synced", gone_synced.len().to_string());
    row("CMS write requests sent by the relay", sent.to_string());
    row(
        "  applied, then answer failed",
        format!("{apply_then_fail:?}"),
    );
    row(
        "  answered from a stored reply (replays)",
        replays.to_string(),
    );
    row(
        "  redundant (a write of a key answered 2xx)",
        redundant_total.to_string(),
    );
    row(
        "    before any ownership loss (must be 0)",
        redundant_before_any_loss.len().to_string(),
    );
    for b in &budgets {
        eprintln!(
            "    after {} at +{:.1}s: {} redundant + {} synced after their dead letter <= bound {} = 2 x {MAX_IN_FLIGHT} in flight + {} marks written during the {} ms tail lag",
            b.what,
            (b.at_ms - run_started_ms) as f64 / 1000.0,
            b.redundant,
            b.synced_after_dead_letter.len(),
            b.bound,
            b.marks_in_lag,
            b.tail_lag_ms
        );
        for key in &b.synced_after_dead_letter {
            eprintln!(
                "      synced after its dead letter: {key}: {:?}",
                answers_of(key)
            );
        }
    }
    row(
        "idempotency-tail lag, max over the run",
        format!("{max_lag} ms ({} marks)", marks.len()),
    );
    row(
        "workers started / SIGKILLed / sessions lost",
        format!(
            "{started_workers} / {} / {}",
            kills_at.len(),
            sessions_lost.len()
        ),
    );
    row(
        "workers that exited on their own",
        crashed.len().to_string(),
    );
    row("genesys token requests", g["token_requests"].to_string());
    row(
        "genesys tokens revoked while live",
        g["tokens_revoked"].to_string(),
    );
    row(
        "genesys guest 429s",
        g["requests"]["GET /api/v2/conversations/{conversationId}"]["429"].to_string(),
    );
    row(
        "cms POST /v1/entries answers",
        cms_requests["POST /v1/entries"].to_string(),
    );
    row("consumer groups settled", settled.to_string());
    row("load phase", format!("{load_took:.1?}"));
    row("settle phase", format!("{settle_took:.1?}"));
    eprintln!("chaos: {:?}", chaos_log.lock().unwrap());

    if !synced_and_dead_ids.is_empty() {
        // Why: the dead letter's last error and the CMS's view of the key.
        let cfg = cfg.clone();
        let (ids, dlq_topic) = (synced_and_dead_ids.clone(), format!("{prefix}.events.dlq"));
        let letters = tokio::task::spawn_blocking(move || {
            let mut out = Vec::new();
            let _ = read_topic_to_end(&cfg, &dlq_topic, |m| {
                let header = |name: &str| {
                    m.headers().and_then(|h| {
                        h.iter()
                            .find(|x| x.key == name)
                            .and_then(|x| x.value)
                            .map(|v| String::from_utf8_lossy(v).into_owned())
                    })
                };
                if header(headers::EVENT_ID).is_some_and(|id| ids.contains(&id)) {
                    out.push(format!(
                        "{:?} attempt {:?} first failure {:?}: {:?}",
                        header(headers::EVENT_ID),
                        header(headers::ATTEMPT),
                        header(headers::FIRST_FAILURE_AT),
                        header(headers::ERROR)
                    ));
                }
            });
            out
        })
        .await
        .unwrap();
        for l in letters {
            eprintln!("synced and dead-lettered: {l}");
        }
        for id in &synced_and_dead_ids {
            let key = format!("guest_sync:{id}");
            eprintln!(
                "  {key}: writes {} answers {:?}",
                cms["writes_by_key"][&key],
                answers_of(&key)
            );
        }
    }
    if !lost.is_empty() {
        // Where the lost events are: the retry records that carry them.
        let cfg = cfg.clone();
        let (lost, retry_topics) = (lost.clone(), retry_topics.clone());
        let found = tokio::task::spawn_blocking(move || {
            let mut found = Vec::new();
            for t in &retry_topics {
                let _ = read_topic_to_end(&cfg, t, |m| {
                    let id = m.headers().and_then(|h| {
                        h.iter()
                            .find(|x| x.key == headers::EVENT_ID)
                            .and_then(|x| x.value)
                            .map(|v| String::from_utf8_lossy(v).into_owned())
                    });
                    if id.as_ref().is_some_and(|id| lost.contains(id)) {
                        found.push(format!("{id:?} in {t}[{}]@{}", m.partition(), m.offset()));
                    }
                });
            }
            found
        })
        .await
        .unwrap();
        eprintln!("lost events in retry topics: {found:?}");
    }
    for (id, letter) in dlq.iter().filter(|(_, l)| l.class != "exhausted").take(10) {
        eprintln!(
            "dead letter {id}: class {} attempt {}: {}",
            letter.class, letter.attempt, letter.error
        );
    }
    if redundant_total > 0 {
        let detail: Vec<String> = redundant
            .keys()
            .take(20)
            .map(|k| format!("{k}: {:?}", answers_of(k)))
            .collect();
        eprintln!("redundant sends: {detail:?}");
    }
    // The workers' logs go before the failure, so the failure is the last thing printed
    // (CI keeps only the end of a failing test's output).
    if !crashed.is_empty() || !settled || !lost.is_empty() {
        eprintln!("worker logs:\n{}", workers.lock().unwrap().logs());
    }
    assert!(
        crashed.is_empty(),
        "workers exited on their own: {crashed:?} (worker logs above)"
    );
    assert!(
        settled,
        "consumer groups did not reach the end (worker logs above)"
    );
    assert!(
        missing_from_raw.is_empty(),
        "answered 202 but not in the raw topic: {missing_from_raw:?}"
    );
    assert!(lost.is_empty(), "lost events: {lost:?} (worker logs above)");
    assert_eq!(accepted.len(), n);
    assert_eq!(synced + skipped.len() + dead, accepted.len());
    assert!(
        gone_synced.is_empty(),
        "gone guests synced: {gone_synced:?}"
    );
    let answered_404: HashSet<&str> = g["conversations_not_found"]
        .as_array()
        .map(|ids| ids.iter().filter_map(|v| v.as_str()).collect())
        .unwrap_or_default();
    let skipped_without_404: Vec<&String> = skipped
        .iter()
        .filter(|id| {
            let i: usize = id["fs-".len()..].parse().unwrap();
            !answered_404.contains(guest_of(i).as_str())
        })
        .collect();
    assert!(
        skipped_without_404.is_empty(),
        "skipped as gone, but Genesys never answered 404 for their conversation: {skipped_without_404:?}"
    );
    assert!(
        synced_and_dead_unexplained.is_empty(),
        "synced and dead-lettered although the relay was answered 2xx after the write: {synced_and_dead_unexplained:?}"
    );
    let unexpected: Vec<String> = dlq
        .iter()
        .filter(|(_, l)| !injected_faults_can_cause(l))
        .map(|(id, l)| format!("{id}: {} attempt {}: {}", l.class, l.attempt, l.error))
        .collect();
    assert!(
        unexpected.is_empty(),
        "dead letters the injected faults cannot cause: {unexpected:?}"
    );
    assert!(twice.is_empty(), "idempotency keys stored twice: {twice:?}");
    assert!(
        !writes.contains_key(""),
        "a CMS write without an idempotency key"
    );
    assert!(
        !apply_then_fail.is_empty() && replays > 0,
        "the apply-then-fail fault never fired, or was never followed by a replay"
    );
    assert!(
        redundant_before_any_loss.is_empty(),
        "{} redundant sends with no worker killed and no session lost before them: {:?}",
        redundant_before_any_loss.len(),
        &redundant_before_any_loss[..redundant_before_any_loss.len().min(20)]
    );
    for b in &budgets {
        assert!(
            b.redundant + b.synced_after_dead_letter.len() as u64 <= b.bound,
            "{} redundant sends and {} events synced after their dead letter ({:?}) after {} (bound {} = 2 x {MAX_IN_FLIGHT} in flight + {} marks written during the {} ms tail lag)",
            b.redundant,
            b.synced_after_dead_letter.len(),
            b.synced_after_dead_letter,
            b.what,
            b.bound,
            b.marks_in_lag,
            b.tail_lag_ms
        );
    }

    ingress.stop().await;
}

#[test]
fn log_timestamps_parse_to_unix_ms() {
    assert_eq!(parse_utc_ms("1970-01-01T00:00:01.5Z"), Some(1_500));
    assert_eq!(
        parse_utc_ms("2026-12-02T06:49:58.586962Z"),
        Some(1_796_194_198_586)
    );
    assert_eq!(parse_utc_ms("not a time"), None);
}
