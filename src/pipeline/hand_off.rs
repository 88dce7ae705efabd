//! Writes a failed event to its next retry tier or to the dead-letter topic, with the
//! context headers of docs/contract.md#headers and the original value bytes unchanged. A hand-off
//! that cannot be written is tried again until it is, or until shutdown (then the record
//! stays uncommitted and is read again), because an offset may be committed only after
//! the event is durably somewhere.
//!
//! A record that can never be written because it is too large for the broker once the
//! relay headers are added (a raw record near `message.max.bytes`) is not retried: it is
//! dead-lettered without its value, class `permanent`, and a `relay-error` that says so
//! and where the value still is (`relay-original-topic|partition|offset`).
//!
//! A replayed record's `relay-replayed-from` goes with it onto its retry and dead-letter
//! records: its later attempts are the same operator replay, which the worker handles
//! although the event is marked dead-lettered.
//!
//! The decision is [`decide`]'s; the record it becomes is a [`Letter`] (pure, tested
//! here); this module's I/O is the write loop around them.

use super::failure::{ErrorClass, Failure};
use super::retry_policy::{decide, Decision, Jitter, RetryPolicy};
use crate::clock::{now_ms, DoublingBackoff};
use crate::kafka::headers::{self, header_i64, header_str};
use crate::kafka::{EventProducer, ProduceError, Topics};
use crate::metrics::Metrics;
use crate::text::truncate_utf8;
use rdkafka::error::KafkaError;
use rdkafka::message::OwnedMessage;
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::Message;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// Where a record came from, carried across retry tiers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Provenance {
    /// Retries already made (0 for a record from the raw topic).
    pub(crate) retries_done: usize,
    pub(crate) original_topic: String,
    pub(crate) original_partition: i32,
    pub(crate) original_offset: i64,
    pub(crate) first_failure_at_ms: Option<i64>,
}

impl Provenance {
    /// Reads the `relay-*` headers of a retry record, or describes a raw record itself.
    pub(crate) fn of(msg: &OwnedMessage, topics: &Topics) -> Self {
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
pub(crate) enum HandOff {
    Retried {
        tier: usize,
    },
    /// A budget deferral written to a retry tier without counting an attempt.
    Deferred,
    DeadLettered(ErrorClass),
    /// Shutdown began before the record could be written.
    Abandoned,
}

/// The retry or dead-letter record a decision becomes: its topic and what its `relay-*`
/// headers say. Built without I/O.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Letter {
    topic: String,
    class: ErrorClass,
    /// `relay-attempt`.
    attempt: usize,
    /// `relay-not-before` (Unix ms), on retry records only.
    not_before_ms: Option<i64>,
    deferral: bool,
    /// `relay-error` before truncation.
    error: String,
}

impl Letter {
    fn new(decision: Decision, failure: &Failure, topics: &Topics, now_ms: i64) -> Self {
        match decision {
            Decision::Retry {
                tier,
                attempt,
                delay,
                deferral,
            } => Letter {
                topic: topics.retry[tier - 1].clone(),
                class: ErrorClass::Retryable,
                attempt,
                not_before_ms: Some(
                    now_ms.saturating_add(i64::try_from(delay.as_millis()).unwrap_or(i64::MAX)),
                ),
                deferral,
                error: failure.message.clone(),
            },
            Decision::DeadLetter { class, attempt } => Letter {
                topic: topics.dlq.clone(),
                class,
                attempt,
                not_before_ms: None,
                deferral: false,
                error: failure.message.clone(),
            },
        }
    }

    /// The dead letter a record too large to write becomes: permanent, written without its
    /// value, its error naming where the value still is.
    fn without_value(
        self,
        topics: &Topics,
        prov: &Provenance,
        bytes: usize,
        cause: &str,
        failure: &Failure,
    ) -> Self {
        Letter {
            topic: topics.dlq.clone(),
            class: ErrorClass::Permanent,
            not_before_ms: None,
            deferral: false,
            error: format!(
                "record of {bytes} bytes is too large to write with relay headers ({cause}); value left out, it is at {}/{}/{}; failure was: {}",
                prov.original_topic, prov.original_partition, prov.original_offset, failure.message
            ),
            ..self
        }
    }

    /// The `relay-*` headers (and the trace context) of the record; `carried` are the
    /// incoming record's `traceparent` and `relay-replayed-from`.
    fn headers(
        &self,
        prov: &Provenance,
        route: &str,
        event_id: Option<&str>,
        carried: Carried<'_>,
        now_ms: i64,
    ) -> Vec<(&'static str, String)> {
        let mut hdrs = vec![
            (headers::ATTEMPT, self.attempt.to_string()),
            (headers::ORIGINAL_TOPIC, prov.original_topic.clone()),
            (
                headers::ORIGINAL_PARTITION,
                prov.original_partition.to_string(),
            ),
            (headers::ORIGINAL_OFFSET, prov.original_offset.to_string()),
            (
                headers::FIRST_FAILURE_AT,
                prov.first_failure_at_ms.unwrap_or(now_ms).to_string(),
            ),
            (headers::ROUTE, route.to_string()),
            (headers::ERROR_CLASS, self.class.as_str().to_string()),
            (
                headers::ERROR,
                truncate_utf8(&self.error, headers::MAX_ERROR_BYTES).to_string(),
            ),
        ];
        if let Some(id) = event_id {
            hdrs.push((headers::EVENT_ID, id.to_string()));
        }
        if let Some(nb) = self.not_before_ms {
            hdrs.push((headers::NOT_BEFORE, nb.to_string()));
        }
        if let Some(tp) = carried.traceparent {
            hdrs.push((headers::TRACEPARENT, tp.to_string()));
        }
        if let Some(from) = carried.replayed_from {
            hdrs.push((headers::REPLAYED_FROM, from.to_string()));
        }
        hdrs
    }

