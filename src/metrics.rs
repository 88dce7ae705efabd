//! Prometheus metrics of the relay: one [`Metrics`] value owns a registry with every
//! series listed in docs/contract.md#metrics, so dashboards and tests can rely on the names.
//!
//! Labels are bounded on purpose: statuses, routes, tiers, classes, endpoints and sinks,
//! never event ids or URLs that contain ids.
//!
//! Every family a dashboard queries has a series from start-up, so a panel
//! shows zero instead of "no data" before the first event of a kind. The exception is
//! `relay_consumer_lag`, whose series are the partitions this process owns at the moment
//! (removed when a partition is revoked).

use prometheus::{
    Counter, Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

/// Buckets for work that takes from about a millisecond to tens of seconds.
const LATENCY_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// Every metric the relay exports, registered in its own registry.
pub struct Metrics {
    registry: Registry,
    pub(crate) ingress_requests_total: IntCounterVec,
    pub(crate) ingress_request_duration_seconds: Histogram,
    pub(crate) ingress_connections: IntGauge,
    pub(crate) ingress_connections_refused_total: IntCounter,
    pub(crate) ingress_connections_closed_total: IntCounterVec,
    pub(crate) produce_duration_seconds: Histogram,
    pub events_processed_total: IntCounterVec,
    pub(crate) processing_duration_seconds: HistogramVec,
    pub(crate) retry_scheduled_total: IntCounterVec,
    pub(crate) dlq_total: IntCounterVec,
    pub(crate) idempotency_hits_total: IntCounter,
    pub genesys_requests_total: IntCounterVec,
    pub genesys_token_refresh_total: IntCounter,
    pub(crate) genesys_budget_wait_seconds: Histogram,
    pub(crate) genesys_ratelimit_remaining: IntGauge,
    pub genesys_cache_hits_total: IntCounter,
    pub sink_requests_total: IntCounterVec,
    pub sink_request_duration_seconds: HistogramVec,
    pub(crate) consumer_lag: IntGaugeVec,
    pub(crate) in_flight: IntGauge,
    pub(crate) skipped_total: IntCounterVec,
    pub listen_notifications_total: IntCounterVec,
    pub listen_reconnects_total: IntCounterVec,
    pub listen_disconnected_seconds_total: Counter,
    pub listen_channels: IntGauge,
    pub listen_dropped_total: IntCounterVec,
}

impl Metrics {
    /// Creates and registers every series.
    pub fn new() -> Self {
        let registry = Registry::new();
        let counter_vec = |name: &str, help: &str, labels: &[&str]| {
            let c = IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric");
            registry
                .register(Box::new(c.clone()))
                .expect("unique metric");
            c
        };
        let histogram = |name: &str, help: &str| {
            let h = Histogram::with_opts(
                HistogramOpts::new(name, help).buckets(LATENCY_BUCKETS.to_vec()),
            )
            .expect("valid metric");
            registry
                .register(Box::new(h.clone()))
                .expect("unique metric");
            h
        };
        let histogram_vec = |name: &str, help: &str, labels: &[&str]| {
            let h = HistogramVec::new(
                HistogramOpts::new(name, help).buckets(LATENCY_BUCKETS.to_vec()),
                labels,
            )
            .expect("valid metric");
            registry
                .register(Box::new(h.clone()))
                .expect("unique metric");
            h
        };
        let counter = |name: &str, help: &str| {
            let c = IntCounter::new(name, help).expect("valid metric");
            registry
                .register(Box::new(c.clone()))
                .expect("unique metric");
            c
        };

        let ingress_requests_total = counter_vec(
            "relay_ingress_requests_total",
            "Webhook deliveries answered by the ingress, by HTTP status.",
            &["status"],
        );
        let ingress_request_duration_seconds = histogram(
            "relay_ingress_request_duration_seconds",
            "Time from request arrival to answer at the ingress.",
        );
        let ingress_connections = IntGauge::new(
            "relay_ingress_connections",
            "Connections open at the ingress (at most RELAY_INGRESS_MAX_CONNECTIONS).",
        )
        .expect("valid metric");
        registry
            .register(Box::new(ingress_connections.clone()))
            .expect("unique metric");
        let ingress_connections_refused_total = IntCounter::new(
            "relay_ingress_connections_refused_total",
            "Connections closed on accept because RELAY_INGRESS_MAX_CONNECTIONS were open.",
        )
        .expect("valid metric");
        registry
            .register(Box::new(ingress_connections_refused_total.clone()))
            .expect("unique metric");
        let ingress_connections_closed_total = counter_vec(
            "relay_ingress_connections_closed_total",
            "Connections the ingress closed for a deadline, by reason (header_timeout, body_timeout, idle_timeout).",
            &["reason"],
        );
        let produce_duration_seconds = histogram(
            "relay_produce_duration_seconds",
            "Time from handing a record to the producer to the broker's acknowledgement.",
        );
        let events_processed_total = counter_vec(
            "relay_events_processed_total",
            "Events handled by the workers, by route and outcome.",
            &["route", "outcome"],
        );
        let processing_duration_seconds = histogram_vec(
            "relay_processing_duration_seconds",
            "Time to handle one event in a worker, by route.",
            &["route"],
        );
        let retry_scheduled_total = counter_vec(
            "relay_retry_scheduled_total",
            "Events written to a retry tier.",
            &["tier"],
        );
        let dlq_total = counter_vec(
            "relay_dlq_total",
            "Events written to the dead-letter topic, by error class.",
            &["class"],
        );
        let idempotency_hits_total = counter(
            "relay_idempotency_hits_total",
            "Events recognised as already synced by their idempotency key.",
        );
        let genesys_requests_total = counter_vec(
            "relay_genesys_requests_total",
            "Requests to the Genesys Cloud API, by endpoint and HTTP status.",
            &["endpoint", "status"],
        );
        let genesys_token_refresh_total = counter(
            "relay_genesys_token_refresh_total",
            "OAuth client-credentials tokens fetched.",
        );
        let genesys_budget_wait_seconds = histogram(
            "relay_genesys_budget_wait_seconds",
            "Time a Genesys Cloud request waited for a slot of the process's request budget.",
        );
        let genesys_ratelimit_remaining = IntGauge::new(
            "relay_genesys_ratelimit_remaining",
            "Requests left in the current Genesys rate-limit window (inin-ratelimit-allowed minus inin-ratelimit-count of the latest answer).",
        )
        .expect("valid metric");
        registry
            .register(Box::new(genesys_ratelimit_remaining.clone()))
            .expect("unique metric");
        let genesys_cache_hits_total = counter(
            "relay_genesys_cache_hits_total",
            "Conversation lookups served by the cache (or by a request already in flight) instead of a Genesys call.",
        );
        let sink_requests_total = counter_vec(
            "relay_sink_requests_total",
            "Requests to downstream sinks, by sink and HTTP status.",
            &["sink", "status"],
        );
        let sink_request_duration_seconds = histogram_vec(
            "relay_sink_request_duration_seconds",
            "Duration of downstream sink requests.",
            &["sink"],
        );
        let consumer_lag = IntGaugeVec::new(
            Opts::new(
                "relay_consumer_lag",
                "Records between the committed position and the high watermark.",
            ),
            &["topic", "partition"],
        )
        .expect("valid metric");
        registry
            .register(Box::new(consumer_lag.clone()))
            .expect("unique metric");
        let in_flight = IntGauge::new(
            "relay_in_flight",
            "Events received by the workers and not yet fully handled.",
        )
        .expect("valid metric");
        registry
            .register(Box::new(in_flight.clone()))
            .expect("unique metric");
        let skipped_total = counter_vec(
            "relay_skipped_total",
            "Events skipped by a route, by route and reason.",
            &["route", "reason"],
        );

        // The Notifications API listener (`listen`).
        let listen_notifications_total = counter_vec(
            "relay_listen_notifications_total",
            "Notifications read from Genesys Cloud sockets and acknowledged by Kafka, by topic (ids as {id}).",
            &["topic"],
        );
        let listen_reconnects_total = counter_vec(
            "relay_listen_reconnects_total",
            "Notification channels replaced or reconnected, by reason.",
            &["reason"],
        );
        let listen_disconnected_seconds_total = Counter::new(
            "relay_listen_disconnected_seconds_total",
            "Seconds a channel group had no open socket: Genesys Cloud drops what it sends then.",
        )
        .expect("valid metric");
        registry
            .register(Box::new(listen_disconnected_seconds_total.clone()))
            .expect("unique metric");
        let listen_channels = IntGauge::new(
            "relay_listen_channels",
            "Notification channels with an open socket.",
        )
        .expect("valid metric");
        registry
            .register(Box::new(listen_channels.clone()))
            .expect("unique metric");
        let listen_dropped_total = counter_vec(
            "relay_listen_dropped_total",
            "Socket messages not written to Kafka, by reason (should stay 0).",
            &["reason"],
        );
        for reason in [
            "socket_closing",
            "expiring",
            "dropped",
            "channel_gone",
            "idle",
            "resubscribe",
        ] {
            listen_reconnects_total.with_label_values(&[reason]);
        }
        for reason in ["shutdown", "unparseable", "unencodable"] {
            listen_dropped_total.with_label_values(&[reason]);
        }

        // Series that exist from the start, so dashboards and alerts see zeros, not gaps.
        // The worker's route/outcome/skip series are declared from its own enums
        // (`pipeline::declare_series`), which the composition root calls at start-up.
        for class in ["retryable", "permanent", "poison", "exhausted"] {
            dlq_total.with_label_values(&[class]);
        }
        for status in ["202", "400", "401", "408", "413", "415", "503"] {
            ingress_requests_total.with_label_values(&[status]);
        }
        for reason in ["header_timeout", "body_timeout", "idle_timeout"] {
            ingress_connections_closed_total.with_label_values(&[reason]);
        }
        for sink in ["cms", "forward"] {
            sink_request_duration_seconds.with_label_values(&[sink]);
            sink_requests_total.with_label_values(&[sink, "200"]);
        }
        genesys_requests_total.with_label_values(&["token", "200"]);

        Metrics {
            registry,
            ingress_requests_total,
            ingress_request_duration_seconds,
            ingress_connections,
            ingress_connections_refused_total,
            ingress_connections_closed_total,
            produce_duration_seconds,
            events_processed_total,
            processing_duration_seconds,
            retry_scheduled_total,
            dlq_total,
            idempotency_hits_total,
            genesys_requests_total,
            genesys_token_refresh_total,
            genesys_budget_wait_seconds,
            genesys_ratelimit_remaining,
            genesys_cache_hits_total,
            sink_requests_total,
            sink_request_duration_seconds,
            consumer_lag,
            in_flight,
            skipped_total,
            listen_notifications_total,
            listen_reconnects_total,
            listen_disconnected_seconds_total,
            listen_channels,
            listen_dropped_total,
        }
    }

    /// Creates the `relay_retry_scheduled_total` series of tiers `1..=tiers` at zero.
    pub(crate) fn init_retry_tiers(&self, tiers: usize) {
        for tier in 1..=tiers {
            self.retry_scheduled_total
                .with_label_values(&[&tier.to_string()]);
        }
    }

    /// The Prometheus text exposition of every series.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut buf)
            .expect("text encoding cannot fail on gathered families");
        String::from_utf8(buf).expect("prometheus text is UTF-8")
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}
