//! When a retryable failure is tried again: tier n waits `RELAY_RETRY_DELAYS[n-1]`, or the
//! service's longer `Retry-After`, plus up to 10% jitter so a burst of failures does not
//! come back at the same instant. After the last tier the event is exhausted.
//!
//! Every `Retry-After` is capped at the longest tier: a service answering `Retry-After:
//! 86400` (or 18446744073709551615) must not park a retry partition, and every event
//! behind it, for a day. All arithmetic on it saturates.
//!
//! [`decide`] is the whole retry decision for one failure (next tier and when, or dead
//! letter and its class) as a pure function: the jitter is an input, so the table is
//! deterministic and tested without a broker; `hand_off` only writes what it decides.

use super::failure::{ErrorClass, Failure};
use rand::Rng;
use std::time::Duration;

/// Where in the jitter band a retry lands: 0 = no jitter, towards 1 = the full 10%.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Jitter(f64);

impl Jitter {
    /// No jitter (tests).
    #[cfg(test)]
    pub(crate) const NONE: Jitter = Jitter(0.0);

    /// A uniformly random point of the band.
    pub(crate) fn random() -> Self {
        Jitter(rand::thread_rng().gen_range(0.0..1.0))
    }

    /// A fixed point of the band, clamped to `[0, 1)`.
    #[cfg(test)]
    pub(crate) fn at(share: f64) -> Self {
        Jitter(share.clamp(0.0, 0.999_999))
    }
}

/// What happens to a failed event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Decision {
    /// Write it to retry tier `tier` (1-based), due `delay` from now; `attempt` is its
    /// `relay-attempt`. A `deferral` (the Genesys budget had no slot soon enough) spends no
    /// attempt: it stays on the tier it was on (tier 1 from raw) with the same count.
    Retry {
        tier: usize,
        attempt: usize,
        delay: Duration,
        deferral: bool,
    },
    /// Write it to the dead-letter topic with this class, after `attempt` retries.
    DeadLetter { class: ErrorClass, attempt: usize },
}

/// The retry decision for `failure` of an event that has had `retries_done` retries (0
/// from the raw topic, n from tier n).
pub(crate) fn decide(
    failure: &Failure,
    retries_done: usize,
    policy: &RetryPolicy,
    jitter: Jitter,
) -> Decision {
    match failure.class {
        // Waiting for the Genesys budget spends no tier: same attempt count, due at the
        // promised slot (capped), on the tier the event is on (tier 1 from raw).
        ErrorClass::Retryable if failure.deferral => Decision::Retry {
            tier: retries_done.clamp(1, policy.tiers().max(1)),
            attempt: retries_done,
            delay: policy.cap(failure.retry_after.unwrap_or_default()),
            deferral: true,
        },
        ErrorClass::Retryable => match policy.next(retries_done, failure.retry_after, jitter) {
            NextStep::Retry { tier, delay } => Decision::Retry {
                tier,
                attempt: tier,
                delay,
                deferral: false,
            },
            NextStep::Exhausted => Decision::DeadLetter {
                class: ErrorClass::Exhausted,
                attempt: retries_done,
            },
        },
        class => Decision::DeadLetter {
            class,
            attempt: retries_done,
        },
    }
}

/// The retry tiers of `RELAY_RETRY_DELAYS`.
#[derive(Debug, Clone)]
pub(crate) struct RetryPolicy {
    delays: Vec<Duration>,
}

/// Where a failed attempt goes next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum NextStep {
    /// Retry tier (1-based) and how long to wait from now.
    Retry {
        tier: usize,
        delay: Duration,
    },
    Exhausted,
}

impl RetryPolicy {
    pub(crate) fn new(delays: Vec<Duration>) -> Self {
        RetryPolicy { delays }
    }

    /// How many retry tiers there are.
    pub(crate) fn tiers(&self) -> usize {
        self.delays.len()
    }

    /// The longest tier: no wait the relay schedules is longer.
    pub(crate) fn longest(&self) -> Duration {
        self.delays.iter().copied().max().unwrap_or_default()
    }

    /// `retry_after` capped at the longest tier.
    pub(crate) fn cap(&self, retry_after: Duration) -> Duration {
        retry_after.min(self.longest())
    }

    /// `retries_done` is 0 for a fresh event, n for one read from tier n.
    pub(crate) fn next(
        &self,
        retries_done: usize,
        retry_after: Option<Duration>,
        jitter: Jitter,
    ) -> NextStep {
        let Some(base) = self.delays.get(retries_done) else {
            return NextStep::Exhausted;
        };
        let wait = retry_after.map_or(*base, |ra| self.cap(ra).max(*base));
        let band_ms = (u64::try_from(wait.as_millis()).unwrap_or(u64::MAX) / 10).max(1);
        // `as` saturates; a share below 1 keeps the result below the band.
        let jitter_ms = (band_ms as f64 * jitter.0) as u64;
        let delay = wait.saturating_add(Duration::from_millis(jitter_ms.min(band_ms - 1)));
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
        match p.next(0, None, Jitter::random()) {
            NextStep::Retry { tier: 1, delay } => {
                assert!(
                    delay >= Duration::from_secs(5) && delay < Duration::from_millis(5500),
                    "{delay:?}"
                )
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            p.next(1, None, Jitter::random()),
            NextStep::Retry { tier: 2, .. }
        ));
        assert_eq!(p.next(2, None, Jitter::NONE), NextStep::Exhausted);
    }

