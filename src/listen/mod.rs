//! `genesys-relay listen`: the Genesys Cloud Notifications API as a source. Channels are
//! opened outward (no public endpoint needed), subscribed to `RELAY_LISTEN_TOPICS` and the
//! queue conversation topics of `RELAY_LISTEN_QUEUES`, and every notification read from
//! their WebSockets is written to the raw topic exactly as the ingress writes a delivery:
//! the same [`crate::event::parse_event`] (so the same event id rule), the same record
//! and headers, through the same [`crate::event::RawTopic::write`] (`acks=all`).
//!
//! Invariant: a notification read from a socket is either acknowledged by Kafka or
//! counted in `relay_listen_dropped_total` (which only a shutdown with an unreachable
//! broker, or a message that is not a notification, can move). While Kafka cannot take
//! records, the bounded buffer fills and the sockets are no longer read: backpressure,
//! not loss on our side.
//!
//! Parts: [`settings`] (`RELAY_LISTEN_*`), [`topics`] (which topics, on which channel),
//! [`api`] (the Platform API calls), [`channel`] (one channel group's lifecycle and its
//! seamless replacements), [`status`] (what Genesys answered per topic); this module is
//! the supervisor and the Kafka writer.
//!
//! Start-up fails when Genesys Cloud permits none of the topics (a listener that can
//! never deliver must not look healthy), or when the OAuth client has no room for this
//! process's channels next to the ones it already holds.

mod api;
mod channel;
mod settings;
mod status;
mod topics;

pub use settings::{ListenSettings, QueueSelection};
#[allow(unused_imports)] // TopicState: for the operator view
pub(crate) use status::{ListenStatus, TopicState};
pub use topics::PlanError;
pub(crate) use topics::{plan, queue_topic};

use std::collections::BTreeSet;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use tokio::sync::{mpsc, watch, Semaphore};
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::{sleep, Instant};

use crate::clock::DoublingBackoff;
use crate::event::{parse_event, RawTopic};
use crate::genesys::{GenesysClient, HttpError};
use crate::metrics::Metrics;
use crate::schema::RawEvent;
use api::NotificationsApi;
#[cfg(test)]
pub(crate) use api::{Rejected, Subscribed};
use channel::{GroupCtx, Received};

/// Records being written to Kafka at once; with the buffer, the bound on what was read
/// from sockets and is not acknowledged yet.
const IN_FLIGHT: usize = 256;
const WRITE_BACKOFF_MAX: Duration = Duration::from_secs(2);
/// How long start-up waits for every channel group's first subscription answer before
/// it goes on without the verdict (Genesys unreachable: the groups keep retrying).
const FIRST_ANSWER_WAIT: Duration = Duration::from_secs(30);

/// Why the listener could not start.
#[derive(Debug, thiserror::Error)]
pub enum ListenError {
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    #[error(transparent)]
    Plan(#[from] PlanError),
    #[error("cannot list the queues for RELAY_LISTEN_QUEUES=all: {0}")]
    Queues(HttpError),
    #[error("cannot build HTTP client: {0}")]
    Http(#[from] reqwest::Error),
    #[error(
        "Genesys Cloud permitted none of the {topics} topics, so nothing would ever be \
         delivered: {}", reasons.join("; ")
    )]
    NothingPermitted { topics: usize, reasons: Vec<String> },
    #[error("cannot list the OAuth client's notification channels: {0}")]
    ChannelList(HttpError),
    #[error(
        "the OAuth client already holds {existing} notification channels; this process needs \
         {needed} (plus 1 kept free for rotation) and Genesys Cloud allows {limit} per OAuth \
         client: a 21st would remove another channel, possibly one another process listens \
         on. Give each process its own OAuth client, or listen to fewer topics"
    )]
    ClientChannels {
        existing: usize,
        needed: usize,
        limit: usize,
    },
}

/// Everything the Kafka writer needs.
struct Writer {
    raw: RawTopic,
    metrics: Arc<Metrics>,
    /// Set by the supervisor when shutdown starts: past it, what Kafka has not taken is
    /// given up (and counted) instead of retried.
    give_up_at: Arc<OnceLock<Instant>>,
}

