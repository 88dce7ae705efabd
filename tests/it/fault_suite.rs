//! The fault suite: a run of N guest-sync events while everything that can go wrong does,
//! then exact accounting of every event the ingress answered 202.
//!
//! Faults during the run:
//! - the CMS answers 5xx to 30% of requests at random (`error_rate`);
//! - Genesys answers bursts of 429 with `Retry-After` (`rate_limit_next`, every few seconds);
//! - Genesys tokens expire every 3 seconds (`token_ttl_s`);
//! - worker processes (`genesys-relay worker`, two at a time) are killed with SIGKILL three
//!   times and replaced;
//! - the broker (a dedicated Kafka node) is stopped and restarted once between the kills, so
//!   the ingress loses its broker connection for a while and answers 503; the load generator
//!   redelivers on 503 until it gets 202, like Genesys Cloud does. The kills after the
//!   restart rely on the broker's group coordinator alone to hand a dead worker's partitions
//!   to the survivor.
//!
//! Pass: every event answered 202 is in the raw topic, and is synced (CMS `syncs_by_key`
//! has `guest_sync:<eventId>`), skipped (its guest is `gone-*`), or dead-lettered (by
//! `relay-event-id`); no idempotency key was accepted twice by the CMS; the consumer groups
//! committed to the end of the raw and retry topics.
//!
//! Redundant sends (issue 12): CMS writes of an idempotency key the CMS had already
//! accepted (`replays_by_key`), i.e. sends the relay should not have made. Without worker
//! kills (`FAULT_SUITE_KILLS=0`) there must be none; with kills at most
//! `RELAY_MAX_IN_FLIGHT` per kill (what a killed worker had in flight). The suite prints them.
//!
//! Size: `FAULT_SUITE_EVENTS` (default 300, which keeps CI under ~3 minutes); the full run
//! is `FAULT_SUITE_EVENTS=100000 cargo test --release --test it fault_suite:: -- --nocapture`.

use crate::common::*;
use genesys_relay::app::{self, Role};
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

/// `FAULT_SUITE_KILLS=0` runs the suite without SIGKILLing workers.
fn with_kills() -> bool {
    std::env::var("FAULT_SUITE_KILLS").map_or(true, |v| v != "0")
}

/// `RELAY_MAX_IN_FLIGHT` of the suite's workers.
const MAX_IN_FLIGHT: &str = "32";

