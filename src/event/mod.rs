//! The event floor: what one Genesys event is, whichever path delivered it. The delivery
//! shapes and their parser ([`parse_event`]), the SDK topic patterns, the event id and
//! record key, and the one way a record reaches the raw topic ([`RawTopic::write`]).
//!
//! Invariants: the ingress, `listen` and `dlq replay` write the raw topic only through
//! [`write_raw`], each keeping its own failure policy (the ingress answers 503, `listen`
//! retries with backoff, replay reports and stops); the same notification gets the same
//! event id on every path. This module imports only the schema and Kafka layers.

mod envelope;
pub mod id;
mod raw_topic;
mod topics;

pub use envelope::{parse_event, record_key, EnvelopeError, MAX_FIELD_BYTES, MAX_FUTURE_MS};
pub use raw_topic::{write_raw, RawRecord, RawTopic};
