//! Fault injection and per-route request counts, shared by both simulators.
//!
//! Faults are what let a test prove the relay retries, backs off and never syncs
//! twice; the counts are what it checks afterwards. Both live behind plain mutexes
//! that are held only for a few map operations, never across an `.await`.
//!
//! Two kinds of fault: the ones decided *before* the handler (`fail_next`,
//! `rate_limit_next`, `error_rate`), which change nothing, and `apply_then_fail_rate`
//! (CMS and forward backend), decided *after* a write was applied: the client then gets
//! a [`AnswerFailure`] instead of the 2xx, which is how a real sink makes a client send
//! a write that was already done.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use rand::Rng;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use warp::http::StatusCode;

use super::exchange::Reply;

const DEFAULT_ERROR_STATUS: u16 = 503;
const DEFAULT_RETRY_AFTER_S: u64 = 1;
/// How long a `no_answer` write is held before the simulator gives up on it: far above
/// any client timeout a test sets, so the client always times out first.
const DEFAULT_HANG_MS: u64 = 30_000;

/// What the client gets instead of the 2xx of a write that was applied.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq, Hash)]
#[serde(rename_all = "snake_case")]
pub(crate) enum AnswerFailure {
    /// An error status (`error_status`, 503 by default) with the simulator's error body.
    Status,
    /// The TCP connection is reset (RST) before any byte of the answer.
    Reset,
    /// Nothing: the answer is held for `apply_then_fail_hang_ms`, past the client's timeout.
    NoAnswer,
}

impl AnswerFailure {
    const ALL: [AnswerFailure; 3] = [
        AnswerFailure::Status,
        AnswerFailure::Reset,
        AnswerFailure::NoAnswer,
    ];
}

/// How one answer leaves the simulator.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Delivery {
    /// Written as usual.
    Normal,
    /// The connection is reset instead (see `server`).
    Reset,
    /// Held this long, then written (the client has given up by then).
    Hang(Duration),
}

/// Locks a mutex, recovering the data if a previous holder panicked: a simulator
/// should keep answering rather than cascade one bug into every later request.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The current fault configuration, as `POST /__sim/faults` sets it and stats show it.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub(crate) struct FaultSettings {
    pub latency_ms: u64,
    pub error_rate: f64,
    pub error_status: u16,
    pub fail_next: u64,
    pub rate_limit_next: u64,
    pub retry_after_s: u64,
    /// Genesys only: `expires_in` for tokens issued from now on (`None`: the start option).
    pub token_ttl_s: Option<u64>,
    /// Genesys only: requests each access token may make per minute (fixed one-minute
    /// windows); beyond it `/api/v2` answers 429 with `Retry-After`. `None`: no budget
    /// enforced, and no `inin-ratelimit-*` headers sent.
    pub rate_limit_per_minute: Option<u64>,
    /// Genesys only: drop the notification socket after each of the next N deliveries.
    pub ws_drop_next: u64,
    /// Genesys only: send `v2.system.socket_closing` after each of the next N deliveries.
    pub socket_closing_next: u64,
    /// CMS and forward backend: the share of accepted writes (applied or replayed) whose
    /// answer then fails, one of `apply_then_fail_modes` chosen at random per request.
    pub apply_then_fail_rate: f64,
    pub apply_then_fail_modes: Vec<AnswerFailure>,
    /// How long a `no_answer` failure holds the answer.
    pub apply_then_fail_hang_ms: u64,
}

impl Default for FaultSettings {
    fn default() -> Self {
        FaultSettings {
            latency_ms: 0,
            error_rate: 0.0,
            error_status: DEFAULT_ERROR_STATUS,
            fail_next: 0,
            rate_limit_next: 0,
            retry_after_s: DEFAULT_RETRY_AFTER_S,
            token_ttl_s: None,
            rate_limit_per_minute: None,
            ws_drop_next: 0,
            socket_closing_next: 0,
            apply_then_fail_rate: 0.0,
            apply_then_fail_modes: AnswerFailure::ALL.to_vec(),
            apply_then_fail_hang_ms: DEFAULT_HANG_MS,
        }
    }
}

/// A partial update: fields that are absent keep their current value. Unknown fields
/// are rejected so a typo in a test (`fail_nxt`) fails loudly instead of doing nothing.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FaultPatch {
    latency_ms: Option<u64>,
    error_rate: Option<f64>,
    error_status: Option<u16>,
    fail_next: Option<u64>,
    rate_limit_next: Option<u64>,
    retry_after_s: Option<u64>,
    token_ttl_s: Option<u64>,
    rate_limit_per_minute: Option<u64>,
    ws_drop_next: Option<u64>,
    socket_closing_next: Option<u64>,
    apply_then_fail_rate: Option<f64>,
    apply_then_fail_modes: Option<Vec<AnswerFailure>>,
    apply_then_fail_hang_ms: Option<u64>,
}

