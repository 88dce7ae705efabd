//! Genesys Cloud Platform API: the OAuth client-credentials [`TokenSource`], the
//! [`GenesysClient`] the worker uses to fetch guests and conversations, and idempotent
//! webhook registration ([`register_webhook`]).
//!
//! The client handles what every caller would otherwise repeat (a 401 refreshes the token
//! once, a 429 waits and retries a little) and hands everything else back as a
//! [`GenesysError`], which the pipeline classifies as retryable or permanent.

mod client;
mod token;
mod webhooks;

use std::time::Duration;

pub use client::{Conversation, GenesysClient, GuestProfile, Participant, Webhook, WebhookPage};
pub use token::TokenSource;
pub use webhooks::{register_webhook, RegistrationOutcome, WebhookSpec};

/// Why a Genesys Cloud call failed.
///
/// Messages never contain the client secret or an access token: bodies are redacted
/// before they are kept, and transport errors drop the URL.
#[derive(Debug, Clone, thiserror::Error)]
pub enum GenesysError {
    /// Genesys answered with an error status after the client's own handling
    /// (one token refresh on 401, a few waits on 429).
    #[error("Genesys Cloud answered HTTP {status}: {message}")]
    Status {
        status: u16,
        /// From `Retry-After`, so the caller can schedule its retry no earlier.
        retry_after: Option<Duration>,
        /// The answer body, redacted and truncated to 512 bytes.
        message: String,
    },
    /// No answer: connection refused or reset, DNS failure, timeout.
    #[error("Genesys Cloud request failed{}: {message}", if *timeout { " (timeout)" } else { "" })]
    Transport { timeout: bool, message: String },
    /// An answer that is not the JSON shape we expect.
    #[error("cannot decode the Genesys Cloud answer: {0}")]
    Decode(String),
    /// The request could not be built: an unusable id (empty, `.` or `..`, which would
    /// address a different resource) or a base URL that does not parse. Never retryable.
    #[error("invalid Genesys Cloud request: {0}")]
    InvalidRequest(String),
}

impl GenesysError {
    /// The HTTP status, when Genesys answered with one.
    pub fn status(&self) -> Option<u16> {
        match self {
            GenesysError::Status { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// How long Genesys asked us to wait, when it said so.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            GenesysError::Status { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    /// Whether the request timed out without an answer.
    pub fn is_timeout(&self) -> bool {
        matches!(self, GenesysError::Transport { timeout: true, .. })
    }

    pub(crate) fn transport(err: reqwest::Error) -> Self {
        let (timeout, message) = crate::outbound::transport_failure(err);
        GenesysError::Transport { timeout, message }
    }
}

/// Builds `{base}/{segments...}` with every segment percent-encoded: ids come from
/// webhook input, and `a/b` must stay one segment rather than walk the API's paths.
pub(crate) fn api_url(base: &str, segments: &[&str]) -> Result<reqwest::Url, GenesysError> {
    let mut url = reqwest::Url::parse(base)
        .map_err(|e| GenesysError::InvalidRequest(format!("base URL {base:?}: {e}")))?;
    for segment in segments {
        // `Url` silently drops `.` and `..` segments, which would turn a guest lookup
        // into a request for the collection above it.
        if segment.is_empty() || *segment == "." || *segment == ".." {
            return Err(GenesysError::InvalidRequest(format!(
                "{segment:?} is not a usable path segment"
            )));
        }
    }
    url.path_segments_mut()
        .map_err(|_| GenesysError::InvalidRequest(format!("base URL {base:?} cannot have a path")))?
        .pop_if_empty()
        .extend(segments);
    Ok(url)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_are_percent_encoded() {
        let url = api_url("http://h:1/", &["api", "v2", "guests", "a/b c?#%"]).unwrap();
        assert_eq!(url.as_str(), "http://h:1/api/v2/guests/a%2Fb%20c%3F%23%25");
        let url = api_url("http://h:1/prefix/", &["api"]).unwrap();
        assert_eq!(url.as_str(), "http://h:1/prefix/api");
    }

    #[test]
    fn dot_segments_and_empty_ids_are_refused() {
        for bad in ["", ".", ".."] {
            assert!(matches!(
                api_url("http://h:1", &["guests", bad]),
                Err(GenesysError::InvalidRequest(_))
            ));
        }
    }

    #[test]
    fn accessors() {
        let e = GenesysError::Status {
            status: 429,
            retry_after: Some(Duration::from_secs(2)),
            message: String::new(),
        };
        assert_eq!(e.status(), Some(429));
        assert_eq!(e.retry_after(), Some(Duration::from_secs(2)));
        let t = GenesysError::Transport {
            timeout: true,
            message: "x".into(),
        };
        assert_eq!(t.status(), None);
        assert!(t.is_timeout());
        assert!(t.to_string().contains("(timeout)"));
    }
}
