//! Downstream HTTP sinks the worker writes to: the headless CMS (guest-session entries,
//! [`CmsClient`]) and the generic backend forward ([`HttpForwarder`]).
//!
//! Sinks make exactly one attempt per call (apart from the CMS's create-then-update) and
//! report failures as [`SinkError`]; retries belong to the pipeline's retry topics, which
//! can wait without holding a worker.

mod cms;
mod http_forward;

use std::sync::Arc;
use std::time::{Duration, Instant};

pub use cms::{CmsClient, UpsertOutcome};
pub use http_forward::HttpForwarder;

use crate::metrics::Metrics;
use crate::outbound;

/// Why a sink write failed.
///
/// Messages never contain the sink's API key: bodies are redacted before they are kept
/// and transport errors drop the URL.
#[derive(Debug, Clone, thiserror::Error)]
pub enum SinkError {
    /// The sink answered with a status we do not treat as success.
    #[error("sink answered HTTP {status}: {body}")]
    Status {
        status: u16,
        /// From `Retry-After` (seconds), typically on 429 or 503.
        retry_after: Option<Duration>,
        /// The answer body, redacted and truncated to 512 bytes.
        body: String,
    },
    /// No answer: connection refused or reset, DNS failure, timeout.
    #[error("sink request failed{}: {message}", if *timeout { " (timeout)" } else { "" })]
    Transport { timeout: bool, message: String },
    /// The request could not be built (a URL that does not parse, an unusable entry id).
    /// Never retryable.
    #[error("invalid sink request: {0}")]
    InvalidRequest(String),
}

impl SinkError {
    /// The HTTP status, when the sink answered with one.
    pub fn status(&self) -> Option<u16> {
        match self {
            SinkError::Status { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// How long the sink asked us to wait, when it said so.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            SinkError::Status { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    /// Whether the request timed out without an answer.
    pub fn is_timeout(&self) -> bool {
        matches!(self, SinkError::Transport { timeout: true, .. })
    }
}

/// What one request to a sink came back with.
struct Answer {
    status: reqwest::StatusCode,
    retry_after: Option<Duration>,
    body: bytes::Bytes,
}

impl Answer {
    fn into_error(self, secrets: &[&str]) -> SinkError {
        SinkError::Status {
            status: self.status.as_u16(),
            retry_after: self.retry_after,
            body: outbound::error_body(&self.body, secrets),
        }
    }
}

/// Sends one request, reads the answer and records `relay_sink_requests_total` and
/// `relay_sink_request_duration_seconds` for `sink`.
async fn send(
    metrics: &Arc<Metrics>,
    sink: &'static str,
    request: reqwest::RequestBuilder,
) -> Result<Answer, SinkError> {
    let started = Instant::now();
    let result = async {
        let response = request.send().await?;
        let status = response.status();
        let retry_after = outbound::retry_after(response.headers());
        let body = response.bytes().await?;
        Ok::<_, reqwest::Error>(Answer {
            status,
            retry_after,
            body,
        })
    }
    .await;
    metrics
        .sink_request_duration_seconds
        .with_label_values(&[sink])
        .observe(started.elapsed().as_secs_f64());
    match result {
        Ok(answer) => {
            metrics
                .sink_requests_total
                .with_label_values(&[sink, &outbound::status_label(answer.status)])
                .inc();
            Ok(answer)
        }
        Err(err) => {
            let (timeout, message) = outbound::transport_failure(err);
            let label = if timeout {
                outbound::LABEL_TIMEOUT
            } else {
                outbound::LABEL_ERROR
            };
            metrics
                .sink_requests_total
                .with_label_values(&[sink, label])
                .inc();
            Err(SinkError::Transport { timeout, message })
        }
    }
}
