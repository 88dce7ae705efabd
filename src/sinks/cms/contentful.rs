//! The Contentful adapter (`RELAY_CMS_KIND=contentful`): guest entries through the Content
//! Management API, the entry id being the relay's entry id.
//!
//! Per event: `GET /spaces/{space}/environments/{env}/entries/{id}`, then
//! - 404: `PUT` the same path with `X-Contentful-Content-Type` (create with that id);
//! - 200: the stale rule on the stored `eventId`/`eventTimeMs` (in `RELAY_CMS_LOCALE`), then
//!   `PUT` with `X-Contentful-Version: <sys.version>`: the stored fields with ours set in the
//!   locale (the CMA replaces the whole entry on update, so an editor's other fields and
//!   locales are sent back unchanged);
//! - optionally (`RELAY_CMS_PUBLISH`) `PUT .../published` with the version just written.
//!
//! A `409 VersionMismatch` (the entry changed between read and write, or was created by
//! someone else) starts the round again from the read, at most `MAX_WRITE_ROUNDS` times.
//! So the version check makes the stale guard atomic: no write lands on an entry the
//! relay did not read. Two calls per event, three with publishing.
//!
//! Rate limits: a `429` carries `X-Contentful-RateLimit-Reset` (seconds until a request is
//! accepted again). Every request of this client waits for that time in-process, up to
//! `RELAY_CMS_RATE_LIMIT_WAIT` from the call's start, so a burst does not push records
//! through the retry topics; beyond it the event is deferred (`HttpError::Deferred` when
//! nothing was sent, else the 429 with the reset as its retry-after).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{json, Map, Value};
use tokio::time::Instant;

use super::settings::{is_contentful_id, ContentfulSettings};
use super::{
    decide, decode_error, lost_race, time_value, Decision, GuestEntry, UpsertOutcome,
    EVENT_ID_HEADER, FIELD_EVENT_ID, FIELD_EVENT_TIME, MAX_WRITE_ROUNDS, SINK,
};
use crate::config::Secret;
use crate::metrics::Metrics;
use crate::outbound::{url_with_segments, Answer, HttpError};
use crate::sinks::send;

/// The CMA's media type; requests with a body must declare it.
const CMA_JSON: &str = "application/vnd.contentful.management.v1+json";
const RATE_LIMIT_RESET: &str = "x-contentful-ratelimit-reset";
/// The CMA limits per second: a 429 without a usable reset waits this long.
const DEFAULT_RESET: Duration = Duration::from_secs(1);

/// The Content Management API client for one space, environment and content type.
pub struct ContentfulClient {
    base: String,
    settings: ContentfulSettings,
    token: Secret,
    rate_limit_wait: Duration,
    /// When the CMA accepts requests again after a 429, shared by every call of this
    /// client (the limit is per space, not per request).
    resume_at: Mutex<Option<Instant>>,
    http: reqwest::Client,
    metrics: Arc<Metrics>,
}

impl std::fmt::Debug for ContentfulClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ContentfulClient")
            .field("base", &self.base)
            .field("settings", &self.settings)
            .field("token", &self.token)
            .finish_non_exhaustive()
    }
}

/// The part of a CMA entry the adapter reads.
struct StoredEntry {
    version: u64,
    published_version: Option<u64>,
    fields: Map<String, Value>,
    metadata: Option<Value>,
}

impl ContentfulClient {
    pub fn new(
        base: String,
        settings: ContentfulSettings,
        token: Secret,
        rate_limit_wait: Duration,
        http: reqwest::Client,
        metrics: Arc<Metrics>,
    ) -> Self {
        ContentfulClient {
            base,
            settings,
            token,
            rate_limit_wait,
            resume_at: Mutex::new(None),
            http,
            metrics,
        }
    }

