//! Which offset of each partition may be committed: the lowest one still being handled,
//! or one past the highest seen when nothing is in flight. Records finish out of order
//! (different keys run concurrently), so a finished record never moves the commit point
//! past an earlier one that is still running.

use std::collections::{BTreeSet, HashMap};
use std::sync::Mutex;

#[derive(Debug, Default)]
struct PartitionState {
    in_flight: BTreeSet<i64>,
    next_after_seen: i64,
    committed: i64,
    generation: u64,
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
pub struct Ticket {
    pub offset: i64,
    generation: u64,
}

impl OffsetTracker {
    pub fn new() -> Self {
        Self::default()
    }

    /// Records that `offset` was received and is now being handled.
    pub fn begin(&self, topic: &str, partition: i32, offset: i64) -> Ticket {
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

    /// Records that the record is fully handled.
    pub fn complete(&self, topic: &str, partition: i32, ticket: Ticket) {
        let mut map = self.partitions.lock().expect("offset tracker lock");
        if let Some(state) = map.get_mut(&(topic.to_string(), partition)) {
            if state.generation == ticket.generation {
                state.in_flight.remove(&ticket.offset);
            }
        }
    }

    /// Offsets that may be committed and were not yet, as (topic, partition, next offset).
    /// `only` limits the answer to those partitions.
    pub fn committable(&self, only: Option<&[(String, i32)]>) -> Vec<(String, i32, i64)> {
        let map = self.partitions.lock().expect("offset tracker lock");
        map.iter()
            .filter(|(tp, _)| only.is_none_or(|o| o.contains(tp)))
            .filter_map(|((t, p), s)| {
                let point = s.in_flight.first().copied().unwrap_or(s.next_after_seen);
                (point > s.committed).then(|| (t.clone(), *p, point))
            })
            .collect()
    }

    /// Marks offsets as committed so they are not offered again.
    pub fn mark_committed(&self, committed: &[(String, i32, i64)]) {
        let mut map = self.partitions.lock().expect("offset tracker lock");
        for (t, p, o) in committed {
            if let Some(s) = map.get_mut(&(t.clone(), *p)) {
                s.committed = s.committed.max(*o);
            }
        }
    }

    /// Forgets partitions that were revoked; their in-flight records are ignored when they finish.
    pub fn forget(&self, revoked: &[(String, i32)]) {
        let mut map = self.partitions.lock().expect("offset tracker lock");
        for tp in revoked {
            map.remove(tp);
        }
    }

    /// Whether the partition is still assigned in the ticket's generation.
    pub fn is_current(&self, topic: &str, partition: i32, ticket: Ticket) -> bool {
        let map = self.partitions.lock().expect("offset tracker lock");
        map.get(&(topic.to_string(), partition))
            .is_some_and(|s| s.generation == ticket.generation)
    }

    /// Number of records being handled.
    pub fn in_flight(&self) -> usize {
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
}
