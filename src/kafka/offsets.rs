//! Which offset of each partition may be committed: the lowest one still being handled,
//! or one past the highest seen when nothing is in flight. Records finish out of order
//! (different keys run concurrently), so a finished record never moves the commit point
//! past an earlier one that is still running.
//!
//! Two more invariants live here because they need the same lock:
//! - a record of a partition that was revoked (or is being revoked) never starts: the
//!   check and the count of handlers running are one step ([`OffsetTracker::start`]),
//!   so the revoke callback can wait for exactly the handlers that did start;
//! - an offset counts as committed only once the broker confirmed it
//!   ([`OffsetTracker::mark_committed`] is called from the commit callback), so a
//!   commit that failed is offered again, also for a partition that receives nothing.

use std::collections::{BTreeSet, HashMap};
use std::sync::Mutex;

#[derive(Debug, Default)]
struct PartitionState {
    in_flight: BTreeSet<i64>,
    next_after_seen: i64,
    committed: i64,
    generation: u64,
    /// Set when the revoke of this assignment began: nothing starts any more.
    revoked: bool,
    /// Handlers of this assignment's records that started and have not finished.
    handling: usize,
}

/// Offsets in flight per (topic, partition), shared by the receive loop, the handlers and
/// the rebalance callback.
#[derive(Debug, Default)]
pub struct OffsetTracker {
    partitions: Mutex<HashMap<(String, i32), PartitionState>>,
    next_generation: Mutex<u64>,
}

/// Identifies a record begun in one assignment of its partition; a completion from an
/// earlier assignment is ignored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Ticket {
    pub(crate) offset: i64,
    generation: u64,
}

impl OffsetTracker {
    pub(crate) fn new() -> Self {
        Self::default()
    }

    /// Records that `offset` was received and is now being handled.
    pub(crate) fn begin(&self, topic: &str, partition: i32, offset: i64) -> Ticket {
        let mut map = self.partitions.lock().expect("offset tracker lock");
        let state = map
            .entry((topic.to_string(), partition))
            .or_insert_with(|| {
                let mut g = self.next_generation.lock().expect("generation lock");
                *g += 1;
                PartitionState {
                    next_after_seen: offset,
                    committed: -1,
                    generation: *g,
                    ..Default::default()
                }
            });
        state.in_flight.insert(offset);
        state.next_after_seen = state.next_after_seen.max(offset + 1);
        Ticket {
            offset,
            generation: state.generation,
        }
    }

    /// Records that the record is fully handled (tests; handlers use `start` and `finish`).
    #[cfg(test)]
    fn complete(&self, topic: &str, partition: i32, ticket: Ticket) {
        let mut map = self.partitions.lock().expect("offset tracker lock");
        if let Some(state) = map.get_mut(&(topic.to_string(), partition)) {
            if state.generation == ticket.generation {
                state.in_flight.remove(&ticket.offset);
            }
        }
    }

    /// Asks to start handling the record: true (and counted as running) only while its
    /// partition is still owned in the ticket's assignment and not being revoked.
    pub(crate) fn start(&self, topic: &str, partition: i32, ticket: Ticket) -> bool {
        let mut map = self.partitions.lock().expect("offset tracker lock");
        match map.get_mut(&(topic.to_string(), partition)) {
            Some(s) if s.generation == ticket.generation && !s.revoked => {
                s.handling += 1;
                true
            }
            _ => false,
        }
    }

    /// Ends a handler begun with [`OffsetTracker::start`]; `done` lets the commit point
    /// pass the record.
    pub(crate) fn finish(&self, topic: &str, partition: i32, ticket: Ticket, done: bool) {
        let mut map = self.partitions.lock().expect("offset tracker lock");
        if let Some(state) = map.get_mut(&(topic.to_string(), partition)) {
            if state.generation == ticket.generation {
                state.handling = state.handling.saturating_sub(1);
                if done {
                    state.in_flight.remove(&ticket.offset);
                }
            }
        }
    }

    /// Begins the revoke of `partitions`: no record of theirs starts from now on.
    pub(crate) fn revoke(&self, partitions: &[(String, i32)]) {
        let mut map = self.partitions.lock().expect("offset tracker lock");
        for tp in partitions {
            if let Some(s) = map.get_mut(tp) {
                s.revoked = true;
            }
        }
    }

    /// Handlers still running for records of `partitions`.
    pub(crate) fn handling(&self, partitions: &[(String, i32)]) -> usize {
        let map = self.partitions.lock().expect("offset tracker lock");
        partitions
            .iter()
            .filter_map(|tp| map.get(tp))
            .map(|s| s.handling)
            .sum()
    }

