//! `genesys-relay webhooks register` end to end against the Genesys Cloud simulator:
//! idempotent across runs, and it finds its webhook beyond the first page.

use genesys_sim::{GenesysSimOptions, SimServer};
use serde_json::{json, Value};

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

/// Every webhook, across all pages.
async fn all_webhooks(client: &reqwest::Client, sim: &SimServer, token: &str) -> Vec<Value> {
    let mut out = Vec::new();
    for page in 1.. {
        let url = format!(
            "{}/api/v2/webhooks?pageSize=25&pageNumber={page}",
            sim.base_url()
        );
        let body: Value = client
            .get(url)
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let entities = body["entities"].as_array().unwrap();
        if entities.is_empty() {
            break;
        }
        out.extend(entities.iter().cloned());
    }
    out
}

async fn register(sim: &SimServer, url: &str) -> (bool, String, String) {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_genesys-relay"))
        .args(["webhooks", "register", "--url", url, "--name", "relay-hook"])
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn register_is_idempotent_across_pages() {
    let sim =
        genesys_sim::start_genesys("127.0.0.1:0".parse().unwrap(), GenesysSimOptions::default())
            .await
            .unwrap();
    let client = reqwest::Client::new();
    let token = token(&client, &sim).await;
    for i in 0..30 {
        let resp = client
            .post(format!("{}/api/v2/webhooks", sim.base_url()))
            .bearer_auth(&token)
            .json(&json!({"name": format!("other-{i}"), "url": format!("http://elsewhere/{i}")}))
            .send()
            .await
            .unwrap();
        assert!(resp.status().is_success());
    }

    let (ok, created, err) = register(&sim, "http://x/hook").await;
    assert!(ok, "{err}");
    let id = created
        .strip_prefix("created ")
        .unwrap_or_else(|| panic!("{created:?}"))
        .trim()
        .to_string();
    assert!(!id.is_empty());
    assert_eq!(created, format!("created {id}\n"));

    // Webhook 31 sits on page 2; the second run must find it there.
    let (ok, again, err) = register(&sim, "http://x/hook").await;
    assert!(ok, "{err}");
    assert_eq!(again, format!("unchanged {id}\n"));

    let (ok, moved, err) = register(&sim, "http://y/hook").await;
    assert!(ok, "{err}");
    assert_eq!(moved, format!("updated {id}\n"));

    let hooks = all_webhooks(&client, &sim, &token).await;
    assert_eq!(hooks.len(), 31);
    let ours: Vec<&Value> = hooks.iter().filter(|h| h["name"] == "relay-hook").collect();
    assert_eq!(ours.len(), 1, "exactly one relay-hook: {ours:?}");
    assert_eq!(ours[0]["id"], id.as_str());
    assert_eq!(ours[0]["url"], "http://y/hook");

    // Without credentials the command names the missing setting.
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_genesys-relay"))
        .args(["webhooks", "register", "--url", "http://x/hook"])
        .env_remove("RELAY_GENESYS_CLIENT_ID")
        .env_remove("RELAY_GENESYS_CLIENT_SECRET")
        .output()
        .await
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("RELAY_GENESYS_CLIENT_ID"));
    sim.shutdown().await;
}
