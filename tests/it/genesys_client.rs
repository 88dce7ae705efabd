//! The Genesys Cloud client against a purpose-built fake of the API (token endpoint,
//! conversations) that counts what it is asked and can script failures. Trigger
//! registration is tested against genesys-sim in `triggers_cli`.

use std::collections::{HashSet, VecDeque};
use std::convert::Infallible;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use genesys_relay::config::Secret;
use genesys_relay::genesys::GenesysConfig;
use genesys_relay::genesys::{GenesysClient, HttpError, TokenSource};
use genesys_relay::metrics::Metrics;
use serde_json::{json, Value};
use warp::http::{HeaderMap, Method, Response};
use warp::Filter;

const CLIENT_ID: &str = "relay-client";
const CLIENT_SECRET: &str = "s3cr3t-client-value";

#[derive(Clone, Debug)]
struct Logged {
    path: String,
    bearer: Option<String>,
}

/// What the fake answers and what it saw.
struct Fake {
    token_requests: AtomicUsize,
    token_delay: Mutex<Duration>,
    expires_in: Mutex<u64>,
    /// When set, the token endpoint fails with this status and echoes what it was sent.
    token_fail: Mutex<Option<u16>>,
    issued: Mutex<Vec<String>>,
    revoked: Mutex<HashSet<String>>,
    reject_all: AtomicBool,
    api_delay: Mutex<Duration>,
    /// The next API answers, before any normal handling: status and Retry-After.
    script: Mutex<VecDeque<(u16, Option<&'static str>)>>,
    api_log: Mutex<Vec<Logged>>,
}

impl Fake {
    fn new() -> Arc<Self> {
        Arc::new(Fake {
            token_requests: AtomicUsize::new(0),
            token_delay: Mutex::new(Duration::ZERO),
            expires_in: Mutex::new(3600),
            token_fail: Mutex::new(None),
            issued: Mutex::new(Vec::new()),
            revoked: Mutex::new(HashSet::new()),
            reject_all: AtomicBool::new(false),
            api_delay: Mutex::new(Duration::ZERO),
            script: Mutex::new(VecDeque::new()),
            api_log: Mutex::new(Vec::new()),
        })
    }

    fn tokens(&self) -> usize {
        self.token_requests.load(Ordering::SeqCst)
    }

    fn log(&self) -> Vec<Logged> {
        self.api_log.lock().unwrap().clone()
    }

