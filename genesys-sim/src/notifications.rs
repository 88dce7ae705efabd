//! The Genesys Cloud Notifications API simulator: channels
//! (`POST /api/v2/notifications/channels`), their subscriptions
//! (`PUT|POST|GET|DELETE .../channels/{channelId}/subscriptions`), one WebSocket per channel
//! at its `connectUri`, and the paged queue listing (`GET /api/v2/routing/queues`) the
//! listener expands `RELAY_LISTEN_QUEUES=all` from.
//!
//! Invariant: a notification published with `POST /__sim/notify` reaches exactly the
//! channels subscribed to its topic that have an open socket at that moment; a subscribed
//! channel without a socket loses it (counted `undelivered`), as Genesys Cloud does; a
//! notification that no socket received at all is counted `lost`.
//!
//! Behaviour modelled on the documented service (sources in docs/listen.md):
//! - `POST .../channels` answers `{id, connectUri, expires}`; at most 20 channels per
//!   client, and a 21st silently removes the channel with the oldest last use (channels
//!   without a socket first), closing its socket;
//! - a channel belongs to the token that created it: `GET .../channels` lists that token's
//!   channels (`includechannels=token`, the default) or every channel of the OAuth client
//!   (`includechannels=oauthclient`), where "Channel Ids for other access tokens will not
//!   be shown, but will be presented to show their existence" (SDK `NotificationsApi.md`);
//! - a channel ends when the token that created it expires (`channels_end_with_token`,
//!   default on: not in an official source, docs/listen.md);
//! - at most 1,000 topics per channel: a larger subscription list is refused with 400;
//! - every subscribed topic is checked and answered as a `ChannelTopic` with `state`
//!   `Permitted` or `Rejected` (`rejectionReason`, `missingPermissions`); without
//!   `ignoreErrors=true` one rejected topic fails the whole request (403
//!   `notification.unauthorized.topic`, Genesys' streaming client); a topic naming an unknown
//!   queue or a `gone-` conversation is rejected, and a placeholder (`{id}`) or a topic not
//!   in the SDK's list is invalid (400 without `ignoreErrors`; both simulator choices);
//! - the queue listing carries `firstUri`, `lastUri`, `selfUri`, `nextUri`, `previousUri`;
//! - a channel lives `channel_ttl` (24 h) from creation or its latest subscription
//!   change, then it is removed and its socket closed;
//! - sockets get `{"topicName":"channel.metadata","eventBody":{"message":"WebSocket Heartbeat"}}`
//!   every `heartbeat_interval`, answer `{"message":"ping"}` with a `pong` metadata message;
//! - `v2.system.socket_closing` is followed by the server closing that socket
//!   `socket_closing_grace` later ("about a minute" on the real service).
//!
//! Simulator choices where the service is not documented: a second socket on the same
//! channel replaces the first (one connection per channel); a socket to an unknown or
//! expired channel gets `{"result":"404","message":...}` and is closed.
//!
//! Faults (from `POST /__sim/faults`): `ws_drop_next: N` drops the socket (no close frame)
//! right after each of the next N notifications it delivers; `socket_closing_next: N`
//! sends `v2.system.socket_closing` right after each of the next N deliveries. Own
//! controls: `POST /__sim/notifications/silence` silences every open socket (no frame, no
//! close, ever: only a client's idle timeout notices); `PUT /__sim/notifications/settings`
//! `{"denied_topics": {pattern: [permission, ...]}}` withholds permissions.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use rand::RngCore;
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio::time::{sleep_until, Instant};
use tokio_tungstenite::tungstenite::handshake::server::{Request, Response};
use tokio_tungstenite::tungstenite::Message;
use warp::http::{Method, StatusCode};

use super::clock::{iso8601_ms, now_unix_ms};
use super::exchange::{Reply, SimRequest};
use super::faults::{lock, Faults};
use super::topics;
use super::Routed;

/// Channels per client before the oldest is replaced (NotificationsApi docs).
const MAX_CHANNELS: usize = 20;
/// Topics per channel (Notifications developer guide).
const MAX_TOPICS: usize = 1000;
const DEFAULT_PAGE_SIZE: u64 = 25;
const MAX_PAGE_SIZE: u64 = 500;

pub(crate) enum Route {
    CreateChannel,
    ListChannels,
    PutSubscriptions(String),
    PostSubscriptions(String),
    GetSubscriptions(String),
    DeleteSubscriptions(String),
    ListQueues,
}

