//! The headless-CMS sink: one interface ([`CmsSink`], [`GuestEntry`] in, [`UpsertOutcome`]
//! out) over four adapters chosen by `RELAY_CMS_KIND`: the generic JSON API ([`json`]),
//! Contentful's Content Management API ([`contentful`]), Sanity's mutations API
//! ([`sanity`]) and Strapi 5's REST API ([`strapi`]).
//!
//! Invariants every adapter keeps:
//! - every write carries `X-Relay-Event-Id` (and the json adapter its idempotency key);
//! - an entry that already holds this event (same `eventId`) is not written again, and an
//!   entry holding a newer event (`eventTimeMs` greater than the event's) is not
//!   overwritten: [`decide`] is the one rule, applied to what the CMS itself stores, so it
//!   holds across relay restarts and instances, not only in this process's memory;
//! - failures are [`HttpError`]s, classified by the pipeline like any outbound call;
//!   tokens never appear in them (answer bodies are redacted).

mod contentful;
mod json;
mod sanity;
pub mod settings;
mod strapi;

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Map, Value};

pub use self::contentful::ContentfulClient;
pub use self::json::CmsClient;
pub use self::sanity::SanityClient;
pub use self::settings::{CmsEndpoint, CmsKind, CmsSettings, CmsTarget};
pub use self::strapi::StrapiClient;
use crate::metrics::Metrics;
use crate::outbound::HttpError;

/// Header every CMS write carries: the relay event behind it, so an operator (or a CMS
/// webhook) can tie an entry revision to the event.
pub const EVENT_ID_HEADER: &str = "X-Relay-Event-Id";
/// The entry field holding the id of the event last written to it.
pub const FIELD_EVENT_ID: &str = "eventId";
/// The entry field holding that event's time (Unix milliseconds): the stale guard's key.
pub const FIELD_EVENT_TIME: &str = "eventTimeMs";
/// The metric and error label of every CMS request, whatever the adapter.
const SINK: &str = "cms";
/// Read-modify-write rounds before a lost race is reported (the CMS changed the entry
/// between our read and our write every time): a retriable failure, tried again later.
const MAX_WRITE_ROUNDS: u32 = 3;

/// One guest-session write: the entry and the event behind it.
#[derive(Debug, Clone, Copy)]
pub struct GuestEntry<'a> {
    /// The entry's id as the relay derives it (`RELAY_CMS_ENTRY_KEY`); each adapter maps it
    /// to the CMS's own identifier.
    pub entry_id: &'a str,
    /// The typed fields (attributes per `RELAY_ATTRIBUTE_MAP`, ids, `eventId`,
    /// `eventTimeMs`).
    pub fields: &'a Map<String, Value>,
    pub event_id: &'a str,
    pub event_time_ms: Option<i64>,
    /// `<route>:<event id>`: sent by the json adapter, and the seed of Sanity's
    /// transaction id.
    pub idempotency_key: &'a str,
}

/// What an upsert did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpsertOutcome {
    Created,
    Updated,
    /// The entry already holds this event (a redelivery, or a write whose answer was
    /// lost): nothing written.
    Unchanged,
    /// The entry holds a newer event: nothing written.
    Stale,
}

/// The configured CMS adapter.
#[derive(Debug)]
pub enum CmsSink {
    Json(CmsClient),
    Contentful(ContentfulClient),
    Sanity(SanityClient),
    Strapi(StrapiClient),
}

impl CmsSink {
    /// The adapter of `endpoint`'s kind. [`CmsEndpoint`] guarantees the token of the kinds
    /// that need one; a missing one here is sent as an empty bearer (and refused by the CMS).
    pub fn new(endpoint: CmsEndpoint, http: reqwest::Client, metrics: Arc<Metrics>) -> Self {
        let CmsEndpoint {
            url,
            token,
            rate_limit_wait,
            target,
        } = endpoint;
        let required = || {
            token
                .clone()
                .unwrap_or_else(|| crate::config::Secret::new(""))
        };
        match target {
            CmsTarget::Json => CmsSink::Json(CmsClient::new(url, token.clone(), http, metrics)),
            CmsTarget::Contentful(s) => CmsSink::Contentful(ContentfulClient::new(
                url,
                s,
                required(),
                rate_limit_wait,
                http,
                metrics,
            )),
            CmsTarget::Sanity(s) => {
                CmsSink::Sanity(SanityClient::new(url, s, required(), http, metrics))
            }
            CmsTarget::Strapi(s) => {
                CmsSink::Strapi(StrapiClient::new(url, s, required(), http, metrics))
            }
        }
    }

