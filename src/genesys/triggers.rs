//! Idempotent Process Automation trigger registration (`genesys-relay triggers register`):
//! make sure exactly one trigger with a given name fires the given workflow on the given
//! topic with the event as JSON, creating or updating it only when needed, so running it
//! twice changes nothing.
//!
//! Shapes (SDK models `Trigger`, `CreateTriggerRequest`, `UpdateTriggerRequest`,
//! `TriggerTarget`, `WorkflowTargetSettings`, `TriggerEntityListing`,
//! `TopicCursorEntityListing`, `MatchCriteria`): listings page by cursor and say where the
//! next page is in `nextUri`; an update must carry the trigger's current `version` and
//! cannot change `topicName`; a `topicName` must be one the org's
//! `GET /api/v2/processautomation/triggers/topics` lists.
//!
//! Invariants: the trigger asks for `target.workflowTargetSettings.dataFormat: Json`
//! (without it Genesys sends the workflow top-level primitives only and `Flow.jsonData`,
//! which docs/connecting.md's recipe sends on, is empty); an update starts from the
//! trigger as it is and changes only the fields this command owns, so whatever a user or a
//! newer API added by hand survives.

use serde_json::{json, Map, Value};

use super::{GenesysClient, HttpError};

/// Page size used while searching (the API's maximum is 200).
const PAGE_SIZE: u32 = 100;
/// A guard against a server whose `nextUri` never ends.
const MAX_PAGES: u32 = 10_000;
/// The workflow gets the whole event as the input `jsonData` (SDK enum
/// `WorkflowTargetSettings.dataFormat`: `Json`, `TopLevelPrimitives`).
const DATA_FORMAT: &str = "Json";
/// Topics named in the error for an unknown `--topic`.
const NEAR_MATCHES: usize = 3;
/// Fields of a `Trigger` that an `UpdateTriggerRequest` does not carry (read-only).
const READ_ONLY: [&str; 2] = ["id", "selfUri"];

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
            "target": {
                "type": "Workflow",
                "id": self.workflow_id,
                "workflowTargetSettings": {"dataFormat": DATA_FORMAT},
            },
            "matchCriteria": criteria,
            "enabled": true,
        })
    }

    /// Whether an existing trigger already does what we want (enabled and the data format
    /// included: a disabled trigger fires nothing, a TopLevelPrimitives one delivers no
    /// `jsonData`).
    fn satisfied_by(&self, existing: &Value) -> bool {
        let want = self.body();
        let criteria = |v: &Value| v.get("matchCriteria").cloned().unwrap_or(json!([]));
        existing.get("topicName") == want.get("topicName")
            && existing.pointer("/target/type") == want.pointer("/target/type")
            && existing.pointer("/target/id") == want.pointer("/target/id")
            && existing.pointer("/target/workflowTargetSettings/dataFormat")
                == Some(&json!(DATA_FORMAT))
            && existing.get("enabled") == Some(&Value::Bool(true))
            && criteria(existing) == criteria(&want)
    }

    /// The `UpdateTriggerRequest` that turns `existing` into the spec: `existing` as it is
    /// (every field, known or not, kept; nested `target` and `workflowTargetSettings`
    /// merged, not replaced) with the fields we own set, its `version` kept.
    fn update_of(&self, existing: &Value) -> Value {
        let mut body = existing.as_object().cloned().unwrap_or_default();
        for field in READ_ONLY {
            body.remove(field);
        }
        let want = self.body();
        for field in ["name", "topicName", "matchCriteria", "enabled"] {
            body.insert(field.into(), want[field].clone());
        }
        let mut target = object(body.get("target"));
        target.insert("type".into(), want["target"]["type"].clone());
        target.insert("id".into(), want["target"]["id"].clone());
        let mut settings = object(target.get("workflowTargetSettings"));
        settings.insert("dataFormat".into(), json!(DATA_FORMAT));
        target.insert("workflowTargetSettings".into(), Value::Object(settings));
        body.insert("target".into(), Value::Object(target));
        body.entry("version").or_insert(json!(1));
        Value::Object(body)
    }
}

