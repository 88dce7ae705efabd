//! `RELAY_LISTEN_*` settings of the Notifications API source.
//!
//! The channel and topic limits are Genesys Cloud's documented ones (docs/listen.md names
//! the sources); they are settings so an operator can follow a change on Genesys' side
//! without a release, and so several listen processes can share the 20 channels of one
//! OAuth client.

use std::time::Duration;

use crate::config::{split_list, ConfigError, Vars};

/// Which queues `RELAY_LISTEN_QUEUES` names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QueueSelection {
    /// Not set: no queue topics.
    Off,
    /// `all`: every queue of the org, re-listed periodically.
    All,
    /// Listed ids.
    Ids(Vec<String>),
}

/// Settings of `genesys-relay listen` (and of `serve` when topics or queues are set).
#[derive(Debug, Clone)]
pub struct ListenSettings {
    /// `RELAY_LISTEN_TOPICS`: literal topics.
    pub(crate) topics: Vec<String>,
    /// `RELAY_LISTEN_QUEUES`: `all` or queue ids.
    pub(crate) queues: QueueSelection,
    /// `RELAY_LISTEN_QUEUE_REFRESH`: how often `all` re-lists the queues (default 5m).
    pub(crate) queue_refresh: Duration,
    /// `RELAY_LISTEN_BUFFER`: notifications read from sockets and not yet acknowledged by
    /// Kafka; a full buffer stops reading the sockets (default 10000).
    pub(crate) buffer: usize,
    /// `RELAY_LISTEN_MAX_TOPICS_PER_CHANNEL` (default 1000).
    pub(crate) max_topics_per_channel: usize,
    /// `RELAY_LISTEN_MAX_CHANNELS` (default 20): channels this process may hold at once,
    /// one of which stays free for seamless rotation.
    pub(crate) max_channels: usize,
    /// `RELAY_LISTEN_ROTATE_BEFORE`: rotate a channel this long before its `expires`
    /// (default 5m; at most half the channel's lifetime).
    pub(crate) rotate_before: Duration,
    /// `RELAY_LISTEN_OVERLAP`: how long the old socket is still read after its
    /// replacement is connected (default 2s).
    pub(crate) overlap: Duration,
    /// `RELAY_LISTEN_IDLE_TIMEOUT`: a socket silent this long (no heartbeat, no pong) is
    /// considered dead (default 90s); a ping is sent after a third of it.
    pub(crate) idle_timeout: Duration,
    /// `RELAY_LISTEN_RECONNECT_MAX`: cap of the reconnect backoff (default 30s).
    pub(crate) reconnect_max: Duration,
}

impl ListenSettings {
    /// Reads the `RELAY_LISTEN_*` settings; defaults come from the settings table in
    /// `config.rs`.
    pub fn read(v: &Vars) -> Result<Self, ConfigError> {
        let topics = v
            .get("RELAY_LISTEN_TOPICS")
            .map(|v| split_list(&v))
            .unwrap_or_default();
        let queues = match v.get("RELAY_LISTEN_QUEUES") {
            None => QueueSelection::Off,
            Some(v) if v.eq_ignore_ascii_case("all") => QueueSelection::All,
            Some(v) => QueueSelection::Ids(split_list(&v)),
        };
        if let Some(bad) = topics.iter().find(|t| t.contains(char::is_whitespace)) {
            return Err(ConfigError::Invalid {
                name: "RELAY_LISTEN_TOPICS".into(),
                reason: format!("{bad:?} is not a topic name"),
            });
        }
        // Genesys subscribes concrete topics only: `{id}` is where the entity's id goes,
        // and a topic with a placeholder (or a wildcard) names no entity, so it would be
        // subscribed to nothing and deliver nothing, silently.
        if let Some((bad, placeholder)) = topics
            .iter()
            .find_map(|t| placeholder_in(t).map(|p| (t, p)))
        {
            return Err(ConfigError::Invalid {
                name: "RELAY_LISTEN_TOPICS".into(),
                reason: format!(
                    "{bad:?} contains the placeholder {placeholder:?}; Genesys subscribes concrete \
                     topics only: put the id of the conversation, queue or user in its place \
                     (RELAY_LISTEN_QUEUES subscribes every queue of the org)"
                ),
            });
        }
        if let QueueSelection::Ids(ids) = &queues {
            if let Some((bad, placeholder)) =
                ids.iter().find_map(|t| placeholder_in(t).map(|p| (t, p)))
            {
                return Err(ConfigError::Invalid {
                    name: "RELAY_LISTEN_QUEUES".into(),
                    reason: format!(
                        "{bad:?} contains the placeholder {placeholder:?}; give queue ids, or `all`"
                    ),
                });
            }
        }
        let max_topics_per_channel: usize = v.parse("RELAY_LISTEN_MAX_TOPICS_PER_CHANNEL")?;
        let max_channels: usize = v.parse("RELAY_LISTEN_MAX_CHANNELS")?;
        if max_topics_per_channel == 0 || max_channels < 2 {
            return Err(ConfigError::Invalid {
                name: "RELAY_LISTEN_MAX_CHANNELS".into(),
                reason: "at least 2 channels (one stays free for rotation) and 1 topic per channel are needed".into(),
            });
        }
        Ok(ListenSettings {
            topics,
            queues,
            queue_refresh: v.duration("RELAY_LISTEN_QUEUE_REFRESH")?,
            buffer: v.parse::<usize>("RELAY_LISTEN_BUFFER")?.max(1),
            max_topics_per_channel,
            max_channels,
            rotate_before: v.duration("RELAY_LISTEN_ROTATE_BEFORE")?,
            overlap: v.duration("RELAY_LISTEN_OVERLAP")?,
            idle_timeout: v
                .duration("RELAY_LISTEN_IDLE_TIMEOUT")?
                .max(Duration::from_millis(300)),
            reconnect_max: v
                .duration("RELAY_LISTEN_RECONNECT_MAX")?
                .max(Duration::from_millis(100)),
        })
    }

