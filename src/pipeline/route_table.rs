//! The route table (`RELAY_ROUTES`, then the defaults): which route handles an event,
//! first match wins. A pattern matches the event type (the Genesys topic with ids as
//! `{id}`, or a legacy `eventType`): `{id}` (any `{name}`) stands for one id (no dots),
//! `*` for any tail. No match: `forward` when `RELAY_FORWARD_URL` is set, else a counted
//! skip `no_route`.
//!
//! Defaults (docs/contract.md#routes):
//! - `v2.detail.events.conversation.{id}.attributes` -> `guest_sync`
//! - `v2.routing.queues.{id}.conversations*`, `v2.users.{id}.conversations*` ->
//!   `guest_sync`, only when the conversation object has a customer participant carrying
//!   attributes (else the next rule decides)
//! - `v2.detail.events.conversation.{id}.customer.start` -> `conversation_enrich`
//! - legacy `conversation:updated` -> `guest_sync`, `conversation:created` ->
//!   `conversation_enrich` (with a conversation id)

use serde_json::Value;

use super::event_view::EventView;
use super::outcome::SkipReason;

/// The default table, after any `RELAY_ROUTES` entries.
pub(crate) const DEFAULT_ROUTES: &[(&str, Target)] = &[
    (
        "v2.detail.events.conversation.{id}.attributes",
        Target::Route(Route::GuestSync),
    ),
    (
        "v2.routing.queues.{id}.conversations*",
        Target::Route(Route::GuestSync),
    ),
    (
        "v2.users.{id}.conversations*",
        Target::Route(Route::GuestSync),
    ),
    (
        "v2.detail.events.conversation.{id}.customer.start",
        Target::Route(Route::ConversationEnrich),
    ),
    ("conversation:updated", Target::Route(Route::GuestSync)),
    (
        "conversation:created",
        Target::Route(Route::ConversationEnrich),
    ),
];

/// What a worker does with an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Route {
    GuestSync,
    ConversationEnrich,
    Forward,
}

impl Route {
    pub(crate) const ALL: [Route; 3] =
        [Route::GuestSync, Route::ConversationEnrich, Route::Forward];

    /// The `route` label and `relay-route` header value.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Route::GuestSync => "guest_sync",
            Route::ConversationEnrich => "conversation_enrich",
            Route::Forward => "forward",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    Literal(String),
    Id,
    Tail,
}

/// A compiled pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Pattern(Vec<Token>);

impl Pattern {
    fn parse(text: &str) -> Pattern {
        let mut tokens = Vec::new();
        let mut literal = String::new();
        let mut chars = text.chars().peekable();
        while let Some(c) = chars.next() {
            let token = match c {
                '*' => Token::Tail,
                '{' if chars.clone().any(|c| c == '}') => {
                    for c in chars.by_ref() {
                        if c == '}' {
                            break;
                        }
                    }
                    Token::Id
                }
                c => {
                    literal.push(c);
                    continue;
                }
            };
            if !literal.is_empty() {
                tokens.push(Token::Literal(std::mem::take(&mut literal)));
            }
            tokens.push(token);
        }
        if !literal.is_empty() {
            tokens.push(Token::Literal(literal));
        }
        Pattern(tokens)
    }

    fn matches(&self, text: &str) -> bool {
        matches_from(&self.0, text)
    }
}

fn matches_from(tokens: &[Token], text: &str) -> bool {
    match tokens.split_first() {
        None => text.is_empty(),
        Some((Token::Literal(l), rest)) => text
            .strip_prefix(l.as_str())
            .is_some_and(|t| matches_from(rest, t)),
        Some((Token::Tail, _)) => true,
        Some((Token::Id, rest)) => {
            // One or more characters up to the next dot (or the end).
            let end = text.find('.').unwrap_or(text.len());
            (1..=end).any(|n| matches_from(rest, &text[n..]))
        }
    }
}

/// What a rule of the table leads to: a route, or a counted skip.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Target {
    Route(Route),
    Skip,
}

