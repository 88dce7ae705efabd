//! The Sanity HTTP API simulator: the doc and mutate endpoints, answering as the HTTP
//! reference and `@sanity/client` show them.
//!
//! - `GET /v{version}/data/doc/{dataset}/{id[,id...]}`: `{"documents": [...], "omitted":
//!   [{"id", "reason": "existence"}]}`.
//! - `POST /v{version}/data/mutate/{dataset}` `{"mutations": [...], "transactionId"?}`
//!   (`transactionId` also as a query parameter): `create`, `createOrReplace`,
//!   `createIfNotExists`, `patch` (`id`, `ifRevisionID`, `set`, `setIfMissing`, `unset`) and
//!   `delete` (`id`), applied as one transaction: all or nothing. Every touched document's
//!   `_rev` becomes the transaction id. Answer: `{"transactionId", "results": [{"id",
//!   "operation"}]}` (`document` too with `returnDocuments=true`).
//! - Conflicts are 409 `{"error": {"type": "mutationError", "description", "items":
//!   [{"error": {"type", "description", ...}, "index"}]}}`: `documentAlreadyExistsError`
//!   (create of an existing id), `documentRevisionIDDoesNotMatchError` (with
//!   `currentRevisionID`/`expectedRevisionID`). Two answers are this simulator's own
//!   choice, the reference not showing them: a patch of a missing document
//!   (`documentNotFoundError`) and a reused transaction id (409, `error.type`
//!   `transactionAlreadyExistsError`; the reference says only that ids must be unique in the
//!   dataset).
//! - `Authorization: Bearer <token>` required: else 401 `{"statusCode": 401, "error":
//!   "Unauthorized", "message": "Session not found"}`. Another dataset: 404.
//! - Rate limit: at most `mutations_per_second` mutate requests per second (Sanity's
//!   documented per-IP limit is 25); beyond it 429 with `retry-after: 1`.
//!
//! Counting (`GET /__sim/stats`): `mutations_by_relay_event_id` (every mutate request that
//! reached the handler, per `X-Relay-Event-Id`), `writes_by_document` (committed
//! transactions touching each document), `rejected_transactions`, `rate_limited`,
//! `documents`.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Mutex;

use serde_json::{json, Map, Value};
use warp::http::{Method, StatusCode};

use super::clock::{iso8601_ms, now_unix_ms};
use super::exchange::{Reply, SimRequest};
use super::faults::lock;
use super::{Backend, Routed};

/// Options of the Sanity simulator.
#[derive(Clone, Debug)]
pub struct SanitySimOptions {
    pub dataset: String,
    /// The only token accepted.
    pub token: String,
    /// Mutate requests per second before 429 (`None`: unlimited).
    pub mutations_per_second: Option<u64>,
}

impl Default for SanitySimOptions {
    fn default() -> Self {
        SanitySimOptions {
            dataset: "production".into(),
            token: "sim-sanity-token".into(),
            mutations_per_second: Some(25),
        }
    }
}

pub(crate) enum Route {
    Doc(Vec<String>),
    Mutate,
    UnknownDataset,
    BadVersion,
}

#[derive(Default)]
struct Data {
    docs: HashMap<String, Map<String, Value>>,
    transaction_ids: HashSet<String>,
    mutations_by_relay_event_id: HashMap<String, u64>,
    writes_by_document: HashMap<String, u64>,
    rejected_transactions: u64,
    rate_limited: u64,
    window: (u64, u64),
    seq: u64,
}

pub(crate) struct Sanity {
    opts: SanitySimOptions,
    data: Mutex<Data>,
}

/// One failed mutation: its error item.
struct MutationFailure {
    kind: &'static str,
    description: String,
    extra: Map<String, Value>,
}

impl Sanity {
    pub(crate) fn new(opts: SanitySimOptions) -> Self {
        Sanity {
            opts,
            data: Mutex::new(Data::default()),
        }
    }