    #[test]
    fn huge_retry_after_is_capped_at_the_longest_tier_without_overflow() {
        let p = RetryPolicy::new(vec![Duration::from_secs(1), Duration::from_secs(30)]);
        for huge in [
            Duration::from_secs(86_400),
            Duration::from_secs(u64::MAX),
            Duration::MAX,
        ] {
            let NextStep::Retry { delay, .. } = p.next(0, Some(huge), Jitter::random()) else {
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
        let NextStep::Retry { delay, .. } =
            p.next(0, Some(Duration::from_secs(30)), Jitter::random())
        else {
            panic!()
        };
        assert!(delay >= Duration::from_secs(30));
        let NextStep::Retry { delay, .. } =
            p.next(0, Some(Duration::from_millis(10)), Jitter::random())
        else {
            panic!()
        };
        assert!(
            delay >= Duration::from_secs(1),
            "a shorter Retry-After does not shorten the tier"
        );
    }

    fn failure(class: ErrorClass, retry_after: Option<u64>, deferral: bool) -> Failure {
        Failure {
            class,
            message: "m".into(),
            retry_after: retry_after.map(Duration::from_secs),
            deferral,
        }
    }

    /// Every class on every tier (raw, middle, last): the whole retry table.
    #[test]
    fn decide_covers_every_class_and_tier() {
        use ErrorClass::*;
        let policy = RetryPolicy::new([5, 60, 600].map(Duration::from_secs).to_vec());
        let secs = Duration::from_secs;
        let retry = |tier, attempt, delay, deferral| Decision::Retry {
            tier,
            attempt,
            delay,
            deferral,
        };
        let dead = |class, attempt| Decision::DeadLetter { class, attempt };
        #[rustfmt::skip]
        let table: &[(Failure, usize, Decision)] = &[
            // Retryable: the next tier with its delay, then exhausted after the last.
            (failure(Retryable, None, false), 0, retry(1, 1, secs(5), false)),
            (failure(Retryable, None, false), 1, retry(2, 2, secs(60), false)),
            (failure(Retryable, None, false), 2, retry(3, 3, secs(600), false)),
            (failure(Retryable, None, false), 3, dead(Exhausted, 3)),
            // A longer Retry-After wins, capped at the longest tier; a shorter one does not shorten.
            (failure(Retryable, Some(30), false), 0, retry(1, 1, secs(30), false)),
            (failure(Retryable, Some(86_400), false), 0, retry(1, 1, secs(600), false)),
            (failure(Retryable, Some(1), false), 1, retry(2, 2, secs(60), false)),
            (failure(Retryable, Some(30), false), 3, dead(Exhausted, 3)),
            // A deferral stays on its tier (tier 1 from raw), spends no attempt, even after the last tier.
            (failure(Retryable, Some(9), true), 0, retry(1, 0, secs(9), true)),
            (failure(Retryable, Some(9), true), 2, retry(2, 2, secs(9), true)),
            (failure(Retryable, Some(9), true), 3, retry(3, 3, secs(9), true)),
            (failure(Retryable, Some(86_400), true), 1, retry(1, 1, secs(600), true)),
            (failure(Retryable, None, true), 1, retry(1, 1, secs(0), true)),
            // Permanent and poison go straight to the dead letters from any tier.
            (failure(Permanent, None, false), 0, dead(Permanent, 0)),
            (failure(Permanent, Some(5), false), 2, dead(Permanent, 2)),
            (failure(Poison, None, false), 0, dead(Poison, 0)),
            (failure(Poison, None, false), 3, dead(Poison, 3)),
            (failure(Exhausted, None, false), 1, dead(Exhausted, 1)),
        ];
        for (f, retries_done, want) in table {
            assert_eq!(
                decide(f, *retries_done, &policy, Jitter::NONE),
                *want,
                "{f:?} after {retries_done} retries"
            );
        }
    }

    #[test]
    fn jitter_stays_inside_ten_percent() {
        let policy = RetryPolicy::new(vec![Duration::from_secs(10)]);
        let f = failure(ErrorClass::Retryable, None, false);
        let delay = |share| match decide(&f, 0, &policy, Jitter::at(share)) {
            Decision::Retry { delay, .. } => delay,
            other => panic!("{other:?}"),
        };
        assert_eq!(delay(0.0), Duration::from_secs(10));
        assert_eq!(delay(0.5), Duration::from_millis(10_500));
        assert!(delay(1.0) < Duration::from_secs(11));
    }
}
