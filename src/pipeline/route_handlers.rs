//! The three routes. Each returns `Synced` or `Skipped(reason)` once its downstream write
//! is done, or a classified [`Failure`]. Every downstream write carries the idempotency key.
//!
//! Genesys calls per event: `guest_sync` makes none when the event carries the
//! attributes (attributes detail events, queue/user conversation objects), else one
//! conversation GET (and one when `RELAY_GUEST_SYNC_SCOPE=web_messaging_checked` must
//! look up what the event does not say); `conversation_enrich` one conversation GET;
//! `forward` none. The guest scope itself costs no call by default. Both GETs
//! go through the conversation cache, so events of one conversation within its TTL share
//! one request.

use super::event_view::{Customer, EventView};
use super::failure::Failure;
use super::guest_scope::{judge, judge_conversation, GuestScope, Verdict};
use super::outcome::SkipReason;
use super::route_table::Route;
use super::settings::{AttributeMapping, AttributeType, EntryKey};
use crate::clock::now_ms;
use crate::genesys::{Conversation, GenesysClient};
use crate::idempotency::IdempotencyStore;
use crate::kafka::{headers, EventProducer};
use crate::schema::{Codec, ConversationParticipant, EnrichedConversation, RawEvent};
use crate::sinks::cms::{FIELD_EVENT_ID, FIELD_EVENT_TIME};
use crate::sinks::{CmsSink, GuestEntry, HttpForwarder, UpsertOutcome};
use serde_json::{Map, Number, Value};
use std::sync::Arc;

/// How a route ended when it did not fail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// Done; `entry` is the CMS entry a guest sync wrote (for the stale guard).
    Synced {
        entry: Option<String>,
    },
    Skipped(SkipReason),
}

/// What the routes need: the API client, the sinks and the Kafka writer.
pub(crate) struct RouteHandlers {
    pub(crate) genesys: GenesysClient,
    pub(crate) cms: CmsSink,
    pub(crate) forwarder: Option<HttpForwarder>,
    pub(crate) producer: Arc<EventProducer>,
    pub(crate) codec: Codec,
    pub(crate) enriched_topic: String,
    pub(crate) attribute_map: Vec<AttributeMapping>,
    pub(crate) entry_key: EntryKey,
    pub(crate) guest_scope: GuestScope,
    pub(crate) idempotency: Arc<IdempotencyStore>,
}

impl RouteHandlers {
    pub(crate) async fn run(
        &self,
        route: Route,
        view: &EventView<'_>,
        key: &str,
    ) -> Result<Outcome, Failure> {
        match route {
            Route::GuestSync => self.guest_sync(view, key).await,
            Route::ConversationEnrich => self.conversation_enrich(view.event, key).await,
            Route::Forward => self.forward(view, key).await,
        }
    }

