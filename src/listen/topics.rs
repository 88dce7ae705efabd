//! Which topics the listener subscribes, and how they are spread over channels.
//!
//! Invariant: a topic is on exactly one channel group; a re-plan keeps every topic that
//! stays wanted on the group it already is on (moving it would open a gap or a
//! duplicate for no reason), drops unwanted ones and fills free room before opening a
//! new group. The plan never needs more groups than the channel budget minus the one
//! channel kept free for seamless rotation.

use std::collections::BTreeSet;

/// Why topics cannot be planned.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    #[error("nothing to listen to: set RELAY_LISTEN_TOPICS or RELAY_LISTEN_QUEUES")]
    NoTopics,
    #[error(
        "{topics} topics need {needed} channels of at most {per_channel} topics, plus 1 kept free \
         for seamless rotation, but Genesys Cloud allows {max_channels} channels per OAuth client \
         (RELAY_LISTEN_MAX_CHANNELS); listen to fewer topics or split them over processes with \
         their own OAuth clients"
    )]
    TooManyChannels {
        topics: usize,
        needed: usize,
        per_channel: usize,
        max_channels: usize,
    },
}

/// The queue conversation topic of one queue (Notifications topic
/// `v2.routing.queues.{id}.conversations`).
pub(crate) fn queue_topic(queue_id: &str) -> String {
    format!("v2.routing.queues.{queue_id}.conversations")
}

/// Spreads `wanted` over groups of at most `per_channel` topics, keeping the topics of
/// `current` where they are. Fails when more than `max_channels - 1` groups would be needed.
pub(crate) fn plan(
    current: &[Vec<String>],
    wanted: &BTreeSet<String>,
    per_channel: usize,
    max_channels: usize,
) -> Result<Vec<Vec<String>>, PlanError> {
    if wanted.is_empty() {
        return Err(PlanError::NoTopics);
    }
    let per_channel = per_channel.max(1);
    let mut groups: Vec<Vec<String>> = current
        .iter()
        .map(|g| g.iter().filter(|t| wanted.contains(*t)).cloned().collect())
        .collect();
    let placed: BTreeSet<&String> = groups.iter().flatten().collect();
    let new: Vec<String> = wanted
        .iter()
        .filter(|t| !placed.contains(t))
        .cloned()
        .collect();
    let mut new = new.into_iter();
    for group in &mut groups {
        while group.len() < per_channel {
            match new.next() {
                Some(t) => group.push(t),
                None => break,
            }
        }
    }
    let rest: Vec<String> = new.collect();
    for chunk in rest.chunks(per_channel) {
        groups.push(chunk.to_vec());
    }
    let needed = groups.len();
    if needed + 1 > max_channels {
        return Err(PlanError::TooManyChannels {
            topics: wanted.len(),
            needed,
            per_channel,
            max_channels,
        });
    }
    Ok(groups)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn topics(n: usize) -> BTreeSet<String> {
        (0..n).map(|i| queue_topic(&format!("q{i:05}"))).collect()
    }

    #[test]
    fn fifteen_hundred_topics_make_two_channels() {
        let groups = plan(&[], &topics(1500), 1000, 20).unwrap();
        assert_eq!(groups.len(), 2);
        assert_eq!(groups[0].len(), 1000);
        assert_eq!(groups[1].len(), 500);
    }

    #[test]
    fn limit_keeps_one_channel_free_and_names_the_numbers() {
        assert!(plan(&[], &topics(19_000), 1000, 20).is_ok());
        let err = plan(&[], &topics(19_001), 1000, 20).unwrap_err();
        let text = err.to_string();
        assert!(text.contains("19001 topics need 20 channels"), "{text}");
        assert!(text.contains("allows 20 channels"), "{text}");
        assert_eq!(
            plan(&[], &BTreeSet::new(), 1000, 20),
            Err(PlanError::NoTopics)
        );
    }

    #[test]
    fn replanning_keeps_topics_in_place_and_fills_room_first() {
        let first = plan(&[], &topics(1500), 1000, 20).unwrap();
        let mut wanted = topics(1500);
        // One queue removed from the first group, two new ones.
        let gone = first[0][3].clone();
        wanted.remove(&gone);
        wanted.insert(queue_topic("zz-new-1"));
        wanted.insert(queue_topic("zz-new-2"));
        let second = plan(&first, &wanted, 1000, 20).unwrap();
        assert_eq!(second.len(), 2);
        assert!(!second[0].contains(&gone));
        for t in first[1].iter() {
            assert!(second[1].contains(t), "moved {t}");
        }
        let total: usize = second.iter().map(Vec::len).sum();
        assert_eq!(total, 1501);
        assert!(second[0].len() <= 1000 && second[1].len() <= 1000);
    }
}
