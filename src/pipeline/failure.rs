//! The one place where a failure is classified: every outbound call (Genesys, CMS,
//! forward) fails as one [`HttpError`], converted here once (5xx, 408, 429, timeouts,
//! connection errors and a Genesys 401 that a fresh token got too are retryable, other
//! 4xx and answers the relay cannot use are permanent); undecodable records are poison.
//! A Genesys budget deferral is retryable and marked as a deferral: it is no failure of
//! anyone and spends no retry tier. Skips
//! (a conversation that is gone) are outcomes, not failures, and never reach this module.

use crate::kafka::ProduceError;
use crate::outbound::HttpError;
use std::fmt;
use std::time::Duration;

/// The `relay-error-class` of a retry or dead-letter record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ErrorClass {
    Retryable,
    Permanent,
    Poison,
    /// Retryable, but every retry tier was spent.
    Exhausted,
}

impl ErrorClass {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            ErrorClass::Retryable => "retryable",
            ErrorClass::Permanent => "permanent",
            ErrorClass::Poison => "poison",
            ErrorClass::Exhausted => "exhausted",
        }
    }
}

/// Why handling an event failed, and whether trying again can help.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Failure {
    pub(crate) class: ErrorClass,
    pub(crate) message: String,
    /// A `Retry-After` the failing service asked for (or the budget's next slot).
    pub(crate) retry_after: Option<Duration>,
    /// The Genesys request budget had no slot soon enough: retry at `retry_after`
    /// without counting an attempt.
    pub(crate) deferral: bool,
}

impl Failure {
    pub(crate) fn retryable(message: impl Into<String>) -> Self {
        Failure {
            class: ErrorClass::Retryable,
            message: message.into(),
            retry_after: None,
            deferral: false,
        }
    }

    pub(crate) fn permanent(message: impl Into<String>) -> Self {
        Failure {
            class: ErrorClass::Permanent,
            message: message.into(),
            retry_after: None,
            deferral: false,
        }
    }

    pub(crate) fn poison(message: impl Into<String>) -> Self {
        Failure {
            class: ErrorClass::Poison,
            message: message.into(),
            retry_after: None,
            deferral: false,
        }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.class.as_str(), self.message)
    }
}

impl From<HttpError> for Failure {
    fn from(e: HttpError) -> Self {
        Failure {
            class: if e.is_retriable() {
                ErrorClass::Retryable
            } else {
                ErrorClass::Permanent
            },
            retry_after: e.retry_after(),
            deferral: e.is_deferral(),
            message: e.to_string(),
        }
    }
}

impl From<ProduceError> for Failure {
    fn from(e: ProduceError) -> Self {
        Failure::retryable(format!("kafka: {e}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(status: u16) -> HttpError {
        HttpError::Status {
            service: "cms",
            status,
            retry_after: None,
            body: String::new(),
        }
    }

    #[test]
    fn statuses_are_classified_as_designed() {
        for s in [408, 429, 500, 502, 503, 504] {
            assert_eq!(Failure::from(status(s)).class, ErrorClass::Retryable, "{s}");
        }
        for s in [400, 401, 403, 404, 409, 422] {
            assert_eq!(Failure::from(status(s)).class, ErrorClass::Permanent, "{s}");
        }
        let timeout = HttpError::Transport {
            service: "cms",
            timeout: true,
            message: "t".into(),
        };
        assert_eq!(Failure::from(timeout).class, ErrorClass::Retryable);
        let e = Failure::from(HttpError::Status {
            service: "cms",
            status: 429,
            retry_after: Some(Duration::from_secs(7)),
            body: String::new(),
        });
        assert_eq!(e.retry_after, Some(Duration::from_secs(7)));
        assert!(e.message.starts_with("cms answered HTTP 429"));
        let deferred = Failure::from(HttpError::Deferred {
            service: "genesys",
            retry_after: Duration::from_secs(9),
        });
        assert!(deferred.deferral && deferred.class == ErrorClass::Retryable);
        assert_eq!(
            Failure::from(HttpError::Decode("x".into())).class,
            ErrorClass::Permanent
        );
    }
}
