//! Writing one record (value bytes and headers) to the raw topic: the one function the
//! ingress, `listen` and `dlq replay` share, so a record on the raw topic always carries
//! the same headers however it got there.
//!
//! Invariant: a write returns only after the broker acknowledged it (`acks=all`) or with
//! the producer's error; what to do on an error is the caller's policy, never decided here.

use super::envelope::record_key;
use crate::kafka::{headers, EventProducer, ProduceError};
use crate::schema::{Codec, RawEvent, SchemaError};
use std::sync::Arc;

/// One record for the raw topic: key, value bytes and headers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawRecord {
    pub key: String,
    pub value: Vec<u8>,
    headers: Vec<(&'static str, String)>,
}

impl RawRecord {
    /// An event as the ingress and `listen` write it: keyed by [`record_key`], with
    /// `relay-event-id`, the trace context, and EventBridge's own `id` for tracing.
    pub fn of_event(event: &RawEvent, codec: &Codec) -> Result<Self, SchemaError> {
        let value = codec.encode(event)?;
        let mut headers = vec![(headers::EVENT_ID, event.event_id.clone())];
        if let Some(tp) = &event.traceparent {
            headers.push((headers::TRACEPARENT, tp.clone()));
        }
        if let Some(id) = &event.eventbridge_id {
            headers.push((headers::EVENTBRIDGE_ID, id.clone()));
        }
        Ok(RawRecord {
            key: record_key(event).to_string(),
            value,
            headers,
        })
    }

    /// Bytes already encoded (a dead letter being replayed), written unchanged.
    pub fn republished(key: String, value: Vec<u8>, headers: Vec<(&'static str, String)>) -> Self {
        RawRecord {
            key,
            value,
            headers,
        }
    }

    /// The value of header `name`, if the record has it.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Writes `record` to `topic` and waits for the acknowledgement: (partition, offset).
pub async fn write_raw(
    producer: &EventProducer,
    topic: &str,
    record: &RawRecord,
) -> Result<(i32, i64), ProduceError> {
    let headers: Vec<(&str, &str)> = record
        .headers
        .iter()
        .map(|(k, v)| (*k, v.as_str()))
        .collect();
    producer
        .send(topic, &record.key, &record.value, &headers)
        .await
}

/// Where events are written: the raw topic, through the shared producer and codec.
#[derive(Clone)]
pub struct RawTopic {
    pub producer: Arc<EventProducer>,
    pub codec: Codec,
    pub topic: String,
}

impl RawTopic {
    /// The record `event` becomes.
    pub fn record(&self, event: &RawEvent) -> Result<RawRecord, SchemaError> {
        RawRecord::of_event(event, &self.codec)
    }

    /// Writes one record; see [`write_raw`].
    pub async fn write(&self, record: &RawRecord) -> Result<(i32, i64), ProduceError> {
        write_raw(&self.producer, &self.topic, record).await
    }
}
