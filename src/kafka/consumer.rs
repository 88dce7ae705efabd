//! The at-least-once consumer loop (after rust-rdkafka's `at_least_once` example, with
//! concurrency): records with different keys are handled concurrently up to a bound,
//! one key's records strictly in order, and a partition's offset is committed only up
//! to the lowest record that is not yet fully handled.
//!
//! The loop never stops polling the consumer, even when every handler slot is busy:
//! librdkafka serves rebalances from that poll and drops a member that does not poll
//! within `max.poll.interval.ms`. Backpressure is applied by pausing the assigned
//! partitions while too many records wait, and resuming them when the backlog drains.
//!
//! A record may carry a due time (`relay-not-before`, set on retry records). A record
//! that is not due pauses its partition and is handed over when due; the partition is
//! resumed then. Nothing sleeps in the receive loop, so other partitions keep flowing.
//!
//! Rebalances: a revoke first stops every record of the revoked partitions
//! from starting (records queued in key lanes are dropped, not handled), waits (bounded
//! by the drain timeout) for the handlers already running, and commits what is done;
//! only then does the group hand the partitions to another member, so one record is not
//! handled by two members at once. Offsets count as committed only when the broker
//! confirmed them (commit callback). The backpressure pause survives rebalances and due
//! retries. A handler that panics is caught: its record goes to
//! [`MessageHandler::handle_panic`] (the processor dead-letters it) and its key moves on.

use super::headers::{self, header_i64};
use super::offsets::{OffsetTracker, Ticket};
use crate::clock::now_ms;
use crate::metrics::Metrics;
use futures::FutureExt;
use rdkafka::client::ClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::{
    BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer,
};
use rdkafka::error::KafkaResult;
use rdkafka::message::OwnedMessage;
use rdkafka::statistics::Statistics;
use rdkafka::{Message, Offset, TopicPartitionList};
use std::collections::{HashMap, HashSet, VecDeque};
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{watch, Semaphore};

/// What became of a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Handled {
    /// Synced, skipped, or durably written to a retry or dead-letter topic: commit past it.
    Done,
    /// Not finished (the process is stopping): leave it for the next owner of the partition.
    Abandoned,
}

/// Handles one record to completion. Implementations never fail: every failure is
/// turned into a retry or dead-letter record, or into `Abandoned` during shutdown.
pub trait MessageHandler: Send + Sync + 'static {
    fn handle(&self, msg: OwnedMessage) -> Pin<Box<dyn Future<Output = Handled> + Send + '_>>;

    /// Called with the record whose `handle` panicked (and the panic's message). The
    /// default leaves the record uncommitted; the processor dead-letters it.
    fn handle_panic(
        &self,
        msg: OwnedMessage,
        panic: String,
    ) -> Pin<Box<dyn Future<Output = Handled> + Send + '_>> {
        let _ = (msg, panic);
        Box::pin(std::future::ready(Handled::Abandoned))
    }
}

/// Settings of one consumer loop.
#[derive(Debug, Clone)]
pub struct ConsumerOptions {
    pub max_in_flight: usize,
    pub commit_interval: Duration,
    /// Wait for `relay-not-before` before handing a record over (retry topics).
    pub honour_not_before: bool,
    /// How long shutdown waits for in-flight records before committing what is done.
    pub drain_timeout: Duration,
}

/// Rebalance and statistics callbacks: commits finished work before partitions are taken
/// away, and exports consumer lag.
pub(crate) struct RelayConsumerContext {
    tracker: Arc<OffsetTracker>,
    metrics: Arc<Metrics>,
    assigned: Arc<AtomicBool>,
    /// The partitions this member owns; lag is exported for these only.
    owned: Mutex<HashSet<Partition>>,
    /// Set while the receive loop holds the partitions paused for backpressure: a
    /// rebalance or a due retry must not resume them.
    backpressure: Arc<AtomicBool>,
    /// How long a revoke waits for the revoked partitions' running handlers.
    revoke_wait: Duration,
}

