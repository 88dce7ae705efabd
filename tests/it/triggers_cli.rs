//! `genesys-relay triggers register` end to end against genesys-sim's Process Automation
//! triggers: idempotent across runs, finds its trigger on the third page by following
//! `nextUri`, and updates it (with its current `version`) when the spec changes; asks for
//! the `Json` data format, so the workflow (docs/connecting.md's recipe) gets the event as
//! `jsonData` and its Data Action has a body to send; keeps what a user set by hand on an
//! update; refuses a topic the org's trigger topics do not list, naming the closest ones.

use genesys_sim::{GenesysSimOptions, SimServer};
use serde_json::{json, Value};

const TOPIC: &str = "v2.detail.events.conversation.{id}.customer.start";

async fn token(client: &reqwest::Client, sim: &SimServer) -> String {
    let resp = client
        .post(format!("{}/oauth/token", sim.base_url()))
        .basic_auth("sim-client", Some("sim-secret"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("grant_type=client_credentials")
        .send()
        .await
        .unwrap();
    assert!(resp.status().is_success());
    let body: Value = resp.json().await.unwrap();
    body["access_token"].as_str().unwrap().to_string()
}

/// Every trigger, across all pages (following `nextUri`).
async fn all_triggers(client: &reqwest::Client, sim: &SimServer, token: &str) -> Vec<Value> {
    let mut out = Vec::new();
    let mut next = Some("/api/v2/processautomation/triggers?pageSize=200".to_string());
    while let Some(uri) = next {
        let body: Value = client
            .get(format!("{}{uri}", sim.base_url()))
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        out.extend(body["entities"].as_array().unwrap().iter().cloned());
        next = body["nextUri"].as_str().map(str::to_string);
    }
    out
}

async fn register(sim: &SimServer, workflow: &str, extra: &[&str]) -> (bool, String, String) {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_genesys-relay"))
        .args([
            "triggers",
            "register",
            "--topic",
            TOPIC,
            "--workflow-id",
            workflow,
        ])
        .args(["--name", "relay-trigger"])
        .args(extra)
        .env("RELAY_GENESYS_API_BASE", sim.base_url())
        .env("RELAY_GENESYS_LOGIN_BASE", sim.base_url())
        .env("RELAY_GENESYS_CLIENT_ID", "sim-client")
        .env("RELAY_GENESYS_CLIENT_SECRET", "sim-secret")
        .output()
        .await
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

async fn list_requests(sim: &SimServer) -> u64 {
    let stats: Value = reqwest::get(format!("{}/__sim/stats", sim.base_url()))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    stats["requests"]["GET /api/v2/processautomation/triggers"]["200"]
        .as_u64()
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn register_is_idempotent_across_three_pages() {
    let sim =
        genesys_sim::start_genesys("127.0.0.1:0".parse().unwrap(), GenesysSimOptions::default())
            .await
            .unwrap();
    let client = reqwest::Client::new();
    let token = token(&client, &sim).await;
    // 250 others: the command lists 100 per page, so ours (the 251st) is on page 3.
    for i in 0..250 {
        let resp = client
            .post(format!(
                "{}/api/v2/processautomation/triggers",
                sim.base_url()
            ))
            .bearer_auth(&token)
            .json(&json!({
                "name": format!("other-{i}"),
                "topicName": "v2.users.{id}.presence",
                "target": {"type": "Workflow", "id": format!("wf-{i}")},
                "enabled": true,
            }))
            .send()
            .await
            .unwrap();
        assert!(resp.status().is_success());
    }

    let (ok, created, err) = register(&sim, "wf-relay", &["--match", "$.mediaType=MESSAGE"]).await;
    assert!(ok, "{err}");
    let id = created
        .strip_prefix("created ")
        .unwrap_or_else(|| panic!("{created:?}"))
        .trim()
        .to_string();
    assert!(!id.is_empty());
    assert_eq!(list_requests(&sim).await, 3, "walked all three pages");

    // The same spec again: found on page 3, left alone.
    let (ok, again, err) = register(&sim, "wf-relay", &["--match", "$.mediaType=MESSAGE"]).await;
    assert!(ok, "{err}");
    assert_eq!(again, format!("unchanged {id}\n"));
    assert_eq!(list_requests(&sim).await, 6);

    // Another workflow: updated in place (same id, version bumped), never duplicated.
    let (ok, moved, err) = register(&sim, "wf-other", &["--match", "$.mediaType=MESSAGE"]).await;
    assert!(ok, "{err}");
    assert_eq!(moved, format!("updated {id}\n"));
    let (ok, again, err) = register(&sim, "wf-other", &["--match", "$.mediaType=MESSAGE"]).await;
    assert!(ok, "{err}");
    assert_eq!(again, format!("unchanged {id}\n"));

    let triggers = all_triggers(&client, &sim, &token).await;
    assert_eq!(triggers.len(), 251);
    let ours: Vec<&Value> = triggers
        .iter()
        .filter(|t| t["name"] == "relay-trigger")
        .collect();
    assert_eq!(ours.len(), 1, "exactly one relay-trigger: {ours:?}");
    let ours = ours[0];
    assert_eq!(ours["id"], id.as_str());
    assert_eq!(ours["topicName"], TOPIC);
    assert_eq!(
        ours["target"],
        json!({"type": "Workflow", "id": "wf-other", "workflowTargetSettings": {"dataFormat": "Json"}})
    );
    assert_eq!(ours["enabled"], true);
    assert_eq!(ours["version"], 2);
    assert_eq!(
        ours["matchCriteria"],
        json!([{"jsonPath": "$.mediaType", "operator": "Equal", "value": "MESSAGE"}])
    );

    // Without credentials the command names the missing setting.
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_genesys-relay"))
        .args([
            "triggers",
            "register",
            "--topic",
            TOPIC,
            "--workflow-id",
            "w",
        ])
        .env_remove("RELAY_GENESYS_CLIENT_ID")
        .env_remove("RELAY_GENESYS_CLIENT_SECRET")
        .output()
        .await
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("RELAY_GENESYS_CLIENT_ID"));
    sim.shutdown().await;
}

async fn sim() -> SimServer {
    genesys_sim::start_genesys("127.0.0.1:0".parse().unwrap(), GenesysSimOptions::default())
        .await
        .unwrap()
}

async fn sim_json(client: &reqwest::Client, url: String) -> Value {
    client.get(url).send().await.unwrap().json().await.unwrap()
}

/// The trigger registered by the command fires on a published `customer.start` event, and
/// the workflow gets the event as `Flow.jsonData`: the recipe's Data Action then sends
/// `{topicName, version, eventBody}` with the whole event. (Without `dataFormat: Json`
/// Genesys sends top-level primitives only and `Flow.jsonData` is NOT_SET.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_registered_trigger_delivers_the_whole_event_to_the_workflow() {
    let sim = sim().await;
    let client = reqwest::Client::new();
    let (ok, out, err) = register(&sim, "wf-relay", &["--match", "$.mediaType=MESSAGE"]).await;
    assert!(ok, "{err}");
    assert!(out.starts_with("created "), "{out}");

    let conversation = "c0ffee00-0000-4000-8000-000000000042";
    let topic = format!("v2.detail.events.conversation.{conversation}.customer.start");
    let event = json!({
        "eventTime": 1795595400123u64,
        "conversationId": conversation,
        "participantId": "9a7d0000-0000-4000-8000-000000000001",
        "mediaType": "MESSAGE",
        "direction": "INBOUND",
        "externalContactId": "e0000000-0000-4000-8000-000000000001",
    });
    for (body, media) in [
        (event.clone(), "MESSAGE"),
        (
            json!({"conversationId": conversation, "mediaType": "CALL"}),
            "CALL",
        ),
    ] {
        let r = client
            .post(format!("{}/__sim/notify", sim.base_url()))
            .json(&json!({"topicName": topic, "version": "2", "eventBody": body}))
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "notify {media}");
    }

    let invocations = sim_json(
        &client,
        format!("{}/__sim/workflows/invocations", sim.base_url()),
    )
    .await;
    let all = invocations["entities"].as_array().unwrap();
    assert_eq!(
        all.len(),
        1,
        "only the MESSAGE event matches: {invocations}"
    );
    let inv = &all[0];
    assert_eq!(inv["workflowId"], "wf-relay");
    assert_eq!(inv["dataFormat"], "Json", "{inv}");
    assert_eq!(inv["inputs"]["jsonData"], event, "{inv}");
    assert_eq!(
        inv["dataAction"]["body"],
        json!({"topicName": topic, "version": "2", "eventBody": event}),
        "{inv}"
    );
    sim.shutdown().await;
}

/// A trigger a user created or edited by hand (description, TTL, a field this relay does
/// not know, the TopLevelPrimitives format) is updated to the spec without losing any of
/// it, and is then left alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_update_keeps_what_a_user_set_by_hand() {
    let sim = sim().await;
    let client = reqwest::Client::new();
    let token = token(&client, &sim).await;
    let by_hand = json!({
        "name": "relay-trigger",
        "topicName": TOPIC,
        "target": {"type": "Workflow", "id": "wf-relay",
                   "workflowTargetSettings": {"dataFormat": "TopLevelPrimitives"}},
        "matchCriteria": [{"jsonPath": "$.mediaType", "operator": "Equal", "value": "MESSAGE"}],
        "enabled": true,
        "description": "set up by hand",
        "eventTTLSeconds": 60,
        "laterApiField": {"kept": true},
    });
    let created: Value = client
        .post(format!(
            "{}/api/v2/processautomation/triggers",
            sim.base_url()
        ))
        .bearer_auth(&token)
        .json(&by_hand)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = created["id"].as_str().unwrap().to_string();

    let (ok, out, err) = register(&sim, "wf-relay", &["--match", "$.mediaType=MESSAGE"]).await;
    assert!(ok, "{err}");
    assert_eq!(
        out,
        format!("updated {id}\n"),
        "a TopLevelPrimitives trigger is not what we want"
    );
    let now = sim_json(&client, format!("{}/__sim/stats", sim.base_url())).await;
    assert_eq!(now["triggers"], 1, "{now}");
    let stored: Value = client
        .get(format!(
            "{}/api/v2/processautomation/triggers/{id}",
            sim.base_url()
        ))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        stored["target"]["workflowTargetSettings"]["dataFormat"], "Json",
        "{stored}"
    );
    assert_eq!(stored["description"], "set up by hand", "{stored}");
    assert_eq!(stored["eventTTLSeconds"], 60, "{stored}");
    assert_eq!(stored["laterApiField"], json!({"kept": true}), "{stored}");
    assert_eq!(stored["version"], 2);

    let (ok, out, err) = register(&sim, "wf-relay", &["--match", "$.mediaType=MESSAGE"]).await;
    assert!(ok, "{err}");
    assert_eq!(out, format!("unchanged {id}\n"));
    sim.shutdown().await;
}

