//! The overview page: per-route throughput and outcomes, lag per partition of the raw and
//! retry topics, retry tier depths, dead letters, the Genesys budget and the listener,
//! reloading itself every few seconds.
//!
//! Invariant: each section says whether its numbers come from Kafka (the same from any
//! process) or from this process's counters (labelled with the process).

use super::html::{self, card, esc, num, section, table, Source, Tab, Tone};
use super::kafka_view::{self, KafkaSnapshot, PartitionLag};
use super::metrics_view::Samples;
use super::{blocking, html_response, Session};
use crate::pipeline::{EventOutcome, Route};
use std::fmt::Write;
use warp::http::{Response, StatusCode};
use warp::hyper::Body;

/// Seconds between reloads of the overview.
const REFRESH_SECS: u32 = 5;

pub(super) async fn page_html(s: &Session<'_>) -> String {
    let ctx = &s.console.ctx;
    let samples = Samples::parse(&ctx.metrics.render());
    let rates = s.console.rates.observe(&samples);
    let kafka = {
        let (cfg, group, t) = (
            ctx.operator.kafka.clone(),
            ctx.consumer_group.clone(),
            ctx.operator.topics.clone(),
        );
        blocking(move || kafka_view::snapshot(&cfg, &group, &t.raw, &t.retry, &t.dlq)).await
    };
    let process = ctx.process.as_str();
    let mut out = String::new();

    // Summary cards.
    out.push_str("<div class=\"cards\" id=\"summary\">");
    match &kafka {
        Ok(k) => {
            let raw_lag: i64 = k.raw.iter().map(PartitionLag::lag).sum();
            let retry_depth: i64 = k.retry.iter().flatten().map(PartitionLag::lag).sum();
            out.push_str(&card(
                "Dead letters retained",
                &k.dead_letters.to_string(),
                "dead-letter topic · Kafka",
                if k.dead_letters > 0 {
                    Tone::Bad
                } else {
                    Tone::Calm
                },
            ));
            out.push_str(&card(
                "Raw topic lag",
                &raw_lag.to_string(),
                "all partitions · Kafka",
                if raw_lag > 1000 {
                    Tone::Warn
                } else {
                    Tone::Calm
                },
            ));
            out.push_str(&card(
                "Waiting in retry tiers",
                &retry_depth.to_string(),
                "all tiers · Kafka",
                if retry_depth > 0 {
                    Tone::Warn
                } else {
                    Tone::Calm
                },
            ));
        }
        Err(e) => {
            let _ = write!(
                out,
                "<div class=\"notice bad\">Kafka cannot be read right now: {}</div>",
                esc(e)
            );
        }
    }
    let per_s = rates.per_second(&samples, "relay_events_processed_total", |_| true);
    out.push_str(&card(
        "Events handled",
        &per_s.map_or("…".into(), |r| format!("{r:.1}/s")),
        &format!("this process · {}", window_note(rates.seconds)),
        Tone::Calm,
    ));
    let channels = samples.sum("relay_listen_channels", |_| true);
    out.push_str(&card(
        "Listen channels open",
        &num(channels),
        "this process",
        Tone::Calm,
    ));
    out.push_str("</div>");

    // Routes.
    out.push_str(&section(
        "Routes: events per second and outcomes since start",
        Source::Process(process),
    ));
    let mut rows = Vec::new();
    for route in Route::ALL.map(Route::as_str) {
        let of = |o: EventOutcome| {
            samples.sum("relay_events_processed_total", |x| {
                x.label("route") == route && x.label("outcome") == o.as_str()
            })
        };
        let rate = rates.per_second(&samples, "relay_events_processed_total", |x| {
            x.label("route") == route
        });
        let mut row = vec![
            format!("<code>{route}</code>"),
            rate.map_or("…".into(), |r| format!("{r:.2}")),
        ];
        for o in EventOutcome::ALL {
            let v = of(o);
            row.push(if o == EventOutcome::DeadLettered && v > 0.0 {
                format!("<span class=\"err\">{}</span>", num(v))
            } else {
                num(v)
            });
        }
        rows.push(row);
    }
    let mut head = vec!["route", "events/s"];
    head.extend(EventOutcome::ALL.map(EventOutcome::as_str));
    out.push_str(&table("routes", &head, &rows));
    let _ = write!(
        out,
        "<p class=\"muted\">Rates over {}; counts since this process started.</p>",
        window_note(rates.seconds)
    );

    // Kafka views.
    if let Ok(k) = &kafka {
        out.push_str(&lag_sections(k, &ctx.operator.topics.retry));
    }

    // Dead letters written by this process.
    out.push_str(&section(
        "Dead-lettered by class since start",
        Source::Process(process),
    ));
    let rows: Vec<Vec<String>> = samples
        .family("relay_dlq_total")
        .map(|x| {
            vec![
                format!("<code>{}</code>", esc(x.label("class"))),
                num(x.value),
            ]
        })
        .collect();
    out.push_str(&table("dlq-classes", &["class", "dead letters"], &rows));
    out.push_str("<p><a href=\"/console/dead-letters\">Find and replay dead letters →</a></p>");

    // Genesys budget.
    out.push_str(&section("Genesys Cloud budget", Source::Process(process)));
    let requests = |keep: &dyn Fn(&super::metrics_view::Sample) -> bool| {
        samples.sum("relay_genesys_requests_total", |x| keep(x))
    };
    let per_min = rates
        .per_second(&samples, "relay_genesys_requests_total", |_| true)
        .map(|r| r * 60.0);
    let budget = ctx
        .genesys_budget_per_minute
        .map_or("not used by this process".to_string(), |b| {
            format!("{b} requests/min")
        });
    let waits = samples.sum("relay_genesys_budget_wait_seconds_count", |_| true);
    let waited = samples.sum("relay_genesys_budget_wait_seconds_sum", |_| true);
    let deferred = samples.sum("relay_events_processed_total", |x| {
        x.label("outcome") == EventOutcome::Deferred.as_str()
    });
    let rows = vec![
        vec![
            "budget (<code>RELAY_GENESYS_RATE_LIMIT</code>)".into(),
            esc(&budget),
        ],
        vec![
            "requests per minute now".into(),
            per_min.map_or("…".into(), |r| format!("{r:.1}")),
        ],
        vec![
            "requests since start".into(),
            num(requests(&|x| x.label("endpoint") != "token")),
        ],
        vec![
            "answered 429".into(),
            num(requests(&|x| x.label("status") == "429")),
        ],
        vec![
            "rate-limit remaining (latest answer)".into(),
            num(samples.sum("relay_genesys_ratelimit_remaining", |_| true)),
        ],
        vec![
            "budget waits (total waited)".into(),
            format!("{} ({:.1} s)", num(waits), waited),
        ],
        vec![
            "events deferred to a retry tier by the budget".into(),
            num(deferred),
        ],
    ];
    out.push_str(&table("genesys", &["", "value"], &rows));

    // Listener.
    out.push_str(&section(
        "Listen (Notifications API)",
        Source::Process(process),
    ));
    let rows = vec![
        vec!["channels with an open socket".into(), num(channels)],
        vec![
            "notifications written to Kafka".into(),
            num(samples.sum("relay_listen_notifications_total", |_| true)),
        ],
        vec![
            "reconnects and rotations".into(),
            num(samples.sum("relay_listen_reconnects_total", |_| true)),
        ],
        vec![
            "seconds without an open socket".into(),
            format!(
                "{:.1}",
                samples.sum("relay_listen_disconnected_seconds_total", |_| true)
            ),
        ],
        vec![
            "notifications dropped".into(),
            num(samples.sum("relay_listen_dropped_total", |_| true)),
        ],
    ];
    out.push_str(&table("listen-summary", &["", "value"], &rows));
    out.push_str("<p><a href=\"/console/listen\">Channels and topics →</a></p>");
    out
}

