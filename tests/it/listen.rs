//! `genesys-relay listen` against the simulator's real Notifications API and WebSockets and a
//! real broker: continuity across socket drops, `socket_closing` and channel expiry; queue
//! topics over all pages and several channels; a broker outage (backpressure, nothing
//! dropped); SIGTERM on the process. The checks count what the simulator SENT on its
//! sockets against what reached the raw topic.

use crate::common::*;
use futures::{SinkExt, StreamExt};
use genesys_relay::app::{self, Role, RunningRelay};
use genesys_relay::kafka::Topics;
use genesys_relay::schema::{Codec, RawEvent};
use rdkafka::Message;
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashSet};
use std::time::{Duration, Instant};
use tokio_tungstenite::tungstenite::Message as WsMessage;

const QUEUE: &str = "5a1e0000-0000-4000-8000-00000000beef";

fn queue_topic() -> String {
    format!("v2.routing.queues.{QUEUE}.conversations")
}

/// Makes `QUEUE` a queue of the simulated org: Genesys rejects subscriptions to queues
/// that do not exist.
async fn known_queue(sims: &Sims) {
    post(sims, "/__sim/queues", &json!({"ids": [QUEUE]})).await;
}

/// A queue conversation notification: the conversation object as the topic carries it.
fn notification(seq: usize) -> Value {
    let conversation = format!("c0ffee00-0000-4000-8000-{seq:012}");
    json!({
        "topicName": queue_topic(),
        "version": "2",
        "eventBody": {
            "id": conversation,
            "participants": [{
                "id": format!("9a7d0000-0000-4000-8000-{seq:012}"),
                "purpose": "customer",
                "attributes": {"cart_value": format!("{seq}.50"), "last_page": "/checkout"}
            }]
        },
        "metadata": {"CorrelationId": format!("corr-{seq}")}
    })
}

async fn post(sims: &Sims, path: &str, body: &Value) -> Value {
    let r = sims
        .http
        .post(format!("{}{path}", sims.genesys.base_url()))
        .json(body)
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{path}: {}", r.status());
    r.json().await.unwrap()
}

async fn sim_settings(sims: &Sims, body: Value) {
    let r = sims
        .http
        .put(format!(
            "{}/__sim/notifications/settings",
            sims.genesys.base_url()
        ))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success());
}

async fn notif_stats(sims: &Sims) -> Value {
    sims.genesys_stats().await["notifications"].clone()
}

/// Publishes notification `seq`; true when the simulator wrote it to at least one socket.
async fn publish(sims: &Sims, seq: usize) -> bool {
    post(sims, "/__sim/notify", &notification(seq)).await["queued"]
        .as_u64()
        .unwrap()
        > 0
}

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn next_text(ws: &mut Ws) -> String {
    match tokio::time::timeout(Duration::from_secs(10), ws.next()).await {
        Ok(Some(Ok(WsMessage::Text(t)))) => t,
        other => panic!("expected a text message, got {other:?}"),
    }
}

/// The next message that is not `channel.metadata`; `None` once the socket closed.
async fn next_non_metadata(ws: &mut Ws) -> Option<String> {
    loop {
        match tokio::time::timeout(Duration::from_secs(10), ws.next()).await {
            Ok(Some(Ok(WsMessage::Text(t)))) if t.contains("channel.metadata") => {}
            Ok(Some(Ok(WsMessage::Text(t)))) => return Some(t),
            Ok(Some(Ok(WsMessage::Close(_)))) | Ok(None) | Ok(Some(Err(_))) => return None,
            Ok(Some(Ok(_))) => {}
            Err(_) => panic!("no message within 10 s"),
        }
    }
}

async fn start_listener(
    broker_addr: &str,
    sims: &Sims,
    prefix: &str,
    extra: &[(&str, &str)],
) -> RunningRelay {
    start_role(Role::Listen, broker_addr, sims, prefix, extra).await
}

async fn start_role(
    role: Role,
    broker_addr: &str,
    sims: &Sims,
    prefix: &str,
    extra: &[(&str, &str)],
) -> RunningRelay {
    let vars = role_vars(broker_addr, sims, prefix, extra);
    let cfg = genesys_relay::app::Config::from_vars(&vars).unwrap();
    app::start(cfg, role).await.unwrap()
}

/// A relay's settings at the broker and the simulators, `extra` last.
fn role_vars(
    broker_addr: &str,
    sims: &Sims,
    prefix: &str,
    extra: &[(&str, &str)],
) -> std::collections::HashMap<String, String> {
    let mut vars = relay_vars_at(broker_addr, prefix, extra);
    vars.extend(sims.vars());
    for (k, v) in extra {
        vars.insert(k.to_string(), v.to_string());
    }
    vars
}

/// Raw-topic records by notification sequence number, with their event ids; reads until
/// every seq of `want` is there (duplicates make a record count useless) or 90 s passed.
fn records_by_seq(addr: &str, topic: &str, want: &HashSet<usize>) -> BTreeMap<usize, Vec<String>> {
    let codec = Codec::single_object();
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let records = read_records_at(addr, topic, usize::MAX, Duration::from_secs(5));
        let mut by_seq: BTreeMap<usize, Vec<String>> = BTreeMap::new();
        for r in &records {
            let event: RawEvent = codec.decode(r.payload().unwrap()).unwrap();
            let body: Value = serde_json::from_str(&event.payload).unwrap();
            let id = body["eventBody"]["id"].as_str().unwrap();
            let seq: usize = id.rsplit('-').next().unwrap().parse().unwrap();
            by_seq.entry(seq).or_default().push(event.event_id);
        }
        if want.iter().all(|s| by_seq.contains_key(s)) || Instant::now() > deadline {
            return by_seq;
        }
    }
}

