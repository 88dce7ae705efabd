//! The reliable-forward sink: POSTs an event to the downstream backend
//! (`RELAY_FORWARD_URL`) with headers that let the backend drop redeliveries.

use std::sync::Arc;

use serde_json::Value;

use super::send;
use crate::metrics::Metrics;
use crate::outbound::HttpError;

const SINK: &str = "forward";

/// POSTs events to one downstream URL.
pub struct HttpForwarder {
    url: String,
    /// `url` parsed once, at construction.
    parsed: Result<reqwest::Url, HttpError>,
    http: reqwest::Client,
    metrics: Arc<Metrics>,
}

impl std::fmt::Debug for HttpForwarder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpForwarder")
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

impl HttpForwarder {
    pub fn new(url: String, http: reqwest::Client, metrics: Arc<Metrics>) -> Self {
        let parsed = reqwest::Url::parse(&url)
            .map_err(|e| HttpError::InvalidRequest(format!("forward URL {url:?}: {e}")));
        HttpForwarder {
            url,
            parsed,
            http,
            metrics,
        }
    }

    /// POST the JSON body with `X-Idempotency-Key` and `X-Relay-Event-Id`; any 2xx is
    /// done, anything else is a [`HttpError`] for the pipeline to classify.
    pub async fn forward(
        &self,
        body: &Value,
        idempotency_key: &str,
        event_id: &str,
    ) -> Result<(), HttpError> {
        let url = self.parsed.clone()?;
        let request = self
            .http
            .post(url)
            .header("X-Idempotency-Key", idempotency_key)
            .header("X-Relay-Event-Id", event_id)
            .json(body);
        let answer = send(&self.metrics, SINK, request).await?;
        if answer.status.is_success() {
            Ok(())
        } else {
            Err(answer.into_error(SINK, &[]))
        }
    }
}
