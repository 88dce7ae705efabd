//! What happens when a Process Automation trigger fires: the workflow it targets is
//! started with the event in the trigger's data format, and that workflow is the one
//! docs/connecting.md's recipe builds (a Web Services Data Action that POSTs the event to
//! the relay). The simulator records every invocation and, when a test registered a Data
//! Action URL for the workflow, sends the POST the action would send.
//!
//! Invariant: the workflow's inputs follow `target.workflowTargetSettings.dataFormat`
//! exactly as Genesys documents it (Resource Center, "Create a trigger"): `Json` sends
//! "the entire event ... as a JSON object" in the input `jsonData`; `TopLevelPrimitives`
//! (also what a trigger without the setting gets: "Overview of triggers" says the input
//! parameters "are top-level primitive fields, such as strings, enums, numbers, and
//! Boolean") sends only the event body's top-level primitive fields, so `Flow.jsonData`
//! is NOT_SET and the recipe's `ToString(Flow.jsonData)` has nothing to send.
//!
//! Simulator choices (not documented by Genesys): a workflow whose expression reads a
//! NOT_SET `Flow.jsonData` fails before its Data Action (recorded with the reason, no
//! POST); match criteria are evaluated for simple paths (`$.a.b`) only, a filter
//! expression never matches (counted `criteria_unsupported`).

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Map, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Invocations kept for `GET /__sim/workflows/invocations` (oldest dropped first).
const KEEP: usize = 1000;
/// How long a Data Action POST may take (Genesys' own limit for actions is not modelled).
const POST_TIMEOUT: Duration = Duration::from_secs(10);

/// Where a workflow's Data Action sends its request (`PUT /__sim/workflows/{id}`).
#[derive(Clone, Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct DataActionSetup {
    /// `http://host:port/path` (plain HTTP: tests and the local stack only).
    pub url: String,
    #[serde(default)]
    pub headers: HashMap<String, String>,
}

/// Counters of Data Action POSTs, shared with the tasks that send them.
#[derive(Default)]
pub(crate) struct PostCounts {
    pub sent_2xx: AtomicU64,
    pub sent_other: AtomicU64,
    pub failed: AtomicU64,
}

#[derive(Default)]
pub(crate) struct Workflows {
    invocations: VecDeque<Value>,
    setups: HashMap<String, DataActionSetup>,
    pub started: u64,
    pub criteria_unsupported: u64,
    pub posts: Arc<PostCounts>,
}

impl Workflows {
    pub fn set_up(&mut self, workflow_id: &str, setup: DataActionSetup) {
        self.setups.insert(workflow_id.to_string(), setup);
    }

    pub fn invocations(&self) -> Value {
        json!({ "entities": self.invocations })
    }

    /// Starts the workflow of every trigger in `triggers` whose criteria match
    /// `notification` (`{topicName, eventBody, ...}`); returns how many started.
    pub fn fire<'a>(
        &mut self,
        triggers: impl Iterator<Item = &'a Value>,
        notification: &Value,
    ) -> usize {
        let topic = notification["topicName"].as_str().unwrap_or_default();
        let body = &notification["eventBody"];
        let mut started = 0;
        for trigger in triggers {
            match criteria_match(trigger, body) {
                Some(true) => {}
                Some(false) => continue,
                None => {
                    self.criteria_unsupported += 1;
                    continue;
                }
            }
            let invocation = self.invoke(trigger, topic, body);
            started += 1;
            self.started += 1;
            if self.invocations.len() == KEEP {
                self.invocations.pop_front();
            }
            self.invocations.push_back(invocation);
        }
        started
    }

    fn invoke(&self, trigger: &Value, topic: &str, body: &Value) -> Value {
        let workflow_id = trigger
            .pointer("/target/id")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let format = trigger
            .pointer("/target/workflowTargetSettings/dataFormat")
            .and_then(Value::as_str)
            .unwrap_or("TopLevelPrimitives");
        let inputs = workflow_inputs(format, body);
        let mut invocation = json!({
            "triggerId": trigger["id"],
            "workflowId": workflow_id,
            "topicName": topic,
            "dataFormat": format,
            "inputs": inputs,
        });
        match recipe_request(trigger, &inputs) {
            Ok(request) => {
                if let Some(setup) = self.setups.get(workflow_id) {
                    tokio::spawn(post(
                        setup.clone(),
                        request.to_string(),
                        Arc::clone(&self.posts),
                    ));
                }
                invocation["dataAction"] = json!({ "body": request });
            }
            Err(error) => invocation["dataAction"] = json!({ "error": error }),
        }
        invocation
    }
}

