//! What the routes read from an event: the payload, parsed once per event into an
//! [`EventView`] that the route table and every route handler share, and what that payload
//! says: the Genesys `eventBody` (EventBridge: `detail.eventBody`; notification:
//! `eventBody`; legacy envelope: `data`), and the customer a conversation object names.
//!
//! Invariant: nothing in the worker parses `RawEvent.payload` but [`EventView::new`].

use serde_json::{Map, Value};

use crate::schema::{RawEvent, Shape};

/// One event as the worker reads it: the decoded record and its payload, parsed once.
pub(crate) struct EventView<'a> {
    pub(crate) event: &'a RawEvent,
    /// The payload as JSON, or why it is not JSON.
    payload: Result<Value, String>,
}

impl<'a> EventView<'a> {
    pub(crate) fn new(event: &'a RawEvent) -> Self {
        let payload = serde_json::from_str(&event.payload).map_err(|e| e.to_string());
        EventView { event, payload }
    }

    /// The payload as delivered, or why it is not JSON.
    pub(crate) fn payload(&self) -> Result<&Value, &str> {
        self.payload.as_ref().map_err(String::as_str)
    }

    /// The event's body: the notification's `eventBody`, or the envelope's `data`.
    pub(crate) fn body(&self) -> Option<&Value> {
        let payload = self.payload.as_ref().ok()?;
        match self.event.shape {
            Shape::EventBridge => payload.get("detail")?.get("eventBody"),
            Shape::Notification => payload.get("eventBody"),
            Shape::Envelope => payload.get("data"),
        }
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn event(shape: Shape, payload: &str) -> RawEvent {
        RawEvent {
            event_id: "e".into(),
            event_type: "t".into(),
            shape,
            conversation_id: None,
            guest_id: None,
            event_time_ms: None,
            received_at_ms: 0,
            payload: payload.into(),
            traceparent: None,
            topic_name: None,
            participant_id: None,
            eventbridge_id: None,
        }
    }

    #[test]
    fn the_body_is_found_where_each_shape_puts_it() {
        let body = json!({"conversationId": "c"});
        let cases = [
            (Shape::EventBridge, json!({"detail": {"eventBody": body}})),
            (Shape::Notification, json!({"eventBody": body})),
            (Shape::Envelope, json!({"data": body})),
        ];
        for (shape, payload) in cases {
            let e = event(shape, &payload.to_string());
            let view = EventView::new(&e);
            assert_eq!(view.body(), Some(&body), "{shape:?}");
            assert_eq!(view.payload(), Ok(&payload));
        }
        let e = event(Shape::Notification, "{not json");
        let view = EventView::new(&e);
        assert_eq!(view.body(), None);
        assert!(view.payload().is_err());
    }
}