/// The process-wide limits the listener follows.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Timeouts {
    /// `RELAY_SHUTDOWN_TIMEOUT`: how long unacknowledged notifications are retried after
    /// shutdown starts.
    pub(crate) shutdown: Duration,
    /// `RELAY_HTTP_TIMEOUT`: the WebSocket connect timeout.
    pub(crate) connect: Duration,
}

/// Starts listening: resolves and plans the topics (a start-up error names what is
/// wrong), then runs until `shutdown`; the returned task ends once every socket is closed
/// and every notification read is acknowledged (or counted dropped). `genesys` is the
/// listener's own client, so its own request budget (not shared with a worker in `serve`).
/// Each topic's subscription state and the last heartbeat are recorded in `status`, whose
/// other end is the operator console's listen page.
pub(crate) async fn start(
    settings: &ListenSettings,
    timeouts: Timeouts,
    genesys: GenesysClient,
    raw: RawTopic,
    metrics: Arc<Metrics>,
    shutdown: watch::Receiver<bool>,
    status: Arc<ListenStatus>,
) -> Result<JoinHandle<()>, ListenError> {
    let settings = settings.clone();
    let api = Arc::new(NotificationsApi::new(genesys));
    let wanted = wanted_topics(&settings, &api)
        .await
        .map_err(ListenError::Queues)?;
    let groups = plan(
        &[],
        &wanted,
        settings.max_topics_per_channel,
        settings.max_channels,
    )?;
    let existing = api
        .client_channel_count()
        .await
        .map_err(ListenError::ChannelList)?;
    if existing + groups.len() + 1 > channel::CLIENT_CHANNEL_LIMIT {
        return Err(ListenError::ClientChannels {
            existing,
            needed: groups.len(),
            limit: channel::CLIENT_CHANNEL_LIMIT,
        });
    }
    tracing::info!(
        topics = wanted.len(),
        channels = groups.len(),
        client_channels = existing,
        "listening to Genesys Cloud notifications"
    );
    // Every subscribed topic's series exists from the start, at zero, labelled as its
    // events will be (the ingress parser's event type: the topic with ids as `{id}`).
    let labels: BTreeSet<String> = wanted
        .iter()
        .filter_map(|topic| {
            let probe = serde_json::json!({"topicName": topic, "eventBody": {}}).to_string();
            parse_event(probe.as_bytes(), 0, None)
                .ok()
                .map(|e| e.event_type)
        })
        .collect();
    for label in &labels {
        metrics
            .listen_notifications_total
            .with_label_values(&[label]);
    }
    let give_up_at = Arc::new(OnceLock::new());
    let writer = Writer {
        raw,
        metrics: metrics.clone(),
        give_up_at: Arc::clone(&give_up_at),
    };
    let group_count = groups.len();
    let supervisor = Supervisor {
        give_up_at,
        api,
        settings,
        metrics,
        shutdown: shutdown.clone(),
        shutdown_timeout: timeouts.shutdown,
        connect_timeout: timeouts.connect,
        status: Arc::clone(&status),
        abandoned: Arc::default(),
    };
    let task = tokio::spawn(supervisor.run(groups, writer));
    first_verdict(&status, group_count, wanted.len(), shutdown, task).await
}

/// Waits for every group's first subscription answer; fails start-up (stopping the
/// listener) when no topic at all was permitted.
async fn first_verdict(
    status: &ListenStatus,
    groups: usize,
    topics: usize,
    mut shutdown: watch::Receiver<bool>,
    task: JoinHandle<()>,
) -> Result<JoinHandle<()>, ListenError> {
    tokio::select! {
        answered = tokio::time::timeout(FIRST_ANSWER_WAIT, status.all_answered(groups)) => {
            if answered.is_err() {
                tracing::warn!(wait_s = FIRST_ANSWER_WAIT.as_secs(), "no subscription answer from Genesys Cloud yet; going on, the channels keep retrying");
                return Ok(task);
            }
        }
        _ = channel::stopped(&mut shutdown) => return Ok(task),
    }
    let (permitted, reasons) = status.summary();
    if permitted == 0 {
        // Dropping the supervisor drops its groups (their sockets close).
        task.abort();
        return Err(ListenError::NothingPermitted { topics, reasons });
    }
    Ok(task)
}

