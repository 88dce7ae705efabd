//! Integration tests of the Genesys Cloud and CMS simulators over real HTTP (and the
//! notification WebSocket).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use genesys_sim::{start_cms, start_genesys, GenesysSimOptions, SimServer};
use reqwest::{Client, StatusCode};
use serde_json::{json, Value};

fn any_port() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

async fn genesys() -> SimServer {
    start_genesys(any_port(), GenesysSimOptions::default())
        .await
        .expect("start genesys sim")
}

async fn cms() -> SimServer {
    start_cms(any_port()).await.expect("start cms sim")
}

async fn body(resp: reqwest::Response) -> Value {
    resp.json().await.expect("JSON body")
}

/// Requests a token with the given credentials and grant; returns the raw response.
async fn token_response(
    client: &Client,
    sim: &SimServer,
    creds: Option<(&str, &str)>,
    grant: &str,
) -> reqwest::Response {
    let mut req = client
        .post(format!("{}/oauth/token", sim.base_url()))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("grant_type={grant}"));
    if let Some((id, secret)) = creds {
        req = req.basic_auth(id, Some(secret));
    }
    req.send().await.expect("token request")
}

async fn token(client: &Client, sim: &SimServer) -> String {
    let resp = token_response(
        client,
        sim,
        Some(("sim-client", "sim-secret")),
        "client_credentials",
    )
    .await;
    assert_eq!(resp.status(), StatusCode::OK);
    body(resp).await["access_token"]
        .as_str()
        .expect("access_token")
        .to_string()
}

async fn api_get(client: &Client, sim: &SimServer, token: &str, path: &str) -> reqwest::Response {
    client
        .get(format!("{}{path}", sim.base_url()))
        .bearer_auth(token)
        .send()
        .await
        .expect("GET")
}

async fn stats(client: &Client, sim: &SimServer) -> Value {
    body(
        client
            .get(format!("{}/__sim/stats", sim.base_url()))
            .send()
            .await
            .expect("stats"),
    )
    .await
}

async fn set_faults(client: &Client, sim: &SimServer, faults: Value) {
    let resp = client
        .post(format!("{}/__sim/faults", sim.base_url()))
        .json(&faults)
        .send()
        .await
        .expect("faults");
    assert_eq!(resp.status(), StatusCode::OK);
}

async fn cms_write(
    client: &Client,
    sim: &SimServer,
    method: reqwest::Method,
    path: &str,
    key: Option<&str>,
    payload: Value,
) -> (StatusCode, Value, bool) {
    let mut req = client
        .request(method, format!("{}{path}", sim.base_url()))
        .bearer_auth("any-api-key")
        .json(&payload);
    if let Some(key) = key {
        req = req.header("X-Idempotency-Key", key);
    }
    let resp = req.send().await.expect("cms write");
    let replayed = resp.headers().get("idempotent-replayed").is_some();
    (resp.status(), body(resp).await, replayed)
}

