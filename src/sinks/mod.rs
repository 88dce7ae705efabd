//! Downstream HTTP sinks the worker writes to: the headless CMS (guest-session entries,
//! [`CmsSink`] over the json, Contentful, Sanity and Strapi adapters) and the generic
//! backend forward ([`HttpForwarder`]).
//!
//! Sinks make one attempt per call, apart from a CMS's own read-modify-write round
//! (read, write, re-read on a version conflict) and Contentful's bounded in-process wait
//! for its rate limit; they report failures as [`HttpError`]. Retries belong to the
//! pipeline's retry topics, which can wait without holding a worker.

pub mod cms;
mod http_forward;

use std::sync::Arc;
use std::time::Instant;

pub use crate::outbound::HttpError;
pub use cms::{CmsClient, CmsSink, GuestEntry, UpsertOutcome};
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
