//! The process-wide Genesys Cloud request budget: one pacing token bucket
//! (`RELAY_GENESYS_RATE_LIMIT` requests per minute) shared by every call, adapted down
//! by what Genesys reports in `inin-ratelimit-allowed|count|reset` and by 429s.
//!
//! Invariants:
//! - Requests are paced one slot apart (60 s / rate, no burst): a process never sends
//!   more than its rate in any minute, so it stays inside a server's fixed window of the
//!   same size, whatever the phase.
//! - When Genesys says the window is spent (count >= allowed) or answers 429, nothing is
//!   sent until the window resets (or `Retry-After` passes, capped).
//! - A caller never waits longer than `max_wait` inside a worker lane: a later slot is
//!   answered with [`Slot::Defer`], and the event becomes a retry record due at that
//!   slot. Deferred slots are staggered one interval apart, so deferred events come back
//!   spread at the budget's own rate instead of all at once.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use reqwest::header::HeaderMap;

/// The longest pause a Genesys answer can impose (`inin-ratelimit-reset` or
/// `Retry-After`): a hostile or broken value must not stop the relay for a day.
pub(crate) const MAX_PAUSE: Duration = Duration::from_secs(120);

/// What the budget grants one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Slot {
    /// Send after waiting this long (often zero).
    Wait(Duration),
    /// Do not wait here: try again after this long.
    Defer(Duration),
}

#[derive(Debug)]
struct State {
    /// Slot interval at the current effective rate.
    interval: Duration,
    /// The earliest time the next request may go.
    next_free: Instant,
    /// Nothing goes before this (window spent, or a 429).
    paused_until: Instant,
    /// The last slot promised to a deferred request.
    deferred_horizon: Instant,
}

/// One per process; see the module doc.
#[derive(Debug)]
pub(crate) struct RequestBudget {
    configured_per_minute: u32,
    max_wait: Duration,
    state: Mutex<State>,
}

fn interval_for(per_minute: u32) -> Duration {
    Duration::from_secs(60) / per_minute.max(1)
}

impl RequestBudget {
    pub fn new(per_minute: u32, max_wait: Duration) -> Self {
        let now = Instant::now();
        RequestBudget {
            configured_per_minute: per_minute.max(1),
            max_wait,
            state: Mutex::new(State {
                interval: interval_for(per_minute),
                next_free: now,
                paused_until: now,
                deferred_horizon: now,
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Takes the next slot if it comes within `max_wait`, else promises a later one.
    pub fn acquire(&self) -> Slot {
        self.acquire_at(Instant::now())
    }

    fn acquire_at(&self, now: Instant) -> Slot {
        let mut s = self.lock();
        let slot = now.max(s.next_free).max(s.paused_until);
        let wait = slot - now;
        if wait <= self.max_wait {
            s.next_free = slot + s.interval;
            return Slot::Wait(wait);
        }
        let promised = slot.max(s.deferred_horizon + s.interval);
        s.deferred_horizon = promised;
        Slot::Defer(promised - now)
    }

    /// Learns from an answer's `inin-ratelimit-*` headers: a lower `allowed` lowers the
    /// rate, a spent window pauses until `reset`. Returns the requests left in the window
    /// when the headers say.
    pub fn observe(&self, headers: &HeaderMap) -> Option<u64> {
        let number =
            |name: &str| -> Option<u64> { headers.get(name)?.to_str().ok()?.trim().parse().ok() };
        let allowed = number("inin-ratelimit-allowed");
        let count = number("inin-ratelimit-count");
        let reset = number("inin-ratelimit-reset");
        let now = Instant::now();
        let mut s = self.lock();
        if let Some(allowed) = allowed.filter(|a| *a > 0) {
            let per_minute = u32::try_from(allowed)
                .unwrap_or(u32::MAX)
                .min(self.configured_per_minute);
            s.interval = interval_for(per_minute);
        }
        let remaining = allowed.zip(count).map(|(a, c)| a.saturating_sub(c));
        if remaining == Some(0) {
            let pause = reset.map_or(Duration::from_secs(1), Duration::from_secs);
            pause_locked(&mut s, now, pause);
        }
        remaining
    }

    /// Genesys answered 429: nothing goes until `retry_after` (capped) has passed.
    pub fn pause(&self, retry_after: Duration) {
        pause_locked(&mut self.lock(), Instant::now(), retry_after);
    }
}

fn pause_locked(s: &mut State, now: Instant, pause: Duration) {
    let until = now
        .checked_add(pause.min(MAX_PAUSE))
        .unwrap_or(now + MAX_PAUSE);
    s.paused_until = s.paused_until.max(until);
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    #[test]
    fn slots_are_paced_and_far_ones_are_deferred_and_staggered() {
        let b = RequestBudget::new(60, Duration::from_secs(2));
        let t0 = Instant::now();
        assert_eq!(b.acquire_at(t0), Slot::Wait(Duration::ZERO));
        assert_eq!(b.acquire_at(t0), Slot::Wait(Duration::from_secs(1)));
        assert_eq!(b.acquire_at(t0), Slot::Wait(Duration::from_secs(2)));
        // The next slot is 3 s away: deferred, and each deferral one interval later.
        assert_eq!(b.acquire_at(t0), Slot::Defer(Duration::from_secs(3)));
        assert_eq!(b.acquire_at(t0), Slot::Defer(Duration::from_secs(4)));
        // A slot within max_wait is still granted in place.
        let later = t0 + Duration::from_secs(3);
        assert_eq!(b.acquire_at(later), Slot::Wait(Duration::ZERO));
    }

    #[test]
    fn headers_lower_the_rate_and_a_spent_window_pauses() {
        let b = RequestBudget::new(240, Duration::from_secs(1));
        let mut h = HeaderMap::new();
        h.insert("inin-ratelimit-allowed", HeaderValue::from_static("60"));
        h.insert("inin-ratelimit-count", HeaderValue::from_static("60"));
        h.insert("inin-ratelimit-reset", HeaderValue::from_static("30"));
        assert_eq!(b.observe(&h), Some(0));
        assert_eq!(b.lock().interval, Duration::from_secs(1));
        assert!(matches!(b.acquire(), Slot::Defer(d) if d >= Duration::from_secs(29)));
    }

    #[test]
    fn hostile_pauses_are_capped_without_overflow() {
        let b = RequestBudget::new(60, Duration::from_secs(1));
        b.pause(Duration::from_secs(u64::MAX));
        let mut h = HeaderMap::new();
        h.insert("inin-ratelimit-allowed", HeaderValue::from_static("1"));
        h.insert(
            "inin-ratelimit-count",
            HeaderValue::from_static("18446744073709551615"),
        );
        h.insert(
            "inin-ratelimit-reset",
            HeaderValue::from_static("18446744073709551615"),
        );
        b.observe(&h);
        match b.acquire() {
            Slot::Defer(d) => assert!(d <= MAX_PAUSE + Duration::from_secs(61), "{d:?}"),
            other => panic!("{other:?}"),
        }
    }
}
