//! Avro records the relay writes to Kafka, and the codec that frames them.
//!
//! Without a schema registry a value is Avro single-object encoding (`C3 01`, the
//! schema's 8-byte Rabin fingerprint, then the datum). With `RELAY_SCHEMA_REGISTRY_URL`
//! it is the Confluent wire format (`00`, a 4-byte schema id, then the datum), using ids
//! registered at start-up. Decoding accepts both, so switching a deployment to a registry
//! never strands records written before; a record whose registry id this process did not
//! register (another schema version) is not decodable here and is dead-lettered as poison.

mod records;
mod registry;

pub use records::{ConversationParticipant, EnrichedConversation, IdempotencyMark, RawEvent};
pub use registry::SchemaRegistry;

use apache_avro::headers::{HeaderBuilder, RabinFingerprintHeader};
use apache_avro::Schema;
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::collections::HashMap;

/// Why a value could not be encoded or decoded.
#[derive(Debug, thiserror::Error)]
pub enum SchemaError {
    #[error("cannot encode {record}: {reason}")]
    Encode {
        record: &'static str,
        reason: String,
    },
    #[error("cannot decode {record}: {reason}")]
    Decode {
        record: &'static str,
        reason: String,
    },
    #[error("schema registry: {0}")]
    Registry(String),
}

/// A Rust type that is written as one of the schemas in `schemas/`.
pub trait AvroRecord: Serialize + DeserializeOwned {
    /// The record name, e.g. `RawEvent`.
    const NAME: &'static str;
    /// The parsed schema.
    fn schema() -> &'static Schema;
    /// The single-object header (`C3 01` + Rabin fingerprint), computed once: the
    /// fingerprint needs the schema's canonical form, far dearer than the datum itself.
    fn single_object_header() -> &'static [u8];
}

const SINGLE_OBJECT_MAGIC: [u8; 2] = [0xC3, 0x01];
const CONFLUENT_MAGIC: u8 = 0;

/// Encodes and decodes [`AvroRecord`]s in the configured wire format.
#[derive(Debug, Clone, Default)]
pub struct Codec {
    /// Registered schema ids by record name; empty means single-object encoding.
    registry_ids: HashMap<&'static str, u32>,
}

impl Codec {
    /// Single-object encoding, no registry.
    pub fn single_object() -> Self {
        Codec::default()
    }

    /// Confluent wire format with the given registered ids (record name -> id).
    pub fn with_registry_ids(registry_ids: HashMap<&'static str, u32>) -> Self {
        Codec { registry_ids }
    }

    /// Whether values carry a registry schema id.
    pub fn uses_registry(&self) -> bool {
        !self.registry_ids.is_empty()
    }

    pub fn encode<T: AvroRecord>(&self, record: &T) -> Result<Vec<u8>, SchemaError> {
        let err = |e: apache_avro::Error| SchemaError::Encode {
            record: T::NAME,
            reason: e.to_string(),
        };
        let value = apache_avro::to_value(record).map_err(err)?;
        let datum = apache_avro::to_avro_datum(T::schema(), value).map_err(err)?;
        let mut out = Vec::with_capacity(datum.len() + 10);
        match self.registry_ids.get(T::NAME) {
            Some(id) => {
                out.push(CONFLUENT_MAGIC);
                out.extend_from_slice(&id.to_be_bytes());
            }
            None => out.extend_from_slice(T::single_object_header()),
        }
        out.extend_from_slice(&datum);
        Ok(out)
    }

    pub fn decode<T: AvroRecord>(&self, bytes: &[u8]) -> Result<T, SchemaError> {
        let fail = |reason: String| SchemaError::Decode {
            record: T::NAME,
            reason,
        };
        let mut datum = match bytes {
            [0xC3, 0x01, rest @ ..] => {
                if !bytes.starts_with(T::single_object_header()) {
                    return Err(fail("schema fingerprint does not match".into()));
                }
                &rest[8..]
            }
            [CONFLUENT_MAGIC, a, b, c, d, rest @ ..] => {
                let id = u32::from_be_bytes([*a, *b, *c, *d]);
                if self.registry_ids.get(T::NAME) != Some(&id) {
                    return Err(fail(format!("unknown schema id {id}")));
                }
                rest
            }
            _ => return Err(fail("no Avro single-object or Confluent header".into())),
        };
        let value = apache_avro::from_avro_datum(T::schema(), &mut datum, None)
            .map_err(|e| fail(e.to_string()))?;
        if !datum.is_empty() {
            return Err(fail(format!("{} trailing bytes", datum.len())));
        }
        apache_avro::from_value(&value).map_err(|e| fail(e.to_string()))
    }
}

