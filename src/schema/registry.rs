//! Minimal client of the Confluent schema registry API (Redpanda's built-in registry
//! speaks it): register each schema under `<topic>-value` and keep the returned id.

use super::{AvroRecord, Codec, SchemaError};
use std::collections::HashMap;

/// Registers the relay's schemas and builds a [`Codec`] that uses their ids.
pub struct SchemaRegistry {
    base: String,
    http: reqwest::Client,
}

impl SchemaRegistry {
    pub fn new(base: &str, http: reqwest::Client) -> Self {
        SchemaRegistry {
            base: base.trim_end_matches('/').to_string(),
            http,
        }
    }

    /// Registers `T`'s schema under the subject `<topic>-value` and returns its id.
    /// Registering an identical schema again answers the existing id, so start-up is idempotent.
    pub async fn register<T: AvroRecord>(&self, topic: &str) -> Result<u32, SchemaError> {
        let url = format!("{}/subjects/{}-value/versions", self.base, topic);
        // The full schema, not the Parsing Canonical Form: that form strips `logicalType`,
        // `default` and `doc`, so registry-aware readers would see plain longs and no
        // defaults, and compatibility checks would judge a schema the relay does not use.
        let schema = serde_json::to_string(T::schema())
            .map_err(|e| SchemaError::Registry(format!("cannot serialise {}: {e}", T::NAME)))?;
        let body = serde_json::json!({ "schema": schema });
        let resp = self
            .http
            .post(&url)
            .header("Content-Type", "application/vnd.schemaregistry.v1+json")
            .json(&body)
            .send()
            .await
            .map_err(|e| SchemaError::Registry(format!("POST {url}: {e}")))?;
        let status = resp.status();
        let text = resp.text().await.unwrap_or_default();
        if !status.is_success() {
            return Err(SchemaError::Registry(format!(
                "POST {url}: {status}: {text}"
            )));
        }
        let parsed: serde_json::Value = serde_json::from_str(&text)
            .map_err(|e| SchemaError::Registry(format!("POST {url}: bad answer: {e}")))?;
        parsed["id"]
            .as_u64()
            .and_then(|id| u32::try_from(id).ok())
            .ok_or_else(|| SchemaError::Registry(format!("POST {url}: no id in {text}")))
    }

    /// Registers every record type the relay writes, per its topic, and returns the codec.
    pub async fn codec(
        &self,
        raw_topic: &str,
        enriched_topic: &str,
        idempotency_topic: &str,
    ) -> Result<Codec, SchemaError> {
        use super::{EnrichedConversation, IdempotencyMark, RawEvent};
        let mut ids = HashMap::new();
        ids.insert(RawEvent::NAME, self.register::<RawEvent>(raw_topic).await?);
        ids.insert(
            EnrichedConversation::NAME,
            self.register::<EnrichedConversation>(enriched_topic)
                .await?,
        );
        ids.insert(
            IdempotencyMark::NAME,
            self.register::<IdempotencyMark>(idempotency_topic).await?,
        );
        Ok(Codec::with_registry_ids(ids))
    }
}
