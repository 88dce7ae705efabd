//! The Genesys Cloud notification topics the simulator knows, and how a concrete topic
//! (`v2.routing.queues.<uuid>.conversations`) matches its pattern
//! (`v2.routing.queues.{id}.conversations`).
//!
//! Invariant: a topic is known only if it matches one of the 237 patterns of the official
//! Python SDK's `notificationMappings.json` (257.1.0, copied to `notification_topics.txt`),
//! where `{id}` stands for exactly one dot-free segment. The same list serves
//! `GET /api/v2/processautomation/triggers/topics` (the topics a trigger may use: "Valid
//! topics can be found at /processautomation/triggers/topics", SDK `CreateTriggerRequest`).

use std::sync::OnceLock;

const LIST: &str = include_str!("notification_topics.txt");

/// Every topic pattern, in the file's (sorted) order.
pub(crate) fn patterns() -> &'static [&'static str] {
    static PATTERNS: OnceLock<Vec<&'static str>> = OnceLock::new();
    PATTERNS.get_or_init(|| {
        LIST.lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .collect()
    })
}

/// Whether `pattern` is one of the known patterns (a trigger's `topicName`).
pub(crate) fn is_pattern(pattern: &str) -> bool {
    patterns().contains(&pattern)
}

/// Whether `topic` carries a placeholder (`{id}`, `{userId}`, ...) instead of an id.
pub(crate) fn has_placeholder(topic: &str) -> bool {
    topic.contains('{') || topic.contains('}')
}

/// The pattern a concrete topic matches, with the ids in the order they appear, each with
/// the segment before it (`queues`, `conversation`, ...), which names the resource.
pub(crate) fn resolve(topic: &str) -> Option<(&'static str, Vec<(String, String)>)> {
    let segs: Vec<&str> = topic.split('.').collect();
    patterns().iter().find_map(|pattern| {
        let pat: Vec<&str> = pattern.split('.').collect();
        if pat.len() != segs.len() {
            return None;
        }
        let mut ids = Vec::new();
        for (i, (p, s)) in pat.iter().zip(&segs).enumerate() {
            if *p == "{id}" {
                if s.is_empty() {
                    return None;
                }
                let before = if i > 0 { pat[i - 1] } else { "" };
                ids.push((before.to_string(), (*s).to_string()));
            } else if p != s {
                return None;
            }
        }
        Some((*pattern, ids))
    })
}

/// Whether a concrete topic is an instance of `pattern` (how a trigger picks its events).
pub(crate) fn matches(pattern: &str, topic: &str) -> bool {
    let pat = pattern.split('.');
    let segs = topic.split('.');
    pat.clone().count() == segs.clone().count()
        && pat
            .zip(segs)
            .all(|(p, s)| (p == "{id}" && !s.is_empty()) || p == s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sdk_list_is_loaded_and_resolves_ids() {
        assert_eq!(patterns().len(), 237);
        assert!(is_pattern(
            "v2.detail.events.conversation.{id}.customer.start"
        ));
        assert!(!is_pattern(
            "v2.detail.events.conversation.{id}.customer.strat"
        ));
        let (pattern, ids) = resolve("v2.routing.queues.q-1.conversations").unwrap_or_default();
        assert_eq!(pattern, "v2.routing.queues.{id}.conversations");
        assert_eq!(ids, vec![("queues".to_string(), "q-1".to_string())]);
        assert!(resolve("v2.no.such.topic").is_none());
        assert!(has_placeholder("v2.routing.queues.{id}.conversations"));
        assert!(matches(
            "v2.detail.events.conversation.{id}.attributes",
            "v2.detail.events.conversation.c-1.attributes"
        ));
        assert!(!matches(
            "v2.detail.events.conversation.{id}.attributes",
            "v2.detail.events.conversation.c-1.customer.start"
        ));
    }
}
