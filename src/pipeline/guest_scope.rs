//! Which guests `guest_sync` writes (`RELAY_GUEST_SYNC_SCOPE`): by default only the
//! customer participant of a Web Messaging conversation, decided from the fields the event
//! itself carries, so an event that says nothing about its media costs no Genesys call.
//!
//! The fields read (Genesys Cloud Platform API SDK 257.1.0 models, e.g.
//! MyPureCloud/platform-client-sdk-python `build/PureCloudPlatformClientV2/models/`):
//! - a conversation object (queue/user conversation topics,
//!   `QueueConversationEventTopicParticipant`; the API's `Conversation`/`Participant`):
//!   `participants[].purpose` (`customer`) and the customer's media lists: `messages[]`
//!   with `type` (`webmessaging`, `sms`, `whatsapp`, ...), or `calls`, `callbacks`,
//!   `chats`, `cobrowsesessions`, `emails`, `screenshares`, `socialExpressions`, `videos`;
//! - the attributes detail event (`AttributeDetailEventTopicAttributeUpdateEvent`):
//!   `communications[].mediaType` (`VOICE`, `MESSAGE`, `EMAIL`, ...); it names the
//!   participant (`participantId`) but not its purpose, nor the message type;
//! - the customer start detail event (`CustomerStartDetailEventTopicCustomerStartEvent`):
//!   `mediaType` and `messageType` (`WEBMESSAGING`, `SMS`, ...).
//!
//! Invariant: a verdict of [`Verdict::Skip`] always rests on a field the body carries; a
//! body that does not tell is [`Verdict::Undecided`], never skipped.

use serde_json::Value;

use super::outcome::SkipReason;
use crate::genesys::Conversation;

/// `RELAY_GUEST_SYNC_SCOPE`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GuestScope {
    /// `web_messaging` (default): skip what the event (or a conversation fetched anyway)
    /// shows is not a Web Messaging customer; sync an event that does not tell.
    WebMessaging,
    /// `web_messaging_checked`: like `web_messaging`, but an event that does not tell is
    /// decided from the conversation (one GET through the cache).
    WebMessagingChecked,
    /// `all`: every media type (the behaviour before the scope existed).
    All,
}

/// What a body says about the guest it would sync.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// A Web Messaging customer.
    Sync,
    Skip(SkipReason),
    /// The body does not say (or not enough).
    Undecided,
}

/// What an event body says: a conversation object (`conversation`, the body decoded), an
/// attributes detail event, or a customer start detail event. `participant_id` is the
/// participant the event is about (an attributes event names it), if any.
pub(crate) fn judge(
    body: &Value,
    conversation: Option<&Conversation>,
    participant_id: Option<&str>,
) -> Verdict {
    if let Some(conversation) = conversation {
        return judge_conversation(conversation, participant_id);
    }
    if let Some(communications) = body.get("communications").and_then(Value::as_array) {
        let media: Vec<&str> = communications
            .iter()
            .filter_map(|c| c.get("mediaType").and_then(Value::as_str))
            .collect();
        return if media.is_empty() || media.iter().any(|m| m.eq_ignore_ascii_case("MESSAGE")) {
            // Messaging, but which kind of message the event does not say.
            Verdict::Undecided
        } else {
            Verdict::Skip(SkipReason::NotWebMessaging)
        };
    }
    if let Some(media) = body.get("mediaType").and_then(Value::as_str) {
        if !media.eq_ignore_ascii_case("MESSAGE") {
            return Verdict::Skip(SkipReason::NotWebMessaging);
        }
        return match body.get("messageType").and_then(Value::as_str) {
            Some(t) if t.eq_ignore_ascii_case("WEBMESSAGING") => Verdict::Sync,
            Some(_) => Verdict::Skip(SkipReason::NotWebMessaging),
            None => Verdict::Undecided,
        };
    }
    Verdict::Undecided
}