impl Target {
    /// Every target, in the order `RELAY_ROUTES` documents them.
    pub(crate) const ALL: [Target; 4] = [
        Target::Route(Route::GuestSync),
        Target::Route(Route::ConversationEnrich),
        Target::Route(Route::Forward),
        Target::Skip,
    ];

    /// The name `RELAY_ROUTES` uses.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Target::Route(route) => route.as_str(),
            Target::Skip => "skip",
        }
    }

    /// The target `name` stands for in `RELAY_ROUTES`.
    pub(crate) fn parse(name: &str) -> Option<Target> {
        Target::ALL.into_iter().find(|t| t.as_str() == name)
    }
}

#[derive(Debug, Clone)]
struct Rule {
    pattern: Pattern,
    target: Target,
}

/// The compiled route table.
#[derive(Debug, Clone)]
pub(crate) struct RouteTable {
    rules: Vec<Rule>,
    forwarding: bool,
}

impl RouteTable {
    /// `custom` (from `RELAY_ROUTES`, already validated) first, then [`DEFAULT_ROUTES`].
    pub(crate) fn new(custom: &[(String, Target)], forwarding: bool) -> Self {
        let defaults = DEFAULT_ROUTES.iter().map(|(p, t)| (*p, *t));
        let rules = custom
            .iter()
            .map(|(p, t)| (p.as_str(), *t))
            .chain(defaults)
            .map(|(pattern, target)| Rule {
                pattern: Pattern::parse(pattern),
                target,
            })
            .collect();
        RouteTable { rules, forwarding }
    }

    /// The route, or the reason there is none (a counted skip).
    pub(crate) fn route(&self, view: &EventView) -> Result<Route, SkipReason> {
        let event = view.event;
        for rule in &self.rules {
            if !rule.pattern.matches(&event.event_type) {
                continue;
            }
            match rule.target {
                Target::Skip => return Err(SkipReason::SkippedByRoute),
                Target::Route(route) if applies(route, view) => return Ok(route),
                Target::Route(_) => continue,
            }
        }
        if self.forwarding {
            Ok(Route::Forward)
        } else {
            Err(SkipReason::NoRoute)
        }
    }
}

