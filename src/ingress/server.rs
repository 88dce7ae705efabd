//! Connection handling of the ingress, safe on the open internet: our own accept loop
//! over hyper 0.14 (serving the warp filter), plain TCP or TLS, with a cap on open
//! connections and per-connection deadlines, so clients that open connections and stall
//! (a slowloris) cannot hold the ingress's sockets and memory.
//!
//! Invariants:
//! - At most `max_connections` connections are open; a connection over the cap is
//!   closed at once (counted `relay_ingress_connections_refused_total`), never queued.
//! - A connection always has a deadline: while no request is being handled, a request
//!   head (or a TLS handshake) must arrive within `header_read_timeout` of its first
//!   byte (of the connection's start, for a new connection), and a keep-alive
//!   connection may sit without a byte for `idle_timeout`; past either it is closed.
//!   While a request is handled, the handler bounds itself (`body_read_timeout`, then
//!   the produce timeout). Every close for a deadline is counted by reason.
//! - Shutdown stops accepting at once; open connections finish the request they are in
//!   and close (hyper's graceful shutdown); the caller bounds the drain.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures::future::BoxFuture;
use futures::FutureExt;
use hyper::server::conn::Http;
use hyper::service::Service;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Semaphore};
use tokio::time::Instant;

use crate::config::{ConfigError, Vars};
use crate::metrics::Metrics;

/// The deadline for which the ingress closed a connection itself (the `reason` label:
/// `<deadline>_timeout`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Deadline {
    /// No complete request head (or TLS handshake) within `header_read_timeout`.
    Header,
    /// A request body not read within `body_read_timeout` (answered 408 first).
    Body,
    /// A keep-alive connection without a byte for `idle_timeout`.
    Idle,
}

impl Deadline {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Deadline::Header => "header_timeout",
            Deadline::Body => "body_timeout",
            Deadline::Idle => "idle_timeout",
        }
    }
}

/// The ingress's connection limits (`RELAY_INGRESS_*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// `RELAY_INGRESS_HEADER_TIMEOUT`: longest time from a request's first byte (or a
    /// new connection's start) to its complete head, TLS handshake included.
    pub header_read_timeout: Duration,
    /// `RELAY_INGRESS_BODY_TIMEOUT`: longest time to read a request's body.
    pub body_read_timeout: Duration,
    /// `RELAY_INGRESS_IDLE_TIMEOUT`: longest silence of a keep-alive connection between
    /// requests.
    pub idle_timeout: Duration,
    /// `RELAY_INGRESS_MAX_CONNECTIONS`: open connections at most; more are closed at once.
    pub max_connections: usize,
}

impl ConnectionLimits {
    /// Reads the four settings; zero durations and a zero cap are refused, naming the
    /// setting (a zero would close every connection, or accept none).
    pub(crate) fn read(v: &Vars) -> Result<Self, ConfigError> {
        let positive = |name: &str| -> Result<Duration, ConfigError> {
            let d = v.duration(name)?;
            if d.is_zero() {
                return Err(ConfigError::Invalid {
                    name: name.into(),
                    reason: "must be more than 0".into(),
                });
            }
            Ok(d)
        };
        let limits = ConnectionLimits {
            header_read_timeout: positive("RELAY_INGRESS_HEADER_TIMEOUT")?,
            body_read_timeout: positive("RELAY_INGRESS_BODY_TIMEOUT")?,
            idle_timeout: positive("RELAY_INGRESS_IDLE_TIMEOUT")?,
            max_connections: v.parse("RELAY_INGRESS_MAX_CONNECTIONS")?,
        };
        if limits.max_connections == 0 {
            return Err(ConfigError::Invalid {
                name: "RELAY_INGRESS_MAX_CONNECTIONS".into(),
                reason: "must be at least 1".into(),
            });
        }
        Ok(limits)
    }
}

/// Why the ingress cannot serve.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("cannot listen on {addr}: {source}")]
    Bind { addr: SocketAddr, source: io::Error },
}