/// Timings a test may shorten, and permissions it may withhold, with
/// `PUT /__sim/notifications/settings`.
#[derive(Clone, Debug, serde::Serialize)]
struct Settings {
    heartbeat_interval_ms: u64,
    socket_closing_grace_ms: u64,
    channel_ttl_s: u64,
    /// Whether a channel is removed when the token that created it expires.
    channels_end_with_token: bool,
    /// Topic pattern -> the permissions the client lacks for it: its topics are rejected
    /// with these `missingPermissions` (an OAuth client without, e.g., `routing:queue:view`).
    denied_topics: BTreeMap<String, Vec<String>>,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            heartbeat_interval_ms: 30_000,
            socket_closing_grace_ms: 60_000,
            channel_ttl_s: 24 * 3600,
            channels_end_with_token: true,
            denied_topics: BTreeMap::new(),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SettingsPatch {
    heartbeat_interval_ms: Option<u64>,
    socket_closing_grace_ms: Option<u64>,
    channel_ttl_s: Option<u64>,
    channels_end_with_token: Option<bool>,
    denied_topics: Option<BTreeMap<String, Vec<String>>>,
}

#[derive(Default, Clone, serde::Serialize)]
struct Stats {
    channels_created: u64,
    /// Removed because a 21st channel was created.
    channels_replaced: u64,
    channels_expired: u64,
    /// Removed because the token that created them expired.
    channels_token_expired: u64,
    subscription_requests: u64,
    /// Subscription requests answered with an error (too many topics, a rejected topic
    /// without `ignoreErrors=true`).
    subscriptions_refused: u64,
    /// Topics answered `state: Rejected` (with `ignoreErrors=true`).
    topics_rejected: u64,
    /// Sockets silenced with `POST /__sim/notifications/silence`.
    sockets_silenced: u64,
    sockets_opened: u64,
    sockets_dropped: u64,
    socket_closing_sent: u64,
    published: u64,
    /// Notification frames written to a socket.
    deliveries: u64,
    /// Subscribed channels that had no open socket when a notification was published.
    undelivered: u64,
    /// Notifications no socket received although a channel was subscribed to their topic
    /// (a copy one channel missed while another delivered it is only `undelivered`).
    lost: u64,
    heartbeats: u64,
}

enum Outbound {
    Notification(Arc<str>),
    Close,
}

struct Socket {
    conn: u64,
    tx: mpsc::UnboundedSender<Outbound>,
    /// A silenced socket stays open but sends nothing (no notification, heartbeat or pong)
    /// and never closes: a half-dead connection only the client's idle timeout can detect.
    silent: bool,
}

/// Who calls: the bearer token and when it expires.
pub(crate) struct Caller {
    pub(crate) token: String,
    pub(crate) expires: Instant,
}

struct Channel {
    id: String,
    /// The token that created it, and when that token expires.
    token: String,
    token_expires: Instant,
    connect_uri: String,
    topics: BTreeSet<String>,
    expires: Instant,
    expires_iso: String,
    last_used: Instant,
    socket: Option<Socket>,
}

impl Channel {
    fn to_json(&self) -> Value {
        json!({"id": self.id, "connectUri": self.connect_uri, "expires": self.expires_iso})
    }

    fn close_socket(&mut self) {
        if let Some(socket) = self.socket.take() {
            let _ = socket.tx.send(Outbound::Close);
        }
    }
}

#[derive(Default)]
struct State {
    /// In creation order.
    channels: Vec<Channel>,
    queues: Vec<Value>,
    /// The ids of `queues`, for the per-topic check of a subscription.
    queue_ids: HashSet<String>,
    settings: Settings,
    stats: Stats,
    next_conn: u64,
}

impl State {
    /// Removes expired channels, and those whose token expired (closing their sockets).
    fn purge(&mut self, now: Instant) {
        let with_token = self.settings.channels_end_with_token;
        let (mut expired, mut token_expired) = (0u64, 0u64);
        self.channels.retain_mut(|c| {
            if c.expires <= now {
                expired += 1;
            } else if with_token && c.token_expires <= now {
                token_expired += 1;
            } else {
                return true;
            }
            c.close_socket();
            false
        });
        self.stats.channels_expired += expired;
        self.stats.channels_token_expired += token_expired;
    }

    fn channel(&mut self, id: &str) -> Option<&mut Channel> {
        self.purge(Instant::now());
        self.channels.iter_mut().find(|c| c.id == id)
    }

    fn ttl(&self) -> Duration {
        Duration::from_secs(self.settings.channel_ttl_s)
    }
}

struct Hub {
    faults: Arc<Faults>,
    state: Mutex<State>,
    ws_addr: SocketAddr,
}

/// The Notifications part of the Genesys simulator; its WebSocket server stops when this
/// value is dropped.
pub(crate) struct Notifications {
    hub: Arc<Hub>,
    stop: watch::Sender<bool>,
}

impl Drop for Notifications {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}

impl Notifications {
    /// Binds the WebSocket server on `ip` (a free port: the streaming host of the real
    /// service is not the API host either) and starts accepting.
    pub async fn start(ip: IpAddr, faults: Arc<Faults>) -> std::io::Result<Self> {
        let listener = TcpListener::bind(SocketAddr::new(ip, 0)).await?;
        let hub = Arc::new(Hub {
            faults,
            state: Mutex::new(State::default()),
            ws_addr: listener.local_addr()?,
        });
        let (stop, stop_rx) = watch::channel(false);
        tokio::spawn(accept_loop(listener, Arc::clone(&hub), stop_rx));
        Ok(Notifications { hub, stop })
    }