/// A topic the org's trigger topics do not list is refused before anything is created, and
/// the error names the closest topics.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_topic_is_refused_naming_the_closest() {
    let sim = sim().await;
    let client = reqwest::Client::new();
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_genesys-relay"))
        .args(["triggers", "register", "--workflow-id", "wf-relay"])
        .args([
            "--topic",
            "v2.detail.events.conversation.{id}.customer.strat",
        ])
        .env("RELAY_GENESYS_API_BASE", sim.base_url())
        .env("RELAY_GENESYS_LOGIN_BASE", sim.base_url())
        .env("RELAY_GENESYS_CLIENT_ID", "sim-client")
        .env("RELAY_GENESYS_CLIENT_SECRET", "sim-secret")
        .output()
        .await
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains("not a trigger topic")
            && err.contains("v2.detail.events.conversation.{id}.customer.start"),
        "{err}"
    );
    let stats = sim_json(&client, format!("{}/__sim/stats", sim.base_url())).await;
    assert_eq!(stats["triggers"], 0, "{stats}");
    assert!(
        stats["requests"]["POST /api/v2/processautomation/triggers"].is_null(),
        "nothing was sent to create: {stats}"
    );
    assert!(
        stats["requests"]["GET /api/v2/processautomation/triggers/topics"]["200"]
            .as_u64()
            .is_some_and(|n| n >= 1),
        "{stats}"
    );
    sim.shutdown().await;
}
