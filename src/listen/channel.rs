//! One channel group's lifecycle: a Genesys Cloud notification channel subscribed to a
//! fixed set of topics, its WebSocket read into the listener's buffer, and its
//! replacements.
//!
//! Invariant: a planned replacement (on `v2.system.socket_closing`, ahead of `expires`,
//! or when a subscription change fails) is created, subscribed and connected **before**
//! the old socket is closed, and the old socket is still read for `overlap` afterwards,
//! so no moment exists where nothing listens; the overlap's duplicates share event ids.
//! A dropped socket first reconnects to the same channel (its subscriptions live on),
//! then falls back to a new channel, with capped exponential backoff and jitter; only
//! that gap is time when Genesys Cloud may send events nobody receives, and it is
//! counted in `relay_listen_disconnected_seconds_total`.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use futures::{SinkExt, StreamExt};
use rand::Rng;
use serde_json::Value;
use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch, OwnedSemaphorePermit, Semaphore};
use tokio::time::{sleep, sleep_until, Instant};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use super::api::{ChannelInfo, NotificationsApi};
use super::settings::ListenSettings;
use super::status::ListenStatus;
use crate::clock::now_ms;
use crate::metrics::Metrics;

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// The heartbeat / pong topic: never an event.
pub(crate) const METADATA_TOPIC: &str = "channel.metadata";
/// The warning that the service will close this socket in about a minute.
pub(crate) const SOCKET_CLOSING_TOPIC: &str = "v2.system.socket_closing";
/// How long a closing socket may take to answer our close frame.
const CLOSE_DRAIN: Duration = Duration::from_secs(2);
/// How long a rotation waits for a free channel slot before trying again later.
const SLOT_WAIT: Duration = Duration::from_secs(20);
/// Channels one OAuth client may hold across all its tokens and processes; a 21st
/// removes the one with the oldest last use (SDK `NotificationsApi.md`, docs/listen.md).
pub(crate) const CLIENT_CHANNEL_LIMIT: usize = 20;

/// A notification as read from a socket, waiting for Kafka.
#[derive(Debug)]
pub(crate) struct Received {
    pub(crate) text: String,
    pub(crate) received_at_ms: i64,
}

/// Why a group reconnects (the `reason` label of `relay_listen_reconnects_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Reason {
    SocketClosing,
    Expiring,
    /// The OAuth token that created the channel is about to expire.
    TokenExpiring,
    Dropped,
    ChannelGone,
    Idle,
    Resubscribe,
}

impl Reason {
    pub(crate) fn label(self) -> &'static str {
        match self {
            Reason::SocketClosing => "socket_closing",
            Reason::Expiring => "expiring",
            Reason::TokenExpiring => "token_expiring",
            Reason::Dropped => "dropped",
            Reason::ChannelGone => "channel_gone",
            Reason::Idle => "idle",
            Reason::Resubscribe => "resubscribe",
        }
    }
}

/// What one socket message is.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    /// `channel.metadata`: heartbeat or pong.
    Metadata,
    SocketClosing,
    /// `{"result": "404", ...}`: the channel no longer exists (expired, replaced by a
    /// 21st channel, or its token expired).
    ChannelGone,
    /// Another `{"result": ...}` control answer; not an event.
    Control,
    /// Anything else goes to Kafka (an unparseable one is counted there).
    Notification,
}

pub(crate) fn classify(text: &str) -> Kind {
    let Ok(Value::Object(obj)) = serde_json::from_str::<Value>(text) else {
        return Kind::Notification;
    };
    match obj.get("topicName").and_then(Value::as_str) {
        Some(METADATA_TOPIC) => Kind::Metadata,
        Some(SOCKET_CLOSING_TOPIC) => Kind::SocketClosing,
        Some(_) => Kind::Notification,
        None => match obj.get("result") {
            Some(r) if r == "404" || r == 404 => Kind::ChannelGone,
            Some(_) => Kind::Control,
            None => Kind::Notification,
        },
    }
}