    fn script(&self, answers: &[(u16, Option<&'static str>)]) {
        self.script.lock().unwrap().extend(answers.iter().copied());
    }

    async fn handle(
        &self,
        method: Method,
        path: String,
        _query: String,
        headers: HeaderMap,
        body: Bytes,
    ) -> Response<String> {
        let auth = headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        if path == "/oauth/token" {
            return self.token(&method, &auth, &headers, &body).await;
        }

        let bearer = auth.strip_prefix("Bearer ").map(str::to_string);
        self.api_log.lock().unwrap().push(Logged {
            path: path.clone(),
            bearer: bearer.clone(),
        });
        let delay = *self.api_delay.lock().unwrap();
        tokio::time::sleep(delay).await;

        let valid = bearer.as_ref().is_some_and(|t| {
            self.issued.lock().unwrap().contains(t) && !self.revoked.lock().unwrap().contains(t)
        });
        if !valid || self.reject_all.load(Ordering::SeqCst) {
            return answer(401, format!("token rejected: {auth}"));
        }
        let scripted = self.script.lock().unwrap().pop_front();
        if let Some((status, retry_after)) = scripted {
            // Echo the credentials, as a careless server might: the client must redact.
            let mut resp = answer(status, format!("scripted failure for {auth}"));
            if let Some(ra) = retry_after {
                resp.headers_mut()
                    .insert("retry-after", ra.parse().unwrap());
            }
            return resp;
        }

        let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
        match (method.clone(), segments.as_slice()) {
            (Method::GET, ["api", "v2", "conversations", id]) => {
                if id.starts_with("gone-") {
                    return answer(404, String::new());
                }
                json_answer(
                    200,
                    json!({
                        "id": id,
                        "startTime": "2024-05-01T10:00:00Z",
                        "participants": [
                            {"id": "p1", "purpose": "customer", "name": "Ada",
                             "externalContactId": "x-1",
                             "attributes": {"cart_value": "42.5", "last_page": "/checkout"}},
                            {"id": "p2", "purpose": "agent"}
                        ],
                        "divisions": [{"id": "d1"}]
                    }),
                )
            }
            _ => answer(404, "no such route".into()),
        }
    }

    async fn token(
        &self,
        method: &Method,
        auth: &str,
        headers: &HeaderMap,
        body: &Bytes,
    ) -> Response<String> {
        let n = self.token_requests.fetch_add(1, Ordering::SeqCst) + 1;
        let delay = *self.token_delay.lock().unwrap();
        tokio::time::sleep(delay).await;
        if let Some(status) = *self.token_fail.lock().unwrap() {
            return answer(
                status,
                format!("bad client {auth} (that is {CLIENT_ID}:{CLIENT_SECRET})"),
            );
        }
        use base64::Engine;
        let expected = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD
                .encode(format!("{CLIENT_ID}:{CLIENT_SECRET}"))
        );
        let form_ok = headers
            .get("content-type")
            .is_some_and(|v| v == "application/x-www-form-urlencoded")
            && body.as_ref() == b"grant_type=client_credentials";
        if method != Method::POST || auth != expected || !form_ok {
            return answer(400, "invalid_client".into());
        }
        let token = format!("tok-{n}");
        self.issued.lock().unwrap().push(token.clone());
        json_answer(
            200,
            json!({
                "access_token": token,
                "token_type": "bearer",
                "expires_in": *self.expires_in.lock().unwrap()
            }),
        )
    }
}

fn answer(status: u16, body: String) -> Response<String> {
    Response::builder().status(status).body(body).unwrap()
}

fn json_answer(status: u16, body: Value) -> Response<String> {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(body.to_string())
        .unwrap()
}

/// Starts the fake on 127.0.0.1:0 and returns its base URL.
fn start(fake: Arc<Fake>) -> String {
    let query = warp::query::raw().or(warp::any().map(String::new)).unify();
    let routes = warp::method()
        .and(warp::path::full())
        .and(query)
        .and(warp::header::headers_cloned())
        .and(warp::body::bytes())
        .and_then(
            move |method, path: warp::path::FullPath, query, headers, body| {
                let fake = fake.clone();
                async move {
                    Ok::<_, Infallible>(
                        fake.handle(method, path.as_str().to_string(), query, headers, body)
                            .await,
                    )
                }
            },
        );
    let (addr, server) = warp::serve(routes).bind_ephemeral(([127, 0, 0, 1], 0));
    tokio::spawn(server);
    format!("http://{addr}")
}

fn http(timeout: Duration) -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(timeout)
        .build()
        .unwrap()
}

fn config(api_base: &str, login_base: &str) -> GenesysConfig {
    GenesysConfig {
        api_base: api_base.to_string(),
        login_base: login_base.to_string(),
        client_id: CLIENT_ID.into(),
        client_secret: Secret::new(CLIENT_SECRET),
        // Generous: these tests count requests, not the budget (tested in `genesys_budget`).
        rate_limit_per_minute: 60_000,
        budget_max_wait: Duration::from_secs(5),
        // Off: each call here must reach the fake (the cache is tested in `genesys_budget`).
        cache_ttl: Duration::ZERO,
    }
}

fn client(base: &str, metrics: &Arc<Metrics>) -> GenesysClient {
    GenesysClient::new(
        config(base, base),
        http(Duration::from_secs(5)),
        metrics.clone(),
    )
}

fn requests(metrics: &Metrics, endpoint: &str, status: &str) -> u64 {
    metrics
        .genesys_requests_total
        .with_label_values(&[endpoint, status])
        .get()
}

fn assert_no_secrets(err: &HttpError, secrets: &[&str]) {
    let shown = format!("{err} / {err:?}");
    for secret in secrets {
        assert!(!shown.contains(secret), "{secret:?} leaked into {shown}");
    }
}

#[tokio::test]
async fn token_is_cached_across_calls() {
    let fake = Fake::new();
    let base = start(fake.clone());
    let metrics = Arc::new(Metrics::new());
    let client = client(&base, &metrics);

    let conv = client
        .conversation("g-1")
        .await
        .unwrap()
        .expect("conversation exists");
    assert_eq!(conv.id, "g-1");
    let customer = conv.customer().expect("a customer participant");
    assert_eq!(customer.attributes["cart_value"], json!("42.5"));
    assert_eq!(customer.attributes["last_page"], json!("/checkout"));
    assert_eq!(customer.external_contact_id.as_deref(), Some("x-1"));
    client.conversation("g-2").await.unwrap().unwrap();
    client.conversation("c-1").await.unwrap().unwrap();

    assert_eq!(fake.tokens(), 1);
    assert!(fake
        .log()
        .iter()
        .all(|l| l.bearer.as_deref() == Some("tok-1")));
    assert_eq!(metrics.genesys_token_refresh_total.get(), 1);
    assert_eq!(requests(&metrics, "token", "200"), 1);
    assert_eq!(requests(&metrics, "conversation", "200"), 3);
}

#[tokio::test]
async fn fifty_concurrent_calls_share_one_token_request() {
    let fake = Fake::new();
    // A slow token endpoint keeps the refresh in flight while every task asks.
    *fake.token_delay.lock().unwrap() = Duration::from_millis(300);
    let base = start(fake.clone());
    let metrics = Arc::new(Metrics::new());
    let client = Arc::new(client(&base, &metrics));

    let tasks: Vec<_> = (0..50)
        .map(|i| {
            let client = client.clone();
            tokio::spawn(async move { client.conversation(&format!("g-{i}")).await })
        })
        .collect();
    for task in tasks {
        assert!(task.await.unwrap().unwrap().is_some());
    }
    assert_eq!(fake.tokens(), 1, "exactly one token request");
    assert_eq!(fake.log().len(), 50);
    assert_eq!(metrics.genesys_token_refresh_total.get(), 1);
}

#[tokio::test]
async fn token_is_refreshed_before_it_expires() {
    let fake = Fake::new();
    // Lifetime 6 s (lifetimes under 5 s are raised to 5 s, so a hostile `expires_in` cannot
    // make the relay spin): the refresh margin is min(10% = 0.6 s, 60 s), so from 5.4 s on.
    *fake.expires_in.lock().unwrap() = 6;
    let base = start(fake.clone());
    let metrics = Arc::new(Metrics::new());
    let client = client(&base, &metrics);

    client.conversation("g-1").await.unwrap();
    tokio::time::sleep(Duration::from_millis(1000)).await;
    client.conversation("g-1").await.unwrap();
    assert_eq!(fake.tokens(), 1, "still well within its lifetime");
    tokio::time::sleep(Duration::from_millis(4600)).await;
    client.conversation("g-1").await.unwrap();
    assert_eq!(fake.tokens(), 2, "refreshed inside the margin");
    let bearers: Vec<_> = fake.log().into_iter().map(|l| l.bearer.unwrap()).collect();
    assert_eq!(bearers, ["tok-1", "tok-1", "tok-2"]);
}

#[tokio::test]
async fn unauthorized_refreshes_the_token_once_and_retries() {
    let fake = Fake::new();
    let base = start(fake.clone());
    let metrics = Arc::new(Metrics::new());
    let client = client(&base, &metrics);

    client.conversation("g-1").await.unwrap().unwrap();
    fake.revoked.lock().unwrap().insert("tok-1".into());
    let conv = client
        .conversation("g-2")
        .await
        .unwrap()
        .expect("retried with a fresh token");
    assert_eq!(conv.id, "g-2");

    assert_eq!(fake.tokens(), 2);
    let bearers: Vec<_> = fake.log().into_iter().map(|l| l.bearer.unwrap()).collect();
    assert_eq!(bearers, ["tok-1", "tok-1", "tok-2"]);
    assert_eq!(requests(&metrics, "conversation", "401"), 1);
    assert_eq!(requests(&metrics, "conversation", "200"), 2);
    assert_eq!(metrics.genesys_token_refresh_total.get(), 2);
}

#[tokio::test]
async fn a_second_unauthorized_goes_back_to_the_caller() {
    let fake = Fake::new();
    fake.reject_all.store(true, Ordering::SeqCst);
    let base = start(fake.clone());
    let metrics = Arc::new(Metrics::new());
    let client = client(&base, &metrics);

    let err = client.conversation("g-1").await.unwrap_err();
    assert_eq!(err.status(), Some(401));
    assert_eq!(
        fake.tokens(),
        2,
        "one initial token and exactly one refresh"
    );
    assert_eq!(fake.log().len(), 2);
    assert_no_secrets(&err, &["tok-1", "tok-2", CLIENT_SECRET]);
}

#[tokio::test]
async fn rate_limit_waits_for_retry_after_then_succeeds() {
    let fake = Fake::new();
    let base = start(fake.clone());
    let metrics = Arc::new(Metrics::new());
    let client = client(&base, &metrics);
    client.conversation("warm-up").await.unwrap();

    fake.script(&[(429, Some("1"))]);
    let started = Instant::now();
    assert!(client.conversation("g-1").await.unwrap().is_some());
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "waited {:?}",
        started.elapsed()
    );