    /// Routes the Notifications and queue-listing paths; `None` for any other path.
    pub fn route<R>(req: &SimRequest, wrap: impl FnOnce(Route) -> R) -> Option<Routed<R>> {
        let segs = req.segs();
        let m = &req.method;
        let found = |template, route| Routed::Found {
            template,
            route: wrap(route),
        };
        let routed = match segs.as_slice() {
            ["api", "v2", "notifications", "channels"] => match *m {
                Method::POST => found("POST /api/v2/notifications/channels", Route::CreateChannel),
                Method::GET => found("GET /api/v2/notifications/channels", Route::ListChannels),
                _ => Routed::WrongMethod {
                    path: "/api/v2/notifications/channels",
                },
            },
            ["api", "v2", "notifications", "channels", id, "subscriptions"] if !id.is_empty() => {
                let id = id.to_string();
                match *m {
                    Method::PUT => found(
                        "PUT /api/v2/notifications/channels/{channelId}/subscriptions",
                        Route::PutSubscriptions(id),
                    ),
                    Method::POST => found(
                        "POST /api/v2/notifications/channels/{channelId}/subscriptions",
                        Route::PostSubscriptions(id),
                    ),
                    Method::GET => found(
                        "GET /api/v2/notifications/channels/{channelId}/subscriptions",
                        Route::GetSubscriptions(id),
                    ),
                    Method::DELETE => found(
                        "DELETE /api/v2/notifications/channels/{channelId}/subscriptions",
                        Route::DeleteSubscriptions(id),
                    ),
                    _ => Routed::WrongMethod {
                        path: "/api/v2/notifications/channels/{channelId}/subscriptions",
                    },
                }
            }
            ["api", "v2", "routing", "queues"] if *m == Method::GET => {
                found("GET /api/v2/routing/queues", Route::ListQueues)
            }
            ["api", "v2", "routing", "queues"] => Routed::WrongMethod {
                path: "/api/v2/routing/queues",
            },
            _ => return None,
        };
        Some(routed)
    }

    pub fn handle(&self, route: Route, req: &SimRequest, caller: &Caller) -> Reply {
        match route {
            Route::CreateChannel => self.create_channel(req, caller),
            Route::ListChannels => self.list_channels(req, caller),
            Route::PutSubscriptions(id) => self.subscribe(&id, req, true),
            Route::PostSubscriptions(id) => self.subscribe(&id, req, false),
            Route::GetSubscriptions(id) => match lock(&self.hub.state).channel(&id) {
                Some(c) => Reply::ok(topics_listing(&c.topics)),
                None => channel_not_found(&id),
            },
            Route::DeleteSubscriptions(id) => match lock(&self.hub.state).channel(&id) {
                Some(c) => {
                    c.topics.clear();
                    Reply::json(StatusCode::NO_CONTENT, Value::Null)
                }
                None => channel_not_found(&id),
            },
            Route::ListQueues => self.list_queues(req),
        }
    }

    /// `GET .../channels?includechannels=token|oauthclient` (`ChannelEntityListing`).
    fn list_channels(&self, req: &SimRequest, caller: &Caller) -> Reply {
        let all = match req.query_param("includechannels").as_deref() {
            None | Some("token") => false,
            Some("oauthclient") => true,
            Some(other) => {
                return Reply::bad_request(&format!(
                    "includechannels must be token or oauthclient, not {other:?}"
                ))
            }
        };
        let mut state = lock(&self.hub.state);
        state.purge(Instant::now());
        let entities: Vec<Value> = state
            .channels
            .iter()
            .filter(|c| all || c.token == caller.token)
            .map(|c| {
                if c.token == caller.token {
                    c.to_json()
                } else {
                    // Other tokens' channels: present, without their id.
                    json!({ "expires": c.expires_iso })
                }
            })
            .collect();
        Reply::ok(json!({ "entities": entities }))
    }

    fn create_channel(&self, req: &SimRequest, caller: &Caller) -> Reply {
        let now = Instant::now();
        let mut state = lock(&self.hub.state);
        state.purge(now);
        if state.channels.len() >= MAX_CHANNELS {
            // Channels without a socket go first, then the oldest last use.
            let victim = state
                .channels
                .iter()
                .enumerate()
                .min_by_key(|(_, c)| (c.socket.is_some(), c.last_used))
                .map(|(i, _)| i);
            if let Some(i) = victim {
                let mut removed = state.channels.remove(i);
                removed.close_socket();
                state.stats.channels_replaced += 1;
            }
        }
        let id = format!("streaming-0-{}", random_token());
        let ttl = state.ttl();
        let channel = Channel {
            connect_uri: format!("ws://{}/channels/{id}", self.socket_authority(req)),
            id,
            token: caller.token.clone(),
            token_expires: caller.expires,
            topics: BTreeSet::new(),
            expires: now + ttl,
            expires_iso: expires_iso(ttl),
            last_used: now,
            socket: None,
        };
        let body = channel.to_json();
        state.channels.push(channel);
        state.stats.channels_created += 1;
        Reply::ok(body)
    }

