//! Turns a webhook body into a [`RawEvent`]: the relay's envelope
//! `{eventType, eventId?, timestamp, data}` or the Genesys notification
//! `{topicName, version, eventBody, metadata}` (DESIGN section 5).

use crate::schema::RawEvent;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

/// Why a body is not an event; answered as 400 with this text.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum EnvelopeError {
    #[error("body is not valid JSON: {0}")]
    Json(String),
    #[error("body must be a JSON object")]
    NotAnObject,
    #[error("body is neither an envelope {{eventType, data}} nor a notification {{topicName, eventBody}}")]
    UnknownShape,
    #[error("field {0} must be {1}")]
    WrongType(&'static str, &'static str),
}

/// Parses and checks `body`. `received_at_ms` and `traceparent` come from the request.
pub fn parse_event(
    body: &[u8],
    received_at_ms: i64,
    traceparent: Option<String>,
) -> Result<RawEvent, EnvelopeError> {
    let value: Value =
        serde_json::from_slice(body).map_err(|e| EnvelopeError::Json(e.to_string()))?;
    let obj = value.as_object().ok_or(EnvelopeError::NotAnObject)?;
    // serde_json only accepts valid UTF-8, so this cannot fail after parsing.
    let payload = String::from_utf8_lossy(body).into_owned();
    let body_hash = || hex::encode(Sha256::digest(body));

    if obj.contains_key("eventType") || obj.contains_key("data") {
        let event_type = required_str(obj, "eventType")?;
        let data = obj
            .get("data")
            .ok_or(EnvelopeError::WrongType("data", "present"))?;
        if !data.is_object() {
            return Err(EnvelopeError::WrongType("data", "an object"));
        }
        let event_id = optional_str(obj, "eventId")?
            .map(str::to_string)
            .unwrap_or_else(body_hash);
        Ok(RawEvent {
            event_id,
            event_type: event_type.to_string(),
            shape: "ENVELOPE".into(),
            conversation_id: conversation_id(data),
            guest_id: guest_id(data),
            event_time_ms: timestamp_ms(obj.get("timestamp"))?,
            received_at_ms,
            payload,
            traceparent,
            topic_name: None,
            participant_id: None,
        })
    } else if obj.contains_key("topicName") || obj.contains_key("eventBody") {
        let topic_name = required_str(obj, "topicName")?;
        let body_value = obj
            .get("eventBody")
            .ok_or(EnvelopeError::WrongType("eventBody", "present"))?;
        if !body_value.is_object() {
            return Err(EnvelopeError::WrongType("eventBody", "an object"));
        }
        let metadata = obj.get("metadata").and_then(Value::as_object);
        let event_id = metadata
            .and_then(|m| m.get("CorrelationId"))
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .unwrap_or_else(body_hash);
        let event_type = body_value
            .get("eventType")
            .and_then(Value::as_str)
            .map(str::to_string)
            .unwrap_or_else(|| generic_topic(topic_name));
        let conversation_id =
            conversation_id(body_value).or_else(|| topic_conversation_id(topic_name));
        Ok(RawEvent {
            event_id,
            event_type,
            shape: "NOTIFICATION".into(),
            conversation_id,
            guest_id: guest_id(body_value),
            event_time_ms: timestamp_ms(body_value.get("timestamp"))?,
            received_at_ms,
            payload,
            traceparent,
            topic_name: None,
            participant_id: None,
        })
    } else {
        Err(EnvelopeError::UnknownShape)
    }
}

fn required_str<'a>(
    obj: &'a Map<String, Value>,
    field: &'static str,
) -> Result<&'a str, EnvelopeError> {
    optional_str(obj, field)?
        .filter(|s| !s.trim().is_empty())
        .ok_or(EnvelopeError::WrongType(field, "a non-empty string"))
}

fn optional_str<'a>(
    obj: &'a Map<String, Value>,
    field: &'static str,
) -> Result<Option<&'a str>, EnvelopeError> {
    match obj.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(EnvelopeError::WrongType(field, "a string")),
    }
}

/// RFC 3339 text (`2026-11-24T08:00:00.000Z`) or Unix milliseconds. An unparseable text
/// is kept in the payload but gives no event time; a wrong JSON type is an error.
fn timestamp_ms(value: Option<&Value>) -> Result<Option<i64>, EnvelopeError> {
    match value {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => Ok(n.as_i64()),
        Some(Value::String(s)) => Ok(humantime::parse_rfc3339_weak(s.trim_end_matches('Z'))
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map(|d| d.as_millis() as i64)),
        Some(_) => Err(EnvelopeError::WrongType(
            "timestamp",
            "a string or a number",
        )),
    }
}

