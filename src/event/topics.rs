//! Genesys Cloud notification topics: turns a concrete topic
//! (`v2.detail.events.conversation.<uuid>.customer.start`) into its event type, the topic
//! pattern with every id as `{id}`, and finds the conversation id a topic names.
//!
//! Invariant: a topic that matches one of the SDK's topic patterns gets exactly that
//! pattern as its type; only an unknown topic falls back to guessing which segments are ids.
//! The patterns are the 237 topics of the official SDK (`notification_topics.txt`, from
//! MyPureCloud/platform-client-sdk-python 257.1.0, `notificationMappings.json`).

use std::collections::HashMap;
use std::sync::LazyLock;

const TOPICS_TXT: &str = include_str!("notification_topics.txt");

/// One SDK topic pattern, split into segments; `None` is an `{id}` segment.
struct Pattern {
    text: &'static str,
    segments: Vec<Option<&'static str>>,
    /// How many segments are literal (the tie-break between matching patterns).
    literals: usize,
}

/// The patterns grouped by their number of segments (a topic only matches patterns of its
/// own length), each group in file order. Classifying runs once per ingested event, so a
/// topic is compared with a few dozen patterns instead of all of them.
static PATTERNS: LazyLock<HashMap<usize, Vec<Pattern>>> = LazyLock::new(|| {
    let mut by_len: HashMap<usize, Vec<Pattern>> = HashMap::new();
    for text in TOPICS_TXT
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
    {
        let segments: Vec<Option<&'static str>> = text
            .split('.')
            .map(|s| if s == "{id}" { None } else { Some(s) })
            .collect();
        let literals = segments.iter().filter(|s| s.is_some()).count();
        by_len.entry(segments.len()).or_default().push(Pattern {
            text,
            segments,
            literals,
        });
    }
    by_len
});

/// Media sub-topics of the queue and user conversation topics, whose `eventBody` is a
/// conversation object (`id`, `participants[]`): the SDK models
/// `QueueConversationEventTopicConversation`, `QueueConversationCallEventTopicCallConversation`, ...
const CONVERSATION_OBJECT_MEDIA: &[&str] = &[
    "callbacks",
    "calls",
    "chats",
    "cobrowseSessions",
    "emails",
    "messages",
    "screenshares",
    "socialexpressions",
    "videos",
];

/// What a concrete topic says about its event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TopicInfo {
    /// The topic with its ids as `{id}`: the event type.
    pub(crate) event_type: String,
    /// The id segment after `conversation` / `conversations`, when the topic has one.
    pub(crate) conversation_id: Option<String>,
    /// Whether `eventBody` is a conversation object (queue and user conversation topics).
    pub(crate) body_is_conversation: bool,
}

/// Classifies `topic` (a non-empty topic name from a notification).
pub(crate) fn classify(topic: &str) -> TopicInfo {
    let segments: Vec<&str> = topic.split('.').collect();
    let best = PATTERNS
        .get(&segments.len())
        .into_iter()
        .flatten()
        .filter(|p| {
            p.segments
                .iter()
                .zip(&segments)
                .all(|(want, got)| want.is_none_or(|w| w == *got))
        })
        // The most literal segments win: `v2.users.{id}.conversations` over a pattern
        // made mostly of ids.
        .max_by_key(|p| p.literals);
    let is_id: Vec<bool> = match best {
        Some(p) => p.segments.iter().map(Option::is_none).collect(),
        None => segments.iter().map(|s| looks_like_id(s)).collect(),
    };
    let event_type = match best {
        Some(p) => p.text.to_string(),
        None => segments
            .iter()
            .zip(&is_id)
            .map(|(s, id)| if *id { "{id}" } else { s })
            .collect::<Vec<_>>()
            .join("."),
    };
    let conversation_id = segments
        .windows(2)
        .zip(is_id.windows(2))
        // A Data Action template may send the pattern itself (`...conversation.{id}...`):
        // that placeholder is no conversation id.
        .find(|(w, ids)| {
            (w[0] == "conversation" || w[0] == "conversations")
                && !ids[0]
                && ids[1]
                && w[1] != "{id}"
        })
        .map(|(w, _)| w[1].to_string());
    TopicInfo {
        body_is_conversation: best.is_some_and(|p| carries_conversation_object(p.text)),
        event_type,
        conversation_id,
    }
}