/// The literal topics plus one conversation topic per selected queue.
async fn wanted_topics(
    settings: &ListenSettings,
    api: &NotificationsApi,
) -> Result<BTreeSet<String>, HttpError> {
    let mut wanted: BTreeSet<String> = settings.topics.iter().cloned().collect();
    match &settings.queues {
        QueueSelection::Off => {}
        QueueSelection::Ids(ids) => wanted.extend(ids.iter().map(|id| queue_topic(id))),
        QueueSelection::All => {
            let ids = api.all_queue_ids().await?;
            wanted.extend(ids.iter().map(|id| queue_topic(id)));
        }
    }
    Ok(wanted)
}

struct Supervisor {
    give_up_at: Arc<OnceLock<Instant>>,
    api: Arc<NotificationsApi>,
    settings: ListenSettings,
    metrics: Arc<Metrics>,
    shutdown: watch::Receiver<bool>,
    shutdown_timeout: Duration,
    connect_timeout: Duration,
    status: Arc<ListenStatus>,
    abandoned: Arc<channel::Abandoned>,
}

impl Supervisor {
    async fn run(self, mut current: Vec<Vec<String>>, writer: Writer) {
        let (tx, rx) = mpsc::channel(self.settings.buffer);
        let pump = tokio::spawn(writer.run(rx));
        let slots = Arc::new(Semaphore::new(self.settings.max_channels));
        let mut groups = JoinSet::new();
        let mut senders = Vec::new();
        for (index, topics) in current.iter().enumerate() {
            senders.push(self.spawn_group(&mut groups, index, topics.clone(), &slots, &tx));
        }
        let mut shutdown = self.shutdown.clone();
        let relist = self.settings.queues == QueueSelection::All;
        let mut next_relist = Instant::now() + self.settings.queue_refresh;
        loop {
            tokio::select! {
                _ = channel::stopped(&mut shutdown) => break,
                _ = tokio::time::sleep_until(next_relist), if relist => {
                    next_relist = Instant::now() + self.settings.queue_refresh;
                    self.relist(&mut current, &mut senders, &mut groups, &slots, &tx).await;
                }
            }
        }
        let _ = self.give_up_at.set(Instant::now() + self.shutdown_timeout);
        drop(tx);
        while groups.join_next().await.is_some() {}
        drop(senders);
        let _ = pump.await;
        tracing::info!("listener stopped");
    }

    fn spawn_group(
        &self,
        set: &mut JoinSet<()>,
        index: usize,
        topics: Vec<String>,
        slots: &Arc<Semaphore>,
        tx: &mpsc::Sender<Received>,
    ) -> watch::Sender<Vec<String>> {
        let (topics_tx, topics_rx) = watch::channel(topics);
        let ctx = GroupCtx {
            index,
            api: Arc::clone(&self.api),
            settings: self.settings.clone(),
            slots: Arc::clone(slots),
            out: tx.clone(),
            metrics: Arc::clone(&self.metrics),
            shutdown: self.shutdown.clone(),
            shutdown_timeout: self.shutdown_timeout,
            connect_timeout: self.connect_timeout,
            status: Arc::clone(&self.status),
            abandoned: Arc::clone(&self.abandoned),
        };
        set.spawn(channel::run_group(ctx, topics_rx));
        topics_tx
    }

