//! Idempotent Process Automation trigger registration (`genesys-relay triggers register`):
//! make sure exactly one trigger with a given name fires the given workflow on the given
//! topic, creating or updating it only when needed, so running it twice changes nothing.
//!
//! Shapes (SDK models `Trigger`, `CreateTriggerRequest`, `UpdateTriggerRequest`,
//! `TriggerEntityListing`, `MatchCriteria`): the listing pages by cursor and says where
//! the next page is in `nextUri`; an update must carry the trigger's current `version` and
//! cannot change `topicName`.

use serde_json::{json, Value};

use super::{GenesysClient, HttpError};

/// Page size used while searching (the API's maximum is 200).
const PAGE_SIZE: u32 = 100;
/// A guard against a server whose `nextUri` never ends.
const MAX_PAGES: u32 = 10_000;

/// The trigger we want to exist.
#[derive(Debug, Clone, PartialEq)]
pub struct TriggerSpec {
    pub name: String,
    pub topic_name: String,
    pub workflow_id: String,
    /// `(jsonPath, value)` pairs, each matched with the `Equal` operator.
    pub match_criteria: Vec<(String, Value)>,
}

impl TriggerSpec {
    /// The fields we own, as the API spells them (`CreateTriggerRequest`).
    fn body(&self) -> Value {
        let criteria: Vec<Value> = self
            .match_criteria
            .iter()
            .map(|(path, value)| json!({"jsonPath": path, "operator": "Equal", "value": value}))
            .collect();
        json!({
            "name": self.name,
            "topicName": self.topic_name,
            "target": {"type": "Workflow", "id": self.workflow_id},
            "matchCriteria": criteria,
            "enabled": true,
        })
    }

    /// Whether an existing trigger already does what we want (enabled included: a
    /// disabled trigger fires nothing).
    fn satisfied_by(&self, existing: &Value) -> bool {
        let want = self.body();
        let criteria = |v: &Value| v.get("matchCriteria").cloned().unwrap_or(json!([]));
        existing.get("topicName") == want.get("topicName")
            && existing.pointer("/target/type") == want.pointer("/target/type")
            && existing.pointer("/target/id") == want.pointer("/target/id")
            && existing.get("enabled") == Some(&Value::Bool(true))
            && criteria(existing) == criteria(&want)
    }
}

/// What registration had to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RegistrationOutcome {
    Created { id: String },
    Updated { id: String },
    Unchanged { id: String },
}

impl RegistrationOutcome {
    /// The id of the trigger that now matches the spec.
    pub fn id(&self) -> &str {
        match self {
            RegistrationOutcome::Created { id }
            | RegistrationOutcome::Updated { id }
            | RegistrationOutcome::Unchanged { id } => id,
        }
    }

    /// `created`, `updated` or `unchanged`.
    pub fn verb(&self) -> &'static str {
        match self {
            RegistrationOutcome::Created { .. } => "created",
            RegistrationOutcome::Updated { .. } => "updated",
            RegistrationOutcome::Unchanged { .. } => "unchanged",
        }
    }
}

/// Finds the trigger named `spec.name` across every page; leaves it alone when it already
/// matches, updates it otherwise (with its current `version`), creates it when missing.
/// A trigger of that name on another topic is an error: Genesys does not let an update
/// change `topicName`.
pub async fn register_trigger(
    client: &GenesysClient,
    spec: &TriggerSpec,
) -> Result<RegistrationOutcome, HttpError> {
    let outcome = match find_by_name(client, &spec.name).await? {
        Some(existing) => {
            let id = string_field(&existing, "id")?;
            if spec.satisfied_by(&existing) {
                RegistrationOutcome::Unchanged { id }
            } else {
                if existing.get("topicName").and_then(Value::as_str) != Some(&spec.topic_name) {
                    return Err(HttpError::InvalidRequest(format!(
                        "trigger {:?} exists on topic {}; Genesys cannot change a trigger's topicName: choose another --name",
                        spec.name,
                        existing.get("topicName").unwrap_or(&Value::Null)
                    )));
                }
                let mut body = spec.body();
                body["version"] = existing.get("version").cloned().unwrap_or(json!(1));
                for keep in ["description", "eventTTLSeconds", "delayBySeconds"] {
                    if let Some(v) = existing.get(keep) {
                        body[keep] = v.clone();
                    }
                }
                client.update_trigger(&id, &body).await?;
                RegistrationOutcome::Updated { id }
            }
        }
        None => {
            let created = client.create_trigger(&spec.body()).await?;
            RegistrationOutcome::Created {
                id: string_field(&created, "id")?,
            }
        }
    };
    tracing::info!(name = %spec.name, outcome = ?outcome, "trigger registration");
    Ok(outcome)
}

fn string_field(v: &Value, name: &str) -> Result<String, HttpError> {
    v.get(name)
        .and_then(Value::as_str)
        .map(str::to_string)
        .ok_or_else(|| HttpError::Decode(format!("trigger without a string {name}")))
}

async fn find_by_name(client: &GenesysClient, name: &str) -> Result<Option<Value>, HttpError> {
    let mut next: Option<String> = None;
    for _ in 0..MAX_PAGES {
        let page = client.triggers_page(next.as_deref(), PAGE_SIZE).await?;
        let entities = page
            .get("entities")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        if let Some(found) = entities
            .into_iter()
            .find(|t| t.get("name").and_then(Value::as_str) == Some(name))
        {
            return Ok(Some(found));
        }
        match page.get("nextUri").and_then(Value::as_str) {
            Some(uri) if !uri.is_empty() && Some(uri) != next.as_deref() => {
                next = Some(uri.to_string())
            }
            _ => return Ok(None),
        }
    }
    Err(HttpError::Decode(format!(
        "trigger listing did not end after {MAX_PAGES} pages"
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> TriggerSpec {
        TriggerSpec {
            name: "relay".into(),
            topic_name: "v2.detail.events.conversation.{id}.customer.start".into(),
            workflow_id: "wf-1".into(),
            match_criteria: vec![("$.mediaType".into(), json!("MESSAGE"))],
        }
    }

    #[test]
    fn a_matching_trigger_is_left_alone_and_any_difference_is_not() {
        let s = spec();
        let mut existing = s.body();
        existing["id"] = json!("t-1");
        existing["version"] = json!(3);
        assert!(s.satisfied_by(&existing));
        existing["enabled"] = json!(false);
        assert!(!s.satisfied_by(&existing));
        existing["enabled"] = json!(true);
        existing["target"]["id"] = json!("wf-2");
        assert!(!s.satisfied_by(&existing));
    }
}
