//! Process Automation triggers (`/api/v2/processautomation/triggers`): list with cursor
//! paging, create, get, update, and the topics a trigger may use
//! (`GET /api/v2/processautomation/triggers/topics`); the shapes of the Platform API SDK
//! models `Trigger`, `CreateTriggerRequest`, `UpdateTriggerRequest`, `TriggerTarget`,
//! `WorkflowTargetSettings`, `TriggerEntityListing` and `TopicCursorEntityListing`
//! (platform-client-sdk-python `build/docs/ProcessAutomationApi.md` and models).
//!
//! Paging is by cursor: `pageSize` (at most 200) and `after`/`before`; a listing has
//! `entities`, `selfUri`, and `nextUri` / `previousUri` when there is a page after /
//! before it. The cursor is opaque to clients (here: the offset). Updates must carry the
//! current `version` (else 409) and cannot change `topicName` (else 400). A `topicName`
//! must be one of the topics listing (the SDK: "Valid topics can be found at
//! /processautomation/triggers/topics"), `target.type` is `Workflow` and
//! `target.workflowTargetSettings.dataFormat` one of `Json`, `TopLevelPrimitives` (the
//! SDK's enums); anything else is a 400. Fields the API does not know are stored and
//! returned as sent (the simulator does not drop them, so a client that keeps them is
//! seen keeping them).

use serde_json::{json, Map, Value};
use warp::http::StatusCode;

use super::exchange::{Reply, SimRequest};
use super::topics;

const BASE: &str = "/api/v2/processautomation/triggers";
const TOPICS: &str = "/api/v2/processautomation/triggers/topics";
/// `WorkflowTargetSettings.dataFormat` values (SDK enum).
pub(crate) const DATA_FORMATS: [&str; 2] = ["Json", "TopLevelPrimitives"];
const DEFAULT_PAGE_SIZE: usize = 25;
const MAX_PAGE_SIZE: usize = 200;

/// The stored triggers, in creation order (paging must be stable).
#[derive(Default)]
pub(crate) struct Triggers {
    items: Vec<Value>,
}

impl Triggers {
    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn list(&self, req: &SimRequest) -> Reply {
        cursor_page(req, BASE, &self.items)
    }

    /// `TopicCursorEntityListing`: the topic names (strings) a trigger may use.
    pub fn topics(&self, req: &SimRequest) -> Reply {
        let names: Vec<Value> = topics::patterns().iter().map(|t| json!(t)).collect();
        cursor_page(req, TOPICS, &names)
    }

    /// The enabled triggers on `pattern`-matching topics, in creation order.
    pub fn enabled_for(&self, topic: &str) -> impl Iterator<Item = &Value> {
        let topic = topic.to_string();
        self.items.iter().filter(move |t| {
            t.get("enabled") == Some(&Value::Bool(true))
                && t.get("topicName")
                    .and_then(Value::as_str)
                    .is_some_and(|p| topics::matches(p, &topic))
        })
    }

    pub fn get(&self, id: &str) -> Reply {
        match self.find(id) {
            Some(i) => Reply::ok(self.items[i].clone()),
            None => Reply::not_found(&format!("trigger {id} not found")),
        }
    }

    pub fn create(&mut self, req: &SimRequest, id: String) -> Reply {
        let mut body = match trigger_body(req, false) {
            Ok(body) => body,
            Err(reply) => return reply,
        };
        body.insert("id".into(), json!(id));
        body.insert("version".into(), json!(1));
        body.insert("selfUri".into(), json!(format!("{BASE}/{id}")));
        let stored = Value::Object(body);
        self.items.push(stored.clone());
        Reply::ok(stored)
    }

    pub fn update(&mut self, id: &str, req: &SimRequest) -> Reply {
        let Some(i) = self.find(id) else {
            return Reply::not_found(&format!("trigger {id} not found"));
        };
        let mut body = match trigger_body(req, true) {
            Ok(body) => body,
            Err(reply) => return reply,
        };
        let current = &self.items[i];
        if body.get("version") != current.get("version") {
            return Reply::genesys_error(
                StatusCode::CONFLICT,
                "conflict",
                "version does not match the trigger's current version",
            );
        }
        if body.get("topicName") != current.get("topicName") {
            return Reply::bad_request("topicName cannot be changed");
        }
        let version = current.get("version").and_then(Value::as_u64).unwrap_or(1);
        body.insert("id".into(), json!(id));
        body.insert("version".into(), json!(version + 1));
        body.insert("selfUri".into(), json!(format!("{BASE}/{id}")));
        self.items[i] = Value::Object(body);
        Reply::ok(self.items[i].clone())
    }

    fn find(&self, id: &str) -> Option<usize> {
        self.items
            .iter()
            .position(|t| t.get("id").and_then(Value::as_str) == Some(id))
    }
}