    /// The customer's attributes (from the event when it carries them, else from the
    /// conversation) -> a `guest_session` entry in the CMS, keyed per `RELAY_CMS_ENTRY_KEY`.
    async fn guest_sync(&self, view: &EventView<'_>, key: &str) -> Result<Outcome, Failure> {
        let (event, body) = (view.event, view.body());
        let conversation_id = event
            .conversation_id
            .clone()
            .or_else(|| view.conversation_id_in_body());
        // The participant the event is about (an attributes event names it).
        let subject = body
            .and_then(|b| b.get("participantId"))
            .and_then(Value::as_str)
            .map(str::to_string)
            .or_else(|| event.participant_id.clone());
        // The scope, from the event's own fields first (no Genesys call).
        let verdict = match (self.guest_scope, body) {
            (GuestScope::All, _) | (_, None) => Verdict::Undecided,
            (_, Some(b)) => judge(b, view.conversation(), subject.as_deref()),
        };
        if let Verdict::Skip(reason) = verdict {
            return Ok(Outcome::Skipped(reason));
        }
        let in_event = view.customer_in_event();
        let must_check =
            self.guest_scope == GuestScope::WebMessagingChecked && verdict == Verdict::Undecided;
        let customer = match in_event {
            Some(customer) if !must_check => customer,
            in_event => {
                let id = conversation_id.as_deref().ok_or_else(|| {
                    Failure::permanent("event has no conversation id and no attributes")
                })?;
                // A gone conversation is expected (404): skip and count, never a failure.
                let Some(conversation) = self.genesys.conversation(id).await? else {
                    return Ok(Outcome::Skipped(SkipReason::ConversationNotFound));
                };
                // The conversation was fetched anyway: it tells what the event did not.
                if self.guest_scope != GuestScope::All {
                    if let Verdict::Skip(reason) =
                        judge_conversation(&conversation, subject.as_deref())
                    {
                        return Ok(Outcome::Skipped(reason));
                    }
                }
                match in_event.or_else(|| conversation.customer().map(Customer::from)) {
                    Some(customer) => customer,
                    None => return Ok(Outcome::Skipped(SkipReason::NoCustomer)),
                }
            }
        };
        let conversation_id =
            conversation_id.ok_or_else(|| Failure::permanent("event has no conversation id"))?;
        let participant_id = customer
            .participant_id
            .clone()
            .or_else(|| event.participant_id.clone());
        let entry_id = match self.entry_key {
            EntryKey::Conversation => conversation_id.clone(),
            EntryKey::Participant => participant_id
                .clone()
                .unwrap_or_else(|| conversation_id.clone()),
            EntryKey::ExternalContact => customer
                .external_contact_id
                .clone()
                .unwrap_or_else(|| conversation_id.clone()),
        };
        // An event older than what was synced to this entry must not overwrite newer state.
        if let (Some(t), Some(newest)) = (
            event.event_time_ms,
            self.idempotency.newest_guest_time(&entry_id).await,
        ) {
            if t < newest {
                return Ok(Outcome::Skipped(SkipReason::Stale));
            }
        }
        let mut fields = map_attributes(&self.attribute_map, &customer)?;
        fields.insert("conversationId".into(), Value::String(conversation_id));
        if let Some(p) = participant_id {
            fields.insert("participantId".into(), Value::String(p));
        }
        if let Some(x) = customer.external_contact_id {
            fields.insert("externalContactId".into(), Value::String(x));
        }
        fields.insert(FIELD_EVENT_ID.into(), Value::String(event.event_id.clone()));
        if let Some(t) = event.event_time_ms {
            fields.insert(FIELD_EVENT_TIME.into(), Value::from(t));
        }
        let written = self
            .cms
            .upsert_guest_session(&GuestEntry {
                entry_id: &entry_id,
                fields: &fields,
                event_id: &event.event_id,
                event_time_ms: event.event_time_ms,
                idempotency_key: key,
            })
            .await?;
        match written {
            // The CMS holds a newer event (written by another relay, or before this
            // process's memory): the same skip as the relay's own guard above.
            UpsertOutcome::Stale => Ok(Outcome::Skipped(SkipReason::Stale)),
            // Created, updated, or already holding this event: synced (the mark is kept).
            UpsertOutcome::Created | UpsertOutcome::Updated | UpsertOutcome::Unchanged => {
                Ok(Outcome::Synced {
                    entry: Some(entry_id),
                })
            }
        }
    }

