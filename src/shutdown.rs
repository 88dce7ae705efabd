//! Graceful shutdown: one watch channel that every long-running piece listens to,
//! flipped by SIGTERM or Ctrl-C.

use tokio::sync::watch;

/// The sending half flips to `true` once; receivers stop accepting work and drain.
pub(crate) fn channel() -> (watch::Sender<bool>, watch::Receiver<bool>) {
    watch::channel(false)
}

/// Resolves when `rx` turns true (or its sender is gone).
pub(crate) async fn signalled(mut rx: watch::Receiver<bool>) {
    let _ = rx.wait_for(|s| *s).await;
}

/// Waits for SIGTERM or Ctrl-C, then flips `tx`.
pub async fn on_signal(tx: watch::Sender<bool>) {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("SIGTERM handler can be installed");
        tokio::select! {
            _ = ctrl_c => tracing::info!("Ctrl-C received; shutting down"),
            _ = term.recv() => tracing::info!("SIGTERM received; shutting down"),
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
    let _ = tx.send(true);
}

/// Runs a server whose graceful shutdown waits for open connections; after the shutdown
/// signal, connections still open past `grace` (an idle keep-alive a client never closes,
/// for example) are dropped so the process exits in bounded time.
pub(crate) async fn drain_within(
    server: impl std::future::Future<Output = ()>,
    shutdown_rx: watch::Receiver<bool>,
    grace: std::time::Duration,
    name: &'static str,
) {
    let deadline = async {
        signalled(shutdown_rx).await;
        tokio::time::sleep(grace).await;
    };
    tokio::select! {
        _ = server => {}
        _ = deadline => tracing::warn!(server = name, "connections still open after the grace period; closing them"),
    }
}
