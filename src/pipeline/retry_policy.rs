//! When a retryable failure is tried again: tier n waits `RELAY_RETRY_DELAYS[n-1]`, or the
//! service's longer `Retry-After`, plus up to 10% jitter so a burst of failures does not
//! come back at the same instant. After the last tier the event is exhausted.
//!
//! Every `Retry-After` is capped at the longest tier: a service answering `Retry-After:
//! 86400` (or 18446744073709551615) must not park a retry partition, and every event
//! behind it, for a day. All arithmetic on it saturates.

use rand::Rng;
use std::time::Duration;

/// The retry tiers of `RELAY_RETRY_DELAYS`.
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    delays: Vec<Duration>,
}

/// Where a failed attempt goes next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NextStep {
    /// Retry tier (1-based) and how long to wait from now.
    Retry {
        tier: usize,
        delay: Duration,
    },
    Exhausted,
}

impl RetryPolicy {
    pub fn new(delays: Vec<Duration>) -> Self {
        RetryPolicy { delays }
    }

    /// The longest tier: no wait the relay schedules is longer.
    pub fn longest(&self) -> Duration {
        self.delays.iter().copied().max().unwrap_or_default()
    }

    /// `retry_after` capped at the longest tier.
    pub fn cap(&self, retry_after: Duration) -> Duration {
        retry_after.min(self.longest())
    }

    /// `retries_done` is 0 for a fresh event, n for one read from tier n.
    pub fn next(&self, retries_done: usize, retry_after: Option<Duration>) -> NextStep {
        let Some(base) = self.delays.get(retries_done) else {
            return NextStep::Exhausted;
        };
        let wait = retry_after.map_or(*base, |ra| self.cap(ra).max(*base));
        let jitter_ms = (u64::try_from(wait.as_millis()).unwrap_or(u64::MAX) / 10).max(1);
        let delay = wait.saturating_add(Duration::from_millis(
            rand::thread_rng().gen_range(0..jitter_ms),
        ));
        NextStep::Retry {
            tier: retries_done + 1,
            delay,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tiers_then_exhausted_with_bounded_jitter() {
        let p = RetryPolicy::new(vec![Duration::from_secs(5), Duration::from_secs(60)]);
        match p.next(0, None) {
            NextStep::Retry { tier: 1, delay } => {
                assert!(
                    delay >= Duration::from_secs(5) && delay < Duration::from_millis(5500),
                    "{delay:?}"
                )
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(p.next(1, None), NextStep::Retry { tier: 2, .. }));
        assert_eq!(p.next(2, None), NextStep::Exhausted);
    }

    #[test]
    fn huge_retry_after_is_capped_at_the_longest_tier_without_overflow() {
        let p = RetryPolicy::new(vec![Duration::from_secs(1), Duration::from_secs(30)]);
        for huge in [
            Duration::from_secs(86_400),
            Duration::from_secs(u64::MAX),
            Duration::MAX,
        ] {
            let NextStep::Retry { delay, .. } = p.next(0, Some(huge)) else {
                panic!()
            };
            assert!(
                delay >= Duration::from_secs(30) && delay <= Duration::from_secs(33),
                "{delay:?}"
            );
        }
    }

    #[test]
    fn a_longer_retry_after_wins() {
        let p = RetryPolicy::new(vec![Duration::from_secs(1), Duration::from_secs(60)]);
        let NextStep::Retry { delay, .. } = p.next(0, Some(Duration::from_secs(30))) else {
            panic!()
        };
        assert!(delay >= Duration::from_secs(30));
        let NextStep::Retry { delay, .. } = p.next(0, Some(Duration::from_millis(10))) else {
            panic!()
        };
        assert!(
            delay >= Duration::from_secs(1),
            "a shorter Retry-After does not shorten the tier"
        );
    }
}
