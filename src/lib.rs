//! genesys-relay: a Kafka-native stream processor for Genesys Cloud webhook events.
//!
//! Map of the crate, in the order a reader follows the data (one line per module; the
//! declarations below are in rustfmt's alphabetical order):
//! - [`app`]: the composition root: the whole [`app::Config`] (each part's settings slice) and the
//!   wiring of every role (`serve`, `ingress`, `listen`, `worker`) in one place.
//! - [`config`]: the one `RELAY_*` settings table, the reader and validation helpers every part
//!   reads its own typed settings with (the floor: imports nothing from the crate).
//! - [`event`]: the event floor: delivery shapes and their parser, SDK topic patterns, event
//!   ids (one per notification whatever the path), record keys, the one raw-topic write.
//! - [`ingress`]: the webhook endpoint: authenticates, hands the body to [`event`], answers.
//! - [`listen`]: the Notifications API source (`listen`): channels, WebSockets, hands each
//!   notification to [`event`].
//! - [`schema`]: Avro records and their wire formats (single-object or schema registry).
//! - [`kafka`]: topics, the acknowledged producer, relay headers, the at-least-once consumer loop.
//! - [`pipeline`]: the worker's settings and processor: route table, route handlers, the pure
//!   retry decision, retries, dead letters, outcome and skip-reason names.
//! - [`genesys`]: Genesys Cloud API client (OAuth token, request budget, conversation cache, triggers).
//! - [`sinks`]: downstream HTTP sinks (CMS guest-session upserts, backend forward).
//! - [`outbound`]: the one outbound-HTTP failure type ([`outbound::HttpError`]) and answer.
//! - [`idempotency`]: memory of synced keys (moka), backed by a compacted topic.
//! - [`metrics`]: every Prometheus series the relay exports.
//! - [`admin_server`]: `/healthz`, `/readyz`, `/metrics`, and the console under `/console`.
//! - [`console`]: the operator console (overview, dead letters and replay, listen) behind `RELAY_ADMIN_TOKEN`.
//! - [`shutdown`]: the shutdown signal every part listens to, and bounded draining.
//! - [`supervise`]: a part that fails or ends early stops the process (non-zero exit).
//! - `text`: the one UTF-8-safe truncation.
//! - [`clock`]: wall-clock milliseconds, their ISO 8601 rendering, the doubling write backoff.
//! - [`operator`]: operator commands (`dlq list`, `dlq replay`): replay library and output.
//!
//! The simulators the tests and the local stack run against are a separate workspace member,
//! `genesys-sim` (its own binary): the product ships no fake OAuth server.
#![warn(unreachable_pub)]

pub mod admin_server;
pub mod app;
pub mod clock;
pub mod config;
pub mod console;
pub mod event;
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
pub mod supervise;
mod text;
