//! The names the worker counts: how an event ended ([`EventOutcome`]) and why one was
//! skipped ([`SkipReason`]), each an enum with one `as_str`, like [`Route`].
//!
//! Invariant: [`declare_series`] creates every `(route, outcome)` and `(route, reason)`
//! series from these enums, so a label the pipeline counts is always one a dashboard sees
//! from start-up; there is no second list to keep in sync.

use super::route_table::Route;
use crate::metrics::Metrics;

/// The `route` label of an event that has no route (skipped by the table).
pub(crate) const NO_ROUTE: &str = "none";
/// The `route` label of a record that could not be read (poison before routing).
pub(crate) const UNKNOWN_ROUTE: &str = "unknown";

/// How the worker finished with an event: the `outcome` of `relay_events_processed_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum EventOutcome {
    Synced,
    Skipped,
    Duplicate,
    Retried,
    Deferred,
    DeadLettered,
}

impl EventOutcome {
    pub(crate) const ALL: [EventOutcome; 6] = [
        EventOutcome::Synced,
        EventOutcome::Skipped,
        EventOutcome::Duplicate,
        EventOutcome::Retried,
        EventOutcome::Deferred,
        EventOutcome::DeadLettered,
    ];

    pub(crate) fn as_str(self) -> &'static str {
        match self {
            EventOutcome::Synced => "synced",
            EventOutcome::Skipped => "skipped",
            EventOutcome::Duplicate => "duplicate",
            EventOutcome::Retried => "retried",
            EventOutcome::Deferred => "deferred",
            EventOutcome::DeadLettered => "dead_lettered",
        }
    }
}

/// Why an event was skipped: the `reason` of `relay_skipped_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SkipReason {
    /// No rule matched and nothing is forwarded.
    NoRoute,
    /// A `RELAY_ROUTES` rule says `skip`.
    SkippedByRoute,
    /// An older event of a guest whose CMS entry already has a newer one.
    Stale,
    /// Genesys no longer has the conversation.
    ConversationNotFound,
    /// The conversation has no customer participant.
    NoCustomer,
    /// A `forward` route without `RELAY_FORWARD_URL`.
    NoForwardUrl,
}

impl SkipReason {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            SkipReason::NoRoute => "no_route",
            SkipReason::SkippedByRoute => "skipped_by_route",
            SkipReason::Stale => "stale",
            SkipReason::ConversationNotFound => "conversation_not_found",
            SkipReason::NoCustomer => "no_customer",
            SkipReason::NoForwardUrl => "no_forward_url",
        }
    }

    /// Every `(route, reason)` pair the pipeline produces; `None` is the table itself
    /// (label [`NO_ROUTE`]).
    pub(crate) const PRODUCED: [(Option<Route>, SkipReason); 7] = [
        (None, SkipReason::NoRoute),
        (None, SkipReason::SkippedByRoute),
        (Some(Route::GuestSync), SkipReason::Stale),
        (Some(Route::GuestSync), SkipReason::ConversationNotFound),
        (Some(Route::GuestSync), SkipReason::NoCustomer),
        (
            Some(Route::ConversationEnrich),
            SkipReason::ConversationNotFound,
        ),
        (Some(Route::Forward), SkipReason::NoForwardUrl),
    ];
}

/// The `route` label of an optional route.
pub(crate) fn route_label(route: Option<Route>) -> &'static str {
    route.map_or(NO_ROUTE, Route::as_str)
}

/// Creates the worker's series at zero, so dashboards and alerts see zeros, not gaps.
pub(crate) fn declare_series(metrics: &Metrics) {
    for route in Route::ALL {
        for outcome in EventOutcome::ALL {
            metrics
                .events_processed_total
                .with_label_values(&[route.as_str(), outcome.as_str()]);
        }
        metrics
            .processing_duration_seconds
            .with_label_values(&[route.as_str()]);
    }
    for (route, reason) in SkipReason::PRODUCED {
        metrics
            .skipped_total
            .with_label_values(&[route_label(route), reason.as_str()]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_name_is_declared_once() {
        let metrics = Metrics::new();
        declare_series(&metrics);
        let text = metrics.render();
        for outcome in EventOutcome::ALL {
            let series = format!(
                "relay_events_processed_total{{outcome=\"{}\",route=\"forward\"}} 0",
                outcome.as_str()
            );
            assert!(text.contains(&series), "{series}");
        }
        for (route, reason) in SkipReason::PRODUCED {
            let series = format!(
                "relay_skipped_total{{reason=\"{}\",route=\"{}\"}} 0",
                reason.as_str(),
                route_label(route)
            );
            assert!(text.contains(&series), "{series}");
        }
    }
}
