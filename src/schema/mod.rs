//! Avro records the relay writes to Kafka, and the codec that frames them.
//!
//! Without a schema registry a value is Avro single-object encoding (`C3 01`, the
//! schema's 8-byte Rabin fingerprint, then the datum). With `RELAY_SCHEMA_REGISTRY_URL`
//! it is the Confluent wire format (`00`, a 4-byte schema id, then the datum), using ids
//! registered at start-up. Decoding accepts both, so switching a deployment to a registry
//! never strands records written before.
//!
//! Schema evolution (docs/contract.md#records-and-their-evolution): new fields only with
//! defaults, and a record written with an earlier schema is decoded by Avro schema
//! resolution from its writer schema to today's. The writer schema is found by the
//! single-object fingerprint (every earlier schema is kept in `schemas/history/`) or, in
//! registry mode, by the schema id (every version of the record's subject is loaded at
//! start-up). Only a record whose writer schema is unknown fails to decode (and is
//! dead-lettered as poison).

mod records;
mod registry;

pub use records::{
    ConversationParticipant, EnrichedConversation, IdempotencyMark, MarkOutcome, RawEvent, Shape,
};
pub(crate) use registry::SchemaRegistry;

use apache_avro::headers::{HeaderBuilder, RabinFingerprintHeader};
use apache_avro::Schema;
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::collections::HashMap;
use std::sync::Arc;

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

/// The single-object headers of one schema: the one written, and the one an earlier relay
/// wrote, which still identifies that schema on read.
///
/// The Avro specification fingerprints a schema's Parsing Canonical Form, whose
/// [PRIMITIVES] rule writes `{"type": "long", "logicalType": "timestamp-millis"}` as
/// `"long"`. apache-avro 0.21's `canonical_form` drops the `logicalType` but keeps
/// `{"type":"long"}`, so its fingerprint of any schema with a logical type differs from
/// the one Java's `BinaryMessageDecoder`, fastavro or any other single-object reader
/// computes, and they would refuse the relay's records. The relay now writes the
/// specification's fingerprint and still reads the earlier one.
#[derive(Debug)]
pub struct SingleObjectHeaders {
    written: Vec<u8>,
    earlier: Vec<u8>,
}

impl SingleObjectHeaders {
    pub(crate) fn of(schema: &Schema) -> Self {
        SingleObjectHeaders {
            written: single_object_header(schema),
            earlier: apache_avro_header(schema),
        }
    }

    /// The header new records carry.
    pub fn written(&self) -> &[u8] {
        &self.written
    }

    /// Whether `bytes` start with either header of this schema.
    pub fn frames(&self, bytes: &[u8]) -> bool {
        bytes.starts_with(&self.written) || bytes.starts_with(&self.earlier)
    }
}

/// An earlier version of a record's schema, with its single-object headers.
#[derive(Debug)]
pub struct WriterSchema {
    pub(crate) schema: Schema,
    pub(crate) headers: SingleObjectHeaders,
}

impl WriterSchema {
    pub(crate) fn new(schema: Schema) -> Self {
        WriterSchema {
            headers: SingleObjectHeaders::of(&schema),
            schema,
        }
    }
}

/// A Rust type that is written as one of the schemas in `schemas/`.
pub trait AvroRecord: Serialize + DeserializeOwned {
    /// The record name, e.g. `RawEvent`.
    const NAME: &'static str;
    /// The parsed schema.
    fn schema() -> &'static Schema;
    /// The single-object headers (`C3 01` + Rabin fingerprint), computed once: the
    /// fingerprint needs the schema's canonical form, far dearer than the datum itself.
    fn single_object_headers() -> &'static SingleObjectHeaders;
    /// Earlier versions of the schema, oldest first (`schemas/history/`).
    fn history() -> &'static [WriterSchema];
}

const SINGLE_OBJECT_MAGIC: [u8; 2] = [0xC3, 0x01];
const CONFLUENT_MAGIC: u8 = 0;

/// Encodes and decodes [`AvroRecord`]s in the configured wire format.
#[derive(Debug, Clone, Default)]
pub struct Codec {
    /// Registered schema ids by record name; empty means single-object encoding.
    registry_ids: HashMap<&'static str, u32>,
    /// Writer schemas of the other ids of each record's registry subject (earlier versions).
    registry_writers: HashMap<(&'static str, u32), Arc<Schema>>,
}

impl Codec {
    /// Single-object encoding, no registry.
    pub fn single_object() -> Self {
        Codec::default()
    }

