//! Names and parsing of the `relay-*` headers on retry and dead-letter records
//! (docs/contract.md#headers). All values are UTF-8 strings.

use rdkafka::message::{Headers, OwnedMessage};
use rdkafka::Message;

pub const EVENT_ID: &str = "relay-event-id";
pub const ATTEMPT: &str = "relay-attempt";
pub const NOT_BEFORE: &str = "relay-not-before";
pub const ORIGINAL_TOPIC: &str = "relay-original-topic";
pub const ORIGINAL_PARTITION: &str = "relay-original-partition";
pub const ORIGINAL_OFFSET: &str = "relay-original-offset";
pub const FIRST_FAILURE_AT: &str = "relay-first-failure-at";
pub const ROUTE: &str = "relay-route";
pub const ERROR_CLASS: &str = "relay-error-class";
pub const ERROR: &str = "relay-error";
pub const TRACEPARENT: &str = "traceparent";
pub const REPLAYED_FROM: &str = "relay-replayed-from";
/// On raw records of EventBridge deliveries: EventBridge's own event `id`, for tracing a
/// delivery back to EventBridge (the event id is the notification's, the same on every path).
pub const EVENTBRIDGE_ID: &str = "relay-eventbridge-id";
/// On idempotency marks: the worker process that wrote the mark (a random id per process),
/// so its own tail does not apply the mark a second time.
pub const MARK_WRITER: &str = "relay-mark-writer";

/// Longest `relay-error` value, in bytes.
pub(crate) const MAX_ERROR_BYTES: usize = 1024;

/// The first value of header `name` as UTF-8, if present and valid.
pub fn header_str<'a>(msg: &'a OwnedMessage, name: &str) -> Option<&'a str> {
    let headers = msg.headers()?;
    headers
        .iter()
        .find(|h| h.key == name)
        .and_then(|h| h.value)
        .and_then(|v| std::str::from_utf8(v).ok())
}

/// The header parsed as a number.
pub(crate) fn header_i64(msg: &OwnedMessage, name: &str) -> Option<i64> {
    header_str(msg, name)?.trim().parse().ok()
}
