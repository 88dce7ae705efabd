//! How a simulator is served: its own accept loop over hyper (re-exported by warp),
//! so that shutdown is prompt and complete.
//!
//! warp's built-in graceful shutdown waits for every keep-alive connection to close,
//! and a client holding pooled idle connections (reqwest does) kept it waiting
//! indefinitely. Here shutdown stops accepting, asks every connection to finish
//! gracefully, waits for requests still being handled (up to a grace period), then
//! aborts whatever connections remain: after [`Serving::stop`] returns nothing is
//! answered any more.
//!
//! A response carrying the [`ResetConnection`] marker is never written: its connection is
//! closed with `SO_LINGER` 0, so the client gets a TCP reset (RST) instead of an answer,
//! as when a sink's process or a proxy in front of it dies mid-request.

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{oneshot, watch, Notify};
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::{sleep, timeout, Instant};
use warp::hyper::server::conn::Http;
use warp::hyper::service::{service_fn, Service};
use warp::hyper::{Body, Request, Response};

/// Response extension: reset the connection instead of writing this response.
#[derive(Clone, Copy, Debug)]
pub(crate) struct ResetConnection;

/// How long shutdown waits for requests in flight.
const GRACE: Duration = Duration::from_secs(5);
/// Poll interval while draining: short, since handlers are fast.
const DRAIN_POLL: Duration = Duration::from_millis(5);
/// Back-off after a failed `accept` (for example too many open files), instead of spinning.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(20);

/// Counts requests whose handler is running, so shutdown knows when it is safe to cut.
#[derive(Clone, Default)]
pub(crate) struct InFlight(Arc<AtomicUsize>);

impl InFlight {
    /// Marks a request as in flight until the returned guard is dropped.
    pub fn enter(&self) -> InFlightGuard {
        self.0.fetch_add(1, Ordering::SeqCst);
        InFlightGuard(Arc::clone(&self.0))
    }

    fn count(&self) -> usize {
        self.0.load(Ordering::SeqCst)
    }
}

pub(crate) struct InFlightGuard(Arc<AtomicUsize>);

impl Drop for InFlightGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// A running accept loop.
pub(crate) struct Serving {
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl Serving {
    /// Stops and waits until every connection is closed.
    pub async fn stop(mut self) {
        self.signal();
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }

    /// Starts stopping without waiting (used on drop).
    fn signal(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

impl Drop for Serving {
    fn drop(&mut self) {
        self.signal();
    }
}

/// Serves `service` (a `warp::service(filter)`) on `listener` until stopped.
pub(crate) fn spawn<S>(listener: TcpListener, service: S, in_flight: InFlight) -> Serving
where
    S: Service<Request<Body>, Response = Response<Body>, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    let (stop_tx, stop_rx) = oneshot::channel();
    let task = tokio::spawn(accept_loop(listener, service, stop_rx, in_flight));
    Serving {
        stop: Some(stop_tx),
        task: Some(task),
    }
}

async fn accept_loop<S>(
    listener: TcpListener,
    service: S,
    mut stop: oneshot::Receiver<()>,
    in_flight: InFlight,
) where
    S: Service<Request<Body>, Response = Response<Body>, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    let (closing_tx, closing_rx) = watch::channel(false);
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            _ = &mut stop => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _peer)) => {
                    // Small JSON replies: do not let Nagle's algorithm delay them.
                    let _ = stream.set_nodelay(true);
                    connections.spawn(serve_connection(stream, service.clone(), closing_rx.clone()));
                }
                Err(error) => {
                    tracing::warn!(%error, "simulator accept failed");
                    sleep(ACCEPT_BACKOFF).await;
                }
            },
            // Reap finished connections so the set does not grow with every client.
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
    drop(listener);
    let _ = closing_tx.send(true);
    drain(&mut connections, &in_flight).await;
    connections.shutdown().await;
}

/// Waits until all connections closed by themselves, or no handler has been running
/// for two polls in a row (the reply is then written or being written in microseconds),
/// or the grace period is over.
async fn drain(connections: &mut JoinSet<()>, in_flight: &InFlight) {
    let deadline = Instant::now() + GRACE;
    let mut quiet_polls = 0;
    while !connections.is_empty() && Instant::now() < deadline && quiet_polls < 2 {
        let _ = timeout(DRAIN_POLL, connections.join_next()).await;
        quiet_polls = if in_flight.count() == 0 {
            quiet_polls + 1
        } else {
            0
        };
    }
}

async fn serve_connection<S>(stream: TcpStream, service: S, mut closing: watch::Receiver<bool>)
where
    S: Service<Request<Body>, Response = Response<Body>, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    let reset = Arc::new(Notify::new());
    let stream = Resettable {
        stream,
        reset: Arc::new(AtomicBool::new(false)),
    };
    let reset_flag = Arc::clone(&stream.reset);
    let wants_reset = Arc::clone(&reset);
    let service = service_fn(move |req| {
        let answer = service.clone().call(req);
        let wants_reset = Arc::clone(&wants_reset);
        async move {
            let response = answer.await?;
            if response.extensions().get::<ResetConnection>().is_some() {
                wants_reset.notify_one();
                // Never answered: the connection is dropped under this request.
                std::future::pending::<()>().await;
            }
            Ok::<_, Infallible>(response)
        }
    });
    let connection = Http::new().serve_connection(stream, service);
    tokio::pin!(connection);
    tokio::select! {
        _ = connection.as_mut() => return,
        _ = reset.notified() => {
            reset_flag.store(true, Ordering::SeqCst);
            return;
        }
        _ = closing.wait_for(|closing| *closing) => {}
    }
    connection.as_mut().graceful_shutdown();
    let _ = connection.await;
}

/// A connection's socket that can be closed with a reset instead of a FIN.
struct Resettable {
    stream: TcpStream,
    reset: Arc<AtomicBool>,
}

impl Drop for Resettable {
    fn drop(&mut self) {
        if self.reset.load(Ordering::SeqCst) {
            // Linger 0: closing sends RST and discards unsent data, without blocking.
            let _ = socket2::SockRef::from(&self.stream).set_linger(Some(Duration::ZERO));
        }
    }
}

impl AsyncRead for Resettable {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for Resettable {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }
}