/// The workflow's inputs for a data format.
fn workflow_inputs(format: &str, body: &Value) -> Value {
    if format == "Json" {
        return json!({ "jsonData": body });
    }
    let primitives: Map<String, Value> = body
        .as_object()
        .map(|fields| {
            fields
                .iter()
                .filter(|(_, v)| v.is_string() || v.is_number() || v.is_boolean())
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect()
        })
        .unwrap_or_default();
    Value::Object(primitives)
}

/// The request docs/connecting.md's Data Action sends: `topicName` (the trigger's topic
/// with `{id}` replaced by `Flow.jsonData.conversationId` when the event has one),
/// `version` "2" and `eventBody` = `ToString(Flow.jsonData)` inserted as JSON.
fn recipe_request(trigger: &Value, inputs: &Value) -> Result<Value, String> {
    let Some(json_data) = inputs.get("jsonData") else {
        return Err(
            "Flow.jsonData is NOT_SET: the trigger sent TopLevelPrimitives, so the recipe's ToString(Flow.jsonData) fails"
                .into(),
        );
    };
    let pattern = trigger["topicName"].as_str().unwrap_or_default();
    let topic = match json_data.get("conversationId").and_then(Value::as_str) {
        Some(id) => pattern.replace("{id}", id),
        None => pattern.to_string(),
    };
    Ok(json!({"topicName": topic, "version": "2", "eventBody": json_data}))
}

/// Whether every `matchCriteria` entry holds for `body`; `None` when one cannot be
/// evaluated here (a filter expression).
fn criteria_match(trigger: &Value, body: &Value) -> Option<bool> {
    let Some(criteria) = trigger.get("matchCriteria").and_then(Value::as_array) else {
        return Some(true);
    };
    for c in criteria {
        let path = c["jsonPath"].as_str().unwrap_or_default();
        let found = lookup(body, path)?;
        let want = |v: &Value| -> Value {
            // The UI takes string and array values as JSON text ("String and array - JSON
            // input"); a string that parses as JSON is compared as what it parses to too.
            v.as_str()
                .and_then(|s| serde_json::from_str::<Value>(s).ok())
                .unwrap_or_else(|| v.clone())
        };
        let eq = |a: Option<&Value>, v: &Value| a.is_some_and(|a| a == v || *a == want(v));
        let num = |a: Option<&Value>, v: &Value, f: fn(f64, f64) -> bool| {
            a.and_then(Value::as_f64)
                .zip(want(v).as_f64())
                .is_some_and(|(a, b)| f(a, b))
        };
        let value = &c["value"];
        let values = c["values"].as_array().cloned().unwrap_or_default();
        let holds = match c["operator"].as_str().unwrap_or_default() {
            "Equal" => eq(found, value),
            "NotEqual" => !eq(found, value),
            "In" => values.iter().any(|v| eq(found, v)),
            "NotIn" => !values.iter().any(|v| eq(found, v)),
            "Exists" => found.is_some() == want(value).as_bool().unwrap_or(true),
            "GreaterThan" => num(found, value, |a, b| a > b),
            "GreaterThanOrEqual" => num(found, value, |a, b| a >= b),
            "LessThan" => num(found, value, |a, b| a < b),
            "LessThanOrEqual" => num(found, value, |a, b| a <= b),
            "Contains" => match found {
                Some(Value::String(s)) => want(value).as_str().is_some_and(|v| s.contains(v)),
                Some(Value::Array(items)) => items.iter().any(|i| eq(Some(i), value)),
                _ => false,
            },
            _ => return None,
        };
        if !holds {
            return Some(false);
        }
    }
    Some(true)
}

