//! Handles one record end to end: decode, route, idempotency check, run the route, and
//! hand failures off; it returns only when the record may be committed (or at shutdown).

use super::failure::Failure;
use super::hand_off::{FailureHandOff, HandOff};
use super::router::{Route, RouteTable};
use super::routes::{Outcome, Routes};
use crate::idempotency::IdempotencyStore;
use crate::kafka::{Handled, MessageHandler};
use crate::metrics::Metrics;
use crate::schema::{Codec, RawEvent};
use rdkafka::message::OwnedMessage;
use rdkafka::Message;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Instant;

/// The worker's [`MessageHandler`] for the raw and the retry topics alike.
pub struct Processor {
    pub codec: Codec,
    pub router: RouteTable,
    pub routes: Routes,
    pub idempotency: Arc<IdempotencyStore>,
    pub hand_off: FailureHandOff,
    pub metrics: Arc<Metrics>,
}

impl MessageHandler for Processor {
    fn handle(&self, msg: OwnedMessage) -> Pin<Box<dyn Future<Output = Handled> + Send + '_>> {
        Box::pin(self.process(msg))
    }
}

impl Processor {
    async fn process(&self, msg: OwnedMessage) -> Handled {
        let started = Instant::now();
        let event: RawEvent = match msg.payload().map(|p| self.codec.decode(p)) {
            Some(Ok(e)) => e,
            Some(Err(e)) => {
                return self
                    .fail(&msg, None, "unknown", Failure::poison(e.to_string()))
                    .await
            }
            None => {
                return self
                    .fail(
                        &msg,
                        None,
                        "unknown",
                        Failure::poison("record has no value"),
                    )
                    .await
            }
        };
        let route = match self.router.route(&event) {
            Ok(r) => r,
            Err(reason) => {
                self.count("none", "skipped");
                self.metrics
                    .skipped_total
                    .with_label_values(&["none", reason])
                    .inc();
                return Handled::Done;
            }
        };
        let key = format!("{}:{}", route.as_str(), event.event_id);
        if self.idempotency.seen(&key) {
            self.count(route.as_str(), "duplicate");
            return Handled::Done;
        }
        let result = self.routes.run(route, &event, &key).await;
        let handled = match result {
            Ok(Outcome::Synced { entry }) => self.synced(route, &key, &event, entry).await,
            Ok(Outcome::Skipped(reason)) => {
                self.count(route.as_str(), "skipped");
                self.metrics
                    .skipped_total
                    .with_label_values(&[route.as_str(), reason])
                    .inc();
                Handled::Done
            }
            Err(failure) => {
                self.fail(&msg, Some(&event.event_id), route.as_str(), failure)
                    .await
            }
        };
        self.metrics
            .processing_duration_seconds
            .with_label_values(&[route.as_str()])
            .observe(started.elapsed().as_secs_f64());
        handled
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
        if let Err(e) = self
            .idempotency
            .remember(key, event.event_time_ms, entry.as_deref())
            .await
        {
            // The sync happened; a later redelivery is caught by the sink's own
            // idempotency-key handling, so this is not worth a retry.
            tracing::warn!(error = %e, event_id = %event.event_id, "synced, but the idempotency mark was not written");
        }
        self.count(route.as_str(), "synced");
        Handled::Done
    }

    async fn fail(
        &self,
        msg: &OwnedMessage,
        event_id: Option<&str>,
        route: &str,
        failure: Failure,
    ) -> Handled {
        tracing::info!(route, event_id = event_id.unwrap_or("?"), error = %failure, "event failed");
        match self.hand_off.hand_off(msg, event_id, route, &failure).await {
            HandOff::Retried { .. } => self.count(route, "retried"),
            HandOff::Deferred => self.count(route, "deferred"),
            HandOff::DeadLettered(_) => self.count(route, "dead_lettered"),
            HandOff::Abandoned => return Handled::Abandoned,
        }
        Handled::Done
    }

    fn count(&self, route: &str, outcome: &str) {
        self.metrics
            .events_processed_total
            .with_label_values(&[route, outcome])
            .inc();
    }
}
