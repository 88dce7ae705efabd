//! genesys-relay: a Kafka-native stream processor for Genesys Cloud webhook events.
//!
//! Map of the crate:
//! - [`config`]: `RELAY_*` settings and the TOML file.
//! - [`metrics`]: every Prometheus series the relay exports.
//! - [`sim`]: HTTP simulators of Genesys Cloud and a headless CMS for tests and the local stack.
pub mod config;
pub mod metrics;
pub mod sim;
