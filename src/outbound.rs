//! Outbound HTTP, the one way the relay fails and answers when it calls out (the Genesys
//! Cloud API, the CMS, the forward backend): [`HttpError`] (with
//! [`HttpError::is_retriable`]) and [`Answer`], plus `Retry-After` parsing, bounded and
//! redacted error bodies, transport-error text and the status label used in metrics.
//!
//! Every client fails the same way, so the pipeline classifies a failure in one place
//! (`pipeline::failure`) and an operator reading a log line does not need to know which
//! client it was; the error names its service.

use crate::text::truncate_utf8;
use std::time::Duration;

use reqwest::header::{HeaderMap, RETRY_AFTER};
use reqwest::StatusCode;

/// Why an outbound HTTP call failed.
///
/// Messages never contain a secret (client secret, access token, API key): bodies are
/// redacted before they are kept, and transport errors drop the URL.
#[derive(Debug, Clone, thiserror::Error)]
pub enum HttpError {
    /// The service answered with a status the caller does not treat as success (after the
    /// client's own handling, e.g. one token refresh on a Genesys 401).
    #[error("{service} answered HTTP {status}: {body}")]
    Status {
        service: &'static str,
        status: u16,
        /// From `Retry-After`, so the retry is scheduled no earlier.
        retry_after: Option<Duration>,
        /// The answer body, redacted and truncated to 512 bytes.
        body: String,
    },
    /// No answer: connection refused or reset, DNS failure, timeout.
    #[error("{service} request failed{}: {message}", if *timeout { " (timeout)" } else { "" })]
    Transport {
        service: &'static str,
        timeout: bool,
        message: String,
    },
    /// The relay's own request budget for the service cannot give a slot soon enough to
    /// wait for it in a worker lane: try again after `retry_after` (nothing was sent).
    #[error("{service} request budget spent; next slot in {retry_after:?}")]
    Deferred {
        service: &'static str,
        retry_after: Duration,
    },
    /// An answer that is not the JSON shape we expect.
    #[error("cannot decode the answer: {0}")]
    Decode(String),
    /// A freshly issued access token was refused too (HTTP 401 after one refresh): it was
    /// revoked in between, or the service's own authentication is failing. Wrong client
    /// credentials fail at the token endpoint instead, so this is worth trying later.
    #[error("{service} refused a freshly issued access token (HTTP 401): {body}")]
    TokenRefused {
        service: &'static str,
        /// The answer body, redacted and truncated to 512 bytes.
        body: String,
    },
    /// The request could not be built: an unusable id (empty, `.` or `..`, which would
    /// address a different resource) or a URL that does not parse. Never retriable.
    #[error("invalid request: {0}")]
    InvalidRequest(String),
}

impl HttpError {
    /// Whether trying again later can help: 408, 429, 5xx, transport failures, budget
    /// deferrals and a refused fresh token; other statuses and undecodable answers are
    /// permanent.
    pub fn is_retriable(&self) -> bool {
        match self {
            HttpError::Status { status, .. } => matches!(status, 408 | 429 | 500..=599),
            HttpError::Transport { .. }
            | HttpError::Deferred { .. }
            | HttpError::TokenRefused { .. } => true,
            HttpError::Decode(_) | HttpError::InvalidRequest(_) => false,
        }
    }

    /// The HTTP status, when the service answered with one.
    pub fn status(&self) -> Option<u16> {
        match self {
            HttpError::Status { status, .. } => Some(*status),
            HttpError::TokenRefused { .. } => Some(401),
            _ => None,
        }
    }

    /// How long the service (or the budget) asked us to wait, when it said so.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            HttpError::Status { retry_after, .. } => *retry_after,
            HttpError::Deferred { retry_after, .. } => Some(*retry_after),
            _ => None,
        }
    }

    /// Whether the request timed out without an answer.
    pub fn is_timeout(&self) -> bool {
        matches!(self, HttpError::Transport { timeout: true, .. })
    }

    /// Whether this is a budget deferral rather than a failure of the service.
    pub fn is_deferral(&self) -> bool {
        matches!(self, HttpError::Deferred { .. })
    }

    pub(crate) fn transport(service: &'static str, err: reqwest::Error) -> Self {
        let (timeout, message) = transport_failure(err);
        HttpError::Transport {
            service,
            timeout,
            message,
        }
    }

    /// The metric status label of a transport failure: `timeout` or `error`.
    pub(crate) fn transport_label(&self) -> &'static str {
        if self.is_timeout() {
            LABEL_TIMEOUT
        } else {
            LABEL_ERROR
        }
    }
}