async fn wait_sockets(sims: &Sims, n: u64) -> bool {
    wait_until(Duration::from_secs(30), || async {
        notif_stats(sims).await["sockets_open"].as_u64() == Some(n)
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simulator_speaks_the_documented_notifications_api() {
    let sims = Sims::start().await;
    known_queue(&sims).await;
    let base = sims.genesys.base_url();
    let token: Value = sims
        .http
        .post(format!("{base}/oauth/token"))
        .basic_auth("sim-client", Some("sim-secret"))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = token["access_token"].as_str().unwrap().to_string();
    let create = || async {
        let r = sims
            .http
            .post(format!("{base}/api/v2/notifications/channels"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        r.json::<Value>().await.unwrap()
    };
    let channel = create().await;
    for field in ["id", "connectUri", "expires"] {
        assert!(channel[field].is_string(), "{channel}");
    }
    let id = channel["id"].as_str().unwrap();
    let subs = format!("{base}/api/v2/notifications/channels/{id}/subscriptions");

    // 1,000 topics per channel: 1,001 is refused, the list stays as it was.
    let too_many: Vec<Value> = (0..1001)
        .map(|i| {
            let id = format!("q{i}");
            json!({"id": format!("v2.routing.queues.{id}.conversations")})
        })
        .collect();
    let r = sims
        .http
        .put(&subs)
        .bearer_auth(&token)
        .json(&too_many)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let r = sims
        .http
        .put(&subs)
        .bearer_auth(&token)
        .json(&json!([{"id": queue_topic()}]))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let listing: Value = r.json().await.unwrap();
    assert_eq!(
        listing["entities"],
        json!([{"id": queue_topic(), "state": "Permitted"}])
    );

    // The socket: heartbeats, ping/pong, notifications byte for byte.
    sim_settings(&sims, json!({"heartbeat_interval_ms": 100})).await;
    let (mut ws, _) = tokio_tungstenite::connect_async(channel["connectUri"].as_str().unwrap())
        .await
        .unwrap();
    let hb: Value = serde_json::from_str(&next_text(&mut ws).await).unwrap();
    assert_eq!(
        hb,
        json!({"topicName": "channel.metadata", "eventBody": {"message": "WebSocket Heartbeat"}})
    );
    sim_settings(&sims, json!({"heartbeat_interval_ms": 60000})).await;
    ws.send(WsMessage::Text(r#"{"message":"ping"}"#.into()))
        .await
        .unwrap();
    let mut got_pong = false;
    for _ in 0..5 {
        let v: Value = serde_json::from_str(&next_text(&mut ws).await).unwrap();
        if v["eventBody"]["message"] == "pong" {
            got_pong = true;
            break;
        }
    }
    assert!(got_pong);
    let sent = serde_json::to_string(&notification(7)).unwrap();
    let r = sims
        .http
        .post(format!("{base}/__sim/notify"))
        .header("content-type", "application/json")
        .body(sent.clone())
        .send()
        .await
        .unwrap();
    let answer: Value = r.json().await.unwrap();
    assert_eq!(answer, json!({"subscribedChannels": 1, "queued": 1}));
    assert_eq!(
        next_non_metadata(&mut ws).await.as_deref(),
        Some(sent.as_str())
    );

    // socket_closing after the next delivery, then the server closes the socket.
    sims.genesys_faults(json!({"socket_closing_next": 1})).await;
    sim_settings(&sims, json!({"socket_closing_grace_ms": 200})).await;
    publish(&sims, 8).await;
    assert!(next_non_metadata(&mut ws)
        .await
        .unwrap()
        .contains("c0ffee00"));
    let closing: Value = serde_json::from_str(&next_non_metadata(&mut ws).await.unwrap()).unwrap();
    assert_eq!(closing["topicName"], "v2.system.socket_closing");
    assert_eq!(
        next_non_metadata(&mut ws).await,
        None,
        "the server closes the socket"
    );

    // 20 channels per client: the 21st replaces the oldest (without a socket first).
    for _ in 0..20 {
        create().await;
    }
    let stats = notif_stats(&sims).await;
    assert_eq!(stats["channels"], 20, "{stats}");
    assert_eq!(stats["channels_replaced"], 1, "{stats}");

    // Queues, paged like QueueEntityListing: QUEUE and 1,200 more.
    post(&sims, "/__sim/queues", &json!({"count": 1200})).await;
    let page: Value = sims
        .http
        .get(format!(
            "{base}/api/v2/routing/queues?pageSize=500&pageNumber=3"
        ))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(page["pageCount"], 3);
    assert_eq!(page["total"], 1201);
    assert_eq!(page["pageNumber"], 3);
    assert_eq!(page["entities"].as_array().unwrap().len(), 201);
}

/// 500 notifications while the simulator forces 1 channel expiry, 2 `socket_closing` and
/// 3 socket drops. Planned reconnects (expiry, socket_closing) must lose nothing; every
/// notification the simulator wrote to a socket must reach the raw topic.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn continuity_across_expiry_socket_closing_and_drops() {
    let broker = Broker::start();
    let sims = Sims::start().await;
    known_queue(&sims).await;
    let prefix = unique_prefix("listen-cont");
    let raw = Topics::new(&prefix, 3).raw;
    // Short timings: heartbeats, a 5 s socket_closing grace, and a first channel that
    // expires 6 s after creation (the listener rotates it at half its life).
    sim_settings(
        &sims,
        json!({"heartbeat_interval_ms": 500, "socket_closing_grace_ms": 5000, "channel_ttl_s": 6}),
    )
    .await;
    let topic = queue_topic();
    // `serve` with listen topics: ingress, listener and workers in one process; the
    // workers sync every event's customer attributes to the CMS simulator.
    let relay = start_role(
        Role::Serve,
        &broker.addr(),
        &sims,
        &prefix,
        &[
            ("RELAY_LISTEN_TOPICS", topic.as_str()),
            ("RELAY_LISTEN_OVERLAP", "500ms"),
            ("RELAY_LISTEN_IDLE_TIMEOUT", "5s"),
            ("RELAY_WEBHOOK_SECRET", "listen-test-secret"),
        ],
    )
    .await;
    assert!(wait_sockets(&sims, 1).await);
    // Later channels live long: exactly one expiry rotation.
    sim_settings(&sims, json!({"channel_ttl_s": 3600})).await;
    let m = relay.metrics.clone();
    let reconnects = |reason: &str| m.listen_reconnects_total.with_label_values(&[reason]).get();
    let disconnected = || m.listen_disconnected_seconds_total.get();

    // One notification every 20 ms. The forced events come one after the other, each at
    // least 40 notifications after the previous one completed (so its overlap is over):
    // the expiry rotation (due ~3 s after the first channel was created), 2 socket_closing,
    // then 3 drops. Publishing goes on to #500, or longer until every event happened.
    let mut written: HashSet<usize> = HashSet::new();
    let mut lost: Vec<usize> = Vec::new();
    let mut lost_planned = 0;
    let mut window_planned = 0.0;
    let d0 = disconnected();
    let mut d_drops = d0;
    let started = Instant::now();
    let mut seq = 0usize;
    // (reason, how many of them must have happened before the next fault is forced)
    let plan = [
        ("expiring", 1),
        ("socket_closing", 1),
        ("socket_closing", 2),
        ("dropped", 1),
        ("dropped", 2),
        ("dropped", 3),
    ];
    let mut step = 0;
    let mut quiet_since = 0usize;
    loop {
        if step < plan.len() && reconnects(plan[step].0) >= plan[step].1 {
            // Step done; wait out its overlap before forcing the next one.
            step += 1;
            quiet_since = seq;
        }
        if step < plan.len() && seq == quiet_since + 40 && step > 0 {
            match plan[step].0 {
                "socket_closing" => sims.genesys_faults(json!({"socket_closing_next": 1})).await,
                _ => {
                    if plan[step].1 == 1 {
                        lost_planned = lost.len();
                        d_drops = disconnected();
                        window_planned = d_drops - d0;
                    }
                    sims.genesys_faults(json!({"ws_drop_next": 1})).await
                }
            }
        }
        if publish(&sims, seq).await {
            written.insert(seq);
        } else {
            lost.push(seq);
        }
        seq += 1;
        if seq >= 500 && step == plan.len() {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(180),
            "forced events did not all happen (step {step})"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let published = seq;
    let window_drops = disconnected() - d_drops;
    assert_eq!(lost_planned, 0, "lost during planned reconnects: {lost:?}");

    let by_seq = records_by_seq(&broker.addr(), &raw, &written);
    let missing: Vec<usize> = written
        .iter()
        .copied()
        .filter(|s| !by_seq.contains_key(s))
        .collect();
    let records: usize = by_seq.values().map(Vec::len).sum();
    let duplicates = records - by_seq.len();
    // Duplicates of one notification carry one event id: they dedupe downstream.
    for (s, ids) in &by_seq {
        assert!(
            ids.iter().all(|id| *id == ids[0]),
            "seq {s} has several ids: {ids:?}"
        );
    }
    let stats = notif_stats(&sims).await;
    eprintln!(
        "listen continuity: published {published}, written to sockets {}, lost (no open socket) {}, \
         in raw topic {} distinct / {records} records ({duplicates} duplicates); \
         disconnected seconds: expiry+socket_closing {window_planned:.3}, drops {window_drops:.3}; \
         reconnects expiring={} socket_closing={} dropped={}; sim {stats}",
        written.len(),
        lost.len(),
        by_seq.len(),
        reconnects("expiring"),
        reconnects("socket_closing"),
        reconnects("dropped"),
    );
    assert!(
        missing.is_empty(),
        "written to a socket but not in the raw topic: {missing:?}"
    );
    // Downstream, the workers' idempotency (route + event id) syncs each notification
    // once and recognises every duplicate. Queue conversation events with a customer
    // participant carrying attributes take the guest_sync route (DESIGN 7).
    let processed = |outcome: &str| {
        relay
            .metrics
            .events_processed_total
            .with_label_values(&["guest_sync", outcome])
            .get()
    };
    assert!(
        wait_until(Duration::from_secs(90), || async {
            processed("synced") + processed("duplicate") >= records as u64
        })
        .await,
        "workers handled {} synced + {} duplicate of {records}",
        processed("synced"),
        processed("duplicate")
    );
    eprintln!(
        "listen continuity downstream: synced {}, recognised duplicates {}",
        processed("synced"),
        processed("duplicate")
    );
    let cms_stats = sims.cms_stats().await;
    let cms = syncs_by_key(&cms_stats);
    assert_eq!(cms.len(), 500, "one CMS write per notification");
    assert!(
        cms.values().all(|n| *n == 1),
        "a notification was stored twice"
    );
    // What the workers sent: the duplicates the listener wrote were recognised, not sent.
    assert_nothing_sent_twice(&cms_stats);
    assert_eq!(
        processed("synced"),
        by_seq.len() as u64,
        "each notification forwarded once"
    );
    assert_eq!(processed("duplicate"), duplicates as u64);
    assert_eq!(stats["sockets_dropped"], 3, "{stats}");
    assert_eq!(stats["socket_closing_sent"], 2, "{stats}");
    assert!(reconnects("expiring") >= 1);
    assert_eq!(window_planned, 0.0, "a planned rotation left a gap");
    assert_eq!(
        relay
            .metrics
            .listen_dropped_total
            .with_label_values(&["shutdown"])
            .get()
            + relay
                .metrics
                .listen_dropped_total
                .with_label_values(&["unparseable"])
                .get(),
        0
    );
    relay.stop().await;
}

/// 1,500 queues over 15 pages: two channels (1,000 + 500 topics), every topic subscribed,
/// no 21st-channel replacement; a queue added later is picked up by the re-listing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn all_queues_over_several_pages_make_two_channels() {
    let broker = Broker::start();
    let sims = Sims::start().await;
    let prefix = unique_prefix("listen-queues");
    post(&sims, "/__sim/queues", &json!({"count": 1500})).await;

    // Too few channels for them: the start-up error names the numbers.
    let mut vars = relay_vars(&broker, &prefix, &[]);
    vars.extend(sims.vars());
    vars.insert("RELAY_LISTEN_QUEUES".into(), "all".into());
    vars.insert("RELAY_LISTEN_MAX_CHANNELS".into(), "2".into());
    let cfg = genesys_relay::app::Config::from_vars(&vars).unwrap();
    let err = app::start(cfg, Role::Listen)
        .await
        .err()
        .expect("must refuse")
        .to_string();
    assert!(err.contains("1500 topics need 2 channels"), "{err}");
    assert!(err.contains("allows 2 channels"), "{err}");

    let relay = start_listener(
        &broker.addr(),
        &sims,
        &prefix,
        &[
            ("RELAY_LISTEN_QUEUES", "all"),
            ("RELAY_LISTEN_QUEUE_REFRESH", "1s"),
        ],
    )
    .await;
    assert!(wait_sockets(&sims, 2).await, "{}", notif_stats(&sims).await);
    let stats = notif_stats(&sims).await;
    assert_eq!(stats["subscribed_topics"], 1500, "{stats}");
    assert_eq!(stats["channels_replaced"], 0, "{stats}");
    let g = sims.genesys_stats().await;
    let pages = g["requests"]["GET /api/v2/routing/queues"]["200"]
        .as_u64()
        .unwrap();
    assert!(pages >= 15, "listed {pages} pages");
    assert_eq!(relay.metrics.listen_channels.get(), 2);

    // A notification on a queue of the second channel arrives.
    let last = "5a1e0000-0000-4000-8000-0000000005db"; // queue 1499
    let mut n = notification(1);
    n["topicName"] = json!(format!("v2.routing.queues.{last}.conversations"));
    let answer = post(&sims, "/__sim/notify", &n).await;
    assert_eq!(answer["queued"], 1, "{answer}");

    // A new queue joins the channel with room.
    post(&sims, "/__sim/queues", &json!({"count": 1})).await;
    assert!(
        wait_until(Duration::from_secs(30), || async {
            notif_stats(&sims).await["subscribed_topics"] == 1501
        })
        .await
    );
    let stats = notif_stats(&sims).await;
    assert_eq!(stats["channels_replaced"], 0, "{stats}");
    assert_eq!(stats["sockets_open"], 2, "{stats}");
    let raw = Topics::new(&prefix, 3).raw;
    assert_eq!(
        read_records(&broker, &raw, 1, Duration::from_secs(30)).len(),
        1
    );
    relay.stop().await;
}

/// The broker is stopped for about 10 s during a burst: the buffer fills, the socket is no
/// longer read (backpressure), and once the broker is back every notification written to
/// the socket is in the raw topic; nothing was dropped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_outage_applies_backpressure_and_loses_nothing() {
    let mut broker = Broker::dedicated();
    let sims = Sims::start().await;
    known_queue(&sims).await;
    let prefix = unique_prefix("listen-outage");
    let raw = Topics::new(&prefix, 3).raw;
    let topic = queue_topic();
    let relay = start_listener(
        &broker.addr(),
        &sims,
        &prefix,
        &[
            ("RELAY_LISTEN_TOPICS", topic.as_str()),
            ("RELAY_LISTEN_BUFFER", "20"),
            ("RELAY_LISTEN_IDLE_TIMEOUT", "120s"),
        ],
    )
    .await;
    assert!(wait_sockets(&sims, 1).await);
    let mut written = HashSet::new();
    for s in 0..100 {
        assert!(publish(&sims, s).await);
        written.insert(s);
    }
    let addr = broker.addr();
    let stopper = tokio::task::spawn_blocking(move || {
        broker.stop();
        broker
    });
    let mut s = 100;
    let outage = Instant::now();
    let mut broker = stopper.await.unwrap();
    while outage.elapsed() < Duration::from_secs(10) {
        for _ in 0..10 {
            if publish(&sims, s).await {
                written.insert(s);
            }
            s += 1;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Nothing can have been acknowledged while the broker was down: what was read waits
    // in the bounded buffer, and the rest waits in the socket.
    let acked_in_outage: u64 = relay
        .metrics
        .listen_notifications_total
        .with_label_values(&["v2.routing.queues.{id}.conversations"])
        .get();
    broker = tokio::task::spawn_blocking(move || {
        broker.restart();
        broker
    })
    .await
    .unwrap();
    for _ in 0..100 {
        if publish(&sims, s).await {
            written.insert(s);
        }
        s += 1;
    }
    let by_seq = records_by_seq(&addr, &raw, &written);
    let missing: Vec<usize> = written
        .iter()
        .copied()
        .filter(|s| !by_seq.contains_key(s))
        .collect();
    let dropped: u64 = ["shutdown", "unparseable", "unencodable"]
        .iter()
        .map(|r| {
            relay
                .metrics
                .listen_dropped_total
                .with_label_values(&[r])
                .get()
        })
        .sum();
    eprintln!(
        "listen outage: published {s}, written to the socket {}, acknowledged before the broker came back {acked_in_outage}, in raw topic {}, dropped {dropped}",
        written.len(),
        by_seq.len()
    );
    assert!(
        missing.is_empty(),
        "missing after the outage: {} of {}",
        missing.len(),
        written.len()
    );
    assert_eq!(
        written.len(),
        s,
        "the socket stayed open through the outage"
    );
    assert_eq!(dropped, 0);
    relay.stop().await;
    drop(broker);
}

/// Kills a child process a failed test leaves behind.
struct KillOnDrop(Option<std::process::Child>);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Some(mut child) = self.0.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// SIGTERM on `genesys-relay listen`: sockets closed, producer flushed, exit 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_closes_sockets_flushes_and_exits_zero() {
    let broker = Broker::start();
    let sims = Sims::start().await;
    let prefix = unique_prefix("listen-term");
    known_queue(&sims).await;
    let admin_port = free_port();
    let mut vars = relay_vars(&broker, &prefix, &[]);
    vars.extend(sims.vars());
    vars.insert("RELAY_LISTEN_TOPICS".into(), queue_topic());
    vars.insert("RELAY_ADMIN_ADDR".into(), format!("127.0.0.1:{admin_port}"));
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_genesys-relay"))
        .arg("listen")
        .env_clear()
        .envs(&vars)
        .env("RELAY_LOG", "info")
        .spawn()
        .unwrap();
    let mut child = KillOnDrop(Some(child));
    assert!(wait_sockets(&sims, 1).await);
    for s in 0..50 {
        assert!(publish(&sims, s).await);
    }
    let raw = Topics::new(&prefix, 3).raw;
    let records = read_records(&broker, &raw, 50, Duration::from_secs(60));
    assert_eq!(records.len(), 50);
    let metrics_url = format!("http://127.0.0.1:{admin_port}/metrics");
    let text = sims
        .http
        .get(&metrics_url)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for series in [
        "relay_listen_notifications_total",
        "relay_listen_reconnects_total",
        "relay_listen_disconnected_seconds_total",
        "relay_listen_channels",
    ] {
        assert!(text.contains(series), "{series} not exported");
    }
    // More notifications right before SIGTERM: the producer must flush them. SIGTERM goes
    // once the simulator wrote all of them to the socket (the listener reads what waits in
    // its socket before it looks at the shutdown signal); a frame Genesys has not sent yet
    // when the socket closes is not sent on it at all (docs/listen.md: two listeners).
    for s in 50..100 {
        assert!(publish(&sims, s).await);
    }
    assert!(
        wait_until(Duration::from_secs(30), || async {
            sims.genesys_stats().await["notifications"]["deliveries"] == 100
        })
        .await,
        "the simulator did not write 100 notifications to the socket"
    );
    let mut process = child.0.take().unwrap();
    assert!(std::process::Command::new("kill")
        .arg("-TERM")
        .arg(process.id().to_string())
        .status()
        .unwrap()
        .success());
    let status = tokio::task::spawn_blocking(move || process.wait().unwrap())
        .await
        .unwrap();
    assert!(status.success(), "exit status {status:?}");
    assert!(wait_sockets(&sims, 0).await, "socket still open after exit");
    let want: HashSet<usize> = (0..100).collect();
    let by_seq = records_by_seq(&broker.addr(), &raw, &want);
    assert_eq!(
        by_seq.len(),
        100,
        "read before SIGTERM and not in the raw topic"
    );
}

/// Shutdown while the broker is down ends within bounded time: what Kafka never took is
/// counted in `relay_listen_dropped_total{reason="shutdown"}`, not silently lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_with_the_broker_down_is_bounded_and_counts_what_was_dropped() {
    let mut broker = Broker::dedicated();
    let sims = Sims::start().await;
    known_queue(&sims).await;
    let prefix = unique_prefix("listen-down");
    let topic = queue_topic();
    let relay = start_listener(
        &broker.addr(),
        &sims,
        &prefix,
        &[
            ("RELAY_LISTEN_TOPICS", topic.as_str()),
            ("RELAY_SHUTDOWN_TIMEOUT", "2s"),
        ],
    )
    .await;
    assert!(wait_sockets(&sims, 1).await);
    broker = tokio::task::spawn_blocking(move || {
        broker.stop();
        broker
    })
    .await
    .unwrap();
    for s in 0..30 {
        assert!(publish(&sims, s).await);
    }
    let metrics = relay.metrics.clone();
    assert!(
        wait_until(Duration::from_secs(30), || async {
            sims.genesys_stats().await["notifications"]["deliveries"] == 30
        })
        .await
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    let stopped = tokio::time::timeout(Duration::from_secs(120), relay.stop()).await;
    assert!(stopped.is_ok(), "shutdown did not end");
    let acked = metrics
        .listen_notifications_total
        .with_label_values(&["v2.routing.queues.{id}.conversations"])
        .get();
    let dropped = metrics
        .listen_dropped_total
        .with_label_values(&["shutdown"])
        .get();
    eprintln!("listen shutdown with the broker down: acked {acked}, dropped {dropped}");
    assert_eq!(acked + dropped, 30);
    drop(broker);
}

/// Two listen processes on the same topic (high availability): each notification reaches
/// the raw topic twice, both copies with one event id, so the workers dedupe them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_listeners_write_duplicates_with_one_event_id() {
    let broker = Broker::start();
    let sims = Sims::start().await;
    known_queue(&sims).await;
    let prefix = unique_prefix("listen-ha");
    let raw = Topics::new(&prefix, 3).raw;
    let topic = queue_topic();
    let extra = [("RELAY_LISTEN_TOPICS", topic.as_str())];
    let a = start_listener(&broker.addr(), &sims, &prefix, &extra).await;
    let b = start_listener(&broker.addr(), &sims, &prefix, &extra).await;
    assert!(wait_sockets(&sims, 2).await);
    for s in 0..50 {
        let answer = post(&sims, "/__sim/notify", &notification(s)).await;
        assert_eq!(answer["queued"], 2);
    }
    let records = read_records(&broker, &raw, 100, Duration::from_secs(60));
    assert_eq!(records.len(), 100);
    let codec = Codec::single_object();
    let mut ids_by_seq: BTreeMap<String, HashSet<String>> = BTreeMap::new();
    for r in &records {
        let event: RawEvent = codec.decode(r.payload().unwrap()).unwrap();
        let body: Value = serde_json::from_str(&event.payload).unwrap();
        let conversation = body["eventBody"]["id"].as_str().unwrap().to_string();
        ids_by_seq
            .entry(conversation)
            .or_default()
            .insert(event.event_id);
    }
    assert_eq!(ids_by_seq.len(), 50);
    assert!(
        ids_by_seq.values().all(|ids| ids.len() == 1),
        "one event id per notification"
    );
    a.stop().await;
    b.stop().await;
}

/// High availability (docs/listen.md): two `genesys-relay listen` processes on one topic,
/// one SIGKILLed mid-stream. Every notification published reaches the raw topic, and the
/// worker syncs each event once: the other copies are duplicates, never a second CMS write.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_of_two_listeners_sigkilled_loses_nothing_and_each_event_syncs_once() {
    use std::process::{Command, Stdio};
    let broker = Broker::start();
    let sims = Sims::start().await;
    known_queue(&sims).await;
    let prefix = unique_prefix("listen-kill");
    let raw = Topics::new(&prefix, 3).raw;
    let topic = queue_topic();
    let extra = [("RELAY_LISTEN_TOPICS", topic.as_str())];
    let vars = role_vars(&broker.addr(), &sims, &prefix, &extra);
    /// A listen process, SIGKILLed and reaped when dropped (also when the test fails).
    struct Listener(std::process::Child);
    impl Drop for Listener {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let spawn = || {
        let child = Command::new(env!("CARGO_BIN_EXE_genesys-relay"))
            .arg("listen")
            .envs(&vars)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        Listener(child)
    };
    let mut killed = Some(spawn());
    let survivor = spawn();
    assert!(wait_sockets(&sims, 2).await, "{}", notif_stats(&sims).await);
    let worker = start_role(Role::Worker, &broker.addr(), &sims, &prefix, &extra).await;

    let events = 40;
    let mut want = HashSet::new();
    for seq in 0..events {
        if seq == events / 2 {
            drop(killed.take()); // SIGKILL
        }
        assert!(
            publish(&sims, seq).await,
            "no socket took notification {seq}"
        );
        want.insert(seq);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let got = records_by_seq(&broker.addr(), &raw, &want);
    let missing: Vec<_> = want.iter().filter(|s| !got.contains_key(s)).collect();
    assert!(
        missing.is_empty(),
        "lost {missing:?}: {}",
        notif_stats(&sims).await
    );
    assert!(
        got.values()
            .all(|ids| ids.iter().collect::<HashSet<_>>().len() == 1),
        "one event id per notification: {got:?}"
    );
    let copies: usize = got.values().map(Vec::len).sum();
    assert!(copies > events, "both listeners wrote: {copies} records");

    let processed = |outcome: &str| {
        metric_value(
            &worker.metrics.render(),
            &format!("relay_events_processed_total{{outcome=\"{outcome}\",route=\"guest_sync\"}}"),
        )
    };
    assert!(
        wait_until(Duration::from_secs(60), || async {
            processed("synced") + processed("duplicate") >= copies as f64
        })
        .await,
        "synced {}, duplicate {}, records {copies}",
        processed("synced"),
        processed("duplicate")
    );
    // Let a send that raced the metric arrive before counting.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let stats = sims.cms_stats().await;
    assert_nothing_sent_twice(&stats);
    let writes = per_key(&stats, "writes_by_key");
    assert_eq!(writes.len(), events, "{writes:?}");
    assert!(writes.values().all(|n| *n == 1), "{writes:?}");
    assert_eq!(processed("synced"), events as f64);
    eprintln!(
        "two listeners, one SIGKILLed: {copies} records for {events} notifications, {} duplicates",
        processed("duplicate")
    );
    worker.stop().await;
    drop(survivor);
}

/// Genesys removes the channel (as when a 21st channel or an expired token ends it): the
/// socket closes, reconnecting to the channel answers `{"result":"404"}`, and the listener
/// creates and subscribes a new channel.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removed_channel_is_replaced() {
    let broker = Broker::start();
    let sims = Sims::start().await;
    known_queue(&sims).await;
    let prefix = unique_prefix("listen-gone");
    let raw = Topics::new(&prefix, 3).raw;
    let topic = queue_topic();
    let relay = start_listener(
        &broker.addr(),
        &sims,
        &prefix,
        &[("RELAY_LISTEN_TOPICS", topic.as_str())],
    )
    .await;
    assert!(wait_sockets(&sims, 1).await);
    // Forget every channel (and token): the socket is closed by the server.
    post(&sims, "/__sim/reset", &json!({})).await;
    known_queue(&sims).await;
    let m = relay.metrics.clone();
    assert!(
        wait_until(Duration::from_secs(60), || async {
            m.listen_reconnects_total
                .with_label_values(&["channel_gone"])
                .get()
                >= 1
                && notif_stats(&sims).await["sockets_open"] == 1
        })
        .await,
        "no new channel: {}",
        notif_stats(&sims).await
    );
    let stats = notif_stats(&sims).await;
    assert_eq!(stats["subscribed_topics"], 1, "{stats}");
    assert!(publish(&sims, 1).await);
    assert_eq!(
        read_records(&broker, &raw, 1, Duration::from_secs(30)).len(),
        1
    );
    relay.stop().await;
}

/// The local stack's pull-mode demo (scripts/local-stack.sh), as printed: three simulator
/// queues, `serve` with `RELAY_LISTEN_QUEUES=all`, one queue conversation notification ->
/// its customer attributes in the CMS.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_stack_pull_demo_reaches_the_cms() {
    let broker = Broker::start();
    let sims = Sims::start().await;
    let prefix = unique_prefix("listen-demo");
    post(&sims, "/__sim/queues", &json!({"count": 3})).await;
    let relay = start_role(
        Role::Serve,
        &broker.addr(),
        &sims,
        &prefix,
        &[
            ("RELAY_LISTEN_QUEUES", "all"),
            ("RELAY_WEBHOOK_SECRET", "local-dev-secret"),
        ],
    )
    .await;
    assert!(wait_sockets(&sims, 1).await);
    let demo = r#"{"topicName":"v2.routing.queues.5a1e0000-0000-4000-8000-000000000000.conversations","version":"2","eventBody":{"id":"conv-2","participants":[{"id":"p-2","purpose":"customer","attributes":{"cart_value":"42.50","last_page":"/checkout"}}]},"metadata":{"CorrelationId":"demo-2"}}"#;
    let r = sims
        .http
        .post(format!("{}/__sim/notify", sims.genesys.base_url()))
        .header("content-type", "application/json")
        .body(demo)
        .send()
        .await
        .unwrap();
    let answer: Value = r.json().await.unwrap();
    assert_eq!(answer["queued"], 1, "{answer}");
    let entry_url = format!("{}/v1/entries/conv-2", sims.cms.base_url());
    let http = sims.http.clone();
    assert!(
        wait_until(Duration::from_secs(60), || {
            let (http, url) = (http.clone(), entry_url.clone());
            async move { http.get(&url).send().await.is_ok_and(|r| r.status() == 200) }
        })
        .await,
        "conv-2 never reached the CMS"
    );
    let entry: Value = sims
        .http
        .get(&entry_url)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    eprintln!("pull demo CMS entry: {entry}");
    assert!(entry.to_string().contains("/checkout"), "{entry}");
    relay.stop().await;
}

/// Starts a listener and hands back the start-up error as text instead of panicking.
async fn try_start_listener(
    broker_addr: &str,
    sims: &Sims,
    prefix: &str,
    extra: &[(&str, &str)],
) -> Result<RunningRelay, String> {
    let mut vars = relay_vars_at(broker_addr, prefix, extra);
    vars.extend(sims.vars());
    for (k, v) in extra {
        vars.insert(k.to_string(), v.to_string());
    }
    let cfg = genesys_relay::app::Config::from_vars(&vars).unwrap();
    app::start(cfg, Role::Listen)
        .await
        .map_err(|e| e.to_string())
}

/// A bearer token of the simulator's OAuth client, as another process would hold.
async fn sim_token(sims: &Sims) -> String {
    let token: Value = sims
        .http
        .post(format!("{}/oauth/token", sims.genesys.base_url()))
        .basic_auth("sim-client", Some("sim-secret"))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    token["access_token"].as_str().unwrap().to_string()
}

/// Genesys answers each topic with `state`; an unknown queue among known ones is
/// `Rejected`. The listener subscribes with `ignoreErrors=true`, runs on the permitted
/// topic, and counts the rejected one in `relay_listen_topics_rejected` (once, however
/// often the channel is re-subscribed).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rejected_topic_is_counted_and_the_others_deliver() {
    let broker = Broker::start();
    let sims = Sims::start().await;
    known_queue(&sims).await;
    let prefix = unique_prefix("listen-rejected");
    let raw = Topics::new(&prefix, 3).raw;
    let unknown = "5a1e0000-0000-4000-8000-00000000dead";
    let queues = format!("{QUEUE},{unknown}");
    let relay = try_start_listener(
        &broker.addr(),
        &sims,
        &prefix,
        &[("RELAY_LISTEN_QUEUES", queues.as_str())],
    )
    .await
    .expect("one permitted topic is enough to start");
    assert!(wait_sockets(&sims, 1).await, "{}", notif_stats(&sims).await);
    let stats = notif_stats(&sims).await;
    assert_eq!(stats["subscribed_topics"], 1, "{stats}");
    assert_eq!(stats["topics_rejected"], 1, "{stats}");
    assert_eq!(relay.metrics.listen_topics_rejected.get(), 1);
    for seq in 0..5 {
        assert!(publish(&sims, seq).await);
    }
    assert_eq!(
        read_records(&broker, &raw, 5, Duration::from_secs(30)).len(),
        5
    );
    // A socket_closing rotation asks for both topics again: still one rejected topic.
    sims.genesys_faults(json!({"socket_closing_next": 1})).await;
    assert!(publish(&sims, 5).await);
    let m = relay.metrics.clone();
    assert!(
        wait_until(Duration::from_secs(30), || async {
            m.listen_reconnects_total
                .with_label_values(&["socket_closing"])
                .get()
                >= 1
        })
        .await
    );
    assert_eq!(notif_stats(&sims).await["topics_rejected"], 2);
    assert_eq!(relay.metrics.listen_topics_rejected.get(), 1);
    relay.stop().await;
}

/// When Genesys permits none of the topics (here: an unknown queue, and a queue topic
/// the OAuth client lacks a permission for), the listener refuses to start and says why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_up_fails_when_no_topic_is_permitted() {
    let broker = Broker::start();
    let sims = Sims::start().await;
    known_queue(&sims).await;
    sim_settings(
        &sims,
        json!({"denied_topics": {"v2.routing.queues.{id}.conversations": ["routing:queue:view"]}}),
    )
    .await;
    let err = try_start_listener(
        &broker.addr(),
        &sims,
        &unique_prefix("listen-none"),
        &[("RELAY_LISTEN_QUEUES", QUEUE)],
    )
    .await
    .err()
    .expect("start-up must fail");
    assert!(err.contains("permitted none"), "{err}");
    assert!(err.contains(&queue_topic()), "{err}");
    assert!(err.contains("routing:queue:view"), "{err}");

    sim_settings(&sims, json!({"denied_topics": {}})).await;
    let unknown = "5a1e0000-0000-4000-8000-00000000dead";
    let err = try_start_listener(
        &broker.addr(),
        &sims,
        &unique_prefix("listen-none"),
        &[("RELAY_LISTEN_QUEUES", unknown)],
    )
    .await
    .err()
    .expect("start-up must fail");
    assert!(err.contains(unknown) && err.contains("not found"), "{err}");
}

/// The simulator lists a token's own channels by default and every channel of the OAuth
/// client with `includechannels=oauthclient` (other tokens' without their id); a channel
/// ends with the token that created it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simulator_ties_channels_to_their_token() {
    let sims = Sims::start().await;
    let base = sims.genesys.base_url();
    sims.genesys_faults(json!({"token_ttl_s": 2})).await;
    let short = sim_token(&sims).await;
    sims.genesys_faults(json!({"token_ttl_s": 3600})).await;
    let long = sim_token(&sims).await;
    for token in [&short, &long] {
        let r = sims
            .http
            .post(format!("{base}/api/v2/notifications/channels"))
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }
    let list = |q: &'static str| {
        let http = sims.http.clone();
        let url = format!("{base}/api/v2/notifications/channels") + q;
        let long = long.clone();
        async move {
            http.get(url)
                .bearer_auth(&long)
                .send()
                .await
                .unwrap()
                .json::<Value>()
                .await
                .unwrap()["entities"]
                .as_array()
                .unwrap()
                .clone()
        }
    };
    assert_eq!(list("").await.len(), 1);
    let all = list("?includechannels=oauthclient").await;
    assert_eq!(all.len(), 2);
    assert_eq!(all.iter().filter(|c| c["id"].is_string()).count(), 1);
    let bad = sims
        .http
        .get(format!(
            "{base}/api/v2/notifications/channels?includechannels=all"
        ))
        .bearer_auth(&long)
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(list("?includechannels=oauthclient").await.len(), 1);
    assert_eq!(notif_stats(&sims).await["channels_token_expired"], 1);
}

/// Channels end with their token: with 6-second tokens the listener rotates each channel
/// ahead of its token's expiry, onto a channel made with a fresh token, and nothing
/// published meanwhile is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn channels_rotate_ahead_of_their_token() {
    let broker = Broker::start();
    let sims = Sims::start().await;
    known_queue(&sims).await;
    sims.genesys_faults(json!({"token_ttl_s": 6})).await;
    let prefix = unique_prefix("listen-token");
    let raw = Topics::new(&prefix, 3).raw;
    let topic = queue_topic();
    let relay = start_listener(
        &broker.addr(),
        &sims,
        &prefix,
        &[
            ("RELAY_LISTEN_TOPICS", topic.as_str()),
            ("RELAY_LISTEN_ROTATE_BEFORE", "2s"),
        ],
    )
    .await;
    assert!(wait_sockets(&sims, 1).await);
    let mut want = HashSet::new();
    let started = Instant::now();
    let mut seq = 0;
    while started.elapsed() < Duration::from_secs(15) {
        publish(&sims, seq).await;
        want.insert(seq);
        seq += 1;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let got = records_by_seq(&broker.addr(), &raw, &want);
    let missing: Vec<_> = want.iter().filter(|s| !got.contains_key(s)).collect();
    let stats = notif_stats(&sims).await;
    assert!(missing.is_empty(), "lost {missing:?}: {stats}");
    // Every notification reached a socket. A new channel is subscribed just before its
    // socket connects, so a copy it misses then while the old socket delivers it counts
    // `undelivered`, not `lost`.
    assert_eq!(stats["lost"], 0, "{stats}");
    let m = &relay.metrics;
    assert!(
        m.listen_reconnects_total
            .with_label_values(&["token_expiring"])
            .get()
            >= 2,
        "{stats}"
    );
    for reason in ["channel_gone", "dropped"] {
        assert_eq!(
            m.listen_reconnects_total.with_label_values(&[reason]).get(),
            0,
            "{reason}: {stats}"
        );
    }
    relay.stop().await;
}

/// The 20 channels are per OAuth client, across tokens and processes: with 19 held by
/// another process, this one (1 channel + 1 kept free) would push one out, so start-up
/// fails and names the numbers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_up_fails_when_the_oauth_client_has_no_room() {
    let broker = Broker::start();
    let sims = Sims::start().await;
    known_queue(&sims).await;
    let other = sim_token(&sims).await;
    for _ in 0..19 {
        let r = sims
            .http
            .post(format!(
                "{}/api/v2/notifications/channels",
                sims.genesys.base_url()
            ))
            .bearer_auth(&other)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }
    let topic = queue_topic();
    let err = try_start_listener(
        &broker.addr(),
        &sims,
        &unique_prefix("listen-full"),
        &[("RELAY_LISTEN_TOPICS", topic.as_str())],
    )
    .await
    .err()
    .expect("start-up must fail");
    assert!(err.contains("already holds 19"), "{err}");
    let stats = notif_stats(&sims).await;
    assert_eq!(stats["channels"], 19, "{stats}");
    assert_eq!(stats["channels_replaced"], 0, "{stats}");
}