/// Builds the header; [`AvroRecord::single_object_header`] caches it per record type.
pub(crate) fn single_object_header(schema: &Schema) -> Vec<u8> {
    let header = RabinFingerprintHeader::from_schema(schema).build_header();
    debug_assert_eq!(header[..2], SINGLE_OBJECT_MAGIC);
    header
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw() -> RawEvent {
        RawEvent {
            event_id: "e-1".into(),
            event_type: "conversation:updated".into(),
            shape: "ENVELOPE".into(),
            conversation_id: Some("c-1".into()),
            guest_id: None,
            event_time_ms: Some(1_700_000_000_000),
            received_at_ms: 1_700_000_000_123,
            payload: r#"{"eventType":"conversation:updated"}"#.into(),
            traceparent: None,
            topic_name: None,
            participant_id: None,
        }
    }

    #[test]
    fn single_object_round_trip() {
        let codec = Codec::single_object();
        let bytes = codec.encode(&raw()).unwrap();
        assert_eq!(&bytes[..2], &SINGLE_OBJECT_MAGIC);
        assert_eq!(codec.decode::<RawEvent>(&bytes).unwrap(), raw());
    }

    #[test]
    fn confluent_round_trip_and_either_format_decodes() {
        let codec = Codec::with_registry_ids(HashMap::from([(RawEvent::NAME, 7)]));
        let bytes = codec.encode(&raw()).unwrap();
        assert_eq!(&bytes[..5], &[0, 0, 0, 0, 7]);
        assert_eq!(codec.decode::<RawEvent>(&bytes).unwrap(), raw());
        let single = Codec::single_object().encode(&raw()).unwrap();
        assert_eq!(codec.decode::<RawEvent>(&single).unwrap(), raw());
    }

    #[test]
    fn cached_headers_match_the_schemas() {
        assert_eq!(
            RawEvent::single_object_header(),
            single_object_header(RawEvent::schema())
        );
        assert_eq!(
            IdempotencyMark::single_object_header(),
            single_object_header(IdempotencyMark::schema())
        );
        assert_ne!(
            RawEvent::single_object_header(),
            EnrichedConversation::single_object_header()
        );
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        let codec = Codec::single_object();
        for bytes in [&b""[..], b"{}", &[0xC3, 0x01, 1, 2], &[0, 0, 0, 0, 1, 2, 3]] {
            assert!(codec.decode::<RawEvent>(bytes).is_err());
        }
        let mut truncated = codec.encode(&raw()).unwrap();
        truncated.truncate(truncated.len() - 3);
        assert!(codec.decode::<RawEvent>(&truncated).is_err());
    }

    #[test]
    fn enriched_conversation_round_trip() {
        let rec = EnrichedConversation {
            event_id: "e".into(),
            conversation_id: "c".into(),
            event_type: "conversation:created".into(),
            event_time_ms: None,
            enriched_at_ms: 5,
            start_time: Some("2026-01-01T00:00:00Z".into()),
            end_time: None,
            participants: vec![ConversationParticipant {
                id: "p".into(),
                purpose: Some("customer".into()),
                name: None,
            }],
            conversation_json: "{}".into(),
            event_payload: "{}".into(),
        };
        let codec = Codec::single_object();
        let bytes = codec.encode(&rec).unwrap();
        assert_eq!(codec.decode::<EnrichedConversation>(&bytes).unwrap(), rec);
        assert!(
            codec.decode::<RawEvent>(&bytes).is_err(),
            "fingerprint must tell records apart"
        );
    }
}
