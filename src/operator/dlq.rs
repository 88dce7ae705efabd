//! `dlq list` and `dlq replay`: reading the dead-letter topic and republishing chosen
//! dead letters to the raw topic (docs/contract.md#commands).
//!
//! A replayed record has the dead letter's key and value bytes unchanged, keeps
//! `relay-event-id` and `traceparent`, and gains `relay-replayed-from`
//! (`<dlq topic>/<partition>/<offset>`). It carries no `relay-attempt`, so the worker
//! counts attempts afresh.
//!
//! A dead letter whose event was synced after all (a synced idempotency mark `<route>:<event
//! id>` is on the idempotency topic, e.g. another attempt of the event succeeded) is not
//! replayed: it is reported under `already_synced`, so replay never sends an event twice.
//! A dead-lettered mark (the worker writes one for each dead letter) does not count; a
//! mark that cannot be read counts as synced, as every mark did before marks had outcomes.

use super::{OperatorError, OperatorSettings};
use crate::event::{write_raw, RawRecord};
use crate::idempotency::IdempotencyKey;
use crate::kafka::headers::{self, header_i64, header_str};
use crate::kafka::{read_topic_to_end, EventProducer};
use crate::schema::{Codec, IdempotencyMark, MarkOutcome, SchemaRegistry};
use rdkafka::message::OwnedMessage;
use rdkafka::Message;
use serde::Serialize;
use std::collections::{HashMap, HashSet};

/// One dead-letter record as its `relay-*` headers describe it. Headers that are missing
/// or malformed are `None`; such a record is still listed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DeadLetter {
    /// Partition of the dead-letter topic.
    pub topic_partition: i32,
    /// Offset in the dead-letter topic.
    pub offset: i64,
    /// The record key (lossy UTF-8).
    pub key: Option<String>,
    pub event_id: Option<String>,
    pub route: Option<String>,
    pub class: Option<String>,
    pub attempts: Option<i64>,
    /// Unix milliseconds.
    pub first_failure_at_ms: Option<i64>,
    pub error: Option<String>,
    pub original_topic: Option<String>,
    pub original_partition: Option<i32>,
    pub original_offset: Option<i64>,
    /// Size of the value in bytes (0 for a record without value).
    pub value_len: usize,
}

impl DeadLetter {
    /// Reads the `relay-*` headers of a dead-letter record; never fails.
    pub(crate) fn from_message(msg: &OwnedMessage) -> Self {
        let s = |name| header_str(msg, name).map(str::to_string);
        DeadLetter {
            topic_partition: msg.partition(),
            offset: msg.offset(),
            key: msg.key().map(|k| String::from_utf8_lossy(k).into_owned()),
            event_id: s(headers::EVENT_ID),
            route: s(headers::ROUTE),
            class: s(headers::ERROR_CLASS),
            attempts: header_i64(msg, headers::ATTEMPT),
            first_failure_at_ms: header_i64(msg, headers::FIRST_FAILURE_AT),
            error: s(headers::ERROR),
            original_topic: s(headers::ORIGINAL_TOPIC),
            original_partition: header_i64(msg, headers::ORIGINAL_PARTITION)
                .and_then(|p| i32::try_from(p).ok()),
            original_offset: header_i64(msg, headers::ORIGINAL_OFFSET),
            value_len: msg.payload().map_or(0, <[u8]>::len),
        }
    }

    /// `<partition>/<offset>` in the dead-letter topic.
    pub(crate) fn position(&self) -> String {
        format!("{}/{}", self.topic_partition, self.offset)
    }
}

/// Which dead letters `dlq replay` republishes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReplaySelection {
    /// Dead letters whose `relay-event-id` is one of these.
    pub event_ids: Vec<String>,
    /// Every dead letter.
    pub all: bool,
}

/// What `dlq replay` did (or, with `dry_run`, would do).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ReplayReport {
    /// Dead letters selected for replay.
    pub matched: usize,
    /// Records written to the raw topic and acknowledged (0 on a dry run).
    pub replayed: usize,
    pub dry_run: bool,
    /// Requested event ids with no dead letter.
    pub missing: Vec<String>,
    /// Older dead letters of an event id that has a newer one (the newer one is replayed;
    /// both carry the same value, so replaying each would only duplicate the event).
    pub superseded: usize,
    /// Event ids of selected dead letters that were synced after all (their idempotency
    /// mark exists); not replayed.
    pub already_synced: Vec<String>,
}