/// A conversation: its customer participant and that participant's media. When
/// `participant_id` is given, it must be the customer.
pub(crate) fn judge_conversation(
    conversation: &Conversation,
    participant_id: Option<&str>,
) -> Verdict {
    let named = participant_id.and_then(|id| conversation.participant(id));
    if named.is_some_and(|p| p.purpose.is_some() && !p.is_customer()) {
        return Verdict::Skip(SkipReason::NotCustomer);
    }
    let Some(customer) = conversation.customer() else {
        return Verdict::Undecided;
    };
    if !customer.messages.is_empty() {
        let types: Vec<&str> = customer
            .messages
            .iter()
            .filter_map(|m| m.kind.as_deref())
            .collect();
        return if types.iter().any(|t| t.eq_ignore_ascii_case("webmessaging")) {
            Verdict::Sync
        } else if types.is_empty() {
            Verdict::Undecided
        } else {
            Verdict::Skip(SkipReason::NotWebMessaging)
        };
    }
    if customer.has_other_media() {
        return Verdict::Skip(SkipReason::NotWebMessaging);
    }
    Verdict::Undecided
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::event_view::conversation_object;
    use serde_json::json;

    fn judge_json(body: &Value, participant_id: Option<&str>) -> Verdict {
        judge(body, conversation_object(body).as_ref(), participant_id)
    }

    fn conversation(customer: Value) -> Value {
        json!({"id": "c1", "participants": [
            {"id": "p-agent", "purpose": "agent", "calls": [{"state": "connected"}]},
            customer,
        ]})
    }

    #[test]
    fn conversation_objects_are_judged_by_the_customers_media() {
        let web = conversation(json!({"id": "p1", "purpose": "customer",
            "messages": [{"type": "webmessaging"}]}));
        assert_eq!(judge_json(&web, None), Verdict::Sync);
        let sms = conversation(json!({"id": "p1", "purpose": "customer",
            "messages": [{"type": "sms"}]}));
        assert_eq!(
            judge_json(&sms, None),
            Verdict::Skip(SkipReason::NotWebMessaging)
        );
        let voice = conversation(json!({"id": "p1", "purpose": "customer",
            "calls": [{"state": "connected"}]}));
        assert_eq!(
            judge_json(&voice, None),
            Verdict::Skip(SkipReason::NotWebMessaging)
        );
        let silent = conversation(json!({"id": "p1", "purpose": "customer"}));
        assert_eq!(judge_json(&silent, None), Verdict::Undecided);
        // The agent's call does not make a web messaging customer a voice one.
        assert_eq!(judge_json(&web, Some("p1")), Verdict::Sync);
        assert_eq!(
            judge_json(&web, Some("p-agent")),
            Verdict::Skip(SkipReason::NotCustomer)
        );
        // A participant the object does not list: decided by the customer.
        assert_eq!(judge_json(&web, Some("p-gone")), Verdict::Sync);
    }

    #[test]
    fn detail_events_are_judged_by_their_media_fields() {
        let attrs = |communications: Value| {
            json!({"conversationId": "c1", "participantId": "p1",
                   "attributes": {"a": "1"}, "communications": communications})
        };
        assert_eq!(
            judge_json(&attrs(json!([{"id": "m", "mediaType": "VOICE"}])), None),
            Verdict::Skip(SkipReason::NotWebMessaging)
        );
        assert_eq!(
            judge_json(&attrs(json!([{"id": "m", "mediaType": "MESSAGE"}])), None),
            Verdict::Undecided
        );
        assert_eq!(judge_json(&attrs(json!([])), None), Verdict::Undecided);
        let no_media = json!({"conversationId": "c1", "attributes": {"a": "1"}});
        assert_eq!(judge_json(&no_media, Some("p1")), Verdict::Undecided);
        let start = |media: &str, message: Option<&str>| {
            let mut body = json!({"conversationId": "c1", "mediaType": media});
            if let Some(m) = message {
                body["messageType"] = json!(m);
            }
            body
        };
        assert_eq!(
            judge_json(&start("MESSAGE", Some("WEBMESSAGING")), None),
            Verdict::Sync
        );
        assert_eq!(
            judge_json(&start("MESSAGE", Some("WHATSAPP")), None),
            Verdict::Skip(SkipReason::NotWebMessaging)
        );
        assert_eq!(
            judge_json(&start("VOICE", None), None),
            Verdict::Skip(SkipReason::NotWebMessaging)
        );
        assert_eq!(
            judge_json(&start("MESSAGE", None), None),
            Verdict::Undecided
        );
    }
}