/// Fault configuration plus the countdowns it drives.
#[derive(Debug, Default)]
pub(crate) struct Faults {
    settings: Mutex<FaultSettings>,
}

impl Faults {
    pub fn snapshot(&self) -> FaultSettings {
        lock(&self.settings).clone()
    }

    pub fn clear(&self) {
        *lock(&self.settings) = FaultSettings::default();
    }

    /// Applies a JSON patch; on invalid input nothing changes and the error says why.
    pub fn patch(&self, body: &[u8]) -> Result<FaultSettings, String> {
        let patch: FaultPatch =
            serde_json::from_slice(body).map_err(|e| format!("invalid faults: {e}"))?;
        if let Some(rate) = patch.error_rate {
            if !(0.0..=1.0).contains(&rate) {
                return Err("error_rate must be between 0 and 1".into());
            }
        }
        if let Some(rate) = patch.apply_then_fail_rate {
            if !(0.0..=1.0).contains(&rate) {
                return Err("apply_then_fail_rate must be between 0 and 1".into());
            }
        }
        if patch
            .apply_then_fail_modes
            .as_ref()
            .is_some_and(Vec::is_empty)
        {
            return Err("apply_then_fail_modes must name at least one mode".into());
        }
        if patch.rate_limit_per_minute == Some(0) {
            return Err("rate_limit_per_minute must be at least 1".into());
        }
        if let Some(status) = patch.error_status {
            // 1xx cannot be a final answer; 2xx is allowed on purpose (a "lost" success).
            if !(200..=599).contains(&status) {
                return Err("error_status must be between 200 and 599".into());
            }
        }
        let mut s = lock(&self.settings);
        s.latency_ms = patch.latency_ms.unwrap_or(s.latency_ms);
        s.error_rate = patch.error_rate.unwrap_or(s.error_rate);
        s.error_status = patch.error_status.unwrap_or(s.error_status);
        s.fail_next = patch.fail_next.unwrap_or(s.fail_next);
        s.rate_limit_next = patch.rate_limit_next.unwrap_or(s.rate_limit_next);
        s.retry_after_s = patch.retry_after_s.unwrap_or(s.retry_after_s);
        s.token_ttl_s = patch.token_ttl_s.or(s.token_ttl_s);
        s.rate_limit_per_minute = patch.rate_limit_per_minute.or(s.rate_limit_per_minute);
        s.ws_drop_next = patch.ws_drop_next.unwrap_or(s.ws_drop_next);
        s.socket_closing_next = patch.socket_closing_next.unwrap_or(s.socket_closing_next);
        s.apply_then_fail_rate = patch.apply_then_fail_rate.unwrap_or(s.apply_then_fail_rate);
        if let Some(modes) = patch.apply_then_fail_modes {
            s.apply_then_fail_modes = modes;
        }
        s.apply_then_fail_hang_ms = patch
            .apply_then_fail_hang_ms
            .unwrap_or(s.apply_then_fail_hang_ms);
        Ok(s.clone())
    }

    /// Consumes one `ws_drop_next`; true when the socket must drop now.
    pub fn take_ws_drop(&self) -> bool {
        take_one(&mut lock(&self.settings).ws_drop_next)
    }

    /// Consumes one `socket_closing_next`; true when `socket_closing` must be sent now.
    pub fn take_socket_closing(&self) -> bool {
        take_one(&mut lock(&self.settings).socket_closing_next)
    }

    /// The latency to add before anything else happens to a request.
    pub fn latency(&self) -> Duration {
        Duration::from_millis(lock(&self.settings).latency_ms)
    }

    /// Decides, after the latency, whether this request fails instead of reaching the
    /// handler: `fail_next`, then `rate_limit_next`, then the random `error_rate`.
    pub fn take_fault(&self) -> Option<Reply> {
        let mut s = lock(&self.settings);
        let status =
            StatusCode::from_u16(s.error_status).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
        if s.fail_next > 0 {
            s.fail_next -= 1;
            return Some(injected(status));
        }
        if s.rate_limit_next > 0 {
            s.rate_limit_next -= 1;
            let reply = Reply::genesys_error(
                StatusCode::TOO_MANY_REQUESTS,
                "too.many.requests",
                "rate limit exceeded (injected by the simulator)",
            );
            return Some(reply.with_header("retry-after", s.retry_after_s.to_string()));
        }
        if s.error_rate > 0.0 && rand::thread_rng().gen::<f64>() < s.error_rate {
            return Some(injected(status));
        }
        None
    }
}