    /// Reads the settings from `(name, value)` pairs (tests).
    #[cfg(test)]
    pub(crate) fn from_pairs(pairs: &[(&str, &str)]) -> Result<Self, ConfigError> {
        Self::read(&Vars::from_pairs(pairs))
    }

    /// Whether any topic source is configured (what makes `serve` also listen).
    pub(crate) fn enabled(&self) -> bool {
        !self.topics.is_empty() || self.queues != QueueSelection::Off
    }
}

/// The first placeholder or wildcard in a topic: `{...}` (as the topic lists write the
/// id), `*`, `#`, `+` or `<...>`.
fn placeholder_in(topic: &str) -> Option<String> {
    if let Some(open) = topic.find(['{', '<']) {
        let close = if topic[open..].starts_with('{') {
            '}'
        } else {
            '>'
        };
        let end = topic[open..]
            .find(close)
            .map_or(topic.len(), |i| open + i + 1);
        return Some(topic[open..end].to_string());
    }
    topic
        .find(['*', '#', '+', '}', '>'])
        .map(|i| topic[i..i + 1].to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_queue_selection() {
        let s = ListenSettings::from_pairs(&[]).unwrap();
        assert!(!s.enabled());
        assert_eq!(s.max_topics_per_channel, 1000);
        assert_eq!(s.max_channels, 20);
        let s = ListenSettings::from_pairs(&[("RELAY_LISTEN_QUEUES", "ALL")]).unwrap();
        assert_eq!(s.queues, QueueSelection::All);
        assert!(s.enabled());
        let s = ListenSettings::from_pairs(&[
            ("RELAY_LISTEN_QUEUES", "a, b,,"),
            ("RELAY_LISTEN_TOPICS", "v2.users.u1.conversations"),
        ])
        .unwrap();
        assert_eq!(s.queues, QueueSelection::Ids(vec!["a".into(), "b".into()]));
        assert_eq!(s.topics, vec!["v2.users.u1.conversations".to_string()]);
    }

    #[test]
    fn a_topic_with_a_placeholder_is_refused_naming_it() {
        for (topic, placeholder) in [
            ("v2.detail.events.conversation.{id}.attributes", "{id}"),
            ("v2.routing.queues.{queueId}.conversations", "{queueId}"),
            ("v2.users.<user>.conversations", "<user>"),
            ("v2.routing.queues.*.conversations", "*"),
        ] {
            let topics = format!("v2.users.u1.conversations,{topic}");
            let err = ListenSettings::from_pairs(&[("RELAY_LISTEN_TOPICS", &topics)])
                .unwrap_err()
                .to_string();
            assert!(
                err.contains("RELAY_LISTEN_TOPICS")
                    && err.contains(topic)
                    && err.contains(&format!("placeholder \"{placeholder}\"")),
                "{err}"
            );
        }
        let err = ListenSettings::from_pairs(&[("RELAY_LISTEN_QUEUES", "q1,{id}")])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("RELAY_LISTEN_QUEUES") && err.contains("{id}"),
            "{err}"
        );
        // A concrete topic is accepted.
        ListenSettings::from_pairs(&[(
            "RELAY_LISTEN_TOPICS",
            "v2.detail.events.conversation.1f0e7a1c-8e0a-4c1e-9f59-0b3c1d7f1a2b.attributes",
        )])
        .unwrap();
    }

    #[test]
    fn bad_values_name_the_setting() {
        let err = ListenSettings::from_pairs(&[("RELAY_LISTEN_MAX_CHANNELS", "1")])
            .unwrap_err()
            .to_string();
        assert!(err.contains("RELAY_LISTEN_MAX_CHANNELS"), "{err}");
        let err = ListenSettings::from_pairs(&[("RELAY_LISTEN_OVERLAP", "soon")])
            .unwrap_err()
            .to_string();
        assert!(err.contains("RELAY_LISTEN_OVERLAP"), "{err}");
    }
}