    pub(super) async fn upsert(&self, guest: &GuestEntry<'_>) -> Result<UpsertOutcome, HttpError> {
        if !is_contentful_id(guest.entry_id) {
            return Err(HttpError::InvalidRequest(format!(
                "{:?} is not a Contentful entry id (1-64 of a-z A-Z 0-9 - _ .)",
                guest.entry_id
            )));
        }
        let started = Instant::now();
        let url = self.entry_url(guest.entry_id, false)?;
        for _ in 0..MAX_WRITE_ROUNDS {
            let stored = self.read(&url, started).await?;
            let (outcome, answer) = match stored {
                None => {
                    let body = json!({ "fields": self.localized(Map::new(), guest.fields) });
                    let answer = self
                        .write(Method::PUT, &url, &body, guest, Write::Create, started)
                        .await?;
                    (UpsertOutcome::Created, answer)
                }
                Some(stored) => {
                    match self.decide(&stored, guest) {
                        Decision::Stale => return Ok(UpsertOutcome::Stale),
                        Decision::Unchanged => {
                            // A redelivery after a write whose publish failed: publish now.
                            if self.settings.publish && !is_published(&stored) {
                                self.publish(guest, stored.version, started).await?;
                            }
                            return Ok(UpsertOutcome::Unchanged);
                        }
                        Decision::Write => {}
                    }
                    let mut body = json!({ "fields": self.localized(stored.fields, guest.fields) });
                    if let Some(metadata) = stored.metadata {
                        body["metadata"] = metadata;
                    }
                    let answer = self
                        .write(
                            Method::PUT,
                            &url,
                            &body,
                            guest,
                            Write::Update(stored.version),
                            started,
                        )
                        .await?;
                    (UpsertOutcome::Updated, answer)
                }
            };
            if answer.status == StatusCode::CONFLICT {
                // VersionMismatch: somebody else wrote in between; read again.
                continue;
            }
            let answer = answer.success(SINK, &self.secrets())?;
            if self.settings.publish {
                let written: Value = answer.json("Contentful entry")?;
                let version = written
                    .pointer("/sys/version")
                    .and_then(Value::as_u64)
                    .ok_or_else(|| decode_error("Contentful entry", "no sys.version"))?;
                self.publish(guest, version, started).await?;
            }
            return Ok(outcome);
        }
        Err(lost_race("Contentful entry"))
    }

    /// `PUT .../published` with the version just written. A 409 means the entry moved on
    /// (another writer): publish what is there if it still holds this event, else leave
    /// it to whoever wrote the newer version.
    async fn publish(
        &self,
        guest: &GuestEntry<'_>,
        mut version: u64,
        started: Instant,
    ) -> Result<(), HttpError> {
        let entry_url = self.entry_url(guest.entry_id, false)?;
        let url = self.entry_url(guest.entry_id, true)?;
        for _ in 0..MAX_WRITE_ROUNDS {
            let answer = self
                .write(
                    Method::PUT,
                    &url,
                    &Value::Null,
                    guest,
                    Write::Publish(version),
                    started,
                )
                .await?;
            if answer.status != StatusCode::CONFLICT {
                answer.success(SINK, &self.secrets())?;
                return Ok(());
            }
            match self.read(&entry_url, started).await? {
                Some(stored) if self.decide(&stored, guest) == Decision::Unchanged => {
                    if is_published(&stored) {
                        return Ok(());
                    }
                    version = stored.version;
                }
                _ => return Ok(()),
            }
        }
        Err(lost_race("Contentful publish"))
    }

    fn decide(&self, stored: &StoredEntry, guest: &GuestEntry<'_>) -> Decision {
        let locale = &self.settings.locale;
        let in_locale = |field: &str| stored.fields.get(field).and_then(|v| v.get(locale));
        decide(
            in_locale(FIELD_EVENT_ID).and_then(Value::as_str),
            time_value(in_locale(FIELD_EVENT_TIME)),
            guest,
        )
    }

