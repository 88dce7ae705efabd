//! What Genesys Cloud answered for each subscribed topic: shared by the channel groups,
//! read by start-up (which fails when no topic is permitted) and by an operator view
//! (`ListenStatus::topics`).
//!
//! Invariant: `relay_listen_topics_rejected` equals the number of topics whose latest
//! answer was `Rejected`; a rejection is logged when a topic becomes rejected or its
//! reason changes, not again at every rotation that re-asks for it.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::watch;

use super::api::{Rejected, Subscribed};
use crate::metrics::Metrics;

/// A topic's latest answer from Genesys Cloud.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum TopicState {
    Permitted,
    Rejected(Rejected),
}

/// Per-topic subscription state of one listener.
pub(crate) struct ListenStatus {
    topics: Mutex<BTreeMap<String, TopicState>>,
    /// Channel groups that have had at least one subscription answer.
    answered: watch::Sender<BTreeSet<usize>>,
    /// Unix ms of the last heartbeat (`channel.metadata`) on any socket; 0 before the first.
    last_heartbeat_ms: AtomicI64,
    metrics: Arc<Metrics>,
}

impl ListenStatus {
    pub(crate) fn new(metrics: Arc<Metrics>) -> Self {
        ListenStatus {
            topics: Mutex::new(BTreeMap::new()),
            answered: watch::channel(BTreeSet::new()).0,
            last_heartbeat_ms: AtomicI64::new(0),
            metrics,
        }
    }

    /// Every topic with its latest answer (the operator console's listen page).
    pub(crate) fn topics(&self) -> BTreeMap<String, TopicState> {
        self.lock().clone()
    }

    /// A heartbeat arrived on one of the sockets.
    pub(crate) fn heartbeat(&self) {
        self.last_heartbeat_ms
            .store(crate::clock::now_ms(), Ordering::Relaxed);
    }

    /// Unix ms of the last heartbeat on any socket, if one has arrived.
    pub(crate) fn last_heartbeat_ms(&self) -> Option<i64> {
        Some(self.last_heartbeat_ms.load(Ordering::Relaxed)).filter(|ms| *ms > 0)
    }

    /// Records group `group`'s subscription answer; logs topics newly rejected.
    pub(crate) fn record(&self, group: usize, channel: &str, answer: &Subscribed) {
        {
            let mut topics = self.lock();
            for topic in &answer.permitted {
                if let Some(TopicState::Rejected(_)) =
                    topics.insert(topic.clone(), TopicState::Permitted)
                {
                    tracing::info!(group, channel, topic = %topic, "topic now permitted");
                }
            }
            for (topic, why) in &answer.rejected {
                let now = TopicState::Rejected(why.clone());
                if topics.get(topic) != Some(&now) {
                    tracing::error!(
                        group,
                        channel,
                        topic = %topic,
                        reason = %why.reason,
                        missing_permissions = %why.missing_permissions.join(","),
                        "Genesys Cloud rejected a topic: nothing will be delivered for it"
                    );
                    topics.insert(topic.clone(), now);
                }
            }
            self.set_gauge(&topics);
        }
        self.answered.send_modify(|a| {
            a.insert(group);
        });
    }

    /// Forgets topics no longer wanted (after a re-plan).
    pub(crate) fn retain(&self, wanted: &BTreeSet<String>) {
        let mut topics = self.lock();
        topics.retain(|t, _| wanted.contains(t));
        self.set_gauge(&topics);
    }

    /// Waits until each of groups `0..groups` has had a subscription answer.
    pub(crate) async fn all_answered(&self, groups: usize) {
        let mut rx = self.answered.subscribe();
        let _ = rx.wait_for(|a| (0..groups).all(|g| a.contains(&g))).await;
    }

    /// How many topics are permitted, and the rejections (topic, reason) otherwise.
    pub(crate) fn summary(&self) -> (usize, Vec<String>) {
        let topics = self.lock();
        let mut permitted = 0;
        let mut reasons = Vec::new();
        for (topic, state) in topics.iter() {
            match state {
                TopicState::Permitted => permitted += 1,
                TopicState::Rejected(why) if why.missing_permissions.is_empty() => {
                    reasons.push(format!("{topic}: {}", why.reason))
                }
                TopicState::Rejected(why) => reasons.push(format!(
                    "{topic}: {} (missing permissions: {})",
                    why.reason,
                    why.missing_permissions.join(", ")
                )),
            }
        }
        (permitted, reasons)
    }

    fn set_gauge(&self, topics: &BTreeMap<String, TopicState>) {
        let rejected = topics
            .values()
            .filter(|s| matches!(s, TopicState::Rejected(_)))
            .count();
        self.metrics
            .listen_topics_rejected
            .set(i64::try_from(rejected).unwrap_or(i64::MAX));
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, TopicState>> {
        // Always left consistent: a panic elsewhere does not poison it.
        self.topics.lock().unwrap_or_else(|e| e.into_inner())
    }
}
