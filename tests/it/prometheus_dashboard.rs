//! Runs a real Prometheus (Debian's `prometheus` package, `/usr/bin/prometheus`, or
//! `PROMETHEUS_BIN`) against a relay that handled some traffic, and evaluates every query
//! of the Grafana dashboard through Prometheus' HTTP API: each must parse and evaluate,
//! group only by labels the relay exports, and the ingress, processing and sink panels
//! must show series. Skipped, loudly, where no Prometheus binary is installed
//! (scripts/install-prometheus.sh installs it; CI runs that script).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::*;
use serde_json::{json, Value};

/// The Prometheus binary, if one is installed.
fn prometheus_bin() -> Option<PathBuf> {
    let p = std::env::var_os("PROMETHEUS_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/prometheus"));
    p.is_file().then_some(p)
}

/// A Prometheus server on a free port scraping one target every second; stopped on drop
/// (SIGTERM, SIGKILL after 5 s), and also when the test process dies (a watchdog shell
/// polls the parent).
struct Prometheus {
    port: u16,
    _dir: tempfile::TempDir,
    child: Option<Child>,
}

impl Prometheus {
    fn start(bin: &Path, target: &str) -> Prometheus {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
                 scrape_configs:\n  - job_name: genesys-relay\n    scrape_interval: 1s\n    \
                 metrics_path: /metrics\n    static_configs:\n      - targets: [\"{target}\"]\n"
            ),
        )
        .unwrap();
        let port = free_port();
        let data = dir.path().join("data");
        let script = format!(
            "\"$0\" --config.file=\"$1\" --storage.tsdb.path=\"$2\" \
             --web.listen-address=127.0.0.1:{port} --log.level=warn & pid=$!; \
             trap 'kill $pid 2>/dev/null; (sleep 5; kill -9 $pid 2>/dev/null) & k=$!; \
             wait $pid; kill $k 2>/dev/null; exit 0' TERM; \
             while kill -0 {parent} 2>/dev/null && kill -0 $pid 2>/dev/null; do sleep 0.5; done; \
             kill $pid 2>/dev/null",
            parent = std::process::id()
        );
        let child = Command::new("sh")
            .arg("-c")
            .arg(script)
            .arg(bin)
            .arg(&config)
            .arg(&data)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn prometheus");
        Prometheus {
            port,
            _dir: dir,
            child: Some(child),
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = Command::new("kill").arg(c.id().to_string()).status();
            let _ = c.wait();
        }
    }
}

/// `GET /api/v1/query`: the whole answer, whatever its status.
async fn query(http: &reqwest::Client, prom: &Prometheus, expr: &str) -> Value {
    http.get(prom.url("/api/v1/query"))
        .query(&[("query", expr)])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// The result vector of a successful instant query (empty on any failure).
async fn vector(http: &reqwest::Client, prom: &Prometheus, expr: &str) -> Vec<Value> {
    let v = query(http, prom, expr).await;
    v["data"]["result"].as_array().cloned().unwrap_or_default()
}

fn sample_value(series: &Value) -> f64 {
    series["value"][1]
        .as_str()
        .and_then(|s| s.parse().ok())
        .unwrap_or(f64::NAN)
}

fn dashboard() -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("grafana/dashboards/genesys-relay.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn collect_exprs(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            for (k, v) in m {
                match (k.as_str(), v) {
                    ("expr", Value::String(s)) => out.push(s.clone()),
                    _ => collect_exprs(v, out),
                }
            }
        }
        Value::Array(a) => a.iter().for_each(|v| collect_exprs(v, out)),
        _ => {}
    }
}

/// The value a Grafana variable takes in this test: built-in intervals as Grafana would
/// pick them for a short range, `job` the test's scrape job, any other template variable
/// `.*` (the dashboard's variables are all used in `=~` matchers).
fn variable_value(name: &str) -> String {
    match name {
        "__rate_interval" => "30s".into(),
        "__interval" => "5s".into(),
        "__interval_ms" => "5000".into(),
        "__range" => "5m".into(),
        "__range_s" => "300".into(),
        "__range_ms" => "300000".into(),
        "job" => "genesys-relay".into(),
        _ => ".*".into(),
    }
}

/// Replaces `$name`, `${name}`, `${name:format}` and `[[name]]` in a dashboard expression.
fn substitute(expr: &str) -> String {
    let ident = |c: char| c.is_ascii_alphanumeric() || c == '_';
    let mut out = String::new();
    let mut rest = expr;
    while let Some(i) = rest.find(['$', '[']) {
        out.push_str(&rest[..i]);
        let tail = &rest[i..];
        if let Some(inner) = tail.strip_prefix("${") {
            if let Some(end) = inner.find('}') {
                let name = inner[..end].split(':').next().unwrap_or_default();
                out.push_str(&variable_value(name));
                rest = &inner[end + 1..];
                continue;
            }
        } else if let Some(inner) = tail.strip_prefix("[[") {
            if let Some(end) = inner.find("]]") {
                out.push_str(&variable_value(&inner[..end]));
                rest = &inner[end + 2..];
                continue;
            }
        } else if let Some(inner) = tail.strip_prefix('$') {
            let len = inner.find(|c: char| !ident(c)).unwrap_or(inner.len());
            if inner.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_') {
                out.push_str(&variable_value(&inner[..len]));
                rest = &inner[len..];
                continue;
            }
        }
        out.push_str(&tail[..1]);
        rest = &tail[1..];
    }
    out.push_str(rest);
    out
}

