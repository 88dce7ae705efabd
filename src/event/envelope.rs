//! Turns one delivered body into a [`RawEvent`] (docs/connecting.md#what-the-ingress-accepts).
//! Three shapes:
//!
//! - the **Amazon EventBridge event** `{version, id, detail-type, source, account, time,
//!   region, resources, detail}` (AWS "event structure reference"); Genesys Cloud puts the
//!   notification in `detail`; EventBridge's own `id` (a UUID per EventBridge event) is kept
//!   as `eventbridge_id`, for tracing and for the idempotency key it gave before;
//! - the **Genesys notification** `{topicName, version, eventBody, metadata}` (Notifications
//!   API, Process Automation trigger -> Data Action).
//!
//! A notification's event id is the same on every path ([`super::id`]): SHA-256 of
//! `topicName` and the RFC 8785 canonical `eventBody`, so the same event delivered through
//! EventBridge, a Data Action and the WebSocket syncs once (`metadata.CorrelationId` is not
//! unique per event and is only kept in the payload). The other shapes:
//! - the **legacy envelope** `{eventType, eventId?, timestamp, data}` of the replaced seed
//!   services, and seed 002's bare conversation start `{conversationId, timestamp}`.
//!
//! Invariants: the same body always gives the same event id, type, key and time (the
//! `listen` source calls [`parse_event`] on each WebSocket message for that reason);
//! every text field written to the record is bounded ([`MAX_FIELD_BYTES`]), so a record is
//! never much larger than its body (the ingress's body limit counts on it); a bad body is an
//! [`EnvelopeError`] naming the field, never a panic.

use super::{id, topics};
use crate::schema::{RawEvent, Shape};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

/// Longest id, type, topic or traceparent the relay writes: Genesys ids are UUIDs and its
/// topics are under 120 characters, so 1 KiB is generous and bounds the record overhead.
pub const MAX_FIELD_BYTES: usize = 1024;

/// Event times later than receipt plus this are clamped to the receipt time.
pub const MAX_FUTURE_MS: i64 = 5 * 60 * 1000;

/// Why a body is not an event; answered as 400 with this text.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum EnvelopeError {
    #[error("body is not valid JSON: {0}")]
    Json(String),
    #[error("body must be a JSON object")]
    NotAnObject,
    #[error(
        "body is neither an EventBridge event {{id, detail-type, detail}}, a notification \
         {{topicName, eventBody}} nor an envelope {{eventType, data}}"
    )]
    UnknownShape,
    #[error("field {0} must be {1}")]
    WrongType(&'static str, &'static str),
    #[error("field {0} is longer than {MAX_FIELD_BYTES} bytes")]
    TooLong(&'static str),
}

/// Parses and checks `body`. `received_at_ms` and `traceparent` come from the request
/// (or, for the `listen` source, from the WebSocket message's arrival).
pub fn parse_event(
    body: &[u8],
    received_at_ms: i64,
    traceparent: Option<String>,
) -> Result<RawEvent, EnvelopeError> {
    let value: Value =
        serde_json::from_slice(body).map_err(|e| EnvelopeError::Json(e.to_string()))?;
    let obj = value.as_object().ok_or(EnvelopeError::NotAnObject)?;
    // serde_json only accepts valid UTF-8, so this cannot fail after parsing.
    let payload = std::str::from_utf8(body)
        .map_err(|e| EnvelopeError::Json(e.to_string()))?
        .to_string();
    // An over-long traceparent is dropped (it is a tracing hint), never a reason to refuse.
    let traceparent = traceparent.filter(|t| t.len() <= MAX_FIELD_BYTES);
    let mut event = if obj.contains_key("detail-type") || obj.contains_key("detail") {
        eventbridge(obj)?
    } else if obj.contains_key("topicName") || obj.contains_key("eventBody") {
        notification(obj, Shape::Notification)?
    } else if obj.contains_key("eventType") || obj.contains_key("data") {
        envelope(obj, body)?
    } else if obj.contains_key("conversationId") {
        conversation_start(obj, body)?
    } else {
        return Err(EnvelopeError::UnknownShape);
    };
    event.event_time_ms = event.event_time_ms.map(|t| clamp_future(t, received_at_ms));
    event.received_at_ms = received_at_ms;
    event.payload = payload;
    event.traceparent = traceparent;
    Ok(event)
}

