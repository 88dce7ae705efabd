//! The CMS and forward sinks against a purpose-built fake that records every request.

use std::collections::{HashMap, VecDeque};
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use genesys_relay::config::Secret;
use genesys_relay::metrics::Metrics;
use genesys_relay::sinks::{CmsClient, HttpError, HttpForwarder, UpsertOutcome};
use serde_json::{json, Map, Value};
use warp::http::{HeaderMap, Method, Response};
use warp::Filter;

const API_KEY: &str = "cms-api-key-very-secret";

#[derive(Clone, Debug)]
struct Logged {
    method: Method,
    path: String,
    headers: HeaderMap,
    body: Value,
}

impl Logged {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

#[derive(Default)]
struct Fake {
    log: Mutex<Vec<Logged>>,
    /// Entry id -> fields, as the CMS stores them.
    entries: Mutex<HashMap<String, Value>>,
    /// The next answers, before any normal handling: status, Retry-After, body.
    script: Mutex<VecDeque<(u16, Option<&'static str>, String)>>,
    delay: Mutex<Duration>,
}

impl Fake {
    fn log(&self) -> Vec<Logged> {
        self.log.lock().unwrap().clone()
    }

    fn script(&self, status: u16, retry_after: Option<&'static str>, body: &str) {
        self.script
            .lock()
            .unwrap()
            .push_back((status, retry_after, body.to_string()));
    }