/// Posts `body` text to the ingress with the webhook secret; asserts 202.
async fn post_raw(sims: &Sims, relay: &RunningRelay, body: &str) {
    let r = sims
        .http
        .post(format!(
            "http://{}/webhooks/genesys",
            relay.ingress_addr.unwrap()
        ))
        .header("content-type", "application/json")
        .header("x-relay-secret", "one-id-secret")
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202, "{}", r.text().await.unwrap());
}

/// One queue conversation notification, as the three paths deliver it (each formatted
/// its own way): EventBridge `detail`, a trigger Data Action body (the notification with
/// other key order, whitespace, `1.0` for `1` and a `\u` escape) and the WebSocket.
fn one_event_three_ways(eventbridge_id: &str) -> (Value, String, String) {
    let conv = "c0ffee00-0000-4000-8000-0000000001d0";
    let topic = queue_topic();
    let websocket = json!({
        "topicName": topic,
        "version": "2",
        "eventBody": {"id": conv, "participants": [{"id": "p-1d", "purpose": "customer",
            "attributes": {"cart_value": "42.50", "items": 1}}]},
        "metadata": {"CorrelationId": "ws"}
    });
    let data_action = format!(
        "{{ \"metadata\": {{\"CorrelationId\": \"da\"}},\n  \"eventBody\": {{ \"participants\": [ {{ \"attributes\": {{ \"items\": 1.0, \"cart_value\": \"42.5\\u0030\" }}, \"purpose\": \"customer\", \"id\": \"p-1d\" }} ], \"id\": \"{conv}\" }},\n  \"topicName\": \"{topic}\", \"version\": \"2\" }}"
    );
    let eventbridge = json!({
        "version": "0", "id": eventbridge_id,
        "detail-type": "v2.routing.queues.{id}.conversations",
        "source": "aws.partner/genesys.com/cloud/org/relay", "account": "123456789012",
        "time": "2026-11-25T08:30:00Z", "region": "us-east-1", "resources": [],
        "detail": {"topicName": topic, "version": "2", "eventBody": websocket["eventBody"].clone(),
            "metadata": {"CorrelationId": "eb"}, "timestamp": "2026-11-25T08:30:00.500Z"}
    })
    .to_string();
    (websocket, data_action, eventbridge)
}