impl ClientContext for RelayConsumerContext {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, log_message: &str) {
        super::client_context::log_line("consumer", level, fac, log_message);
    }

    fn error(&self, error: rdkafka::error::KafkaError, reason: &str) {
        super::client_context::client_error("consumer", &error, reason);
    }

    fn stats(&self, stats: Statistics) {
        let owned = self.owned.lock().expect("owned lock");
        for (topic, t) in &stats.topics {
            for (partition, p) in &t.partitions {
                if p.partition >= 0
                    && p.consumer_lag >= 0
                    && owned.contains(&(topic.clone(), *partition))
                {
                    self.metrics
                        .consumer_lag
                        .with_label_values(&[topic, &partition.to_string()])
                        .set(p.consumer_lag);
                }
            }
        }
    }
}

impl RelayConsumerContext {
    /// Waits until no handler of `revoked` runs, at most `revoke_wait`. Runs on the
    /// thread that polls the consumer (a runtime worker): on a multi-thread runtime the
    /// wait moves that worker's other tasks away (`block_in_place`); on a current-thread
    /// runtime the handlers could not progress while it blocks, so it does not wait.
    fn wait_for_handlers(&self, revoked: &[Partition]) {
        if self.tracker.handling(revoked) == 0 {
            return;
        }
        let deadline = std::time::Instant::now() + self.revoke_wait;
        let wait = || {
            while self.tracker.handling(revoked) > 0 && std::time::Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(10));
            }
        };
        match tokio::runtime::Handle::try_current().map(|h| h.runtime_flavor()) {
            Ok(tokio::runtime::RuntimeFlavor::CurrentThread) => {}
            Ok(_) => tokio::task::block_in_place(wait),
            Err(_) => wait(),
        }
        let left = self.tracker.handling(revoked);
        if left > 0 {
            tracing::warn!(
                handlers = left,
                "revoked partitions still have running handlers; the next owner may handle their records again"
            );
        }
    }
}

impl ConsumerContext for RelayConsumerContext {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(tpl) = rebalance {
            let revoked: Vec<(String, i32)> = tpl
                .elements()
                .iter()
                .map(|e| (e.topic().to_string(), e.partition()))
                .collect();
            // Nothing of these partitions starts from here on; what runs may finish.
            self.tracker.revoke(&revoked);
            self.wait_for_handlers(&revoked);
            commit_tracked(consumer, &self.tracker, Some(&revoked), CommitMode::Sync);
            self.tracker.forget(&revoked);
            let mut owned = self.owned.lock().expect("owned lock");
            for (topic, partition) in &revoked {
                owned.remove(&(topic.clone(), *partition));
                let _ = self
                    .metrics
                    .consumer_lag
                    .remove_label_values(&[topic, &partition.to_string()]);
            }
            tracing::info!(partitions = revoked.len(), "partitions revoked");
        }
    }

    fn post_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Assign(tpl) => {
                // librdkafka keeps an application pause across a revoke and a later
                // re-assignment of the same partition to this consumer, and a record parked
                // before the revoke is dropped without resuming (its ticket is no longer
                // current): the partition would stay paused for good. A fresh assignment
                // has nothing parked, so resume it (a no-op where nothing was paused),
                // unless the loop holds everything paused for backpressure: then pause it
                // too, and the loop resumes it with the rest when the backlog drained.
                let result = if self.backpressure.load(Ordering::SeqCst) {
                    consumer.pause(tpl)
                } else {
                    consumer.resume(tpl)
                };
                if let Err(e) = result {
                    tracing::warn!(error = %e, "cannot set the pause of assigned partitions");
                }
                let mut owned = self.owned.lock().expect("owned lock");
                for e in tpl.elements() {
                    owned.insert((e.topic().to_string(), e.partition()));
                }
                self.assigned.store(tpl.count() > 0, Ordering::Relaxed);
                tracing::info!(partitions = tpl.count(), "partitions assigned");
            }
            Rebalance::Revoke(_) => self.assigned.store(false, Ordering::Relaxed),
            Rebalance::Error(e) => tracing::warn!(error = %e, "rebalance error"),
        }
    }

    /// Only offsets the broker confirmed count as committed; a failed commit leaves them
    /// offered, so the next commit tick tries again.
    fn commit_callback(&self, result: KafkaResult<()>, offsets: &TopicPartitionList) {
        match result {
            Ok(()) => {
                let confirmed: Vec<(String, i32, i64)> = offsets
                    .elements()
                    .iter()
                    .filter_map(|e| match e.offset() {
                        Offset::Offset(o) if e.error().is_ok() => {
                            Some((e.topic().to_string(), e.partition(), o))
                        }
                        _ => None,
                    })
                    .collect();
                self.tracker.mark_committed(&confirmed);
            }
            Err(e) => tracing::warn!(error = %e, "offset commit failed; will retry"),
        }
    }
}