/// Binds `addr` and returns the bound address and the server future, which runs until
/// `shutdown` turns true and the open connections have closed.
pub(crate) fn bind<S>(
    addr: SocketAddr,
    service: S,
    tls: Option<Arc<tokio_rustls::rustls::ServerConfig>>,
    limits: ConnectionLimits,
    metrics: Arc<Metrics>,
    shutdown: watch::Receiver<bool>,
) -> Result<(SocketAddr, BoxFuture<'static, ()>), ServeError>
where
    S: Service<hyper::Request<hyper::Body>, Response = hyper::Response<hyper::Body>>
        + Clone
        + Send
        + 'static,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    S::Future: Send + 'static,
{
    let listener = std::net::TcpListener::bind(addr)
        .and_then(|l| l.set_nonblocking(true).map(|()| l))
        .and_then(TcpListener::from_std)
        .map_err(|source| ServeError::Bind { addr, source })?;
    let bound = listener
        .local_addr()
        .map_err(|source| ServeError::Bind { addr, source })?;
    let server = Server {
        service,
        tls: tls.map(tokio_rustls::TlsAcceptor::from),
        limits,
        metrics,
        permits: Arc::new(Semaphore::new(limits.max_connections)),
    };
    Ok((bound, server.run(listener, shutdown).boxed()))
}

struct Server<S> {
    service: S,
    tls: Option<tokio_rustls::TlsAcceptor>,
    limits: ConnectionLimits,
    metrics: Arc<Metrics>,
    permits: Arc<Semaphore>,
}

impl<S> Server<S>
where
    S: Service<hyper::Request<hyper::Body>, Response = hyper::Response<hyper::Body>>
        + Clone
        + Send
        + 'static,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    S::Future: Send + 'static,
{
    async fn run(self, listener: TcpListener, shutdown: watch::Receiver<bool>) {
        let http = Arc::new(Http::new());
        let signal = crate::shutdown::signalled(shutdown.clone());
        tokio::pin!(signal);
        loop {
            let stream = tokio::select! {
                _ = &mut signal => break,
                accepted = listener.accept() => match accepted {
                    Ok((stream, _)) => stream,
                    Err(e) => {
                        // Out of file descriptors, for example: the cap is set too high
                        // for the process's limit. Back off instead of spinning.
                        tracing::warn!(error = %e, "ingress cannot accept a connection");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
            };
            let Ok(permit) = self.permits.clone().try_acquire_owned() else {
                self.metrics.ingress_connections_refused_total.inc();
                drop(stream);
                continue;
            };
            let _ = stream.set_nodelay(true);
            self.metrics.ingress_connections.inc();
            let conn = Connection {
                service: self.service.clone(),
                tls: self.tls.clone(),
                http: http.clone(),
                limits: self.limits,
                metrics: self.metrics.clone(),
                shutdown: shutdown.clone(),
            };
            let metrics = self.metrics.clone();
            tokio::spawn(async move {
                conn.serve(stream).await;
                metrics.ingress_connections.dec();
                drop(permit);
            });
        }
        drop(listener);
        // Drained when every connection gave its permit back.
        let all = u32::try_from(self.limits.max_connections).unwrap_or(u32::MAX);
        let _ = self.permits.acquire_many(all).await;
    }
}

/// One accepted connection and what it needs.
struct Connection<S> {
    service: S,
    tls: Option<tokio_rustls::TlsAcceptor>,
    http: Arc<Http>,
    limits: ConnectionLimits,
    metrics: Arc<Metrics>,
    shutdown: watch::Receiver<bool>,
}

impl<S> Connection<S>
where
    S: Service<hyper::Request<hyper::Body>, Response = hyper::Response<hyper::Body>>
        + Clone
        + Send
        + 'static,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    S::Future: Send + 'static,
{
    async fn serve(self, stream: TcpStream) {
        let activity = Arc::new(Activity::new());
        let io = Tracked {
            inner: stream,
            activity: activity.clone(),
        };
        match self.tls.clone() {
            None => self.serve_io(io, activity).await,
            Some(acceptor) => {
                let handshake =
                    tokio::time::timeout(self.limits.header_read_timeout, acceptor.accept(io));
                match handshake.await {
                    Ok(Ok(tls)) => self.serve_io(tls, activity).await,
                    Ok(Err(e)) => tracing::debug!(error = %e, "TLS handshake failed"),
                    Err(_) => self.closed(Deadline::Header),
                }
            }
        }
    }

    async fn serve_io<I>(self, io: I, activity: Arc<Activity>)
    where
        I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let service = Counted {
            inner: self.service.clone(),
            activity: activity.clone(),
        };
        let conn = self.http.serve_connection(io, service);
        tokio::pin!(conn);
        let signal = crate::shutdown::signalled(self.shutdown.clone());
        tokio::pin!(signal);
        let mut draining = false;
        loop {
            let deadline = activity.deadline(&self.limits);
            tokio::select! {
                result = conn.as_mut() => {
                    if let Err(e) = result {
                        tracing::debug!(error = %e, "ingress connection ended with an error");
                    }
                    return;
                }
                _ = tokio::time::sleep_until(deadline.map_or_else(far_future, |(at, _)| at)) => {
                    // Activity may have moved the deadline while we slept: look again.
                    if let Some((at, reason)) = activity.deadline(&self.limits) {
                        if at <= Instant::now() {
                            self.closed(reason);
                            return;
                        }
                    }
                }
                _ = activity.changed.notified() => {}
                _ = &mut signal, if !draining => {
                    draining = true;
                    conn.as_mut().graceful_shutdown();
                }
            }
        }
    }

    fn closed(&self, reason: Deadline) {
        tracing::debug!(reason = reason.as_str(), "ingress closed a connection");
        self.metrics
            .ingress_connections_closed_total
            .with_label_values(&[reason.as_str()])
            .inc();
    }
}

/// A sleep that never ends in practice (no deadline while a request is handled).
fn far_future() -> Instant {
    Instant::now() + Duration::from_secs(86_400)
}

/// What a connection is doing, for its deadline: requests being handled, when the last
/// one ended, and when the first byte after that arrived.
struct Activity {
    started: Instant,
    /// Requests being handled now.
    active: AtomicUsize,
    /// Milliseconds after `started` when the connection last became idle.
    idle_since_ms: AtomicU64,
    /// Milliseconds after `started` of the first byte read while idle, plus one (0 =
    /// none yet): the start of the next request head.
    head_started_ms: AtomicU64,
    /// Whether the connection has finished any request (a keep-alive connection).
    served_any: std::sync::atomic::AtomicBool,
    /// Woken when the deadline may have moved.
    changed: tokio::sync::Notify,
}

impl Activity {
    fn new() -> Self {
        Activity {
            started: Instant::now(),
            active: AtomicUsize::new(0),
            idle_since_ms: AtomicU64::new(0),
            head_started_ms: AtomicU64::new(0),
            served_any: Default::default(),
            changed: tokio::sync::Notify::new(),
        }
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn at(&self, ms: u64) -> Instant {
        self.started + Duration::from_millis(ms)
    }

    fn bytes_read(&self) {
        if self.active.load(Ordering::SeqCst) == 0 {
            let now = self.now_ms().saturating_add(1);
            let first = self
                .head_started_ms
                .compare_exchange(0, now, Ordering::SeqCst, Ordering::SeqCst)
                .is_ok();
            if first {
                self.changed.notify_one();
            }
        }
    }

    fn request_started(&self) {
        self.active.fetch_add(1, Ordering::SeqCst);
        self.head_started_ms.store(0, Ordering::SeqCst);
        self.changed.notify_one();
    }

    fn request_ended(&self) {
        self.idle_since_ms.store(self.now_ms(), Ordering::SeqCst);
        self.served_any.store(true, Ordering::SeqCst);
        self.head_started_ms.store(0, Ordering::SeqCst);
        self.active.fetch_sub(1, Ordering::SeqCst);
        self.changed.notify_one();
    }

    /// When the connection must be closed and why; `None` while a request is handled.
    fn deadline(&self, limits: &ConnectionLimits) -> Option<(Instant, Deadline)> {
        if self.active.load(Ordering::SeqCst) > 0 {
            return None;
        }
        let head = self.head_started_ms.load(Ordering::SeqCst);
        if head > 0 {
            return Some((
                self.at(head - 1) + limits.header_read_timeout,
                Deadline::Header,
            ));
        }
        if !self.served_any.load(Ordering::SeqCst) {
            // A new connection owes its first request head from its start.
            return Some((self.started + limits.header_read_timeout, Deadline::Header));
        }
        Some((
            self.at(self.idle_since_ms.load(Ordering::SeqCst)) + limits.idle_timeout,
            Deadline::Idle,
        ))
    }
}

/// The connection's socket, noting each read for the deadlines.
struct Tracked<T> {
    inner: T,
    activity: Arc<Activity>,
}

impl<T: AsyncRead + Unpin> AsyncRead for Tracked<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let result = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(result, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.activity.bytes_read();
        }
        result
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Tracked<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

/// The service, marking each request's start and end on the connection's activity.
#[derive(Clone)]
struct Counted<S> {
    inner: S,
    activity: Arc<Activity>,
}

/// Ends a request on drop, so a cancelled handler ends it too.
struct RequestGuard(Arc<Activity>);

impl Drop for RequestGuard {
    fn drop(&mut self) {
        self.0.request_ended();
    }
}

impl<S> Service<hyper::Request<hyper::Body>> for Counted<S>
where
    S: Service<hyper::Request<hyper::Body>, Response = hyper::Response<hyper::Body>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: hyper::Request<hyper::Body>) -> Self::Future {
        self.activity.request_started();
        let guard = RequestGuard(self.activity.clone());
        let fut = self.inner.call(req);
        Box::pin(async move {
            let response = fut.await;
            drop(guard);
            response
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: ConnectionLimits = ConnectionLimits {
        header_read_timeout: Duration::from_secs(2),
        body_read_timeout: Duration::from_secs(3),
        idle_timeout: Duration::from_secs(10),
        max_connections: 4,
    };

    #[test]
    fn deadlines_follow_what_the_connection_is_doing() {
        let a = Activity::new();
        // New connection: its first head is due within the header timeout.
        let (at, why) = a.deadline(&LIMITS).unwrap();
        assert_eq!(why, Deadline::Header);
        assert_eq!(at, a.started + LIMITS.header_read_timeout);
        // While a request is handled, the handler bounds itself.
        a.request_started();
        a.bytes_read();
        assert_eq!(a.deadline(&LIMITS), None);
        a.request_ended();
        // Kept alive and silent: the idle timeout.
        assert_eq!(a.deadline(&LIMITS).unwrap().1, Deadline::Idle);
        // The next head's first byte starts the header timeout again.
        a.bytes_read();
        assert_eq!(a.deadline(&LIMITS).unwrap().1, Deadline::Header);
    }

    #[test]
    fn zero_limits_are_refused_naming_the_setting() {
        let map: std::collections::HashMap<String, String> =
            [("RELAY_INGRESS_IDLE_TIMEOUT".to_string(), "0s".to_string())].into();
        let err = ConnectionLimits::read(&Vars::new(map)).unwrap_err();
        assert!(
            err.to_string().contains("RELAY_INGRESS_IDLE_TIMEOUT"),
            "{err}"
        );
        let map: std::collections::HashMap<String, String> =
            [("RELAY_INGRESS_MAX_CONNECTIONS".to_string(), "0".to_string())].into();
        let err = ConnectionLimits::read(&Vars::new(map)).unwrap_err();
        assert!(
            err.to_string().contains("RELAY_INGRESS_MAX_CONNECTIONS"),
            "{err}"
        );
    }
}