fn str_at(v: &Value, path: &[&str]) -> Option<String> {
    let mut cur = v;
    for p in path {
        cur = cur.get(p)?;
    }
    cur.as_str().filter(|s| !s.is_empty()).map(str::to_string)
}

fn conversation_id(data: &Value) -> Option<String> {
    str_at(data, &["conversationId"]).or_else(|| str_at(data, &["conversation", "id"]))
}

fn guest_id(data: &Value) -> Option<String> {
    str_at(data, &["guestId"]).or_else(|| str_at(data, &["guest", "id"]))
}

fn looks_like_id(segment: &str) -> bool {
    segment.len() >= 8 && segment.chars().any(|c| c.is_ascii_digit()) && segment.contains('-')
}

/// `v2.conversations.<uuid>.messages` -> `v2.conversations.{id}.messages`.
fn generic_topic(topic: &str) -> String {
    topic
        .split('.')
        .map(|s| if looks_like_id(s) { "{id}" } else { s })
        .collect::<Vec<_>>()
        .join(".")
}

/// The id segment after `conversations` or `conversation` in a notification topic.
fn topic_conversation_id(topic: &str) -> Option<String> {
    let segments: Vec<&str> = topic.split('.').collect();
    segments
        .windows(2)
        .find(|w| (w[0] == "conversations" || w[0] == "conversation") && looks_like_id(w[1]))
        .map(|w| w[1].to_string())
}

/// The Kafka record key: the conversation id when the event has one, else the event id.
pub fn record_key(event: &RawEvent) -> &str {
    event.conversation_id.as_deref().unwrap_or(&event.event_id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelope_fields_are_extracted() {
        let body = br#"{"eventType":"conversation:updated","eventId":"e-1","timestamp":"2026-11-24T08:00:00.000Z","data":{"conversationId":"c-1","guestId":"g-1"}}"#;
        let e = parse_event(body, 5, None).unwrap();
        assert_eq!(e.event_id, "e-1");
        assert_eq!(e.event_type, "conversation:updated");
        assert_eq!(e.conversation_id.as_deref(), Some("c-1"));
        assert_eq!(e.guest_id.as_deref(), Some("g-1"));
        assert_eq!(e.event_time_ms, Some(1_795_507_200_000));
        assert_eq!(record_key(&e), "c-1");
    }

    #[test]
    fn notification_uses_correlation_id_and_topic() {
        let body = br#"{"topicName":"v2.conversations.3a7d6c2e-1111-4a4a-9b9b-000000000001","version":"2","eventBody":{"id":"x"},"metadata":{"CorrelationId":"corr-9"}}"#;
        let e = parse_event(body, 5, None).unwrap();
        assert_eq!(e.event_id, "corr-9");
        assert_eq!(e.event_type, "v2.conversations.{id}");
        assert_eq!(
            e.conversation_id.as_deref(),
            Some("3a7d6c2e-1111-4a4a-9b9b-000000000001")
        );
        assert_eq!(e.shape, "NOTIFICATION");
    }

    #[test]
    fn identical_bodies_without_ids_share_an_id() {
        let body = br#"{"eventType":"custom","data":{}}"#;
        let a = parse_event(body, 1, None).unwrap();
        let b = parse_event(body, 2, None).unwrap();
        assert_eq!(a.event_id, b.event_id);
        assert_eq!(a.event_id.len(), 64);
        assert_eq!(record_key(&a), a.event_id);
    }

    #[test]
    fn bad_bodies_are_rejected_with_a_reason() {
        assert!(matches!(
            parse_event(b"{not json", 0, None),
            Err(EnvelopeError::Json(_))
        ));
        assert_eq!(
            parse_event(b"[1]", 0, None),
            Err(EnvelopeError::NotAnObject)
        );
        assert_eq!(
            parse_event(b"{\"a\":1}", 0, None),
            Err(EnvelopeError::UnknownShape)
        );
        assert!(parse_event(br#"{"eventType":5,"data":{}}"#, 0, None).is_err());
        assert!(parse_event(br#"{"eventType":"x","data":"s"}"#, 0, None).is_err());
        assert!(parse_event(br#"{"eventType":"x","data":{},"timestamp":[]}"#, 0, None).is_err());
        assert!(parse_event(br#"{"topicName":"t","eventBody":1}"#, 0, None).is_err());
    }
}