/// The same Genesys notification through EventBridge, a Data Action and the WebSocket
/// reaches the CMS once: one id whatever the path.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_event_through_three_paths_syncs_once() {
    let broker = Broker::start();
    let sims = Sims::start().await;
    known_queue(&sims).await;
    let prefix = unique_prefix("listen-one-id");
    let topic = queue_topic();
    let relay = start_role(
        Role::Serve,
        &broker.addr(),
        &sims,
        &prefix,
        &[
            ("RELAY_LISTEN_TOPICS", topic.as_str()),
            ("RELAY_WEBHOOK_SECRET", "one-id-secret"),
        ],
    )
    .await;
    assert!(wait_sockets(&sims, 1).await);
    let (websocket, data_action, eventbridge) = one_event_three_ways("eb-0001");
    post_raw(&sims, &relay, &eventbridge).await;
    post_raw(&sims, &relay, &data_action).await;
    assert_eq!(post(&sims, "/__sim/notify", &websocket).await["queued"], 1);
    let processed = |outcome: &str| {
        metric_value(
            &relay.metrics.render(),
            &format!("relay_events_processed_total{{outcome=\"{outcome}\",route=\"guest_sync\"}}"),
        )
    };
    assert!(
        wait_until(Duration::from_secs(60), || async {
            processed("synced") + processed("duplicate") >= 3.0
        })
        .await,
        "synced {}, duplicate {}",
        processed("synced"),
        processed("duplicate")
    );
    let stats = sims.cms_stats().await;
    eprintln!("three paths, CMS: {}", stats["attempts_by_key"]);
    let attempts: u64 = stats["attempts_by_key"]
        .as_object()
        .unwrap()
        .values()
        .map(|v| v.as_u64().unwrap())
        .sum();
    assert_eq!(attempts, 1, "one CMS write for one event: {stats}");
    assert_eq!(syncs_by_key(&stats).len(), 1);
    assert_eq!((processed("synced"), processed("duplicate")), (1.0, 2.0));
    relay.stop().await;
}

