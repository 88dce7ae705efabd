//! What the routes read from an event: the payload, parsed once per event into an
//! [`EventView`] that the route table and every route handler share, and what that payload
//! says: the Genesys `eventBody` (EventBridge: `detail.eventBody`; notification:
//! `eventBody`; legacy envelope: `data`), the typed conversation object a queue or user
//! conversation topic carries in it, and the customer the event names.
//!
//! Invariant: nothing in the worker parses `RawEvent.payload` but [`EventView::new`].

use serde_json::{Map, Value};

use crate::genesys::{Conversation, Participant};
use crate::schema::{RawEvent, Shape};

/// One event as the worker reads it: the decoded record and its payload, parsed once.
pub(crate) struct EventView<'a> {
    pub(crate) event: &'a RawEvent,
    /// The payload as JSON, or why it is not JSON.
    payload: Result<Value, String>,
    /// The body decoded as a conversation object, when it is one.
    conversation: Option<Conversation>,
}

impl<'a> EventView<'a> {
    pub(crate) fn new(event: &'a RawEvent) -> Self {
        let payload = serde_json::from_str(&event.payload).map_err(|e| e.to_string());
        let mut view = EventView {
            event,
            payload,
            conversation: None,
        };
        view.conversation = view.body().and_then(conversation_object);
        view
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

    /// Whether the body is shaped as a conversation object (it has `participants`), whether
    /// or not it decodes as one.
    pub(crate) fn body_is_conversation(&self) -> bool {
        self.body().is_some_and(|b| b.get("participants").is_some())
    }

    /// The body as a conversation object (queue and user conversation topics).
    pub(crate) fn conversation(&self) -> Option<&Conversation> {
        self.conversation.as_ref()
    }

    /// The attributes the event carries itself, with no Genesys call: an attributes detail
    /// event (`eventBody: {conversationId, participantId, attributes}`), or a conversation
    /// object whose customer has attributes.
    pub(crate) fn customer_in_event(&self) -> Option<Customer> {
        let body = self.body()?;
        if let Some(attributes) = body.get("attributes").and_then(Value::as_object) {
            return Some(Customer {
                participant_id: string(body, "participantId"),
                external_contact_id: None,
                attributes: attributes.clone(),
            });
        }
        self.conversation()?
            .customer()
            .map(Customer::from)
            .filter(|c| !c.attributes.is_empty())
    }

    /// The conversation id the body names: `conversationId`, or a conversation object's `id`.
    pub(crate) fn conversation_id_in_body(&self) -> Option<String> {
        string(self.body()?, "conversationId").or_else(|| {
            self.conversation()
                .map(|c| c.id.clone())
                .filter(|id| !id.is_empty())
        })
    }
}

/// `body` decoded as a conversation object, when it has `participants` and they decode.
pub(crate) fn conversation_object(body: &Value) -> Option<Conversation> {
    body.get("participants")?;
    Conversation::from_json(body.clone(), "").ok()
}

/// The Web Messaging customer as the guest sync needs it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Customer {
    pub(crate) participant_id: Option<String>,
    pub(crate) external_contact_id: Option<String>,
    pub(crate) attributes: Map<String, Value>,
}

impl From<&Participant> for Customer {
    fn from(p: &Participant) -> Self {
        Customer {
            participant_id: p.id().map(str::to_string),
            external_contact_id: p.external_contact_id.clone().filter(|x| !x.is_empty()),
            attributes: p.attributes.clone(),
        }
    }
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
