//! Operator commands behind `genesys-relay dlq ...`: listing and replaying dead letters.
//!
//! Library functions only: they return values (and [`OperatorError`]) and never print;
//! the binary formats and prints them.

mod dlq;
mod render;

pub use dlq::{list_dead_letters, replay_dead_letters, DeadLetter, ReplayReport, ReplaySelection};
pub use render::{format_table, to_json};

use crate::kafka::{KafkaSettings, ProduceError, Topics};
use rdkafka::error::KafkaError;

/// What the operator commands need of the configuration: Kafka access and the relay's
/// topic names (the composition root derives both).
#[derive(Debug, Clone)]
pub struct OperatorSettings {
    pub kafka: KafkaSettings,
    pub topics: Topics,
    /// Where idempotency marks' schemas are read when records are registry-framed.
    pub schema_registry_url: Option<crate::config::Url>,
    /// Timeout of the schema registry reads.
    pub http_timeout: std::time::Duration,
}

/// Why an operator command failed.
#[derive(Debug, thiserror::Error)]
pub enum OperatorError {
    /// Neither event ids nor `--all` were given.
    #[error("nothing selected: give --event-id ID (repeatable) or --all")]
    NothingSelected,
    /// Both event ids and `--all` were given.
    #[error("give either --event-id or --all, not both")]
    ConflictingSelection,
    #[error("cannot read {topic}: {source}")]
    Read {
        topic: String,
        #[source]
        source: KafkaError,
    },
    /// A write was not acknowledged; `replayed` records were written before it.
    #[error("cannot write the dead letter at {from} to {topic} ({replayed} replayed before the failure): {source}")]
    Produce {
        topic: String,
        from: String,
        replayed: usize,
        #[source]
        source: Box<ProduceError>,
    },
    /// A selected dead letter whose key is not UTF-8 cannot be written with the same key.
    #[error("the dead letter at {0} has a key that is not UTF-8; it cannot be replayed with the same key")]
    KeyNotUtf8(String),
    #[error("the reader thread failed: {0}")]
    Task(String),
    #[error("cannot read the idempotency marks' schemas: {0}")]
    Schema(#[from] crate::schema::SchemaError),
    #[error("cannot encode JSON: {0}")]
    Json(#[from] serde_json::Error),
}
