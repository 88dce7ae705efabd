//! The per-token request budget of the Genesys Cloud simulator (fault
//! `rate_limit_per_minute`), and the `inin-ratelimit-*` headers that report it.
//!
//! Genesys Cloud limits each OAuth client-credentials token to a number of requests per
//! minute (about 300 by default) and answers 429 with `Retry-After` beyond it. Every
//! answer carries `inin-ratelimit-count` (requests spent in the current window),
//! `inin-ratelimit-allowed` (the window's limit) and `inin-ratelimit-reset` (seconds until
//! the window resets); the SDKs' logging examples show them on a 200 (`count: 1`,
//! `allowed: 180`, `reset: 61`, platform-client-sdk-python README, "Logging"). The exact
//! window algorithm is not documented: this simulator uses fixed one-minute windows per
//! token starting at its first request, which is what a client must survive anyway.

use std::collections::HashMap;
use std::time::{Duration, Instant};

const WINDOW: Duration = Duration::from_secs(60);

/// One token's current window.
struct Window {
    started: Instant,
    count: u64,
}

/// Windows of every token that made a request.
#[derive(Default)]
pub(crate) struct Budget {
    windows: HashMap<String, Window>,
    /// Requests refused with 429 because their token's budget was spent.
    pub refused: u64,
}

/// What the budget says about one request.
pub(crate) struct Verdict {
    /// Headers for the answer, whatever it is.
    pub headers: Vec<(&'static str, String)>,
    /// `Some(seconds)` when the request is over budget: answer 429 with this `Retry-After`.
    pub retry_after_s: Option<u64>,
}

impl Budget {
    /// Counts a request of `token` against `allowed` per minute.
    pub fn spend(&mut self, token: &str, allowed: u64, now: Instant) -> Verdict {
        let window = self.windows.entry(token.to_string()).or_insert(Window {
            started: now,
            count: 0,
        });
        if now.duration_since(window.started) >= WINDOW {
            window.started = now;
            window.count = 0;
        }
        window.count = window.count.saturating_add(1);
        let left = WINDOW.saturating_sub(now.duration_since(window.started));
        // Whole seconds, rounded up: "reset in 0 s" while the window is still open would
        // invite a client to retry too early.
        let reset_s = left.as_secs() + u64::from(left.subsec_nanos() > 0);
        let over = window.count > allowed;
        if over {
            self.refused += 1;
        }
        Verdict {
            headers: vec![
                (
                    "inin-ratelimit-count",
                    window.count.min(allowed).to_string(),
                ),
                ("inin-ratelimit-allowed", allowed.to_string()),
                ("inin-ratelimit-reset", reset_s.to_string()),
            ],
            retry_after_s: over.then_some(reset_s.max(1)),
        }
    }

    /// Forgets expired windows, so the map stays as small as the live token set.
    pub fn prune(&mut self, now: Instant) {
        self.windows
            .retain(|_, w| now.duration_since(w.started) < WINDOW);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_request_after_the_budget_is_refused_until_the_window_resets() {
        let mut b = Budget::default();
        let t0 = Instant::now();
        for _ in 0..3 {
            assert!(b.spend("t", 3, t0).retry_after_s.is_none());
        }
        let over = b.spend("t", 3, t0 + Duration::from_secs(10));
        assert_eq!(over.retry_after_s, Some(50));
        assert_eq!(b.refused, 1);
        // Another token has its own budget.
        assert!(b.spend("u", 3, t0).retry_after_s.is_none());
        // A new window starts a minute after the first request.
        let later = b.spend("t", 3, t0 + WINDOW);
        assert!(later.retry_after_s.is_none());
        assert_eq!(later.headers[0], ("inin-ratelimit-count", "1".to_string()));
    }
}