    /// Creates or updates the guest's entry (see each adapter for the calls it makes).
    pub async fn upsert_guest_session(
        &self,
        entry: &GuestEntry<'_>,
    ) -> Result<UpsertOutcome, HttpError> {
        match self {
            CmsSink::Json(c) => c.upsert(entry).await,
            CmsSink::Contentful(c) => c.upsert(entry).await,
            CmsSink::Sanity(c) => c.upsert(entry).await,
            CmsSink::Strapi(c) => c.upsert(entry).await,
        }
    }

    pub fn kind(&self) -> CmsKind {
        match self {
            CmsSink::Json(_) => CmsKind::Json,
            CmsSink::Contentful(_) => CmsKind::Contentful,
            CmsSink::Sanity(_) => CmsKind::Sanity,
            CmsSink::Strapi(_) => CmsKind::Strapi,
        }
    }
}

/// What the stored entry says about writing this event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Decision {
    Write,
    Unchanged,
    Stale,
}

/// The one stale/redelivery rule, on the values the CMS stores: the same event id means
/// already written; a stored event time later than the event's means the event is older
/// than what the entry shows. Equal times are written (two events of the same
/// millisecond: the later delivered wins, as in the relay's own guard). An event without
/// a time cannot be ordered and is written.
fn decide(stored_event_id: Option<&str>, stored_time: Option<i64>, entry: &GuestEntry) -> Decision {
    if stored_event_id == Some(entry.event_id) {
        return Decision::Unchanged;
    }
    match (entry.event_time_ms, stored_time) {
        (Some(t), Some(stored)) if t < stored => Decision::Stale,
        _ => Decision::Write,
    }
}

/// The relay's mark on a stored entry, the event it was last written from, where Sanity
/// and Strapi keep it: top-level `eventId`/`eventTimeMs` fields of the document.
#[derive(Debug, Clone, PartialEq)]
struct StoredMark {
    event_id: Option<String>,
    event_time: Option<i64>,
}

impl StoredMark {
    fn of(doc: &Value) -> Self {
        StoredMark {
            event_id: doc
                .get(FIELD_EVENT_ID)
                .and_then(Value::as_str)
                .map(str::to_string),
            event_time: time_value(doc.get(FIELD_EVENT_TIME)),
        }
    }

    fn decide(&self, entry: &GuestEntry) -> Decision {
        decide(self.event_id.as_deref(), self.event_time, entry)
    }
}

/// An event time as a CMS hands it back: a JSON number, or a string of digits (Strapi
/// returns `biginteger` attributes as strings).
fn time_value(value: Option<&Value>) -> Option<i64> {
    match value? {
        Value::Number(n) => n.as_i64().or_else(|| n.as_f64().map(|f| f as i64)),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// The error for a read-modify-write that kept losing races: retriable (a 409 the
/// pipeline would otherwise treat as permanent), so the event is tried again later.
fn lost_race(what: &str) -> HttpError {
    HttpError::Status {
        service: SINK,
        status: 503,
        retry_after: Some(Duration::from_secs(1)),
        body: format!(
            "{what}: the entry changed between read and write {MAX_WRITE_ROUNDS} times in a row"
        ),
    }
}

/// An answer that is not the JSON the API documents.
fn decode_error(what: &str, err: impl std::fmt::Display) -> HttpError {
    HttpError::Decode(format!("{what}: {err}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry<'a>(fields: &'a Map<String, Value>, id: &'a str, t: Option<i64>) -> GuestEntry<'a> {
        GuestEntry {
            entry_id: "c1",
            fields,
            event_id: id,
            event_time_ms: t,
            idempotency_key: "guest_sync:e",
        }
    }

    #[test]
    fn the_stale_rule() {
        let f = Map::new();
        let e = entry(&f, "e2", Some(200));
        assert_eq!(decide(None, None, &e), Decision::Write);
        assert_eq!(decide(Some("e1"), Some(100), &e), Decision::Write);
        assert_eq!(decide(Some("e1"), Some(200), &e), Decision::Write);
        assert_eq!(decide(Some("e1"), Some(300), &e), Decision::Stale);
        assert_eq!(decide(Some("e2"), Some(300), &e), Decision::Unchanged);
        let untimed = entry(&f, "e3", None);
        assert_eq!(decide(Some("e1"), Some(300), &untimed), Decision::Write);
    }

    #[test]
    fn times_from_numbers_and_strings() {
        assert_eq!(time_value(Some(&Value::from(5))), Some(5));
        assert_eq!(
            time_value(Some(&Value::from("1700000000000"))),
            Some(1_700_000_000_000)
        );
        assert_eq!(time_value(Some(&Value::from("x"))), None);
        assert_eq!(time_value(None), None);
    }
}