/// `$.a.b` / `a.b` in `body`: `Some(None)` when absent, `None` when the path is more than
/// plain field names.
fn lookup<'a>(body: &'a Value, path: &str) -> Option<Option<&'a Value>> {
    let path = path.strip_prefix('$').unwrap_or(path);
    let path = path.strip_prefix('.').unwrap_or(path);
    if path.contains(['[', ']', '?', '*', '@', '(']) {
        return None;
    }
    let mut at = body;
    for key in path.split('.').filter(|k| !k.is_empty()) {
        match at.get(key) {
            Some(next) => at = next,
            None => return Some(None),
        }
    }
    Some(Some(at))
}

/// Sends one Data Action POST over plain HTTP/1.1 and counts the outcome.
async fn post(setup: DataActionSetup, body: String, counts: Arc<PostCounts>) {
    let outcome = tokio::time::timeout(POST_TIMEOUT, send(&setup, &body)).await;
    let counter = match outcome {
        Ok(Ok(status)) if (200..300).contains(&status) => &counts.sent_2xx,
        Ok(Ok(_)) => &counts.sent_other,
        Ok(Err(_)) | Err(_) => &counts.failed,
    };
    counter.fetch_add(1, Ordering::Relaxed);
}

async fn send(setup: &DataActionSetup, body: &str) -> std::io::Result<u16> {
    let invalid = || std::io::Error::new(std::io::ErrorKind::InvalidInput, "not an http:// URL");
    let rest = setup.url.strip_prefix("http://").ok_or_else(invalid)?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let mut stream = tokio::net::TcpStream::connect(authority).await?;
    let mut head = format!(
        "POST {path} HTTP/1.1\r\nhost: {authority}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n",
        body.len()
    );
    for (name, value) in &setup.headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(body.as_bytes()).await?;
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).await?;
    let status = String::from_utf8_lossy(&answer)
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::InvalidData, "no status line"))?;
    Ok(status)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn trigger(format: Option<&str>, criteria: Value) -> Value {
        let mut t = json!({
            "id": "t-1",
            "topicName": "v2.detail.events.conversation.{id}.attributes",
            "enabled": true,
            "target": {"type": "Workflow", "id": "wf-1"},
            "matchCriteria": criteria,
        });
        if let Some(f) = format {
            t["target"]["workflowTargetSettings"] = json!({ "dataFormat": f });
        }
        t
    }

    fn event() -> Value {
        json!({
            "topicName": "v2.detail.events.conversation.c-1.attributes",
            "eventBody": {"conversationId": "c-1", "eventTime": 5, "attributes": {"a": "1"}},
        })
    }

    #[test]
    fn json_gives_the_whole_event_and_primitives_give_no_json_data() {
        let mut w = Workflows::default();
        let json_t = trigger(Some("Json"), json!([]));
        let default_t = trigger(None, json!([]));
        assert_eq!(w.fire([&json_t, &default_t].into_iter(), &event()), 2);
        let all = w.invocations();
        let json_inv = &all["entities"][0];
        assert_eq!(json_inv["inputs"]["jsonData"], event()["eventBody"]);
        assert_eq!(
            json_inv["dataAction"]["body"]["topicName"],
            "v2.detail.events.conversation.c-1.attributes"
        );
        let prim = &all["entities"][1];
        assert_eq!(prim["dataFormat"], "TopLevelPrimitives");
        assert_eq!(
            prim["inputs"],
            json!({"conversationId": "c-1", "eventTime": 5})
        );
        assert!(prim["dataAction"]["error"].is_string());
    }

    #[test]
    fn criteria_filter_and_filters_are_unsupported() {
        let mut w = Workflows::default();
        let yes = trigger(
            Some("Json"),
            json!([{"jsonPath": "$.conversationId", "operator": "Equal", "value": "c-1"}]),
        );
        let no = trigger(
            Some("Json"),
            json!([{"jsonPath": "$.conversationId", "operator": "Equal", "value": "\"c-2\""}]),
        );
        let filter = trigger(
            Some("Json"),
            json!([{"jsonPath": "participants[?(@.purpose=='customer')]", "operator": "Exists", "value": true}]),
        );
        assert_eq!(w.fire([&yes, &no, &filter].into_iter(), &event()), 1);
        assert_eq!(w.criteria_unsupported, 1);
    }
}