    /// Confluent wire format with the given registered ids (record name -> id).
    pub fn with_registry_ids(registry_ids: HashMap<&'static str, u32>) -> Self {
        Codec {
            registry_ids,
            registry_writers: HashMap::new(),
        }
    }

    /// Adds the writer schema of registry id `id` for record `T` (an earlier version found
    /// in the registry), so records written with it decode.
    pub(crate) fn add_registry_writer<T: AvroRecord>(&mut self, id: u32, schema: Schema) {
        if self.registry_ids.get(T::NAME) != Some(&id) {
            self.registry_writers
                .insert((T::NAME, id), Arc::new(schema));
        }
    }

    pub fn encode<T: AvroRecord>(&self, record: &T) -> Result<Vec<u8>, SchemaError> {
        let err = |e: apache_avro::Error| SchemaError::Encode {
            record: T::NAME,
            reason: e.to_string(),
        };
        let mut out = Vec::with_capacity(256);
        match self.registry_ids.get(T::NAME) {
            Some(id) => {
                out.push(CONFLUENT_MAGIC);
                out.extend_from_slice(&id.to_be_bytes());
            }
            None => out.extend_from_slice(T::single_object_headers().written()),
        }
        // Serialized straight against the schema: going through `apache_avro::Value` first
        // (`to_value` + `to_avro_datum`) built and validated a tree per record, the dearest
        // step of the ingress path. The bytes are the same (tested below).
        apache_avro::write_avro_datum_ref(T::schema(), record, &mut out).map_err(err)?;
        Ok(out)
    }