/// Labels named in `by (...)` clauses, except `le` (consumed by histogram_quantile).
fn grouping_labels(expr: &str) -> Vec<String> {
    let mut labels = Vec::new();
    let mut rest = expr;
    while let Some(i) = rest.find("by") {
        let before_ok = !rest[..i]
            .chars()
            .next_back()
            .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_');
        let after = rest[i + 2..].trim_start();
        if before_ok && after.starts_with('(') {
            if let Some(end) = after.find(')') {
                labels.extend(
                    after[1..end]
                        .split(',')
                        .map(str::trim)
                        .filter(|l| !l.is_empty() && *l != "le")
                        .map(String::from),
                );
            }
        }
        rest = &rest[i + 2..];
    }
    labels
}

fn secret_header() -> (&'static str, &'static str) {
    ("x-relay-secret", "s3cret")
}

async fn post(sims: &Sims, ingress: std::net::SocketAddr, body: &Value, authed: bool) -> u16 {
    let mut req = sims
        .http
        .post(format!("http://{ingress}/webhooks/genesys"))
        .json(body);
    if authed {
        let (k, v) = secret_header();
        req = req.header(k, v);
    }
    req.send().await.unwrap().status().as_u16()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_queries_evaluate_in_a_real_prometheus() {
    let Some(bin) = prometheus_bin() else {
        eprintln!(
            "\n!!!!!!!!!! SKIPPED dashboard_queries_evaluate_in_a_real_prometheus: no Prometheus \
             binary at /usr/bin/prometheus or $PROMETHEUS_BIN (run scripts/install-prometheus.sh) \
             !!!!!!!!!!\n"
        );
        return;
    };
    let started = Instant::now();
    let broker = Broker::start();
    let sims = Sims::start().await;
    let prefix = unique_prefix("prom");
    let cfg = stack_config(
        &broker,
        &sims,
        &prefix,
        &[
            ("RELAY_KAFKA_STATISTICS_INTERVAL_MS", "500"),
            ("RELAY_RETRY_DELAYS", "300ms,600ms"),
            ("RELAY_WEBHOOK_SECRET", "s3cret"),
        ],
    );
    let relay = genesys_relay::app::start(cfg, genesys_relay::app::Role::Serve)
        .await
        .unwrap();
    let ingress = relay.ingress_addr.unwrap();
    let prom = Prometheus::start(&bin, &relay.admin_addr.to_string());
    let http = &sims.http;

    // Ready, and the relay scraped at least once, before the traffic: rates then see it.
    let ready = wait_until(Duration::from_secs(60), || async {
        matches!(http.get(prom.url("/-/ready")).send().await, Ok(r) if r.status().is_success())
    })
    .await;
    assert!(ready, "prometheus did not become ready");
    let up = r#"up{job="genesys-relay"}"#;
    let scraped = wait_until(Duration::from_secs(30), || async {
        vector(http, &prom, up)
            .await
            .iter()
            .any(|s| sample_value(s) == 1.0)
    })
    .await;
    assert!(scraped, "prometheus never scraped the relay successfully");

    // Traffic: a guest sync whose first CMS write fails with 503 (one retry), a
    // conversation:created, a gone guest (skipped), and a webhook without credentials (401).
    sims.cms_faults(json!({"fail_next": 1, "error_status": 503}))
        .await;
    let guest = json!({"conversationId": "g-1", "guestId": "g-1"});
    let created = json!({"conversationId": "c-2"});
    let gone = json!({"conversationId": "gone-3", "guestId": "gone-3"});
    for (body, authed, want) in [
        (
            envelope("conversation:updated", "e-1", "2026-11-24T08:00:00Z", guest),
            true,
            202,
        ),
        (
            envelope(
                "conversation:created",
                "e-2",
                "2026-11-24T08:00:01Z",
                created,
            ),
            true,
            202,
        ),
        (
            envelope("conversation:updated", "e-3", "2026-11-24T08:00:02Z", gone),
            true,
            202,
        ),
        (
            envelope(
                "conversation:updated",
                "e-4",
                "2026-11-24T08:00:03Z",
                json!({}),
            ),
            false,
            401,
        ),
    ] {
        assert_eq!(post(&sims, ingress, &body, authed).await, want);
    }
    let handled = wait_until(Duration::from_secs(60), || async {
        let m = relay.metrics.render();
        metric_value(&m, "relay_retry_scheduled_total{tier=\"1\"}") >= 1.0
            && !syncs_by_key(&sims.cms_stats().await).is_empty()
            && m.contains("relay_skipped_total{")
    })
    .await;
    assert!(
        handled,
        "the relay did not retry, sync and skip:\n{}",
        relay.metrics.render()
    );
    // A second round a few scrapes later, so the counters rise between scrapes.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let guest2 = json!({"conversationId": "g-5", "guestId": "g-5"});
    let body = envelope(
        "conversation:updated",
        "e-5",
        "2026-11-24T08:00:05Z",
        guest2,
    );
    assert_eq!(post(&sims, ingress, &body, true).await, 202);
    assert_eq!(post(&sims, ingress, &body, false).await, 401);
    let synced = wait_until(Duration::from_secs(30), || async {
        syncs_by_key(&sims.cms_stats().await).len() >= 2
    })
    .await;
    assert!(synced, "the second guest update was not synced");

    // At least five scrapes, the last ones after all the traffic.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let scrapes = r#"count_over_time(up{job="genesys-relay"}[5m])"#;
    let enough = wait_until(Duration::from_secs(30), || async {
        vector(http, &prom, scrapes)
            .await
            .first()
            .is_some_and(|s| sample_value(s) >= 5.0)
    })
    .await;
    assert!(enough, "fewer than 5 scrapes of the relay");

    // The dashboard's job variable: label_values(relay_in_flight, job).
    let jobs: Value = http
        .get(prom.url("/api/v1/label/job/values"))
        .query(&[("match[]", "relay_in_flight")])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        jobs["data"]
            .as_array()
            .is_some_and(|a| a.iter().any(|j| j == "genesys-relay")),
        "the job variable's query finds no genesys-relay job: {jobs}"
    );

    let mut exprs = Vec::new();
    collect_exprs(&dashboard(), &mut exprs);
    assert!(!exprs.is_empty(), "the dashboard has no expressions");
    let mut problems = Vec::new();
    let mut table = Vec::new();
    for expr in &exprs {
        let promql = substitute(expr);
        if promql.contains('$') || promql.contains("[[") {
            problems.push(format!("unsubstituted variable in {promql}"));
        }
        let answer = query(http, &prom, &promql).await;
        if answer["status"] != "success" {
            problems.push(format!("{promql}: {answer}"));
            table.push((expr.clone(), "ERROR".to_string(), String::new()));
            continue;
        }
        let series = answer["data"]["result"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        for s in &series {
            for label in grouping_labels(&promql) {
                if s["metric"].get(&label).is_none() {
                    problems.push(format!(
                        "{promql}: groups by `{label}`, which the series {} lacks",
                        s["metric"]
                    ));
                }
            }
        }
        let must_show = [
            "relay_ingress_requests_total",
            "relay_events_processed_total",
            "relay_sink_requests_total",
        ];
        if must_show.iter().any(|m| promql.contains(m)) && series.is_empty() {
            problems.push(format!("{promql}: no series after traffic"));
        }
        let max = series
            .iter()
            .map(sample_value)
            .filter(|v| v.is_finite())
            .fold(None, |acc: Option<f64>, v| {
                Some(acc.map_or(v, |a| a.max(v)))
            });
        table.push((
            expr.clone(),
            series.len().to_string(),
            max.map_or("-".into(), |m| format!("{m:.3}")),
        ));
    }

    eprintln!("\n{:<7} {:>9}  expr", "series", "max");
    for (expr, n, max) in &table {
        eprintln!("{n:<7} {max:>9}  {expr}");
    }
    eprintln!("(took {:.1?})\n", started.elapsed());
    assert!(
        problems.is_empty(),
        "dashboard queries failing in Prometheus: {problems:#?}"
    );
    let t = Instant::now();
    drop(prom);
    eprintln!("prometheus stopped in {:.1?}", t.elapsed());
    let t = Instant::now();
    relay.stop().await;
    eprintln!("relay stopped in {:.1?}", t.elapsed());
}

#[test]
fn grafana_variables_are_substituted() {
    assert_eq!(
        substitute(r#"rate(x{job=~"$job"}[$__rate_interval])"#),
        r#"rate(x{job=~"genesys-relay"}[30s])"#
    );
    assert_eq!(
        substitute(r#"x{job=~"${job:regex}",a=~"[[other]]"}[${__range}] $1"#),
        r#"x{job=~"genesys-relay",a=~".*"}[5m] $1"#
    );
    assert_eq!(
        grouping_labels("histogram_quantile(0.9, sum by (le, route) (rate(a[1m]))) + sum by(x)(b)"),
        ["route", "x"]
    );
    assert!(grouping_labels("standby(x)").is_empty());
}