fn commit_tracked<C: Consumer<X>, X: ConsumerContext>(
    consumer: &C,
    tracker: &OffsetTracker,
    only: Option<&[(String, i32)]>,
    mode: CommitMode,
) {
    let offsets = tracker.committable(only);
    if offsets.is_empty() {
        return;
    }
    let mut tpl = TopicPartitionList::new();
    for (t, p, o) in &offsets {
        if tpl.add_partition_offset(t, *p, Offset::Offset(*o)).is_err() {
            return;
        }
    }
    // An async commit only queues the request: the commit callback marks what the broker
    // confirmed. A sync commit returns the broker's answer.
    match consumer.commit(&tpl, mode) {
        Ok(()) if matches!(mode, CommitMode::Sync) => tracker.mark_committed(&offsets),
        Ok(()) => {}
        Err(e) => tracing::warn!(error = %e, "offset commit failed; will retry"),
    }
}

/// A received record and its place in the offset tracker.
struct Job {
    msg: OwnedMessage,
    ticket: Ticket,
}

/// How long shutdown waits for the broker to confirm the final offset commit.
const FINAL_COMMIT_TIMEOUT: Duration = Duration::from_secs(10);

/// Records received beyond `max_in_flight` before the loop pauses its partitions.
const BACKLOG_SLACK: usize = 4096;

/// A topic-partition, as the loop keeps them in sets.
type Partition = (String, i32);

/// One consumer group member running a [`MessageHandler`] over its subscription.
pub struct ConsumerLoop {
    consumer: Arc<StreamConsumer<RelayConsumerContext>>,
    tracker: Arc<OffsetTracker>,
    assigned: Arc<AtomicBool>,
    backpressure: Arc<AtomicBool>,
    opts: ConsumerOptions,
    metrics: Arc<Metrics>,
}

impl ConsumerLoop {
    /// Creates the consumer from `config` (which must carry `group.id`) and subscribes.
    pub fn new(
        mut config: rdkafka::ClientConfig,
        topics: &[&str],
        opts: ConsumerOptions,
        metrics: Arc<Metrics>,
    ) -> KafkaResult<Self> {
        let tracker = Arc::new(OffsetTracker::new());
        let assigned = Arc::new(AtomicBool::new(false));
        let backpressure = Arc::new(AtomicBool::new(false));
        // Commits are ours alone: only offsets of fully handled records are ever committed.
        config.set("enable.auto.commit", "false");
        config.set("enable.auto.offset.store", "false");
        // librdkafka prefetches up to 100,000 records per partition by default; what is
        // prefetched is dropped on every backpressure pause, so keep it small.
        if config.get("queued.min.messages").is_none() {
            config.set("queued.min.messages", "500");
        }
        if config.get("statistics.interval.ms").is_none() {
            config.set("statistics.interval.ms", "5000");
        }
        let context = RelayConsumerContext {
            tracker: tracker.clone(),
            metrics: metrics.clone(),
            assigned: assigned.clone(),
            owned: Mutex::default(),
            backpressure: backpressure.clone(),
            revoke_wait: opts.drain_timeout,
        };
        let consumer: StreamConsumer<RelayConsumerContext> = config.create_with_context(context)?;
        consumer.subscribe(topics)?;
        Ok(ConsumerLoop {
            consumer: Arc::new(consumer),
            tracker,
            assigned,
            backpressure,
            opts,
            metrics,
        })
    }