    /// `stored` with every field of `ours` set in the configured locale.
    fn localized(
        &self,
        mut stored: Map<String, Value>,
        ours: &Map<String, Value>,
    ) -> Map<String, Value> {
        for (name, value) in ours {
            let slot = stored
                .entry(name.clone())
                .or_insert_with(|| Value::Object(Map::new()));
            if !slot.is_object() {
                *slot = Value::Object(Map::new());
            }
            if let Value::Object(locales) = slot {
                locales.insert(self.settings.locale.clone(), value.clone());
            }
        }
        stored
    }

    /// The entry, or `None` on 404.
    async fn read(
        &self,
        url: &reqwest::Url,
        started: Instant,
    ) -> Result<Option<StoredEntry>, HttpError> {
        let answer = self
            .paced(started, || {
                self.http.get(url.clone()).bearer_auth(self.token.expose())
            })
            .await?;
        if answer.status == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        let entry: Value = answer
            .success(SINK, &self.secrets())?
            .json("Contentful entry")?;
        let version = entry
            .pointer("/sys/version")
            .and_then(Value::as_u64)
            .ok_or_else(|| decode_error("Contentful entry", "no sys.version"))?;
        Ok(Some(StoredEntry {
            version,
            published_version: entry
                .pointer("/sys/publishedVersion")
                .and_then(Value::as_u64),
            fields: entry
                .get("fields")
                .and_then(Value::as_object)
                .cloned()
                .unwrap_or_default(),
            metadata: entry.get("metadata").cloned(),
        }))
    }

    async fn write(
        &self,
        method: Method,
        url: &reqwest::Url,
        body: &Value,
        guest: &GuestEntry<'_>,
        kind: Write,
        started: Instant,
    ) -> Result<Answer, HttpError> {
        let bytes = if body.is_null() {
            Vec::new()
        } else {
            serde_json::to_vec(body).map_err(|e| HttpError::InvalidRequest(e.to_string()))?
        };
        self.paced(started, || {
            let mut request = self
                .http
                .request(method.clone(), url.clone())
                .bearer_auth(self.token.expose())
                .header(EVENT_ID_HEADER, guest.event_id);
            if !bytes.is_empty() {
                request = request
                    .header(reqwest::header::CONTENT_TYPE, CMA_JSON)
                    .body(bytes.clone());
            }
            match kind {
                Write::Create => {
                    request.header("X-Contentful-Content-Type", &self.settings.content_type)
                }
                Write::Update(v) | Write::Publish(v) => {
                    request.header("X-Contentful-Version", v.to_string())
                }
            }
        })
        .await
    }

    /// Sends one request, waiting out the space's rate limit in-process: before sending
    /// while a reset is pending, and after a 429 for its reset, as long as the call
    /// stays within `rate_limit_wait` of `started`.
    async fn paced(
        &self,
        started: Instant,
        build: impl Fn() -> reqwest::RequestBuilder,
    ) -> Result<Answer, HttpError> {
        let deadline = started + self.rate_limit_wait;
        loop {
            let pending = *self.resume_at.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(resume) = pending {
                let now = Instant::now();
                if resume > deadline {
                    return Err(HttpError::Deferred {
                        service: SINK,
                        retry_after: resume - now,
                    });
                }
                tokio::time::sleep_until(resume).await;
            }
            let mut answer = send(&self.metrics, SINK, build()).await?;
            if answer.status != StatusCode::TOO_MANY_REQUESTS {
                return Ok(answer);
            }
            let reset = rate_limit_reset(&answer.headers);
            let resume = Instant::now() + reset;
            {
                let mut slot = self.resume_at.lock().unwrap_or_else(|e| e.into_inner());
                if slot.is_none_or(|r| r < resume) {
                    *slot = Some(resume);
                }
            }
            if resume > deadline {
                answer.retry_after = Some(reset);
                return Err(answer.into_error(SINK, &self.secrets()));
            }
        }
    }

    fn entry_url(&self, id: &str, published: bool) -> Result<reqwest::Url, HttpError> {
        let s = &self.settings;
        let mut segments = vec![
            "spaces",
            &s.space,
            "environments",
            &s.environment,
            "entries",
            id,
        ];
        if published {
            segments.push("published");
        }
        url_with_segments(&self.base, &segments)
    }