/// Across the upgrade: the previous relay synced an EventBridge event under its
/// EventBridge `id`; the redelivery now gets the notification's id and is still
/// recognised (the record carries the old id), so it is not synced again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_eventbridge_event_synced_under_its_old_id_is_not_synced_again() {
    use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
    let broker = Broker::start();
    let sims = Sims::start().await;
    let prefix = unique_prefix("listen-upgrade");
    // The mark the previous relay wrote: `<route>:<EventBridge id>`.
    let mark = genesys_relay::schema::IdempotencyMark {
        handled_at_ms: genesys_relay::clock::now_ms(),
        event_time_ms: None,
        guest_id: None,
        outcome: genesys_relay::schema::MarkOutcome::Synced,
    };
    let value = Codec::single_object().encode(&mark).unwrap();
    let p: BaseProducer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", broker.addr())
        .create()
        .unwrap();
    let topics = Topics::new(&prefix, 3);
    genesys_relay::kafka::ensure_topics(
        &genesys_relay::app::Config::from_vars(&relay_vars_at(&broker.addr(), &prefix, &[]))
            .unwrap(),
        &topics,
    )
    .await
    .unwrap();
    p.send(
        BaseRecord::to(&format!("{prefix}.relay.idempotency"))
            .key("guest_sync:eb-upgrade-1")
            .payload(&value),
    )
    .unwrap();
    p.flush(Duration::from_secs(10)).unwrap();
    let relay = start_role(
        Role::Serve,
        &broker.addr(),
        &sims,
        &prefix,
        &[("RELAY_WEBHOOK_SECRET", "one-id-secret")],
    )
    .await;
    let (_, _, eventbridge) = one_event_three_ways("eb-upgrade-1");
    post_raw(&sims, &relay, &eventbridge).await;
    let processed = |outcome: &str| {
        metric_value(
            &relay.metrics.render(),
            &format!("relay_events_processed_total{{outcome=\"{outcome}\",route=\"guest_sync\"}}"),
        )
    };
    assert!(
        wait_until(Duration::from_secs(60), || async {
            processed("synced") + processed("duplicate") >= 1.0
        })
        .await
    );
    let stats = sims.cms_stats().await;
    assert_eq!(processed("duplicate"), 1.0, "{stats}");
    assert_eq!(processed("synced"), 0.0);
    assert!(syncs_by_key(&stats).is_empty(), "synced again: {stats}");
    relay.stop().await;
}
