//! The operator console in a real browser (headless Chromium over WebDriver): sign in,
//! see seeded dead letters, filter, open one, replay exactly that one and see the CMS
//! sync it; a wrong token and a replay without the CSRF token are refused. Each page is
//! saved to target/screenshots/ (and to docs/screenshots/ with `UPDATE_SCREENSHOTS=1`).
//!
//! The dead letters are made by the relay itself (the CMS simulator answers 400, a
//! permanent failure), and success is counted at the CMS simulator and on the raw topic.

use crate::browser::Browser;
use crate::common::*;
use genesys_relay::app::{self, Role};
use genesys_relay::kafka::headers;
use rdkafka::producer::FutureRecord;
use serde_json::json;
use std::time::Duration;

const TOKEN: &str = "console-test-token-0123456789abcdef";

fn guest_event(i: usize) -> serde_json::Value {
    envelope(
        "conversation:updated",
        &format!("evt-{i}"),
        &format!("2026-12-02T07:00:{i:02}.000Z"),
        json!({"conversationId": format!("g-{i}"), "guestId": format!("g-{i}")}),
    )
}

async fn records(
    broker: &Broker,
    topic: String,
    n: usize,
    secs: u64,
) -> Vec<rdkafka::message::OwnedMessage> {
    let addr = broker.addr();
    tokio::task::spawn_blocking(move || {
        read_records_at(&addr, &topic, n, Duration::from_secs(secs))
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_finds_filters_and_replays_exactly_one_dead_letter() {
    let broker = Broker::start();
    let sims = Sims::start().await;
    let prefix = unique_prefix("console");
    let relay = app::start(
        stack_config(
            &broker,
            &sims,
            &prefix,
            &[
                ("RELAY_RETRY_DELAYS", "200ms"),
                ("RELAY_ADMIN_TOKEN", TOKEN),
            ],
        ),
        Role::Serve,
    )
    .await
    .unwrap();
    let (raw, dlq) = (
        format!("{prefix}.events.raw"),
        format!("{prefix}.events.dlq"),
    );

    // Seed: three events the CMS refuses with 400 (permanent), one poison record.
    sims.cms_faults(json!({"fail_next": 3, "error_status": 400}))
        .await;
    for i in 1..=3 {
        post_event(&sims.http, relay.ingress_addr.unwrap(), &guest_event(i)).await;
    }
    assert_eq!(records(&broker, dlq.clone(), 3, 60).await.len(), 3);
    let producer = test_producer(&broker);
    producer
        .send(
            FutureRecord::to(&raw)
                .key("p-1")
                .payload(&b"\xc3\x01not avro"[..]),
            Duration::from_secs(5),
        )
        .await
        .unwrap();
    assert_eq!(records(&broker, dlq.clone(), 4, 60).await.len(), 4);
    assert!(syncs_by_key(&sims.cms_stats().await).is_empty());
    let raw_before = topic_size(&broker, &raw);

    let admin = format!("http://{}", relay.admin_addr);
    let b = Browser::start().await;

    // Unauthenticated: sent to the sign-in form.
    b.goto(&format!("{admin}/console/dead-letters")).await;
    assert!(
        b.url().await.ends_with("/console/login"),
        "{}",
        b.url().await
    );
    b.find("#token").await;
    b.screenshot("login").await;

    // A wrong token is refused and sets no session.
    b.find("#token")
        .await
        .type_text("not-the-token-but-long-enough")
        .await;
    b.find("#sign-in").await.click().await;
    b.text_when("#login-error", |t| t.contains("Wrong token"))
        .await;
    assert_eq!(b.cookie("relay_console_session").await, None);
    b.screenshot("login-refused").await;

    // The right token signs in and lands on the overview.
    b.find("#token").await.type_text(TOKEN).await;
    b.find("#sign-in").await.click().await;
    b.text_when("#summary", |t| t.contains("Dead letters retained\n4"))
        .await;
    b.text_when("#routes", |t| t.contains("guest_sync")).await;
    assert!(b.source().await.contains("process-local"));
    b.screenshot("overview").await;

    // The dead letters: all four seeded ones.
    b.goto(&format!("{admin}/console/dead-letters")).await;
    b.text_when("#match-count", |t| t.starts_with("4 of 4"))
        .await;
    for i in 1..=3 {
        assert!(b.source().await.contains(&format!("evt-{i}")));
    }
    b.screenshot("dead-letters").await;

    // Filter: class permanent, then the event id.
    b.find("#filter-class option[value=permanent]")
        .await
        .click()
        .await;
    b.find("#apply-filter").await.click().await;
    b.text_when("#match-count", |t| t.starts_with("3 of 4"))
        .await;
    b.find("#filter-q").await.type_text("evt-2").await;
    b.find("#apply-filter").await.click().await;
    b.text_when("#match-count", |t| t.starts_with("1 of 4"))
        .await;
    assert_eq!(b.count("#dead-letters a.open").await, 1);
    b.screenshot("dead-letters-filtered").await;

    // Open it: the record decoded, its error, its schema version.
    b.find("#dead-letters a.open").await.click().await;
    b.text_when("#summary", |t| {
        t.contains("evt-2") && t.contains("permanent")
    })
    .await;
    b.text_when("#last-error", |t| t.contains("400")).await;
    b.text_when("#schema-version", |t| {
        t.starts_with("RawEvent v3 (current)")
    })
    .await;
    b.text_when("#payload", |t| t.contains("g-2")).await;
    let detail_url = b.url().await;
    b.screenshot("dead-letter-detail").await;

    // A replay without the CSRF token is refused, in the browser and from a script that
    // holds the session cookie; nothing reaches the raw topic.
    b.script("document.querySelector('#replay-one input[name=csrf]').remove(); return 1")
        .await;
    b.find("#replay-this").await.click().await;
    b.text_when("#refusal", |t| t.contains("CSRF")).await;
    b.screenshot("replay-refused-without-csrf").await;
    let cookie = b
        .cookie("relay_console_session")
        .await
        .expect("session cookie");
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let forged = http
        .post(format!("{admin}/console/dead-letters/replay"))
        .header("cookie", format!("relay_console_session={cookie}"))
        .form(&[
            ("step", "confirm"),
            ("scope", "selected"),
            ("event_id", "evt-2"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), 403);
    let wrong_csrf = http
        .post(format!("{admin}/console/dead-letters/replay"))
        .header("cookie", format!("relay_console_session={cookie}"))
        .form(&[
            ("csrf", "0".repeat(64).as_str()),
            ("step", "confirm"),
            ("event_id", "evt-2"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(wrong_csrf.status(), 403);
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(topic_size(&broker, &raw), raw_before, "nothing replayed");

    // Replay exactly this one: dry run first (writes nothing), then confirm.
    b.goto(&detail_url).await;
    b.find("#replay-this").await.click().await;
    b.text_when("#dry-run-count", |t| t == "1").await;
    b.screenshot("replay-dry-run").await;
    assert_eq!(
        topic_size(&broker, &raw),
        raw_before,
        "a dry run writes nothing"
    );
    b.find("#confirm-replay").await.click().await;
    b.text_when("#replayed-count", |t| t == "1").await;
    b.screenshot("replay-done").await;

    // Synced at the CMS: exactly that event, and nothing else.
    assert!(sims.wait_for_syncs(1, Duration::from_secs(30)).await);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let synced = syncs_by_key(&sims.cms_stats().await);
    assert_eq!(synced.len(), 1, "{synced:?}");
    assert_eq!(synced.get("guest_sync:evt-2"), Some(&1), "{synced:?}");
    assert_eq!(topic_size(&broker, &raw), raw_before + 1);
    let all_raw = records(&broker, raw.clone(), (raw_before + 1) as usize, 20).await;
    let replayed: Vec<_> = all_raw
        .iter()
        .filter_map(|m| headers::header_str(m, headers::REPLAYED_FROM).map(str::to_string))
        .collect();
    assert_eq!(replayed.len(), 1);
    assert!(replayed[0].starts_with(&format!("{dlq}/")), "{replayed:?}");
    assert!(all_raw
        .iter()
        .all(|m| headers::header_str(m, headers::ATTEMPT).is_none()));

    // The overview after the replay; the listen page.
    b.goto(&format!("{admin}/console")).await;
    b.text_when("#routes", |t| t.contains("guest_sync")).await;
    b.screenshot("overview-after-replay").await;
    b.goto(&format!("{admin}/console/listen")).await;
    b.find("#listen-hook").await;
    b.screenshot("listen").await;

    // Bearer access for scripts; a wrong bearer is refused. Health and metrics need nothing.
    let get = |auth: Option<&'static str>, path: &str| {
        let mut r = http.get(format!("{admin}{path}"));
        if let Some(a) = auth {
            r = r.header("authorization", a);
        }
        r.send()
    };
    let bearer: &'static str = Box::leak(format!("Bearer {TOKEN}").into_boxed_str());
    let ok = get(Some(bearer), "/console/dead-letters").await.unwrap();
    assert_eq!(ok.status(), 200);
    assert!(ok.text().await.unwrap().contains("evt-3"));
    let wrong = get(
        Some("Bearer wrong-token-wrong-token-wrong"),
        "/console/dead-letters",
    )
    .await
    .unwrap();
    assert_eq!(wrong.status(), 401);
    assert!(!wrong.text().await.unwrap().contains("evt-3"));
    assert_eq!(
        get(None, "/console/dead-letters").await.unwrap().status(),
        303
    );
    for path in ["/metrics", "/healthz", "/readyz"] {
        assert_eq!(get(None, path).await.unwrap().status(), 200, "{path}");
    }
    // The session cookie is `Secure` when a TLS-terminating proxy says the browser used HTTPS.
    for (proto, secure) in [(None, false), (Some("https"), true)] {
        let mut r = http
            .post(format!("{admin}/console/login"))
            .form(&[("token", TOKEN)]);
        if let Some(p) = proto {
            r = r.header("x-forwarded-proto", p);
        }
        let r = r.send().await.unwrap();
        assert_eq!(r.status(), 303);
        let cookie = r.headers()["set-cookie"].to_str().unwrap().to_string();
        assert!(cookie.contains("HttpOnly; SameSite=Strict"), "{cookie}");
        assert_eq!(cookie.contains("; Secure"), secure, "{cookie}");
        assert!(!cookie.contains(TOKEN));
    }
    // No page carries the token.
    assert!(!b.source().await.contains(TOKEN));
    drop(b);
    relay.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_token_the_console_is_off_and_says_so() {
    let broker = Broker::start();
    let prefix = unique_prefix("console-off");
    let relay = app::start(relay_config(&broker, &prefix, &[]), Role::Ingress)
        .await
        .unwrap();
    let admin = format!("http://{}", relay.admin_addr);
    let http = reqwest::Client::new();
    for path in ["/console", "/console/dead-letters", "/console/login"] {
        let r = http.get(format!("{admin}{path}")).send().await.unwrap();
        assert_eq!(r.status(), 404, "{path}");
        assert!(r.text().await.unwrap().contains("RELAY_ADMIN_TOKEN"));
    }
    let r = http
        .post(format!("{admin}/console/login"))
        .form(&[("token", "anything-anything-anything")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    assert!(r.headers().get("set-cookie").is_none());
    let m = http.get(format!("{admin}/metrics")).send().await.unwrap();
    assert_eq!(m.status(), 200);
    assert!(m
        .text()
        .await
        .unwrap()
        .contains("relay_ingress_requests_total"));
    relay.stop().await;

    // A token too short to resist guessing stops start-up, naming the setting.
    let err = genesys_relay::app::Config::from_vars(&relay_vars(
        &broker,
        &prefix,
        &[("RELAY_ADMIN_TOKEN", "short")],
    ))
    .unwrap_err();
    assert!(err.to_string().contains("RELAY_ADMIN_TOKEN"), "{err}");
}