/// Everything a group task needs.
pub(crate) struct GroupCtx {
    pub(crate) index: usize,
    pub(crate) api: Arc<NotificationsApi>,
    pub(crate) settings: ListenSettings,
    pub(crate) slots: Arc<Semaphore>,
    pub(crate) out: mpsc::Sender<Received>,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) shutdown: watch::Receiver<bool>,
    pub(crate) shutdown_timeout: Duration,
    pub(crate) connect_timeout: Duration,
    pub(crate) status: Arc<ListenStatus>,
    pub(crate) abandoned: Arc<Abandoned>,
}

/// Channels this process stopped using that may still exist at Genesys Cloud (there is no
/// call to delete a channel): they have no connection, so Genesys removes them first when
/// a client goes over its limit, and they do not count against the other processes'
/// channels. Each is kept until it would have ended anyway.
#[derive(Debug, Default)]
pub(crate) struct Abandoned {
    ends: std::sync::Mutex<Vec<SystemTime>>,
}

impl Abandoned {
    fn add(&self, info: &ChannelInfo) {
        let end = match (info.expires, info.token_expires) {
            (Some(a), Some(b)) => a.min(b),
            (a, b) => a
                .or(b)
                .unwrap_or_else(|| SystemTime::now() + Duration::from_secs(86_400)),
        };
        self.lock().push(end);
    }