    /// `host:port` of the WebSocket server as the client reaches this simulator: the host
    /// it used for the API (so a simulator bound to 0.0.0.0 in a container hands out a
    /// reachable URI), the WebSocket server's own port.
    fn socket_authority(&self, req: &SimRequest) -> String {
        let port = self.hub.ws_addr.port();
        let host = req
            .header("host")
            .map(|h| match h.rsplit_once(':') {
                Some((host, p)) if p.chars().all(|c| c.is_ascii_digit()) => host.to_string(),
                _ => h.to_string(),
            })
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| match self.hub.ws_addr.ip() {
                IpAddr::V6(ip) => format!("[{ip}]"),
                IpAddr::V4(ip) => ip.to_string(),
            });
        format!("{host}:{port}")
    }

    /// PUT replaces the topic list, POST adds to it; either renews the channel's lifetime.
    ///
    /// Every topic is checked ([`State::verdict`]). Without `ignoreErrors=true` the first
    /// rejected topic fails the whole request and nothing changes (403 for a permission or
    /// unknown resource, 400 for a topic that cannot exist); with it the answer is 200 and
    /// lists each topic with `state` `Permitted` or `Rejected` (`rejectionReason`,
    /// `missingPermissions`), and only the permitted ones are subscribed.
    fn subscribe(&self, id: &str, req: &SimRequest, replace: bool) -> Reply {
        let topics = match topic_list(req) {
            Ok(t) => t,
            Err(reply) => return reply,
        };
        let ignore_errors = req
            .query_param("ignoreErrors")
            .is_some_and(|v| v.eq_ignore_ascii_case("true"));
        let mut state = lock(&self.hub.state);
        state.stats.subscription_requests += 1;
        let ttl = state.ttl();
        if state.channel(id).is_none() {
            return channel_not_found(id);
        }
        // The per-channel limit is a property of the request: checked before any topic.
        let requested: BTreeSet<&String> = topics.iter().collect();
        let existing = state.channel(id).map_or(0, |c| {
            if replace {
                0
            } else {
                c.topics.iter().filter(|t| !requested.contains(t)).count()
            }
        });
        if requested.len() + existing > MAX_TOPICS {
            state.stats.subscriptions_refused += 1;
            return Reply::bad_request(&format!(
                "a channel can subscribe to at most {MAX_TOPICS} topics; this request would make {}",
                requested.len() + existing
            ));
        }
        let verdicts: Vec<(String, Option<Rejection>)> = topics
            .into_iter()
            .map(|t| {
                let v = state.verdict(&t);
                (t, v)
            })
            .collect();
        if !ignore_errors {
            if let Some((topic, Some(rejection))) = verdicts.iter().find(|(_, v)| v.is_some()) {
                state.stats.subscriptions_refused += 1;
                return rejection.error_reply(topic);
            }
        }
        let Some(channel) = state.channel(id) else {
            return channel_not_found(id);
        };
        let mut next = if replace {
            BTreeSet::new()
        } else {
            channel.topics.clone()
        };
        next.extend(
            verdicts
                .iter()
                .filter(|(_, v)| v.is_none())
                .map(|(t, _)| t.clone()),
        );
        if next.len() > MAX_TOPICS {
            state.stats.subscriptions_refused += 1;
            return Reply::bad_request(&format!(
                "a channel can subscribe to at most {MAX_TOPICS} topics; this request would make {}",
                next.len()
            ));
        }
        let now = Instant::now();
        channel.topics = next;
        channel.expires = now + ttl;
        channel.expires_iso = expires_iso(ttl);
        channel.last_used = now;
        let mut listing = topics_listing(&channel.topics);
        let rejected: Vec<Value> = verdicts
            .iter()
            .filter_map(|(t, v)| v.as_ref().map(|r| r.entity(t)))
            .collect();
        state.stats.topics_rejected += rejected.len() as u64;
        if let Some(Value::Array(entities)) = listing.get_mut("entities") {
            entities.extend(rejected);
        }
        Reply::ok(listing)
    }

