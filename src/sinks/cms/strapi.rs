//! The Strapi 5 adapter (`RELAY_CMS_KIND=strapi`): guest entries in a collection type
//! through the REST API with an API token.
//!
//! Strapi has no idempotency key and no version check, so the entry is found by the
//! collection's `unique` attribute (`RELAY_STRAPI_ENTRY_FIELD`, the entry id) and the stale
//! rule runs on the stored `eventId`/`eventTimeMs`. Per event:
//! `GET /api/{collection}?filters[{field}][$eq]={id}`, then
//! - no entry: `POST /api/{collection}` `{"data": {...}}`; a create that loses a race
//!   (the `unique` attribute refuses it: 400 `ValidationError`) reads again and updates;
//! - an entry: the stale rule, then `PUT /api/{collection}/{documentId}` `{"data": {...}}`
//!   (only our fields: Strapi keeps the others).
//!
//! A redelivered event finds its own `eventId` stored and writes nothing. Without a
//! version check, a write by another writer between the read and the write can be
//! overwritten; the relay itself never races with itself on one entry (one partition,
//! one lane per conversation). Two calls per event.

use std::sync::Arc;

use reqwest::StatusCode;
use serde_json::{json, Value};

use super::settings::StrapiSettings;
use super::{
    decode_error, lost_race, Decision, GuestEntry, StoredMark, UpsertOutcome, EVENT_ID_HEADER,
    MAX_WRITE_ROUNDS, SINK,
};
use crate::config::Secret;
use crate::metrics::Metrics;
use crate::outbound::{url_with_segments, HttpError};
use crate::sinks::send;

/// The REST API client for one collection type.
pub struct StrapiClient {
    base: String,
    settings: StrapiSettings,
    token: Secret,
    http: reqwest::Client,
    metrics: Arc<Metrics>,
}

impl std::fmt::Debug for StrapiClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StrapiClient")
            .field("base", &self.base)
            .field("settings", &self.settings)
            .field("token", &self.token)
            .finish_non_exhaustive()
    }
}

/// The part of a stored entry the adapter reads.
struct StoredEntry {
    document_id: String,
    mark: StoredMark,
}

impl StrapiClient {
    pub fn new(
        base: String,
        settings: StrapiSettings,
        token: Secret,
        http: reqwest::Client,
        metrics: Arc<Metrics>,
    ) -> Self {
        StrapiClient {
            base,
            settings,
            token,
            http,
            metrics,
        }
    }

    pub(super) async fn upsert(&self, guest: &GuestEntry<'_>) -> Result<UpsertOutcome, HttpError> {
        let mut data = guest.fields.clone();
        data.insert(
            self.settings.entry_field.clone(),
            Value::String(guest.entry_id.to_string()),
        );
        let body = json!({ "data": data });
        for _ in 0..MAX_WRITE_ROUNDS {
            let stored = self.find(guest.entry_id).await?;
            let Some(stored) = stored else {
                let answer = send(
                    &self.metrics,
                    SINK,
                    self.http
                        .post(self.collection_url(None)?)
                        .bearer_auth(self.token.expose())
                        .header(EVENT_ID_HEADER, guest.event_id)
                        .json(&body),
                )
                .await?;
                if answer.status == StatusCode::BAD_REQUEST
                    && is_unique_violation(&answer.body, &self.settings.entry_field)
                {
                    // Created by another writer since our read: read again, then update.
                    continue;
                }
                answer.success(SINK, &self.secrets())?;
                return Ok(UpsertOutcome::Created);
            };
            match stored.mark.decide(guest) {
                Decision::Stale => return Ok(UpsertOutcome::Stale),
                Decision::Unchanged => return Ok(UpsertOutcome::Unchanged),
                Decision::Write => {}
            }
            let answer = send(
                &self.metrics,
                SINK,
                self.http
                    .put(self.collection_url(Some(&stored.document_id))?)
                    .bearer_auth(self.token.expose())
                    .header(EVENT_ID_HEADER, guest.event_id)
                    .json(&body),
            )
            .await?;
            if answer.status == StatusCode::NOT_FOUND {
                // Deleted since our read: start over (it will be created).
                continue;
            }
            answer.success(SINK, &self.secrets())?;
            return Ok(UpsertOutcome::Updated);
        }
        Err(lost_race("Strapi entry"))
    }

