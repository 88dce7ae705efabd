//! genesys-relay: a Kafka-native stream processor for Genesys Cloud webhook events.
//!
//! Map of the crate:
//! - [`config`]: `RELAY_*` settings and the TOML file.
//! - [`metrics`]: every Prometheus series the relay exports.
//! - [`schema`]: Avro records and their wire formats.
//! - [`kafka`]: producer, at-least-once consumer loop, topics, headers.
//! - [`ingress`]: the webhook endpoint (envelope parsing, authentication).
//! - [`listen`]: the Notifications API source (`listen`): channels, WebSockets, raw topic.
//! - [`genesys`]: Genesys Cloud API client (request budget, conversation cache), OAuth
//!   token source, Process Automation trigger registration.
//! - [`sinks`]: downstream HTTP sinks (CMS guest-session upserts, backend forward).
//! - [`outbound`]: the one outbound-HTTP failure type ([`outbound::HttpError`]) and answer
//!   shared by the Genesys, CMS and forward clients.
//! - [`idempotency`]: moka caches of synced keys, backed by a compacted topic.
//! - [`pipeline`]: the worker: router, routes, retries, dead letters.
//! - [`app`]: wiring of `serve`, `ingress` and `worker`, and graceful shutdown ([`shutdown`]).
//! - [`admin_server`]: `/healthz`, `/readyz`, `/metrics`.
//! - [`operator`]: operator commands (`dlq list`, `dlq replay`): dead letters listed and replayed.
//!
//! The simulators the tests and the local stack run against are a separate workspace member,
//! `genesys-sim` (its own binary): the product ships no fake OAuth server.
pub mod admin_server;
pub mod app;
pub mod config;
pub mod genesys;
pub mod idempotency;
pub mod ingress;
pub mod kafka;
pub mod listen;
pub mod metrics;
pub mod operator;
pub mod outbound;
pub mod pipeline;
pub mod schema;
pub mod shutdown;
pub mod sinks;
