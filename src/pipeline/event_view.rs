//! What the routes read from an event's payload, whatever shape it arrived in: the
//! Genesys `eventBody` (EventBridge: `detail.eventBody`; notification: `eventBody`;
//! legacy envelope: `data`), and the customer a conversation object names.

use serde_json::{Map, Value};

use crate::schema::{RawEvent, Shape};

/// The event's body: the notification's `eventBody`, or the envelope's `data`.
pub(crate) fn event_body(event: &RawEvent) -> Option<Value> {
    let mut payload: Value = serde_json::from_str(&event.payload).ok()?;
    let body = match event.shape {
        Shape::EventBridge => payload.get_mut("detail")?.get_mut("eventBody")?.take(),
        Shape::Notification => payload.get_mut("eventBody")?.take(),
        Shape::Envelope => payload.get_mut("data")?.take(),
    };
    Some(body)
}

/// The Web Messaging customer as the guest sync needs it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Customer {
    pub(crate) participant_id: Option<String>,
    pub(crate) external_contact_id: Option<String>,
    pub(crate) attributes: Map<String, Value>,
}

/// The `purpose: "customer"` participant of a conversation object (an API answer, or the
/// `eventBody` of a queue/user conversation topic).
pub(crate) fn customer_in_conversation_object(conversation: &Value) -> Option<Customer> {
    let customer = conversation
        .get("participants")?
        .as_array()?
        .iter()
        .find(|p| p.get("purpose").and_then(Value::as_str) == Some("customer"))?;
    Some(Customer {
        participant_id: string(customer, "id"),
        external_contact_id: string(customer, "externalContactId"),
        attributes: customer
            .get("attributes")
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default(),
    })
}

/// The attributes an event carries itself, with no Genesys call: an attributes detail
/// event (`eventBody: {conversationId, participantId, attributes}`), or a conversation
/// object whose customer has attributes.
pub(crate) fn customer_in_event(body: &Value) -> Option<Customer> {
    if let Some(attributes) = body.get("attributes").and_then(Value::as_object) {
        return Some(Customer {
            participant_id: string(body, "participantId"),
            external_contact_id: None,
            attributes: attributes.clone(),
        });
    }
    customer_in_conversation_object(body).filter(|c| !c.attributes.is_empty())
}

/// The conversation id a body names: `conversationId`, or a conversation object's `id`.
pub(crate) fn conversation_id_in_body(body: &Value) -> Option<String> {
    string(body, "conversationId").or_else(|| {
        body.get("participants")
            .is_some()
            .then(|| string(body, "id"))
            .flatten()
    })
}

fn string(v: &Value, key: &str) -> Option<String> {
    v.get(key)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
}
