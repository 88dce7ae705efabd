//! Checks the deployment files without a Docker engine: the wiring of docker-compose.yml
//! (services, listeners, URLs, mounts, dependencies), the Prometheus and Grafana
//! provisioning, and that every metric the Grafana dashboard queries is one the relay
//! registers in src/metrics.rs.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

use serde_yaml::Value as Yaml;

fn repo_path(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
}

fn read(rel: &str) -> String {
    let path = repo_path(rel);
    fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

fn yaml_file(rel: &str) -> Yaml {
    serde_yaml::from_str(&read(rel)).unwrap_or_else(|e| panic!("{rel} is not valid YAML: {e}"))
}

fn compose() -> Yaml {
    yaml_file("docker-compose.yml")
}

fn service<'a>(compose: &'a Yaml, name: &str) -> &'a Yaml {
    compose
        .get("services")
        .and_then(|s| s.get(name))
        .unwrap_or_else(|| panic!("docker-compose.yml has no service {name:?}"))
}

fn as_str(v: &Yaml) -> String {
    match v {
        Yaml::String(s) => s.clone(),
        Yaml::Number(n) => n.to_string(),
        Yaml::Bool(b) => b.to_string(),
        other => panic!("expected a scalar, got {other:?}"),
    }
}

/// A service's environment, in either the map or the `KEY=value` list form.
fn environment(svc: &Yaml) -> BTreeMap<String, String> {
    match svc.get("environment") {
        None => BTreeMap::new(),
        Some(Yaml::Mapping(m)) => m.iter().map(|(k, v)| (as_str(k), as_str(v))).collect(),
        Some(Yaml::Sequence(items)) => items
            .iter()
            .map(|item| {
                let item = as_str(item);
                let (k, v) = item.split_once('=').unwrap_or((item.as_str(), ""));
                (k.to_string(), v.to_string())
            })
            .collect(),
        Some(other) => panic!("unexpected environment {other:?}"),
    }
}

fn env_var(svc: &Yaml, svc_name: &str, key: &str) -> String {
    environment(svc)
        .remove(key)
        .unwrap_or_else(|| panic!("service {svc_name} does not set {key}"))
}

/// A service's command as argv words (list form, or a string split on whitespace).
fn command_words(svc: &Yaml) -> Vec<String> {
    match svc.get("command") {
        None => Vec::new(),
        Some(Yaml::Sequence(items)) => items
            .iter()
            .flat_map(|i| {
                as_str(i)
                    .split_whitespace()
                    .map(String::from)
                    .collect::<Vec<_>>()
            })
            .collect(),
        Some(v) => as_str(v).split_whitespace().map(String::from).collect(),
    }
}

/// The value of `--flag value` or `--flag=value` in a command.
fn flag_value(words: &[String], flag: &str) -> Option<String> {
    for (i, w) in words.iter().enumerate() {
        if w == flag {
            return words.get(i + 1).cloned();
        }
        if let Some(v) = w.strip_prefix(flag).and_then(|rest| rest.strip_prefix('=')) {
            return Some(v.to_string());
        }
    }
    None
}

/// The `host:port` of the listener named `name` in a Redpanda list such as
/// `internal://redpanda:9092,external://localhost:19092`.
fn named_listener(list: &str, name: &str) -> Option<String> {
    list.split(',').find_map(|l| {
        l.trim()
            .strip_prefix(&format!("{name}://"))
            .map(String::from)
    })
}

/// `(host, port)` of an `http://host:port/...` URL or a `host:port` address.
fn host_port(addr: &str) -> (String, u16) {
    let rest = addr.split_once("://").map_or(addr, |(_, r)| r);
    let authority = rest.split('/').next().unwrap_or(rest);
    let (host, port) = authority
        .rsplit_once(':')
        .unwrap_or_else(|| panic!("{addr:?} has no explicit port"));
    let port = port
        .parse()
        .unwrap_or_else(|_| panic!("{addr:?} has an invalid port"));
    (host.to_string(), port)
}

