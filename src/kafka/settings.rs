//! The Kafka slice of the settings: brokers, the `RELAY_KAFKA_*` passthrough, topic names
//! and how the relay creates topics, the producer's acknowledgement timeout.
//!
//! Invariant: nothing weakens `acks=all` (the relay's promises rest on it), and a topic the
//! relay creates never has a `min.insync.replicas` its replication cannot meet.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::config::{invalid, ConfigError, Vars};

/// librdkafka's default `message.max.bytes`, used when `RELAY_KAFKA_MESSAGE_MAX_BYTES` is unset.
pub const LIBRDKAFKA_MESSAGE_MAX_BYTES: usize = 1_000_000;

/// Settings that are `RELAY_KAFKA_*` but are not rdkafka passthrough.
const KAFKA_OWN_KEYS: &[&str] = &["RELAY_KAFKA_BROKERS"];

/// Where and how the relay talks to Kafka.
#[derive(Debug, Clone)]
pub struct KafkaSettings {
    /// `RELAY_KAFKA_BROKERS`: bootstrap servers.
    pub brokers: String,
    /// Every other `RELAY_KAFKA_*` variable, as rdkafka property names.
    pub passthrough: BTreeMap<String, String>,
    /// `RELAY_TOPIC_PREFIX`: first part of every topic name.
    pub topic_prefix: String,
    /// `RELAY_CONSUMER_GROUP`: group of the raw topic; the retry topics use `<group>-retry`.
    pub consumer_group: String,
    /// `RELAY_CREATE_TOPICS`: create missing topics at start-up.
    pub create_topics: bool,
    /// `RELAY_TOPIC_PARTITIONS`: partitions of topics the relay creates.
    pub topic_partitions: i32,
    /// `RELAY_TOPIC_REPLICATION`: replication factor of topics the relay creates.
    pub topic_replication: i32,
    /// `RELAY_TOPIC_MIN_INSYNC_REPLICAS`: `min.insync.replicas` of topics the relay
    /// creates; `None` keeps the broker's default.
    pub topic_min_insync_replicas: Option<i32>,
    /// `RELAY_IDEMPOTENCY_RETENTION`: retention of the idempotency topic when the relay
    /// creates it; `None` = compact only.
    pub idempotency_retention: Option<Duration>,
    /// `RELAY_PRODUCE_TIMEOUT`: longest wait for the broker's acknowledgement.
    pub produce_timeout: Duration,
    /// The producer's `message.max.bytes`: `RELAY_KAFKA_MESSAGE_MAX_BYTES`, else
    /// librdkafka's default.
    pub message_max_bytes: usize,
}

/// Whatever holds the Kafka settings (the process configuration) can be handed to the
/// Kafka clients directly.
impl AsRef<KafkaSettings> for KafkaSettings {
    fn as_ref(&self) -> &KafkaSettings {
        self
    }
}

