//! Broker failover: `serve` on a 3-node Kafka cluster (topics with replication 3 and
//! `min.insync.replicas=2`) under steady ingress load while the leader of a raw-topic
//! partition is SIGKILLed and, later, started again.
//!
//! Pass: the ingress answered only 202 or 503, each within `RELAY_PRODUCE_TIMEOUT` plus a
//! grace for a busy machine (no hang); every event answered 202 is in the raw topic and is
//! synced at the CMS or dead-lettered (no event here has a gone guest, so none is skipped);
//! the CMS received no redundant write (a second write for an idempotency key it already
//! accepted). The load generator redelivers on 503 until it gets 202, like Genesys Cloud.
//! The test prints the unavailability window (first to last 503 after the kill) and the
//! time the cluster took to name a new leader.

use crate::common::*;
use genesys_relay::app::{self, Role};
use genesys_relay::kafka::{headers, read_topic_to_end};
use genesys_relay::schema::{Codec, RawEvent};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Headers;
use rdkafka::{ClientConfig, Message};
use serde_json::json;
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const PRODUCE_TIMEOUT: Duration = Duration::from_secs(3);
/// Scheduling slack on a shared 2-core machine running three JVMs; a hang is far longer.
const ANSWER_GRACE: Duration = Duration::from_secs(5);

/// The leader (node id) of `partition` of `topic`, as `bootstrap` reports it; -1 if none.
fn leader_of(bootstrap: &str, topic: &str, partition: i32) -> Option<i32> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .ok()?;
    let md = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(3))
        .ok()?;
    md.topics()
        .iter()
        .find(|t| t.name() == topic)?
        .partitions()
        .iter()
        .find(|p| p.id() == partition)
        .map(|p| p.leader())
}

/// Redundant CMS sends: writes of an idempotency key that arrived after a write of that
/// key had been answered 2xx (the simulator's `redundant_by_key`). What the relay sent,
/// whatever the sink answered: a replayed write counts, a retry after a failed answer does
/// not (this CMS injects no faults, so there is none here).
fn redundant_cms_sends(cms: &serde_json::Value) -> u64 {
    redundant_sends(cms).values().sum()
}