    /// Offsets that may be committed and were not yet, as (topic, partition, next offset).
    /// `only` limits the answer to those partitions.
    pub(crate) fn committable(&self, only: Option<&[(String, i32)]>) -> Vec<(String, i32, i64)> {
        let map = self.partitions.lock().expect("offset tracker lock");
        map.iter()
            .filter(|(tp, _)| only.is_none_or(|o| o.contains(tp)))
            .filter_map(|((t, p), s)| {
                let point = s.in_flight.first().copied().unwrap_or(s.next_after_seen);
                (point > s.committed).then(|| (t.clone(), *p, point))
            })
            .collect()
    }

    /// Marks offsets as committed (confirmed by the broker) so they are not offered again.
    pub(crate) fn mark_committed(&self, committed: &[(String, i32, i64)]) {
        let mut map = self.partitions.lock().expect("offset tracker lock");
        for (t, p, o) in committed {
            if let Some(s) = map.get_mut(&(t.clone(), *p)) {
                s.committed = s.committed.max(*o);
            }
        }
    }

    /// Forgets partitions that were revoked; their in-flight records are ignored when they finish.
    pub(crate) fn forget(&self, revoked: &[(String, i32)]) {
        let mut map = self.partitions.lock().expect("offset tracker lock");
        for tp in revoked {
            map.remove(tp);
        }
    }

    /// Whether the partition is still assigned in the ticket's generation (and its revoke
    /// has not begun).
    pub(crate) fn is_current(&self, topic: &str, partition: i32, ticket: Ticket) -> bool {
        let map = self.partitions.lock().expect("offset tracker lock");
        map.get(&(topic.to_string(), partition))
            .is_some_and(|s| s.generation == ticket.generation && !s.revoked)
    }

    /// Number of records being handled.
    pub(crate) fn in_flight(&self) -> usize {
        let map = self.partitions.lock().expect("offset tracker lock");
        map.values().map(|s| s.in_flight.len()).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commit_point_waits_for_the_lowest_unfinished_offset() {
        let t = OffsetTracker::new();
        let a = t.begin("raw", 0, 10);
        let b = t.begin("raw", 0, 11);
        let c = t.begin("raw", 0, 12);
        t.complete("raw", 0, b);
        t.complete("raw", 0, c);
        assert_eq!(t.committable(None), vec![("raw".into(), 0, 10)]);
        t.mark_committed(&t.committable(None));
        assert!(t.committable(None).is_empty(), "nothing new to commit");
        t.complete("raw", 0, a);
        assert_eq!(t.committable(None), vec![("raw".into(), 0, 13)]);
    }

    #[test]
    fn completions_from_a_revoked_assignment_are_ignored() {
        let t = OffsetTracker::new();
        let old = t.begin("raw", 1, 5);
        t.forget(&[("raw".into(), 1)]);
        let new = t.begin("raw", 1, 5);
        t.complete("raw", 1, old);
        assert!(!t.is_current("raw", 1, old));
        assert_eq!(t.committable(None), vec![("raw".into(), 1, 5)]);
        t.complete("raw", 1, new);
        assert_eq!(t.committable(None), vec![("raw".into(), 1, 6)]);
    }

    /// Records queued before a revoke never start afterwards, and
    /// the revoke can wait for exactly the handlers that did start.
    #[test]
    fn nothing_starts_once_a_revoke_began() {
        let t = OffsetTracker::new();
        let running = t.begin("raw", 0, 1);
        let queued = t.begin("raw", 0, 2);
        assert!(t.start("raw", 0, running));
        let revoked = [("raw".to_string(), 0)];
        t.revoke(&revoked);
        assert!(
            !t.start("raw", 0, queued),
            "a queued record of a revoked partition"
        );
        assert!(!t.is_current("raw", 0, queued));
        assert_eq!(t.handling(&revoked), 1);
        t.finish("raw", 0, running, true);
        assert_eq!(t.handling(&revoked), 0);
        // The commit point stops at the record that never ran.
        assert_eq!(t.committable(Some(&revoked)), vec![("raw".into(), 0, 2)]);
    }

    /// An offset offered for commit stays offered until the broker
    /// confirmed it (a failed commit is tried again, also on a quiet partition).
    #[test]
    fn an_unconfirmed_commit_is_offered_again() {
        let t = OffsetTracker::new();
        let a = t.begin("raw", 0, 7);
        t.complete("raw", 0, a);
        let offered = t.committable(None);
        assert_eq!(offered, vec![("raw".into(), 0, 8)]);
        // The commit request failed: nothing was confirmed.
        assert_eq!(
            t.committable(None),
            offered,
            "offered again after a failure"
        );
        t.mark_committed(&offered);
        assert!(t.committable(None).is_empty());
    }
}