/// One page of `items` by cursor (`pageSize`, `after`, `before`), with `selfUri`, `nextUri`
/// and `previousUri` relative to `base`.
fn cursor_page(req: &SimRequest, base: &str, items: &[Value]) -> Reply {
    let page_size = match req.query_param("pageSize") {
        None => DEFAULT_PAGE_SIZE,
        Some(raw) => match raw.parse::<usize>() {
            Ok(n) if (1..=MAX_PAGE_SIZE).contains(&n) => n,
            _ => return Reply::bad_request("pageSize must be between 1 and 200"),
        },
    };
    let cursor = |name: &str| -> Result<Option<usize>, Reply> {
        match req.query_param(name) {
            None => Ok(None),
            Some(raw) => raw
                .strip_prefix('c')
                .and_then(|n| n.parse::<usize>().ok())
                .map(Some)
                .ok_or_else(|| Reply::bad_request(&format!("invalid {name} cursor"))),
        }
    };
    let start = match (cursor("after"), cursor("before")) {
        (Err(reply), _) | (_, Err(reply)) => return reply,
        (Ok(Some(after)), _) => after,
        (Ok(None), Ok(Some(before))) => before.saturating_sub(page_size),
        (Ok(None), Ok(None)) => 0,
    };
    let end = start.saturating_add(page_size).min(items.len());
    let entities: Vec<&Value> = items.iter().skip(start).take(page_size).collect();
    let uri = |cursor: &str, at: usize| format!("{base}?pageSize={page_size}&{cursor}=c{at}");
    let mut listing = Map::new();
    listing.insert("entities".into(), json!(entities));
    listing.insert("selfUri".into(), json!(uri("after", start)));
    if end < items.len() {
        listing.insert("nextUri".into(), json!(uri("after", end)));
    }
    if start > 0 {
        listing.insert("previousUri".into(), json!(uri("before", start)));
    }
    Reply::ok(Value::Object(listing))
}

/// Validates a create (or, with `update`, an update) body: required `name`, `topicName`,
/// `enabled` (boolean) and `target` `{type, id}`; `matchCriteria` an array of
/// `{jsonPath, operator, value | values}`; `version` (integer) on updates; at most one of
/// `eventTTLSeconds` and `delayBySeconds`.
fn trigger_body(req: &SimRequest, update: bool) -> Result<Map<String, Value>, Reply> {
    let Value::Object(body) = req.json_body()? else {
        return Err(Reply::bad_request("expected a JSON object"));
    };
    let non_empty = |k: &str| {
        body.get(k)
            .and_then(Value::as_str)
            .is_some_and(|s| !s.is_empty())
    };
    for field in ["name", "topicName"] {
        if !non_empty(field) {
            return Err(Reply::bad_request(&format!("{field} is required")));
        }
    }
    if !body.get("enabled").is_some_and(Value::is_boolean) {
        return Err(Reply::bad_request("enabled (a boolean) is required"));
    }
    let target_ok = body.get("target").is_some_and(|t| {
        t.get("type")
            .and_then(Value::as_str)
            .is_some_and(|s| !s.is_empty())
            && t.get("id")
                .and_then(Value::as_str)
                .is_some_and(|s| !s.is_empty())
    });
    if !target_ok {
        return Err(Reply::bad_request("target {type, id} is required"));
    }
    let topic = body.get("topicName").and_then(Value::as_str).unwrap_or("");
    if !topics::is_pattern(topic) {
        return Err(Reply::bad_request(&format!(
            "topicName {topic} is not a valid topic; valid topics are listed at {TOPICS}"
        )));
    }
    let target = body.get("target").cloned().unwrap_or_default();
    if target.get("type").and_then(Value::as_str) != Some("Workflow") {
        return Err(Reply::bad_request("target.type must be Workflow"));
    }
    if let Some(settings) = target.get("workflowTargetSettings") {
        let format = settings.get("dataFormat");
        let ok = settings.is_object()
            && format.is_none_or(|f| f.as_str().is_some_and(|f| DATA_FORMATS.contains(&f)));
        if !ok {
            return Err(Reply::bad_request(
                "target.workflowTargetSettings.dataFormat must be Json or TopLevelPrimitives",
            ));
        }
    }
    if let Some(criteria) = body.get("matchCriteria") {
        let ok = criteria.as_array().is_some_and(|all| {
            all.iter().all(|c| {
                c.get("jsonPath").is_some_and(Value::is_string)
                    && c.get("operator").is_some_and(Value::is_string)
                    && (c.get("value").is_some() != c.get("values").is_some())
            })
        });
        if !ok {
            return Err(Reply::bad_request(
                "matchCriteria must be an array of {jsonPath, operator, value | values}",
            ));
        }
    }
    if body.contains_key("eventTTLSeconds") && body.contains_key("delayBySeconds") {
        return Err(Reply::bad_request(
            "only one of eventTTLSeconds or delayBySeconds can be set",
        ));
    }
    if update && !body.get("version").is_some_and(Value::is_u64) {
        return Err(Reply::bad_request("version (an integer) is required"));
    }
    Ok(body)
}