/// Every record of `topic` present when called, through `keep`, on a blocking thread,
/// sorted by partition and offset.
async fn read_all<T: Send + 'static>(
    ops: &OperatorSettings,
    topic: &str,
    keep: impl Fn(&OwnedMessage) -> T + Send + 'static,
) -> Result<Vec<(i32, i64, T)>, OperatorError> {
    let (kafka, topic) = (ops.kafka.clone(), topic.to_string());
    let read = tokio::task::spawn_blocking(move || {
        let mut out = Vec::new();
        read_topic_to_end(&kafka, &topic, |m| {
            out.push((m.partition(), m.offset(), keep(&m)))
        })
        .map(|_| out)
        .map_err(|source| OperatorError::Read { topic, source })
    });
    let mut out = read
        .await
        .map_err(|e| OperatorError::Task(e.to_string()))??;
    out.sort_by_key(|(p, o, _)| (*p, *o));
    Ok(out)
}

/// Lists the dead letters of `<prefix>.events.dlq` by partition and offset; `limit`
/// keeps the first N.
pub async fn list_dead_letters(
    ops: &OperatorSettings,
    limit: Option<usize>,
) -> Result<Vec<DeadLetter>, OperatorError> {
    let records = read_all(ops, &ops.topics.dlq, DeadLetter::from_message).await?;
    let mut letters: Vec<DeadLetter> = records.into_iter().map(|(_, _, d)| d).collect();
    if let Some(n) = limit {
        letters.truncate(n);
    }
    Ok(letters)
}

/// A codec that reads the idempotency marks, registering nothing.
async fn mark_reader(ops: &OperatorSettings, topic: &str) -> Result<Codec, OperatorError> {
    let Some(url) = &ops.schema_registry_url else {
        return Ok(Codec::single_object());
    };
    let http = reqwest::Client::builder()
        .timeout(ops.http_timeout)
        .build()
        .map_err(|e| OperatorError::Task(e.to_string()))?;
    Ok(SchemaRegistry::new(url.as_str(), http)
        .reader::<IdempotencyMark>(topic)
        .await?)
}

/// What replay needs of a selected dead letter.
struct Replayable {
    letter: DeadLetter,
    key: Option<Vec<u8>>,
    value: Vec<u8>,
    traceparent: Option<String>,
}