/// An event with the fields every shape fills; `parse_event` adds the request's own.
fn event(
    event_id: String,
    event_type: String,
    shape: Shape,
    event_time_ms: Option<i64>,
) -> RawEvent {
    RawEvent {
        event_id,
        event_type,
        shape,
        conversation_id: None,
        guest_id: None,
        event_time_ms,
        received_at_ms: 0,
        payload: String::new(),
        traceparent: None,
        topic_name: None,
        participant_id: None,
        eventbridge_id: None,
    }
}

/// `{version, id, detail-type, source, ..., detail: <notification>}`.
fn eventbridge(obj: &Map<String, Value>) -> Result<RawEvent, EnvelopeError> {
    let id = bounded("id", required_str(obj, "id")?)?;
    required_str(obj, "detail-type")?;
    let detail = obj
        .get("detail")
        .and_then(Value::as_object)
        .ok_or(EnvelopeError::WrongType("detail", "an object"))?;
    let mut event = notification(detail, Shape::EventBridge)?;
    event.eventbridge_id = Some(id.to_string());
    if event.event_time_ms.is_none() {
        // `detail.timestamp` is when Genesys published the event; EventBridge's `time`
        // is the last resort.
        event.event_time_ms = time_ms(detail.get("timestamp"), "detail.timestamp")?
            .or(time_ms(obj.get("time"), "time")?);
    }
    Ok(event)
}

/// `{topicName, version, eventBody, metadata}`, alone or as an EventBridge `detail`.
fn notification(obj: &Map<String, Value>, shape: Shape) -> Result<RawEvent, EnvelopeError> {
    let (topic_field, body_field, time_field) = match shape {
        Shape::EventBridge => (
            "detail.topicName",
            "detail.eventBody",
            "detail.eventBody.eventTime",
        ),
        Shape::Notification | Shape::Envelope => ("topicName", "eventBody", "eventBody.eventTime"),
    };
    let topic_name = bounded(topic_field, required_str_at(obj, "topicName", topic_field)?)?;
    let body_value = obj
        .get("eventBody")
        .filter(|b| b.is_object())
        .ok_or(EnvelopeError::WrongType(body_field, "an object"))?;
    let info = topics::classify(topic_name);
    let event_id = id::notification_id(topic_name, body_value);
    let conversation_id = match str_at(body_value, &["conversationId"]) {
        Some(id) => Some(id),
        None if info.body_is_conversation => str_at(body_value, &["id"]),
        None => None,
    }
    .or(info.conversation_id);
    let mut event = event(
        event_id,
        info.event_type,
        shape,
        time_ms(body_value.get("eventTime"), time_field)?,
    );
    event.conversation_id = bounded_opt("conversationId", conversation_id)?;
    event.participant_id = bounded_opt(
        "eventBody.participantId",
        str_at(body_value, &["participantId"]),
    )?;
    event.topic_name = Some(topic_name.to_string());
    Ok(event)
}

/// The seed envelope `{eventType, eventId?, timestamp, data}`.
fn envelope(obj: &Map<String, Value>, body: &[u8]) -> Result<RawEvent, EnvelopeError> {
    let event_type = bounded("eventType", required_str(obj, "eventType")?)?;
    let data = obj
        .get("data")
        .ok_or(EnvelopeError::WrongType("data", "present"))?;
    if !data.is_object() {
        return Err(EnvelopeError::WrongType("data", "an object"));
    }
    let event_id = match optional_str(obj, "eventId")? {
        Some(id) => bounded("eventId", id)?.to_string(),
        None => body_hash(body),
    };
    let mut event = event(
        event_id,
        event_type.to_string(),
        Shape::Envelope,
        time_ms(obj.get("timestamp"), "timestamp")?,
    );
    // Seed 000 sends `data: {id, guest: {id}}` where `data.id` is the conversation id.
    let conversation_id = str_at(data, &["conversationId"])
        .or_else(|| str_at(data, &["conversation", "id"]))
        .or_else(|| str_at(data, &["id"]));
    event.conversation_id = bounded_opt("data.conversationId", conversation_id)?;
    event.guest_id = bounded_opt(
        "data.guestId",
        str_at(data, &["guestId"]).or_else(|| str_at(data, &["guest", "id"])),
    )?;
    event.participant_id = bounded_opt("data.participantId", str_at(data, &["participantId"]))?;
    Ok(event)
}

/// Seed 002's receiver took a bare `{conversationId, timestamp}` as a conversation start.
fn conversation_start(obj: &Map<String, Value>, body: &[u8]) -> Result<RawEvent, EnvelopeError> {
    let conversation_id = bounded("conversationId", required_str(obj, "conversationId")?)?;
    let mut event = event(
        body_hash(body),
        "conversation:created".into(),
        Shape::Envelope,
        time_ms(obj.get("timestamp"), "timestamp")?,
    );
    event.conversation_id = Some(conversation_id.to_string());
    Ok(event)
}

