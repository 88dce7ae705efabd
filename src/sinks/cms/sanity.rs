//! The Sanity adapter (`RELAY_CMS_KIND=sanity`): guest documents through the HTTP
//! mutations API, `_id` = `<_type>-<entry id>`, API version pinned
//! (`RELAY_SANITY_API_VERSION`).
//!
//! Per event: `GET /v{date}/data/doc/{dataset}/{id}`, then one
//! `POST /v{date}/data/mutate/{dataset}` transaction:
//! - no document: `create` (fails with 409 if the id exists meanwhile);
//! - a document: the stale rule on its `eventId`/`eventTimeMs`, then `patch` with
//!   `ifRevisionID: <_rev>` and `set` of our fields (an editor's other fields stay), so the
//!   write lands only on the revision the relay read: the stale guard is atomic.
//!
//! Every transaction carries a `transactionId` derived from the event's idempotency key.
//! Sanity keeps transaction ids unique per dataset, so one event's mutation can be
//! committed once at most, whatever the relay retries. On a 409 the adapter reads again:
//! the document holds this event -> done (an earlier attempt landed); the document moved
//! on -> next round (at most `MAX_WRITE_ROUNDS`); nothing moved -> the conflict was the
//! transaction id itself, so this event was committed before -> done, nothing written.
//! Two calls per event.

use std::sync::Arc;

use reqwest::StatusCode;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use super::settings::SanitySettings;
use super::{
    decode_error, lost_race, Decision, GuestEntry, StoredMark, UpsertOutcome, EVENT_ID_HEADER,
    MAX_WRITE_ROUNDS, SINK,
};
use crate::config::Secret;
use crate::metrics::Metrics;
use crate::outbound::{url_with_segments, HttpError};
use crate::sinks::send;

/// Sanity's reference states no maximum id length; ids here are `<type>-<uuid>`, far
/// below any limit, and anything longer is refused as not an id the relay derives.
const MAX_ID_LEN: usize = 128;

/// The mutations API client for one dataset and document type.
pub struct SanityClient {
    base: String,
    settings: SanitySettings,
    token: Secret,
    http: reqwest::Client,
    metrics: Arc<Metrics>,
}

impl std::fmt::Debug for SanityClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SanityClient")
            .field("base", &self.base)
            .field("settings", &self.settings)
            .field("token", &self.token)
            .finish_non_exhaustive()
    }
}

/// The part of a stored document the adapter reads.
#[derive(Debug, Clone, PartialEq)]
struct StoredDoc {
    rev: String,
    mark: StoredMark,
}

impl SanityClient {
    pub fn new(
        base: String,
        settings: SanitySettings,
        token: Secret,
        http: reqwest::Client,
        metrics: Arc<Metrics>,
    ) -> Self {
        SanityClient {
            base,
            settings,
            token,
            http,
            metrics,
        }
    }

    pub(super) async fn upsert(&self, guest: &GuestEntry<'_>) -> Result<UpsertOutcome, HttpError> {
        let id = self.document_id(guest.entry_id)?;
        let transaction_id = transaction_id(guest.idempotency_key);
        let mut stored = self.read(&id).await?;
        for _ in 0..MAX_WRITE_ROUNDS {
            let (outcome, mutation) = match &stored {
                None => {
                    let mut doc = guest.fields.clone();
                    doc.insert("_id".into(), Value::String(id.clone()));
                    doc.insert(
                        "_type".into(),
                        Value::String(self.settings.doc_type.clone()),
                    );
                    (UpsertOutcome::Created, json!({ "create": doc }))
                }
                Some(doc) => {
                    match doc.mark.decide(guest) {
                        Decision::Stale => return Ok(UpsertOutcome::Stale),
                        Decision::Unchanged => return Ok(UpsertOutcome::Unchanged),
                        Decision::Write => {}
                    }
                    (
                        UpsertOutcome::Updated,
                        json!({ "patch": { "id": id, "ifRevisionID": doc.rev, "set": guest.fields } }),
                    )
                }
            };
            let body = json!({ "mutations": [mutation], "transactionId": transaction_id });
            let answer = send(
                &self.metrics,
                SINK,
                self.http
                    .post(self.data_url("mutate", None)?)
                    .query(&[("returnIds", "true"), ("visibility", "sync")])
                    .bearer_auth(self.token.expose())
                    .header(EVENT_ID_HEADER, guest.event_id)
                    .json(&body),
            )
            .await?;
            if answer.status != StatusCode::CONFLICT {
                answer.success(SINK, &self.secrets())?;
                return Ok(outcome);
            }
            let now = self.read(&id).await?;
            if now.as_ref().and_then(|d| d.mark.event_id.as_deref()) == Some(guest.event_id) {
                return Ok(UpsertOutcome::Unchanged);
            }
            if now == stored {
                tracing::warn!(
                    document = %id,
                    transaction = %transaction_id,
                    "Sanity refused the transaction although the document did not change: \
                     its transaction id was committed before, so this event was applied earlier"
                );
                return Ok(UpsertOutcome::Unchanged);
            }
            stored = now;
        }
        Err(lost_race("Sanity document"))
    }