#[tokio::test]
async fn port_zero_binds_and_shutdown_stops_serving() {
    let sim = genesys().await;
    assert_ne!(sim.addr().port(), 0);
    assert_eq!(
        sim.base_url(),
        format!("http://127.0.0.1:{}", sim.addr().port())
    );
    let url = format!("{}/__sim/stats", sim.base_url());
    // A fresh client per request so no idle keep-alive connection outlives the server.
    let resp = Client::new().get(&url).send().await.expect("stats");
    assert_eq!(resp.status(), StatusCode::OK);
    sim.shutdown().await;
    assert!(Client::new().get(&url).send().await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_finishes_in_flight_requests_and_ignores_idle_connections() {
    let sim = cms().await;
    let client = Client::new();
    // Leave a pooled keep-alive connection open in `client`.
    let warm = client
        .get(format!("{}/v1/entries/warm", sim.base_url()))
        .send()
        .await
        .expect("GET");
    assert_eq!(warm.status(), StatusCode::NOT_FOUND);
    set_faults(&client, &sim, json!({"latency_ms": 300})).await;
    let slow = tokio::spawn(
        client
            .get(format!("{}/v1/entries/slow", sim.base_url()))
            .send(),
    );
    tokio::time::sleep(Duration::from_millis(100)).await;
    let started = Instant::now();
    sim.shutdown().await;
    let took = started.elapsed();
    // The slow request was answered, not cut off...
    let slow = slow
        .await
        .expect("join")
        .expect("in-flight request answered");
    assert_eq!(slow.status(), StatusCode::NOT_FOUND);
    // ...and the idle pooled connection did not hold shutdown up.
    assert!(took < Duration::from_secs(2), "shutdown took {took:?}");
}

#[tokio::test]
async fn token_flow_checks_credentials_grant_and_bearer() {
    let sim = genesys().await;
    let client = Client::new();

    let bad = token_response(
        &client,
        &sim,
        Some(("sim-client", "wrong")),
        "client_credentials",
    )
    .await;
    assert_eq!(bad.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(body(bad).await["error"], "invalid_client");
    let missing = token_response(&client, &sim, None, "client_credentials").await;
    assert_eq!(missing.status(), StatusCode::UNAUTHORIZED);
    let grant = token_response(
        &client,
        &sim,
        Some(("sim-client", "sim-secret")),
        "password",
    )
    .await;
    assert_eq!(grant.status(), StatusCode::BAD_REQUEST);

    let ok = token_response(
        &client,
        &sim,
        Some(("sim-client", "sim-secret")),
        "client_credentials",
    )
    .await;
    assert_eq!(ok.status(), StatusCode::OK);
    let ok = body(ok).await;
    assert_eq!(ok["token_type"], "bearer");
    assert_eq!(ok["expires_in"], 3600);
    let token = ok["access_token"].as_str().expect("token");
    assert!(token.len() >= 32);

    let no_auth = client
        .get(format!("{}/api/v2/conversations/c-1", sim.base_url()))
        .send()
        .await
        .expect("GET");
    assert_eq!(no_auth.status(), StatusCode::UNAUTHORIZED);
    let no_auth = body(no_auth).await;
    assert_eq!(no_auth["status"], 401);
    assert_eq!(no_auth["code"], "authentication.required");
    let forged = api_get(
        &client,
        &sim,
        "not-issued-here",
        "/api/v2/conversations/c-1",
    )
    .await;
    assert_eq!(forged.status(), StatusCode::UNAUTHORIZED);
    let good = api_get(&client, &sim, token, "/api/v2/conversations/c-1").await;
    assert_eq!(good.status(), StatusCode::OK);

    let s = stats(&client, &sim).await;
    assert_eq!(s["token_requests"], 4);
    assert_eq!(s["tokens_issued"], 1);
    sim.shutdown().await;
}

#[tokio::test]
async fn custom_credentials_are_the_only_ones_accepted() {
    let opts = GenesysSimOptions {
        client_id: "me".into(),
        client_secret: "s3cr:et".into(),
        token_ttl: Duration::from_secs(60),
    };
    let sim = start_genesys(any_port(), opts).await.expect("start");
    let client = Client::new();
    let default = token_response(
        &client,
        &sim,
        Some(("sim-client", "sim-secret")),
        "client_credentials",
    )
    .await;
    assert_eq!(default.status(), StatusCode::UNAUTHORIZED);
    let custom = token_response(&client, &sim, Some(("me", "s3cr:et")), "client_credentials").await;
    assert_eq!(custom.status(), StatusCode::OK);
    assert_eq!(body(custom).await["expires_in"], 60);
    sim.shutdown().await;
}

#[tokio::test]
async fn tokens_expire_after_token_ttl_s() {
    let sim = genesys().await;
    let client = Client::new();
    set_faults(&client, &sim, json!({"token_ttl_s": 1})).await;
    let resp = token_response(
        &client,
        &sim,
        Some(("sim-client", "sim-secret")),
        "client_credentials",
    )
    .await;
    let resp = body(resp).await;
    assert_eq!(resp["expires_in"], 1);
    let token = resp["access_token"].as_str().expect("token").to_string();
    let fresh = api_get(&client, &sim, &token, "/api/v2/conversations/c-1").await;
    assert_eq!(fresh.status(), StatusCode::OK);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let stale = api_get(&client, &sim, &token, "/api/v2/conversations/c-1").await;
    assert_eq!(stale.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(body(stale).await["code"], "authentication.required");
    sim.shutdown().await;
}

#[tokio::test]
async fn revoked_tokens_are_refused_and_new_ones_work() {
    let sim = genesys().await;
    let client = Client::new();
    let old = token(&client, &sim).await;
    let path = "/api/v2/conversations/c-1";
    assert_eq!(
        api_get(&client, &sim, &old, path).await.status(),
        StatusCode::OK
    );
    let revoked = client
        .post(format!("{}/__sim/tokens/revoke", sim.base_url()))
        .send()
        .await
        .unwrap();
    assert_eq!(body(revoked).await["revoked"], 1);
    let stale = api_get(&client, &sim, &old, path).await;
    assert_eq!(stale.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(body(stale).await["code"], "authentication.required");
    let new = token(&client, &sim).await;
    assert_eq!(
        api_get(&client, &sim, &new, path).await.status(),
        StatusCode::OK
    );
    assert_eq!(stats(&client, &sim).await["tokens_revoked"], 1);
    sim.shutdown().await;
}

#[tokio::test]
async fn customer_attributes_are_strings_gone_ids_404_and_overrides_win() {
    let sim = genesys().await;
    let client = Client::new();
    let token = token(&client, &sim).await;
    let path = "/api/v2/conversations/conv-42";
    let customer = |conversation: &Value| {
        conversation["participants"]
            .as_array()
            .expect("participants")
            .iter()
            .find(|p| p["purpose"] == "customer")
            .expect("a customer participant")
            .clone()
    };

    let first = body(api_get(&client, &sim, &token, path).await).await;
    let second = body(api_get(&client, &sim, &token, path).await).await;
    assert_eq!(first, second);
    let attrs = &customer(&first)["attributes"];
    // Participant attributes are string -> string in the Platform API.
    assert!(attrs
        .as_object()
        .expect("attributes")
        .values()
        .all(Value::is_string));
    assert!(attrs["cart_value"]
        .as_str()
        .is_some_and(|v| v.parse::<f64>().is_ok()));
    assert!(attrs["last_page"]
        .as_str()
        .is_some_and(|p| p.starts_with("https://")));
    assert!(attrs["session_id"].is_string());
    assert!(["bronze", "silver", "gold", "platinum"]
        .contains(&attrs["loyalty_tier"].as_str().expect("tier")));
    assert!(customer(&first)["externalContactId"].is_string());
    let other = body(api_get(&client, &sim, &token, "/api/v2/conversations/conv-43").await).await;
    assert_ne!(customer(&other)["attributes"], *attrs);

    // A second server generates the same conversation: determinism is by id, not by process.
    let sim2 = genesys().await;
    let token2 = self::token(&client, &sim2).await;
    let elsewhere = body(api_get(&client, &sim2, &token2, path).await).await;
    assert_eq!(elsewhere, first);
    sim2.shutdown().await;

    let gone = api_get(&client, &sim, &token, "/api/v2/conversations/gone-1").await;
    assert_eq!(gone.status(), StatusCode::NOT_FOUND);
    let gone = body(gone).await;
    assert_eq!(gone["status"], 404);
    assert_eq!(gone["code"], "not.found");
    // Each id answered 404 is listed, so a skip can be matched to its answer.
    assert_eq!(
        stats(&client, &sim).await["conversations_not_found"],
        json!(["gone-1"])
    );

    let put = client
        .put(format!(
            "{}/__sim/conversations/conv-42/attributes",
            sim.base_url()
        ))
        .json(&json!({"attributes": {"cart_value": "9.5", "loyalty_tier": "gold"}}))
        .send()
        .await
        .expect("PUT");
    assert_eq!(put.status(), StatusCode::OK);
    let overridden = body(api_get(&client, &sim, &token, path).await).await;
    assert_eq!(
        customer(&overridden)["attributes"],
        json!({"cart_value": "9.5", "loyalty_tier": "gold"})
    );

    // A bare object works too; values must be strings, as in Genesys.
    let put = client
        .put(format!(
            "{}/__sim/conversations/conv-44/attributes",
            sim.base_url()
        ))
        .json(&json!({"session_id": "s-1"}))
        .send()
        .await
        .expect("PUT");
    assert_eq!(put.status(), StatusCode::OK);
    let set = body(api_get(&client, &sim, &token, "/api/v2/conversations/conv-44").await).await;
    assert_eq!(customer(&set)["attributes"], json!({"session_id": "s-1"}));
    for bad in ["{nope", r#"{"cart_value": 9.5}"#] {
        let resp = client
            .put(format!(
                "{}/__sim/conversations/x/attributes",
                sim.base_url()
            ))
            .body(bad)
            .send()
            .await
            .expect("PUT");
        assert_eq!(resp.status(), StatusCode::BAD_REQUEST, "{bad}");
    }
    sim.shutdown().await;
}

#[tokio::test]
async fn conversations_are_deterministic_and_genesys_shaped() {
    let sim = genesys().await;
    let client = Client::new();
    let token = token(&client, &sim).await;
    let a = body(api_get(&client, &sim, &token, "/api/v2/conversations/conv-1").await).await;
    let b = body(api_get(&client, &sim, &token, "/api/v2/conversations/conv-1").await).await;
    assert_eq!(a, b);
    assert_eq!(a["id"], "conv-1");
    assert!(a["startTime"].is_string());
    let participants = a["participants"].as_array().expect("participants");
    let purposes: Vec<&str> = participants
        .iter()
        .filter_map(|p| p["purpose"].as_str())
        .collect();
    assert!(purposes.contains(&"customer"));
    assert!(purposes.contains(&"acd"));
    assert!(participants
        .iter()
        .all(|p| p["id"].is_string() && p["attributes"].is_object()));
    let c = body(api_get(&client, &sim, &token, "/api/v2/conversations/conv-2").await).await;
    assert_ne!(a, c);
    let gone = api_get(&client, &sim, &token, "/api/v2/conversations/gone-9").await;
    assert_eq!(gone.status(), StatusCode::NOT_FOUND);
    assert_eq!(body(gone).await["code"], "not.found");
    sim.shutdown().await;
}

#[tokio::test]
async fn triggers_page_by_cursor_and_update_with_their_version() {
    let sim = genesys().await;
    let client = Client::new();
    let token = token(&client, &sim).await;
    let url = format!("{}/api/v2/processautomation/triggers", sim.base_url());
    let trigger = |i: usize| {
        json!({
            "name": format!("trigger-{i}"),
            "topicName": "v2.detail.events.conversation.{id}.customer.start",
            "target": {"type": "Workflow", "id": format!("wf-{i}")},
            "matchCriteria": [{"jsonPath": "$.mediaType", "operator": "Equal", "value": "MESSAGE"}],
            "enabled": true,
        })
    };
    let mut ids = Vec::new();
    for i in 0..30 {
        let resp = client
            .post(&url)
            .bearer_auth(&token)
            .json(&trigger(i))
            .send()
            .await
            .expect("POST");
        assert_eq!(resp.status(), StatusCode::OK);
        let created = body(resp).await;
        assert_eq!(created["name"], format!("trigger-{i}"));
        assert_eq!(created["version"], 1);
        ids.push(created["id"].as_str().expect("id").to_string());
    }

    // Default page size 25; the listing says where the next page is.
    let path = "/api/v2/processautomation/triggers";
    let page1 = body(api_get(&client, &sim, &token, path).await).await;
    assert_eq!(page1["entities"].as_array().map(Vec::len), Some(25));
    assert!(page1.get("previousUri").is_none());
    let next = page1["nextUri"].as_str().expect("nextUri").to_string();
    let page2 = body(api_get(&client, &sim, &token, &next).await).await;
    assert_eq!(page2["entities"].as_array().map(Vec::len), Some(5));
    assert!(page2.get("nextUri").is_none(), "{page2}");
    assert!(page2["previousUri"].is_string());
    let listed: Vec<String> = [&page1, &page2]
        .iter()
        .flat_map(|p| p["entities"].as_array().expect("entities").clone())
        .map(|e| e["id"].as_str().expect("id").to_string())
        .collect();
    assert_eq!(listed, ids);

    let one = format!("{url}/{}", ids[3]);
    let mut update = trigger(3);
    update["version"] = json!(1);
    update["enabled"] = json!(false);
    let updated = client
        .put(&one)
        .bearer_auth(&token)
        .json(&update)
        .send()
        .await
        .expect("PUT");
    assert_eq!(updated.status(), StatusCode::OK);
    let updated = body(updated).await;
    assert_eq!(
        (updated["version"].clone(), updated["enabled"].clone()),
        (json!(2), json!(false))
    );
    // A stale version conflicts; topicName cannot change; version is required.
    let stale = client
        .put(&one)
        .bearer_auth(&token)
        .json(&update)
        .send()
        .await
        .expect("PUT");
    assert_eq!(stale.status(), StatusCode::CONFLICT);
    update["version"] = json!(2);
    update["topicName"] = json!("v2.users.{id}.presence");
    let moved = client
        .put(&one)
        .bearer_auth(&token)
        .json(&update)
        .send()
        .await
        .expect("PUT");
    assert_eq!(moved.status(), StatusCode::BAD_REQUEST);
    let got = body(api_get(&client, &sim, &token, &format!("{path}/{}", ids[3])).await).await;
    assert_eq!(got["version"], 2);

    let unknown = client
        .put(format!("{url}/no-such-id"))
        .bearer_auth(&token)
        .json(&update)
        .send()
        .await
        .expect("PUT");
    assert_eq!(unknown.status(), StatusCode::NOT_FOUND);
    for invalid in [
        json!({"name": "x"}),
        json!({"name": "x", "topicName": "t", "enabled": true}),
    ] {
        let resp = client
            .post(&url)
            .bearer_auth(&token)
            .json(&invalid)
            .send()
            .await
            .expect("POST");
        assert_eq!(resp.status(), StatusCode::BAD_REQUEST, "{invalid}");
    }
    let bad_page = api_get(&client, &sim, &token, &format!("{path}?pageSize=201")).await;
    assert_eq!(bad_page.status(), StatusCode::BAD_REQUEST);
    let unauthenticated = client.get(&url).send().await.expect("GET");
    assert_eq!(unauthenticated.status(), StatusCode::UNAUTHORIZED);
    sim.shutdown().await;
}

#[tokio::test]
async fn per_token_budget_answers_429_with_retry_after_and_ratelimit_headers() {
    let sim = genesys().await;
    let client = Client::new();
    let token = token(&client, &sim).await;
    // Without the fault: no budget and no inin-ratelimit headers.
    let free = api_get(&client, &sim, &token, "/api/v2/conversations/c-0").await;
    assert!(free.headers().get("inin-ratelimit-allowed").is_none());

    set_faults(&client, &sim, json!({"rate_limit_per_minute": 3})).await;
    for i in 1..=3 {
        let ok = api_get(&client, &sim, &token, "/api/v2/conversations/c-1").await;
        assert_eq!(ok.status(), StatusCode::OK);
        let h = ok.headers();
        assert_eq!(h["inin-ratelimit-allowed"], "3");
        assert_eq!(h["inin-ratelimit-count"], i.to_string().as_str());
        let reset: u64 = h["inin-ratelimit-reset"].to_str().unwrap().parse().unwrap();
        assert!((1..=60).contains(&reset), "{reset}");
    }
    let over = api_get(&client, &sim, &token, "/api/v2/conversations/c-1").await;
    assert_eq!(over.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry_after: u64 = over.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry_after));
    assert_eq!(over.headers()["inin-ratelimit-count"], "3");
    assert_eq!(body(over).await["code"], "too.many.requests");
    // Another token has its own budget.
    let token2 = self::token(&client, &sim).await;
    let other = api_get(&client, &sim, &token2, "/api/v2/conversations/c-1").await;
    assert_eq!(other.status(), StatusCode::OK);
    let s = stats(&client, &sim).await;
    assert_eq!(s["rate_limited"], 1);
    assert_eq!(
        s["requests"]["GET /api/v2/conversations/{conversationId}"],
        json!({"200": 5, "429": 1})
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn cms_create_conflict_update_and_replay_are_counted_once() {
    let sim = cms().await;
    let client = Client::new();
    let entry =
        json!({"id": "g-1", "type": "guest_session", "fields": {"cart_value": 1, "tier": "gold"}});

    let (status, created, replayed) = cms_write(
        &client,
        &sim,
        reqwest::Method::POST,
        "/v1/entries",
        Some("k1"),
        entry.clone(),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED);
    assert!(!replayed);
    assert_eq!(created["id"], "g-1");
    assert_eq!(created["fields"]["tier"], "gold");

    // Same key again: the first answer, replayed, not counted.
    let (status, again, replayed) = cms_write(
        &client,
        &sim,
        reqwest::Method::POST,
        "/v1/entries",
        Some("k1"),
        entry.clone(),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED);
    assert!(replayed);
    assert_eq!(again, created);

    // New key, existing entry: 409, and the key is not remembered.
    for _ in 0..2 {
        let (status, conflict, _) = cms_write(
            &client,
            &sim,
            reqwest::Method::POST,
            "/v1/entries",
            Some("k2"),
            entry.clone(),
        )
        .await;
        assert_eq!(status, StatusCode::CONFLICT);
        assert_eq!(conflict, json!({"error": "conflict", "id": "g-1"}));
    }

    let (status, updated, _) = cms_write(
        &client,
        &sim,
        reqwest::Method::PUT,
        "/v1/entries/g-1",
        Some("k3"),
        json!({"fields": {"cart_value": 2}}),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(updated["fields"], json!({"cart_value": 2}));
    assert_eq!(updated["version"], 2);
    // Replaying k3 with different data changes nothing.
    let (status, replay, replayed) = cms_write(
        &client,
        &sim,
        reqwest::Method::PUT,
        "/v1/entries/g-1",
        Some("k3"),
        json!({"fields": {"cart_value": 99}}),
    )
    .await;
    assert_eq!((status, replayed), (StatusCode::OK, true));
    assert_eq!(replay, updated);

    let (status, _, _) = cms_write(
        &client,
        &sim,
        reqwest::Method::PUT,
        "/v1/entries/nope",
        Some("k4"),
        json!({"fields": {}}),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _, _) = cms_write(
        &client,
        &sim,
        reqwest::Method::POST,
        "/v1/entries",
        Some("k5"),
        json!({"id": "x"}),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let not_json = client
        .post(format!("{}/v1/entries", sim.base_url()))
        .header("X-Idempotency-Key", "k6")
        .body("{\"id\":")
        .send()
        .await
        .expect("POST");
    assert_eq!(not_json.status(), StatusCode::BAD_REQUEST);

    // No key: accepted, never replayed, counted under "".
    for i in 0..2 {
        let (status, _, replayed) = cms_write(
            &client,
            &sim,
            reqwest::Method::PUT,
            "/v1/entries/g-1",
            None,
            json!({"fields": {"cart_value": 10 + i}}),
        )
        .await;
        assert_eq!((status, replayed), (StatusCode::OK, false));
    }

    let fetched = client
        .get(format!("{}/v1/entries/g-1", sim.base_url()))
        .send()
        .await
        .expect("GET");
    assert_eq!(fetched.status(), StatusCode::OK);
    assert_eq!(body(fetched).await["fields"], json!({"cart_value": 11}));
    let missing = client
        .get(format!("{}/v1/entries/nope", sim.base_url()))
        .send()
        .await
        .expect("GET");
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);

    let s = stats(&client, &sim).await;
    assert_eq!(s["syncs_by_key"], json!({"k1": 1, "k3": 1, "": 2}));
    assert_eq!(s["entries"], json!({"g-1": {"cart_value": 11}}));
    let writes = s["writes"].as_array().expect("writes");
    let summary: Vec<(String, String, String)> = writes
        .iter()
        .map(|w| {
            (
                w["method"].as_str().unwrap_or_default().to_string(),
                w["key"].as_str().unwrap_or_default().to_string(),
                w["entry_id"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    let expected: Vec<(String, String, String)> =
        [("POST", "k1"), ("PUT", "k3"), ("PUT", ""), ("PUT", "")]
            .iter()
            .map(|(m, k)| (m.to_string(), k.to_string(), "g-1".to_string()))
            .collect();
    assert_eq!(summary, expected);
    assert_eq!(writes[1]["path"], "/v1/entries/g-1");
    let times: Vec<u64> = writes.iter().filter_map(|w| w["at_ms"].as_u64()).collect();
    assert_eq!(times.len(), 4);
    assert!(times.windows(2).all(|w| w[0] <= w[1]));
    sim.shutdown().await;
}

#[tokio::test]
async fn cms_events_endpoint_counts_and_replays() {
    let sim = cms().await;
    let client = Client::new();
    let event = json!({"eventId": "e-1", "data": [1, 2, 3]});
    let (status, first, _) = cms_write(
        &client,
        &sim,
        reqwest::Method::POST,
        "/v1/events",
        Some("ev-1"),
        event.clone(),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let (status, second, replayed) = cms_write(
        &client,
        &sim,
        reqwest::Method::POST,
        "/v1/events",
        Some("ev-1"),
        event,
    )
    .await;
    assert_eq!((status, replayed), (StatusCode::ACCEPTED, true));
    assert_eq!(first, second);
    let (status, _, _) = cms_write(
        &client,
        &sim,
        reqwest::Method::POST,
        "/v1/events",
        Some("ev-2"),
        json!("just a string"),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let s = stats(&client, &sim).await;
    assert_eq!(s["events_received"], 2);
    assert_eq!(s["syncs_by_key"], json!({"ev-1": 1, "ev-2": 1}));
    assert_eq!(s["writes"][0]["entry_id"], "e-1");
    assert_eq!(s["writes"][1]["entry_id"], Value::Null);
    sim.shutdown().await;
}

#[tokio::test]
async fn fail_next_and_rate_limit_next_fail_without_changing_state() {
    let sim = cms().await;
    let client = Client::new();
    set_faults(
        &client,
        &sim,
        json!({"fail_next": 2, "rate_limit_next": 1, "retry_after_s": 3}),
    )
    .await;
    let entry = json!({"id": "g-1", "type": "guest_session", "fields": {"a": 1}});
    let mut statuses = Vec::new();
    let mut retry_after = None;
    for _ in 0..4 {
        let resp = client
            .post(format!("{}/v1/entries", sim.base_url()))
            .header("X-Idempotency-Key", "k1")
            .json(&entry)
            .send()
            .await
            .expect("POST");
        if resp.status() == StatusCode::TOO_MANY_REQUESTS {
            retry_after = resp
                .headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok())
                .map(str::to_string);
        }
        statuses.push(resp.status().as_u16());
    }
    assert_eq!(statuses, vec![503, 503, 429, 201]);
    assert_eq!(retry_after.as_deref(), Some("3"));

    let s = stats(&client, &sim).await;
    // Only the request that got through was counted as a write.
    assert_eq!(s["syncs_by_key"], json!({"k1": 1}));
    assert_eq!(s["writes"].as_array().map(Vec::len), Some(1));
    assert_eq!(
        s["requests"]["POST /v1/entries"],
        json!({"503": 2, "429": 1, "201": 1})
    );
    assert_eq!(s["faults"]["fail_next"], 0);
    sim.shutdown().await;
}

#[tokio::test]
async fn faults_apply_to_the_token_endpoint_with_custom_status() {
    let sim = genesys().await;
    let client = Client::new();
    set_faults(&client, &sim, json!({"fail_next": 1, "error_status": 500})).await;
    let failed = token_response(
        &client,
        &sim,
        Some(("sim-client", "sim-secret")),
        "client_credentials",
    )
    .await;
    assert_eq!(failed.status(), StatusCode::INTERNAL_SERVER_ERROR);
    let ok = token_response(
        &client,
        &sim,
        Some(("sim-client", "sim-secret")),
        "client_credentials",
    )
    .await;
    assert_eq!(ok.status(), StatusCode::OK);
    let s = stats(&client, &sim).await;
    // The faulted request never reached the token handler.
    assert_eq!(s["token_requests"], 1);
    assert_eq!(
        s["requests"]["POST /oauth/token"],
        json!({"500": 1, "200": 1})
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn error_rate_latency_clear_and_reset() {
    let sim = cms().await;
    let client = Client::new();
    let get = || {
        client
            .get(format!("{}/v1/entries/x", sim.base_url()))
            .send()
    };

    set_faults(
        &client,
        &sim,
        json!({"error_rate": 1.0, "error_status": 502}),
    )
    .await;
    for _ in 0..3 {
        assert_eq!(get().await.expect("GET").status(), StatusCode::BAD_GATEWAY);
    }

    // Patches keep unspecified fields: latency added, error_rate still 1.0.
    set_faults(&client, &sim, json!({"latency_ms": 250})).await;
    let started = Instant::now();
    assert_eq!(get().await.expect("GET").status(), StatusCode::BAD_GATEWAY);
    assert!(started.elapsed() >= Duration::from_millis(250));

    let cleared = client
        .delete(format!("{}/__sim/faults", sim.base_url()))
        .send()
        .await
        .expect("DELETE");
    assert_eq!(cleared.status(), StatusCode::OK);
    let started = Instant::now();
    assert_eq!(get().await.expect("GET").status(), StatusCode::NOT_FOUND);
    assert!(started.elapsed() < Duration::from_millis(250));

    for bad in [
        json!({"error_rate": 1.5}),
        json!({"fail_nxt": 1}),
        json!({"error_status": 99}),
    ] {
        let resp = client
            .post(format!("{}/__sim/faults", sim.base_url()))
            .json(&bad)
            .send()
            .await
            .expect("faults");
        assert_eq!(resp.status(), StatusCode::BAD_REQUEST, "{bad}");
    }

    let (status, _, _) = cms_write(
        &client,
        &sim,
        reqwest::Method::POST,
        "/v1/entries",
        Some("k"),
        json!({"id": "a", "type": "t", "fields": {}}),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED);
    set_faults(&client, &sim, json!({"fail_next": 5})).await;
    let reset = client
        .post(format!("{}/__sim/reset", sim.base_url()))
        .send()
        .await
        .expect("reset");
    assert_eq!(reset.status(), StatusCode::OK);
    let s = stats(&client, &sim).await;
    assert_eq!(s["requests"], json!({}));
    assert_eq!(s["entries"], json!({}));
    assert_eq!(s["syncs_by_key"], json!({}));
    assert_eq!(s["writes"], json!([]));
    assert_eq!(s["faults"]["fail_next"], 0);
    // After a reset the old key is forgotten and the entry is gone: a fresh create.
    let (status, _, replayed) = cms_write(
        &client,
        &sim,
        reqwest::Method::POST,
        "/v1/entries",
        Some("k"),
        json!({"id": "a", "type": "t", "fields": {}}),
    )
    .await;
    assert_eq!((status, replayed), (StatusCode::CREATED, false));
    sim.shutdown().await;
}

#[tokio::test]
async fn stats_count_by_route_template_never_raw_ids() {
    let genesys = genesys().await;
    let client = Client::new();
    let token = token(&client, &genesys).await;
    for id in ["conv-a", "conv-secret-id", "gone-c"] {
        api_get(
            &client,
            &genesys,
            &token,
            &format!("/api/v2/conversations/{id}"),
        )
        .await;
    }
    api_get(
        &client,
        &genesys,
        &token,
        "/api/v2/processautomation/triggers",
    )
    .await;
    api_get(&client, &genesys, &token, "/no/such/path-with-id").await;
    client
        .delete(format!(
            "{}/api/v2/conversations/conv-x",
            genesys.base_url()
        ))
        .send()
        .await
        .expect("DELETE");

    let s = stats(&client, &genesys).await;
    let requests = &s["requests"];
    assert_eq!(requests["POST /oauth/token"], json!({"200": 1}));
    assert_eq!(
        requests["GET /api/v2/conversations/{conversationId}"],
        json!({"200": 2, "404": 1})
    );
    assert_eq!(
        requests["GET /api/v2/processautomation/triggers"],
        json!({"200": 1})
    );
    assert_eq!(requests["GET <unmatched>"], json!({"404": 1}));
    assert_eq!(
        requests["DELETE /api/v2/conversations/{conversationId}"],
        json!({"405": 1})
    );
    let text = requests.to_string();
    for raw in [
        "conv-a",
        "gone-c",
        "conv-secret-id",
        "path-with-id",
        "__sim",
    ] {
        assert!(!text.contains(raw), "{raw} leaked into {text}");
    }
    genesys.shutdown().await;

    let cms = cms().await;
    client
        .get(format!("{}/v1/entries/entry-123", cms.base_url()))
        .send()
        .await
        .expect("GET");
    let s = stats(&client, &cms).await;
    assert_eq!(s["requests"], json!({"GET /v1/entries/{id}": {"404": 1}}));
    cms.shutdown().await;
}

/// Load check, not run by default: `cargo test --test it sim:: -- --ignored --nocapture`.
/// Prints the request rate of concurrent writes and authenticated reads.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "load check; prints throughput"]
async fn throughput_of_cms_writes_and_conversation_reads() {
    const REQUESTS: usize = 10_000;
    const CONCURRENCY: usize = 64;
    let cms = cms().await;
    let genesys = genesys().await;
    let client = Client::new();
    let token = token(&client, &genesys).await;

    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for worker in 0..CONCURRENCY {
        let client = client.clone();
        let cms_url = format!("{}/v1/events", cms.base_url());
        let conversation_url = format!("{}/api/v2/conversations/", genesys.base_url());
        let token = token.clone();
        tasks.spawn(async move {
            for i in (worker..REQUESTS).step_by(CONCURRENCY) {
                let resp = if i % 2 == 0 {
                    client
                        .post(&cms_url)
                        .header("X-Idempotency-Key", format!("k-{i}"))
                        .json(&json!({"eventId": format!("e-{i}")}))
                        .send()
                        .await
                } else {
                    client
                        .get(format!("{conversation_url}c-{i}"))
                        .bearer_auth(&token)
                        .send()
                        .await
                };
                assert!(resp.expect("request").status().is_success());
            }
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.expect("worker");
    }
    let elapsed = started.elapsed();
    let rate = REQUESTS as f64 / elapsed.as_secs_f64();
    println!("{REQUESTS} requests in {elapsed:?}: {rate:.0} req/s");
    let s = stats(&client, &cms).await;
    assert_eq!(s["events_received"], REQUESTS / 2);
    let stopping = Instant::now();
    cms.shutdown().await;
    genesys.shutdown().await;
    println!("shutdown took {:?}", stopping.elapsed());
}

/// `POST /api/v2/notifications/channels` as the listener does it; returns (channel id,
/// subscriptions URL, connectUri).
async fn channel(client: &Client, sim: &SimServer, token: &str) -> (String, String, String) {
    let resp = client
        .post(format!("{}/api/v2/notifications/channels", sim.base_url()))
        .bearer_auth(token)
        .send()
        .await
        .expect("create channel");
    assert_eq!(resp.status(), StatusCode::OK);
    let c = body(resp).await;
    let id = c["id"].as_str().expect("id").to_string();
    let subs = format!(
        "{}/api/v2/notifications/channels/{id}/subscriptions",
        sim.base_url()
    );
    (id, subs, c["connectUri"].as_str().expect("uri").to_string())
}

async fn control(
    client: &Client,
    sim: &SimServer,
    method: reqwest::Method,
    path: &str,
    b: Value,
) -> Value {
    let resp = client
        .request(method, format!("{}{path}", sim.base_url()))
        .json(&b)
        .send()
        .await
        .expect("control");
    assert_eq!(resp.status(), StatusCode::OK, "{path}");
    body(resp).await
}

#[tokio::test]
async fn subscriptions_answer_each_topic_with_its_state() {
    let sim = genesys().await;
    let client = Client::new();
    let token = token(&client, &sim).await;
    let (_, subs, _) = channel(&client, &sim, &token).await;
    let queue = "5a1e0000-0000-4000-8000-0000000000aa";
    control(
        &client,
        &sim,
        reqwest::Method::POST,
        "/__sim/queues",
        json!({"ids": [queue]}),
    )
    .await;
    let good = format!("v2.routing.queues.{queue}.conversations");
    let unknown = "v2.routing.queues.5a1e0000-0000-4000-8000-0000000000bb.conversations";
    let placeholder = "v2.routing.queues.{id}.conversations";
    let gone = "v2.detail.events.conversation.gone-1.attributes";
    let typo = "v2.routing.queues.x.conversashuns";
    let put = |url: String, topics: Vec<&str>| {
        let list: Vec<Value> = topics.iter().map(|t| json!({ "id": t })).collect();
        client.put(url).bearer_auth(&token).json(&list).send()
    };

    let ok = put(subs.clone(), vec![&good]).await.expect("put");
    assert_eq!(ok.status(), StatusCode::OK);
    assert_eq!(
        body(ok).await,
        json!({"entities": [{"id": good, "state": "Permitted"}]})
    );

    // Without ignoreErrors one bad topic fails the request and changes nothing.
    let refused = put(subs.clone(), vec![unknown]).await.expect("put");
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);
    let err = body(refused).await;
    assert_eq!(err["code"], "notification.unauthorized.topic", "{err}");
    assert!(err["message"]
        .as_str()
        .unwrap_or_default()
        .contains(unknown));
    let invalid = put(subs.clone(), vec![&good, placeholder])
        .await
        .expect("put");
    assert_eq!(invalid.status(), StatusCode::BAD_REQUEST);
    let now = body(
        client
            .get(&subs)
            .bearer_auth(&token)
            .send()
            .await
            .expect("get"),
    )
    .await;
    assert_eq!(now["entities"], json!([{"id": good, "state": "Permitted"}]));

    // With ignoreErrors every topic is answered; only the permitted one is subscribed.
    control(
        &client,
        &sim,
        reqwest::Method::PUT,
        "/__sim/notifications/settings",
        json!({"denied_topics": {"v2.users.{id}.presence": ["presence:userPresence:view"]}}),
    )
    .await;
    let denied = "v2.users.0a0b0c0d-0000-4000-8000-000000000001.presence";
    let mixed = put(
        format!("{subs}?ignoreErrors=true"),
        vec![&good, unknown, placeholder, gone, typo, denied],
    )
    .await
    .expect("put");
    assert_eq!(mixed.status(), StatusCode::OK);
    let mixed = body(mixed).await;
    let by_id: std::collections::HashMap<&str, &Value> = mixed["entities"]
        .as_array()
        .expect("entities")
        .iter()
        .map(|e| (e["id"].as_str().unwrap_or_default(), e))
        .collect();
    assert_eq!(by_id.len(), 6, "{mixed}");
    assert_eq!(by_id[good.as_str()]["state"], "Permitted");
    for rejected in [unknown, placeholder, gone, typo, denied] {
        let e = by_id[rejected];
        assert_eq!(e["state"], "Rejected", "{e}");
        assert!(
            e["rejectionReason"].as_str().is_some_and(|r| !r.is_empty()),
            "{e}"
        );
    }
    assert_eq!(
        by_id[denied]["missingPermissions"],
        json!(["presence:userPresence:view"])
    );
    assert_eq!(by_id[unknown]["missingPermissions"], json!([]));
    let now = body(
        client
            .get(&subs)
            .bearer_auth(&token)
            .send()
            .await
            .expect("get"),
    )
    .await;
    assert_eq!(now["entities"], json!([{"id": good, "state": "Permitted"}]));
    let s = stats(&client, &sim).await;
    assert_eq!(s["notifications"]["topics_rejected"], 5, "{s}");
    assert_eq!(s["notifications"]["subscriptions_refused"], 2, "{s}");
    sim.shutdown().await;
}

#[tokio::test]
async fn queue_pages_link_to_each_other() {
    let sim = genesys().await;
    let client = Client::new();
    let token = token(&client, &sim).await;
    control(
        &client,
        &sim,
        reqwest::Method::POST,
        "/__sim/queues",
        json!({"count": 5}),
    )
    .await;
    let first =
        body(api_get(&client, &sim, &token, "/api/v2/routing/queues?pageSize=2").await).await;
    assert_eq!(first["pageCount"], 3);
    assert_eq!(first["total"], 5);
    assert_eq!(
        first["nextUri"],
        "/api/v2/routing/queues?pageSize=2&pageNumber=2"
    );
    assert_eq!(
        first["lastUri"],
        "/api/v2/routing/queues?pageSize=2&pageNumber=3"
    );
    assert!(first.get("previousUri").is_none(), "{first}");
    let mut ids: Vec<Value> = first["entities"].as_array().expect("entities").clone();
    let mut next = first["nextUri"].as_str().map(str::to_string);
    let mut last = Value::Null;
    while let Some(uri) = next {
        last = body(api_get(&client, &sim, &token, &uri).await).await;
        ids.extend(
            last["entities"]
                .as_array()
                .expect("entities")
                .iter()
                .cloned(),
        );
        next = last["nextUri"].as_str().map(str::to_string);
    }
    assert_eq!(ids.len(), 5);
    assert_eq!(last["pageNumber"], 3);
    assert_eq!(
        last["previousUri"],
        "/api/v2/routing/queues?pageSize=2&pageNumber=2"
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn trigger_topics_page_by_cursor_and_bad_triggers_are_refused() {
    let sim = genesys().await;
    let client = Client::new();
    let token = token(&client, &sim).await;
    let mut topics: Vec<String> = Vec::new();
    let mut next = Some("/api/v2/processautomation/triggers/topics?pageSize=100".to_string());
    while let Some(uri) = next {
        let page = body(api_get(&client, &sim, &token, &uri).await).await;
        topics.extend(
            page["entities"]
                .as_array()
                .expect("entities")
                .iter()
                .map(|t| t.as_str().expect("topic names are strings").to_string()),
        );
        next = page["nextUri"].as_str().map(str::to_string);
    }
    assert_eq!(topics.len(), 237, "the SDK's topic list");
    assert!(topics
        .iter()
        .any(|t| t == "v2.detail.events.conversation.{id}.customer.start"));

    let url = format!("{}/api/v2/processautomation/triggers", sim.base_url());
    let good = json!({
        "name": "t", "topicName": "v2.detail.events.conversation.{id}.attributes", "enabled": true,
        "target": {"type": "Workflow", "id": "wf", "workflowTargetSettings": {"dataFormat": "Json"}},
    });
    let created = client
        .post(&url)
        .bearer_auth(&token)
        .json(&good)
        .send()
        .await
        .expect("post");
    assert_eq!(created.status(), StatusCode::OK);
    assert_eq!(
        body(created).await["target"]["workflowTargetSettings"]["dataFormat"],
        "Json"
    );
    for (field, value) in [
        (
            "/topicName",
            json!("v2.detail.events.conversation.{id}.atributes"),
        ),
        ("/target/type", json!("Flow")),
        ("/target/workflowTargetSettings/dataFormat", json!("Xml")),
    ] {
        let mut bad = good.clone();
        *bad.pointer_mut(field).expect("field") = value;
        let r = client
            .post(&url)
            .bearer_auth(&token)
            .json(&bad)
            .send()
            .await
            .expect("post");
        assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{field}");
    }
    assert_eq!(stats(&client, &sim).await["triggers"], 1);
    sim.shutdown().await;
}

#[tokio::test]
async fn a_resource_limit_below_the_token_limit_is_reported_and_enforced() {
    let sim = genesys().await;
    let client = Client::new();
    let token = token(&client, &sim).await;
    set_faults(&client, &sim, json!({"rate_limit_per_minute": 100})).await;
    control(
        &client,
        &sim,
        reqwest::Method::PUT,
        "/__sim/genesys/settings",
        json!({"resource_rate_limits": {"GET /api/v2/conversations/{conversationId}": 2}}),
    )
    .await;
    for i in 1..=2 {
        let ok = api_get(&client, &sim, &token, "/api/v2/conversations/c-1").await;
        assert_eq!(ok.status(), StatusCode::OK);
        assert_eq!(ok.headers()["inin-ratelimit-allowed"], "2");
        assert_eq!(ok.headers()["inin-ratelimit-count"], i.to_string().as_str());
    }
    let over = api_get(&client, &sim, &token, "/api/v2/conversations/c-2").await;
    assert_eq!(over.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(over.headers().get("retry-after").is_some());
    // Other resources still have the token's budget.
    let other = api_get(&client, &sim, &token, "/api/v2/processautomation/triggers").await;
    assert_eq!(other.status(), StatusCode::OK);
    assert_eq!(other.headers()["inin-ratelimit-allowed"], "100");
    let s = stats(&client, &sim).await;
    assert_eq!(s["resource_rate_limited"], 1, "{s}");
    sim.shutdown().await;
}

#[tokio::test]
async fn a_silenced_socket_sends_nothing_and_does_not_close() {
    use futures::StreamExt;
    let sim = genesys().await;
    let client = Client::new();
    let token = token(&client, &sim).await;
    let (_, subs, uri) = channel(&client, &sim, &token).await;
    control(
        &client,
        &sim,
        reqwest::Method::POST,
        "/__sim/queues",
        json!({"ids": ["q-1"]}),
    )
    .await;
    let topic = "v2.routing.queues.q-1.conversations";
    let r = client
        .put(&subs)
        .bearer_auth(&token)
        .json(&json!([{"id": topic}]))
        .send()
        .await
        .expect("put");
    assert_eq!(r.status(), StatusCode::OK);
    control(
        &client,
        &sim,
        reqwest::Method::PUT,
        "/__sim/notifications/settings",
        json!({"heartbeat_interval_ms": 50}),
    )
    .await;
    let (mut ws, _) = tokio_tungstenite::connect_async(&uri).await.expect("ws");
    let first = tokio::time::timeout(Duration::from_secs(2), ws.next()).await;
    assert!(matches!(first, Ok(Some(Ok(_)))), "a heartbeat first");
    let silenced = control(
        &client,
        &sim,
        reqwest::Method::POST,
        "/__sim/notifications/silence",
        json!({}),
    )
    .await;
    assert_eq!(silenced["silenced"], 1);
    // Drain what was in flight, then nothing: no heartbeat, no notification, no close.
    while let Ok(Some(Ok(_))) = tokio::time::timeout(Duration::from_millis(150), ws.next()).await {}
    let notify = control(
        &client,
        &sim,
        reqwest::Method::POST,
        "/__sim/notify",
        json!({"topicName": topic, "eventBody": {"id": "c-1"}}),
    )
    .await;
    assert_eq!(notify, json!({"subscribedChannels": 1, "queued": 0}));
    let quiet = tokio::time::timeout(Duration::from_millis(500), ws.next()).await;
    assert!(quiet.is_err(), "silent and still open: {quiet:?}");
    // A new socket on the channel is a normal one.
    let (mut fresh, _) = tokio_tungstenite::connect_async(&uri).await.expect("ws");
    let beat = tokio::time::timeout(Duration::from_secs(2), fresh.next()).await;
    assert!(
        matches!(beat, Ok(Some(Ok(_)))),
        "the new socket sends heartbeats"
    );
    let s = stats(&client, &sim).await;
    assert_eq!(s["notifications"]["sockets_silenced"], 1, "{s}");
    assert_eq!(s["notifications"]["undelivered"], 1, "{s}");
    assert_eq!(s["notifications"]["lost"], 1, "{s}");
    sim.shutdown().await;
}

/// A trigger with the Json data format fires on a published notification; the simulated
/// workflow's Data Action POSTs `{topicName, version, eventBody}` to the URL a test set up,
/// with its headers. A TopLevelPrimitives trigger on the same topic starts its workflow
/// without `jsonData`, so its action sends nothing.
#[tokio::test]
async fn a_fired_trigger_posts_the_data_action_body() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let sim = genesys().await;
    let client = Client::new();
    let token = token(&client, &sim).await;
    let receiver = tokio::net::TcpListener::bind(any_port())
        .await
        .expect("bind");
    let url = format!(
        "http://{}/webhooks/genesys",
        receiver.local_addr().expect("addr")
    );
    let received = tokio::spawn(async move {
        let (mut conn, _) = receiver.accept().await.expect("accept");
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        loop {
            let n = conn.read(&mut chunk).await.expect("read");
            buf.extend_from_slice(&chunk[..n]);
            let text = String::from_utf8_lossy(&buf).to_string();
            if let Some((head, body)) = text.split_once("\r\n\r\n") {
                let len: usize = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length: "))
                    .and_then(|v| v.trim().parse().ok())
                    .unwrap_or(0);
                if body.len() >= len {
                    conn.write_all(b"HTTP/1.1 202 Accepted\r\ncontent-length: 0\r\n\r\n")
                        .await
                        .expect("write");
                    return (head.to_string(), body.to_string());
                }
            }
            if n == 0 {
                panic!("closed early");
            }
        }
    });
    let url_triggers = format!("{}/api/v2/processautomation/triggers", sim.base_url());
    for (name, format, workflow) in [
        ("json", "Json", "wf-json"),
        ("prim", "TopLevelPrimitives", "wf-prim"),
    ] {
        let t = json!({
            "name": name, "topicName": "v2.detail.events.conversation.{id}.attributes", "enabled": true,
            "target": {"type": "Workflow", "id": workflow, "workflowTargetSettings": {"dataFormat": format}},
        });
        let r = client
            .post(&url_triggers)
            .bearer_auth(&token)
            .json(&t)
            .send()
            .await
            .expect("post");
        assert_eq!(r.status(), StatusCode::OK);
        control(
            &client,
            &sim,
            reqwest::Method::PUT,
            &format!("/__sim/workflows/{workflow}"),
            json!({"url": url, "headers": {"X-Relay-Secret": "s3cret"}}),
        )
        .await;
    }
    let event = json!({"eventTime": 1, "conversationId": "c-9", "participantId": "p-1", "attributes": {"a": "1"}});
    control(
        &client,
        &sim,
        reqwest::Method::POST,
        "/__sim/notify",
        json!({"topicName": "v2.detail.events.conversation.c-9.attributes", "eventBody": event}),
    )
    .await;
    let (head, body) = tokio::time::timeout(Duration::from_secs(5), received)
        .await
        .expect("a POST within 5 s")
        .expect("receiver");
    assert!(
        head.starts_with("POST /webhooks/genesys HTTP/1.1"),
        "{head}"
    );
    assert!(
        head.to_lowercase().contains("x-relay-secret: s3cret"),
        "{head}"
    );
    let body: Value = serde_json::from_str(&body).expect("JSON body");
    assert_eq!(
        body,
        json!({"topicName": "v2.detail.events.conversation.c-9.attributes", "version": "2", "eventBody": event})
    );
    let invocations = body_of(&client, &sim, "/__sim/workflows/invocations").await;
    let all = invocations["entities"].as_array().expect("entities");
    assert_eq!(all.len(), 2, "{invocations}");
    let prim = all
        .iter()
        .find(|i| i["workflowId"] == "wf-prim")
        .expect("prim");
    assert!(prim["inputs"].get("jsonData").is_none(), "{prim}");
    assert!(prim["dataAction"]["error"].is_string(), "{prim}");
    assert!(
        wait_for(|| async {
            stats(&client, &sim).await["workflows"]["data_action_posts_2xx"] == 1
        })
        .await
    );
    sim.shutdown().await;
}

async fn body_of(client: &Client, sim: &SimServer, path: &str) -> Value {
    body(
        client
            .get(format!("{}{path}", sim.base_url()))
            .send()
            .await
            .expect("GET"),
    )
    .await
}

async fn wait_for<F, Fut>(mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        if check().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    false
}