    // Without Retry-After the wait defaults to one second.
    fake.script(&[(429, None)]);
    let started = Instant::now();
    assert!(client.conversation("c-1").await.unwrap().is_some());
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "waited {:?}",
        started.elapsed()
    );

    assert_eq!(fake.log().len(), 5);
    assert_eq!(requests(&metrics, "conversation", "429"), 2);
}

#[tokio::test]
async fn rate_limit_gives_up_after_two_retries_with_retry_after() {
    let fake = Fake::new();
    let base = start(fake.clone());
    let metrics = Arc::new(Metrics::new());
    let client = client(&base, &metrics);

    fake.script(&[
        (429, Some("0")),
        (429, Some("0")),
        (429, Some("0")),
        (429, Some("0")),
    ]);
    let err = client.conversation("g-1").await.unwrap_err();
    assert_eq!(err.status(), Some(429));
    assert_eq!(err.retry_after(), Some(Duration::ZERO));
    assert_eq!(fake.log().len(), 3, "the first try and two retries");
    assert_eq!(requests(&metrics, "conversation", "429"), 3);
}

#[tokio::test]
async fn not_found_is_none() {
    let fake = Fake::new();
    let base = start(fake.clone());
    let metrics = Arc::new(Metrics::new());
    let client = client(&base, &metrics);

    assert_eq!(client.conversation("gone-1").await.unwrap(), None);
    assert_eq!(client.conversation("gone-2").await.unwrap(), None);
    assert_eq!(requests(&metrics, "conversation", "404"), 2);
}