/// `v2.routing.queues.{id}.conversations[.media]` and `v2.users.{id}.conversations[.media]`.
fn carries_conversation_object(pattern: &str) -> bool {
    let rest = pattern
        .strip_prefix("v2.routing.queues.{id}.conversations")
        .or_else(|| pattern.strip_prefix("v2.users.{id}.conversations"));
    match rest {
        Some("") => true,
        Some(media) => media
            .strip_prefix('.')
            .is_some_and(|m| CONVERSATION_OBJECT_MEDIA.contains(&m)),
        None => false,
    }
}

/// For topics outside the SDK list: Genesys ids are UUIDs, so a segment with digits and
/// dashes of some length is taken for an id.
fn looks_like_id(segment: &str) -> bool {
    segment.len() >= 8 && segment.chars().any(|c| c.is_ascii_digit()) && segment.contains('-')
}

#[cfg(test)]
mod tests {
    use super::*;

    const C: &str = "3a7d6c2e-1111-4a4a-9b9b-000000000001";

    #[test]
    fn the_sdk_list_is_loaded() {
        assert_eq!(PATTERNS.values().map(Vec::len).sum::<usize>(), 237);
    }

    #[test]
    fn detail_events_keep_their_pattern_and_conversation() {
        let t = classify(&format!("v2.detail.events.conversation.{C}.customer.start"));
        assert_eq!(
            t.event_type,
            "v2.detail.events.conversation.{id}.customer.start"
        );
        assert_eq!(t.conversation_id.as_deref(), Some(C));
        assert!(!t.body_is_conversation);
        let t = classify(&format!("v2.detail.events.conversation.{C}.attributes"));
        assert_eq!(
            t.event_type,
            "v2.detail.events.conversation.{id}.attributes"
        );
    }

    #[test]
    fn ids_that_do_not_look_like_uuids_are_still_ids() {
        let t = classify("v2.detail.events.conversation.abc.customer.start");
        assert_eq!(
            t.event_type,
            "v2.detail.events.conversation.{id}.customer.start"
        );
        assert_eq!(t.conversation_id.as_deref(), Some("abc"));
    }

    #[test]
    fn queue_and_user_topics_carry_conversation_objects_not_conversation_ids() {
        let q = classify("v2.routing.queues.q1.conversations");
        assert_eq!(q.event_type, "v2.routing.queues.{id}.conversations");
        assert!(q.body_is_conversation);
        assert_eq!(q.conversation_id, None);
        let u = classify("v2.users.u1.conversations.messages");
        assert_eq!(u.event_type, "v2.users.{id}.conversations.messages");
        assert!(u.body_is_conversation);
        assert_eq!(u.conversation_id, None, "the id in a user topic is a user");
        let s = classify("v2.users.u1.conversations.summaries");
        assert!(!s.body_is_conversation);
        let r = classify(&format!("v2.users.u1.conversations.{C}.recordings"));
        assert_eq!(r.event_type, "v2.users.{id}.conversations.{id}.recordings");
        assert_eq!(r.conversation_id.as_deref(), Some(C));
    }

    #[test]
    fn a_pattern_sent_as_topic_names_no_conversation() {
        let t = classify("v2.detail.events.conversation.{id}.attributes");
        assert_eq!(
            t.event_type,
            "v2.detail.events.conversation.{id}.attributes"
        );
        assert_eq!(t.conversation_id, None);
    }

    #[test]
    fn literal_topics_and_unknown_topics() {
        let t = classify("v2.system.socket_closing");
        assert_eq!(t.event_type, "v2.system.socket_closing");
        // Deliberately not a Genesys topic: the fallback for topics outside the SDK list.
        let t = classify(&format!("v2.future.conversations.{C}.things"));
        assert_eq!(t.event_type, "v2.future.conversations.{id}.things");
        assert_eq!(t.conversation_id.as_deref(), Some(C));
    }
}
