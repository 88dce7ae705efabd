//! The body-size rule: a body the ingress accepts (not 413) must always fit in one Kafka
//! record under the producer's `message.max.bytes`, so an accepted size can never come
//! back as a 503 forever, and its retry and dead-letter copies fit too.
//!
//! librdkafka refuses a message whose key + value + headers + per-message framing exceed
//! `message.max.bytes` (default 1,000,000). A raw record is the body (the `payload` field)
//! plus a bounded overhead, because every other text the relay writes is at most
//! [`MAX_FIELD_BYTES`] (see `crate::event`):
//! - `RawEvent` fields besides the payload: 9 strings of at most 1 KiB + 2 bytes of length
//!   each (event id, type, shape, conversation, guest, topic, participant, traceparent,
//!   EventBridge id), 2 longs and union tags: under 9.3 KiB; the payload's own length prefix, 5 bytes;
//! - framing: single-object header 10 bytes (Confluent 5);
//! - key: a conversation id or event id, at most 1 KiB;
//! - headers: `relay-event-id`, `traceparent` and `relay-eventbridge-id` (1 KiB each) on
//!   the raw record, plus the
//!   retry/DLQ headers added on hand-off (`relay-error` <= 1 KiB, the others under 400 bytes);
//! - librdkafka's per-message v2 framing, under 100 bytes.
//!
//! That is under 15 KiB; [`RECORD_OVERHEAD_BYTES`] reserves 16 KiB.

use super::IngressSettings;
use crate::config::ConfigError;
use crate::event::MAX_FIELD_BYTES;

/// Bytes a record may need beyond its body (see the module comment for the sum).
pub const RECORD_OVERHEAD_BYTES: usize = 16 * 1024;

// The sum above assumes 1 KiB fields; a larger bound must revisit it.
const _: () = assert!(MAX_FIELD_BYTES <= 1024);

/// The body limit the ingress enforces: `RELAY_MAX_BODY_BYTES`, checked against the
/// producer's `message.max.bytes`, or, unset, the largest body that always fits.
pub fn max_body_bytes(
    settings: &IngressSettings,
    message_max: usize,
) -> Result<usize, ConfigError> {
    let fits = message_max.checked_sub(RECORD_OVERHEAD_BYTES).ok_or_else(|| {
        ConfigError::Invalid {
            name: "RELAY_KAFKA_MESSAGE_MAX_BYTES".into(),
            reason: format!(
                "{message_max} leaves no room for a body after the {RECORD_OVERHEAD_BYTES}-byte record overhead"
            ),
        }
    })?;
    match settings.max_body_bytes {
        None => Ok(fits),
        Some(0) => Err(ConfigError::Invalid {
            name: "RELAY_MAX_BODY_BYTES".into(),
            reason: "must be above 0".into(),
        }),
        Some(n) if n > fits => Err(ConfigError::Invalid {
            name: "RELAY_MAX_BODY_BYTES".into(),
            reason: format!(
                "{n} does not fit the producer's message.max.bytes {message_max} with the \
                 {RECORD_OVERHEAD_BYTES}-byte record overhead; use at most {fits} or raise \
                 RELAY_KAFKA_MESSAGE_MAX_BYTES (and the topic's max.message.bytes)"
            ),
        }),
        Some(n) => Ok(n),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kafka::KafkaSettings;
    use crate::schema::{Codec, RawEvent};

    /// The limit for these settings, with `message.max.bytes` read as the producer reads it.
    fn limit(pairs: &[(&str, &str)]) -> Result<usize, ConfigError> {
        let kafka = KafkaSettings::from_pairs(pairs)?;
        max_body_bytes(
            &IngressSettings::from_pairs(pairs)?,
            kafka.message_max_bytes,
        )
    }

    #[test]
    fn default_and_explicit_limits() {
        assert_eq!(limit(&[]).unwrap(), 1_000_000 - 16_384);
        assert_eq!(limit(&[("RELAY_MAX_BODY_BYTES", "2048")]).unwrap(), 2048);
        let err = limit(&[("RELAY_MAX_BODY_BYTES", "1048576")])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("RELAY_MAX_BODY_BYTES") && err.contains("983616"),
            "{err}"
        );
        assert_eq!(
            limit(&[
                ("RELAY_MAX_BODY_BYTES", "1048576"),
                ("RELAY_KAFKA_MESSAGE_MAX_BYTES", "2000000"),
            ])
            .unwrap(),
            1_048_576
        );
        assert!(limit(&[("RELAY_KAFKA_MESSAGE_MAX_BYTES", "1000")]).is_err());
    }

    /// The worst record a body of the limit can make stays under the budget: every bounded
    /// field at its maximum, the largest framing.
    #[test]
    fn the_overhead_covers_the_largest_fields() {
        let max = "x".repeat(MAX_FIELD_BYTES);
        let body_len = 100_000;
        let event = RawEvent {
            event_id: max.clone(),
            event_type: max.clone(),
            shape: crate::schema::Shape::EventBridge,
            conversation_id: Some(max.clone()),
            guest_id: Some(max.clone()),
            event_time_ms: Some(i64::MIN),
            received_at_ms: i64::MIN,
            payload: "p".repeat(body_len),
            traceparent: Some(max.clone()),
            topic_name: Some(max.clone()),
            participant_id: Some(max.clone()),
            eventbridge_id: Some(max.clone()),
        };
        let value = Codec::single_object().encode(&event).unwrap();
        let key = MAX_FIELD_BYTES;
        // relay-event-id, traceparent, relay-eventbridge-id, relay-error at 1 KiB; 8 short
        // relay-* headers.
        let headers = 4 * (MAX_FIELD_BYTES + 32) + 8 * 64;
        let framing = 100;
        let record = value.len() + key + headers + framing;
        assert!(
            record - body_len < RECORD_OVERHEAD_BYTES,
            "overhead {} bytes",
            record - body_len
        );
    }
}