    /// The entry whose `unique` attribute holds `entry_id`, if any.
    async fn find(&self, entry_id: &str) -> Result<Option<StoredEntry>, HttpError> {
        let filter = format!("filters[{}][$eq]", self.settings.entry_field);
        let answer = send(
            &self.metrics,
            SINK,
            self.http
                .get(self.collection_url(None)?)
                .query(&[(filter.as_str(), entry_id), ("pagination[pageSize]", "1")])
                .bearer_auth(self.token.expose()),
        )
        .await?;
        let body: Value = answer
            .success(SINK, &self.secrets())?
            .json("Strapi entries")?;
        let Some(items) = body.get("data").and_then(Value::as_array) else {
            return Err(decode_error("Strapi entries", "no data array"));
        };
        let Some(item) = items.first() else {
            return Ok(None);
        };
        let document_id = item
            .get("documentId")
            .and_then(Value::as_str)
            .ok_or_else(|| decode_error("Strapi entry", "no documentId (is this Strapi 5?)"))?;
        Ok(Some(StoredEntry {
            document_id: document_id.to_string(),
            mark: StoredMark::of(item),
        }))
    }

    /// `{base}/api/{collection}[/{documentId}]`.
    fn collection_url(&self, document_id: Option<&str>) -> Result<reqwest::Url, HttpError> {
        let mut segments = vec!["api", self.settings.collection.as_str()];
        segments.extend(document_id);
        url_with_segments(&self.base, &segments)
    }

    fn secrets(&self) -> Vec<&str> {
        vec![self.token.expose()]
    }
}

/// Whether a 400 answer is Strapi's `unique` check refusing `field`:
/// `{"error": {"name": "ValidationError", "details": {"errors": [{"path": [field], ...}]}}}`.
fn is_unique_violation(body: &[u8], field: &str) -> bool {
    let Ok(body) = serde_json::from_slice::<Value>(body) else {
        return false;
    };
    let error = &body["error"];
    error["name"] == "ValidationError"
        && error["details"]["errors"].as_array().is_some_and(|errors| {
            errors.iter().any(|e| {
                e["path"]
                    .as_array()
                    .and_then(|p| p.first())
                    .and_then(Value::as_str)
                    == Some(field)
                    && e["message"].as_str().is_some_and(|m| m.contains("unique"))
            })
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unique_violations_are_recognised() {
        let body = br#"{"data":null,"error":{"status":400,"name":"ValidationError","message":"This attribute must be unique","details":{"errors":[{"path":["conversationId"],"message":"This attribute must be unique","name":"ValidationError","value":"c1"}]}}}"#;
        assert!(is_unique_violation(body, "conversationId"));
        assert!(!is_unique_violation(body, "participantId"));
        assert!(!is_unique_violation(
            br#"{"error":{"name":"ValidationError","details":{}}}"#,
            "conversationId"
        ));
        assert!(!is_unique_violation(b"not json", "conversationId"));
    }

    #[test]
    fn urls() {
        let c = StrapiClient::new(
            "http://127.0.0.1:1337".into(),
            StrapiSettings {
                collection: "guest-sessions".into(),
                entry_field: "conversationId".into(),
            },
            Secret::new("t"),
            reqwest::Client::new(),
            Arc::new(Metrics::new()),
        );
        assert_eq!(
            c.collection_url(None).unwrap().as_str(),
            "http://127.0.0.1:1337/api/guest-sessions"
        );
        assert_eq!(
            c.collection_url(Some("abc")).unwrap().as_str(),
            "http://127.0.0.1:1337/api/guest-sessions/abc"
        );
    }
}
