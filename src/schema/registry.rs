//! Minimal client of the Confluent schema registry API (Redpanda's built-in registry
//! speaks it): register each schema under `<topic>-value` and keep the returned id, and
//! load every other version of that subject so records written by an earlier relay (an
//! earlier schema id) still decode.

use super::{AvroRecord, Codec, SchemaError};
use std::collections::HashMap;

/// Registers the relay's schemas and builds a [`Codec`] that uses their ids.
pub(crate) struct SchemaRegistry {
    base: String,
    http: reqwest::Client,
}

impl SchemaRegistry {
    pub(crate) fn new(base: &str, http: reqwest::Client) -> Self {
        SchemaRegistry {
            base: base.trim_end_matches('/').to_string(),
            http,
        }
    }

    /// Registers `T`'s schema under the subject `<topic>-value` and returns its id.
    /// Registering an identical schema again answers the existing id, so start-up is idempotent.
    pub(crate) async fn register<T: AvroRecord>(&self, topic: &str) -> Result<u32, SchemaError> {
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

    async fn get_json(&self, url: &str) -> Result<serde_json::Value, SchemaError> {
        let resp = self
            .http
            .get(url)
            .send()
            .await
            .map_err(|e| SchemaError::Registry(format!("GET {url}: {e}")))?;
        let status = resp.status();
        let text = resp.text().await.unwrap_or_default();
        if !status.is_success() {
            return Err(SchemaError::Registry(format!(
                "GET {url}: {status}: {text}"
            )));
        }
        serde_json::from_str(&text)
            .map_err(|e| SchemaError::Registry(format!("GET {url}: bad answer: {e}")))
    }

    /// Adds to `codec` the writer schema of every version of `T`'s subject (`GET
    /// /subjects/{subject}/versions`, then each version's `{id, schema}`). A version whose
    /// schema is not a readable `T` is skipped: records of it stay undecodable, as before.
    async fn load_versions<T: AvroRecord>(
        &self,
        topic: &str,
        codec: &mut Codec,
    ) -> Result<(), SchemaError> {
        let subject = format!("{}/subjects/{}-value/versions", self.base, topic);
        let versions = self.get_json(&subject).await?;
        let versions: Vec<u64> = versions
            .as_array()
            .map(|v| v.iter().filter_map(serde_json::Value::as_u64).collect())
            .unwrap_or_default();
        for version in versions {
            let answer = self.get_json(&format!("{subject}/{version}")).await?;
            let id = answer["id"].as_u64().and_then(|id| u32::try_from(id).ok());
            let schema = answer["schema"]
                .as_str()
                .and_then(|text| apache_avro::Schema::parse_str(text).ok());
            match (id, schema) {
                (Some(id), Some(schema)) if readable_as::<T>(&schema) => {
                    codec.add_registry_writer::<T>(id, schema)
                }
                _ => tracing::warn!(
                    subject = %subject,
                    version,
                    record = T::NAME,
                    "registry version is not a readable schema of this record; skipped"
                ),
            }
        }
        Ok(())
    }

    /// A codec that reads `T` written with any version of its subject and registers
    /// nothing: for operator commands, which must not change the registry.
    pub(crate) async fn reader<T: AvroRecord>(&self, topic: &str) -> Result<Codec, SchemaError> {
        let mut codec = Codec::with_registry_ids(HashMap::new());
        self.load_versions::<T>(topic, &mut codec).await?;
        Ok(codec)
    }

    /// Registers every record type the relay writes, per its topic, and returns the codec.
    pub(crate) async fn codec(
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
        let mut codec = Codec::with_registry_ids(ids);
        self.load_versions::<RawEvent>(raw_topic, &mut codec)
            .await?;
        self.load_versions::<EnrichedConversation>(enriched_topic, &mut codec)
            .await?;
        self.load_versions::<IdempotencyMark>(idempotency_topic, &mut codec)
            .await?;
        Ok(codec)
    }
}

/// Whether Avro schema resolution can read `writer` data as `T` (same record name, and
/// every field `T` has without a default is in the writer).
fn readable_as<T: AvroRecord>(writer: &apache_avro::Schema) -> bool {
    use apache_avro::Schema;
    let (Schema::Record(w), Schema::Record(r)) = (writer, T::schema()) else {
        return false;
    };
    w.name.name == r.name.name
        && r.fields
            .iter()
            .all(|f| f.default.is_some() || w.fields.iter().any(|wf| wf.name == f.name))
}
