//! Rust types of the Avro schemas in `schemas/`, which are compiled in, together with the
//! earlier versions of each schema (`schemas/history/`), kept so that records written by an
//! earlier relay still decode (their single-object fingerprint names the writer schema).

use super::{AvroRecord, SingleObjectHeaders, WriterSchema};
use apache_avro::Schema;
use serde::{Deserialize, Serialize};
use std::sync::LazyLock;

macro_rules! avro_record {
    ($ty:ident, $file:literal) => {
        avro_record!($ty, $file, []);
    };
    ($ty:ident, $file:literal, [$($old:literal),*]) => {
        impl AvroRecord for $ty {
            fn history() -> &'static [WriterSchema] {
                static HISTORY: LazyLock<Vec<WriterSchema>> = LazyLock::new(|| {
                    vec![$(WriterSchema::new(
                        Schema::parse_str(include_str!(concat!("../../schemas/history/", $old)))
                            .expect(concat!("schemas/history/", $old, " is valid Avro")),
                    )),*]
                });
                &HISTORY
            }
            const NAME: &'static str = stringify!($ty);
            fn schema() -> &'static Schema {
                static SCHEMA: LazyLock<Schema> = LazyLock::new(|| {
                    Schema::parse_str(include_str!(concat!("../../schemas/", $file)))
                        .expect(concat!("schemas/", $file, " is valid Avro"))
                });
                &SCHEMA
            }
            fn single_object_headers() -> &'static SingleObjectHeaders {
                static HEADERS: LazyLock<SingleObjectHeaders> =
                    LazyLock::new(|| SingleObjectHeaders::of(<$ty as AvroRecord>::schema()));
                &HEADERS
            }
        }
    };
}

/// The delivery shape of a [`RawEvent`]. The Avro field stays a string (`as_str`), so
/// records written before the enum keep decoding and the schema is unchanged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Shape {
    /// An Amazon EventBridge event; the notification is its `detail`.
    EventBridge,
    /// A Genesys notification `{topicName, eventBody}` (Data Action, WebSocket).
    Notification,
    /// The legacy envelope `{eventType, data}` (and seed 002's bare conversation start).
    Envelope,
}

impl Shape {
    pub const ALL: [Shape; 3] = [Shape::EventBridge, Shape::Notification, Shape::Envelope];

    /// The name written to the record.
    pub const fn as_str(self) -> &'static str {
        match self {
            Shape::EventBridge => "EVENTBRIDGE",
            Shape::Notification => "NOTIFICATION",
            Shape::Envelope => "ENVELOPE",
        }
    }
}

impl Serialize for Shape {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Shape {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let name = String::deserialize(d)?;
        Shape::ALL
            .into_iter()
            .find(|s| s.as_str() == name)
            .ok_or_else(|| serde::de::Error::custom(format!("unknown shape {name:?}")))
    }
}

/// One webhook delivery as accepted by the ingress (`genesys.events.raw`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RawEvent {
    pub event_id: String,
    pub event_type: String,
    /// How the event was delivered; a string on the wire (schema compatibility).
    pub shape: Shape,
    pub conversation_id: Option<String>,
    pub guest_id: Option<String>,
    pub event_time_ms: Option<i64>,
    pub received_at_ms: i64,
    /// The JSON body exactly as delivered.
    pub payload: String,
    pub traceparent: Option<String>,
    /// The Genesys topic with its ids (EventBridge and notification shapes). Added in schema
    /// v2 with a default, so v1 records still decode.
    #[serde(default)]
    pub topic_name: Option<String>,
    /// `eventBody.participantId` when the event names one (schema v2).
    #[serde(default)]
    pub participant_id: Option<String>,
    /// EventBridge's own `id` (EVENTBRIDGE shape, schema v3). Before v3 it was the event
    /// id of an EventBridge event, so the worker also checks the idempotency key it gives.
    #[serde(default)]
    pub eventbridge_id: Option<String>,
}
// v1: the schema before `topic_name` and `participant_id`; v2: before `eventbridge_id`.
// Still readable because records written with them can sit on retry and dead-letter topics.
avro_record!(
    RawEvent,
    "raw_event.avsc",
    ["raw_event.v1.avsc", "raw_event.v2.avsc"]
);

/// One participant of an [`EnrichedConversation`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConversationParticipant {
    pub(crate) id: String,
    pub purpose: Option<String>,
    pub(crate) name: Option<String>,
}

/// A `conversation:created` event joined with the API's conversation
/// (`genesys.conversations.enriched`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EnrichedConversation {
    pub event_id: String,
    pub conversation_id: String,
    pub(crate) event_type: String,
    pub(crate) event_time_ms: Option<i64>,
    pub(crate) enriched_at_ms: i64,
    pub(crate) start_time: Option<String>,
    pub(crate) end_time: Option<String>,
    pub participants: Vec<ConversationParticipant>,
    pub conversation_json: String,
    pub(crate) event_payload: String,
}
avro_record!(EnrichedConversation, "enriched_conversation.avsc");

/// Value on the compacted idempotency topic.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IdempotencyMark {
    pub handled_at_ms: i64,
    pub event_time_ms: Option<i64>,
    /// Set for guest syncs: the CMS entry written (conversation, participant or external
    /// contact id, per `RELAY_CMS_ENTRY_KEY`); feeds the stale-event guard per entry. The
    /// field keeps its v1 name so marks already on the topic still decode.
    pub guest_id: Option<String>,
    /// The event's terminal outcome on its route (schema v2, a string on the wire with
    /// default `synced`: every mark written before v2 is a synced mark).
    #[serde(default)]
    pub outcome: MarkOutcome,
}
// v1: the schema before `outcome`. Still readable because the compacted topic keeps the
// marks an earlier relay wrote for one TTL.
avro_record!(
    IdempotencyMark,
    "idempotency_mark.avsc",
    ["idempotency_mark.v1.avsc"]
);

/// The terminal outcome an [`IdempotencyMark`] records for its key. A synced mark is the
/// stronger one: it supersedes a dead-lettered mark of the same key, never the reverse.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum MarkOutcome {
    /// The event reached its sink (or was forwarded / enriched).
    #[default]
    Synced,
    /// The event's dead letter was acknowledged by Kafka.
    DeadLettered,
}

impl MarkOutcome {
    pub const ALL: [MarkOutcome; 2] = [MarkOutcome::Synced, MarkOutcome::DeadLettered];

    /// The name written to the record.
    pub const fn as_str(self) -> &'static str {
        match self {
            MarkOutcome::Synced => "synced",
            MarkOutcome::DeadLettered => "dead_lettered",
        }
    }
}

impl Serialize for MarkOutcome {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for MarkOutcome {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let name = String::deserialize(d)?;
        MarkOutcome::ALL
            .into_iter()
            .find(|o| o.as_str() == name)
            .ok_or_else(|| serde::de::Error::custom(format!("unknown mark outcome {name:?}")))
    }
}
