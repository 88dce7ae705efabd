//! The listen page: the Notifications API source as configured, and what this process's
//! listener reports (channels, topics delivering, reconnects, time disconnected).
//!
//! Rejected topics and the last heartbeat are not reported by the listener yet: the page
//! shows that in a marked box, and [`ListenStatus`] is the hook the listener implements
//! to fill it (the console shows whatever it returns).

use super::html::{self, esc, num, section, table, Source, Tab};
use super::metrics_view::Samples;
use super::{html_response, Session};
use warp::http::{Response, StatusCode};
use warp::hyper::Body;

/// A topic Genesys Cloud refused to subscribe, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RejectedTopic {
    pub topic: String,
    pub reason: String,
}

/// What a listener can report beyond its metrics (implemented by the listener once it
/// keeps this state; until then the console says it is not reported).
pub trait ListenStatus: Send + Sync {
    /// Topics refused by Genesys Cloud on subscription, with the reason it gave.
    fn rejected(&self) -> Vec<RejectedTopic>;
    /// Unix milliseconds of the last heartbeat or message on any socket.
    fn last_heartbeat_ms(&self) -> Option<i64>;
}

const REFRESH_SECS: u32 = 5;

pub(super) fn page(s: &Session<'_>) -> Response<Body> {
    let ctx = &s.console.ctx;
    let samples = Samples::parse(&ctx.metrics.render());
    let process = ctx.process.as_str();
    let mut out = String::new();

    out.push_str(&section("Configured", Source::Process(process)));
    let rows: Vec<Vec<String>> = ctx
        .listen_configured
        .iter()
        .map(|l| vec![format!("<code>{}</code>", esc(l))])
        .collect();
    out.push_str(&table(
        "listen-configured",
        &["RELAY_LISTEN_TOPICS / RELAY_LISTEN_QUEUES"],
        &rows,
    ));

    out.push_str(&section("Channels", Source::Process(process)));
    let rows = vec![
        vec![
            "channels with an open socket".into(),
            num(samples.sum("relay_listen_channels", |_| true)),
        ],
        vec![
            "seconds without an open socket (total)".into(),
            format!(
                "{:.1}",
                samples.sum("relay_listen_disconnected_seconds_total", |_| true)
            ),
        ],
    ];
    out.push_str(&table("listen-channels", &["", "value"], &rows));
    let rows: Vec<Vec<String>> = samples
        .family("relay_listen_reconnects_total")
        .map(|x| {
            vec![
                format!("<code>{}</code>", esc(x.label("reason"))),
                num(x.value),
            ]
        })
        .collect();
    out.push_str(&table(
        "listen-reconnects",
        &["reconnect reason", "count"],
        &rows,
    ));

    out.push_str(&section(
        "Topics permitted (delivering)",
        Source::Process(process),
    ));
    let rows: Vec<Vec<String>> = samples
        .family("relay_listen_notifications_total")
        .map(|x| {
            vec![
                format!("<code>{}</code>", esc(x.label("topic"))),
                num(x.value),
            ]
        })
        .collect();
    out.push_str(&table(
        "listen-topics",
        &["topic (ids as {id})", "notifications written to Kafka"],
        &rows,
    ));

    out.push_str(&section(
        "Topics rejected, last heartbeat",
        Source::Process(process),
    ));
    match &ctx.listen_status {
        Some(st) => {
            let rows: Vec<Vec<String>> = st
                .rejected()
                .iter()
                .map(|r| vec![format!("<code>{}</code>", esc(&r.topic)), esc(&r.reason)])
                .collect();
            out.push_str(&table("listen-rejected", &["topic", "reason"], &rows));
            let hb = st
                .last_heartbeat_ms()
                .map_or("none yet".into(), crate::clock::format_time_ms);
            out.push_str(&format!("<p>Last heartbeat: {}</p>", esc(&hb)));
        }
        None => out.push_str(
            "<div class=\"hook\" id=\"listen-hook\"><b>Not reported by this listener.</b> \
Rejected topics (with Genesys' reason) and the last heartbeat appear here once the listener \
implements <code>console::ListenStatus</code>. Until then: topics missing from the table above \
deliver nothing, and <code>relay_listen_reconnects_total</code> counts resubscriptions.</div>",
        ),
    }
    let dropped: Vec<Vec<String>> = samples
        .family("relay_listen_dropped_total")
        .map(|x| {
            vec![
                format!("<code>{}</code>", esc(x.label("reason"))),
                num(x.value),
            ]
        })
        .collect();
    out.push_str(&section(
        "Dropped (should stay 0)",
        Source::Process(process),
    ));
    out.push_str(&table("listen-dropped", &["reason", "count"], &dropped));

    let csrf = s.csrf();
    let mut frame = s.frame("Listen", Tab::Listen, csrf.as_deref());
    frame.refresh_secs = Some(REFRESH_SECS);
    html_response(StatusCode::OK, html::page(&frame, &out))
}