    fn list_queues(&self, req: &SimRequest) -> Reply {
        let page_size = match page_param(req, "pageSize", DEFAULT_PAGE_SIZE) {
            Ok(n) if n <= MAX_PAGE_SIZE => n,
            Ok(_) => return Reply::bad_request("pageSize must be at most 500"),
            Err(reply) => return reply,
        };
        let page_number = match page_param(req, "pageNumber", 1) {
            Ok(n) => n,
            Err(reply) => return reply,
        };
        let state = lock(&self.hub.state);
        let total = state.queues.len() as u64;
        let start =
            usize::try_from((page_number - 1).saturating_mul(page_size)).unwrap_or(usize::MAX);
        let entities: Vec<&Value> = state
            .queues
            .iter()
            .skip(start)
            .take(usize::try_from(page_size).unwrap_or(usize::MAX))
            .collect();
        // QueueEntityListing: the page's neighbours as URIs, as every Genesys page listing
        // carries them (`firstUri`, `lastUri`, `selfUri`, `nextUri`, `previousUri`).
        let page_count = total.div_ceil(page_size);
        let uri = |n: u64| format!("/api/v2/routing/queues?pageSize={page_size}&pageNumber={n}");
        let mut listing = json!({
            "entities": entities,
            "pageSize": page_size,
            "pageNumber": page_number,
            "total": total,
            "pageCount": page_count,
            "firstUri": uri(1),
            "lastUri": uri(page_count.max(1)),
            "selfUri": uri(page_number),
        });
        if page_number < page_count {
            listing["nextUri"] = json!(uri(page_number + 1));
        }
        if page_number > 1 {
            listing["previousUri"] = json!(uri((page_number - 1).min(page_count.max(1))));
        }
        Reply::ok(listing)
    }

    /// `/__sim/notify`, `/__sim/queues`, `/__sim/notifications/settings`,
    /// `/__sim/notifications/silence`.
    pub fn control(&self, req: &SimRequest) -> Option<Reply> {
        match (&req.method, req.segs().as_slice()) {
            (&Method::POST, ["__sim", "notify"]) => Some(self.notify(req)),
            (&Method::POST, ["__sim", "notifications", "silence"]) => Some(self.silence()),
            (&Method::POST, ["__sim", "queues"]) => Some(self.add_queues(req)),
            (&Method::PUT, ["__sim", "notifications", "settings"]) => Some(self.settings(req)),
            _ => None,
        }
    }

    /// Publishes one notification `{topicName, eventBody, ...}` (sent byte for byte) to
    /// every channel subscribed to its topic.
    fn notify(&self, req: &SimRequest) -> Reply {
        let body = match req.json_body() {
            Ok(Value::Object(body)) => body,
            Ok(_) => return Reply::bad_request("expected a notification object"),
            Err(reply) => return reply,
        };
        let Some(topic) = body.get("topicName").and_then(Value::as_str) else {
            return Reply::bad_request("topicName is required");
        };
        if !body.contains_key("eventBody") {
            return Reply::bad_request("eventBody is required");
        }
        let text: Arc<str> = String::from_utf8_lossy(&req.body).into();
        let mut state = lock(&self.hub.state);
        state.purge(Instant::now());
        state.stats.published += 1;
        let (mut subscribed, mut queued) = (0u64, 0u64);
        for channel in state.channels.iter().filter(|c| c.topics.contains(topic)) {
            subscribed += 1;
            if let Some(socket) = channel.socket.as_ref().filter(|s| !s.silent) {
                if socket
                    .tx
                    .send(Outbound::Notification(Arc::clone(&text)))
                    .is_ok()
                {
                    queued += 1;
                }
            }
        }
        state.stats.undelivered += subscribed - queued;
        if subscribed > 0 && queued == 0 {
            state.stats.lost += 1;
        }
        Reply::ok(json!({"subscribedChannels": subscribed, "queued": queued}))
    }

    /// `{"count": N}` adds N queues with generated ids; `{"ids": [...]}` adds those.
    fn add_queues(&self, req: &SimRequest) -> Reply {
        let body = match req.json_body() {
            Ok(b) => b,
            Err(reply) => return reply,
        };
        let mut state = lock(&self.hub.state);
        let mut ids: Vec<String> = Vec::new();
        if let Some(n) = body.get("count").and_then(Value::as_u64) {
            let base = state.queues.len() as u64;
            ids.extend((base..base + n.min(100_000)).map(queue_id));
        }
        if let Some(list) = body.get("ids").and_then(Value::as_array) {
            ids.extend(list.iter().filter_map(Value::as_str).map(str::to_string));
        }
        for id in &ids {
            state.queue_ids.insert(id.clone());
            let n = state.queues.len();
            state.queues.push(json!({
                "id": id,
                "name": format!("Queue {n:05}"),
                "selfUri": format!("/api/v2/routing/queues/{id}"),
            }));
        }
        Reply::ok(json!({"added": ids.len(), "total": state.queues.len()}))
    }

    /// Silences every open socket (the fault "no frames, no close"): each stays open and
    /// sends nothing more; notifications for its channel are lost (`undelivered`). Sockets
    /// opened later are normal, so a client that reconnects recovers.
    fn silence(&self) -> Reply {
        let mut state = lock(&self.hub.state);
        let mut silenced = 0u64;
        for socket in state.channels.iter_mut().filter_map(|c| c.socket.as_mut()) {
            if !socket.silent {
                socket.silent = true;
                silenced += 1;
            }
        }
        state.stats.sockets_silenced += silenced;
        Reply::ok(json!({ "silenced": silenced }))
    }