impl Faults {
    /// Decides, after a write was accepted, whether its answer fails, and how: the failure,
    /// the status a `Status` failure answers, and the hold of a `NoAnswer` one.
    pub fn take_apply_then_fail(&self) -> Option<(AnswerFailure, StatusCode, Duration)> {
        let s = lock(&self.settings);
        let mut rng = rand::thread_rng();
        if s.apply_then_fail_rate <= 0.0 || rng.gen::<f64>() >= s.apply_then_fail_rate {
            return None;
        }
        let mode = s.apply_then_fail_modes[rng.gen_range(0..s.apply_then_fail_modes.len())];
        let status =
            StatusCode::from_u16(s.error_status).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
        Some((
            mode,
            status,
            Duration::from_millis(s.apply_then_fail_hang_ms),
        ))
    }
}

fn take_one(countdown: &mut u64) -> bool {
    let due = *countdown > 0;
    *countdown = countdown.saturating_sub(1);
    due
}

pub(crate) fn injected(status: StatusCode) -> Reply {
    Reply::genesys_error(status, "sim.fault", "failure injected by the simulator")
}

/// Counts of answered requests: route template -> status (or `reset` / `no_answer` for an
/// answer the client never got) -> count.
#[derive(Debug, Default)]
pub(crate) struct RequestStats {
    counts: Mutex<HashMap<String, HashMap<String, u64>>>,
}

impl RequestStats {
    pub fn record(&self, route: String, status: StatusCode, delivery: Delivery) {
        let label = match delivery {
            Delivery::Normal => status.as_u16().to_string(),
            Delivery::Reset => "reset".to_string(),
            Delivery::Hang(_) => "no_answer".to_string(),
        };
        *lock(&self.counts)
            .entry(route)
            .or_default()
            .entry(label)
            .or_default() += 1;
    }

    pub fn clear(&self) {
        lock(&self.counts).clear();
    }

    /// `{"GET /v1/entries/{id}": {"200": 3, "404": 1}}`, sorted for readable diffs.
    pub fn to_json(&self) -> Value {
        let counts = lock(&self.counts);
        let sorted: BTreeMap<&String, BTreeMap<String, u64>> = counts
            .iter()
            .map(|(route, by_status)| {
                let statuses = by_status
                    .iter()
                    .map(|(status, n)| (status.clone(), *n))
                    .collect();
                (route, statuses)
            })
            .collect();
        json!(sorted)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn countdowns_run_in_order_then_stop() {
        let faults = Faults::default();
        faults
            .patch(br#"{"fail_next": 1, "rate_limit_next": 1, "retry_after_s": 7}"#)
            .unwrap_or_default();
        let first = faults.take_fault().map(|r| r.status);
        assert_eq!(first, Some(StatusCode::SERVICE_UNAVAILABLE));
        let second = faults.take_fault();
        assert_eq!(
            second.as_ref().map(|r| r.status),
            Some(StatusCode::TOO_MANY_REQUESTS)
        );
        let retry_after = second.and_then(|r| r.headers.first().map(|h| h.1.clone()));
        assert_eq!(retry_after.as_deref(), Some("7"));
        assert!(faults.take_fault().is_none());
    }

    #[test]
    fn apply_then_fail_uses_only_the_configured_modes() {
        let faults = Faults::default();
        assert!(faults.take_apply_then_fail().is_none(), "off by default");
        faults
            .patch(br#"{"apply_then_fail_rate": 1, "apply_then_fail_modes": ["reset"]}"#)
            .unwrap_or_default();
        for _ in 0..20 {
            let mode = faults.take_apply_then_fail().map(|f| f.0);
            assert_eq!(mode, Some(AnswerFailure::Reset));
        }
    }

    #[test]
    fn invalid_patches_change_nothing() {
        let faults = Faults::default();
        assert!(faults.patch(br#"{"error_rate": 2}"#).is_err());
        assert!(faults.patch(br#"{"fail_nxt": 2}"#).is_err());
        assert!(faults.patch(b"not json").is_err());
        assert!(faults.patch(br#"{"apply_then_fail_rate": -0.1}"#).is_err());
        assert!(faults
            .patch(br#"{"apply_then_fail_modes": ["lost"]}"#)
            .is_err());
        assert!(faults.patch(br#"{"apply_then_fail_modes": []}"#).is_err());
        assert_eq!(faults.snapshot(), FaultSettings::default());
    }
}
