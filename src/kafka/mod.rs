//! Everything that talks to Kafka: its settings, client settings, topic names and creation, the
//! acknowledged producer, relay headers, and the at-least-once consumer loop.

mod admin;
mod client_config;
mod client_context;
mod consumer;
pub mod headers;
mod offsets;
mod producer;
mod settings;
mod topic_reader;
mod topics;

pub use admin::ensure_topics;
pub use client_config::client_config;
pub use client_context::{
    check_cluster, BrokerTrouble, ClientError, ClusterUnreachable, RelayClientContext,
    StartupCheckError,
};
pub use consumer::{ConsumerLoop, ConsumerOptions, Handled, MessageHandler};
pub use offsets::OffsetTracker;
pub use producer::{EventProducer, ProduceError};
pub use settings::{KafkaSettings, LIBRDKAFKA_MESSAGE_MAX_BYTES};
pub use topic_reader::{assign_from_beginning, read_topic_to_end, read_topic_to_end_within};
pub use topics::Topics;
