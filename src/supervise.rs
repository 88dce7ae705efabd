//! Supervision of the long-running parts of a relay process (ingress, listener, consumer
//! loops, idempotency tail, admin server).
//!
//! Invariant: every part runs until shutdown. A part that fails, panics or ends before the
//! shutdown signal is a failure of the process: its cause is logged once, the others are
//! told to stop (they drain as on SIGTERM), and [`Supervisor::wait`] returns
//! [`PartFailed`], which the binary turns into a non-zero exit so an orchestrator
//! restarts it. A half-working process (a worker whose idempotency tail died, an ingress
//! answering 202 beside a dead listener) is never left running silently.

use futures::stream::{FuturesUnordered, StreamExt};
use std::future::Future;
use tokio::sync::watch;
use tokio::task::{JoinError, JoinHandle};

/// A long-running part of the process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    Ingress,
    Listener,
    RawConsumer,
    RetryConsumer,
    IdempotencyTail,
    Admin,
}

impl Part {
    pub fn as_str(self) -> &'static str {
        match self {
            Part::Ingress => "ingress",
            Part::Listener => "listener",
            Part::RawConsumer => "raw-topic consumer",
            Part::RetryConsumer => "retry-topic consumer",
            Part::IdempotencyTail => "idempotency tail",
            Part::Admin => "admin server",
        }
    }
}

/// A part stopped the process: which, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{} failed: {cause}", part.as_str())]
pub struct PartFailed {
    pub part: Part,
    pub cause: String,
}

/// What a part's task ends with: `()` (nothing to say) or a `Result` whose error is the
/// cause.
pub(crate) trait PartOutcome: Send + 'static {
    fn into_cause(self) -> Option<String>;
}

impl PartOutcome for () {
    fn into_cause(self) -> Option<String> {
        None
    }
}

impl<E: std::fmt::Display + Send + 'static> PartOutcome for Result<(), E> {
    fn into_cause(self) -> Option<String> {
        self.err().map(|e| e.to_string())
    }
}

type Outcome = Result<Option<String>, JoinError>;

/// The parts of one process and the shutdown signal they share.
#[derive(Default)]
pub(crate) struct Supervisor {
    parts: Vec<(Part, JoinHandle<Option<String>>)>,
}

impl Supervisor {
    /// Runs `task` as `part`.
    pub(crate) fn spawn<F>(&mut self, part: Part, task: F)
    where
        F: Future + Send + 'static,
        F::Output: PartOutcome,
    {
        self.parts
            .push((part, tokio::spawn(async move { task.await.into_cause() })));
    }

    /// Supervises `handle`, a part already spawned.
    pub(crate) fn adopt<T: PartOutcome>(&mut self, part: Part, handle: JoinHandle<T>) {
        let cause = tokio::spawn(async move {
            match handle.await {
                Ok(outcome) => outcome.into_cause(),
                Err(e) => Some(panic_cause(e)),
            }
        });
        self.parts.push((part, cause));
    }

    /// Waits until every part has ended. The first part that ends before `shutdown` is
    /// signalled (or fails, or panics) signals it for the others and is returned.
    pub(crate) async fn wait(self, shutdown: &watch::Sender<bool>) -> Result<(), PartFailed> {
        let mut running: FuturesUnordered<_> = self
            .parts
            .into_iter()
            .map(|(part, handle)| async move { (part, handle.await) })
            .collect();
        let mut failed: Option<PartFailed> = None;
        while let Some((part, outcome)) = running.next().await {
            let stopping = *shutdown.borrow();
            let Some(cause) = cause_of(outcome, stopping) else {
                continue;
            };
            if failed.is_none() {
                tracing::error!(part = part.as_str(), %cause, "a part of the relay failed; stopping the process");
                failed = Some(PartFailed { part, cause });
                let _ = shutdown.send(true);
            } else {
                tracing::warn!(part = part.as_str(), %cause, "another part failed while stopping");
            }
        }
        failed.map_or(Ok(()), Err)
    }
}

/// Why a part's end is a failure, if it is: an error or a panic always; a plain end only
/// before shutdown.
fn cause_of(outcome: Outcome, stopping: bool) -> Option<String> {
    match outcome {
        Ok(Some(cause)) => Some(cause),
        Ok(None) if stopping => None,
        Ok(None) => Some("ended before shutdown".into()),
        Err(e) => Some(panic_cause(e)),
    }
}

fn panic_cause(e: JoinError) -> String {
    if e.is_cancelled() {
        return "cancelled".into();
    }
    let payload = e.into_panic();
    let message = payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".into());
    format!("panicked: {message}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn a_part_that_ends_early_stops_the_others_and_is_reported() {
        let (tx, rx) = watch::channel(false);
        let mut s = Supervisor::default();
        let mut wait_rx = rx.clone();
        s.spawn(Part::Ingress, async move {
            let _ = wait_rx.wait_for(|v| *v).await;
        });
        s.spawn(Part::IdempotencyTail, async {
            tokio::time::sleep(Duration::from_millis(20)).await;
            Err::<(), _>("topic deleted")
        });
        let failed = tokio::time::timeout(Duration::from_secs(5), s.wait(&tx))
            .await
            .expect("the ingress stopped after the failure")
            .unwrap_err();
        assert_eq!(failed.part, Part::IdempotencyTail);
        assert_eq!(failed.to_string(), "idempotency tail failed: topic deleted");
        assert!(*rx.borrow());
    }

    #[tokio::test]
    async fn panics_and_early_ends_are_failures_but_ends_after_shutdown_are_not() {
        let (tx, _rx) = watch::channel(false);
        let mut s = Supervisor::default();
        s.adopt(
            Part::Listener,
            tokio::spawn(async {
                panic!("boom");
                #[allow(unreachable_code)]
                ()
            }),
        );
        let failed = s.wait(&tx).await.unwrap_err();
        assert_eq!(failed.cause, "panicked: boom");

        let (tx, _rx) = watch::channel(false);
        let mut s = Supervisor::default();
        s.spawn(Part::Admin, async {});
        assert_eq!(
            s.wait(&tx).await.unwrap_err().cause,
            "ended before shutdown"
        );

        let (tx, _rx) = watch::channel(true);
        let mut s = Supervisor::default();
        s.spawn(Part::Admin, async {});
        assert_eq!(s.wait(&tx).await, Ok(()));
    }
}
