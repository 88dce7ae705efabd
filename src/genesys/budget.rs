//! The process-wide Genesys Cloud request budget: one pacing token bucket
//! (`RELAY_GENESYS_RATE_LIMIT` requests per minute) shared by every call, adapted down
//! by what Genesys reports in `inin-ratelimit-allowed|count|reset` and by 429s.
//!
//! A lower `inin-ratelimit-allowed` paces only the endpoint whose answer reported it:
//! Genesys limits some resources below the token's limit, and one resource's limit must
//! not set the others' pace, nor be undone by the next answer from a resource without
//! one. Callers still take their turn in one queue.
//! Which window an answer reports when both apply is not documented, so a spent window
//! (count >= allowed) or a 429 pauses every call.
//!
//! Invariants:
//! - Requests are paced one slot apart (60 s / rate, no burst): a process never sends
//!   more than its rate in any minute, so it stays inside a server's fixed window of the
//!   same size, whatever the phase.
//! - When Genesys says the window is spent (count >= allowed) or answers 429, nothing is
//!   sent until the window resets (or `Retry-After` passes, capped).
//! - Over budget is backpressure, not churn: a caller whose slot is taken by others
//!   queues for its turn (first come, first served) and waits in its lane; slots are
//!   handed out at most `max_wait` ahead, so a busy budget holds lanes, the consumer's
//!   in-flight limit fills and the consumer pauses. Only when Genesys itself stopped
//!   the budget (a pause past `max_wait`) is a caller answered [`Slot::Defer`]: its event
//!   becomes one retry record due at a promised slot. Deferred slots are staggered one
//!   interval apart and are not re-deferred by the queue when they come back (they queue
//!   like any caller), so an event is deferred at most once per pause, never cycled.
//! - A slot granted before a pause does not outrun it: the caller checks for a pause
//!   again just before sending ([`RequestBudget::pause_before_sending`]).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tokio::sync::Mutex as TurnLock;

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

/// The pace of one endpoint that Genesys limits below the configured rate.
#[derive(Debug, Clone, Copy)]
struct Pace {
    interval: Duration,
    next_free: Instant,
}

#[derive(Debug)]
struct State {
    /// Slot interval at the configured rate.
    interval: Duration,
    /// The earliest time the next request may go.
    next_free: Instant,
    /// Endpoints whose answers reported a limit below the configured rate.
    endpoints: HashMap<&'static str, Pace>,
    /// Nothing goes before this (window spent, or a 429).
    paused_until: Instant,
    /// The last slot promised to a deferred request.
    deferred_horizon: Instant,
}

/// What the budget decides for one caller at one instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Decision {
    /// A slot within `max_wait`, taken: send after this wait.
    Grant(Duration),
    /// Slots are taken further than `max_wait` ahead by other callers: ask again after
    /// this long (the queue moves one slot per interval).
    Queue(Duration),
    /// Genesys stopped the budget past `max_wait`: come back after this long.
    Defer(Duration),
}

/// One per process; see the module doc.
#[derive(Debug)]
pub(crate) struct RequestBudget {
    configured_per_minute: u32,
    max_wait: Duration,
    state: Mutex<State>,
    /// Held by the caller at the head of the queue while it waits for a slot within
    /// `max_wait`; tokio's mutex is fair, so callers get their turn in arrival order.
    turn: TurnLock<()>,
}

fn interval_for(per_minute: u32) -> Duration {
    Duration::from_secs(60) / per_minute.max(1)
}

