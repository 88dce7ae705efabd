//! The conversation cache: a lookup of one conversation within `RELAY_GENESYS_CACHE_TTL`
//! is served from memory, and concurrent lookups of one id share one request (moka's
//! `try_get_with` runs one initialiser per key and hands its result to every waiter).
//! 404s are cached too (a gone conversation stays gone); errors are not. The
//! [`Conversation`] the cache holds is defined here, beside it.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use moka::future::Cache;
use serde::de::IgnoredAny;
use serde::Deserialize;
use serde_json::{Map, Value};

use super::HttpError;

/// A conversation (`GET /api/v2/conversations/{conversationId}`, or the conversation object
/// a queue or user conversation topic carries): the fields the routes decide on, typed
/// after the Platform API SDK models `Conversation`, `Participant` and `Message`.
#[derive(Debug, Clone, PartialEq)]
pub struct Conversation {
    pub id: String,
    pub start_time: Option<String>,
    pub end_time: Option<String>,
    pub participants: Vec<Participant>,
    /// The whole answer, only as the opaque document the relay writes out (the enriched
    /// record's `conversationJson`, the backend POST), so they lose nothing; no decision
    /// reads it.
    pub raw: Value,
}

/// The `purpose` of the participant who is the customer.
const PURPOSE_CUSTOMER: &str = "customer";

impl Conversation {
    /// The participant with `purpose: "customer"`, who carries the Web Messaging custom
    /// attributes.
    pub fn customer(&self) -> Option<&Participant> {
        self.participants.iter().find(|p| p.is_customer())
    }

    /// The participant with this id.
    pub fn participant(&self, id: &str) -> Option<&Participant> {
        self.participants.iter().find(|p| p.id == id)
    }
}

/// One participant of a [`Conversation`] (SDK model `Participant`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
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
    /// The participant's messaging communications (SDK `messages: list[Message]`).
    #[serde(default)]
    pub messages: Vec<Message>,
    /// The other media lists of the SDK model: only whether one is non-empty matters.
    #[serde(default)]
    calls: Vec<IgnoredAny>,
    #[serde(default)]
    callbacks: Vec<IgnoredAny>,
    #[serde(default)]
    chats: Vec<IgnoredAny>,
    #[serde(default)]
    cobrowsesessions: Vec<IgnoredAny>,
    #[serde(default)]
    emails: Vec<IgnoredAny>,
    #[serde(default)]
    screenshares: Vec<IgnoredAny>,
    #[serde(default)]
    social_expressions: Vec<IgnoredAny>,
    #[serde(default)]
    videos: Vec<IgnoredAny>,
}

impl Participant {
    /// The participant's id; `None` when the object has none.
    pub fn id(&self) -> Option<&str> {
        Some(self.id.as_str()).filter(|id| !id.is_empty())
    }

    pub fn is_customer(&self) -> bool {
        self.purpose.as_deref() == Some(PURPOSE_CUSTOMER)
    }

    /// Whether the participant has a communication on a medium other than messaging
    /// (calls, callbacks, chats, co-browse, emails, screen shares, social, video).
    pub fn has_other_media(&self) -> bool {
        [
            self.calls.len(),
            self.callbacks.len(),
            self.chats.len(),
            self.cobrowsesessions.len(),
            self.emails.len(),
            self.screenshares.len(),
            self.social_expressions.len(),
            self.videos.len(),
        ]
        .into_iter()
        .any(|n| n > 0)
    }
}

/// One messaging communication (SDK model `Message`): only its platform type is read.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Message {
    /// `type`: the messaging platform (`webmessaging`, `sms`, `whatsapp`, ...).
    #[serde(rename = "type", default)]
    pub kind: Option<String>,
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
    /// conversation topics); `raw` is kept as the document written out.
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn participants_decode_with_the_sdk_field_names() {
        let raw = json!({"id": "c1", "participants": [
            {"id": "p1", "purpose": "customer", "externalContactId": "x1",
             "attributes": {"a": "1"}, "messages": [{"type": "webmessaging", "state": "connected"}]},
            {"id": "p2", "purpose": "agent", "socialExpressions": [{"state": "connected"}]},
            {"id": "p3", "purpose": "agent", "cobrowsesessions": [{}]},
            {"purpose": "acd"},
        ]});
        let c = Conversation::from_json(raw.clone(), "fallback").unwrap();
        assert_eq!(c.id, "c1");
        let customer = c.customer().unwrap();
        assert_eq!(customer.id(), Some("p1"));
        assert_eq!(customer.external_contact_id.as_deref(), Some("x1"));
        assert_eq!(customer.messages[0].kind.as_deref(), Some("webmessaging"));
        assert!(!customer.has_other_media());
        assert!(c.participant("p2").unwrap().has_other_media());
        assert!(c.participant("p3").unwrap().has_other_media());
        assert_eq!(c.participants[3].id(), None);
        assert_eq!(c.raw, raw);
    }
}