    /// A flag that is true while the group has assigned this member any partition.
    pub(crate) fn assigned_flag(&self) -> Arc<AtomicBool> {
        self.assigned.clone()
    }

    /// Receives and handles records until `shutdown` turns true, then stops receiving,
    /// drains in-flight records (bounded by `drain_timeout`) and commits what is done.
    pub async fn run<H: MessageHandler>(
        self,
        handler: Arc<H>,
        mut shutdown: watch::Receiver<bool>,
    ) {
        let lanes = Arc::new(KeyLanes {
            active: Mutex::default(),
            permits: Arc::new(Semaphore::new(self.opts.max_in_flight)),
            pending: Arc::new(AtomicUsize::new(0)),
        });
        let parked: Arc<Mutex<HashSet<Partition>>> = Arc::default();
        // Records may wait in their lanes up to a fixed slack beyond the handler slots before
        // the partitions are paused. A pause makes librdkafka drop what it prefetched
        // (bounded by `queued.min.messages`) and fetch it again on resume, so a pause must
        // drain far more records than that before the loop resumes.
        let high = self.opts.max_in_flight + BACKLOG_SLACK;
        let low = self.opts.max_in_flight + BACKLOG_SLACK / 8;
        let committer = self.spawn_committer(shutdown.clone());
        let mut tick = tokio::time::interval(Duration::from_millis(100));
        loop {
            let received = tokio::select! {
                _ = shutdown.wait_for(|s| *s) => break,
                _ = tick.tick() => None,
                m = self.consumer.recv() => Some(m.map(|m| m.detach())),
            };
            match received {
                None => {}
                Some(Ok(msg)) => {
                    let ticket = self
                        .tracker
                        .begin(msg.topic(), msg.partition(), msg.offset());
                    self.metrics.in_flight.inc();
                    lanes.pending.fetch_add(1, Ordering::Relaxed);
                    match self.due_in(&msg) {
                        Some(wait) => self.park(
                            Job { msg, ticket },
                            wait,
                            &lanes,
                            &parked,
                            handler.clone(),
                            shutdown.clone(),
                        ),
                        None => lanes.dispatch(
                            Job { msg, ticket },
                            handler.clone(),
                            self.tracker.clone(),
                            self.metrics.clone(),
                        ),
                    }
                }
                Some(Err(e)) => {
                    tracing::warn!(error = %e, "consumer error");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
            let pending = lanes.pending.load(Ordering::Relaxed);
            let paused = self.backpressure.load(Ordering::SeqCst);
            if !paused && pending >= high {
                self.backpressure.store(true, Ordering::SeqCst);
                self.set_paused(true, &parked);
            } else if paused && pending <= low {
                self.backpressure.store(false, Ordering::SeqCst);
                self.set_paused(false, &parked);
            }
        }
        tracing::info!(
            in_flight = self.tracker.in_flight(),
            "consumer stopping; draining"
        );
        let deadline = tokio::time::Instant::now() + self.opts.drain_timeout;
        while lanes.pending.load(Ordering::Relaxed) > 0 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        committer.abort();
        // A synchronous commit waits for the broker without a time limit: with the broker
        // gone it would hold this task, and the process, forever. It runs on its own thread
        // and shutdown goes on after FINAL_COMMIT_TIMEOUT; what stays uncommitted is handled
        // again by the next owner and deduplicated by the idempotency marks.
        let (done_tx, done_rx) = tokio::sync::oneshot::channel();
        let (consumer, tracker) = (self.consumer.clone(), self.tracker.clone());
        std::thread::spawn(move || {
            commit_tracked(&*consumer, &tracker, None, CommitMode::Sync);
            let _ = done_tx.send(());
        });
        if tokio::time::timeout(FINAL_COMMIT_TIMEOUT, done_rx)
            .await
            .is_err()
        {
            tracing::error!(
                timeout_s = FINAL_COMMIT_TIMEOUT.as_secs(),
                "final offset commit not confirmed by the broker; stopping anyway (the next owner handles those records again, deduplicated)"
            );
            return;
        }
        self.consumer.unsubscribe();
        tracing::info!("consumer stopped");
    }

    /// Pauses or resumes every assigned partition except those a parked retry holds paused.
    fn set_paused(&self, pause: bool, parked: &Mutex<HashSet<Partition>>) {
        let Ok(assignment) = self.consumer.assignment() else {
            return;
        };
        let parked = parked.lock().expect("parked lock");
        let mut tpl = TopicPartitionList::new();
        for e in assignment.elements() {
            if !parked.contains(&(e.topic().to_string(), e.partition())) {
                tpl.add_partition(e.topic(), e.partition());
            }
        }
        let result = if pause {
            self.consumer.pause(&tpl)
        } else {
            self.consumer.resume(&tpl)
        };
        match result {
            Ok(()) => tracing::debug!(pause, partitions = tpl.count(), "backpressure"),
            Err(e) => tracing::warn!(error = %e, pause, "cannot change backpressure pause"),
        }
    }

    fn due_in(&self, msg: &OwnedMessage) -> Option<Duration> {
        if !self.opts.honour_not_before {
            return None;
        }
        let not_before = header_i64(msg, headers::NOT_BEFORE)?;
        let now = now_ms();
        (not_before > now).then(|| Duration::from_millis((not_before - now) as u64))
    }

    /// Pauses the record's partition and hands the record over when it is due. librdkafka
    /// drops what it prefetched for a paused partition and fetches again from after this
    /// record on resume, so nothing is skipped.
    fn park<H: MessageHandler>(
        &self,
        job: Job,
        wait: Duration,
        lanes: &Arc<KeyLanes>,
        parked: &Arc<Mutex<HashSet<Partition>>>,
        handler: Arc<H>,
        mut shutdown: watch::Receiver<bool>,
    ) {
        let tp: Partition = (job.msg.topic().to_string(), job.msg.partition());
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition(&tp.0, tp.1);
        parked.lock().expect("parked lock").insert(tp.clone());
        if let Err(e) = self.consumer.pause(&tpl) {
            tracing::warn!(error = %e, topic = %tp.0, partition = tp.1, "cannot pause partition");
        }
        let (consumer, tracker, metrics) = (
            self.consumer.clone(),
            self.tracker.clone(),
            self.metrics.clone(),
        );
        let (lanes, parked) = (lanes.clone(), parked.clone());
        let backpressure = self.backpressure.clone();
        tokio::spawn(async move {
            let stopping = tokio::select! {
                _ = tokio::time::sleep(wait) => false,
                _ = shutdown.wait_for(|s| *s) => true,
            };
            parked.lock().expect("parked lock").remove(&tp);
            // Stopping, or revoked while waiting: leave it uncommitted for the next owner
            // (a re-assignment resumes the partition, see `post_rebalance`).
            if stopping || !tracker.is_current(&tp.0, tp.1, job.ticket) {
                metrics.in_flight.dec();
                lanes.pending.fetch_sub(1, Ordering::Relaxed);
                return;
            }
            lanes.dispatch(job, handler, tracker, metrics);
            // Under backpressure the partition stays paused with the others; the loop
            // resumes it when the backlog drained (it is no longer in `parked`). Checked
            // under the `parked` lock, which the loop holds while it pauses, so a pause
            // that starts now cannot be undone by this resume.
            let _parked = parked.lock().expect("parked lock");
            if !backpressure.load(Ordering::SeqCst) {
                if let Err(e) = consumer.resume(&tpl) {
                    tracing::warn!(error = %e, topic = %tp.0, partition = tp.1, "cannot resume partition");
                }
            }
        });
    }

    fn spawn_committer(&self, mut shutdown: watch::Receiver<bool>) -> tokio::task::JoinHandle<()> {
        let (consumer, tracker) = (self.consumer.clone(), self.tracker.clone());
        let interval = self.opts.commit_interval;
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(interval);
            loop {
                tokio::select! {
                    _ = shutdown.wait_for(|s| *s) => return,
                    _ = tick.tick() => commit_tracked(&*consumer, &tracker, None, CommitMode::Async),
                }
            }
        })
    }
}