    pub fn decode<T: AvroRecord>(&self, bytes: &[u8]) -> Result<T, SchemaError> {
        let fail = |reason: String| SchemaError::Decode {
            record: T::NAME,
            reason,
        };
        // The writer schema when it is not today's.
        let (writer, mut datum): (Option<&Schema>, &[u8]) = match bytes {
            [0xC3, 0x01, ..] if bytes.len() >= 10 => {
                let datum = &bytes[10..];
                if T::single_object_headers().frames(bytes) {
                    (None, datum)
                } else {
                    match T::history().iter().find(|w| w.headers.frames(bytes)) {
                        Some(w) => (Some(&w.schema), datum),
                        None => return Err(fail("unknown schema fingerprint".into())),
                    }
                }
            }
            [CONFLUENT_MAGIC, a, b, c, d, rest @ ..] => {
                let id = u32::from_be_bytes([*a, *b, *c, *d]);
                if self.registry_ids.get(T::NAME) == Some(&id) {
                    (None, rest)
                } else {
                    match self.registry_writers.get(&(T::NAME, id)) {
                        Some(w) => (Some(w.as_ref()), rest),
                        None => return Err(fail(format!("unknown schema id {id}"))),
                    }
                }
            }
            _ => return Err(fail("no Avro single-object or Confluent header".into())),
        };
        let value = match writer {
            None => apache_avro::from_avro_datum(T::schema(), &mut datum, None),
            Some(w) => apache_avro::from_avro_datum(w, &mut datum, Some(T::schema())),
        }
        .map_err(|e| fail(e.to_string()))?;
        if !datum.is_empty() {
            return Err(fail(format!("{} trailing bytes", datum.len())));
        }
        apache_avro::from_value(&value).map_err(|e| fail(e.to_string()))
    }
}

/// The specification's header: `C3 01`, then the CRC-64-AVRO (Rabin) fingerprint of the
/// schema's Parsing Canonical Form, little-endian. apache-avro computes the fingerprint; it
/// is given the schema with every primitive written in its simple form, which is what its
/// own canonical form misses (see [`SingleObjectHeaders`]).
pub(crate) fn single_object_header(schema: &Schema) -> Vec<u8> {
    let mut json = serde_json::to_value(schema).expect("a parsed schema serializes");
    simple_primitives(&mut json);
    let simple = Schema::parse(&json).expect("a schema stays valid with simple primitives");
    apache_avro_header(&simple)
}

/// The header apache-avro builds itself (what the relay wrote before).
fn apache_avro_header(schema: &Schema) -> Vec<u8> {
    let header = RabinFingerprintHeader::from_schema(schema).build_header();
    debug_assert_eq!(header[..2], SINGLE_OBJECT_MAGIC);
    header
}

/// Rewrites every primitive schema written as an object (`{"type": "long", ...}`) as its
/// name, as [PRIMITIVES] does after [STRIP] has removed its other attributes. A record's
/// field is an object with a `name`, never a primitive schema, so it is left alone.
fn simple_primitives(json: &mut serde_json::Value) {
    use serde_json::Value;
    const PRIMITIVES: [&str; 8] = [
        "null", "boolean", "int", "long", "float", "double", "bytes", "string",
    ];
    match json {
        Value::Object(map) => {
            let primitive = match map.get("type") {
                Some(Value::String(t)) if !map.contains_key("name") => {
                    PRIMITIVES.contains(&t.as_str()).then(|| t.clone())
                }
                _ => None,
            };
            match primitive {
                Some(t) => *json = Value::String(t),
                None => map.values_mut().for_each(simple_primitives),
            }
        }
        Value::Array(items) => items.iter_mut().for_each(simple_primitives),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw() -> RawEvent {
        RawEvent {
            event_id: "e-1".into(),
            event_type: "conversation:updated".into(),
            shape: Shape::Envelope,
            conversation_id: Some("c-1".into()),
            guest_id: None,
            event_time_ms: Some(1_700_000_000_000),
            received_at_ms: 1_700_000_000_123,
            payload: r#"{"eventType":"conversation:updated"}"#.into(),
            traceparent: None,
            topic_name: None,
            participant_id: None,
            eventbridge_id: None,
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
            RawEvent::single_object_headers().written(),
            single_object_header(RawEvent::schema())
        );
        assert_eq!(
            IdempotencyMark::single_object_headers().written(),
            single_object_header(IdempotencyMark::schema())
        );
        assert_ne!(
            RawEvent::single_object_headers().written(),
            EnrichedConversation::single_object_headers().written()
        );
    }

    /// The fingerprints other Avro implementations compute for `schemas/`: fastavro 1.13's
    /// `fingerprint(to_parsing_canonical_form(schema), "CRC-64-AVRO")`, hex of the header's
    /// eight bytes. The earlier column is what apache-avro's own canonical form gives (the
    /// header of `tests/fixtures/raw_event_v1.avro` is the v1 one).
    #[test]
    fn fingerprints_are_the_specifications() {
        let cases: [(&str, &str, Option<&str>); 6] = [
            (
                include_str!("../../schemas/raw_event.avsc"),
                "3221e87b978d0b5b",
                Some("f0c58980e16c65db"),
            ),
            (
                include_str!("../../schemas/history/raw_event.v2.avsc"),
                "22ec9cdd4a3ac482",
                None,
            ),
            (
                include_str!("../../schemas/history/raw_event.v1.avsc"),
                "fecc057ee51a1746",
                Some("13aa9e3b80053bcd"),
            ),
            (
                include_str!("../../schemas/idempotency_mark.avsc"),
                "ad6fbdc3e735a8c8",
                None,
            ),
            (
                include_str!("../../schemas/history/idempotency_mark.v1.avsc"),
                "fd42337f87c77040",
                None,
            ),
            (
                include_str!("../../schemas/enriched_conversation.avsc"),
                "261fad1aaa208ab0",
                None,
            ),
        ];
        for (text, spec, earlier) in cases {
            let schema = Schema::parse_str(text).unwrap();
            let headers = SingleObjectHeaders::of(&schema);
            assert_eq!(hex::encode(&headers.written()[2..]), spec, "{text}");
            if let Some(earlier) = earlier {
                assert_eq!(hex::encode(&apache_avro_header(&schema)[2..]), earlier);
            }
            assert_ne!(
                headers.written(),
                apache_avro_header(&schema),
                "every schema here has a logical type"
            );
        }
    }

    #[test]
    fn records_under_the_earlier_header_still_decode() {
        let codec = Codec::single_object();
        let bytes = codec.encode(&raw()).unwrap();
        assert!(bytes.starts_with(RawEvent::single_object_headers().written()));
        let mut earlier = apache_avro_header(RawEvent::schema());
        earlier.extend_from_slice(&bytes[10..]);
        assert_eq!(codec.decode::<RawEvent>(&earlier).unwrap(), raw());
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        let codec = Codec::single_object();
        for bytes in [&b""[..], b"{}", &[0xC3, 0x01, 1, 2], &[0, 0, 0, 0, 1, 2, 3]] {
            assert!(codec.decode::<RawEvent>(bytes).is_err());
        }
        // Cut inside the payload string: apache-avro fills trailing fields that have
        // defaults when the datum ends before them, so cutting only those decodes.
        let mut truncated = codec.encode(&raw()).unwrap();
        truncated.truncate(truncated.len() - 10);
        assert!(codec.decode::<RawEvent>(&truncated).is_err());
    }

    /// A `RawEvent` as the relay wrote it before schema v2: no
    /// `topic_name`, no `participant_id`.
    #[derive(Serialize)]
    struct RawEventV1 {
        event_id: String,
        event_type: String,
        shape: String,
        conversation_id: Option<String>,
        guest_id: Option<String>,
        event_time_ms: Option<i64>,
        received_at_ms: i64,
        payload: String,
        traceparent: Option<String>,
    }

    const V1_FIXTURE: &str = "tests/fixtures/raw_event_v1.avro";

    /// The committed fixture is exactly what the v1 schema writes for this record
    /// (`REGENERATE_FIXTURES=1` rewrites it), and today's code decodes it.
    #[test]
    fn a_record_written_with_schema_v1_decodes() {
        let v1 =
            Schema::parse_str(include_str!("../../schemas/history/raw_event.v1.avsc")).unwrap();
        let payload = r#"{"eventType":"conversation:updated","eventId":"evt-v1","timestamp":"2026-11-24T08:00:00.000Z","data":{"conversationId":"conv-v1","guestId":"guest-v1"}}"#;
        let record = RawEventV1 {
            event_id: "evt-v1".into(),
            event_type: "conversation:updated".into(),
            shape: "ENVELOPE".into(),
            conversation_id: Some("conv-v1".into()),
            guest_id: Some("guest-v1".into()),
            event_time_ms: Some(1_795_507_200_000),
            received_at_ms: 1_795_507_200_123,
            payload: payload.into(),
            traceparent: Some("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01".into()),
        };
        let datum =
            apache_avro::to_avro_datum(&v1, apache_avro::to_value(&record).unwrap()).unwrap();
        // Written by an earlier relay, so under apache-avro's own header.
        let mut bytes = apache_avro_header(&v1);
        bytes.extend_from_slice(&datum);
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(V1_FIXTURE);
        if std::env::var_os("REGENERATE_FIXTURES").is_some() {
            std::fs::write(&path, &bytes).unwrap();
        }
        assert_eq!(
            std::fs::read(&path).unwrap(),
            bytes,
            "{V1_FIXTURE} is the v1 encoding"
        );
        assert_ne!(
            &bytes[..10],
            RawEvent::single_object_headers().written(),
            "v1 has its own fingerprint"
        );

        let decoded: RawEvent = Codec::single_object().decode(&bytes).unwrap();
        assert_eq!(decoded.event_id, "evt-v1");
        assert_eq!(decoded.conversation_id.as_deref(), Some("conv-v1"));
        assert_eq!(decoded.guest_id.as_deref(), Some("guest-v1"));
        assert_eq!(decoded.event_time_ms, Some(1_795_507_200_000));
        assert_eq!(decoded.payload, payload);
        assert_eq!(decoded.topic_name, None, "new fields take their defaults");
        assert_eq!(decoded.participant_id, None);

        // In registry mode, an earlier id with the v1 schema decodes the same datum.
        let mut codec = Codec::with_registry_ids(HashMap::from([(RawEvent::NAME, 2)]));
        let mut framed = vec![0, 0, 0, 0, 1];
        framed.extend_from_slice(&datum);
        assert!(
            codec.decode::<RawEvent>(&framed).is_err(),
            "id 1 unknown yet"
        );
        codec.add_registry_writer::<RawEvent>(1, v1);
        assert_eq!(codec.decode::<RawEvent>(&framed).unwrap(), decoded);
    }

    /// An `IdempotencyMark` as the relay wrote it before schema v2: no `outcome`.
    #[derive(Serialize)]
    struct IdempotencyMarkV1 {
        handled_at_ms: i64,
        event_time_ms: Option<i64>,
        guest_id: Option<String>,
    }

    const MARK_V1_FIXTURE: &str = "tests/fixtures/idempotency_mark_v1.avro";

    /// A mark on the compacted topic from before `outcome` (the committed fixture is what
    /// the v1 schema writes; `REGENERATE_FIXTURES=1` rewrites it) decodes as a synced mark,
    /// by fingerprint and by an earlier registry id alike.
    #[test]
    fn an_idempotency_mark_written_with_schema_v1_decodes_as_synced() {
        let v1 = Schema::parse_str(include_str!(
            "../../schemas/history/idempotency_mark.v1.avsc"
        ))
        .unwrap();
        let record = IdempotencyMarkV1 {
            handled_at_ms: 1_795_507_200_123,
            event_time_ms: Some(1_795_507_200_000),
            guest_id: Some("guest-v1".into()),
        };
        let datum =
            apache_avro::to_avro_datum(&v1, apache_avro::to_value(&record).unwrap()).unwrap();
        // Written by an earlier relay, so under apache-avro's own header.
        let mut bytes = apache_avro_header(&v1);
        bytes.extend_from_slice(&datum);
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(MARK_V1_FIXTURE);
        if std::env::var_os("REGENERATE_FIXTURES").is_some() {
            std::fs::write(&path, &bytes).unwrap();
        }
        assert_eq!(
            std::fs::read(&path).unwrap(),
            bytes,
            "{MARK_V1_FIXTURE} is the v1 encoding"
        );
        assert_ne!(
            &bytes[..10],
            IdempotencyMark::single_object_headers().written(),
            "v1 has its own fingerprint"
        );
        let expected = IdempotencyMark {
            handled_at_ms: 1_795_507_200_123,
            event_time_ms: Some(1_795_507_200_000),
            guest_id: Some("guest-v1".into()),
            outcome: MarkOutcome::Synced,
        };
        let decoded: IdempotencyMark = Codec::single_object().decode(&bytes).unwrap();
        assert_eq!(decoded, expected);

        let mut codec = Codec::with_registry_ids(HashMap::from([(IdempotencyMark::NAME, 4)]));
        let mut framed = vec![0, 0, 0, 0, 3];
        framed.extend_from_slice(&datum);
        codec.add_registry_writer::<IdempotencyMark>(3, v1);
        assert_eq!(codec.decode::<IdempotencyMark>(&framed).unwrap(), expected);
    }

    #[test]
    fn a_dead_lettered_mark_round_trips() {
        let mark = IdempotencyMark {
            handled_at_ms: 5,
            event_time_ms: None,
            guest_id: None,
            outcome: MarkOutcome::DeadLettered,
        };
        for codec in [
            Codec::single_object(),
            Codec::with_registry_ids(HashMap::from([(IdempotencyMark::NAME, 4)])),
        ] {
            let bytes = codec.encode(&mark).unwrap();
            assert_eq!(codec.decode::<IdempotencyMark>(&bytes).unwrap(), mark);
        }
    }

    /// The direct serializer `encode` uses writes the bytes the `Value` route
    /// (`to_value` + the validating `to_avro_datum`) writes, for every record, every
    /// optional field set and unset, both mark outcomes and a nested array of records.
    fn same_datum_both_ways<T: AvroRecord>(record: &T) {
        let via_value =
            apache_avro::to_avro_datum(T::schema(), apache_avro::to_value(record).unwrap())
                .unwrap();
        let bytes = Codec::single_object().encode(record).unwrap();
        assert_eq!(&bytes[10..], via_value.as_slice(), "{}", T::NAME);
    }

    #[test]
    fn direct_encoding_matches_the_value_route() {
        same_datum_both_ways(&raw());
        same_datum_both_ways(&RawEvent {
            guest_id: Some("g".into()),
            traceparent: Some("00-abc-def-01".into()),
            topic_name: Some("v2.detail.events.conversation.c.attributes".into()),
            participant_id: Some("p".into()),
            eventbridge_id: Some("eb".into()),
            shape: Shape::EventBridge,
            payload: "é \u{1F600} \"x\"".into(),
            ..raw()
        });
        for outcome in MarkOutcome::ALL {
            same_datum_both_ways(&IdempotencyMark {
                handled_at_ms: -3,
                event_time_ms: Some(i64::MAX),
                guest_id: Some("g".into()),
                outcome,
            });
        }
        let participant = |id: &str| ConversationParticipant {
            id: id.into(),
            purpose: Some("customer".into()),
            name: None,
        };
        same_datum_both_ways(&EnrichedConversation {
            event_id: "e".into(),
            conversation_id: "c".into(),
            event_type: "conversation:created".into(),
            event_time_ms: None,
            enriched_at_ms: 5,
            start_time: None,
            end_time: Some("2026-01-01T00:00:00Z".into()),
            participants: vec![participant("a"), participant("b")],
            conversation_json: "{}".into(),
            event_payload: "{}".into(),
        });
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
