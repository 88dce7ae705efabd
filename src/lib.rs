//! genesys-relay: a Kafka-native stream processor for Genesys Cloud webhook events.
//!
//! Map of the crate:
//! - [`config`]: `RELAY_*` settings and the TOML file.
//! - [`metrics`]: every Prometheus series the relay exports.
//! - [`genesys`]: Genesys Cloud API client, OAuth token source, webhook registration.
//! - [`sinks`]: downstream HTTP sinks (CMS guest-session upserts, backend forward).
//! - `outbound` (private): failure handling shared by those HTTP clients.
pub mod config;
pub mod genesys;
pub mod metrics;
mod outbound;
pub mod sinks;
