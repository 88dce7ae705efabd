//! The conversation cache: a lookup of one conversation within `RELAY_GENESYS_CACHE_TTL`
//! is served from memory, and concurrent lookups of one id share one request (moka's
//! `try_get_with` runs one initialiser per key and hands its result to every waiter).
//! 404s are cached too (a gone conversation stays gone); errors are not. The
//! [`Conversation`] the cache holds is defined here, beside it.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use moka::future::Cache;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::HttpError;

/// A conversation (`GET /api/v2/conversations/{conversationId}`): the fields the routes
/// use, plus the whole answer in `raw` so the enriched record loses nothing.
#[derive(Debug, Clone, PartialEq)]
pub struct Conversation {
    pub id: String,
    pub start_time: Option<String>,
    pub end_time: Option<String>,
    pub participants: Vec<Participant>,
    pub raw: Value,
}

impl Conversation {
    /// The participant with `purpose: "customer"`, who carries the Web Messaging custom
    /// attributes.
    pub fn customer(&self) -> Option<&Participant> {
        self.participants
            .iter()
            .find(|p| p.purpose.as_deref() == Some("customer"))
    }
}

/// One participant of a [`Conversation`] (SDK model `Participant`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Participant {
    #[serde(default)]
    pub(crate) id: String,
    #[serde(default)]
    pub purpose: Option<String>,
    #[serde(default)]
    pub name: Option<String>,
    /// `dict(str, str)` in the API; kept as JSON values so nothing is lost if a value is not
    /// a string.
    #[serde(default)]
    pub attributes: Map<String, Value>,
    #[serde(default)]
    pub external_contact_id: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ConversationFields {
    #[serde(default)]
    id: String,
    #[serde(default)]
    start_time: Option<String>,
    #[serde(default)]
    end_time: Option<String>,
    #[serde(default)]
    participants: Vec<Participant>,
}

impl Conversation {
    /// Decodes an API answer (a conversation object, also as carried by queue and user
    /// conversation topics).
    pub(crate) fn from_json(raw: Value, fallback_id: &str) -> Result<Self, HttpError> {
        let fields = ConversationFields::deserialize(&raw)
            .map_err(|e| HttpError::Decode(format!("conversation: {e}")))?;
        Ok(Conversation {
            id: if fields.id.is_empty() {
                fallback_id.to_string()
            } else {
                fields.id
            },
            start_time: fields.start_time,
            end_time: fields.end_time,
            participants: fields.participants,
            raw,
        })
    }
}

/// Entries kept at most; far more than the conversations alive within one TTL.
const CAPACITY: u64 = 100_000;

pub(crate) struct ConversationCache {
    /// `None` when the TTL is zero (caching off).
    cache: Option<Cache<String, Option<Arc<Conversation>>>>,
}

impl ConversationCache {
    pub(crate) fn new(ttl: Duration) -> Self {
        let cache = (!ttl.is_zero()).then(|| {
            Cache::builder()
                .max_capacity(CAPACITY)
                .time_to_live(ttl)
                .build()
        });
        ConversationCache { cache }
    }

    /// The cached value, or `fetch`'s; the flag says whether it came from the cache
    /// (including from a request another caller had in flight).
    pub(crate) async fn get_or_fetch<F, Fut>(
        &self,
        id: &str,
        fetch: F,
    ) -> Result<(Option<Arc<Conversation>>, bool), HttpError>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Option<Arc<Conversation>>, HttpError>>,
    {
        let Some(cache) = &self.cache else {
            return Ok((fetch().await?, false));
        };
        let entry = cache
            .entry_by_ref(id)
            .or_try_insert_with(fetch())
            .await
            .map_err(|e| (*e).clone())?;
        let hit = !entry.is_fresh();
        Ok((entry.into_value(), hit))
    }
}
