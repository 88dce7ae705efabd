//! Creates the relay's topics at start-up when they are missing, with the configured
//! partitions, replication factor and (when set) `min.insync.replicas`.

use super::client_context::{MainQueueServer, RelayClientContext};
use super::KafkaSettings;
use super::{client_config, Topics};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use std::time::Duration;

/// Creates every topic of `topics` that does not exist yet; the idempotency topic is compacted.
/// Existing topics are left as they are (their partition counts are the operator's).
pub async fn ensure_topics(
    cfg: &impl AsRef<KafkaSettings>,
    topics: &Topics,
) -> Result<(), KafkaError> {
    let cfg = cfg.as_ref();
    let admin: AdminClient<RelayClientContext> =
        client_config(cfg, &[]).create_with_context(RelayClientContext::new("admin"))?;
    // Declared after the admin client, so an early return drops (joins) it first.
    let log = MainQueueServer::start(admin.inner(), "admin");
    let replication = || TopicReplication::Fixed(cfg.topic_replication);
    let min_isr = cfg.topic_min_insync_replicas.map(|n| n.to_string());
    let new_topic = |name| {
        let topic = NewTopic::new(name, cfg.topic_partitions, replication());
        match &min_isr {
            Some(n) => topic.set("min.insync.replicas", n),
            None => topic,
        }
    };
    let mut new_topics: Vec<NewTopic> = std::iter::once(&topics.raw)
        .chain(&topics.retry)
        .chain([&topics.dlq, &topics.enriched])
        .map(|name| new_topic(name))
        .collect();
    // Every event id is a distinct key, so compaction alone keeps them all. With
    // RELAY_IDEMPOTENCY_RETENTION set, marks older than that are deleted too (not the
    // default: once a mark is deleted, a redelivery of that event would be synced again).
    let retention_ms = cfg.idempotency_retention.map(|r| r.as_millis().to_string());
    let mut idempotency = new_topic(&topics.idempotency);
    idempotency = match &retention_ms {
        Some(ms) => idempotency
            .set("cleanup.policy", "compact,delete")
            .set("retention.ms", ms),
        None => idempotency.set("cleanup.policy", "compact"),
    };
    new_topics.push(idempotency);
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
    for result in admin.create_topics(&new_topics, &opts).await? {
        match result {
            Ok(name) => tracing::info!(topic = %name, "created topic"),
            Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((name, code)) => {
                return Err(KafkaError::AdminOp(code)).inspect_err(
                    |_| tracing::error!(topic = %name, error = %code, "cannot create topic"),
                )
            }
        }
    }
    let names: Vec<String> = new_topics.iter().map(|t| t.name.to_string()).collect();
    tokio::task::spawn_blocking(move || {
        let waited = wait_for_leaders(&admin, &names, LEADER_WAIT);
        // The log thread holds the client's main queue: it goes before the client.
        drop(log);
        drop(admin);
        waited
    })
    .await
    .expect("metadata wait does not panic")
}

/// How long a start-up waits for new topics' partitions to get leaders.
const LEADER_WAIT: Duration = Duration::from_secs(30);

/// Waits until every partition of `names` has a leader that answers for it. Kafka answers
/// CreateTopics once the controller has recorded a topic, before the leaders have taken up
/// their partitions; reading watermarks in that window (the idempotency memory does at
/// start-up) fails with "not leader for partition". Blocking.
fn wait_for_leaders(
    admin: &AdminClient<RelayClientContext>,
    names: &[String],
    limit: Duration,
) -> Result<(), KafkaError> {
    let deadline = std::time::Instant::now() + limit;
    let client = admin.inner();
    let mut pending: Vec<(String, Option<i32>)> = names.iter().map(|n| (n.clone(), None)).collect();
    while !pending.is_empty() {
        // A topic whose partitions are not known yet is expanded from fresh metadata.
        if pending.iter().any(|(_, p)| p.is_none()) {
            let md = client.fetch_metadata(None, Duration::from_secs(5))?;
            let mut expanded = Vec::new();
            for (name, partition) in pending {
                let topic = md.topics().iter().find(|t| t.name() == name);
                match (partition, topic) {
                    (Some(_), _) => expanded.push((name, partition)),
                    (None, Some(t)) if t.error().is_none() && !t.partitions().is_empty() => {
                        expanded.extend(t.partitions().iter().map(|p| (name.clone(), Some(p.id()))))
                    }
                    (None, _) => expanded.push((name, None)),
                }
            }
            pending = expanded;
        }
        pending.retain(|(name, partition)| match partition {
            Some(p) => client
                .fetch_watermarks(name, *p, Duration::from_secs(5))
                .is_err(),
            None => true,
        });
        if pending.is_empty() {
            break;
        }
        if std::time::Instant::now() >= deadline {
            let (name, partition) = &pending[0];
            tracing::error!(topic = %name, ?partition, "new topic has no serving leader");
            return Err(KafkaError::MetadataFetch(
                RDKafkaErrorCode::LeaderNotAvailable,
            ));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(())
}
