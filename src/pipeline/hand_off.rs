//! Writes a failed event to its next retry tier or to the dead-letter topic, with the
//! context headers of DESIGN section 6 and the original value bytes unchanged. A hand-off
//! that cannot be written is tried again until it is, or until shutdown (then the record
//! stays uncommitted and is read again), because an offset may be committed only after
//! the event is durably somewhere.

use super::failure::{ErrorClass, Failure};
use super::retry_policy::{NextStep, RetryPolicy};
use crate::kafka::headers::{self, header_i64, header_str, truncate_utf8};
use crate::kafka::{now_ms, EventProducer, Topics};
use crate::metrics::Metrics;
use rdkafka::message::OwnedMessage;
use rdkafka::Message;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// Where a record came from, carried across retry tiers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Provenance {
    /// Retries already made (0 for a record from the raw topic).
    pub retries_done: usize,
    pub original_topic: String,
    pub original_partition: i32,
    pub original_offset: i64,
    pub first_failure_at_ms: Option<i64>,
}

impl Provenance {
    /// Reads the `relay-*` headers of a retry record, or describes a raw record itself.
    pub fn of(msg: &OwnedMessage, topics: &Topics) -> Self {
        match topics.retry_tier(msg.topic()) {
            Some(tier) => Provenance {
                retries_done: header_i64(msg, headers::ATTEMPT).map_or(tier, |a| a.max(0) as usize),
                original_topic: header_str(msg, headers::ORIGINAL_TOPIC)
                    .unwrap_or(&topics.raw)
                    .to_string(),
                original_partition: header_i64(msg, headers::ORIGINAL_PARTITION).unwrap_or(-1)
                    as i32,
                original_offset: header_i64(msg, headers::ORIGINAL_OFFSET).unwrap_or(-1),
                first_failure_at_ms: header_i64(msg, headers::FIRST_FAILURE_AT),
            },
            None => Provenance {
                retries_done: 0,
                original_topic: msg.topic().to_string(),
                original_partition: msg.partition(),
                original_offset: msg.offset(),
                first_failure_at_ms: None,
            },
        }
    }
}

/// Where a hand-off went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HandOff {
    Retried {
        tier: usize,
    },
    /// A budget deferral written to a retry tier without counting an attempt.
    Deferred,
    DeadLettered(ErrorClass),
    /// Shutdown began before the record could be written.
    Abandoned,
}

/// Writes retry and dead-letter records.
pub struct FailureHandOff {
    pub producer: Arc<EventProducer>,
    pub topics: Topics,
    pub policy: RetryPolicy,
    pub metrics: Arc<Metrics>,
    pub shutdown: watch::Receiver<bool>,
}

impl FailureHandOff {
    pub async fn hand_off(
        &self,
        msg: &OwnedMessage,
        event_id: Option<&str>,
        route: &str,
        failure: &Failure,
    ) -> HandOff {
        let prov = Provenance::of(msg, &self.topics);
        let now = now_ms();
        let delay_ms = |d: Duration| i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
        let (topic, class, attempt, not_before) = match failure.class {
            // Waiting for the Genesys budget spends no tier: same attempt count, due at the
            // promised slot (capped), on the tier the event is on (tier 1 from raw).
            ErrorClass::Retryable if failure.deferral => {
                let wait = self.policy.cap(failure.retry_after.unwrap_or_default());
                let tier = prov.retries_done.clamp(1, self.topics.retry.len());
                (
                    self.topics.retry[tier - 1].clone(),
                    ErrorClass::Retryable,
                    prov.retries_done,
                    Some(now.saturating_add(delay_ms(wait))),
                )
            }
            ErrorClass::Retryable => match self.policy.next(prov.retries_done, failure.retry_after)
            {
                NextStep::Retry { tier, delay } => (
                    self.topics.retry[tier - 1].clone(),
                    ErrorClass::Retryable,
                    tier,
                    Some(now.saturating_add(delay_ms(delay))),
                ),
                NextStep::Exhausted => (
                    self.topics.dlq.clone(),
                    ErrorClass::Exhausted,
                    prov.retries_done,
                    None,
                ),
            },
            class => (self.topics.dlq.clone(), class, prov.retries_done, None),
        };
        let attempt_s = attempt.to_string();
        let partition_s = prov.original_partition.to_string();
        let offset_s = prov.original_offset.to_string();
        let first_failure_s = prov.first_failure_at_ms.unwrap_or(now).to_string();
        let not_before_s = not_before.map(|t| t.to_string());
        let error = truncate_utf8(&failure.message, headers::MAX_ERROR_BYTES);
        let mut hdrs: Vec<(&str, &str)> = vec![
            (headers::ATTEMPT, &attempt_s),
            (headers::ORIGINAL_TOPIC, &prov.original_topic),
            (headers::ORIGINAL_PARTITION, &partition_s),
            (headers::ORIGINAL_OFFSET, &offset_s),
            (headers::FIRST_FAILURE_AT, &first_failure_s),
            (headers::ROUTE, route),
            (headers::ERROR_CLASS, class.as_str()),
            (headers::ERROR, error),
        ];
        let event_id = event_id.or_else(|| header_str(msg, headers::EVENT_ID));
        if let Some(id) = event_id {
            hdrs.push((headers::EVENT_ID, id));
        }
        if let Some(nb) = &not_before_s {
            hdrs.push((headers::NOT_BEFORE, nb));
        }
        if let Some(tp) = header_str(msg, headers::TRACEPARENT) {
            hdrs.push((headers::TRACEPARENT, tp));
        }
        let key = String::from_utf8_lossy(msg.key().unwrap_or_default()).into_owned();
        let value = msg.payload().unwrap_or_default();
        let mut backoff = Duration::from_millis(100);
        loop {
            match self.producer.send(&topic, &key, value, &hdrs).await {
                Ok(_) => break,
                Err(e) => {
                    tracing::warn!(error = %e, %topic, "cannot write hand-off record; trying again");
                    if *self.shutdown.borrow() {
                        return HandOff::Abandoned;
                    }
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
            }
        }
        if class == ErrorClass::Retryable && failure.deferral {
            HandOff::Deferred
        } else if class == ErrorClass::Retryable {
            self.metrics
                .retry_scheduled_total
                .with_label_values(&[&attempt_s])
                .inc();
            HandOff::Retried { tier: attempt }
        } else {
            self.metrics
                .dlq_total
                .with_label_values(&[class.as_str()])
                .inc();
            HandOff::DeadLettered(class)
        }
    }
}