/// What one request came back with, body already read.
#[derive(Debug)]
pub(crate) struct Answer {
    pub(crate) status: StatusCode,
    pub(crate) retry_after: Option<Duration>,
    /// Kept for the headers a client reads itself (e.g. Contentful's rate-limit reset).
    pub(crate) headers: HeaderMap,
    pub(crate) body: bytes::Bytes,
}

impl Answer {
    /// Reads a response into an answer.
    pub(crate) async fn read(
        service: &'static str,
        response: reqwest::Response,
    ) -> Result<Self, HttpError> {
        let status = response.status();
        let retry_after = retry_after(response.headers());
        let headers = response.headers().clone();
        let body = response
            .bytes()
            .await
            .map_err(|e| HttpError::transport(service, e))?;
        Ok(Answer {
            status,
            retry_after,
            headers,
            body,
        })
    }

    /// The [`HttpError::Status`] for this answer, its body redacted of `secrets`.
    pub(crate) fn into_error(self, service: &'static str, secrets: &[&str]) -> HttpError {
        HttpError::Status {
            service,
            status: self.status.as_u16(),
            retry_after: self.retry_after,
            body: error_body(&self.body, secrets),
        }
    }

    /// The answer itself when it is a success, else its error.
    pub(crate) fn success(
        self,
        service: &'static str,
        secrets: &[&str],
    ) -> Result<Self, HttpError> {
        if self.status.is_success() {
            Ok(self)
        } else {
            Err(self.into_error(service, secrets))
        }
    }

    /// The body as JSON of type `T`.
    pub(crate) fn json<T: serde::de::DeserializeOwned>(&self, what: &str) -> Result<T, HttpError> {
        serde_json::from_slice(&self.body).map_err(|e| HttpError::Decode(format!("{what}: {e}")))
    }
}

/// `{base}/{segments...}` with every segment percent-encoded as one segment (ids come
/// from event input, and `a/b` must stay one segment rather than walk the API's paths);
/// empty, `.` and `..` segments are refused because `Url` would silently drop them.
pub(crate) fn url_with_segments(base: &str, segments: &[&str]) -> Result<reqwest::Url, HttpError> {
    let mut url = reqwest::Url::parse(base)
        .map_err(|e| HttpError::InvalidRequest(format!("base URL {base:?}: {e}")))?;
    for segment in segments {
        if segment.is_empty() || *segment == "." || *segment == ".." {
            return Err(HttpError::InvalidRequest(format!(
                "{segment:?} is not a usable path segment"
            )));
        }
    }
    url.path_segments_mut()
        .map_err(|_| HttpError::InvalidRequest(format!("base URL {base:?} cannot have a path")))?
        .pop_if_empty()
        .extend(segments);
    Ok(url)
}

/// Error bodies are kept for diagnosis but bounded: a misbehaving server must not make
/// an error (and the dead-letter header built from it) arbitrarily large.
pub(crate) const MAX_ERROR_BODY: usize = 512;

/// Metric status label for a request that timed out before an answer.
pub(crate) const LABEL_TIMEOUT: &str = "timeout";
/// Metric status label for any other transport failure (refused, reset, DNS...).
pub(crate) const LABEL_ERROR: &str = "error";

/// Parses `Retry-After` given in seconds (integer or decimal).
///
/// The HTTP-date form is not supported: neither Genesys Cloud nor the sinks we talk to
/// send it, and a wrong guess would be worse than the caller's own backoff.
pub(crate) fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    value
        .parse::<f64>()
        .ok()
        .filter(|s| s.is_finite() && *s >= 0.0)
        .and_then(|s| Duration::try_from_secs_f64(s).ok())
}

/// The metric label of an answered request: the numeric status code.
pub(crate) fn status_label(status: StatusCode) -> String {
    status.as_u16().to_string()
}

/// Replaces every occurrence of a secret with `***`; empty secrets are ignored (they
/// would match everywhere).
pub(crate) fn redact(text: &str, secrets: &[&str]) -> String {
    secrets
        .iter()
        .filter(|s| !s.is_empty())
        .fold(text.to_string(), |acc, s| acc.replace(s, "***"))
}

