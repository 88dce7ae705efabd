//! The one place where a failure is classified (DESIGN section 7, issue 4):
//! 5xx, 408, 429, timeouts and connection errors are retryable; other 4xx and answers the
//! relay cannot use are permanent; undecodable records are poison. Skips (a guest that is
//! gone) are outcomes, not failures, and never reach this module.

use crate::genesys::GenesysError;
use crate::kafka::ProduceError;
use crate::sinks::SinkError;
use std::fmt;
use std::time::Duration;

/// The `relay-error-class` of a retry or dead-letter record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    Retryable,
    Permanent,
    Poison,
    /// Retryable, but every retry tier was spent.
    Exhausted,
}

impl ErrorClass {
    pub fn as_str(self) -> &'static str {
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
pub struct Failure {
    pub class: ErrorClass,
    pub message: String,
    /// A `Retry-After` the failing service asked for.
    pub retry_after: Option<Duration>,
}

impl Failure {
    pub fn retryable(message: impl Into<String>) -> Self {
        Failure {
            class: ErrorClass::Retryable,
            message: message.into(),
            retry_after: None,
        }
    }

    pub fn permanent(message: impl Into<String>) -> Self {
        Failure {
            class: ErrorClass::Permanent,
            message: message.into(),
            retry_after: None,
        }
    }

    pub fn poison(message: impl Into<String>) -> Self {
        Failure {
            class: ErrorClass::Poison,
            message: message.into(),
            retry_after: None,
        }
    }

    /// Classifies an HTTP answer status.
    pub fn from_status(status: u16, retry_after: Option<Duration>, message: String) -> Self {
        let class = match status {
            408 | 429 | 500..=599 => ErrorClass::Retryable,
            _ => ErrorClass::Permanent,
        };
        Failure {
            class,
            message,
            retry_after,
        }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.class.as_str(), self.message)
    }
}

impl From<GenesysError> for Failure {
    fn from(e: GenesysError) -> Self {
        let message = format!("genesys: {e}");
        match &e {
            GenesysError::Status {
                status,
                retry_after,
                ..
            } => Failure::from_status(*status, *retry_after, message),
            GenesysError::Transport { .. } => Failure::retryable(message),
            GenesysError::Decode(_) | GenesysError::InvalidRequest(_) => {
                Failure::permanent(message)
            }
        }
    }
}

impl From<SinkError> for Failure {
    fn from(e: SinkError) -> Self {
        let message = format!("sink: {e}");
        match &e {
            SinkError::Status {
                status,
                retry_after,
                ..
            } => Failure::from_status(*status, *retry_after, message),
            SinkError::Transport { .. } => Failure::retryable(message),
            SinkError::InvalidRequest(_) => Failure::permanent(message),
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

    #[test]
    fn statuses_are_classified_as_designed() {
        for s in [408, 429, 500, 502, 503, 504] {
            assert_eq!(
                Failure::from_status(s, None, String::new()).class,
                ErrorClass::Retryable,
                "{s}"
            );
        }
        for s in [400, 401, 403, 404, 409, 422] {
            assert_eq!(
                Failure::from_status(s, None, String::new()).class,
                ErrorClass::Permanent,
                "{s}"
            );
        }
        let timeout = SinkError::Transport {
            timeout: true,
            message: "t".into(),
        };
        assert_eq!(Failure::from(timeout).class, ErrorClass::Retryable);
        let e = Failure::from(SinkError::Status {
            status: 429,
            retry_after: Some(Duration::from_secs(7)),
            body: String::new(),
        });
        assert_eq!(e.retry_after, Some(Duration::from_secs(7)));
    }
}