#[tokio::test]
async fn server_error_returns_at_once_with_status_and_no_secrets() {
    let fake = Fake::new();
    let base = start(fake.clone());
    let metrics = Arc::new(Metrics::new());
    let client = client(&base, &metrics);

    fake.script(&[(503, Some("7"))]);
    let err = client.conversation("g-1").await.unwrap_err();
    assert_eq!(err.status(), Some(503));
    assert_eq!(err.retry_after(), Some(Duration::from_secs(7)));
    assert_eq!(fake.log().len(), 1, "no retry inside the client");
    assert_eq!(requests(&metrics, "conversation", "503"), 1);
    // The fake echoed the Authorization header; the body is kept, the token is not.
    assert!(
        err.to_string().contains("scripted failure for Bearer ***"),
        "{err}"
    );
    assert_no_secrets(&err, &["tok-1", CLIENT_SECRET]);
}

#[tokio::test]
async fn token_endpoint_failure_does_not_leak_the_client_secret() {
    let fake = Fake::new();
    *fake.token_fail.lock().unwrap() = Some(401);
    let base = start(fake.clone());
    let metrics = Arc::new(Metrics::new());
    let client = client(&base, &metrics);

    let err = client.conversation("g-1").await.unwrap_err();
    assert_eq!(err.status(), Some(401));
    use base64::Engine;
    let basic =
        base64::engine::general_purpose::STANDARD.encode(format!("{CLIENT_ID}:{CLIENT_SECRET}"));
    assert_no_secrets(&err, &[CLIENT_SECRET, &basic]);
    assert!(fake.log().is_empty(), "no API call without a token");
    assert_eq!(requests(&metrics, "token", "401"), 1);
    assert_eq!(metrics.genesys_token_refresh_total.get(), 0);
    // Nor does any metric label carry it.
    assert!(!metrics.render().contains(CLIENT_SECRET));
}

