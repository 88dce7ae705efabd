//! genesys-relay: a Kafka-native stream processor for Genesys Cloud webhook events.
//!
//! Map of the crate:
//! - [`config`]: `RELAY_*` settings and the TOML file.
//! - [`metrics`]: every Prometheus series the relay exports.
//! - [`schema`]: Avro records and their wire formats.
//! - [`kafka`]: producer, at-least-once consumer loop, topics, headers.
pub mod config;
pub mod kafka;
pub mod metrics;
pub mod schema;