fn window_note(seconds: f64) -> String {
    if seconds > 0.0 {
        format!("the last {seconds:.0} s")
    } else {
        "the next refresh (first reading)".into()
    }
}

fn lag_sections(k: &KafkaSnapshot, retry_topics: &[String]) -> String {
    let mut out = section("Consumer lag per partition", Source::Kafka);
    let mut rows = Vec::new();
    for l in k.raw.iter().chain(k.retry.iter().flatten()) {
        rows.push(vec![
            format!("<code>{}</code>", esc(&l.topic)),
            l.partition.to_string(),
            l.committed.map_or("–".into(), |c| c.to_string()),
            l.high.to_string(),
            if l.lag() > 0 {
                format!("<b>{}</b>", l.lag())
            } else {
                "0".into()
            },
        ]);
    }
    out.push_str(&table(
        "lag",
        &["topic", "partition", "committed", "end", "lag"],
        &rows,
    ));
    out.push_str(&section("Retry tier depths", Source::Kafka));
    let rows: Vec<Vec<String>> = retry_topics
        .iter()
        .zip(&k.retry)
        .enumerate()
        .map(|(i, (t, parts))| {
            vec![
                (i + 1).to_string(),
                format!("<code>{}</code>", esc(t)),
                parts.iter().map(PartitionLag::lag).sum::<i64>().to_string(),
            ]
        })
        .collect();
    out.push_str(&table("retry-tiers", &["tier", "topic", "waiting"], &rows));
    let _ = write!(
        out,
        "<p class=\"muted\">Read in {} ms.</p>",
        k.took.as_millis()
    );
    out
}

pub(super) async fn page(s: &Session<'_>) -> Response<Body> {
    let content = page_html(s).await;
    let csrf = s.csrf();
    let mut frame = s.frame("Overview", Tab::Overview, csrf.as_deref());
    frame.refresh_secs = Some(REFRESH_SECS);
    html_response(StatusCode::OK, html::page(&frame, &content))
}