    fn settings(&self, req: &SimRequest) -> Reply {
        let patch: SettingsPatch = match serde_json::from_slice(&req.body) {
            Ok(p) => p,
            Err(e) => return Reply::bad_request(&format!("invalid settings: {e}")),
        };
        let mut state = lock(&self.hub.state);
        let s = &mut state.settings;
        s.heartbeat_interval_ms = patch
            .heartbeat_interval_ms
            .unwrap_or(s.heartbeat_interval_ms)
            .max(10);
        s.socket_closing_grace_ms = patch
            .socket_closing_grace_ms
            .unwrap_or(s.socket_closing_grace_ms);
        s.channel_ttl_s = patch.channel_ttl_s.unwrap_or(s.channel_ttl_s).max(1);
        s.channels_end_with_token = patch
            .channels_end_with_token
            .unwrap_or(s.channels_end_with_token);
        if let Some(denied) = patch.denied_topics {
            s.denied_topics = denied;
        }
        Reply::ok(json!(s.clone()))
    }

    pub fn stats(&self) -> Value {
        let mut state = lock(&self.hub.state);
        state.purge(Instant::now());
        let mut v = json!(state.stats.clone());
        if let Value::Object(map) = &mut v {
            map.insert("channels".into(), json!(state.channels.len()));
            map.insert(
                "sockets_open".into(),
                json!(state.channels.iter().filter(|c| c.socket.is_some()).count()),
            );
            let topics: usize = state.channels.iter().map(|c| c.topics.len()).sum();
            map.insert("subscribed_topics".into(), json!(topics));
            map.insert("queues".into(), json!(state.queues.len()));
            map.insert("settings".into(), json!(state.settings.clone()));
        }
        v
    }

    /// Forgets channels (closing their sockets), queues, counters and settings.
    pub fn reset(&self) {
        let mut state = lock(&self.hub.state);
        for c in &mut state.channels {
            c.close_socket();
        }
        *state = State::default();
    }
}

fn channel_not_found(id: &str) -> Reply {
    Reply::not_found(&format!("channel {id} not found"))
}

/// `ChannelTopicEntityListing`: `{"entities": [{"id": topic, "state": "Permitted"}, ...]}`
/// (SDK `ChannelTopic`: `id`, `state` `Permitted|Rejected`, `rejectionReason`,
/// `missingPermissions`, `selfUri`).
fn topics_listing(topics: &BTreeSet<String>) -> Value {
    let entities: Vec<Value> = topics
        .iter()
        .map(|t| json!({ "id": t, "state": "Permitted" }))
        .collect();
    json!({ "entities": entities })
}

/// Why a topic cannot be subscribed.
#[derive(Debug, Clone, PartialEq)]
enum Rejection {
    /// Not a concrete topic of the SDK's list (a typo, or a placeholder such as `{id}`).
    InvalidTopic(String),
    /// The queue, conversation, ... the topic names does not exist.
    UnknownResource(String),
    /// The client lacks these permissions (`denied_topics`).
    MissingPermissions(Vec<String>),
}

impl Rejection {
    fn reason(&self, topic: &str) -> String {
        match self {
            Rejection::InvalidTopic(why) => format!("Topic {topic} is not valid: {why}"),
            Rejection::UnknownResource(what) => {
                format!("The user does not have permissions required for topic {topic}: {what} not found")
            }
            Rejection::MissingPermissions(_) => {
                format!("The user does not have permissions required for topic {topic}")
            }
        }
    }

    /// The `ChannelTopic` entity of an `ignoreErrors=true` answer.
    fn entity(&self, topic: &str) -> Value {
        let missing = match self {
            Rejection::MissingPermissions(p) => p.clone(),
            _ => Vec::new(),
        };
        json!({
            "id": topic,
            "state": "Rejected",
            "rejectionReason": self.reason(topic),
            "missingPermissions": missing,
        })
    }

    /// The error that fails a whole request without `ignoreErrors=true`: the shape and
    /// code of Genesys' own streaming client's tests (403 `notification.unauthorized.topic`)
    /// for permissions; 400 for a topic that cannot exist (a simulator choice).
    fn error_reply(&self, topic: &str) -> Reply {
        match self {
            Rejection::InvalidTopic(_) => Reply::bad_request(&self.reason(topic)),
            _ => Reply::genesys_error(
                StatusCode::FORBIDDEN,
                "notification.unauthorized.topic",
                &self.reason(topic),
            ),
        }
    }
}