impl KafkaSettings {
    pub fn read(v: &Vars) -> Result<Self, ConfigError> {
        let passthrough: BTreeMap<String, String> = v
            .with_prefix("RELAY_KAFKA_", KAFKA_OWN_KEYS)
            .into_iter()
            .map(|(k, v)| {
                (
                    k["RELAY_KAFKA_".len()..].to_lowercase().replace('_', "."),
                    v,
                )
            })
            .collect();
        // The relay's promises rest on `acks=all` (docs/architecture.md): a weaker setting
        // would let the ingress answer 202 for a record a broker failure can lose.
        if let Some(acks) = v.get("RELAY_KAFKA_ACKS") {
            if !matches!(acks.to_ascii_lowercase().as_str(), "all" | "-1") {
                return Err(invalid(
                    "RELAY_KAFKA_ACKS",
                    format!("{acks:?} would weaken acks=all, which the relay requires; remove the setting"),
                ));
            }
        }
        let message_max_bytes = match passthrough.get("message.max.bytes") {
            None => LIBRDKAFKA_MESSAGE_MAX_BYTES,
            Some(n) => n.trim().parse().map_err(|e: std::num::ParseIntError| {
                invalid("RELAY_KAFKA_MESSAGE_MAX_BYTES", e.to_string())
            })?,
        };
        let topic_replication = v.parse("RELAY_TOPIC_REPLICATION")?;
        let topic_min_insync_replicas = v.parse_opt("RELAY_TOPIC_MIN_INSYNC_REPLICAS")?;
        // A topic whose min.insync.replicas exceeds its replication factor rejects every
        // acks=all write; say so at start-up instead.
        if let Some(min_isr) = topic_min_insync_replicas {
            if min_isr < 1 || min_isr > topic_replication {
                return Err(invalid(
                    "RELAY_TOPIC_MIN_INSYNC_REPLICAS",
                    format!(
                        "{min_isr} is not between 1 and RELAY_TOPIC_REPLICATION ({topic_replication})"
                    ),
                ));
            }
        }
        Ok(KafkaSettings {
            brokers: v.get_or_default("RELAY_KAFKA_BROKERS"),
            passthrough,
            topic_prefix: v.get_or_default("RELAY_TOPIC_PREFIX"),
            consumer_group: v.get_or_default("RELAY_CONSUMER_GROUP"),
            create_topics: v.parse("RELAY_CREATE_TOPICS")?,
            topic_partitions: v.parse("RELAY_TOPIC_PARTITIONS")?,
            topic_replication,
            topic_min_insync_replicas,
            idempotency_retention: v.duration_opt("RELAY_IDEMPOTENCY_RETENTION")?,
            produce_timeout: v.duration("RELAY_PRODUCE_TIMEOUT")?,
            message_max_bytes,
        })
    }

    /// Reads the settings from a variable map (tests).
    #[cfg(test)]
    pub(crate) fn from_pairs(pairs: &[(&str, &str)]) -> Result<Self, ConfigError> {
        Self::read(&Vars::from_pairs(pairs))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_follow_the_design() {
        let k = KafkaSettings::from_pairs(&[]).unwrap();
        assert_eq!(k.brokers, "localhost:9092");
        assert_eq!(k.topic_prefix, "genesys");
        assert_eq!(k.message_max_bytes, 1_000_000);
        assert_eq!(k.topic_min_insync_replicas, None);
        // EventBridge API destinations give up after 5 s: a 503 must come before that.
        assert!(k.produce_timeout < std::time::Duration::from_secs(5));
    }

    #[test]
    fn min_insync_replicas_is_checked_against_replication() {
        let ok = KafkaSettings::from_pairs(&[
            ("RELAY_TOPIC_REPLICATION", "3"),
            ("RELAY_TOPIC_MIN_INSYNC_REPLICAS", "2"),
        ])
        .unwrap();
        assert_eq!(ok.topic_min_insync_replicas, Some(2));
        for bad in ["4", "0", "two"] {
            let err = KafkaSettings::from_pairs(&[
                ("RELAY_TOPIC_REPLICATION", "3"),
                ("RELAY_TOPIC_MIN_INSYNC_REPLICAS", bad),
            ])
            .unwrap_err()
            .to_string();
            assert!(err.contains("RELAY_TOPIC_MIN_INSYNC_REPLICAS"), "{err}");
        }
    }

    #[test]
    fn passthrough_lowercases_and_dots() {
        let k = KafkaSettings::from_pairs(&[
            ("RELAY_KAFKA_SECURITY_PROTOCOL", "SASL_SSL"),
            ("RELAY_KAFKA_SESSION_TIMEOUT_MS", "6000"),
            ("RELAY_KAFKA_BROKERS", "b:9092"),
        ])
        .unwrap();
        assert_eq!(k.passthrough.get("security.protocol").unwrap(), "SASL_SSL");
        assert_eq!(k.passthrough.get("session.timeout.ms").unwrap(), "6000");
        assert!(!k.passthrough.contains_key("brokers"));
        let err = KafkaSettings::from_pairs(&[("RELAY_KAFKA_ACKS", "1")]).unwrap_err();
        assert!(err.to_string().contains("RELAY_KAFKA_ACKS"));
    }
}