fn body_hash(body: &[u8]) -> String {
    hex::encode(Sha256::digest(body))
}

fn clamp_future(event_time_ms: i64, received_at_ms: i64) -> i64 {
    if event_time_ms > received_at_ms.saturating_add(MAX_FUTURE_MS) {
        received_at_ms
    } else {
        event_time_ms
    }
}

fn bounded<'a>(field: &'static str, value: &'a str) -> Result<&'a str, EnvelopeError> {
    if value.len() > MAX_FIELD_BYTES {
        return Err(EnvelopeError::TooLong(field));
    }
    Ok(value)
}

fn bounded_opt(
    field: &'static str,
    value: Option<String>,
) -> Result<Option<String>, EnvelopeError> {
    match value {
        Some(v) if v.len() > MAX_FIELD_BYTES => Err(EnvelopeError::TooLong(field)),
        other => Ok(other),
    }
}

fn required_str<'a>(
    obj: &'a Map<String, Value>,
    field: &'static str,
) -> Result<&'a str, EnvelopeError> {
    required_str_at(obj, field, field)
}

/// `obj[key]` as a non-empty string; errors name the field by its full path.
fn required_str_at<'a>(
    obj: &'a Map<String, Value>,
    key: &str,
    path: &'static str,
) -> Result<&'a str, EnvelopeError> {
    match obj.get(key) {
        Some(Value::String(s)) if !s.trim().is_empty() => Ok(s),
        _ => Err(EnvelopeError::WrongType(path, "a non-empty string")),
    }
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