    fn secrets(&self) -> Vec<&str> {
        vec![self.token.expose()]
    }
}

#[derive(Clone, Copy)]
enum Write {
    Create,
    Update(u64),
    Publish(u64),
}

/// Whether the entry's current version is the published one (`publishedVersion + 1 ==
/// version`: publishing itself bumps the version by one).
fn is_published(stored: &StoredEntry) -> bool {
    stored.published_version.map(|p| p + 1) == Some(stored.version)
}

/// `X-Contentful-RateLimit-Reset` in seconds; 0 or absent on a 429 means "the next
/// second" (the per-second limit).
fn rate_limit_reset(headers: &reqwest::header::HeaderMap) -> Duration {
    headers
        .get(RATE_LIMIT_RESET)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .filter(|s| *s > 0)
        .map(Duration::from_secs)
        .unwrap_or(DEFAULT_RESET)
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::{HeaderMap, HeaderValue};

    fn client() -> ContentfulClient {
        ContentfulClient::new(
            "http://127.0.0.1:1/".into(),
            ContentfulSettings {
                space: "sp".into(),
                environment: "master".into(),
                content_type: "guestSession".into(),
                locale: "de-DE".into(),
                publish: false,
            },
            Secret::new("tok"),
            Duration::from_secs(1),
            reqwest::Client::new(),
            Arc::new(Metrics::new()),
        )
    }

    #[test]
    fn fields_are_localized_and_others_kept() {
        let c = client();
        let stored =
            json!({"title": {"en-US": "kept"}, "loyalty_tier": {"en-US": "x", "de-DE": "old"}});
        let ours = json!({"loyalty_tier": "gold", "cart_value": 12.5});
        let out = c.localized(
            stored.as_object().unwrap().clone(),
            ours.as_object().unwrap(),
        );
        assert_eq!(
            Value::Object(out),
            json!({"title": {"en-US": "kept"}, "loyalty_tier": {"en-US": "x", "de-DE": "gold"}, "cart_value": {"de-DE": 12.5}})
        );
    }

    #[test]
    fn entry_urls() {
        let c = client();
        assert_eq!(
            c.entry_url("c-1", false).unwrap().as_str(),
            "http://127.0.0.1:1/spaces/sp/environments/master/entries/c-1"
        );
        assert_eq!(
            c.entry_url("c-1", true).unwrap().as_str(),
            "http://127.0.0.1:1/spaces/sp/environments/master/entries/c-1/published"
        );
    }

    #[test]
    fn reset_header() {
        let mut h = HeaderMap::new();
        assert_eq!(rate_limit_reset(&h), DEFAULT_RESET);
        h.insert(RATE_LIMIT_RESET, HeaderValue::from_static("0"));
        assert_eq!(rate_limit_reset(&h), DEFAULT_RESET);
        h.insert(RATE_LIMIT_RESET, HeaderValue::from_static("900"));
        assert_eq!(rate_limit_reset(&h), Duration::from_secs(900));
    }

    #[test]
    fn published_means_the_current_version() {
        let e = |version, published_version| StoredEntry {
            version,
            published_version,
            fields: Map::new(),
            metadata: None,
        };
        assert!(is_published(&e(4, Some(3))));
        assert!(!is_published(&e(5, Some(3))));
        assert!(!is_published(&e(1, None)));
    }

    #[tokio::test]
    async fn invalid_entry_ids_fail_permanently_without_a_request() {
        let c = client();
        let fields = Map::new();
        let guest = GuestEntry {
            entry_id: "has space",
            fields: &fields,
            event_id: "e",
            event_time_ms: None,
            idempotency_key: "k",
        };
        let err = c.upsert(&guest).await.unwrap_err();
        assert!(matches!(err, HttpError::InvalidRequest(_)), "{err}");
    }
}