#[tokio::test]
async fn conversation_is_decoded_and_kept_whole() {
    let fake = Fake::new();
    let base = start(fake.clone());
    let metrics = Arc::new(Metrics::new());
    let client = client(&base, &metrics);

    let conv = client.conversation("c-9").await.unwrap().unwrap();
    assert_eq!(conv.id, "c-9");
    assert_eq!(conv.start_time.as_deref(), Some("2024-05-01T10:00:00Z"));
    assert_eq!(conv.end_time, None);
    assert_eq!(conv.participants.len(), 2);
    assert_eq!(conv.participants[0].purpose.as_deref(), Some("customer"));
    assert_eq!(conv.participants[0].name.as_deref(), Some("Ada"));
    assert_eq!(conv.participants[1].name, None);
    assert_eq!(conv.raw["divisions"][0]["id"], "d1");
}

#[tokio::test]
async fn ids_are_percent_encoded_and_dot_segments_refused() {
    let fake = Fake::new();
    let base = start(fake.clone());
    let metrics = Arc::new(Metrics::new());
    let client = client(&base, &metrics);

    client.conversation("a/b c?x").await.unwrap().unwrap();
    client.conversation("../guests").await.unwrap().unwrap();
    let paths: Vec<_> = fake.log().into_iter().map(|l| l.path).collect();
    assert_eq!(
        paths,
        [
            "/api/v2/conversations/a%2Fb%20c%3Fx",
            "/api/v2/conversations/..%2Fguests"
        ]
    );

    let err = client.conversation("..").await.unwrap_err();
    assert!(matches!(err, HttpError::InvalidRequest(_)), "{err:?}");
    assert_eq!(fake.log().len(), 2, "nothing sent for an unusable id");
}

#[tokio::test]
async fn transport_failures_are_labelled_error_or_timeout() {
    let fake = Fake::new();
    let base = start(fake.clone());
    let metrics = Arc::new(Metrics::new());

    // An API base nobody listens on: the token comes from the fake, the call fails.
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", listener.local_addr().unwrap())
    };
    let refused = GenesysClient::new(
        config(&closed, &base),
        http(Duration::from_secs(5)),
        metrics.clone(),
    );
    let err = refused.conversation("g-1").await.unwrap_err();
    assert!(
        matches!(err, HttpError::Transport { timeout: false, .. }),
        "{err:?}"
    );
    assert_eq!(err.status(), None);
    assert_eq!(requests(&metrics, "conversation", "error"), 1);

    *fake.api_delay.lock().unwrap() = Duration::from_secs(2);
    let slow = GenesysClient::new(
        config(&base, &base),
        http(Duration::from_millis(300)),
        metrics.clone(),
    );
    let err = slow.conversation("g-1").await.unwrap_err();
    assert!(err.is_timeout(), "{err:?}");
    assert_eq!(requests(&metrics, "conversation", "timeout"), 1);
}

