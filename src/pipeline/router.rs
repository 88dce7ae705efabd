//! Chooses the route of an event (DESIGN section 1): messaging `conversation:updated`
//! with a guest -> guest sync; `conversation:created` -> conversation enrichment; anything
//! else -> generic forward when `RELAY_FORWARD_URL` is set, else a counted skip.

use crate::schema::RawEvent;

/// What a worker does with an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    GuestSync,
    ConversationEnrich,
    Forward,
}

impl Route {
    /// The `route` label and `relay-route` header value.
    pub fn as_str(self) -> &'static str {
        match self {
            Route::GuestSync => "guest_sync",
            Route::ConversationEnrich => "conversation_enrich",
            Route::Forward => "forward",
        }
    }
}

/// The route, or the reason there is none.
pub fn route_for(event: &RawEvent, forwarding: bool) -> Result<Route, &'static str> {
    match event.event_type.as_str() {
        "conversation:updated" if event.guest_id.is_some() => Ok(Route::GuestSync),
        "conversation:created" if event.conversation_id.is_some() => Ok(Route::ConversationEnrich),
        _ if forwarding => Ok(Route::Forward),
        _ => Err("no_route"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(t: &str, guest: Option<&str>, conv: Option<&str>) -> RawEvent {
        RawEvent {
            event_id: "e".into(),
            event_type: t.into(),
            shape: "ENVELOPE".into(),
            conversation_id: conv.map(Into::into),
            guest_id: guest.map(Into::into),
            event_time_ms: None,
            received_at_ms: 0,
            payload: "{}".into(),
            traceparent: None,
            topic_name: None,
            participant_id: None,
        }
    }

    #[test]
    fn routes_by_type_and_ids() {
        assert_eq!(
            route_for(&event("conversation:updated", Some("g"), None), false),
            Ok(Route::GuestSync)
        );
        assert_eq!(
            route_for(&event("conversation:created", None, Some("c")), false),
            Ok(Route::ConversationEnrich)
        );
        assert_eq!(
            route_for(&event("conversation:updated", None, Some("c")), true),
            Ok(Route::Forward)
        );
        assert_eq!(
            route_for(&event("user:presence", None, None), true),
            Ok(Route::Forward)
        );
        assert_eq!(
            route_for(&event("user:presence", None, None), false),
            Err("no_route")
        );
    }
}