/// An error body fit for an error message: redacted first, then truncated, so a secret
/// cut in half by the truncation cannot leak its prefix.
pub(crate) fn error_body(bytes: &[u8], secrets: &[&str]) -> String {
    truncate_utf8(
        &redact(&String::from_utf8_lossy(bytes), secrets),
        MAX_ERROR_BODY,
    )
    .to_string()
}

/// What a transport failure looked like: whether it was a timeout, and a message.
///
/// The URL is dropped from the message (a base URL could carry credentials), and the
/// source chain is appended because reqwest's own text ("error sending request") says
/// nothing about the cause.
pub(crate) fn transport_failure(err: reqwest::Error) -> (bool, String) {
    let timeout = err.is_timeout();
    let err = err.without_url();
    let mut message = err.to_string();
    let mut source = std::error::Error::source(&err);
    while let Some(cause) = source {
        let text = cause.to_string();
        // hyper and reqwest often wrap the same text twice; say it once.
        if !message.ends_with(&text) {
            message.push_str(": ");
            message.push_str(&text);
        }
        source = cause.source();
    }
    (timeout, message)
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    #[test]
    fn retry_after_seconds() {
        let mut h = HeaderMap::new();
        assert_eq!(retry_after(&h), None);
        h.insert(RETRY_AFTER, HeaderValue::from_static("3"));
        assert_eq!(retry_after(&h), Some(Duration::from_secs(3)));
        h.insert(RETRY_AFTER, HeaderValue::from_static("0.5"));
        assert_eq!(retry_after(&h), Some(Duration::from_millis(500)));
        h.insert(
            RETRY_AFTER,
            HeaderValue::from_static("Wed, 21 Oct 2015 07:28:00 GMT"),
        );
        assert_eq!(retry_after(&h), None);
        h.insert(RETRY_AFTER, HeaderValue::from_static("-1"));
        assert_eq!(retry_after(&h), None);
    }

    #[test]
    fn error_body_redacts_before_truncating() {
        let secret = "s".repeat(20);
        let body = format!("{}{}", "x".repeat(500), secret);
        let out = error_body(body.as_bytes(), &[&secret, ""]);
        assert!(out.len() <= MAX_ERROR_BODY);
        assert!(
            !out.contains("sssss"),
            "no prefix of the secret survives: {out}"
        );
    }

    #[test]
    fn retriable_statuses_and_failures() {
        let status = |status| HttpError::Status {
            service: "cms",
            status,
            retry_after: None,
            body: String::new(),
        };
        for s in [408, 429, 500, 503, 599] {
            assert!(status(s).is_retriable(), "{s}");
        }
        for s in [400, 401, 403, 404, 409, 422] {
            assert!(!status(s).is_retriable(), "{s}");
        }
        let transport = HttpError::Transport {
            service: "genesys",
            timeout: true,
            message: "t".into(),
        };
        assert!(transport.is_retriable() && transport.is_timeout());
        assert!(transport
            .to_string()
            .contains("genesys request failed (timeout)"));
        assert!(!HttpError::Decode("x".into()).is_retriable());
        let refused = HttpError::TokenRefused {
            service: "genesys",
            body: String::new(),
        };
        assert!(refused.is_retriable() && refused.status() == Some(401));
        assert!(!HttpError::InvalidRequest("x".into()).is_retriable());
    }

    #[test]
    fn segments_are_percent_encoded_and_dots_refused() {
        let url =
            url_with_segments("http://h:1/", &["api", "v2", "conversations", "a/b c?#%"]).unwrap();
        assert_eq!(
            url.as_str(),
            "http://h:1/api/v2/conversations/a%2Fb%20c%3F%23%25"
        );
        let url = url_with_segments("http://h:1/prefix/", &["api"]).unwrap();
        assert_eq!(url.as_str(), "http://h:1/prefix/api");
        for bad in ["", ".", ".."] {
            assert!(matches!(
                url_with_segments("http://h:1", &["x", bad]),
                Err(HttpError::InvalidRequest(_))
            ));
        }
    }

    #[test]
    fn truncate_respects_char_boundaries() {
        let text = "é".repeat(300); // 600 bytes
        let out = truncate_utf8(&text, 511);
        assert_eq!(out.len(), 510);
    }
}
