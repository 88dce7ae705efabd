//! `guest_sync` writes Web Messaging customers only (`RELAY_GUEST_SYNC_SCOPE`): voice
//! conversations and agent participants are skipped with their reason, a Web Messaging
//! customer is synced, and an attributes event that does not say its media is synced with
//! no Genesys call. Events go through the ingress as Genesys delivers them (notification,
//! EventBridge), then the worker, against the simulators; what is counted is what the
//! relay sent to the CMS and to Genesys.

use crate::common::*;
use genesys_relay::app::{self, Role};
use genesys_relay::genesys::GenesysClient;
use genesys_relay::metrics::Metrics;
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Duration;

const CONVERSATION_GET: &str = "GET /api/v2/conversations/{conversationId}";

/// A queue conversation notification (`v2.routing.queues.{id}.conversations`) whose
/// customer carries `attributes` and the media lists in `customer_media`.
fn queue_notification(conversation: &str, customer_media: Value) -> Value {
    let mut customer = json!({"id": format!("{conversation}-cust"), "purpose": "customer",
        "attributes": {"cart_value": "10", "loyalty_tier": "gold"}});
    for (k, v) in customer_media.as_object().unwrap() {
        customer[k] = v.clone();
    }
    json!({
        "topicName": "v2.routing.queues.5b0e9b5e-4a52-4bb0-a7b8-0c4b8c2b7f10.conversations",
        "version": "2",
        "eventBody": {
            "id": conversation,
            "participants": [
                {"id": format!("{conversation}-agent"), "purpose": "agent", "attributes": {},
                 "calls": [{"id": "call-a", "state": "connected"}]},
                customer
            ]
        },
        "metadata": {"CorrelationId": format!("corr-{conversation}")}
    })
}

/// An attributes detail event as an EventBridge API destination delivers it.
fn attributes_event(id: &str, conversation: &str, participant: &str, extra: Value) -> Value {
    let mut body = json!({"eventTime": 1_764_059_400_123_i64, "conversationId": conversation,
        "participantId": participant, "attributes": {"cart_value": "3", "last_page": "/cart"}});
    for (k, v) in extra.as_object().unwrap() {
        body[k] = v.clone();
    }
    json!({
        "version": "0", "id": id,
        "detail-type": "v2.detail.events.conversation.{id}.attributes",
        "source": "aws.partner/genesys.com/cloud/org-1/relay",
        "account": "123456789012", "time": "2026-11-25T08:30:00Z", "region": "eu-west-1",
        "resources": [],
        "detail": {
            "topicName": format!("v2.detail.events.conversation.{conversation}.attributes"),
            "version": "2", "eventBody": body,
            "metadata": {"CorrelationId": format!("corr-{id}")},
            "timestamp": "2026-11-25T08:30:00.123Z"
        }
    })
}