    fn mutate(&self, data: &mut Data, req: &SimRequest) -> Reply {
        let body = match req.json_body() {
            Ok(Value::Object(body)) => body,
            _ => {
                return Reply::json(
                    StatusCode::BAD_REQUEST,
                    json!({"error": {"description": "Body must be a JSON object", "type": "httpBadRequest"}}),
                )
            }
        };
        let Some(mutations) = body.get("mutations").and_then(Value::as_array) else {
            return Reply::json(
                StatusCode::BAD_REQUEST,
                json!({"error": {"description": "The mutations property must be an array", "type": "httpBadRequest"}}),
            );
        };
        let transaction_id = body
            .get("transactionId")
            .and_then(Value::as_str)
            .map(str::to_string)
            .or_else(|| req.query_param("transactionId"))
            .unwrap_or_else(|| {
                data.seq += 1;
                format!("sim{:016x}{:08x}", now_unix_ms(), data.seq)
            });
        if data.transaction_ids.contains(&transaction_id) {
            data.rejected_transactions += 1;
            return Reply::json(
                StatusCode::CONFLICT,
                json!({"error": {"description": format!("Transaction ID \"{transaction_id}\" already exists"), "type": "transactionAlreadyExistsError"}}),
            );
        }
        // All or nothing: work on a copy of the touched documents.
        let mut staged: HashMap<String, Option<Map<String, Value>>> = HashMap::new();
        let mut results = Vec::new();
        for (index, mutation) in mutations.iter().enumerate() {
            match self.apply(data, &mut staged, mutation, &transaction_id) {
                Ok(result) => results.push(result),
                Err(failure) => {
                    data.rejected_transactions += 1;
                    let mut item_error = failure.extra;
                    item_error.insert("type".into(), json!(failure.kind));
                    item_error.insert("description".into(), json!(failure.description));
                    return Reply::json(
                        StatusCode::CONFLICT,
                        json!({"error": {
                            "type": "mutationError",
                            "description": format!("The mutation(s) failed: {}", failure.description),
                            "items": [{"error": item_error, "index": index}],
                        }}),
                    );
                }
            }
        }
        data.transaction_ids.insert(transaction_id.clone());
        for (id, doc) in staged {
            *data.writes_by_document.entry(id.clone()).or_default() += 1;
            match doc {
                Some(doc) => data.docs.insert(id, doc),
                None => data.docs.remove(&id),
            };
        }
        let return_documents = req.query_param("returnDocuments").as_deref() == Some("true");
        let results: Vec<Value> = results
            .into_iter()
            .map(|(id, operation): (String, &str)| {
                let mut r = json!({"id": id, "operation": operation});
                if return_documents {
                    r["document"] = data
                        .docs
                        .get(&id)
                        .cloned()
                        .map(Value::Object)
                        .unwrap_or(Value::Null);
                }
                r
            })
            .collect();
        Reply::ok(json!({"transactionId": transaction_id, "results": results}))
    }