    /// Re-lists the queues and moves the subscriptions to the new plan: changed groups
    /// get their new topic list, extra groups are started.
    async fn relist(
        &self,
        current: &mut Vec<Vec<String>>,
        senders: &mut Vec<watch::Sender<Vec<String>>>,
        groups: &mut JoinSet<()>,
        slots: &Arc<Semaphore>,
        tx: &mpsc::Sender<Received>,
    ) {
        let wanted = match wanted_topics(&self.settings, &self.api).await {
            Ok(w) => w,
            Err(error) => {
                tracing::warn!(%error, "cannot re-list the queues; keeping the current subscriptions");
                return;
            }
        };
        let next = match plan(
            current,
            &wanted,
            self.settings.max_topics_per_channel,
            self.settings.max_channels,
        ) {
            Ok(next) => next,
            Err(error) => {
                tracing::error!(%error, "cannot subscribe every queue; keeping the current subscriptions");
                return;
            }
        };
        self.status.retain(&wanted);
        for (index, topics) in next.iter().enumerate() {
            match senders.get(index) {
                Some(sender) if current.get(index) != Some(topics) => {
                    let _ = sender.send(topics.clone());
                }
                Some(_) => {}
                None => senders.push(self.spawn_group(groups, index, topics.clone(), slots, tx)),
            }
        }
        if next != *current {
            tracing::info!(
                topics = wanted.len(),
                channels = next.len(),
                "queue topics changed"
            );
        }
        *current = next;
    }
}

impl Writer {
    /// Writes buffered notifications to Kafka, up to [`IN_FLIGHT`] at once, each retried
    /// until acknowledged; ends when every sender is gone and the buffer is written.
    async fn run(self, mut rx: mpsc::Receiver<Received>) {
        let writer = Arc::new(self);
        let in_flight = Arc::new(Semaphore::new(IN_FLIGHT));
        let mut tasks = JoinSet::new();
        while let Some(item) = rx.recv().await {
            while tasks.try_join_next().is_some() {}
            let Ok(permit) = Arc::clone(&in_flight).acquire_owned().await else {
                break;
            };
            if writer.giving_up() {
                writer
                    .metrics
                    .listen_dropped_total
                    .with_label_values(&["shutdown"])
                    .inc();
                continue;
            }
            let event = match parse_event(item.text.as_bytes(), item.received_at_ms, None) {
                Ok(event) => event,
                Err(error) => {
                    tracing::warn!(%error, "a socket message is not a notification; skipped");
                    writer
                        .metrics
                        .listen_dropped_total
                        .with_label_values(&["unparseable"])
                        .inc();
                    continue;
                }
            };
            let w = Arc::clone(&writer);
            tasks.spawn(async move {
                w.write(event).await;
                drop(permit);
            });
        }
        while tasks.join_next().await.is_some() {}
    }

    /// Whether shutdown started more than `RELAY_SHUTDOWN_TIMEOUT` ago.
    fn giving_up(&self) -> bool {
        self.give_up_at
            .get()
            .is_some_and(|at| Instant::now() >= *at)
    }

    /// One record, retried with backoff until Kafka acknowledges it; after a shutdown
    /// it is given up (and counted) once `RELAY_SHUTDOWN_TIMEOUT` has passed.
    async fn write(&self, event: RawEvent) {
        let record = match self.raw.record(&event) {
            Ok(v) => v,
            Err(error) => {
                tracing::error!(%error, event_id = %event.event_id, "cannot encode a notification");
                self.metrics
                    .listen_dropped_total
                    .with_label_values(&["unencodable"])
                    .inc();
                return;
            }
        };
        // The listener's failure policy: Genesys does not redeliver a notification, so
        // the record is retried until Kafka takes it (or shutdown gives up).
        let mut backoff = DoublingBackoff::new(WRITE_BACKOFF_MAX);
        loop {
            match self.raw.write(&record).await {
                Ok(_) => {
                    self.metrics
                        .listen_notifications_total
                        .with_label_values(&[&event.event_type])
                        .inc();
                    return;
                }
                Err(error) => {
                    if self.giving_up() {
                        tracing::error!(%error, event_id = %event.event_id, "shutting down and Kafka still refuses; notification dropped");
                        self.metrics
                            .listen_dropped_total
                            .with_label_values(&["shutdown"])
                            .inc();
                        return;
                    }
                    let wait = backoff.next_wait();
                    tracing::warn!(%error, event_id = %event.event_id, wait_ms = wait.as_millis() as u64, "cannot write a notification yet; retrying");
                    sleep(wait).await;
                }
            }
        }
    }
}
