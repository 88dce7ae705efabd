//! genesys-relay: a Kafka-native stream processor for Genesys Cloud webhook events.
//!
//! Map of the crate:
//! - [`config`]: `RELAY_*` settings and the TOML file.
//! - [`metrics`]: every Prometheus series the relay exports.
//! - [`schema`]: Avro records and their wire formats.
//! - [`kafka`]: producer, at-least-once consumer loop, topics, headers.
//! - [`ingress`]: the webhook endpoint (envelope parsing, authentication).
//! - [`pipeline`]: the worker: router, routes, retries, dead letters.
//! - [`app`]: wiring of `serve`, `ingress` and `worker`, and graceful shutdown ([`shutdown`]).
//! - [`admin_server`]: `/healthz`, `/readyz`, `/metrics`.
pub mod admin_server;
pub mod app;
pub mod config;
pub mod ingress;
pub mod kafka;
pub mod metrics;
pub mod pipeline;
pub mod schema;
pub mod shutdown;