impl State {
    /// Checks one topic of a subscription request; `None` when it is permitted.
    fn verdict(&self, topic: &str) -> Option<Rejection> {
        if topics::has_placeholder(topic) {
            return Some(Rejection::InvalidTopic(
                "it holds a placeholder; subscribe concrete ids".into(),
            ));
        }
        let Some((pattern, ids)) = topics::resolve(topic) else {
            return Some(Rejection::InvalidTopic("no such notification topic".into()));
        };
        if let Some(missing) = self.settings.denied_topics.get(pattern) {
            return Some(Rejection::MissingPermissions(missing.clone()));
        }
        for (kind, id) in ids {
            match kind.as_str() {
                "queues" if !self.queue_ids.contains(&id) => {
                    return Some(Rejection::UnknownResource(format!("queue {id}")));
                }
                // The conversation API answers 404 for these ids (`Genesys::conversation`).
                "conversation" | "conversations" if id.starts_with("gone-") => {
                    return Some(Rejection::UnknownResource(format!("conversation {id}")));
                }
                _ => {}
            }
        }
        None
    }
}

/// A `list[ChannelTopic]` body: `[{"id": "<topic>"}, ...]`.
fn topic_list(req: &SimRequest) -> Result<Vec<String>, Reply> {
    let Value::Array(items) = req.json_body()? else {
        return Err(Reply::bad_request(
            "expected a JSON array of {\"id\": topic}",
        ));
    };
    items
        .iter()
        .map(|item| {
            item.get("id")
                .and_then(Value::as_str)
                .filter(|t| !t.is_empty())
                .map(str::to_string)
                .ok_or_else(|| Reply::bad_request("every topic needs a non-empty id"))
        })
        .collect()
}

fn page_param(req: &SimRequest, name: &str, default: u64) -> Result<u64, Reply> {
    match req.query_param(name) {
        None => Ok(default),
        Some(raw) => match raw.parse::<u64>() {
            Ok(n) if n >= 1 => Ok(n),
            _ => Err(Reply::bad_request(&format!(
                "{name} must be a positive integer"
            ))),
        },
    }
}

fn expires_iso(ttl: Duration) -> String {
    let ttl_ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX);
    iso8601_ms(now_unix_ms().saturating_add(ttl_ms))
}

fn random_token() -> String {
    let mut b = [0u8; 12];
    rand::thread_rng().fill_bytes(&mut b);
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// A stable UUID-shaped id for the n-th generated queue.
fn queue_id(n: u64) -> String {
    format!("5a1e0000-0000-4000-8000-{n:012x}")
}

fn heartbeat() -> Message {
    Message::Text(
        json!({"topicName": "channel.metadata", "eventBody": {"message": "WebSocket Heartbeat"}})
            .to_string(),
    )
}

/// Whether this connection of the channel was silenced since the loop last looked.
fn is_silent(hub: &Hub, channel_id: &str, conn: u64) -> bool {
    lock(&hub.state)
        .channels
        .iter()
        .find(|c| c.id == channel_id)
        .and_then(|c| c.socket.as_ref())
        .is_some_and(|s| s.conn == conn && s.silent)
}

async fn accept_loop(listener: TcpListener, hub: Arc<Hub>, mut stop: watch::Receiver<bool>) {
    loop {
        tokio::select! {
            _ = stop.changed() => return,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    let _ = stream.set_nodelay(true);
                    tokio::spawn(serve_socket(Arc::clone(&hub), stream, stop.clone()));
                }
                Err(error) => {
                    tracing::warn!(%error, "notification socket accept failed");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            },
        }
    }
}

/// How a socket's loop ended.
enum End {
    /// Send a close frame.
    Close,
    /// Drop the TCP stream without a close frame (an injected fault).
    Drop,
}