#[derive(Default)]
struct Answers {
    accepted: HashSet<String>,
    /// (time since the test started, status) of every non-202 answer.
    others: Vec<(Duration, u16)>,
    transport_errors: Vec<String>,
    /// (first failed attempt sent, the 202 that ended it answered) per redelivered event.
    outages: Vec<(Duration, Duration)>,
    slowest: Duration,
    count: usize,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leader_sigkill_under_load_loses_nothing_and_sends_nothing_twice() {
    let mut cluster = tokio::task::spawn_blocking(|| Cluster::start(3))
        .await
        .unwrap();
    let bootstrap = cluster.bootstrap();
    let sims = Sims::start().await;
    let prefix = unique_prefix("failover");
    let timeout = format!("{}s", PRODUCE_TIMEOUT.as_secs());
    let mut vars = relay_vars_at(
        &bootstrap,
        &prefix,
        &[
            ("RELAY_TOPIC_REPLICATION", "3"),
            ("RELAY_TOPIC_MIN_INSYNC_REPLICAS", "2"),
            ("RELAY_PRODUCE_TIMEOUT", &timeout),
            ("RELAY_RETRY_DELAYS", "500ms,1s,2s"),
            ("RELAY_MAX_IN_FLIGHT", "32"),
        ],
    );
    vars.extend(sims.vars());
    let cfg = genesys_relay::app::Config::from_vars(&vars).unwrap();
    let relay = app::start(cfg.clone(), Role::Serve).await.unwrap();
    let target = format!("http://{}/webhooks/genesys", relay.ingress_addr.unwrap());
    let raw_topic = format!("{prefix}.events.raw");

    // Steady load: 4 clients, each one request at a time, ~12 requests/s each.
    let t0 = Instant::now();
    let answers = Arc::new(Mutex::new(Answers::default()));
    let stop = Arc::new(AtomicBool::new(false));
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap();
    let mut clients = Vec::new();
    for c in 0..4 {
        let (answers, stop, http, target) =
            (answers.clone(), stop.clone(), http.clone(), target.clone());
        clients.push(tokio::spawn(async move {
            let mut i = 0;
            while !stop.load(Ordering::Relaxed) {
                let id = format!("fo-{c}-{i}");
                let body = envelope(
                    "conversation:updated",
                    &id,
                    "2026-11-25T08:00:00.000Z",
                    json!({"conversationId": format!("c-{c}-{}", i % 16), "guestId": format!("g-{c}-{i}")}),
                );
                // Redeliver on 503 until 202, as Genesys Cloud does.
                let mut first_failure = None;
                loop {
                    let sent = Instant::now();
                    let sent_at = t0.elapsed();
                    let result = http.post(&target).json(&body).send().await;
                    let took = sent.elapsed();
                    let done = {
                        let mut a = answers.lock().unwrap();
                        a.count += 1;
                        a.slowest = a.slowest.max(took);
                        match result {
                            Ok(r) if r.status() == 202 => {
                                a.accepted.insert(id.clone());
                                if let Some(first) = first_failure {
                                    a.outages.push((first, t0.elapsed()));
                                }
                                true
                            }
                            Ok(r) => {
                                a.others.push((t0.elapsed(), r.status().as_u16()));
                                first_failure.get_or_insert(sent_at);
                                false
                            }
                            Err(e) => {
                                a.transport_errors.push(e.to_string());
                                first_failure.get_or_insert(sent_at);
                                false
                            }
                        }
                    };
                    if done {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                i += 1;
                tokio::time::sleep(Duration::from_millis(80)).await;
            }
        }));
    }

    tokio::time::sleep(Duration::from_secs(6)).await;
    let leader = {
        let (b, t) = (bootstrap.clone(), raw_topic.clone());
        tokio::task::spawn_blocking(move || leader_of(&b, &t, 0))
            .await
            .unwrap()
            .expect("raw partition 0 has a leader")
    };
    let victim = usize::try_from(leader - 1).expect("node ids start at 1");
    let killed_at = t0.elapsed();
    tokio::task::block_in_place(|| cluster.kill(victim));
    eprintln!("[{killed_at:.1?}] SIGKILL node {leader}, leader of {raw_topic}[0]");

    // How long until the survivors name a new leader for the partition.
    let survivors = (0..3)
        .filter(|i| *i != victim)
        .map(|i| cluster_addr(&bootstrap, i))
        .collect::<Vec<_>>()
        .join(",");
    let election = {
        let t = raw_topic.clone();
        tokio::task::spawn_blocking(move || {
            let start = Instant::now();
            while start.elapsed() < Duration::from_secs(120) {
                if leader_of(&survivors, &t, 0).is_some_and(|l| l >= 0 && l != leader) {
                    return Some(start.elapsed());
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            None
        })
        .await
        .unwrap()
    };
    eprintln!("new leader for partition 0 after {election:.1?}");

    tokio::time::sleep(Duration::from_secs(8)).await;
    {
        let restarted_at = t0.elapsed();
        tokio::task::block_in_place(|| cluster.restart(victim));
        eprintln!(
            "[{restarted_at:.1?}] node {leader} restarted (listening after {:.1?})",
            t0.elapsed() - restarted_at
        );
    }
    tokio::time::sleep(Duration::from_secs(8)).await;
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.await.unwrap();
    }
    let load_took = t0.elapsed();
    let answers = std::mem::take(&mut *answers.lock().unwrap());

    // Everything accepted is synced or dead-lettered.
    let accepted = answers.accepted.clone();
    let dlq_topic = format!("{prefix}.events.dlq");
    let dead_letters = || {
        let (cfg, topic) = (cfg.clone(), dlq_topic.clone());
        async move {
            tokio::task::spawn_blocking(move || {
                let mut ids = HashSet::new();
                let _ = read_topic_to_end(&cfg, &topic, |m| {
                    let id = m.headers().and_then(|h| {
                        h.iter()
                            .find(|x| x.key == headers::EVENT_ID)
                            .and_then(|x| x.value)
                            .map(|v| String::from_utf8_lossy(v).into_owned())
                    });
                    ids.extend(id);
                });
                ids
            })
            .await
            .unwrap()
        }
    };
    let accounted = |syncs: &HashMap<String, u64>, dead: &HashSet<String>| {
        accepted
            .iter()
            .filter(|id| syncs.contains_key(&format!("guest_sync:{id}")) || dead.contains(*id))
            .count()
    };
    let settled = wait_until(Duration::from_secs(180), || async {
        let syncs = syncs_by_key(&sims.cms_stats().await);
        // The dead-letter topic only matters when syncs alone do not account for all.
        accounted(&syncs, &HashSet::new()) == accepted.len()
            || accounted(&syncs, &dead_letters().await) == accepted.len()
    })
    .await;
    // Let in-flight redeliveries, if any, reach the CMS before counting sends.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let cms = sims.cms_stats().await;
    let syncs = syncs_by_key(&cms);
    let dead = dead_letters().await;
    let raw_ids: HashSet<String> = {
        let (cfg, topic) = (cfg.clone(), raw_topic.clone());
        tokio::task::spawn_blocking(move || {
            let codec = Codec::single_object();
            let mut ids = HashSet::new();
            read_topic_to_end(&cfg, &topic, |m| {
                if let Some(Ok(e)) = m.payload().map(|p| codec.decode::<RawEvent>(p)) {
                    ids.insert(e.event_id);
                }
            })
            .unwrap();
            ids
        })
        .await
        .unwrap()
    };
    let missing_from_raw: Vec<&String> = accepted
        .iter()
        .filter(|id| !raw_ids.contains(*id))
        .collect();
    let lost: Vec<&String> = accepted
        .iter()
        .filter(|id| !syncs.contains_key(&format!("guest_sync:{id}")) && !dead.contains(*id))
        .collect();
    let redundant = redundant_cms_sends(&cms);
    let not_503: Vec<&(Duration, u16)> = answers.others.iter().filter(|(_, s)| *s != 503).collect();
    // Unavailability as a client saw it: from the kill until the last event that was refused
    // after it was finally accepted.
    let window = answers
        .outages
        .iter()
        .filter(|(_, ended)| *ended >= killed_at)
        .map(|(_, ended)| *ended - killed_at)
        .max();
    let refused = answers
        .others
        .iter()
        .filter(|(at, _)| *at >= killed_at)
        .count();
    eprintln!("\n=== failover accounting ===");
    let row = |k: &str, v: String| eprintln!("{k:<44} {v}");
    row(
        "requests sent (incl. redeliveries)",
        answers.count.to_string(),
    );
    row("events answered 202", accepted.len().to_string());
    row("non-202 answers", answers.others.len().to_string());
    row("  of which not 503", not_503.len().to_string());
    row(
        "transport errors",
        answers.transport_errors.len().to_string(),
    );
    row("slowest answer", format!("{:.2?}", answers.slowest));
    row(
        "unavailability window after the kill",
        format!(
            "{window:.1?} ({refused} answers 503, {} events redelivered)",
            answers.outages.len()
        ),
    );
    row("new leader named after", format!("{election:.1?}"));
    row(
        "202 but missing from raw",
        missing_from_raw.len().to_string(),
    );
    row(
        "synced",
        accepted
            .iter()
            .filter(|id| syncs.contains_key(&format!("guest_sync:{id}")))
            .count()
            .to_string(),
    );
    row("dead-lettered", dead.len().to_string());
    row("lost", lost.len().to_string());
    row("redundant CMS sends", redundant.to_string());
    for line in relay.metrics.render().lines().filter(|l| {
        (l.starts_with("relay_sink_requests_total")
            || l.starts_with("relay_events_processed_total")
            || l.starts_with("relay_retry_scheduled_total")
            || l.starts_with("relay_idempotency_hits_total"))
            && !l.ends_with(" 0")
    }) {
        row("  metric", line.to_string());
    }
    row("load phase", format!("{load_took:.1?}"));

    assert!(
        answers.transport_errors.is_empty(),
        "requests without an answer: {:?}",
        answers.transport_errors
    );
    assert!(
        not_503.is_empty(),
        "answers other than 202/503: {not_503:?}"
    );
    assert!(
        answers.slowest <= PRODUCE_TIMEOUT + ANSWER_GRACE,
        "an answer took {:?}, past RELAY_PRODUCE_TIMEOUT ({PRODUCE_TIMEOUT:?})",
        answers.slowest
    );
    assert!(election.is_some(), "no new leader within 120 s");
    assert!(
        missing_from_raw.is_empty(),
        "answered 202 but not in the raw topic: {missing_from_raw:?}"
    );
    assert!(
        settled && lost.is_empty(),
        "not synced nor dead-lettered: {lost:?}"
    );
    assert_eq!(
        redundant, 0,
        "redundant CMS sends; requests: {}",
        cms["requests"]
    );
    assert!(
        !syncs.contains_key(""),
        "a CMS write without an idempotency key"
    );
    relay.stop().await;
}

/// Node `i`'s address out of the bootstrap list.
fn cluster_addr(bootstrap: &str, i: usize) -> String {
    bootstrap.split(',').nth(i).unwrap().to_string()
}