    /// Where the hand-off went, once written.
    fn outcome(&self) -> HandOff {
        match self.class {
            ErrorClass::Retryable if self.deferral => HandOff::Deferred,
            ErrorClass::Retryable => HandOff::Retried { tier: self.attempt },
            class => HandOff::DeadLettered(class),
        }
    }
}

/// Headers of the incoming record that its retry or dead-letter record keeps.
#[derive(Debug, Clone, Copy, Default)]
struct Carried<'a> {
    traceparent: Option<&'a str>,
    replayed_from: Option<&'a str>,
}

impl<'a> Carried<'a> {
    fn of(msg: &'a OwnedMessage) -> Self {
        Carried {
            traceparent: header_str(msg, headers::TRACEPARENT),
            replayed_from: header_str(msg, headers::REPLAYED_FROM),
        }
    }
}

/// Writes retry and dead-letter records.
pub(crate) struct FailureHandOff {
    pub(crate) producer: Arc<EventProducer>,
    pub(crate) topics: Topics,
    pub(crate) policy: RetryPolicy,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) shutdown: watch::Receiver<bool>,
}

impl FailureHandOff {
    pub(crate) async fn hand_off(
        &self,
        msg: &OwnedMessage,
        event_id: Option<&str>,
        route: &str,
        failure: &Failure,
    ) -> HandOff {
        let prov = Provenance::of(msg, &self.topics);
        let now = now_ms();
        let decision = decide(failure, prov.retries_done, &self.policy, Jitter::random());
        let mut letter = Letter::new(decision, failure, &self.topics, now);
        let event_id = event_id.or_else(|| header_str(msg, headers::EVENT_ID));
        let carried = Carried::of(msg);
        let key = String::from_utf8_lossy(msg.key().unwrap_or_default()).into_owned();
        let mut value = msg.payload().unwrap_or_default();
        let mut backoff = DoublingBackoff::new(Duration::from_secs(5));
        loop {
            let owned = letter.headers(&prov, route, event_id, carried, now);
            let hdrs: Vec<(&str, &str)> = owned.iter().map(|(k, v)| (*k, v.as_str())).collect();
            match self.producer.send(&letter.topic, &key, value, &hdrs).await {
                Ok(_) => break,
                Err(e) if too_large(&e) && !value.is_empty() => {
                    // Trying again cannot help: dead-letter it without the value.
                    tracing::error!(topic = %letter.topic, bytes = value.len(), "hand-off record too large for the broker; dead-lettering it without its value");
                    let cause = e.to_string();
                    letter =
                        letter.without_value(&self.topics, &prov, value.len(), &cause, failure);
                    value = &[];
                }
                Err(e) => {
                    tracing::warn!(error = %e, topic = %letter.topic, "cannot write hand-off record; trying again");
                    if *self.shutdown.borrow() {
                        return HandOff::Abandoned;
                    }
                    backoff.sleep().await;
                }
            }
        }
        let outcome = letter.outcome();
        match outcome {
            HandOff::Retried { tier } => self
                .metrics
                .retry_scheduled_total
                .with_label_values(&[&tier.to_string()])
                .inc(),
            HandOff::DeadLettered(class) => self
                .metrics
                .dlq_total
                .with_label_values(&[class.as_str()])
                .inc(),
            HandOff::Deferred | HandOff::Abandoned => {}
        }
        outcome
    }
}