/// The conditions of a matched rule: a conversation object syncs only with a customer
/// carrying attributes; any other guest sync needs attributes or a conversation to read
/// them from; an enrichment needs a conversation id. An event failing them falls through
/// to the next rule (in the end: forward or `no_route`), as the v1 router did.
fn applies(route: Route, view: &EventView) -> bool {
    let event = view.event;
    match route {
        Route::GuestSync => match view.body() {
            Some(_) if view.body_is_conversation() => view
                .conversation()
                .and_then(|c| c.customer())
                .is_some_and(|c| !c.attributes.is_empty()),
            Some(b) => {
                event.conversation_id.is_some()
                    || b.get("attributes").is_some_and(Value::is_object)
                    || b.get("conversationId").is_some_and(Value::is_string)
            }
            None => event.conversation_id.is_some(),
        },
        Route::ConversationEnrich => event.conversation_id.is_some(),
        Route::Forward => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::{RawEvent, Shape};
    use serde_json::json;

    fn event(t: &str, shape: Shape, payload: Value, conv: Option<&str>) -> RawEvent {
        RawEvent {
            event_id: "e".into(),
            event_type: t.into(),
            shape,
            conversation_id: conv.map(Into::into),
            guest_id: None,
            event_time_ms: None,
            received_at_ms: 0,
            payload: payload.to_string(),
            traceparent: None,
            topic_name: None,
            participant_id: None,
            eventbridge_id: None,
        }
    }

    impl RouteTable {
        fn route_of(&self, event: &RawEvent) -> Result<Route, SkipReason> {
            self.route(&EventView::new(event))
        }
    }

    fn legacy(t: &str, conv: Option<&str>) -> RawEvent {
        event(
            t,
            Shape::Envelope,
            json!({"eventType": t, "data": {}}),
            conv,
        )
    }

    #[test]
    fn patterns_match_ids_and_tails() {
        let p = Pattern::parse("v2.routing.queues.{id}.conversations*");
        assert!(p.matches("v2.routing.queues.{id}.conversations"));
        assert!(p.matches("v2.routing.queues.queue1.conversations.emails"));
        // An id never spans a dot.
        assert!(!p.matches(concat!("v2.routing.queues", ".q.1.conversations")));
        assert!(!p.matches("v2.routing.queues..conversations"));
        let p = Pattern::parse("v2.detail.events.conversation.{conversationId}.attributes");
        assert!(p.matches("v2.detail.events.conversation.{id}.attributes"));
        assert!(!p.matches(concat!(
            "v2.detail.events.conversation.{id}.attributes",
            ".x"
        )));
        assert!(Pattern::parse("*").matches("anything"));
        assert!(Pattern::parse("conversation:updated").matches("conversation:updated"));
    }

    #[test]
    fn defaults_route_real_topics_and_legacy_types() {
        let t = RouteTable::new(&[], false);
        let attrs = event(
            "v2.detail.events.conversation.{id}.attributes",
            Shape::EventBridge,
            json!({"detail": {"eventBody": {"attributes": {"a": "1"}}}}),
            Some("c"),
        );
        assert_eq!(t.route_of(&attrs), Ok(Route::GuestSync));
        let start = event(
            "v2.detail.events.conversation.{id}.customer.start",
            Shape::Notification,
            json!({"eventBody": {"conversationId": "c"}}),
            Some("c"),
        );
        assert_eq!(t.route_of(&start), Ok(Route::ConversationEnrich));
        assert_eq!(
            t.route_of(&legacy("conversation:updated", Some("c"))),
            Ok(Route::GuestSync)
        );
        assert_eq!(
            t.route_of(&legacy("conversation:created", Some("c"))),
            Ok(Route::ConversationEnrich)
        );
        assert_eq!(
            t.route_of(&legacy("conversation:created", None)),
            Err(SkipReason::NoRoute)
        );
        assert_eq!(
            t.route_of(&legacy("user:presence", None)),
            Err(SkipReason::NoRoute)
        );
        let t = RouteTable::new(&[], true);
        assert_eq!(
            t.route_of(&legacy("user:presence", None)),
            Ok(Route::Forward)
        );
        assert_eq!(
            t.route_of(&legacy("conversation:updated", None)),
            Ok(Route::Forward),
            "nothing to sync from: forwarded, as before"
        );
    }

    #[test]
    fn queue_conversations_sync_only_with_customer_attributes() {
        let t = RouteTable::new(&[], false);
        let queue = |participants: Value| {
            event(
                "v2.routing.queues.{id}.conversations",
                Shape::Notification,
                json!({"topicName": "v2.routing.queues.q.conversations", "eventBody": {"id": "c", "participants": participants}}),
                Some("c"),
            )
        };
        let with = queue(json!([{"purpose": "customer", "attributes": {"cart_value": "3"}}]));
        assert_eq!(t.route_of(&with), Ok(Route::GuestSync));
        let without = queue(json!([{"purpose": "agent", "attributes": {"x": "1"}}]));
        assert_eq!(t.route_of(&without), Err(SkipReason::NoRoute));
    }

    #[test]
    fn custom_routes_come_first_and_can_skip() {
        let custom = vec![
            ("conversation:updated".to_string(), Target::Skip),
            (
                "v2.users.{id}.presence".to_string(),
                Target::Route(Route::Forward),
            ),
        ];
        let t = RouteTable::new(&custom, false);
        assert_eq!(
            t.route_of(&legacy("conversation:updated", Some("c"))),
            Err(SkipReason::SkippedByRoute)
        );
        assert_eq!(
            t.route_of(&legacy("v2.users.{id}.presence", None)),
            Ok(Route::Forward)
        );
    }
}