    /// Conversation from the API -> Avro record on the enriched topic (+ backend POST).
    async fn conversation_enrich(&self, event: &RawEvent, key: &str) -> Result<Outcome, Failure> {
        let id = event
            .conversation_id
            .as_deref()
            .ok_or_else(|| Failure::permanent("event has no conversation id"))?;
        let Some(conversation) = self.genesys.conversation(id).await? else {
            return Ok(Outcome::Skipped(SkipReason::ConversationNotFound));
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
            // The conversation goes out as Genesys answered it (the raw document), so the
            // backend sees every field, not only the typed ones the relay decides on.
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
        Ok(Outcome::Synced { entry: None })
    }

    /// The body as delivered -> backend POST.
    async fn forward(&self, view: &EventView<'_>, key: &str) -> Result<Outcome, Failure> {
        let Some(forwarder) = &self.forwarder else {
            return Ok(Outcome::Skipped(SkipReason::NoForwardUrl));
        };
        let body = view
            .payload()
            .map_err(|e| Failure::poison(format!("payload is not JSON: {e}")))?;
        forwarder.forward(body, key, &view.event.event_id).await?;
        Ok(Outcome::Synced { entry: None })
    }
}

/// The CMS fields of `RELAY_ATTRIBUTE_MAP`. Genesys attribute values are strings; a value
/// that does not convert to its declared type fails the event permanently, saying which.
fn map_attributes(
    map: &[AttributeMapping],
    customer: &Customer,
) -> Result<Map<String, Value>, Failure> {
    let mut fields = Map::new();
    for m in map {
        let Some(raw) = customer.attributes.get(&m.name) else {
            continue;
        };
        fields.insert(m.field.clone(), convert(m, raw)?);
    }
    Ok(fields)
}

fn convert(m: &AttributeMapping, raw: &Value) -> Result<Value, Failure> {
    let unconvertible = |what: &str| {
        Failure::permanent(format!(
            "attribute {}: {} is not {what} (RELAY_ATTRIBUTE_MAP declares {}:{})",
            m.name,
            crate::text::truncate_utf8(&raw.to_string(), 100),
            m.name,
            match m.kind {
                AttributeType::String => "string",
                AttributeType::Number => "number",
                AttributeType::Bool => "bool",
            }
        ))
    };
    match (m.kind, raw) {
        (AttributeType::String, Value::String(_)) => Ok(raw.clone()),
        (AttributeType::String, other) => Ok(Value::String(other.to_string())),
        (AttributeType::Number, Value::Number(_)) => Ok(raw.clone()),
        (AttributeType::Number, Value::String(s)) => {
            let s = s.trim();
            if let Ok(i) = s.parse::<i64>() {
                return Ok(Value::from(i));
            }
            s.parse::<f64>()
                .ok()
                .and_then(Number::from_f64)
                .map(Value::Number)
                .ok_or_else(|| unconvertible("a number"))
        }
        (AttributeType::Bool, Value::Bool(_)) => Ok(raw.clone()),
        (AttributeType::Bool, Value::String(s)) => match s.trim().to_ascii_lowercase().as_str() {
            "true" => Ok(Value::Bool(true)),
            "false" => Ok(Value::Bool(false)),
            _ => Err(unconvertible("a bool (true or false)")),
        },
        (AttributeType::Number, _) => Err(unconvertible("a number")),
        (AttributeType::Bool, _) => Err(unconvertible("a bool (true or false)")),
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn mapping(name: &str, kind: AttributeType) -> AttributeMapping {
        AttributeMapping {
            name: name.into(),
            kind,
            field: name.into(),
        }
    }

    fn customer(attributes: Value) -> Customer {
        Customer {
            participant_id: None,
            external_contact_id: None,
            attributes: attributes.as_object().cloned().unwrap_or_default(),
        }
    }

    #[test]
    fn string_values_are_converted_to_their_declared_types() {
        let map = [
            mapping("cart_value", AttributeType::Number),
            mapping("items", AttributeType::Number),
            mapping("vip", AttributeType::Bool),
            mapping("last_page", AttributeType::String),
            mapping("absent", AttributeType::Number),
        ];
        let fields = map_attributes(
            &map,
            &customer(
                json!({"cart_value": "123.45", "items": "3", "vip": "TRUE", "last_page": "/cart"}),
            ),
        )
        .unwrap();
        assert_eq!(
            Value::Object(fields),
            json!({"cart_value": 123.45, "items": 3, "vip": true, "last_page": "/cart"})
        );
    }

    #[test]
    fn an_unconvertible_value_is_a_permanent_failure_naming_it() {
        let map = [mapping("cart_value", AttributeType::Number)];
        let err = map_attributes(&map, &customer(json!({"cart_value": "lots"}))).unwrap_err();
        assert_eq!(err.class, super::super::failure::ErrorClass::Permanent);
        assert!(
            err.message.contains("cart_value") && err.message.contains("\"lots\""),
            "{}",
            err.message
        );
        let map = [mapping("vip", AttributeType::Bool)];
        assert!(map_attributes(&map, &customer(json!({"vip": "yes"}))).is_err());
        let map = [mapping("n", AttributeType::Number)];
        assert!(map_attributes(&map, &customer(json!({"n": "NaN"}))).is_err());
    }
}