/// A JSON object's fields (empty for anything else).
fn object(v: Option<&Value>) -> Map<String, Value> {
    v.and_then(Value::as_object).cloned().unwrap_or_default()
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

/// Checks `spec.topic_name` against the org's trigger topics, then finds the trigger named
/// `spec.name` across every page; leaves it alone when it already matches, updates it
/// otherwise (with its current `version`, keeping every other field), creates it when
/// missing. A trigger of that name on another topic is an error: Genesys does not let an
/// update change `topicName`.
pub async fn register_trigger(
    client: &GenesysClient,
    spec: &TriggerSpec,
) -> Result<RegistrationOutcome, HttpError> {
    check_topic(client, &spec.topic_name).await?;
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
                client
                    .update_trigger(&id, &spec.update_of(&existing))
                    .await?;
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

/// Every topic `GET /api/v2/processautomation/triggers/topics` lists must include `topic`;
/// otherwise the error names the closest ones (by edit distance).
async fn check_topic(client: &GenesysClient, topic: &str) -> Result<(), HttpError> {
    let mut known: Vec<String> = Vec::new();
    let mut next: Option<String> = None;
    for _ in 0..MAX_PAGES {
        let page = client.trigger_topics_page(next.as_deref(), 200).await?;
        let names = page
            .get("entities")
            .and_then(Value::as_array)
            .ok_or_else(|| HttpError::Decode("trigger topics without entities".into()))?;
        known.extend(names.iter().filter_map(Value::as_str).map(str::to_string));
        if known.iter().any(|t| t == topic) {
            return Ok(());
        }
        match page.get("nextUri").and_then(Value::as_str) {
            Some(uri) if !uri.is_empty() && Some(uri) != next.as_deref() => {
                next = Some(uri.to_string())
            }
            _ => break,
        }
    }
    Err(HttpError::InvalidRequest(unknown_topic_message(
        topic, &known,
    )))
}

fn unknown_topic_message(topic: &str, known: &[String]) -> String {
    let mut ranked: Vec<(usize, &String)> =
        known.iter().map(|t| (edit_distance(topic, t), t)).collect();
    ranked.sort();
    let closest: Vec<&str> = ranked
        .iter()
        .take(NEAR_MATCHES)
        .map(|(_, t)| t.as_str())
        .collect();
    format!(
        "--topic {topic} is not a trigger topic of this org (GET /api/v2/processautomation/triggers/topics lists {} topics); closest: {}",
        known.len(),
        if closest.is_empty() { "none".to_string() } else { closest.join(", ") }
    )
}

/// Levenshtein distance over characters.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != *cb);
            let next = (row[j + 1] + 1).min(row[j] + 1).min(prev + cost);
            prev = row[j + 1];
            row[j + 1] = next;
        }
    }
    row[b.len()]
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
        existing["target"]["id"] = json!("wf-1");
        existing["target"]["workflowTargetSettings"]["dataFormat"] = json!("TopLevelPrimitives");
        assert!(!s.satisfied_by(&existing));
    }

    #[test]
    fn an_update_changes_only_our_fields_and_keeps_the_rest() {
        let s = spec();
        let existing = json!({
            "id": "t-1", "selfUri": "/x", "version": 4, "name": "relay",
            "topicName": s.topic_name, "enabled": false, "description": "by hand",
            "eventTTLSeconds": 30, "futureField": [1],
            "target": {"type": "Workflow", "id": "wf-0", "futureTarget": "x",
                       "workflowTargetSettings": {"dataFormat": "TopLevelPrimitives", "futureSetting": 1}},
        });
        let update = s.update_of(&existing);
        assert_eq!(update["version"], 4);
        assert!(update.get("id").is_none() && update.get("selfUri").is_none());
        assert_eq!(update["enabled"], true);
        assert_eq!(update["description"], "by hand");
        assert_eq!(update["eventTTLSeconds"], 30);
        assert_eq!(update["futureField"], json!([1]));
        assert_eq!(
            update["target"],
            json!({"type": "Workflow", "id": "wf-1", "futureTarget": "x",
                   "workflowTargetSettings": {"dataFormat": "Json", "futureSetting": 1}})
        );
        let mut after = update.clone();
        after["id"] = json!("t-1");
        assert!(s.satisfied_by(&after));
    }

    #[test]
    fn an_unknown_topic_names_the_closest() {
        let known: Vec<String> = [
            "v2.detail.events.conversation.{id}.customer.start",
            "v2.detail.events.conversation.{id}.customer.end",
            "v2.users.{id}.presence",
        ]
        .map(String::from)
        .to_vec();
        let msg =
            unknown_topic_message("v2.detail.events.conversation.{id}.customer.strat", &known);
        assert!(
            msg.contains("closest: v2.detail.events.conversation.{id}.customer.start, v2.detail.events.conversation.{id}.customer.end"),
            "{msg}"
        );
        assert_eq!(edit_distance("kitten", "sitting"), 3);
    }
}