    fn apply(
        &self,
        data: &Data,
        staged: &mut HashMap<String, Option<Map<String, Value>>>,
        mutation: &Value,
        transaction_id: &str,
    ) -> Result<(String, &'static str), MutationFailure> {
        let current = |staged: &HashMap<String, Option<Map<String, Value>>>,
                       id: &str|
         -> Option<Map<String, Value>> {
            match staged.get(id) {
                Some(doc) => doc.clone(),
                None => data.docs.get(id).cloned(),
            }
        };
        let bad = |description: String| MutationFailure {
            kind: "invalidMutation",
            description,
            extra: Map::new(),
        };
        let Some((op, arg)) = mutation.as_object().and_then(|m| m.iter().next()) else {
            return Err(bad("a mutation must be an object with one operation".into()));
        };
        let now = iso8601_ms(now_unix_ms());
        let stamp = |mut doc: Map<String, Value>, created: Option<&Value>| {
            doc.insert("_rev".into(), json!(transaction_id));
            doc.insert("_updatedAt".into(), json!(now));
            doc.insert(
                "_createdAt".into(),
                created.cloned().unwrap_or_else(|| json!(now)),
            );
            doc
        };
        match op.as_str() {
            "create" | "createOrReplace" | "createIfNotExists" => {
                let Some(doc) = arg.as_object() else {
                    return Err(bad(format!("{op} takes a document")));
                };
                let Some(id) = doc.get("_id").and_then(Value::as_str).map(str::to_string) else {
                    return Err(bad("the document has no _id".into()));
                };
                if !is_document_id(&id) {
                    return Err(bad(format!("Document ID \"{id}\" is not valid")));
                }
                if doc
                    .get("_type")
                    .and_then(Value::as_str)
                    .is_none_or(str::is_empty)
                {
                    return Err(bad("the document has no _type".into()));
                }
                let existing = current(staged, &id);
                match (op.as_str(), &existing) {
                    ("create", Some(_)) => {
                        return Err(MutationFailure {
                            kind: "documentAlreadyExistsError",
                            description: format!("Document by ID \"{id}\" already exists"),
                            extra: Map::from_iter([("id".to_string(), json!(id))]),
                        })
                    }
                    ("createIfNotExists", Some(_)) => return Ok((id, "none")),
                    _ => {}
                }
                let created = existing.as_ref().and_then(|d| d.get("_createdAt"));
                let operation = if existing.is_some() {
                    "update"
                } else {
                    "create"
                };
                staged.insert(id.clone(), Some(stamp(doc.clone(), created)));
                Ok((id, operation))
            }
            "patch" => {
                let Some(patch) = arg.as_object() else {
                    return Err(bad("patch takes an object".into()));
                };
                let Some(id) = patch.get("id").and_then(Value::as_str).map(str::to_string) else {
                    return Err(bad("this simulator patches by id only".into()));
                };
                let Some(mut doc) = current(staged, &id) else {
                    return Err(MutationFailure {
                        kind: "documentNotFoundError",
                        description: format!(
                            "Cannot modify document \"{id}\": document does not exist"
                        ),
                        extra: Map::from_iter([("id".to_string(), json!(id))]),
                    });
                };
                if let Some(expected) = patch.get("ifRevisionID").and_then(Value::as_str) {
                    let current_rev = doc
                        .get("_rev")
                        .and_then(Value::as_str)
                        .unwrap_or("")
                        .to_string();
                    if current_rev != expected {
                        return Err(MutationFailure {
                            kind: "documentRevisionIDDoesNotMatchError",
                            description: format!("Document \"{id}\" has unexpected revision ID (\"{current_rev}\"), expected \"{expected}\""),
                            extra: Map::from_iter([
                                ("id".to_string(), json!(id)),
                                ("currentRevisionID".to_string(), json!(current_rev)),
                                ("expectedRevisionID".to_string(), json!(expected)),
                            ]),
                        });
                    }
                }
                if let Some(Value::Object(set)) = patch.get("setIfMissing") {
                    for (k, v) in set {
                        doc.entry(k.clone()).or_insert_with(|| v.clone());
                    }
                }
                if let Some(Value::Object(set)) = patch.get("set") {
                    for (k, v) in set {
                        if k.starts_with('_') {
                            return Err(bad(format!("cannot set the system attribute {k}")));
                        }
                        doc.insert(k.clone(), v.clone());
                    }
                }
                if let Some(Value::Array(unset)) = patch.get("unset") {
                    for k in unset.iter().filter_map(Value::as_str) {
                        doc.remove(k);
                    }
                }
                let created = doc.get("_createdAt").cloned();
                staged.insert(id.clone(), Some(stamp(doc, created.as_ref())));
                Ok((id, "update"))
            }
            "delete" => {
                let Some(id) = arg.get("id").and_then(Value::as_str).map(str::to_string) else {
                    return Err(bad("delete takes an id".into()));
                };
                let existed = current(staged, &id).is_some();
                staged.insert(id.clone(), None);
                Ok((id, if existed { "delete" } else { "none" }))
            }
            other => Err(bad(format!("unknown mutation type {other}"))),
        }
    }

    fn admit(&self, data: &mut Data) -> bool {
        let Some(limit) = self.opts.mutations_per_second else {
            return true;
        };
        let second = now_unix_ms() / 1000;
        if data.window.0 != second {
            data.window = (second, 0);
        }
        if data.window.1 >= limit {
            data.rate_limited += 1;
            return false;
        }
        data.window.1 += 1;
        true
    }
}

/// Sanity's id rule: `a-zA-Z0-9._-`, and no path segment starting with `-`.
fn is_document_id(id: &str) -> bool {
    !id.is_empty()
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
        && id.split('.').all(|s| !s.is_empty() && !s.starts_with('-'))
}

/// `v1`, `vX` or `vYYYY-MM-DD`.
fn is_api_version(segment: &str) -> bool {
    let Some(v) = segment.strip_prefix('v') else {
        return false;
    };
    v == "1"
        || v == "X"
        || (v.len() == 10
            && v.as_bytes()[4] == b'-'
            && v.as_bytes()[7] == b'-'
            && v.bytes().filter(u8::is_ascii_digit).count() == 8)
}

impl Backend for Sanity {
    type Route = Route;

