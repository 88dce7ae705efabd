//! The generic JSON API adapter (`RELAY_CMS_KIND=json`, the default): upserts
//! `guest_session` entries, create first and update on conflict, both under the same
//! idempotency key so the CMS can recognise a redelivery. Calls per event: one POST for a
//! new entry, POST (409) + PUT for an existing one.
//!
//! This API stores no event time the relay reads back, so its stale guard is the relay's
//! own (the idempotency store's newest event time per entry).

use std::sync::Arc;

use reqwest::{StatusCode, Url};
use serde_json::{Map, Value};

use super::{GuestEntry, UpsertOutcome, EVENT_ID_HEADER, SINK};
use crate::config::Secret;
use crate::metrics::Metrics;
use crate::outbound::HttpError;
use crate::sinks::send;

const IDEMPOTENCY_HEADER: &str = "X-Idempotency-Key";

/// Client of the CMS entries collection (`RELAY_CMS_URL`, e.g. `http://cms/v1/entries`).
pub struct CmsClient {
    entries_url: String,
    /// `entries_url` parsed once, at construction; an unusable URL fails every call the
    /// same way (a permanent failure naming it).
    collection: Result<Url, HttpError>,
    api_key: Option<Secret>,
    http: reqwest::Client,
    metrics: Arc<Metrics>,
}

impl std::fmt::Debug for CmsClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CmsClient")
            .field("entries_url", &self.entries_url)
            .field("api_key", &self.api_key)
            .finish_non_exhaustive()
    }
}

impl CmsClient {
    pub fn new(
        entries_url: String,
        api_key: Option<Secret>,
        http: reqwest::Client,
        metrics: Arc<Metrics>,
    ) -> Self {
        CmsClient {
            collection: Url::parse(&entries_url)
                .map_err(|e| HttpError::InvalidRequest(format!("CMS URL {entries_url:?}: {e}"))),
            entries_url,
            api_key,
            http,
            metrics,
        }
    }

    /// POST `{entries_url}` `{"id","type":"guest_session","fields"}` with
    /// `X-Idempotency-Key`; a 409 means the entry exists, so PUT `{entries_url}/{id}`
    /// with the same body and key.
    pub(super) async fn upsert(&self, guest: &GuestEntry<'_>) -> Result<UpsertOutcome, HttpError> {
        let entry_id = guest.entry_id;
        let body = body(entry_id, guest.fields);
        let collection = self.collection_url()?;
        let entry = entry_url(collection.clone(), entry_id)?;

        let created = send(
            &self.metrics,
            SINK,
            self.authorised(self.http.post(collection), guest)
                .json(&body),
        )
        .await?;
        if created.status.is_success() {
            return Ok(UpsertOutcome::Created);
        }
        if created.status != StatusCode::CONFLICT {
            return Err(created.into_error(SINK, &self.secrets()));
        }

        let updated = send(
            &self.metrics,
            SINK,
            self.authorised(self.http.put(entry), guest).json(&body),
        )
        .await?;
        if updated.status.is_success() {
            Ok(UpsertOutcome::Updated)
        } else {
            Err(updated.into_error(SINK, &self.secrets()))
        }
    }

    /// Upserts with idempotency key `<route>:<event id>` (the pipeline's form): the key's
    /// tail is the event id sent as `X-Relay-Event-Id`. For callers of this client alone.
    pub async fn upsert_guest_session(
        &self,
        entry_id: &str,
        fields: &Map<String, Value>,
        idempotency_key: &str,
    ) -> Result<UpsertOutcome, HttpError> {
        let event_id = idempotency_key
            .split_once(':')
            .map_or(idempotency_key, |(_, id)| id);
        self.upsert(&GuestEntry {
            entry_id,
            fields,
            event_id,
            event_time_ms: None,
            idempotency_key,
        })
        .await
    }

    fn collection_url(&self) -> Result<Url, HttpError> {
        self.collection.clone()
    }

    fn authorised(
        &self,
        request: reqwest::RequestBuilder,
        guest: &GuestEntry<'_>,
    ) -> reqwest::RequestBuilder {
        let request = request
            .header(IDEMPOTENCY_HEADER, guest.idempotency_key)
            .header(EVENT_ID_HEADER, guest.event_id);
        match &self.api_key {
            Some(key) => request.bearer_auth(key.expose()),
            None => request,
        }
    }

    fn secrets(&self) -> Vec<&str> {
        self.api_key.iter().map(Secret::expose).collect()
    }
}

fn body(entry_id: &str, fields: &Map<String, Value>) -> Value {
    serde_json::json!({ "id": entry_id, "type": "guest_session", "fields": fields })
}

/// `{collection}/{id}` with the id percent-encoded as one segment (it comes from event
/// input); `.` and `..` are refused because `Url` would silently drop them.
fn entry_url(collection: Url, entry_id: &str) -> Result<Url, HttpError> {
    crate::outbound::url_with_segments(collection.as_str(), &[entry_id])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entry_url_encodes_the_id() {
        let base = Url::parse("http://cms:1/v1/entries/").unwrap();
        assert_eq!(
            entry_url(base.clone(), "a/b c").unwrap().as_str(),
            "http://cms:1/v1/entries/a%2Fb%20c"
        );
        assert!(entry_url(base, "..").is_err());
    }
}