/// Container ports a service publishes (`"host:container"`, `"container"` or long form).
fn published_container_ports(svc: &Yaml) -> BTreeSet<u16> {
    let Some(Yaml::Sequence(ports)) = svc.get("ports") else {
        return BTreeSet::new();
    };
    ports
        .iter()
        .map(|p| match p.get("target") {
            Some(t) => as_str(t).parse().expect("numeric target port"),
            None => {
                let s = as_str(p);
                let container = s.rsplit(':').next().unwrap_or(&s);
                let container = container.split('/').next().unwrap_or(container);
                container
                    .parse()
                    .unwrap_or_else(|_| panic!("bad port mapping {s:?}"))
            }
        })
        .collect()
}

/// `(host source, container target)` of a service's bind mounts (short or long form).
fn volumes(svc: &Yaml) -> Vec<(String, String)> {
    let Some(Yaml::Sequence(vols)) = svc.get("volumes") else {
        return Vec::new();
    };
    vols.iter()
        .map(|v| match (v.get("source"), v.get("target")) {
            (Some(s), Some(t)) => (as_str(s), as_str(t)),
            _ => {
                let s = as_str(v);
                let mut parts = s.split(':');
                let src = parts.next().unwrap_or_default().to_string();
                let dst = parts.next().unwrap_or_default().to_string();
                (src, dst)
            }
        })
        .collect()
}

/// The host path (relative to the repository) mounted at `target`, if any.
fn mount_source(svc: &Yaml, target: &str) -> Option<String> {
    volumes(svc)
        .into_iter()
        .find(|(_, t)| t.trim_end_matches('/') == target.trim_end_matches('/'))
        .map(|(s, _)| s.trim_start_matches("./").trim_end_matches('/').to_string())
}

fn depends_on(svc: &Yaml) -> Vec<String> {
    match svc.get("depends_on") {
        None => Vec::new(),
        Some(Yaml::Sequence(items)) => items.iter().map(as_str).collect(),
        Some(Yaml::Mapping(m)) => m.keys().map(as_str).collect(),
        Some(other) => panic!("unexpected depends_on {other:?}"),
    }
}

#[test]
fn compose_has_every_service() {
    let compose = compose();
    let services = compose
        .get("services")
        .and_then(Yaml::as_mapping)
        .expect("services map");
    let names: BTreeSet<String> = services.keys().map(as_str).collect();
    for wanted in [
        "redpanda",
        "console",
        "sim",
        "relay",
        "prometheus",
        "grafana",
    ] {
        assert!(
            names.contains(wanted),
            "service {wanted} missing; have {names:?}"
        );
    }
}

#[test]
fn every_depends_on_names_a_service() {
    let compose = compose();
    let services = compose
        .get("services")
        .and_then(Yaml::as_mapping)
        .expect("services map");
    let names: BTreeSet<String> = services.keys().map(as_str).collect();
    let mut unknown = Vec::new();
    for (name, svc) in services {
        for dep in depends_on(svc) {
            if !names.contains(&dep) {
                unknown.push(format!("{} -> {dep}", as_str(name)));
            }
        }
    }
    assert!(
        unknown.is_empty(),
        "depends_on names unknown services: {unknown:?}"
    );
    let relay_deps = depends_on(service(&compose, "relay"));
    for dep in ["redpanda", "sim"] {
        assert!(
            relay_deps.iter().any(|d| d == dep),
            "relay must depend on {dep}"
        );
    }
    let redpanda_dep = service(&compose, "relay")
        .get("depends_on")
        .and_then(|d| d.get("redpanda"))
        .and_then(|d| d.get("condition"))
        .map(as_str);
    assert_eq!(
        redpanda_dep.as_deref(),
        Some("service_healthy"),
        "relay must wait for a healthy redpanda"
    );
    assert!(
        service(&compose, "redpanda").get("healthcheck").is_some(),
        "redpanda needs a healthcheck for service_healthy"
    );
}

