//! Handles one record end to end: decode, route, idempotency check, run the route, and
//! hand failures off; it returns only when the record may be committed (or at shutdown).
//!
//! An event is a duplicate when its idempotency key is marked, or, for an EventBridge
//! delivery, the key its EventBridge `id` gave before the id became the notification's
//! (marks live one TTL, so that second look matters only across an upgrade).
//!
//! A failed event whose idempotency key got marked meanwhile (another attempt of the same
//! event synced it, e.g. a redelivery after a worker was killed) is counted `duplicate`
//! instead of being retried or dead-lettered: an event is never both synced and in the
//! dead-letter topic through this worker's own bookkeeping. A handler panic dead-letters
//! its record with class `poison` (the consumer loop catches it, see `handle_panic`).
//!
//! The terminal outcome is recorded once: once a dead letter is acknowledged, its key is
//! marked dead-lettered before the record may be committed, and a later record of that key
//! (a redelivery after a worker was killed, a client's resend) is skipped as
//! `already_dead_lettered` instead of being synced. An operator replay
//! (`relay-replayed-from`, carried onto its retry records) is handled as usual; its sync
//! marks the key synced, which supersedes the dead-lettered mark.

use super::event_view::EventView;
use super::failure::Failure;
use super::hand_off::{FailureHandOff, HandOff};
use super::outcome::{EventOutcome, SkipReason, NO_ROUTE, UNKNOWN_ROUTE};
use super::route_handlers::{Outcome, RouteHandlers};
use super::route_table::{Route, RouteTable};
use crate::clock::DoublingBackoff;
use crate::idempotency::{IdempotencyKey, IdempotencyStore};
use crate::kafka::headers::{self, header_str};
use crate::kafka::{Handled, MessageHandler};
use crate::metrics::Metrics;
use crate::schema::{Codec, RawEvent};
use rdkafka::message::OwnedMessage;
use rdkafka::Message;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The worker's [`MessageHandler`] for the raw and the retry topics alike.
pub(crate) struct Processor {
    pub(crate) codec: Codec,
    pub(crate) router: RouteTable,
    pub(crate) handlers: RouteHandlers,
    pub(crate) idempotency: Arc<IdempotencyStore>,
    pub(crate) hand_off: FailureHandOff,
    pub(crate) metrics: Arc<Metrics>,
}

impl MessageHandler for Processor {
    fn handle(&self, msg: OwnedMessage) -> Pin<Box<dyn Future<Output = Handled> + Send + '_>> {
        Box::pin(self.process(msg))
    }

    fn handle_panic(
        &self,
        msg: OwnedMessage,
        panic: String,
    ) -> Pin<Box<dyn Future<Output = Handled> + Send + '_>> {
        Box::pin(async move {
            let event: Option<RawEvent> = msg.payload().and_then(|p| self.codec.decode(p).ok());
            let route = event
                .as_ref()
                .and_then(|e| self.router.route(&EventView::new(e)).ok());
            let key = event
                .as_ref()
                .zip(route)
                .map(|(e, r)| IdempotencyKey::new(r.as_str(), &e.event_id));
            let failure = Failure::poison(format!("handler panicked: {panic}"));
            self.fail(
                &msg,
                event.as_ref().map(|e| e.event_id.as_str()),
                route.map_or(UNKNOWN_ROUTE, Route::as_str),
                key.as_ref(),
                failure,
            )
            .await
        })
    }
}

impl Processor {
    async fn process(&self, msg: OwnedMessage) -> Handled {
        let started = Instant::now();
        let event: RawEvent = match msg.payload().map(|p| self.codec.decode(p)) {
            Some(Ok(e)) => e,
            Some(Err(e)) => {
                return self
                    .fail(
                        &msg,
                        None,
                        UNKNOWN_ROUTE,
                        None,
                        Failure::poison(e.to_string()),
                    )
                    .await
            }
            None => {
                return self
                    .fail(
                        &msg,
                        None,
                        UNKNOWN_ROUTE,
                        None,
                        Failure::poison("record has no value"),
                    )
                    .await
            }
        };
        // The payload is parsed here, once; the route table and the handler share it.
        let view = EventView::new(&event);
        let route = match self.router.route(&view) {
            Ok(r) => r,
            Err(reason) => {
                self.skipped(None, reason);
                return Handled::Done;
            }
        };
        let key = IdempotencyKey::new(route.as_str(), &event.event_id);
        // Before schema v3 an EventBridge event's id was EventBridge's own `id`; a mark
        // under that key (written by the previous relay within one TTL) is this event too.
        let legacy = event
            .eventbridge_id
            .as_deref()
            .map(|id| IdempotencyKey::new(route.as_str(), id));
        let _claim = self.idempotency.claim(key.as_str()).await;
        if self.synced_before(&key, legacy.as_ref()).await {
            self.count(route.as_str(), EventOutcome::Duplicate);
            return Handled::Done;
        }
        // A replay is the operator asking for another try; anything else is a record of an
        // event whose outcome is already recorded.
        if self.idempotency.dead_lettered(key.as_str()).await
            && header_str(&msg, headers::REPLAYED_FROM).is_none()
        {
            self.skipped(Some(route), SkipReason::AlreadyDeadLettered);
            return Handled::Done;
        }
        let result = self.handlers.run(route, &view, key.as_str()).await;
        let handled = match result {
            Ok(Outcome::Synced { entry }) => self.synced(route, key.as_str(), &event, entry).await,
            Ok(Outcome::Skipped(reason)) => {
                self.skipped(Some(route), reason);
                Handled::Done
            }
            // Another attempt of this event synced it while this one ran: neither a retry
            // nor a dead letter is due.
            Err(_) if self.synced_before(&key, legacy.as_ref()).await => {
                self.count(route.as_str(), EventOutcome::Duplicate);
                Handled::Done
            }
            Err(failure) => {
                self.fail(
                    &msg,
                    Some(&event.event_id),
                    route.as_str(),
                    Some(&key),
                    failure,
                )
                .await
            }
        };
        self.metrics
            .processing_duration_seconds
            .with_label_values(&[route.as_str()])
            .observe(started.elapsed().as_secs_f64());
        handled
    }

