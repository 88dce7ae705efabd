//! Start-up fails fast and says why when Kafka cannot be used: brokers that refuse the
//! connection, a wrong SASL/PLAIN password, a TLS handshake that cannot succeed. Each run is the real binary against a real
//! broker (or a port nothing listens on); the output is what an operator would see.

use crate::common::{free_port, unique_prefix, Broker};
use genesys_relay::app::Config;
use genesys_relay::kafka::{check_cluster, BrokerTrouble};
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// The start-up wait the tests set (`RELAY_KAFKA_STARTUP_TIMEOUT`).
const WAIT: Duration = Duration::from_secs(4);
/// Process start and shutdown on a busy 2-core machine, beyond the wait.
const SLACK: Duration = Duration::from_secs(15);

/// Runs `genesys-relay ingress` with `vars` until it exits (killed after `WAIT + SLACK`);
/// returns whether it exited by itself, its exit success, how long it ran and its output.
fn run_ingress(vars: &[(&str, String)]) -> (bool, bool, Duration, String) {
    let started = Instant::now();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_genesys-relay"))
        .arg("ingress")
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("RELAY_LOG", "info")
        .env("RELAY_WEBHOOK_AUTH", "none")
        .env("RELAY_HTTP_ADDR", "127.0.0.1:0")
        .env("RELAY_ADMIN_ADDR", "127.0.0.1:0")
        .env(
            "RELAY_KAFKA_STARTUP_TIMEOUT",
            format!("{}s", WAIT.as_secs()),
        )
        .envs(vars.iter().map(|(k, v)| (*k, v.as_str())))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run genesys-relay");
    let mut exited = None;
    while started.elapsed() < WAIT + SLACK {
        if let Some(status) = child.try_wait().unwrap() {
            exited = Some(status);
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let ran = started.elapsed();
    if exited.is_none() {
        let _ = child.kill();
    }
    let out = child.wait_with_output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (exited.is_some(), out.status.success(), ran, text)
}

#[test]
fn brokers_that_refuse_fail_start_up_within_the_wait_naming_them_and_the_cause() {
    // Two addresses nothing listens on.
    let brokers = format!("127.0.0.1:{},127.0.0.1:{}", free_port(), free_port());
    let (exited, ok, ran, out) = run_ingress(&[
        ("RELAY_KAFKA_BROKERS", brokers.clone()),
        ("RELAY_TOPIC_PREFIX", unique_prefix("refused")),
    ]);
    assert!(exited, "still running after {ran:?}; output:\n{out}");
    assert!(!ok, "start-up succeeded without a broker:\n{out}");
    assert!(ran < WAIT + SLACK, "{ran:?}");
    assert!(
        ran >= WAIT - Duration::from_millis(500),
        "gave up early: {ran:?}"
    );
    let last = out.lines().last().unwrap_or_default();
    assert!(
        last.contains(&brokers)
            && last.contains("RELAY_KAFKA_STARTUP_TIMEOUT")
            && last.to_lowercase().contains("connection refused"),
        "the final error names neither the brokers nor the cause: {last:?}\n{out}"
    );
    // The client error was logged as it happened, before the final error.
    let logged = out
        .lines()
        .filter(|l| l.contains("kafka client error") && l.contains("Connection refused"))
        .count();
    assert!(logged >= 1, "no client error logged:\n{out}");
}

#[test]
fn a_wrong_sasl_plain_password_fails_start_up_naming_authentication() {
    let broker = Broker::dedicated_sasl_plain(&[("relay", "relay-secret")]);
    let sasl = |password: &str| -> Vec<(&'static str, String)> {
        vec![
            ("RELAY_KAFKA_BROKERS", broker.addr()),
            ("RELAY_KAFKA_SECURITY_PROTOCOL", "SASL_PLAINTEXT".into()),
            ("RELAY_KAFKA_SASL_MECHANISM", "PLAIN".into()),
            ("RELAY_KAFKA_SASL_USERNAME", "relay".into()),
            ("RELAY_KAFKA_SASL_PASSWORD", password.into()),
        ]
    };
    let config = |password: &str| {
        let vars: HashMap<String, String> = sasl(password)
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .chain([("RELAY_KAFKA_STARTUP_TIMEOUT".into(), "20s".into())])
            .collect();
        Config::from_vars(&vars).unwrap()
    };
    // The broker and the settings are right: the right password is let in.
    check_cluster(&config("relay-secret").kafka).expect("the right password is accepted");
    let mut wrong = config("wrong").kafka;
    wrong.startup_timeout = WAIT;
    let err = match check_cluster(&wrong) {
        Err(genesys_relay::kafka::StartupCheckError::Unreachable(e)) => e,
        other => panic!("expected an unreachable cluster, got {other:?}"),
    };
    assert_eq!(
        err.trouble(),
        Some(BrokerTrouble::AuthenticationFailed),
        "{err}"
    );

    let mut vars = sasl("wrong");
    vars.push(("RELAY_TOPIC_PREFIX", unique_prefix("sasl")));
    let (exited, ok, ran, out) = run_ingress(&vars);
    assert!(exited, "still running after {ran:?}; output:\n{out}");
    assert!(!ok, "start-up succeeded with a wrong password:\n{out}");
    let last = out.lines().last().unwrap_or_default();
    assert!(
        last.contains(&broker.addr()) && last.contains("authentication failed"),
        "the final error does not name authentication: {last:?}\n{out}"
    );
    assert!(
        !out.contains("wrong\"") && !out.contains("=wrong"),
        "the password reached the log:\n{out}"
    );
}

/// TLS set on the client, a plaintext listener on the broker: the handshake cannot
/// succeed, and the start-up error says it was TLS, not a refused connection.
#[test]
fn a_tls_handshake_that_fails_fails_start_up_naming_tls() {
    let broker = Broker::start();
    let (exited, ok, ran, out) = run_ingress(&[
        ("RELAY_KAFKA_BROKERS", broker.addr()),
        ("RELAY_KAFKA_SECURITY_PROTOCOL", "SSL".into()),
        ("RELAY_TOPIC_PREFIX", unique_prefix("tls")),
    ]);
    assert!(exited, "still running after {ran:?}; output:\n{out}");
    assert!(!ok, "start-up succeeded over a failed handshake:\n{out}");
    let last = out.lines().last().unwrap_or_default();
    assert!(
        last.contains(&broker.addr()) && last.contains("TLS failed"),
        "the final error does not name TLS: {last:?}\n{out}"
    );
}
