//! What the console reads from Kafka itself: committed positions and watermarks (lag per
//! partition, retry tier depths, dead letters retained) and one dead letter by position.
//!
//! Invariant: these views depend only on the broker, so every process shows the same
//! numbers; nothing here joins a consumer group or commits (offsets are only fetched).
//! All functions block: callers run them on a blocking thread.

use crate::kafka::client_config;
use crate::kafka::KafkaSettings;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::OwnedMessage;
use rdkafka::{Message, Offset, TopicPartitionList};
use std::time::{Duration, Instant};

const TIMEOUT: Duration = Duration::from_secs(5);

/// Lag of one partition of one consumer group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PartitionLag {
    pub(crate) topic: String,
    pub(crate) partition: i32,
    /// `None` when the group has not committed on this partition yet.
    pub(crate) committed: Option<i64>,
    pub(crate) low: i64,
    pub(crate) high: i64,
}

impl PartitionLag {
    /// Records after the committed position (from the low watermark when nothing is
    /// committed: the group would start there with `auto.offset.reset=earliest`).
    pub(crate) fn lag(&self) -> i64 {
        let from = self.committed.unwrap_or(self.low).max(self.low);
        (self.high - from).max(0)
    }
}

/// Everything the overview shows from Kafka, read in one go.
#[derive(Debug, Clone, Default)]
pub(crate) struct KafkaSnapshot {
    /// Raw topic, in the worker group.
    pub(crate) raw: Vec<PartitionLag>,
    /// Retry topics (tier order), in the `<group>-retry` group.
    pub(crate) retry: Vec<Vec<PartitionLag>>,
    /// Records retained in the dead-letter topic.
    pub(crate) dead_letters: i64,
    /// How long the reads took.
    pub(crate) took: Duration,
}

fn reader(cfg: &KafkaSettings, group: &str) -> Result<BaseConsumer, KafkaError> {
    client_config(
        cfg,
        &[
            ("group.id", group),
            ("enable.auto.commit", "false"),
            ("enable.partition.eof", "false"),
        ],
    )
    .create()
}

fn partitions(c: &BaseConsumer, topic: &str) -> Result<Vec<i32>, KafkaError> {
    let md = c.fetch_metadata(Some(topic), TIMEOUT)?;
    Ok(md
        .topics()
        .iter()
        .filter(|t| t.name() == topic)
        .flat_map(|t| t.partitions().iter().map(|p| p.id()))
        .collect())
}

/// Lag per partition of `topic` for `group` (offsets fetched, never committed).
fn group_lags(
    cfg: &KafkaSettings,
    group: &str,
    topic: &str,
) -> Result<Vec<PartitionLag>, KafkaError> {
    let c = reader(cfg, group)?;
    let mut tpl = TopicPartitionList::new();
    for p in partitions(&c, topic)? {
        tpl.add_partition(topic, p);
    }
    let committed = c.committed_offsets(tpl, TIMEOUT)?;
    let mut out = Vec::new();
    for e in committed.elements() {
        let (low, high) = c.fetch_watermarks(topic, e.partition(), TIMEOUT)?;
        out.push(PartitionLag {
            topic: topic.to_string(),
            partition: e.partition(),
            committed: match e.offset() {
                Offset::Offset(o) => Some(o),
                _ => None,
            },
            low,
            high,
        });
    }
    out.sort_by_key(|l| l.partition);
    Ok(out)
}

/// Records retained in `topic` (sum of high minus low watermarks).
fn retained(cfg: &KafkaSettings, topic: &str) -> Result<i64, KafkaError> {
    let c = reader(cfg, "genesys-relay-console")?;
    let mut n = 0;
    for p in partitions(&c, topic)? {
        let (low, high) = c.fetch_watermarks(topic, p, TIMEOUT)?;
        n += high - low;
    }
    Ok(n)
}

/// Reads the overview's Kafka views.
pub(crate) fn snapshot(
    cfg: &KafkaSettings,
    group: &str,
    raw_topic: &str,
    retry_topics: &[String],
    dlq_topic: &str,
) -> Result<KafkaSnapshot, KafkaError> {
    let start = Instant::now();
    let retry_group = format!("{group}-retry");
    Ok(KafkaSnapshot {
        raw: group_lags(cfg, group, raw_topic)?,
        retry: retry_topics
            .iter()
            .map(|t| group_lags(cfg, &retry_group, t))
            .collect::<Result<_, _>>()?,
        dead_letters: retained(cfg, dlq_topic)?,
        took: start.elapsed(),
    })
}

/// The record at `partition`/`offset` of `topic`, if it is still retained.
pub(crate) fn read_one(
    cfg: &KafkaSettings,
    topic: &str,
    partition: i32,
    offset: i64,
) -> Result<Option<OwnedMessage>, KafkaError> {
    let c = reader(cfg, "genesys-relay-console")?;
    let (low, high) = c.fetch_watermarks(topic, partition, TIMEOUT)?;
    if offset < low || offset >= high {
        return Ok(None);
    }
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, partition, Offset::Offset(offset))?;
    c.assign(&tpl)?;
    let deadline = Instant::now() + TIMEOUT * 2;
    while Instant::now() < deadline {
        match c.poll(Duration::from_millis(200)) {
            Some(Ok(m)) if m.offset() == offset => return Ok(Some(m.detach())),
            // Compaction or a transaction marker may have taken the offset.
            Some(Ok(m)) if m.offset() > offset => return Ok(None),
            Some(Ok(_)) | None => {}
            Some(Err(e)) => return Err(e),
        }
    }
    Err(KafkaError::MessageConsumption(
        rdkafka::types::RDKafkaErrorCode::OperationTimedOut,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lag_counts_from_the_commit_or_the_start() {
        let l = |committed, low, high| PartitionLag {
            topic: "t".into(),
            partition: 0,
            committed,
            low,
            high,
        };
        assert_eq!(l(Some(7), 0, 10).lag(), 3);
        assert_eq!(l(None, 4, 10).lag(), 6);
        assert_eq!(l(Some(2), 5, 10).lag(), 5, "commit below retention");
        assert_eq!(l(Some(10), 0, 10).lag(), 0);
    }
}