/// Republishes the selected dead letters to `<prefix>.events.raw`, in dead-letter order,
/// waiting for each acknowledgement; with `dry_run` nothing is written.
///
/// When an event id has several dead letters (it was replayed and failed again), only
/// the newest is replayed.
pub async fn replay_dead_letters(
    ops: &OperatorSettings,
    producer: &EventProducer,
    sel: &ReplaySelection,
    dry_run: bool,
) -> Result<ReplayReport, OperatorError> {
    if sel.all && !sel.event_ids.is_empty() {
        return Err(OperatorError::ConflictingSelection);
    }
    if !sel.all && sel.event_ids.is_empty() {
        return Err(OperatorError::NothingSelected);
    }
    let topics = &ops.topics;
    let wanted: HashSet<String> = sel.event_ids.iter().cloned().collect();
    let all = sel.all;
    let records = read_all(ops, &topics.dlq, move |m| {
        let letter = DeadLetter::from_message(m);
        let selected = all
            || letter
                .event_id
                .as_ref()
                .is_some_and(|id| wanted.contains(id));
        selected.then(|| Replayable {
            key: m.key().map(<[u8]>::to_vec),
            value: m.payload().map(<[u8]>::to_vec).unwrap_or_default(),
            traceparent: header_str(m, headers::TRACEPARENT).map(str::to_string),
            letter,
        })
    })
    .await?;
    let mut selected: Vec<Replayable> = records.into_iter().filter_map(|(_, _, r)| r).collect();

    // Newest dead letter per event id (records are sorted; same event id, same key, same partition).
    let mut newest: HashMap<String, usize> = HashMap::new();
    for (i, r) in selected.iter().enumerate() {
        if let Some(id) = &r.letter.event_id {
            newest.insert(id.clone(), i);
        }
    }
    let before = selected.len();
    let mut index = 0;
    selected.retain(|r| {
        let keep = r
            .letter
            .event_id
            .as_ref()
            .is_none_or(|id| newest[id] == index);
        index += 1;
        keep
    });

    // Dead letters of events that were synced after all are not replayed.
    let mark_key = |r: &Replayable| {
        Some(IdempotencyKey::new(
            r.letter.route.as_ref()?,
            r.letter.event_id.as_ref()?,
        ))
    };
    let marks: HashSet<String> = selected
        .iter()
        .filter_map(mark_key)
        .map(|k| k.as_str().to_string())
        .collect();
    let synced = if marks.is_empty() {
        HashSet::new()
    } else {
        let codec = mark_reader(ops, &topics.idempotency).await?;
        read_all(ops, &topics.idempotency, move |m| {
            let key = m
                .key()
                .map(|k| String::from_utf8_lossy(k).into_owned())
                .filter(|k| marks.contains(k))?;
            let outcome = m
                .payload()
                .and_then(|v| codec.decode::<IdempotencyMark>(v).ok())
                .map_or(MarkOutcome::Synced, |mark| mark.outcome);
            (outcome == MarkOutcome::Synced).then_some(key)
        })
        .await?
        .into_iter()
        .filter_map(|(_, _, k)| k)
        .collect()
    };
    let mut already_synced = Vec::new();
    selected.retain(|r| {
        let (Some(key), Some(id)) = (mark_key(r), &r.letter.event_id) else {
            return true;
        };
        let done = synced.contains(key.as_str());
        if done {
            already_synced.push(id.clone());
        }
        !done
    });

    let found: HashSet<&str> = selected
        .iter()
        .filter_map(|r| r.letter.event_id.as_deref())
        .collect();
    let mut missing = Vec::new();
    for id in &sel.event_ids {
        if !found.contains(id.as_str()) && !missing.contains(id) && !already_synced.contains(id) {
            missing.push(id.clone());
        }
    }
    let mut report = ReplayReport {
        matched: selected.len(),
        replayed: 0,
        dry_run,
        missing,
        superseded: before - selected.len() - already_synced.len(),
        already_synced,
    };
    // Check every key before writing anything, so a bad record cannot stop a replay halfway.
    for r in &selected {
        if r.key
            .as_deref()
            .is_some_and(|k| std::str::from_utf8(k).is_err())
        {
            return Err(OperatorError::KeyNotUtf8(format!(
                "{}/{}",
                topics.dlq,
                r.letter.position()
            )));
        }
    }
    if dry_run {
        return Ok(report);
    }
    for r in &selected {
        let from = format!("{}/{}", topics.dlq, r.letter.position());
        // Checked above. A record without key is written with an empty key.
        let key = r
            .key
            .as_deref()
            .map(|k| std::str::from_utf8(k).unwrap_or_default())
            .unwrap_or_default();
        let mut hdrs = vec![(headers::REPLAYED_FROM, from.clone())];
        if let Some(id) = &r.letter.event_id {
            hdrs.push((headers::EVENT_ID, id.clone()));
        }
        if let Some(tp) = &r.traceparent {
            hdrs.push((headers::TRACEPARENT, tp.clone()));
        }
        // Replay's failure policy: the dead letter's bytes go back unchanged; a refusal
        // stops the replay and reports how far it got.
        let record = RawRecord::republished(key.to_string(), r.value.clone(), hdrs);
        write_raw(producer, &topics.raw, &record)
            .await
            .map_err(|source| OperatorError::Produce {
                topic: topics.raw.clone(),
                from: from.clone(),
                replayed: report.replayed,
                source: Box::new(source),
            })?;
        report.replayed += 1;
    }
    Ok(report)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use rdkafka::message::{Header, OwnedHeaders, Timestamp};

    pub(crate) fn msg(
        headers: Option<OwnedHeaders>,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
    ) -> OwnedMessage {
        OwnedMessage::new(
            value.map(<[u8]>::to_vec),
            key.map(<[u8]>::to_vec),
            "p.events.dlq".into(),
            Timestamp::NotAvailable,
            2,
            17,
            headers,
        )
    }

    #[test]
    fn headers_are_parsed_and_odd_ones_become_none() {
        let h = OwnedHeaders::new()
            .insert(Header {
                key: headers::EVENT_ID,
                value: Some("evt-1"),
            })
            .insert(Header {
                key: headers::ROUTE,
                value: Some("guest-sync"),
            })
            .insert(Header {
                key: headers::ERROR_CLASS,
                value: Some("exhausted"),
            })
            .insert(Header {
                key: headers::ATTEMPT,
                value: Some("3"),
            })
            .insert(Header {
                key: headers::FIRST_FAILURE_AT,
                value: Some("not a number"),
            })
            .insert(Header {
                key: headers::ORIGINAL_PARTITION,
                value: Some("99999999999"),
            })
            .insert(Header {
                key: headers::ERROR,
                value: Some(&[0xffu8, 0xfe][..]),
            });
        let d = DeadLetter::from_message(&msg(Some(h), Some(b"conv-1"), Some(b"abc")));
        assert_eq!(d.event_id.as_deref(), Some("evt-1"));
        assert_eq!(d.route.as_deref(), Some("guest-sync"));
        assert_eq!(d.class.as_deref(), Some("exhausted"));
        assert_eq!(d.attempts, Some(3));
        assert_eq!(d.first_failure_at_ms, None);
        assert_eq!(d.original_partition, None, "out of i32 range");
        assert_eq!(d.error, None, "not UTF-8");
        assert_eq!((d.topic_partition, d.offset, d.value_len), (2, 17, 3));
        assert_eq!(d.key.as_deref(), Some("conv-1"));

        let bare = DeadLetter::from_message(&msg(None, None, None));
        assert_eq!(bare.event_id, None);
        assert_eq!(bare.key, None);
        assert_eq!(bare.value_len, 0);
    }
}