    async fn handle(
        &self,
        method: Method,
        path: String,
        headers: HeaderMap,
        body: Bytes,
    ) -> Response<String> {
        let json: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        self.log.lock().unwrap().push(Logged {
            method: method.clone(),
            path: path.clone(),
            headers: headers.clone(),
            body: json.clone(),
        });
        let delay = *self.delay.lock().unwrap();
        tokio::time::sleep(delay).await;
        let scripted = self.script.lock().unwrap().pop_front();
        if let Some((status, retry_after, body)) = scripted {
            let auth = headers
                .get("authorization")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("");
            let mut resp = answer(status, body.replace("{auth}", auth));
            if let Some(ra) = retry_after {
                resp.headers_mut()
                    .insert("retry-after", ra.parse().unwrap());
            }
            return resp;
        }
        let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
        let mut entries = self.entries.lock().unwrap();
        match (method, segments.as_slice()) {
            (Method::POST, ["v1", "entries"]) => {
                let id = json["id"].as_str().unwrap().to_string();
                if entries.contains_key(&id) {
                    return answer(409, json!({"error": "exists"}).to_string());
                }
                entries.insert(id, json["fields"].clone());
                answer(201, json.to_string())
            }
            (Method::PUT, ["v1", "entries", id]) => {
                let id = percent_decode(id);
                match entries.get_mut(&id) {
                    Some(fields) => {
                        *fields = json["fields"].clone();
                        answer(200, json.to_string())
                    }
                    None => answer(404, String::new()),
                }
            }
            (Method::POST, ["forward"]) => answer(202, String::new()),
            _ => answer(404, "no such route".into()),
        }
    }
}

/// Enough decoding for the ids used here.
fn percent_decode(s: &str) -> String {
    s.replace("%2F", "/").replace("%20", " ")
}

fn answer(status: u16, body: String) -> Response<String> {
    Response::builder().status(status).body(body).unwrap()
}

fn start(fake: Arc<Fake>) -> String {
    let routes = warp::method()
        .and(warp::path::full())
        .and(warp::header::headers_cloned())
        .and(warp::body::bytes())
        .and_then(move |method, path: warp::path::FullPath, headers, body| {
            let fake = fake.clone();
            async move {
                Ok::<_, Infallible>(
                    fake.handle(method, path.as_str().to_string(), headers, body)
                        .await,
                )
            }
        });
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

fn cms(base: &str, metrics: &Arc<Metrics>) -> CmsClient {
    CmsClient::new(
        format!("{base}/v1/entries"),
        Some(Secret::new(API_KEY)),
        http(Duration::from_secs(5)),
        metrics.clone(),
    )
}

fn fields(cart: f64) -> Map<String, Value> {
    json!({"cart_value": cart, "last_page": "/checkout"})
        .as_object()
        .unwrap()
        .clone()
}

fn requests(metrics: &Metrics, sink: &str, status: &str) -> u64 {
    metrics
        .sink_requests_total
        .with_label_values(&[sink, status])
        .get()
}

fn assert_no_secret(err: &HttpError) {
    let shown = format!("{err} / {err:?}");
    assert!(!shown.contains(API_KEY), "API key leaked into {shown}");
}

#[tokio::test]
async fn cms_creates_then_updates_on_conflict_with_the_same_key() {
    let fake = Arc::new(Fake::default());
    let base = start(fake.clone());
    let metrics = Arc::new(Metrics::new());
    let cms = cms(&base, &metrics);

    let first = cms
        .upsert_guest_session("guest/1 a", &fields(10.0), "key-1")
        .await
        .unwrap();
    assert_eq!(first, UpsertOutcome::Created);
    let second = cms
        .upsert_guest_session("guest/1 a", &fields(20.0), "key-2")
        .await
        .unwrap();
    assert_eq!(second, UpsertOutcome::Updated);

    let log = fake.log();
    let calls: Vec<_> = log
        .iter()
        .map(|l| (l.method.clone(), l.path.clone()))
        .collect();
    assert_eq!(
        calls,
        [
            (Method::POST, "/v1/entries".to_string()),
            (Method::POST, "/v1/entries".to_string()),
            (Method::PUT, "/v1/entries/guest%2F1%20a".to_string()),
        ]
    );
    assert_eq!(
        log[0].body,
        json!({"id": "guest/1 a", "type": "guest_session", "fields": fields(10.0)})
    );
    assert_eq!(log[2].body["fields"]["cart_value"], json!(20.0));
    assert_eq!(log[0].header("x-idempotency-key"), Some("key-1"));
    // The update after the 409 carries the key of the write it completes.
    assert_eq!(log[1].header("x-idempotency-key"), Some("key-2"));
    assert_eq!(log[2].header("x-idempotency-key"), Some("key-2"));
    let bearer = format!("Bearer {API_KEY}");
    assert!(log
        .iter()
        .all(|l| l.header("authorization") == Some(bearer.as_str())));

    assert_eq!(
        fake.entries.lock().unwrap()["guest/1 a"]["cart_value"],
        json!(20.0)
    );
    assert_eq!(requests(&metrics, "cms", "201"), 1);
    assert_eq!(requests(&metrics, "cms", "409"), 1);
    assert_eq!(requests(&metrics, "cms", "200"), 1);
    let histogram = metrics
        .sink_request_duration_seconds
        .with_label_values(&["cms"]);
    assert_eq!(histogram.get_sample_count(), 3);
}

#[tokio::test]
async fn cms_without_api_key_sends_no_authorization() {
    let fake = Arc::new(Fake::default());
    let base = start(fake.clone());
    let metrics = Arc::new(Metrics::new());
    let cms = CmsClient::new(
        format!("{base}/v1/entries"),
        None,
        http(Duration::from_secs(5)),
        metrics,
    );

    cms.upsert_guest_session("g", &fields(1.0), "k")
        .await
        .unwrap();
    assert_eq!(fake.log()[0].header("authorization"), None);
}

#[tokio::test]
async fn cms_errors_keep_status_retry_after_and_a_bounded_redacted_body() {
    let fake = Arc::new(Fake::default());
    let base = start(fake.clone());
    let metrics = Arc::new(Metrics::new());
    let cms = cms(&base, &metrics);

    fake.script(503, Some("7"), "overloaded");
    let err = cms
        .upsert_guest_session("g", &fields(1.0), "k")
        .await
        .unwrap_err();
    assert_eq!(err.status(), Some(503));
    assert_eq!(err.retry_after(), Some(Duration::from_secs(7)));
    assert_eq!(
        fake.log().len(),
        1,
        "one attempt; retries belong to the pipeline"
    );

    // A server that echoes the credentials in a long error body.
    let long = format!("you sent {{auth}} {}", "x".repeat(2000));
    fake.script(500, None, &long);
    let err = cms
        .upsert_guest_session("g", &fields(1.0), "k")
        .await
        .unwrap_err();
    assert_eq!(err.status(), Some(500));
    assert_eq!(err.retry_after(), None);
    match &err {
        HttpError::Status { body, .. } => {
            assert!(body.len() <= 512, "body is {} bytes", body.len());
            assert!(body.starts_with("you sent Bearer ***"), "{body}");
        }
        other => panic!("expected Status, got {other:?}"),
    }
    assert_no_secret(&err);

    // A failing update after the conflict is reported too.
    fake.entries.lock().unwrap().insert("g".into(), json!({}));
    fake.log.lock().unwrap().clear();
    fake.script(409, None, "exists");
    fake.script(429, Some("3"), "slow down");
    let err = cms
        .upsert_guest_session("g", &fields(1.0), "k")
        .await
        .unwrap_err();
    assert_eq!(
        (err.status(), err.retry_after()),
        (Some(429), Some(Duration::from_secs(3)))
    );
    assert_eq!(fake.log().len(), 2);
    assert!(!metrics.render().contains(API_KEY));
}

#[tokio::test]
async fn transport_failures_are_labelled_timeout_or_error() {
    let fake = Arc::new(Fake::default());
    *fake.delay.lock().unwrap() = Duration::from_secs(2);
    let base = start(fake.clone());
    let metrics = Arc::new(Metrics::new());

    let slow = CmsClient::new(
        format!("{base}/v1/entries"),
        Some(Secret::new(API_KEY)),
        http(Duration::from_millis(300)),
        metrics.clone(),
    );
    let err = slow
        .upsert_guest_session("g", &fields(1.0), "k")
        .await
        .unwrap_err();
    assert!(err.is_timeout(), "{err:?}");
    assert_eq!(err.status(), None);
    assert_eq!(requests(&metrics, "cms", "timeout"), 1);
    assert_no_secret(&err);

    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", listener.local_addr().unwrap())
    };
    let forwarder = HttpForwarder::new(
        format!("{closed}/forward"),
        http(Duration::from_secs(5)),
        metrics.clone(),
    );
    let err = forwarder.forward(&json!({}), "k", "e").await.unwrap_err();
    assert!(
        matches!(err, HttpError::Transport { timeout: false, .. }),
        "{err:?}"
    );
    assert_eq!(requests(&metrics, "forward", "error"), 1);
}

#[tokio::test]
async fn forward_sends_the_body_and_both_headers() {
    let fake = Arc::new(Fake::default());
    let base = start(fake.clone());
    let metrics = Arc::new(Metrics::new());
    let forwarder = HttpForwarder::new(
        format!("{base}/forward"),
        http(Duration::from_secs(5)),
        metrics.clone(),
    );

    let body = json!({"eventType": "conversation:created", "data": {"id": "c-1"}});
    forwarder
        .forward(&body, "forward:evt-1", "evt-1")
        .await
        .unwrap();

    let log = fake.log();
    assert_eq!(log.len(), 1);
    assert_eq!(log[0].method, Method::POST);
    assert_eq!(log[0].path, "/forward");
    assert_eq!(log[0].body, body);
    assert_eq!(log[0].header("x-idempotency-key"), Some("forward:evt-1"));
    assert_eq!(log[0].header("x-relay-event-id"), Some("evt-1"));
    assert_eq!(log[0].header("content-type"), Some("application/json"));
    assert_eq!(requests(&metrics, "forward", "202"), 1);
}

#[tokio::test]
async fn forward_reports_non_success_statuses() {
    let fake = Arc::new(Fake::default());
    let base = start(fake.clone());
    let metrics = Arc::new(Metrics::new());
    let forwarder = HttpForwarder::new(
        format!("{base}/forward"),
        http(Duration::from_secs(5)),
        metrics.clone(),
    );

    fake.script(429, Some("2"), "busy");
    let err = forwarder.forward(&json!({}), "k", "e").await.unwrap_err();
    assert_eq!(
        (err.status(), err.retry_after()),
        (Some(429), Some(Duration::from_secs(2)))
    );
    fake.script(400, None, "bad event");
    let err = forwarder.forward(&json!({}), "k", "e").await.unwrap_err();
    assert_eq!(err.status(), Some(400));
    assert!(err.to_string().contains("bad event"), "{err}");
    assert_eq!(requests(&metrics, "forward", "429"), 1);
    assert_eq!(requests(&metrics, "forward", "400"), 1);
}
