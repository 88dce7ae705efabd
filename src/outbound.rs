//! Pieces shared by the outbound HTTP clients ([`crate::genesys`] and [`crate::sinks`]):
//! `Retry-After` parsing, bounded and redacted error bodies, transport-error text and the
//! status label used in metrics.
//!
//! Everything here exists so that both clients fail the same way: a caller classifying an
//! error, or an operator reading a log line, should not need to know which client it was.

use std::time::Duration;

use reqwest::header::{HeaderMap, RETRY_AFTER};
use reqwest::StatusCode;

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

/// Cuts `text` to at most `max` bytes on a character boundary.
pub(crate) fn truncate(text: &str, max: usize) -> String {
    text[..text.floor_char_boundary(max)].to_string()
}

/// An error body fit for an error message: redacted first, then truncated, so a secret
/// cut in half by the truncation cannot leak its prefix.
pub(crate) fn error_body(bytes: &[u8], secrets: &[&str]) -> String {
    truncate(
        &redact(&String::from_utf8_lossy(bytes), secrets),
        MAX_ERROR_BODY,
    )
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
    fn truncate_respects_char_boundaries() {
        let text = "é".repeat(300); // 600 bytes
        let out = truncate(&text, 511);
        assert_eq!(out.len(), 510);
    }
}