/// Whether the broker (or the client, before sending) refused the record for its size.
fn too_large(e: &ProduceError) -> bool {
    matches!(
        e,
        ProduceError::Kafka(KafkaError::MessageProduction(
            RDKafkaErrorCode::MessageSizeTooLarge
        ))
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn topics() -> Topics {
        Topics::new("t", 3)
    }

    fn raw_provenance() -> Provenance {
        Provenance {
            retries_done: 0,
            original_topic: "t.events.raw".into(),
            original_partition: 2,
            original_offset: 41,
            first_failure_at_ms: None,
        }
    }

    fn headers_of(letter: &Letter, prov: &Provenance) -> HashMap<&'static str, String> {
        let carried = Carried {
            traceparent: Some("00-tp"),
            replayed_from: None,
        };
        letter
            .headers(prov, "guest_sync", Some("evt-1"), carried, 1_000)
            .into_iter()
            .collect()
    }

    #[test]
    fn a_retry_letter_goes_to_its_tier_with_its_due_time() {
        let failure = Failure::retryable("cms answered HTTP 503");
        let decision = Decision::Retry {
            tier: 2,
            attempt: 2,
            delay: Duration::from_secs(60),
            deferral: false,
        };
        let letter = Letter::new(decision, &failure, &topics(), 1_000);
        assert_eq!(letter.topic, "t.events.retry.2");
        assert_eq!(letter.outcome(), HandOff::Retried { tier: 2 });
        let h = headers_of(&letter, &raw_provenance());
        assert_eq!(h[headers::ATTEMPT], "2");
        assert_eq!(h[headers::NOT_BEFORE], "61000");
        assert_eq!(h[headers::ERROR_CLASS], "retryable");
        assert_eq!(h[headers::FIRST_FAILURE_AT], "1000");
        assert_eq!(h[headers::ORIGINAL_TOPIC], "t.events.raw");
        assert_eq!(h[headers::ORIGINAL_PARTITION], "2");
        assert_eq!(h[headers::ORIGINAL_OFFSET], "41");
        assert_eq!(h[headers::ROUTE], "guest_sync");
        assert_eq!(h[headers::EVENT_ID], "evt-1");
        assert_eq!(h[headers::TRACEPARENT], "00-tp");
        assert!(!h.contains_key(headers::REPLAYED_FROM));
    }

    /// A replayed record's later attempts stay a replay.
    #[test]
    fn a_replayed_record_keeps_its_replay_header_on_retry_and_dead_letter() {
        let failure = Failure::retryable("cms answered HTTP 503");
        let carried = Carried {
            traceparent: None,
            replayed_from: Some("t.events.dlq/0/7"),
        };
        let retry = Decision::Retry {
            tier: 1,
            attempt: 1,
            delay: Duration::from_secs(5),
            deferral: false,
        };
        let dead = Decision::DeadLetter {
            class: ErrorClass::Exhausted,
            attempt: 3,
        };
        for decision in [retry, dead] {
            let letter = Letter::new(decision, &failure, &topics(), 0);
            let h: HashMap<_, _> = letter
                .headers(&raw_provenance(), "guest_sync", Some("evt-1"), carried, 0)
                .into_iter()
                .collect();
            assert_eq!(h[headers::REPLAYED_FROM], "t.events.dlq/0/7");
            assert!(!h.contains_key(headers::TRACEPARENT));
        }
    }

    #[test]
    fn a_deferral_and_a_dead_letter_report_their_outcome() {
        let failure = Failure::retryable("budget");
        let deferred = Decision::Retry {
            tier: 1,
            attempt: 0,
            delay: Duration::from_secs(9),
            deferral: true,
        };
        let letter = Letter::new(deferred, &failure, &topics(), 0);
        assert_eq!(
            (letter.topic.as_str(), letter.outcome()),
            ("t.events.retry.1", HandOff::Deferred)
        );
        let dead = Decision::DeadLetter {
            class: ErrorClass::Poison,
            attempt: 0,
        };
        let letter = Letter::new(dead, &Failure::poison("not avro"), &topics(), 0);
        assert_eq!(letter.topic, "t.events.dlq");
        assert_eq!(letter.outcome(), HandOff::DeadLettered(ErrorClass::Poison));
        let h = headers_of(&letter, &raw_provenance());
        assert!(!h.contains_key(headers::NOT_BEFORE));
        assert_eq!(h[headers::ERROR_CLASS], "poison");
    }

    #[test]
    fn a_too_large_record_becomes_a_permanent_dead_letter_naming_where_the_value_is() {
        let failure = Failure::retryable("cms answered HTTP 503");
        let decision = Decision::Retry {
            tier: 1,
            attempt: 1,
            delay: Duration::from_secs(5),
            deferral: false,
        };
        let prov = raw_provenance();
        let letter = Letter::new(decision, &failure, &topics(), 0).without_value(
            &topics(),
            &prov,
            999_000,
            "too large",
            &failure,
        );
        assert_eq!(letter.topic, "t.events.dlq");
        assert_eq!(
            letter.outcome(),
            HandOff::DeadLettered(ErrorClass::Permanent)
        );
        let h = headers_of(&letter, &prov);
        assert!(!h.contains_key(headers::NOT_BEFORE));
        assert_eq!(h[headers::ATTEMPT], "1");
        let error = &h[headers::ERROR];
        assert!(
            error.contains("999000 bytes") && error.contains("t.events.raw/2/41"),
            "{error}"
        );
        assert!(
            error.ends_with("failure was: cms answered HTTP 503"),
            "{error}"
        );
    }

    #[test]
    fn the_error_header_is_truncated() {
        let failure = Failure::permanent("é".repeat(2000));
        let dead = Decision::DeadLetter {
            class: ErrorClass::Permanent,
            attempt: 0,
        };
        let letter = Letter::new(dead, &failure, &topics(), 0);
        let h = headers_of(&letter, &raw_provenance());
        assert!(h[headers::ERROR].len() <= headers::MAX_ERROR_BYTES);
    }
}