#[tokio::test]
async fn invalidate_only_drops_the_token_it_names() {
    let fake = Fake::new();
    let base = start(fake.clone());
    let metrics = Arc::new(Metrics::new());
    let tokens = TokenSource::new(
        config(&base, &base),
        http(Duration::from_secs(5)),
        metrics.clone(),
    );

    assert_eq!(tokens.token().await.unwrap(), "tok-1");
    // A task that got a 401 with an older token must not discard the current one.
    tokens.invalidate("tok-0");
    assert_eq!(tokens.token().await.unwrap(), "tok-1");
    assert_eq!(fake.tokens(), 1);
    tokens.invalidate("tok-1");
    assert_eq!(tokens.token().await.unwrap(), "tok-2");
    assert_eq!(fake.tokens(), 2);
    assert!(!format!("{tokens:?}").contains("tok-2"));
}

#[tokio::test]
async fn concurrent_lookups_of_one_conversation_make_one_request_and_the_cache_serves_the_rest() {
    let fake = Fake::new();
    // A slow answer keeps the first request in flight while the others ask.
    *fake.api_delay.lock().unwrap() = Duration::from_millis(300);
    let base = start(fake.clone());
    let metrics = Arc::new(Metrics::new());
    let cfg = GenesysConfig {
        cache_ttl: Duration::from_secs(60),
        ..config(&base, &base)
    };
    let client = Arc::new(GenesysClient::new(
        cfg,
        http(Duration::from_secs(5)),
        metrics.clone(),
    ));
    let tasks: Vec<_> = (0..20)
        .map(|_| {
            let client = client.clone();
            tokio::spawn(async move { client.conversation("c-shared").await })
        })
        .collect();
    for task in tasks {
        assert_eq!(task.await.unwrap().unwrap().unwrap().id, "c-shared");
    }
    assert_eq!(fake.log().len(), 1, "one request for 20 concurrent lookups");
    // Later lookups within the TTL, and a cached 404, make no request either.
    client.conversation("c-shared").await.unwrap().unwrap();
    assert_eq!(client.conversation("gone-1").await.unwrap(), None);
    assert_eq!(client.conversation("gone-1").await.unwrap(), None);
    assert_eq!(fake.log().len(), 2);
    assert_eq!(metrics.genesys_cache_hits_total.get(), 21);
}

#[tokio::test]
async fn a_busy_budget_holds_the_lane_and_only_a_genesys_pause_is_a_deferral() {
    let fake = Fake::new();
    let base = start(fake.clone());
    let metrics = Arc::new(Metrics::new());
    // 30 per minute = one slot every 2 s; at most 1 s of slots handed out ahead.
    let cfg = GenesysConfig {
        rate_limit_per_minute: 30,
        budget_max_wait: Duration::from_secs(1),
        ..config(&base, &base)
    };
    let client = GenesysClient::new(cfg, http(Duration::from_secs(5)), metrics.clone());
    client.conversation("c-1").await.unwrap().unwrap();
    // The next slot is 2 s away, further than max_wait, taken by nobody but the queue:
    // the call waits its turn in the lane instead of becoming a retry record.
    let started = Instant::now();
    client.conversation("c-2").await.unwrap().unwrap();
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(1800) && waited < Duration::from_secs(4),
        "{waited:?}"
    );
    // Genesys stops the budget for 30 s (a 429 with Retry-After): the retry's slot is
    // past max_wait, so the call comes back as a deferral, without waiting the pause.
    fake.script(&[(429, Some("30"))]);
    let started = Instant::now();
    let err = client.conversation("c-3").await.unwrap_err();
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "no wait for the pause in the lane: {:?}",
        started.elapsed()
    );
    assert!(err.is_deferral() && err.is_retriable(), "{err:?}");
    let retry_after = err.retry_after().unwrap();
    assert!(
        retry_after > Duration::from_secs(25) && retry_after <= Duration::from_secs(32),
        "{retry_after:?}"
    );
    assert_eq!(fake.log().len(), 3, "nothing sent during the pause");
}