/// Unix milliseconds (detail events' `eventTime`) or RFC 3339 text (`detail.timestamp`,
/// envelope `timestamp`, and the `eventTime` of some topics such as transcription). An
/// unparseable text or an out-of-range number gives no event time; a wrong JSON type is an
/// error.
fn time_ms(value: Option<&Value>, field: &'static str) -> Result<Option<i64>, EnvelopeError> {
    match value {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => Ok(n.as_i64()),
        Some(Value::String(s)) => Ok(humantime::parse_rfc3339_weak(s.trim_end_matches('Z'))
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .and_then(|d| i64::try_from(d.as_millis()).ok())),
        Some(_) => Err(EnvelopeError::WrongType(
            field,
            "Unix milliseconds or an RFC 3339 time",
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

/// The Kafka record key: the conversation id when the event has one, else the event id.
pub fn record_key(event: &RawEvent) -> &str {
    event.conversation_id.as_deref().unwrap_or(&event.event_id)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const CONV: &str = "3a7d6c2e-1111-4a4a-9b9b-000000000001";
    const NOW: i64 = 1_795_600_000_000;

    fn sha(parts: &[&str]) -> String {
        let mut h = Sha256::new();
        for p in parts {
            h.update(p.as_bytes());
        }
        hex::encode(h.finalize())
    }

    #[test]
    fn eventbridge_customer_start() {
        let body = format!(
            r#"{{"version":"0","id":"eb-1","detail-type":"v2.detail.events.conversation.{{id}}.customer.start","source":"aws.partner/genesys.com/cloud/org/relay","account":"123456789012","time":"2026-11-25T08:30:00Z","region":"us-east-1","resources":[],"detail":{{"topicName":"v2.detail.events.conversation.{CONV}.customer.start","version":"2","eventBody":{{"eventTime":1795595400123,"conversationId":"{CONV}","participantId":"p-1","mediaType":"MESSAGE"}},"metadata":{{"CorrelationId":"c"}},"timestamp":"2026-11-25T08:30:00.500Z"}}}}"#
        );
        let e = parse_event(body.as_bytes(), NOW, None).unwrap();
        assert_eq!(e.shape, Shape::EventBridge);
        assert_eq!(e.eventbridge_id.as_deref(), Some("eb-1"));
        let json: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(
            e.event_id,
            id::notification_id(
                &format!("v2.detail.events.conversation.{CONV}.customer.start"),
                &json["detail"]["eventBody"]
            ),
            "the notification's id, not EventBridge's"
        );
        assert_eq!(
            e.event_type,
            "v2.detail.events.conversation.{id}.customer.start"
        );
        assert_eq!(e.conversation_id.as_deref(), Some(CONV));
        assert_eq!(e.participant_id.as_deref(), Some("p-1"));
        assert_eq!(
            e.topic_name.as_deref(),
            Some(format!("v2.detail.events.conversation.{CONV}.customer.start").as_str())
        );
        assert_eq!(e.event_time_ms, Some(1_795_595_400_123));
        assert_eq!(record_key(&e), CONV);
        assert_eq!(e.payload, body);
    }

    #[test]
    fn eventbridge_time_falls_back_to_detail_timestamp() {
        let body = json!({"id":"eb-2","detail-type":"v2.routing.queues.{id}.conversations","detail":{
            "topicName":"v2.routing.queues.q1.conversations","eventBody":{"id":"conv-9","participants":[]},
            "timestamp":"2026-11-25T08:30:00.500Z"}});
        let e = parse_event(&serde_json::to_vec(&body).unwrap(), NOW, None).unwrap();
        assert_eq!(e.event_time_ms, Some(1_795_595_400_500));
        assert_eq!(
            e.conversation_id.as_deref(),
            Some("conv-9"),
            "a conversation object's id"
        );
        assert_eq!(e.event_type, "v2.routing.queues.{id}.conversations");
    }

    #[test]
    fn notification_id_hashes_topic_and_canonical_body() {
        let topic = format!("v2.detail.events.conversation.{CONV}.attributes");
        let raw_body = format!(
            r#"{{ "eventTime": 1795595400000, "conversationId": "{CONV}", "participantId": "p-2", "attributes": {{"cart_value": "42.5"}} }}"#
        );
        let body = format!(
            r#"{{"topicName":"{topic}","version":"2","eventBody":{raw_body},"metadata":{{"CorrelationId":"not-unique"}}}}"#
        );
        let e = parse_event(body.as_bytes(), NOW, None).unwrap();
        assert_eq!(e.shape, Shape::Notification);
        let canonical = format!(
            r#"{{"attributes":{{"cart_value":"42.5"}},"conversationId":"{CONV}","eventTime":1795595400000,"participantId":"p-2"}}"#
        );
        assert_eq!(
            e.event_id,
            sha(&[&topic, &canonical]),
            "the RFC 8785 form of eventBody"
        );
        assert_eq!(e.eventbridge_id, None);
        assert_eq!(
            e.event_type,
            "v2.detail.events.conversation.{id}.attributes"
        );
        assert_eq!(e.participant_id.as_deref(), Some("p-2"));
        assert_eq!(e.event_time_ms, Some(1_795_595_400_000));
        // Another CorrelationId, same event: same id.
        let again = body.replace("not-unique", "other");
        assert_eq!(
            parse_event(again.as_bytes(), NOW, None).unwrap().event_id,
            e.event_id
        );
    }

    /// One notification through the three paths, each formatted its own way: one id.
    #[test]
    fn one_notification_one_id_on_every_path() {
        let topic = format!("v2.detail.events.conversation.{CONV}.attributes");
        let websocket = format!(
            r#"{{"topicName":"{topic}","version":"2","eventBody":{{"eventTime":1795595400000,"conversationId":"{CONV}","participantId":"p-2","attributes":{{"cart_value":"42.5","n":1}}}},"metadata":{{"CorrelationId":"a"}}}}"#
        );
        let data_action = format!(
            "{{\"eventBody\": {{\"attributes\": {{\"n\": 1.0, \"cart_value\": \"4\\u0032.5\"}},\n  \"participantId\": \"p-2\", \"conversationId\": \"{CONV}\", \"eventTime\": 1795595400000}}, \"topicName\": \"{topic}\"}}"
        );
        let eventbridge = format!(
            r#"{{"version":"0","id":"eb-9","detail-type":"v2.detail.events.conversation.{{id}}.attributes","source":"aws.partner/genesys.com/cloud/org/relay","account":"1","time":"2026-11-25T08:30:00Z","region":"us-east-1","resources":[],"detail":{{"metadata":{{"CorrelationId":"b"}},"eventBody":{{"participantId":"p-2","eventTime":1.7955954e12,"attributes":{{"n":1,"cart_value":"42.5"}},"conversationId":"{CONV}"}},"version":"2","topicName":"{topic}","timestamp":"2026-11-25T08:30:00.500Z"}}}}"#
        );
        let ids: Vec<String> = [&websocket, &data_action, &eventbridge]
            .iter()
            .map(|b| parse_event(b.as_bytes(), NOW, None).unwrap().event_id)
            .collect();
        assert_eq!(ids[0], ids[1], "WebSocket and Data Action");
        assert_eq!(ids[0], ids[2], "WebSocket and EventBridge");
    }

    #[test]
    fn legacy_shapes_of_the_seeds() {
        // seed 000: data.id is the conversation.
        let e = parse_event(
            br#"{"eventType":"conversation:updated","timestamp":"2026-11-24T08:00:00.000Z","data":{"id":"conv-0","guest":{"id":"g-0"}}}"#,
            NOW,
            None,
        )
        .unwrap();
        assert_eq!(e.conversation_id.as_deref(), Some("conv-0"));
        assert_eq!(e.guest_id.as_deref(), Some("g-0"));
        assert_eq!(e.event_id.len(), 64);
        assert_eq!(e.event_time_ms, Some(1_795_507_200_000));
        // seed 004
        let e = parse_event(
            br#"{"eventType":"conversation:updated","eventId":"e-4","timestamp":"2026-11-24T08:00:00Z","data":{"conversationId":"c-4"}}"#,
            NOW,
            None,
        )
        .unwrap();
        assert_eq!((e.event_id.as_str(), record_key(&e)), ("e-4", "c-4"));
        // seed 002
        let body = br#"{"conversationId":"c-2","timestamp":"2026-11-24T08:00:00Z"}"#;
        let e = parse_event(body, NOW, None).unwrap();
        assert_eq!(e.event_type, "conversation:created");
        assert_eq!(e.conversation_id.as_deref(), Some("c-2"));
        assert_eq!(e.event_id, hex::encode(Sha256::digest(body)));
        assert_eq!(e.shape, Shape::Envelope);
    }

    #[test]
    fn future_times_are_clamped_to_receipt() {
        let in_4_min = NOW + 4 * 60 * 1000;
        let in_6_min = NOW + 6 * 60 * 1000;
        let body = |t: i64| {
            format!(
                r#"{{"topicName":"v2.detail.events.conversation.{CONV}.customer.end","eventBody":{{"eventTime":{t}}}}}"#
            )
        };
        let e = parse_event(body(in_4_min).as_bytes(), NOW, None).unwrap();
        assert_eq!(e.event_time_ms, Some(in_4_min));
        let e = parse_event(body(in_6_min).as_bytes(), NOW, None).unwrap();
        assert_eq!(e.event_time_ms, Some(NOW));
        let e = parse_event(body(i64::MAX).as_bytes(), i64::MAX, None).unwrap();
        assert_eq!(e.event_time_ms, Some(i64::MAX));
    }

    #[test]
    fn bad_bodies_are_rejected_with_a_reason() {
        let err = |b: &str| parse_event(b.as_bytes(), 0, None).unwrap_err().to_string();
        assert!(err("{not json").contains("not valid JSON"));
        assert_eq!(err("[1]"), "body must be a JSON object");
        assert!(err(r#"{"a":1}"#).contains("neither an EventBridge event"));
        assert_eq!(
            err(r#"{"eventType":5,"data":{}}"#),
            "field eventType must be a non-empty string"
        );
        assert_eq!(
            err(r#"{"eventType":"x","data":"s"}"#),
            "field data must be an object"
        );
        assert!(err(r#"{"eventType":"x","data":{},"timestamp":[]}"#).contains("timestamp"));
        assert_eq!(
            err(r#"{"topicName":"t","eventBody":1}"#),
            "field eventBody must be an object"
        );
        assert_eq!(
            err(r#"{"detail-type":"x","detail":{}}"#),
            "field id must be a non-empty string"
        );
        assert_eq!(
            err(r#"{"id":"e","detail":{}}"#),
            "field detail-type must be a non-empty string"
        );
        assert_eq!(
            err(r#"{"id":"e","detail-type":"x","detail":[]}"#),
            "field detail must be an object"
        );
        assert_eq!(
            err(r#"{"id":"e","detail-type":"x","detail":{"eventBody":{}}}"#),
            "field detail.topicName must be a non-empty string"
        );
        assert_eq!(
            err(r#"{"id":"e","detail-type":"x","detail":{"topicName":"t","eventBody":null}}"#),
            "field detail.eventBody must be an object"
        );
        assert!(err(
            r#"{"id":"e","detail-type":"x","detail":{"topicName":"t","eventBody":{"eventTime":{}}}}"#
        )
        .contains("detail.eventBody.eventTime"));
        assert_eq!(
            err(&format!(
                r#"{{"eventType":"x","eventId":"{}","data":{{}}}}"#,
                "i".repeat(2000)
            )),
            "field eventId is longer than 1024 bytes"
        );
        assert_eq!(
            err(r#"{"conversationId":5}"#),
            "field conversationId must be a non-empty string"
        );
    }
}