#[test]
fn relay_and_sim_build_from_the_dockerfile() {
    let compose = compose();
    for name in ["relay", "sim"] {
        let build = service(&compose, name)
            .get("build")
            .unwrap_or_else(|| panic!("{name} must build the image (build:)"));
        let (context, dockerfile) = match build {
            Yaml::String(ctx) => (ctx.clone(), "Dockerfile".to_string()),
            m => (
                m.get("context").map(as_str).unwrap_or_else(|| ".".into()),
                m.get("dockerfile")
                    .map(as_str)
                    .unwrap_or_else(|| "Dockerfile".into()),
            ),
        };
        let path = repo_path(&context).join(&dockerfile);
        assert!(
            path.is_file(),
            "{name} builds from {} which does not exist",
            path.display()
        );
        let text = fs::read_to_string(&path).unwrap();
        assert!(
            text.contains(r#"ENTRYPOINT ["genesys-relay"]"#),
            "the Dockerfile must run the genesys-relay binary"
        );
    }
    let relay_cmd = command_words(service(&compose, "relay"));
    assert_eq!(relay_cmd, ["serve"], "relay runs `genesys-relay serve`");
    let sim = service(&compose, "sim");
    let target = sim.get("build").and_then(|b| b.get("target")).map(as_str);
    assert_eq!(
        target.as_deref(),
        Some("sim"),
        "sim builds the Dockerfile's `sim` stage (the relay image has no simulator)"
    );
    let text = fs::read_to_string(repo_path(".").join("Dockerfile")).unwrap();
    assert!(
        text.contains("AS sim") && text.contains(r#"ENTRYPOINT ["genesys-sim"]"#),
        "the Dockerfile's `sim` stage runs the genesys-sim binary"
    );
    let sim_cmd = command_words(sim);
    assert_eq!(sim_cmd.first().map(String::as_str), Some("--genesys-addr"));
}

#[test]
fn relay_reaches_redpanda_on_its_internal_listener() {
    let compose = compose();
    let redpanda = command_words(service(&compose, "redpanda"));
    let advertised = flag_value(&redpanda, "--advertise-kafka-addr")
        .expect("redpanda sets --advertise-kafka-addr");
    let internal = named_listener(&advertised, "internal")
        .expect("redpanda advertises an `internal` Kafka listener");
    let (host, port) = host_port(&internal);
    assert_eq!(
        host, "redpanda",
        "the internal listener must advertise the service name"
    );
    let bound = flag_value(&redpanda, "--kafka-addr").expect("redpanda sets --kafka-addr");
    let bound = named_listener(&bound, "internal").expect("redpanda binds an internal listener");
    assert_eq!(
        host_port(&bound).1,
        port,
        "internal listener binds and advertises one port"
    );

    let relay = service(&compose, "relay");
    let brokers = env_var(relay, "relay", "RELAY_KAFKA_BROKERS");
    assert_eq!(
        brokers, internal,
        "RELAY_KAFKA_BROKERS must be redpanda's internal listener"
    );

    // The schema registry, when set, is redpanda's internal schema-registry listener.
    if let Some(url) = environment(relay).get("RELAY_SCHEMA_REGISTRY_URL") {
        let sr = flag_value(&redpanda, "--schema-registry-addr")
            .expect("redpanda sets --schema-registry-addr");
        let sr = named_listener(&sr, "internal").expect("internal schema-registry listener");
        assert_eq!(host_port(url), ("redpanda".to_string(), host_port(&sr).1));
    }

    // The console talks to the same broker.
    let console = environment(service(&compose, "console"));
    assert_eq!(
        console.get("KAFKA_BROKERS"),
        Some(&internal),
        "console broker address"
    );
}

#[test]
fn relay_calls_the_simulators() {
    let compose = compose();
    let sim = command_words(service(&compose, "sim"));
    let genesys_port = host_port(&flag_value(&sim, "--genesys-addr").expect("--genesys-addr")).1;
    let cms_port = host_port(&flag_value(&sim, "--cms-addr").expect("--cms-addr")).1;
    let relay = service(&compose, "relay");
    for (key, port) in [
        ("RELAY_GENESYS_API_BASE", genesys_port),
        ("RELAY_GENESYS_LOGIN_BASE", genesys_port),
        ("RELAY_CMS_URL", cms_port),
        ("RELAY_FORWARD_URL", cms_port),
    ] {
        let url = env_var(relay, "relay", key);
        assert_eq!(
            host_port(&url),
            ("sim".to_string(), port),
            "{key}={url} must point at the sim service"
        );
    }
    let cms = env_var(relay, "relay", "RELAY_CMS_URL");
    assert!(
        cms.ends_with("/v1/entries"),
        "RELAY_CMS_URL is the entries collection"
    );
    for key in [
        "RELAY_GENESYS_CLIENT_ID",
        "RELAY_GENESYS_CLIENT_SECRET",
        "RELAY_WEBHOOK_SECRET",
    ] {
        assert!(
            !env_var(relay, "relay", key).is_empty(),
            "{key} must be set"
        );
    }
}

#[test]
fn relay_publishes_its_ports() {
    let compose = compose();
    let relay = service(&compose, "relay");
    let ports = published_container_ports(relay);
    for key in ["RELAY_HTTP_ADDR", "RELAY_ADMIN_ADDR"] {
        let (host, port) = host_port(&env_var(relay, "relay", key));
        assert_eq!(
            host, "0.0.0.0",
            "{key} must listen on every interface in a container"
        );
        assert!(ports.contains(&port), "{key} port {port} is not published");
    }
    let sim = service(&compose, "sim");
    let sim_ports = published_container_ports(sim);
    for flag in ["--genesys-addr", "--cms-addr"] {
        let (host, port) = host_port(&flag_value(&command_words(sim), flag).unwrap());
        assert_eq!(host, "0.0.0.0", "sim {flag} must listen on every interface");
        assert!(
            sim_ports.contains(&port),
            "sim port {port} is not published"
        );
    }
}

#[test]
fn prometheus_scrapes_the_relay_admin_port() {
    let compose = compose();
    let prometheus = service(&compose, "prometheus");
    let config = mount_source(prometheus, "/etc/prometheus/prometheus.yml")
        .expect("prometheus must mount its config at /etc/prometheus/prometheus.yml");
    let config = yaml_file(&config);
    let (_, admin_port) = host_port(&env_var(
        service(&compose, "relay"),
        "relay",
        "RELAY_ADMIN_ADDR",
    ));
    let want = format!("relay:{admin_port}");

    let jobs = config
        .get("scrape_configs")
        .and_then(Yaml::as_sequence)
        .expect("scrape_configs");
    let job = jobs
        .iter()
        .find(|j| j.get("job_name").map(as_str).as_deref() == Some("genesys-relay"))
        .expect("a scrape job named genesys-relay");
    let targets: Vec<String> = job
        .get("static_configs")
        .and_then(Yaml::as_sequence)
        .into_iter()
        .flatten()
        .filter_map(|sc| sc.get("targets").and_then(Yaml::as_sequence))
        .flatten()
        .map(as_str)
        .collect();
    assert_eq!(targets, [want], "genesys-relay job targets");
    let path = job
        .get("metrics_path")
        .map(as_str)
        .unwrap_or_else(|| "/metrics".into());
    assert_eq!(path, "/metrics");
    let interval = job
        .get("scrape_interval")
        .or_else(|| config.get("global").and_then(|g| g.get("scrape_interval")))
        .map(as_str);
    assert_eq!(
        interval.as_deref(),
        Some("5s"),
        "relay is scraped every 5 s"
    );
}

#[test]
fn grafana_is_provisioned() {
    let compose = compose();
    let grafana = service(&compose, "grafana");
    let provisioning = mount_source(grafana, "/etc/grafana/provisioning")
        .expect("grafana must mount grafana/provisioning at /etc/grafana/provisioning");
    assert_eq!(provisioning, "grafana/provisioning");

    // The datasource the dashboard refers to by uid.
    let ds = yaml_file(&format!("{provisioning}/datasources/prometheus.yml"));
    let ds = ds
        .get("datasources")
        .and_then(Yaml::as_sequence)
        .and_then(|d| d.first())
        .expect("one datasource");
    assert_eq!(ds.get("uid").map(as_str).as_deref(), Some("prometheus"));
    assert_eq!(ds.get("type").map(as_str).as_deref(), Some("prometheus"));
    let (host, _) = host_port(&ds.get("url").map(as_str).expect("datasource url"));
    service(&compose, "prometheus");
    assert_eq!(
        host, "prometheus",
        "datasource must point at the prometheus service"
    );

    // The dashboard provider's folder is where grafana/dashboards is mounted.
    let providers = yaml_file(&format!("{provisioning}/dashboards/dashboards.yml"));
    let dir = providers
        .get("providers")
        .and_then(Yaml::as_sequence)
        .and_then(|p| p.first())
        .and_then(|p| p.get("options"))
        .and_then(|o| o.get("path"))
        .map(as_str)
        .expect("a file provider with options.path");
    let source = mount_source(grafana, &dir)
        .unwrap_or_else(|| panic!("nothing is mounted at the provider path {dir}"));
    assert!(
        repo_path(&source).join("genesys-relay.json").is_file(),
        "{source}/genesys-relay.json must exist"
    );
}

/// Every metric name (`relay_*`) that a dashboard's PromQL expressions mention, with the
/// histogram suffixes `_bucket`, `_sum` and `_count` removed. Label values in quotes are
/// ignored.
fn dashboard_metric_names(json: &serde_json::Value) -> BTreeSet<String> {
    let mut exprs = Vec::new();
    collect_exprs(json, &mut exprs);
    let mut names = BTreeSet::new();
    for expr in exprs {
        names.extend(promql_metric_names(&expr));
    }
    names
}

fn collect_exprs(v: &serde_json::Value, out: &mut Vec<String>) {
    match v {
        serde_json::Value::Object(m) => {
            for (k, v) in m {
                match (k.as_str(), v) {
                    ("expr", serde_json::Value::String(s)) => out.push(s.clone()),
                    _ => collect_exprs(v, out),
                }
            }
        }
        serde_json::Value::Array(a) => a.iter().for_each(|v| collect_exprs(v, out)),
        _ => {}
    }
}

fn promql_metric_names(expr: &str) -> BTreeSet<String> {
    let is_ident = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == ':';
    let mut names = BTreeSet::new();
    let mut chars = expr.char_indices().peekable();
    let mut prev: Option<char> = None;
    while let Some((i, c)) = chars.next() {
        if c == '"' || c == '\'' || c == '`' {
            // Skip a string literal (label values, regexes), honouring backslash escapes.
            let mut escaped = false;
            for (_, d) in chars.by_ref() {
                if escaped {
                    escaped = false;
                } else if d == '\\' && c != '`' {
                    escaped = true;
                } else if d == c {
                    break;
                }
            }
            prev = Some(c);
            continue;
        }
        if is_ident(c) && !prev.is_some_and(is_ident) {
            let mut end = i + c.len_utf8();
            while let Some(&(j, d)) = chars.peek() {
                if !is_ident(d) {
                    break;
                }
                end = j + d.len_utf8();
                chars.next();
            }
            let word = &expr[i..end];
            if word.starts_with("relay_") {
                let base = ["_bucket", "_sum", "_count"]
                    .iter()
                    .find_map(|s| word.strip_suffix(s))
                    .unwrap_or(word);
                names.insert(base.to_string());
            }
            prev = expr[..end].chars().next_back();
            continue;
        }
        prev = Some(c);
    }
    names
}

fn dashboard() -> serde_json::Value {
    serde_json::from_str(&read("grafana/dashboards/genesys-relay.json"))
        .expect("the dashboard is valid JSON")
}

fn all_panels(v: &serde_json::Value) -> Vec<&serde_json::Value> {
    let mut out = Vec::new();
    if let Some(panels) = v.get("panels").and_then(|p| p.as_array()) {
        for p in panels {
            out.push(p);
            out.extend(all_panels(p));
        }
    }
    out
}

#[test]
fn dashboard_queries_only_registered_metrics() {
    let dash = dashboard();
    let names = dashboard_metric_names(&dash);
    assert!(!names.is_empty(), "the dashboard queries no relay_ metric");
    let source = read("src/metrics.rs");
    let unknown: Vec<&String> = names
        .iter()
        .filter(|n| !source.contains(&format!("\"{n}\"")))
        .collect();
    assert!(
        unknown.is_empty(),
        "the dashboard queries metrics not registered in src/metrics.rs: {unknown:?}"
    );
    // Every metric of DESIGN section 9 is on the dashboard.
    for wanted in [
        "relay_ingress_requests_total",
        "relay_ingress_request_duration_seconds",
        "relay_produce_duration_seconds",
        "relay_events_processed_total",
        "relay_processing_duration_seconds",
        "relay_retry_scheduled_total",
        "relay_dlq_total",
        "relay_idempotency_hits_total",
        "relay_genesys_requests_total",
        "relay_genesys_token_refresh_total",
        "relay_sink_requests_total",
        "relay_sink_request_duration_seconds",
        "relay_consumer_lag",
        "relay_in_flight",
    ] {
        assert!(
            names.contains(wanted),
            "the dashboard does not show {wanted}"
        );
    }
}

#[test]
fn dashboard_panels_have_targets_on_the_prometheus_datasource() {
    let dash = dashboard();
    let panels = all_panels(&dash);
    assert!(panels.len() > 1, "the dashboard has no panels");
    let mut problems = Vec::new();
    let mut ids = BTreeSet::new();
    for p in panels {
        let title = p.get("title").and_then(|t| t.as_str()).unwrap_or("?");
        if let Some(id) = p.get("id").and_then(|i| i.as_u64()) {
            if !ids.insert(id) {
                problems.push(format!("{title}: duplicate panel id {id}"));
            }
        }
        if p.get("type").and_then(|t| t.as_str()) == Some("row") {
            continue;
        }
        let targets = p.get("targets").and_then(|t| t.as_array());
        let targets = targets.map(Vec::as_slice).unwrap_or_default();
        if targets.is_empty() {
            problems.push(format!("{title}: no targets"));
        }
        let ds_uid = |v: &serde_json::Value| {
            v.get("datasource")
                .and_then(|d| d.get("uid"))
                .and_then(|u| u.as_str())
                .map(String::from)
        };
        if ds_uid(p).as_deref() != Some("prometheus") {
            problems.push(format!("{title}: panel datasource uid is not `prometheus`"));
        }
        for t in targets {
            let expr = t.get("expr").and_then(|e| e.as_str()).unwrap_or("");
            if expr.trim().is_empty() {
                problems.push(format!("{title}: target without expr"));
            }
            if !brackets_balance(expr) {
                problems.push(format!("{title}: unbalanced brackets in {expr:?}"));
            }
            if ds_uid(t).is_some_and(|u| u != "prometheus") {
                problems.push(format!(
                    "{title}: target datasource uid is not `prometheus`"
                ));
            }
        }
    }
    assert!(problems.is_empty(), "dashboard problems: {problems:#?}");
}

fn brackets_balance(expr: &str) -> bool {
    let mut stack = Vec::new();
    let mut in_str: Option<char> = None;
    let mut escaped = false;
    for c in expr.chars() {
        if let Some(q) = in_str {
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == q {
                in_str = None;
            }
            continue;
        }
        match c {
            '"' | '\'' | '`' => in_str = Some(c),
            '(' | '[' | '{' => stack.push(c),
            ')' | ']' | '}' => {
                let open = match c {
                    ')' => '(',
                    ']' => '[',
                    _ => '{',
                };
                if stack.pop() != Some(open) {
                    return false;
                }
            }
            _ => {}
        }
    }
    stack.is_empty() && in_str.is_none()
}

#[test]
fn metric_name_extraction() {
    let dash = serde_json::json!({
        "panels": [
            {"type": "row", "panels": [
                {"targets": [{"expr": "sum by (le) (rate(relay_a_seconds_bucket{job=~\"relay_not_a_metric\"}[5m]))"}]}
            ]},
            {"targets": [
                {"expr": "rate(relay_a_seconds_sum[1m]) / rate(relay_a_seconds_count[1m])"},
                {"expr": "sum(relay_in_flight) + on() genesys_relay_other + my_relay_x"},
                {"expr": "increase(relay_c_total[5m])"}
            ]}
        ]
    });
    let names: Vec<String> = dashboard_metric_names(&dash).into_iter().collect();
    assert_eq!(
        names,
        ["relay_a_seconds", "relay_c_total", "relay_in_flight"]
    );
    assert!(brackets_balance("sum(rate(x{a=\")\"}[5m]))"));
    assert!(!brackets_balance("sum(rate(x[5m))"));
}

#[test]
fn scripts_and_dockerignore_exist() {
    let ignore = read(".dockerignore");
    for entry in ["target", ".tools", ".run", ".git"] {
        assert!(
            ignore.lines().any(|l| l.trim().trim_matches('/') == entry),
            ".dockerignore must exclude {entry}"
        );
    }
    let dockerfile = read("Dockerfile");
    for needle in [
        "cargo build --release --locked",
        "debian:bookworm-slim",
        "USER ",
        "EXPOSE 8080 9464",
        r#"CMD ["serve"]"#,
    ] {
        assert!(dockerfile.contains(needle), "Dockerfile lacks {needle:?}");
    }
    assert!(repo_path("scripts/check-compose.sh").is_file());
}

/// Every metric the dashboard queries is really exported by a running relay after traffic
/// (not only registered in the source).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_metrics_are_exported_by_a_running_relay() {
    use crate::common::*;
    let broker = Broker::start();
    let sims = Sims::start().await;
    let prefix = unique_prefix("dash");
    let cfg = stack_config(
        &broker,
        &sims,
        &prefix,
        &[("RELAY_KAFKA_STATISTICS_INTERVAL_MS", "500")],
    );
    let relay = genesys_relay::app::start(cfg, genesys_relay::app::Role::Serve)
        .await
        .unwrap();
    let ingress = relay.ingress_addr.unwrap();
    let data = serde_json::json!({"conversationId": "g-1", "guestId": "g-1"});
    post_event(
        &sims.http,
        ingress,
        &envelope("conversation:updated", "e-1", "2026-11-24T08:00:00Z", data),
    )
    .await;
    let created = serde_json::json!({"conversationId": "c-2"});
    post_event(
        &sims.http,
        ingress,
        &envelope(
            "conversation:created",
            "e-2",
            "2026-11-24T08:00:01Z",
            created,
        ),
    )
    .await;
    let gone = serde_json::json!({"conversationId": "gone-3", "guestId": "gone-3"});
    post_event(
        &sims.http,
        ingress,
        &envelope("conversation:updated", "e-3", "2026-11-24T08:00:02Z", gone),
    )
    .await;
    let names = dashboard_metric_names(&dashboard());
    let url = format!("http://{}/metrics", relay.admin_addr);
    let missing = |text: &str| -> Vec<String> {
        names
            .iter()
            .filter(|n| {
                !text.lines().any(|l| {
                    l.starts_with(&format!("{n} "))
                        || l.starts_with(&format!("{n}{{"))
                        || l.starts_with(&format!("{n}_bucket{{"))
                })
            })
            .cloned()
            .collect()
    };
    let scrape = || async {
        sims.http
            .get(&url)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    };
    let exported = wait_until(std::time::Duration::from_secs(60), || async {
        missing(&scrape().await).is_empty()
    })
    .await;
    let missing = missing(&scrape().await);
    assert!(
        exported,
        "dashboard metrics not exported after traffic: {missing:?}"
    );
    relay.stop().await;
}