    fn route(&self, req: &SimRequest) -> Routed<Route> {
        let segs = req.segs();
        let found = |template, route| Routed::Found { template, route };
        match (&req.method, segs.as_slice()) {
            (_, [version, "data", "doc" | "mutate", ..]) if !is_api_version(version) => {
                found("* /{bad version}/data/...", Route::BadVersion)
            }
            (&Method::GET, [_, "data", "doc", dataset, ids]) => {
                if *dataset != self.opts.dataset {
                    return found(
                        "GET /v{version}/data/doc/{other}/{ids}",
                        Route::UnknownDataset,
                    );
                }
                found(
                    "GET /v{version}/data/doc/{dataset}/{ids}",
                    Route::Doc(ids.split(',').map(str::to_string).collect()),
                )
            }
            (_, [_, "data", "doc", _, _]) => Routed::WrongMethod {
                path: "/v{version}/data/doc/{dataset}/{ids}",
            },
            (&Method::POST, [_, "data", "mutate", dataset]) => {
                if *dataset != self.opts.dataset {
                    return found(
                        "POST /v{version}/data/mutate/{other}",
                        Route::UnknownDataset,
                    );
                }
                found("POST /v{version}/data/mutate/{dataset}", Route::Mutate)
            }
            (_, [_, "data", "mutate", _]) => Routed::WrongMethod {
                path: "/v{version}/data/mutate/{dataset}",
            },
            _ => Routed::NotFound,
        }
    }

    fn handle(&self, route: Route, req: &SimRequest) -> Reply {
        let mut data = lock(&self.data);
        if matches!(route, Route::Mutate) {
            if !self.admit(&mut data) {
                return Reply::json(
                    StatusCode::TOO_MANY_REQUESTS,
                    json!({"statusCode": 429, "error": "Too Many Requests", "message": "API rate limit exceeded"}),
                )
                .with_header("retry-after", "1".into());
            }
            let event = req.header("x-relay-event-id").unwrap_or("").to_string();
            *data.mutations_by_relay_event_id.entry(event).or_default() += 1;
        }
        if req.header("authorization") != Some(&format!("Bearer {}", self.opts.token)) {
            return Reply::json(
                StatusCode::UNAUTHORIZED,
                json!({"statusCode": 401, "error": "Unauthorized", "message": "Session not found"}),
            );
        }
        match route {
            Route::BadVersion => Reply::json(
                StatusCode::BAD_REQUEST,
                json!({"error": {"description": "Invalid API version", "type": "httpBadRequest"}}),
            ),
            Route::UnknownDataset => Reply::json(
                StatusCode::NOT_FOUND,
                json!({"error": {"description": "Dataset not found", "type": "httpNotFound"}}),
            ),
            Route::Doc(ids) => {
                let documents: Vec<Value> = ids
                    .iter()
                    .filter_map(|id| data.docs.get(id).cloned().map(Value::Object))
                    .collect();
                let omitted: Vec<Value> = ids
                    .iter()
                    .filter(|id| !data.docs.contains_key(*id))
                    .map(|id| json!({"id": id, "reason": "existence"}))
                    .collect();
                Reply::ok(json!({"documents": documents, "omitted": omitted}))
            }
            Route::Mutate => self.mutate(&mut data, req),
        }
    }

    fn control(&self, _req: &SimRequest) -> Option<Reply> {
        None
    }

    fn stats(&self) -> Map<String, Value> {
        let data = lock(&self.data);
        let counts = |m: &HashMap<String, u64>| -> BTreeMap<String, u64> {
            m.iter().map(|(k, n)| (k.clone(), *n)).collect()
        };
        let docs: BTreeMap<&String, &Map<String, Value>> = data.docs.iter().collect();
        let mut stats = Map::new();
        stats.insert(
            "mutations_by_relay_event_id".into(),
            json!(counts(&data.mutations_by_relay_event_id)),
        );
        stats.insert(
            "writes_by_document".into(),
            json!(counts(&data.writes_by_document)),
        );
        stats.insert(
            "rejected_transactions".into(),
            json!(data.rejected_transactions),
        );
        stats.insert("rate_limited".into(), json!(data.rate_limited));
        stats.insert("documents".into(), json!(docs));
        stats
    }

    fn reset(&self) {
        *lock(&self.data) = Data::default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_and_versions() {
        assert!(is_document_id("guestSession-3f2a"));
        assert!(is_document_id("drafts.abc"));
        assert!(!is_document_id("-abc"));
        assert!(!is_document_id("dog.-abc"));
        assert!(!is_document_id("a/b"));
        assert!(is_api_version("v2025-02-19"));
        assert!(is_api_version("v1"));
        assert!(!is_api_version("vlatest"));
    }
}
