//! Over budget is backpressure, not churn: events that each need a Genesys call, more of
//! them than the request budget allows at once, wait in their lanes for their turn (the
//! consumer pauses when its in-flight limit is full) and reach the CMS at the budget's
//! rate, without cycling through the retry topics. The check counts what the relay wrote
//! to the retry topics, per event.
//!
//! `BACKPRESSURE_EVENTS`, `BACKPRESSURE_RATE` (the relay's budget per process, requests
//! per minute), `BACKPRESSURE_GENESYS_LIMIT` (the simulator's limit per token; default the
//! same), `BACKPRESSURE_WORKERS` and `BACKPRESSURE_PARTITIONS` scale the run by hand. The
//! production-sized run is 20000 events, the default budget 240 against Genesys's default
//! token limit 300, an ingress and 2 workers (each with its own token and budget) on 4
//! partitions (a multiple of the workers: the worker with more partitions sets the pace).
//! CI runs 40 events at 60 per minute against a limit of 60 through one `serve`.

use crate::common::*;
use genesys_relay::app::{self, Role};
use genesys_relay::kafka::Topics;
use serde_json::json;
use std::time::{Duration, Instant};

const CONVERSATION_GET: &str = "GET /api/v2/conversations/{conversationId}";

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_over_the_budget_wait_their_turn_instead_of_cycling_through_retries() {
    let events = env_or("BACKPRESSURE_EVENTS", 40);
    let rate = env_or("BACKPRESSURE_RATE", 60);
    let workers = env_or("BACKPRESSURE_WORKERS", 1).max(1);
    let limit = env_or("BACKPRESSURE_GENESYS_LIMIT", rate);
    let partitions = env_or("BACKPRESSURE_PARTITIONS", 3).to_string();
    let broker = Broker::start();
    let sims = Sims::start().await;
    sims.genesys_faults(json!({"rate_limit_per_minute": limit}))
        .await;
    let prefix = unique_prefix("backpressure");
    let rate_s = rate.to_string();
    let cfg = stack_config(
        &broker,
        &sims,
        &prefix,
        &[
            ("RELAY_GENESYS_RATE_LIMIT", &rate_s),
            ("RELAY_TOPIC_PARTITIONS", &partitions),
            // The fault suite's short tiers: a deferral is capped at the longest tier, so
            // with these an event deferred for a far slot came back long before it.
            ("RELAY_RETRY_DELAYS", "200ms,500ms,1s,2s,4s"),
        ],
    );
    // One `serve` (ingress and worker in one process), or an ingress and N workers.
    let mut relays = Vec::new();
    if workers == 1 {
        relays.push(app::start(cfg, Role::Serve).await.unwrap());
    } else {
        relays.push(app::start(cfg.clone(), Role::Ingress).await.unwrap());
        for _ in 0..workers {
            relays.push(app::start(cfg.clone(), Role::Worker).await.unwrap());
        }
    }
    let ingress = relays[0].ingress_addr.unwrap();
    let started = Instant::now();
    for i in 0..events {
        let body = envelope(
            "conversation:updated",
            &format!("bp-{i}"),
            "2026-11-25T08:00:00Z",
            json!({"conversationId": format!("bp-conv-{i}")}),
        );
        post_event(&sims.http, ingress, &body).await;
    }
    // The budget implies events / (rate x workers) minutes; allow twice that plus start-up.
    let implied = Duration::from_secs_f64(events as f64 * 60.0 / (rate * workers) as f64);
    let all = sims
        .wait_for_syncs(events, implied * 2 + Duration::from_secs(30))
        .await;
    let elapsed = started.elapsed();
    let topics = Topics::new(&prefix, 5);
    let retry_records: i64 = topics.retry.iter().map(|t| topic_size(&broker, t)).sum();
    let deferred: f64 = relays
        .iter()
        .map(|r| {
            metric_value(
                &r.metrics.render(),
                "relay_events_processed_total{outcome=\"deferred\",route=\"guest_sync\"}",
            )
        })
        .sum();
    let g = sims.genesys_stats().await;
    println!(
        "backpressure: {events} events, {workers} worker(s) at {rate}/min each (Genesys limit \
         {limit}/min per token, {partitions} partitions), synced in {elapsed:?} (budget implies \
         {implied:?}); retry-topic records {retry_records} ({:.2} per event), deferred {deferred}; \
         genesys {}",
        retry_records as f64 / events as f64,
        g["requests"]
    );
    assert!(all, "all {events} synced within {elapsed:?}; {g}");
    assert_eq!(
        g["rate_limited"], 0,
        "no request over the Genesys limit: {g}"
    );
    assert_eq!(
        sims.genesys_requests(CONVERSATION_GET, 200).await,
        events as u64,
        "one GET per event"
    );
    // Genesys never paused the budget here, so no event had a reason to leave its lane.
    assert_eq!(
        retry_records, 0,
        "no retry-topic writes for a busy budget ({deferred} deferred)"
    );
    // Start-up and the posting of the events come on top; 1% for the budget's spacing.
    assert!(
        elapsed < implied + implied / 100 + Duration::from_secs(20),
        "settled in about the time the budget implies: {elapsed:?} vs {implied:?}"
    );
    assert_nothing_sent_twice(&sims.cms_stats().await);
    for relay in relays {
        relay.stop().await;
    }
}