    /// Whether the event is marked synced: under its key, or (EventBridge, before schema
    /// v3) under the key its EventBridge `id` gave.
    async fn synced_before(&self, key: &IdempotencyKey, legacy: Option<&IdempotencyKey>) -> bool {
        if self.idempotency.seen(key.as_str()).await {
            return true;
        }
        match legacy {
            Some(l) => self.idempotency.seen(l.as_str()).await,
            None => false,
        }
    }

    /// Remembers the sync; for a guest sync also the CMS entry it wrote, which feeds the
    /// stale guard of later events of that entry.
    async fn synced(
        &self,
        route: Route,
        key: &str,
        event: &RawEvent,
        entry: Option<String>,
    ) -> Handled {
        // The offset moves past a synced event only once its mark is durable: another
        // member that re-handles the record (after a failed commit) must find the mark,
        // not send again. At shutdown the mark stays local; the sink's own idempotency-key
        // handling covers the rare redelivery.
        let mut backoff = DoublingBackoff::new(Duration::from_secs(5));
        while let Err(e) = self
            .idempotency
            .remember(key, event.event_time_ms, entry.as_deref())
            .await
        {
            if *self.hand_off.shutdown.borrow() {
                tracing::warn!(error = %e, event_id = %event.event_id, "synced, but the idempotency mark was not written");
                break;
            }
            tracing::warn!(error = %e, event_id = %event.event_id, "idempotency mark not written; trying again");
            backoff.sleep().await;
        }
        self.count(route.as_str(), EventOutcome::Synced);
        Handled::Done
    }

    /// Hands the failed record off; `key` is the event's idempotency key when the record
    /// could be read and routed (a dead letter without one gets no mark).
    async fn fail(
        &self,
        msg: &OwnedMessage,
        event_id: Option<&str>,
        route: &str,
        key: Option<&IdempotencyKey>,
        failure: Failure,
    ) -> Handled {
        tracing::info!(route, event_id = event_id.unwrap_or("?"), error = %failure, "event failed");
        match self.hand_off.hand_off(msg, event_id, route, &failure).await {
            HandOff::Retried { .. } => self.count(route, EventOutcome::Retried),
            HandOff::Deferred => self.count(route, EventOutcome::Deferred),
            HandOff::DeadLettered(_) => {
                if let Some(key) = key {
                    self.mark_dead_lettered(key).await;
                }
                self.count(route, EventOutcome::DeadLettered)
            }
            HandOff::Abandoned => return Handled::Abandoned,
        }
        Handled::Done
    }

    /// Marks `key` dead-lettered once its dead letter is acknowledged (never before: a kill
    /// between a mark and its dead letter would lose the event). Like a synced mark, it is
    /// durable before the offset moves on, so a redelivery finds it; at shutdown it stays
    /// local.
    async fn mark_dead_lettered(&self, key: &IdempotencyKey) {
        let mut backoff = DoublingBackoff::new(Duration::from_secs(5));
        while let Err(e) = self.idempotency.remember_dead_lettered(key.as_str()).await {
            if *self.hand_off.shutdown.borrow() {
                tracing::warn!(error = %e, key = key.as_str(), "dead-lettered, but the idempotency mark was not written");
                break;
            }
            tracing::warn!(error = %e, key = key.as_str(), "dead-lettered mark not written; trying again");
            backoff.sleep().await;
        }
    }

    fn count(&self, route: &str, outcome: EventOutcome) {
        self.metrics
            .events_processed_total
            .with_label_values(&[route, outcome.as_str()])
            .inc();
    }

    fn skipped(&self, route: Option<Route>, reason: SkipReason) {
        self.count(route_label(route), EventOutcome::Skipped);
        self.metrics
            .skipped_total
            .with_label_values(&[route_label(route), reason.as_str()])
            .inc();
    }
}

/// Every `(route, reason)` skip the pipeline produces; `None` is the route table itself
/// (label [`NO_ROUTE`]).
const SKIPS_PRODUCED: [(Option<Route>, SkipReason); 12] = [
    (None, SkipReason::NoRoute),
    (None, SkipReason::SkippedByRoute),
    (Some(Route::GuestSync), SkipReason::Stale),
    (Some(Route::GuestSync), SkipReason::ConversationNotFound),
    (Some(Route::GuestSync), SkipReason::NoCustomer),
    (Some(Route::GuestSync), SkipReason::NotWebMessaging),
    (Some(Route::GuestSync), SkipReason::NotCustomer),
    (
        Some(Route::ConversationEnrich),
        SkipReason::ConversationNotFound,
    ),
    (Some(Route::Forward), SkipReason::NoForwardUrl),
    (Some(Route::GuestSync), SkipReason::AlreadyDeadLettered),
    (
        Some(Route::ConversationEnrich),
        SkipReason::AlreadyDeadLettered,
    ),
    (Some(Route::Forward), SkipReason::AlreadyDeadLettered),
];

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
    for (route, reason) in SKIPS_PRODUCED {
        metrics
            .skipped_total
            .with_label_values(&[route_label(route), reason.as_str()]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::Metrics;

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
        for (route, reason) in SKIPS_PRODUCED {
            let series = format!(
                "relay_skipped_total{{reason=\"{}\",route=\"{}\"}} 0",
                reason.as_str(),
                route_label(route)
            );
            assert!(text.contains(&series), "{series}");
        }
    }
}