    /// The document, or `None` when the dataset has no document with that id.
    async fn read(&self, id: &str) -> Result<Option<StoredDoc>, HttpError> {
        let answer = send(
            &self.metrics,
            SINK,
            self.http
                .get(self.data_url("doc", Some(id))?)
                .bearer_auth(self.token.expose()),
        )
        .await?;
        if answer.status == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        let body: Value = answer.success(SINK, &self.secrets())?.json("Sanity doc")?;
        let Some(doc) = body
            .get("documents")
            .and_then(Value::as_array)
            .and_then(|docs| {
                docs.iter()
                    .find(|d| d.get("_id").and_then(Value::as_str) == Some(id))
            })
        else {
            return Ok(None);
        };
        let rev = doc
            .get("_rev")
            .and_then(Value::as_str)
            .ok_or_else(|| decode_error("Sanity doc", "no _rev"))?;
        Ok(Some(StoredDoc {
            rev: rev.to_string(),
            mark: StoredMark::of(doc),
        }))
    }

    /// `<type>-<entry id>`, checked against Sanity's id rule: `a-zA-Z0-9._-`, no segment
    /// starting with `-` (IDs and Paths reference).
    fn document_id(&self, entry_id: &str) -> Result<String, HttpError> {
        let id = format!("{}-{}", self.settings.doc_type, entry_id);
        let usable = id.len() <= MAX_ID_LEN
            && id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
            && id
                .split('.')
                .all(|segment| !segment.is_empty() && !segment.starts_with('-'));
        if usable {
            Ok(id)
        } else {
            Err(HttpError::InvalidRequest(format!(
                "{entry_id:?} cannot be part of a Sanity document id (a-z A-Z 0-9 . _ -)"
            )))
        }
    }

    /// `{base}/v{date}/data/{endpoint}/{dataset}[/{id}]`.
    fn data_url(&self, endpoint: &str, id: Option<&str>) -> Result<reqwest::Url, HttpError> {
        let version = format!("v{}", self.settings.api_version);
        let mut segments = vec![version.as_str(), "data", endpoint, &self.settings.dataset];
        segments.extend(id);
        url_with_segments(&self.base, &segments)
    }

    fn secrets(&self) -> Vec<&str> {
        vec![self.token.expose()]
    }
}

/// A transaction id fixed by the event: `relay-` and 32 hex digits of SHA-256 of the
/// idempotency key (event ids come from input; the hash keeps the id short and plain).
fn transaction_id(idempotency_key: &str) -> String {
    let digest = Sha256::digest(idempotency_key.as_bytes());
    format!("relay-{}", hex::encode(&digest[..16]))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client() -> SanityClient {
        SanityClient::new(
            "http://127.0.0.1:1".into(),
            SanitySettings {
                dataset: "production".into(),
                api_version: "2025-02-19".into(),
                doc_type: "guestSession".into(),
            },
            Secret::new("sk"),
            reqwest::Client::new(),
            Arc::new(Metrics::new()),
        )
    }

    #[test]
    fn urls_and_ids() {
        let c = client();
        assert_eq!(
            c.data_url("doc", Some("guestSession-c1")).unwrap().as_str(),
            "http://127.0.0.1:1/v2025-02-19/data/doc/production/guestSession-c1"
        );
        assert_eq!(
            c.data_url("mutate", None).unwrap().as_str(),
            "http://127.0.0.1:1/v2025-02-19/data/mutate/production"
        );
        assert_eq!(c.document_id("3f2a-11").unwrap(), "guestSession-3f2a-11");
        assert!(c.document_id("a/b").is_err());
        assert!(c.document_id("x.-y").is_err());
    }

    #[test]
    fn transaction_ids_are_fixed_by_the_event() {
        let a = transaction_id("guest_sync:e1");
        assert_eq!(a, transaction_id("guest_sync:e1"));
        assert_ne!(a, transaction_id("guest_sync:e2"));
        assert_eq!(a.len(), "relay-".len() + 32);
    }
}
