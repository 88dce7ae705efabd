//! The names the worker counts: how an event ended ([`EventOutcome`]) and why one was
//! skipped ([`SkipReason`]), each an enum with one `as_str`, like `Route`.
//!
//! Invariant: the processor declares every `(route, outcome)` and `(route, reason)`
//! series from these enums (`processor::declare_series`), so a label the pipeline counts
//! is always one a dashboard sees from start-up; there is no second list to keep in sync.

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
    /// `RELAY_GUEST_SYNC_SCOPE`: the customer is not on Web Messaging (voice, email, SMS, ...).
    NotWebMessaging,
    /// `RELAY_GUEST_SYNC_SCOPE`: the participant is not the customer (an agent, IVR, ...).
    NotCustomer,
    /// The event was dead-lettered (its idempotency mark says so) and this record is a
    /// redelivery, not an operator replay.
    AlreadyDeadLettered,
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
            SkipReason::NotWebMessaging => "not_web_messaging",
            SkipReason::NotCustomer => "not_customer",
            SkipReason::AlreadyDeadLettered => "already_dead_lettered",
        }
    }
}