    /// Abandoned channels that may still exist now.
    fn count(&self) -> usize {
        let now = SystemTime::now();
        let mut ends = self.lock();
        ends.retain(|e| *e > now);
        ends.len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<SystemTime>> {
        self.ends.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A connected, subscribed channel.
struct Live {
    info: ChannelInfo,
    socket: Socket,
    slot: OwnedSemaphorePermit,
    /// When to rotate, and why (ahead of `expires`, or a failed rotation's retry).
    rotate_at: Option<(Instant, Reason)>,
    last_seen: Instant,
    pinged: bool,
}

enum Event {
    Text(String),
    /// A ping, pong or binary frame: proof of life, nothing to read.
    Alive,
    Closed,
    Idle,
    Ping,
    Rotate(Reason),
    TopicsChanged,
    Shutdown,
}

/// Capped exponential backoff with full jitter.
struct Backoff {
    next: Duration,
    max: Duration,
}

impl Backoff {
    fn new(max: Duration) -> Self {
        Backoff {
            next: Duration::from_millis(50),
            max,
        }
    }
    fn reset(&mut self) {
        self.next = Duration::from_millis(50);
    }
    fn next_wait(&mut self) -> Duration {
        let cap = self.next.min(self.max);
        self.next = self.next.saturating_mul(2).min(self.max);
        let ms = u64::try_from(cap.as_millis()).unwrap_or(u64::MAX).max(1);
        Duration::from_millis(rand::thread_rng().gen_range(ms / 2..=ms))
    }
}

/// Resolves once shutdown is signalled (never holds the watch lock across an await).
pub(crate) async fn stopped(shutdown: &mut watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|s| *s).await;
}

/// Since when, and why, a group has had no socket.
struct Down {
    since: Instant,
    reason: Reason,
    /// The group's first connect: not a reconnect, not counted as one.
    first: bool,
}

/// What one group keeps between events.
struct GroupState {
    /// The connected channel, if any.
    live: Option<Live>,
    /// A dropped socket's channel and its slot, tried again before a new one is created.
    reuse: Option<(ChannelInfo, OwnedSemaphorePermit)>,
    /// Set while there is no socket; taken when one is connected.
    down: Option<Down>,
    /// Disconnected time is counted up to this instant.
    accounted: Instant,
    backoff: Backoff,
}

impl GroupState {
    fn new(reconnect_max: Duration) -> Self {
        GroupState {
            live: None,
            reuse: None,
            down: Some(Down {
                since: Instant::now(),
                reason: Reason::Dropped,
                first: true,
            }),
            accounted: Instant::now(),
            backoff: Backoff::new(reconnect_max),
        }
    }

    /// Counts the disconnected time since the last count.
    fn account(&mut self, metrics: &Metrics) {
        let now = Instant::now();
        metrics
            .listen_disconnected_seconds_total
            .inc_by(now.duration_since(self.accounted).as_secs_f64());
        self.accounted = now;
    }

    /// The socket is gone: remember its channel for a reconnect, start the clock.
    fn lost(&mut self, metrics: &Metrics, reason: Reason) {
        if let Some(old) = self.live.take() {
            metrics.listen_channels.dec();
            self.reuse = Some((old.info, old.slot));
        }
        self.went_down(reason);
    }

    /// The channel itself is gone: nothing to reconnect to.
    fn channel_gone(&mut self, metrics: &Metrics) {
        if self.live.take().is_some() {
            metrics.listen_channels.dec();
        }
        self.went_down(Reason::ChannelGone);
    }

    fn went_down(&mut self, reason: Reason) {
        self.down = Some(Down {
            since: Instant::now(),
            reason,
            first: false,
        });
        self.accounted = Instant::now();
    }
}

/// Runs one group until shutdown.
pub(crate) async fn run_group(ctx: GroupCtx, mut topics: watch::Receiver<Vec<String>>) {
    let mut shutdown = ctx.shutdown.clone();
    let mut st = GroupState::new(ctx.settings.reconnect_max);
    loop {
        if *shutdown.borrow() {
            break;
        }
        let Some(cur) = st.live.as_mut() else {
            st.account(&ctx.metrics);
            let wanted = topics.borrow_and_update().clone();
            match ctx.connect(&wanted, st.reuse.take(), &mut shutdown).await {
                Ok(Some(new)) => {
                    st.account(&ctx.metrics);
                    let now = Instant::now();
                    if let Some(Down {
                        since,
                        reason,
                        first,
                    }) = st.down.take()
                    {
                        if !first {
                            ctx.metrics
                                .listen_reconnects_total
                                .with_label_values(&[reason.label()])
                                .inc();
                        }
                        tracing::info!(
                            group = ctx.index,
                            channel = %new.info.id,
                            topics = wanted.len(),
                            reason = reason.label(),
                            disconnected_ms = now.duration_since(since).as_millis() as u64,
                            "listening"
                        );
                    }
                    st.live = Some(new);
                    st.backoff.reset();
                }
                Ok(None) => break,
                Err(error) => {
                    let wait = st.backoff.next_wait();
                    tracing::warn!(group = ctx.index, %error, wait_ms = wait.as_millis() as u64, "cannot open a notification channel; retrying");
                    tokio::select! {
                        _ = sleep(wait) => {}
                        _ = shutdown.changed() => {}
                    }
                }
            }
            continue;
        };
        match next_event(cur, &mut topics, &mut shutdown, ctx.settings.idle_timeout).await {
            Event::Text(text) => match classify(&text) {
                Kind::Metadata => ctx.status.heartbeat(),
                Kind::Control => {}
                Kind::Notification => {
                    ctx.forward(text).await;
                    // Time spent waiting for buffer room is not silence on the socket.
                    if let Some(cur) = st.live.as_mut() {
                        cur.last_seen = Instant::now();
                    }
                }
                Kind::SocketClosing => {
                    tracing::info!(group = ctx.index, channel = %cur.info.id, "socket_closing received; rotating the channel");
                    ctx.rotate(
                        &mut st.live,
                        &topics,
                        Reason::SocketClosing,
                        &mut st.backoff,
                    )
                    .await;
                }
                Kind::ChannelGone => {
                    tracing::warn!(group = ctx.index, channel = %cur.info.id, "the channel no longer exists; opening a new one");
                    st.channel_gone(&ctx.metrics);
                }
            },
            Event::Alive => {}
            Event::Ping => {
                cur.pinged = true;
                let ping = Message::Text(r#"{"message":"ping"}"#.into());
                if cur.socket.send(ping).await.is_err() {
                    st.lost(&ctx.metrics, Reason::Dropped);
                }
            }
            Event::Rotate(reason) => {
                ctx.rotate(&mut st.live, &topics, reason, &mut st.backoff)
                    .await;
            }
            Event::TopicsChanged => {
                let wanted = topics.borrow_and_update().clone();
                match ctx.api.put_subscriptions(&cur.info.id, &wanted).await {
                    Ok(answer) => {
                        ctx.status.record(ctx.index, &cur.info.id, &answer);
                        tracing::info!(group = ctx.index, channel = %cur.info.id, topics = answer.permitted.len(), rejected = answer.rejected.len(), "subscriptions updated");
                        // A subscription change renews the channel (`expires`), not its token.
                        cur.rotate_at = rotation_due(&ctx.settings, &cur.info);
                    }
                    Err(error) => {
                        tracing::warn!(group = ctx.index, %error, "cannot update subscriptions; rotating the channel");
                        ctx.rotate(&mut st.live, &topics, Reason::Resubscribe, &mut st.backoff)
                            .await;
                    }
                }
            }
            Event::Closed => {
                tracing::warn!(group = ctx.index, channel = %cur.info.id, "notification socket dropped; reconnecting");
                st.lost(&ctx.metrics, Reason::Dropped);
            }
            Event::Idle => {
                tracing::warn!(group = ctx.index, channel = %cur.info.id, "notification socket silent too long; reconnecting");
                st.lost(&ctx.metrics, Reason::Idle);
            }
            Event::Shutdown => break,
        }
    }
    if let Some(old) = st.live.take() {
        ctx.close(old, Duration::ZERO).await;
    }
}

/// When a channel should be replaced: ahead of its `expires`, and (when channels are
/// tied to their token, `RELAY_LISTEN_CHANNEL_TOKEN_BOUND`) ahead of its token's expiry,
/// whichever comes first.
fn rotation_due(settings: &ListenSettings, info: &ChannelInfo) -> Option<(Instant, Reason)> {
    let due = |end: Option<SystemTime>, reason| {
        let left = end?
            .duration_since(SystemTime::now())
            .unwrap_or(Duration::ZERO);
        let early = settings.rotate_before.min(left / 2);
        Some((Instant::now() + (left - early), reason))
    };
    let channel = due(info.expires, Reason::Expiring);
    let token = if settings.token_bound {
        due(info.token_expires, Reason::TokenExpiring)
    } else {
        None
    };
    match (channel, token) {
        (Some(c), Some(t)) => Some(if t.0 < c.0 { t } else { c }),
        (c, t) => c.or(t),
    }
}

async fn next_event(
    cur: &mut Live,
    topics: &mut watch::Receiver<Vec<String>>,
    shutdown: &mut watch::Receiver<bool>,
    idle_timeout: Duration,
) -> Event {
    let idle_at = cur.last_seen + idle_timeout;
    let ping_at = cur.last_seen + idle_timeout / 3;
    let rotate = cur.rotate_at;
    tokio::select! {
        // Reading first: a deadline that passed while the buffer was full must not win
        // over messages already waiting.
        biased;
        msg = cur.socket.next() => match msg {
            Some(Ok(Message::Text(text))) => {
                cur.last_seen = Instant::now();
                cur.pinged = false;
                Event::Text(text)
            }
            Some(Ok(Message::Close(_))) | None | Some(Err(_)) => Event::Closed,
            Some(Ok(_)) => {
                cur.last_seen = Instant::now();
                Event::Alive
            }
        },
        _ = sleep_until(ping_at), if !cur.pinged => Event::Ping,
        _ = sleep_until(idle_at) => Event::Idle,
        _ = sleep_until(rotate.map_or(idle_at, |r| r.0)), if rotate.is_some() => {
            Event::Rotate(rotate.map_or(Reason::Expiring, |r| r.1))
        }
        changed = topics.changed() => match changed {
            Ok(()) => Event::TopicsChanged,
            Err(_) => Event::Shutdown,
        },
        _ = stopped(shutdown) => Event::Shutdown,
    }
}

impl GroupCtx {
    /// Opens a listening channel: reconnects to `reuse` when given, else creates a channel
    /// and subscribes it, then connects its socket. `Ok(None)` on shutdown.
    async fn connect(
        &self,
        topics: &[String],
        reuse: Option<(ChannelInfo, OwnedSemaphorePermit)>,
        shutdown: &mut watch::Receiver<bool>,
    ) -> Result<Option<Live>, String> {
        if let Some((info, slot)) = reuse {
            match self.connect_socket(&info).await {
                Ok(socket) => return Ok(Some(self.live(info, socket, slot))),
                Err(error) => {
                    tracing::info!(group = self.index, channel = %info.id, %error, "cannot reconnect to the same channel; creating a new one");
                    self.abandoned.add(&info);
                    return self.open_new(topics, slot).await.map(Some);
                }
            }
        }
        let slot = tokio::select! {
            slot = Arc::clone(&self.slots).acquire_owned() => slot.map_err(|e| e.to_string())?,
            _ = stopped(shutdown) => return Ok(None),
        };
        self.open_new(topics, slot).await.map(Some)
    }

    /// Creates a channel (when the OAuth client has room for one more), subscribes
    /// `topics`, connects its socket.
    async fn open_new(
        &self,
        topics: &[String],
        slot: OwnedSemaphorePermit,
    ) -> Result<Live, String> {
        // A channel ends with its token: create it with one that has life left, and know
        // when that is.
        let token_expires = if self.settings.token_bound {
            self.api
                .token_valid_for(self.settings.rotate_before.saturating_mul(2))
                .await
                .map_err(|e| format!("token: {e}"))?
        } else {
            None
        };
        self.check_client_room().await?;
        let mut info = self
            .api
            .create_channel()
            .await
            .map_err(|e| format!("create channel: {e}"))?;
        info.token_expires = token_expires;
        let answer = self
            .api
            .put_subscriptions(&info.id, topics)
            .await
            .map_err(|e| format!("subscribe {} topics: {e}", topics.len()))?;
        self.status.record(self.index, &info.id, &answer);
        let socket = self
            .connect_socket(&info)
            .await
            .map_err(|e| format!("connect {}: {e}", info.id))?;
        Ok(self.live(info, socket, slot))
    }

    /// Fails (naming the numbers) when one more channel would take the OAuth client past
    /// Genesys' limit: the 21st would remove another channel, possibly one another process
    /// of the same client is listening on. This process's abandoned channels (no
    /// connection, removed first) do not count.
    async fn check_client_room(&self) -> Result<(), String> {
        let listed = self
            .api
            .client_channel_count()
            .await
            .map_err(|e| format!("list the OAuth client's channels: {e}"))?;
        let abandoned = self.abandoned.count();
        let held = listed.saturating_sub(abandoned);
        if held + 1 > CLIENT_CHANNEL_LIMIT {
            return Err(format!(
                "the OAuth client already holds {held} notification channels ({listed} listed, \
                 {abandoned} of them abandoned by this process) and Genesys Cloud allows \
                 {CLIENT_CHANNEL_LIMIT}: one more would remove another channel, possibly one \
                 another process of this client listens on; give processes their own OAuth clients"
            ));
        }
        Ok(())
    }

    fn live(&self, info: ChannelInfo, socket: Socket, slot: OwnedSemaphorePermit) -> Live {
        self.metrics.listen_channels.inc();
        Live {
            rotate_at: rotation_due(&self.settings, &info),
            info,
            socket,
            slot,
            last_seen: Instant::now(),
            pinged: false,
        }
    }

    async fn connect_socket(&self, info: &ChannelInfo) -> Result<Socket, String> {
        match tokio::time::timeout(
            self.connect_timeout,
            tokio_tungstenite::connect_async(info.connect_uri.as_str()),
        )
        .await
        {
            Ok(Ok((socket, _))) => Ok(socket),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err(format!("no answer within {:?}", self.connect_timeout)),
        }
    }

    /// Replaces the live channel with a new one, opened before the old one is closed.
    /// On failure the old one stays and the rotation is tried again after a backoff.
    async fn rotate(
        &self,
        live: &mut Option<Live>,
        topics: &watch::Receiver<Vec<String>>,
        reason: Reason,
        backoff: &mut Backoff,
    ) {
        let wanted = topics.borrow().clone();
        let slot =
            match tokio::time::timeout(SLOT_WAIT, Arc::clone(&self.slots).acquire_owned()).await {
                Ok(Ok(slot)) => Ok(slot),
                Ok(Err(e)) => Err(e.to_string()),
                Err(_) => Err("no free channel slot".to_string()),
            };
        let opened = match slot {
            Ok(slot) => self.open_new(&wanted, slot).await,
            Err(e) => Err(e),
        };
        match opened {
            Ok(new) => {
                self.metrics
                    .listen_reconnects_total
                    .with_label_values(&[reason.label()])
                    .inc();
                tracing::info!(group = self.index, channel = %new.info.id, reason = reason.label(), disconnected_ms = 0u64, "listening on the replacement channel");
                backoff.reset();
                if let Some(old) = live.replace(new) {
                    let ctx = self.detached();
                    let overlap = self.settings.overlap;
                    tokio::spawn(async move { ctx.close(old, overlap).await });
                }
            }
            Err(error) => {
                let wait = backoff.next_wait();
                tracing::warn!(group = self.index, %error, reason = reason.label(), wait_ms = wait.as_millis() as u64, "cannot open the replacement channel; keeping the current one and retrying");
                if let Some(cur) = live.as_mut() {
                    cur.rotate_at = Some((Instant::now() + wait, reason));
                }
            }
        }
    }

    /// Reads `old` for `overlap` more, then closes it and forwards what it still
    /// delivers until the server's close frame (bounded).
    async fn close(&self, mut old: Live, overlap: Duration) {
        if self.forward_until(&mut old, Instant::now() + overlap).await {
            let _ = old.socket.send(Message::Close(None)).await;
            self.forward_until(&mut old, Instant::now() + CLOSE_DRAIN)
                .await;
        }
        self.metrics.listen_channels.dec();
        self.abandoned.add(&old.info);
        tracing::debug!(group = self.index, channel = %old.info.id, "closed the old channel's socket");
    }

    /// Forwards the notifications `live` delivers until `until`; false when the socket
    /// ended first.
    async fn forward_until(&self, live: &mut Live, until: Instant) -> bool {
        loop {
            tokio::select! {
                msg = live.socket.next() => match msg {
                    Some(Ok(Message::Text(text))) => {
                        if classify(&text) == Kind::Notification {
                            self.forward(text).await;
                        }
                    }
                    Some(Ok(_)) => {}
                    _ => return false,
                },
                _ = sleep_until(until) => return true,
            }
        }
    }

    /// Hands a notification to the Kafka writer; waits while the buffer is full (that is
    /// the backpressure on the socket), and gives up only `shutdown_timeout` after a
    /// shutdown, counting it dropped.
    pub(crate) async fn forward(&self, text: String) {
        let item = Received {
            text,
            received_at_ms: now_ms(),
        };
        let mut shutdown = self.shutdown.clone();
        let timeout = self.shutdown_timeout;
        let give_up = async move {
            stopped(&mut shutdown).await;
            sleep(timeout).await;
        };
        tokio::select! {
            sent = self.out.send(item) => {
                if sent.is_err() {
                    self.metrics.listen_dropped_total.with_label_values(&["shutdown"]).inc();
                }
            }
            _ = give_up => {
                tracing::error!(group = self.index, "shutting down with a full buffer; a notification is dropped");
                self.metrics.listen_dropped_total.with_label_values(&["shutdown"]).inc();
            }
        }
    }

    /// A copy for a task that outlives this borrow (closing an old socket).
    fn detached(&self) -> GroupCtx {
        GroupCtx {
            index: self.index,
            api: Arc::clone(&self.api),
            settings: self.settings.clone(),
            slots: Arc::clone(&self.slots),
            out: self.out.clone(),
            metrics: Arc::clone(&self.metrics),
            shutdown: self.shutdown.clone(),
            shutdown_timeout: self.shutdown_timeout,
            connect_timeout: self.connect_timeout,
            status: Arc::clone(&self.status),
            abandoned: Arc::clone(&self.abandoned),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_classified() {
        assert_eq!(
            classify(
                r#"{"topicName":"channel.metadata","eventBody":{"message":"WebSocket Heartbeat"}}"#
            ),
            Kind::Metadata
        );
        assert_eq!(
            classify(r#"{"topicName":"v2.system.socket_closing","eventBody":{}}"#),
            Kind::SocketClosing
        );
        assert_eq!(
            classify(r#"{"result":"404","message":"gone"}"#),
            Kind::ChannelGone
        );
        assert_eq!(
            classify(r#"{"result":"200","status":"subscribed"}"#),
            Kind::Control
        );
        assert_eq!(
            classify(r#"{"topicName":"v2.routing.queues.q1.conversations","eventBody":{}}"#),
            Kind::Notification
        );
        assert_eq!(classify("not json"), Kind::Notification);
    }

    #[test]
    fn backoff_is_capped_and_jittered() {
        let mut b = Backoff::new(Duration::from_millis(400));
        let waits: Vec<Duration> = (0..10).map(|_| b.next_wait()).collect();
        assert!(waits.iter().all(|w| *w <= Duration::from_millis(400)));
        assert!(waits[9] >= Duration::from_millis(200));
        b.reset();
        assert!(b.next_wait() <= Duration::from_millis(50));
    }

    #[test]
    fn rotation_is_due_before_expiry() {
        let s = crate::listen::ListenSettings::from_pairs(&[]).unwrap();
        let info = |expires: Option<SystemTime>, token_expires: Option<SystemTime>| ChannelInfo {
            id: "c".into(),
            connect_uri: "ws://x".into(),
            expires,
            token_expires,
        };
        let expires = SystemTime::now() + Duration::from_secs(24 * 3600);
        let (at, reason) = rotation_due(&s, &info(Some(expires), None)).unwrap();
        assert_eq!(reason, Reason::Expiring);
        let lead = Instant::now() + Duration::from_secs(24 * 3600) - at;
        assert!(lead >= Duration::from_secs(299) && lead <= Duration::from_secs(301));
        // A short-lived channel rotates at half its life.
        let short = Some(SystemTime::now() + Duration::from_secs(4));
        let (at, _) = rotation_due(&s, &info(short, None)).unwrap();
        assert!(at <= Instant::now() + Duration::from_millis(2100));
        assert!(rotation_due(&s, &info(None, None)).is_none());
        // A token ending before the channel decides, unless channels are not token-bound.
        let (at, reason) = rotation_due(&s, &info(Some(expires), short)).unwrap();
        assert_eq!(reason, Reason::TokenExpiring);
        assert!(at <= Instant::now() + Duration::from_millis(2100));
        let unbound = crate::listen::ListenSettings::from_pairs(&[(
            "RELAY_LISTEN_CHANNEL_TOKEN_BOUND",
            "false",
        )])
        .unwrap();
        let (_, reason) = rotation_due(&unbound, &info(Some(expires), short)).unwrap();
        assert_eq!(reason, Reason::Expiring);
    }
}