/// Keeps one key's records in order: a key with a record in progress queues the next
/// ones behind it; other keys start at once, up to `permits` handled at the same time.
struct KeyLanes {
    active: Mutex<HashMap<Vec<u8>, VecDeque<Job>>>,
    permits: Arc<Semaphore>,
    /// Records received and not yet finished (queued, parked or being handled).
    pending: Arc<AtomicUsize>,
}

impl KeyLanes {
    fn dispatch<H: MessageHandler>(
        self: &Arc<Self>,
        job: Job,
        handler: Arc<H>,
        tracker: Arc<OffsetTracker>,
        metrics: Arc<Metrics>,
    ) {
        let key = lane_key(&job.msg);
        {
            let mut active = self.active.lock().expect("lanes lock");
            if let Some(queue) = active.get_mut(&key) {
                queue.push_back(job);
                return;
            }
            active.insert(key.clone(), VecDeque::new());
        }
        let lanes = self.clone();
        tokio::spawn(async move {
            let mut next = Some(job);
            while let Some(Job { msg, ticket }) = next.take() {
                let (topic, partition) = (msg.topic().to_string(), msg.partition());
                let permit = lanes
                    .permits
                    .acquire()
                    .await
                    .expect("semaphore never closed");
                // A record of a partition revoked since it was received is not handled:
                // its new owner handles it (it stays uncommitted here).
                if tracker.start(&topic, partition, ticket) {
                    let handled = handle_guarded(&*handler, msg).await;
                    tracker.finish(&topic, partition, ticket, handled == Handled::Done);
                } else {
                    tracing::debug!(%topic, partition, offset = ticket.offset, "record of a revoked partition dropped");
                }
                drop(permit);
                metrics.in_flight.dec();
                lanes.pending.fetch_sub(1, Ordering::Relaxed);
                let mut active = lanes.active.lock().expect("lanes lock");
                next = active.get_mut(&key).and_then(VecDeque::pop_front);
                if next.is_none() {
                    active.remove(&key);
                }
            }
        });
    }
}

/// Runs the handler; a panic is caught and the record passed to `handle_panic` (itself
/// guarded: a second panic leaves the record uncommitted), so the key's lane moves on.
async fn handle_guarded<H: MessageHandler>(handler: &H, msg: OwnedMessage) -> Handled {
    let copy = msg.clone();
    match AssertUnwindSafe(handler.handle(msg)).catch_unwind().await {
        Ok(handled) => handled,
        Err(panic) => {
            let text = panic_text(&*panic);
            tracing::error!(topic = copy.topic(), partition = copy.partition(), offset = copy.offset(), panic = %text, "handler panicked");
            AssertUnwindSafe(handler.handle_panic(copy, text))
                .catch_unwind()
                .await
                .unwrap_or(Handled::Abandoned)
        }
    }
}

/// The message of a panic payload (`panic!` with a literal or a formatted string).
fn panic_text(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".into())
}

/// Records without a key are independent of each other.
fn lane_key(msg: &OwnedMessage) -> Vec<u8> {
    match msg.key() {
        Some(k) if !k.is_empty() => k.to_vec(),
        _ => format!("\0{}:{}:{}", msg.topic(), msg.partition(), msg.offset()).into_bytes(),
    }
}
