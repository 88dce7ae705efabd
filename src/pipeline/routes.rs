//! The three routes. Each returns `Synced` or `Skipped(reason)` once its downstream write
//! is done, or a classified [`Failure`]. Every downstream write carries the idempotency key.

use super::failure::Failure;
use super::router::Route;
use crate::genesys::{Conversation, GenesysClient};
use crate::idempotency::IdempotencyStore;
use crate::kafka::{headers, now_ms, EventProducer};
use crate::schema::{Codec, ConversationParticipant, EnrichedConversation, RawEvent};
use crate::sinks::{CmsClient, HttpForwarder};
use serde_json::{Map, Value};
use std::sync::Arc;

/// How a route ended when it did not fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Synced,
    Skipped(&'static str),
}

/// What the routes need: the API client, the sinks and the Kafka writer.
pub struct Routes {
    pub genesys: GenesysClient,
    pub cms: CmsClient,
    pub forwarder: Option<HttpForwarder>,
    pub producer: Arc<EventProducer>,
    pub codec: Codec,
    pub enriched_topic: String,
    /// Genesys attribute name -> CMS field name.
    pub attribute_map: Vec<(String, String)>,
    pub idempotency: Arc<IdempotencyStore>,
}

impl Routes {
    pub async fn run(&self, route: Route, event: &RawEvent, key: &str) -> Result<Outcome, Failure> {
        match route {
            Route::GuestSync => self.guest_sync(event, key).await,
            Route::ConversationEnrich => self.conversation_enrich(event, key).await,
            Route::Forward => self.forward(event, key).await,
        }
    }

    /// Guest profile attributes -> `guest_session` entry in the CMS, keyed by guest id.
    async fn guest_sync(&self, event: &RawEvent, key: &str) -> Result<Outcome, Failure> {
        let guest_id = event
            .guest_id
            .as_deref()
            .ok_or_else(|| Failure::permanent("event has no guest id"))?;
        // An event older than what was synced for this guest must not overwrite newer state.
        if let (Some(t), Some(newest)) = (
            event.event_time_ms,
            self.idempotency.newest_guest_time(guest_id).await,
        ) {
            if t < newest {
                return Ok(Outcome::Skipped("stale"));
            }
        }
        // Guests are ephemeral: a 404 is expected and skipped, never a failure.
        let Some(profile) = self.genesys.guest(guest_id).await? else {
            return Ok(Outcome::Skipped("guest_not_found"));
        };
        let mut fields = Map::new();
        for (from, to) in &self.attribute_map {
            if let Some(v) = profile.attributes.get(from) {
                fields.insert(to.clone(), v.clone());
            }
        }
        fields.insert("guestId".into(), Value::String(guest_id.to_string()));
        if let Some(c) = &event.conversation_id {
            fields.insert("conversationId".into(), Value::String(c.clone()));
        }
        fields.insert("eventId".into(), Value::String(event.event_id.clone()));
        if let Some(t) = event.event_time_ms {
            fields.insert("eventTimeMs".into(), Value::from(t));
        }
        self.cms
            .upsert_guest_session(guest_id, &fields, key)
            .await?;
        Ok(Outcome::Synced)
    }

    /// Conversation from the API -> Avro record on the enriched topic (+ backend POST).
    async fn conversation_enrich(&self, event: &RawEvent, key: &str) -> Result<Outcome, Failure> {
        let id = event
            .conversation_id
            .as_deref()
            .ok_or_else(|| Failure::permanent("event has no conversation id"))?;
        let Some(conversation) = self.genesys.conversation(id).await? else {
            return Ok(Outcome::Skipped("conversation_not_found"));
        };
        let record = enriched_record(event, &conversation);
        let value = self
            .codec
            .encode(&record)
            .map_err(|e| Failure::permanent(e.to_string()))?;
        let mut hdrs = vec![(headers::EVENT_ID, event.event_id.as_str())];
        if let Some(tp) = &event.traceparent {
            hdrs.push((headers::TRACEPARENT, tp));
        }
        self.producer
            .send(&self.enriched_topic, id, &value, &hdrs)
            .await?;
        if let Some(forwarder) = &self.forwarder {
            let body = serde_json::json!({
                "eventId": record.event_id,
                "eventType": record.event_type,
                "conversationId": record.conversation_id,
                "startTime": record.start_time,
                "endTime": record.end_time,
                "participants": conversation.raw.get("participants").cloned().unwrap_or(Value::Null),
                "conversation": conversation.raw,
            });
            forwarder.forward(&body, key, &event.event_id).await?;
        }
        Ok(Outcome::Synced)
    }

    /// The webhook body as delivered -> backend POST.
    async fn forward(&self, event: &RawEvent, key: &str) -> Result<Outcome, Failure> {
        let Some(forwarder) = &self.forwarder else {
            return Ok(Outcome::Skipped("no_forward_url"));
        };
        let body: Value = serde_json::from_str(&event.payload)
            .map_err(|e| Failure::poison(format!("payload is not JSON: {e}")))?;
        forwarder.forward(&body, key, &event.event_id).await?;
        Ok(Outcome::Synced)
    }
}

fn enriched_record(event: &RawEvent, c: &Conversation) -> EnrichedConversation {
    EnrichedConversation {
        event_id: event.event_id.clone(),
        conversation_id: c.id.clone(),
        event_type: event.event_type.clone(),
        event_time_ms: event.event_time_ms,
        enriched_at_ms: now_ms(),
        start_time: c.start_time.clone(),
        end_time: c.end_time.clone(),
        participants: c
            .participants
            .iter()
            .map(|p| ConversationParticipant {
                id: p.id.clone(),
                purpose: p.purpose.clone(),
                name: p.name.clone(),
            })
            .collect(),
        conversation_json: c.raw.to_string(),
        event_payload: event.payload.clone(),
    }
}
