//! Downstream HTTP sinks the worker writes to: the headless CMS (guest-session entries,
//! [`CmsClient`]) and the generic backend forward ([`HttpForwarder`]).
//!
//! Sinks make exactly one attempt per call (apart from the CMS's create-then-update) and
//! report failures as [`HttpError`]; retries belong to the pipeline's retry topics, which
//! can wait without holding a worker.

mod cms;
mod http_forward;

use std::sync::Arc;
use std::time::Instant;

pub use crate::outbound::HttpError;
pub use cms::{CmsClient, UpsertOutcome};
pub use http_forward::HttpForwarder;

use crate::metrics::Metrics;
use crate::outbound::{self, Answer};

/// Sends one request, reads the answer and records `relay_sink_requests_total` and
/// `relay_sink_request_duration_seconds` for `sink`.
async fn send(
    metrics: &Arc<Metrics>,
    sink: &'static str,
    request: reqwest::RequestBuilder,
) -> Result<Answer, HttpError> {
    let started = Instant::now();
    let result = match request.send().await {
        Ok(response) => Answer::read(sink, response).await,
        Err(err) => Err(HttpError::transport(sink, err)),
    };
    metrics
        .sink_request_duration_seconds
        .with_label_values(&[sink])
        .observe(started.elapsed().as_secs_f64());
    let label = match &result {
        Ok(answer) => outbound::status_label(answer.status),
        Err(err) => err.transport_label().to_string(),
    };
    metrics
        .sink_requests_total
        .with_label_values(&[sink, &label])
        .inc();
    result
}
