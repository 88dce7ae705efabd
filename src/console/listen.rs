//! The listen page: the Notifications API source as configured, and what this process's
//! listener reports (channels, topics delivering, reconnects, time disconnected, topics
//! Genesys Cloud rejected with its reason, the last heartbeat).
//!
//! [`ListenStatus`] is what the page reads from the listener; a process that runs no
//! listener has none, and the page says so.

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

/// What a listener reports beyond its metrics.
pub trait ListenStatus: Send + Sync {
    /// Topics refused by Genesys Cloud on subscription, with the reason it gave.
    fn rejected(&self) -> Vec<RejectedTopic>;
    /// Unix milliseconds of the last heartbeat or message on any socket.
    fn last_heartbeat_ms(&self) -> Option<i64>;
}

impl ListenStatus for crate::listen::ListenStatus {
    fn rejected(&self) -> Vec<RejectedTopic> {
        self.topics()
            .into_iter()
            .filter_map(|(topic, state)| match state {
                crate::listen::TopicState::Permitted => None,
                crate::listen::TopicState::Rejected(why) => Some(RejectedTopic {
                    topic,
                    reason: if why.missing_permissions.is_empty() {
                        why.reason
                    } else {
                        format!(
                            "{} (missing permissions: {})",
                            why.reason,
                            why.missing_permissions.join(", ")
                        )
                    },
                }),
            })
            .collect()
    }

    fn last_heartbeat_ms(&self) -> Option<i64> {
        crate::listen::ListenStatus::last_heartbeat_ms(self)
    }
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
            "<div class=\"hook\" id=\"listen-hook\"><b>This process runs no listener.</b> \
Rejected topics (with Genesys' reason) and the last heartbeat are shown by the process that \
runs <code>listen</code> (or <code>serve</code> with topics or queues set).</div>",
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

#[cfg(test)]
mod tests {
    use super::ListenStatus as _;
    use crate::listen::{ListenStatus, Rejected, Subscribed};
    use crate::metrics::Metrics;
    use std::sync::Arc;

    #[test]
    fn the_listeners_rejections_and_heartbeat_reach_the_page() {
        let status = ListenStatus::new(Arc::new(Metrics::new()));
        assert!(status.rejected().is_empty());
        assert_eq!(super::ListenStatus::last_heartbeat_ms(&status), None);
        status.record(
            0,
            "ch-1",
            &Subscribed {
                permitted: vec!["v2.routing.queues.q1.conversations".into()],
                rejected: vec![(
                    "v2.routing.queues.q2.conversations".into(),
                    Rejected {
                        reason: "notification.unauthorized.topic".into(),
                        missing_permissions: vec!["routing:queue:view".into()],
                    },
                )],
            },
        );
        status.heartbeat();
        let rejected = status.rejected();
        assert_eq!(rejected.len(), 1);
        assert_eq!(rejected[0].topic, "v2.routing.queues.q2.conversations");
        assert_eq!(
            rejected[0].reason,
            "notification.unauthorized.topic (missing permissions: routing:queue:view)"
        );
        assert!(super::ListenStatus::last_heartbeat_ms(&status).is_some());
    }
}
