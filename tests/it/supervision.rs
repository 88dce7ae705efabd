//! Supervised parts: a part of a running relay that fails ends the whole process non-zero
//! with the cause in its log, instead of leaving the rest running half-working. The
//! failure is a real one: the idempotency topic is deleted under a running `serve`
//! process, so its idempotency tail can no longer learn other workers' marks, while its
//! ingress would go on answering 202.

use crate::common::*;
use rdkafka::admin::{AdminClient, AdminOptions};
use rdkafka::client::DefaultClientContext;
use rdkafka::ClientConfig;
use std::io::Read;
use std::time::{Duration, Instant};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_part_ends_the_process_non_zero_naming_the_cause() {
    let broker = Broker::start();
    let sims = Sims::start().await;
    let prefix = unique_prefix("supervise");
    let (http_port, admin_port) = (free_port(), free_port());
    let mut vars = relay_vars(&broker, &prefix, &[]);
    vars.extend(sims.vars());
    vars.insert("RELAY_HTTP_ADDR".into(), format!("127.0.0.1:{http_port}"));
    vars.insert("RELAY_ADMIN_ADDR".into(), format!("127.0.0.1:{admin_port}"));
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_genesys-relay"))
        .arg("serve")
        .env_clear()
        .envs(&vars)
        .env("RELAY_LOG", "info")
        .env("RELAY_LOG_FORMAT", "json")
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let readyz = format!("http://127.0.0.1:{admin_port}/readyz");
    assert!(
        wait_until(Duration::from_secs(60), || async {
            matches!(sims.http.get(&readyz).send().await, Ok(r) if r.status() == 200)
        })
        .await,
        "the relay became ready"
    );

    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", broker.addr())
        .create()
        .unwrap();
    let topic = format!("{prefix}.relay.idempotency");
    let deleted = admin
        .delete_topics(&[&topic], &AdminOptions::new())
        .await
        .unwrap();
    assert!(deleted.iter().all(|r| r.is_ok()), "{deleted:?}");
    let removed = Instant::now();

    let mut stderr = child.stderr.take().unwrap();
    let (status, log) = tokio::task::spawn_blocking(move || {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                let mut log = String::new();
                stderr.read_to_string(&mut log).unwrap();
                return (Some(status), log);
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                let mut log = String::new();
                stderr.read_to_string(&mut log).unwrap();
                return (None, log);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    })
    .await
    .unwrap();
    let took = removed.elapsed();
    let status = status.unwrap_or_else(|| {
        panic!("the relay kept running after its idempotency tail failed; log:\n{log}")
    });
    println!("supervision: exited {status:?} {took:?} after the topic was deleted");
    assert!(!status.success(), "non-zero exit: {status:?}");
    let failure = log
        .lines()
        .find(|l| l.contains("a part of the relay failed"))
        .unwrap_or_else(|| panic!("the failure is logged:\n{log}"));
    assert!(
        failure.contains("idempotency tail") && failure.contains(&topic),
        "the log names the part and the cause: {failure}"
    );
    assert!(
        log.contains("stopped: idempotency tail failed"),
        "the exit error names it too"
    );
}