async fn serve_socket(hub: Arc<Hub>, stream: TcpStream, mut stop: watch::Receiver<bool>) {
    let mut path = String::new();
    // The callback's signature is tungstenite's; its error type is not ours to shrink.
    #[allow(clippy::result_large_err)]
    let callback = |req: &Request, resp: Response| {
        path = req.uri().path().to_string();
        Ok(resp)
    };
    let Ok(ws) = tokio_tungstenite::accept_hdr_async(stream, callback).await else {
        return;
    };
    let (mut sink, mut inbound) = ws.split();
    let channel_id = path.strip_prefix("/channels/").unwrap_or("").to_string();
    let (tx, mut rx) = mpsc::unbounded_channel();
    let registered = {
        let mut state = lock(&hub.state);
        let conn = state.next_conn;
        state.next_conn += 1;
        let heartbeat_every = Duration::from_millis(state.settings.heartbeat_interval_ms);
        match state.channel(&channel_id) {
            Some(channel) => {
                // One connection per channel: a new one replaces the old.
                channel.close_socket();
                channel.socket = Some(Socket {
                    conn,
                    tx,
                    silent: false,
                });
                channel.last_used = Instant::now();
                state.stats.sockets_opened += 1;
                Some((conn, heartbeat_every))
            }
            None => None,
        }
    };
    let Some((conn, heartbeat_every)) = registered else {
        let gone = json!({"result": "404", "message": format!("channel {channel_id} not found")});
        let _ = sink.send(Message::Text(gone.to_string())).await;
        let _ = sink.send(Message::Close(None)).await;
        return;
    };
    let mut next_heartbeat = Instant::now() + heartbeat_every;
    let mut closing_at: Option<Instant> = None;
    let end = loop {
        let (expires, silent) = {
            let mut state = lock(&hub.state);
            let with_token = state.settings.channels_end_with_token;
            match state.channel(&channel_id) {
                Some(c) if c.socket.as_ref().is_some_and(|s| s.conn == conn) => {
                    let end = if with_token {
                        c.expires.min(c.token_expires)
                    } else {
                        c.expires
                    };
                    (end, c.socket.as_ref().is_some_and(|s| s.silent))
                }
                _ => break End::Close,
            }
        };
        if silent {
            // Write nothing, ever: read until the client leaves or the channel drops this
            // socket, then cut TCP without a close frame, as a dead peer would.
            loop {
                tokio::select! {
                    _ = stop.changed() => break,
                    out = rx.recv() => if matches!(out, Some(Outbound::Close) | None) { break },
                    msg = inbound.next() => {
                        if matches!(msg, Some(Ok(Message::Close(_))) | None | Some(Err(_))) {
                            break;
                        }
                    }
                }
            }
            break End::Drop;
        }
        let deadline = closing_at.map_or(expires, |c| c.min(expires));
        tokio::select! {
            _ = stop.changed() => break End::Close,
            out = rx.recv() => match out {
                Some(Outbound::Notification(text)) => {
                    if sink.send(Message::Text(text.to_string())).await.is_err() {
                        break End::Drop;
                    }
                    lock(&hub.state).stats.deliveries += 1;
                    if hub.faults.take_ws_drop() {
                        lock(&hub.state).stats.sockets_dropped += 1;
                        break End::Drop;
                    }
                    if closing_at.is_none() && hub.faults.take_socket_closing() {
                        let closing = json!({
                            "topicName": "v2.system.socket_closing",
                            "eventBody": {"channelId": channel_id, "message": "socket closing (simulated maintenance)"}
                        });
                        if sink.send(Message::Text(closing.to_string())).await.is_err() {
                            break End::Drop;
                        }
                        let grace = {
                            let mut state = lock(&hub.state);
                            state.stats.socket_closing_sent += 1;
                            Duration::from_millis(state.settings.socket_closing_grace_ms)
                        };
                        closing_at = Some(Instant::now() + grace);
                    }
                }
                Some(Outbound::Close) | None => break End::Close,
            },
            _ = sleep_until(next_heartbeat) => {
                if is_silent(&hub, &channel_id, conn) {
                    continue;
                }
                if sink.send(heartbeat()).await.is_err() {
                    break End::Drop;
                }
                let every = {
                    let mut state = lock(&hub.state);
                    state.stats.heartbeats += 1;
                    Duration::from_millis(state.settings.heartbeat_interval_ms)
                };
                next_heartbeat = Instant::now() + every;
            }
            _ = sleep_until(deadline) => {
                // Expiry is applied by the next `channel()` lookup; a closing socket ends here.
                if closing_at.is_some_and(|c| c <= Instant::now()) {
                    break End::Close;
                }
            }
            msg = inbound.next() => match msg {
                Some(Ok(Message::Text(text))) => {
                    if serde_json::from_str::<Value>(&text).ok().and_then(|v| v.get("message").cloned())
                        == Some(json!("ping"))
                        && !is_silent(&hub, &channel_id, conn)
                    {
                        let pong = json!({"topicName": "channel.metadata", "eventBody": {"message": "pong"}});
                        if sink.send(Message::Text(pong.to_string())).await.is_err() {
                            break End::Drop;
                        }
                    }
                }
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break End::Close,
                Some(Ok(_)) => {}
            },
        }
    };
    {
        let mut state = lock(&hub.state);
        if let Some(c) = state.channels.iter_mut().find(|c| c.id == channel_id) {
            if c.socket.as_ref().is_some_and(|s| s.conn == conn) {
                c.socket = None;
                c.last_used = Instant::now();
            }
        }
    }
    if let End::Close = end {
        let _ = sink.send(Message::Close(None)).await;
        let _ = sink.close().await;
    }
    // End::Drop: the stream halves are dropped here, closing TCP without a close frame.
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queue_ids_are_stable_and_distinct() {
        assert_eq!(queue_id(0), "5a1e0000-0000-4000-8000-000000000000");
        assert_ne!(queue_id(1), queue_id(2));
    }

    #[test]
    fn expired_channels_are_purged_and_counted() {
        let mut state = State::default();
        let now = Instant::now();
        state.channels.push(Channel {
            id: "a".into(),
            token: String::new(),
            token_expires: now + Duration::from_secs(60),
            connect_uri: String::new(),
            topics: BTreeSet::new(),
            expires: now,
            expires_iso: String::new(),
            last_used: now,
            socket: None,
        });
        state.purge(now);
        assert!(state.channels.is_empty());
        assert_eq!(state.stats.channels_expired, 1);
    }
}