fn max_in_flight() -> u64 {
    MAX_IN_FLIGHT.parse().unwrap()
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
    killed: usize,
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
            c.wait().unwrap();
            self.killed += 1;
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
fn dead_letters(cfg: &genesys_relay::app::Config, topic: &str) -> HashMap<String, String> {
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
            out.insert(id, header(headers::ERROR_CLASS).unwrap_or_default());
        }
    });
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_under_faults_are_all_accounted_for() {
    let started = Instant::now();
    let n = event_count();
    let broker = Arc::new(Mutex::new(Broker::dedicated()));
    let addr = broker.lock().unwrap().addr();
    let sims = Sims::start().await;
    let prefix = unique_prefix("faults");
    let extra = [
        ("RELAY_RETRY_DELAYS", RETRY_DELAYS),
        ("RELAY_PRODUCE_TIMEOUT", "2s"),
        ("RELAY_HTTP_TIMEOUT", "3s"),
        ("RELAY_MAX_IN_FLIGHT", MAX_IN_FLIGHT),
        ("RELAY_SHUTDOWN_TIMEOUT", "5s"),
    ];
    let cfg = {
        let b = broker.lock().unwrap();
        stack_config(&b, &sims, &prefix, &extra)
    };
    let ingress = app::start(cfg.clone(), Role::Ingress).await.unwrap();
    let target = format!("http://{}/webhooks/genesys", ingress.ingress_addr.unwrap());

    sims.cms_faults(json!({"error_rate": 0.3, "error_status": 503}))
        .await;
    sims.genesys_faults(json!({"token_ttl_s": 3, "retry_after_s": 1}))
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
        killed: 0,
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
                    let deadline = Instant::now() + Duration::from_secs(120);
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
        tokio::spawn(async move {
            let t0 = Instant::now();
            let note = |s: String| {
                eprintln!("[{:>5.1}s] {s}", t0.elapsed().as_secs_f64());
                chaos_log.lock().unwrap().push(s);
            };
            let http = reqwest::Client::new();
            // (at second, action): two kills after the broker restart, so the group must
            // rebalance on a restarted broker.
            let plan: &[(u64, &str)] = &[
                (8, "kill 0"),
                (14, "broker down"),
                (18, "broker up"),
                (24, "kill 1"),
                (30, "kill 0"),
            ];
            let plan: Vec<(u64, &str)> = plan
                .iter()
                .copied()
                .filter(|(_, action)| with_kills() || !action.starts_with("kill"))
                .collect();
            let mut next = 0;
            let mut last_burst = 0;
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
                if next < plan.len() && now >= plan[next].0 {
                    let action = plan[next].1;
                    next += 1;
                    match action {
                        "kill 0" | "kill 1" => {
                            let slot = if action == "kill 0" { 0 } else { 1 };
                            workers.lock().unwrap().kill(slot);
                            note(format!("SIGKILL worker {slot}"));
                            tokio::time::sleep(Duration::from_secs(1)).await;
                            workers.lock().unwrap().spawn(slot);
                            note(format!("worker {slot} restarted"));
                        }
                        "broker down" => {
                            let b = broker.clone();
                            tokio::task::spawn_blocking(move || b.lock().unwrap().stop())
                                .await
                                .unwrap();
                            note("broker stopped".into());
                        }
                        "broker up" => {
                            let b = broker.clone();
                            tokio::task::spawn_blocking(move || b.lock().unwrap().restart())
                                .await
                                .unwrap();
                            note("broker restarted".into());
                        }
                        _ => unreachable!(),
                    }
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
    let settle_limit = Duration::from_secs(if n > 10_000 { 1800 } else { 120 });
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
    let mut synced = 0;
    let mut skipped = 0;
    let mut dead = 0;
    let mut synced_and_dead = 0;
    let mut synced_and_dead_ids = Vec::new();
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
        let is_synced = syncs.contains_key(&format!("guest_sync:{id}"));
        let is_dead = dlq.contains_key(&id);
        let gone = guest_of(i).starts_with("gone-");
        if gone && is_synced {
            gone_synced.push(id.clone());
        }
        match (is_synced, is_dead) {
            (true, true) => {
                synced += 1;
                synced_and_dead += 1;
                synced_and_dead_ids.push(id.clone());
            }
            (true, false) => synced += 1,
            (false, true) => dead += 1,
            (false, false) if gone => skipped += 1,
            (false, false) => lost.push(id.clone()),
        }
    }
    let twice: BTreeMap<&String, &u64> = syncs.iter().filter(|(_, v)| **v != 1).collect();
    let replays: u64 = cms["replays_by_key"]
        .as_object()
        .map_or(0, |m| m.values().filter_map(|v| v.as_u64()).sum());
    let attempts: u64 = cms["attempts_by_key"]
        .as_object()
        .map_or(0, |m| m.values().filter_map(|v| v.as_u64()).sum());
    let redelivered_raw = raw_ids.values().filter(|c| **c > 1).count();
    let extra_raw = raw_ids.keys().filter(|k| !accepted.contains(*k)).count();
    let mut dlq_classes: BTreeMap<&str, usize> = BTreeMap::new();
    for class in dlq.values() {
        *dlq_classes.entry(class.as_str()).or_default() += 1;
    }
    let g = sims.genesys_stats().await;
    let cms_requests = &cms["requests"];
    let (killed, started_workers) = {
        let w = workers.lock().unwrap();
        (w.killed, w.started)
    };

    eprintln!("\n=== fault suite accounting ({n} events) ===");
    let row = |k: &str, v: String| eprintln!("{k:<46} {v:>10}");
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
    row("synced (guest_sync:<id> at CMS)", synced.to_string());
    row("skipped (gone guest)", skipped.to_string());
    row("dead-lettered", dead.to_string());
    row("  dlq classes", format!("{dlq_classes:?}"));
    row(
        "  synced and also dead-lettered",
        synced_and_dead.to_string(),
    );
    row("lost", lost.len().to_string());
    row(
        "idempotency keys accepted more than once",
        twice.len().to_string(),
    );
    row("gone guests synced", gone_synced.len().to_string());
    row("CMS write requests (attempts)", attempts.to_string());
    row(
        "redundant sends (writes of an accepted key)",
        replays.to_string(),
    );
    row(
        "  allowed: SIGKILLs x max in flight",
        (killed as u64 * max_in_flight()).to_string(),
    );
    row(
        "workers started / SIGKILLed",
        format!("{started_workers} / {killed}"),
    );
    row(
        "workers that exited on their own",
        crashed.len().to_string(),
    );
    row("genesys token requests", g["token_requests"].to_string());
    row(
        "genesys guest 429s",
        g["requests"]["GET /api/v2/conversations/{conversationId}"]["429"].to_string(),
    );
    row(
        "cms POST /v1/entries 503s",
        cms_requests["POST /v1/entries"]["503"].to_string(),
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
            let writes: Vec<&serde_json::Value> = cms["writes"]
                .as_array()
                .map(|w| w.iter().filter(|x| x["key"] == key.as_str()).collect())
                .unwrap_or_default();
            eprintln!(
                "  {key}: attempts {} replays {} accepted writes {writes:?}",
                cms["attempts_by_key"][&key], cms["replays_by_key"][&key]
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
    let logs = workers.lock().unwrap().logs();
    assert!(
        crashed.is_empty(),
        "workers exited on their own: {crashed:?}\n{logs}"
    );
    assert!(
        missing_from_raw.is_empty(),
        "answered 202 but not in the raw topic: {missing_from_raw:?}"
    );
    assert!(lost.is_empty(), "lost events: {lost:?}\n{logs}");
    assert!(twice.is_empty(), "idempotency keys synced twice: {twice:?}");
    assert!(
        replays <= killed as u64 * max_in_flight(),
        "{replays} redundant sends with {killed} worker kills (at most {MAX_IN_FLIGHT} each)"
    );
    assert!(
        gone_synced.is_empty(),
        "gone guests synced: {gone_synced:?}"
    );
    assert!(
        !syncs.contains_key(""),
        "a CMS write without an idempotency key"
    );
    assert!(settled, "consumer groups did not reach the end\n{logs}");
    assert_eq!(synced + skipped + dead, accepted.len());
    assert_eq!(accepted.len(), n);

    ingress.stop().await;
}