impl RequestBudget {
    pub(crate) fn new(per_minute: u32, max_wait: Duration) -> Self {
        let now = Instant::now();
        RequestBudget {
            configured_per_minute: per_minute.max(1),
            max_wait,
            state: Mutex::new(State {
                interval: interval_for(per_minute),
                next_free: now,
                endpoints: HashMap::new(),
                paused_until: now,
                deferred_horizon: now,
            }),
            turn: TurnLock::new(()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Takes the next slot, waiting in turn while others hold the slots of the next
    /// `max_wait`; answers [`Slot::Defer`] only when Genesys paused the budget past
    /// `max_wait`. The wait returned is what is left after the queue: the caller
    /// sleeps it.
    pub(crate) async fn acquire(&self, endpoint: &'static str) -> Slot {
        let _turn = self.turn.lock().await;
        loop {
            match self.decide_at(Instant::now(), endpoint) {
                Decision::Grant(wait) => return Slot::Wait(wait),
                Decision::Defer(after) => return Slot::Defer(after),
                Decision::Queue(after) => tokio::time::sleep(after).await,
            }
        }
    }

    /// A granted slot comes before a pause Genesys imposed after it was granted (slots
    /// are handed out up to `max_wait` ahead): just before sending, the caller asks
    /// again. [`Slot::Wait`] with the pause left (zero when none), or [`Slot::Defer`] when
    /// the pause is longer than `max_wait`.
    pub(crate) fn pause_before_sending(&self) -> Slot {
        let now = Instant::now();
        let left = self.lock().paused_until.saturating_duration_since(now);
        if left > self.max_wait {
            Slot::Defer(left)
        } else {
            Slot::Wait(left)
        }
    }

    fn decide_at(&self, now: Instant, endpoint: &'static str) -> Decision {
        let mut s = self.lock();
        let own = s.endpoints.get(endpoint).copied();
        let slot = now
            .max(s.next_free)
            .max(s.paused_until)
            .max(own.map_or(now, |p| p.next_free));
        let wait = slot - now;
        if wait <= self.max_wait {
            s.next_free = slot + s.interval;
            if let Some(pace) = own {
                s.endpoints.insert(
                    endpoint,
                    Pace {
                        next_free: slot + pace.interval,
                        ..pace
                    },
                );
            }
            return Decision::Grant(wait);
        }
        if s.paused_until.saturating_duration_since(now) > self.max_wait {
            let promised = slot.max(s.deferred_horizon + s.interval);
            s.deferred_horizon = promised;
            return Decision::Defer(promised - now);
        }
        // Only other callers' slots are in the way: wait until ours is within max_wait.
        Decision::Queue(wait - self.max_wait)
    }

    /// Learns from an answer of `endpoint`'s `inin-ratelimit-*` headers: an `allowed`
    /// below the configured rate paces that endpoint (the configured rate or more lifts
    /// it), a spent window pauses every call until `reset`. Returns the requests left in
    /// the window when the headers say.
    pub(crate) fn observe(&self, endpoint: &'static str, headers: &HeaderMap) -> Option<u64> {
        let number =
            |name: &str| -> Option<u64> { headers.get(name)?.to_str().ok()?.trim().parse().ok() };
        let allowed = number("inin-ratelimit-allowed");
        let count = number("inin-ratelimit-count");
        let reset = number("inin-ratelimit-reset");
        let now = Instant::now();
        let mut s = self.lock();
        if let Some(allowed) = allowed.filter(|a| *a > 0) {
            let per_minute = u32::try_from(allowed).unwrap_or(u32::MAX);
            if per_minute < self.configured_per_minute {
                let interval = interval_for(per_minute);
                let pace = s.endpoints.entry(endpoint).or_insert(Pace {
                    interval,
                    next_free: now,
                });
                pace.interval = interval;
            } else {
                s.endpoints.remove(endpoint);
            }
        }
        let remaining = allowed.zip(count).map(|(a, c)| a.saturating_sub(c));
        if remaining == Some(0) {
            let pause = reset.map_or(Duration::from_secs(1), Duration::from_secs);
            pause_locked(&mut s, now, pause);
        }
        remaining
    }

    /// Genesys answered 429: nothing goes until `retry_after` (capped) has passed.
    pub(crate) fn pause(&self, retry_after: Duration) {
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

    const E: &str = "conversation";

    #[test]
    fn slots_are_paced_and_a_busy_budget_queues_instead_of_deferring() {
        let b = RequestBudget::new(60, Duration::from_secs(2));
        let t0 = Instant::now();
        assert_eq!(b.decide_at(t0, E), Decision::Grant(Duration::ZERO));
        assert_eq!(b.decide_at(t0, E), Decision::Grant(Duration::from_secs(1)));
        assert_eq!(b.decide_at(t0, E), Decision::Grant(Duration::from_secs(2)));
        // The next slot is 3 s away, taken by nobody but the queue: wait 1 s, not a
        // retry record.
        assert_eq!(b.decide_at(t0, E), Decision::Queue(Duration::from_secs(1)));
        assert_eq!(b.decide_at(t0, E), Decision::Queue(Duration::from_secs(1)));
        // A second later that slot is within max_wait and granted in place.
        let later = t0 + Duration::from_secs(1);
        assert_eq!(
            b.decide_at(later, E),
            Decision::Grant(Duration::from_secs(2))
        );
    }

    #[test]
    fn a_pause_past_max_wait_defers_staggered_and_a_returning_event_is_not_deferred_again() {
        let b = RequestBudget::new(60, Duration::from_secs(2));
        let t0 = Instant::now();
        assert_eq!(b.decide_at(t0, E), Decision::Grant(Duration::ZERO));
        b.pause(Duration::from_secs(10));
        let now = Instant::now();
        let d1 = b.decide_at(now, E);
        let d2 = b.decide_at(now, E);
        let (Decision::Defer(a), Decision::Defer(c)) = (d1, d2) else {
            panic!("{d1:?} {d2:?}");
        };
        assert!(
            a >= Duration::from_secs(9) && c == a + Duration::from_secs(1),
            "{a:?} {c:?}"
        );
        // Back at its promised slot, with the pause over and slots taken by others, the
        // event queues (at most `interval` per caller ahead of it), it is not deferred.
        let back = now + c;
        for _ in 0..5 {
            b.decide_at(back, E);
        }
        assert!(matches!(b.decide_at(back, E), Decision::Queue(_)));
    }

    #[test]
    fn a_slot_granted_before_a_pause_waits_for_it_before_sending() {
        let b = RequestBudget::new(60, Duration::from_secs(5));
        let t0 = Instant::now();
        // Granted 3 s ahead, then Genesys says the window is spent for 2 s.
        b.decide_at(t0, E);
        b.decide_at(t0, E);
        assert_eq!(b.pause_before_sending(), Slot::Wait(Duration::ZERO));
        b.pause(Duration::from_secs(2));
        assert!(matches!(b.pause_before_sending(), Slot::Wait(d) if d > Duration::from_secs(1)));
        b.pause(Duration::from_secs(30));
        assert!(matches!(b.pause_before_sending(), Slot::Defer(d) if d > Duration::from_secs(29)));
    }

    #[tokio::test]
    async fn queued_callers_are_served_in_turn_at_the_paced_rate() {
        // 600 per minute = one slot per 100 ms; slots at most 100 ms ahead.
        let b = std::sync::Arc::new(RequestBudget::new(600, Duration::from_millis(100)));
        let started = Instant::now();
        let mut tasks = Vec::new();
        for _ in 0..10 {
            let b = b.clone();
            tasks.push(tokio::spawn(async move {
                match b.acquire(E).await {
                    Slot::Wait(w) => tokio::time::sleep(w).await,
                    Slot::Defer(d) => panic!("deferred {d:?}"),
                }
                started.elapsed()
            }));
        }
        let mut sent = Vec::new();
        for t in tasks {
            sent.push(t.await.unwrap());
        }
        sent.sort();
        let last = *sent.last().unwrap();
        assert!(
            last >= Duration::from_millis(900) && last < Duration::from_millis(1500),
            "{sent:?}"
        );
        for pair in sent.windows(2) {
            assert!(pair[1] - pair[0] >= Duration::from_millis(80), "{sent:?}");
        }
    }

    #[test]
    fn headers_lower_the_rate_and_a_spent_window_pauses() {
        let b = RequestBudget::new(240, Duration::from_secs(1));
        let mut h = HeaderMap::new();
        h.insert("inin-ratelimit-allowed", HeaderValue::from_static("60"));
        h.insert("inin-ratelimit-count", HeaderValue::from_static("60"));
        h.insert("inin-ratelimit-reset", HeaderValue::from_static("30"));
        assert_eq!(b.observe(E, &h), Some(0));
        assert_eq!(b.lock().endpoints[E].interval, Duration::from_secs(1));
        assert!(
            matches!(b.decide_at(Instant::now(), E), Decision::Defer(d) if d >= Duration::from_secs(29))
        );
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
        b.observe(E, &h);
        match b.decide_at(Instant::now(), E) {
            Decision::Defer(d) => assert!(d <= MAX_PAUSE + Duration::from_secs(61), "{d:?}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn one_endpoints_lower_limit_paces_it_alone_and_is_not_undone_by_another() {
        let b = RequestBudget::new(600, Duration::from_secs(10));
        let limited = |allowed: &'static str| {
            let mut h = HeaderMap::new();
            h.insert("inin-ratelimit-allowed", HeaderValue::from_static(allowed));
            h.insert("inin-ratelimit-count", HeaderValue::from_static("1"));
            h
        };
        // Conversations are limited to 60 per minute; channels report the token's 600.
        b.observe(E, &limited("60"));
        b.observe("channels", &limited("600"));
        let t0 = Instant::now();
        assert_eq!(b.decide_at(t0, E), Decision::Grant(Duration::ZERO));
        // The next conversation call waits a second. Callers take their turn in one
        // queue, so a channel call behind it goes after it, and the channel calls after
        // that go at the token's pace (100 ms apart), not at the conversations' second.
        assert_eq!(b.decide_at(t0, E), Decision::Grant(Duration::from_secs(1)));
        assert_eq!(
            b.decide_at(t0, "channels"),
            Decision::Grant(Duration::from_millis(1100))
        );
        assert_eq!(
            b.decide_at(t0, "channels"),
            Decision::Grant(Duration::from_millis(1200))
        );
        // The channel answer did not lift the conversations' pace.
        assert_eq!(b.lock().endpoints[E].interval, Duration::from_secs(1));
        // An answer at the configured rate lifts it.
        b.observe(E, &limited("600"));
        assert!(!b.lock().endpoints.contains_key(E));
    }
}