fn skipped(metrics: &str, reason: &str) -> f64 {
    metric_value(
        metrics,
        &format!("relay_skipped_total{{reason=\"{reason}\",route=\"guest_sync\"}}"),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn by_default_voice_is_skipped_web_messaging_synced_and_silent_attribute_events_cost_no_call()
{
    let broker = Broker::start();
    let sims = Sims::start().await;
    let prefix = unique_prefix("scope");
    let relay = app::start(stack_config(&broker, &sims, &prefix, &[]), Role::Serve)
        .await
        .unwrap();
    let ingress = relay.ingress_addr.unwrap();

    // Skipped: a voice customer (queue notification), an attributes event of a voice call.
    let voice = "scope-voice-1";
    post_event(
        &sims.http,
        ingress,
        &queue_notification(
            voice,
            json!({"calls": [{"id": "call-c", "state": "connected"}]}),
        ),
    )
    .await;
    let voice_attrs = "scope-voice-2";
    post_event(
        &sims.http,
        ingress,
        &attributes_event(
            "eb-voice",
            voice_attrs,
            "p-2",
            json!({"communications": [{"id": "call-1", "mediaType": "VOICE"}]}),
        ),
    )
    .await;
    // Synced: a Web Messaging customer; an attributes event that says nothing of its media.
    let web = "scope-web-1";
    post_event(
        &sims.http,
        ingress,
        &queue_notification(
            web,
            json!({"messages": [{"id": "m-1", "state": "connected", "type": "webmessaging"}]}),
        ),
    )
    .await;
    let silent = "scope-silent-1";
    post_event(
        &sims.http,
        ingress,
        &attributes_event("eb-silent", silent, "p-4", json!({})),
    )
    .await;

    assert!(
        sims.wait_for_syncs(2, Duration::from_secs(60)).await,
        "{}",
        sims.cms_stats().await
    );
    assert!(
        wait_until(Duration::from_secs(30), || async {
            skipped(&relay.metrics.render(), "not_web_messaging") == 2.0
        })
        .await,
        "{}",
        relay.metrics.render()
    );
    let entries = sims.cms_stats().await["entries"].clone();
    assert!(
        entries.get(voice).is_none() && entries.get(voice_attrs).is_none(),
        "{entries}"
    );
    assert_eq!(entries[web]["cart_value"], 10);
    assert_eq!(entries[silent]["cart_value"], 3);
    assert_eq!(syncs_by_key(&sims.cms_stats().await).len(), 2);
    // Every decision came from the events: not one Genesys call, not even a token.
    let g = sims.genesys_stats().await;
    assert_eq!(g["requests"], json!({}), "{g}");
    assert_eq!(g["token_requests"], 0);
    relay.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checked_scope_skips_an_agent_participant_after_one_lookup() {
    let broker = Broker::start();
    let sims = Sims::start().await;
    let prefix = unique_prefix("scope-checked");
    let cfg = stack_config(
        &broker,
        &sims,
        &prefix,
        &[
            ("RELAY_GUEST_SYNC_SCOPE", "web_messaging_checked"),
            // Longer than the run: the second event is answered from the cache.
            ("RELAY_GENESYS_CACHE_TTL", "120s"),
        ],
    );
    // The simulator's conversations: find one that has an agent, and its participants.
    let genesys = GenesysClient::new(
        cfg.genesys.config().unwrap(),
        reqwest::Client::new(),
        Arc::new(Metrics::new()),
    );
    let mut found = None;
    for i in 0..50 {
        let id = format!("scope-agent-{i}");
        let c = genesys.conversation(&id).await.unwrap().unwrap();
        let of = |purpose: &str| {
            c.raw["participants"]
                .as_array()
                .unwrap()
                .iter()
                .find(|p| p["purpose"] == purpose)
                .map(|p| p["id"].as_str().unwrap().to_string())
        };
        if let (Some(agent), Some(customer)) = (of("agent"), of("customer")) {
            found = Some((id, agent, customer));
            break;
        }
    }
    let (conversation, agent, customer) = found.expect("a simulated conversation with an agent");
    let gets_before = sims.genesys_requests(CONVERSATION_GET, 200).await;

    let relay = app::start(cfg, Role::Serve).await.unwrap();
    let ingress = relay.ingress_addr.unwrap();
    post_event(
        &sims.http,
        ingress,
        &attributes_event("eb-agent", &conversation, &agent, json!({})),
    )
    .await;
    assert!(
        wait_until(Duration::from_secs(60), || async {
            skipped(&relay.metrics.render(), "not_customer") == 1.0
        })
        .await,
        "{}",
        relay.metrics.render()
    );
    assert!(
        sims.cms_stats().await["entries"]
            .get(&conversation)
            .is_none(),
        "an agent's attributes were synced"
    );
    // The customer of the same conversation is synced (the lookup is cached).
    post_event(
        &sims.http,
        ingress,
        &attributes_event("eb-customer", &conversation, &customer, json!({})),
    )
    .await;
    assert!(sims.wait_for_syncs(1, Duration::from_secs(60)).await);
    assert_eq!(
        sims.cms_stats().await["entries"][&conversation]["participantId"],
        customer.as_str()
    );
    assert_eq!(
        sims.genesys_requests(CONVERSATION_GET, 200).await - gets_before,
        1,
        "one lookup decided both events"
    );
    relay.stop().await;
}
