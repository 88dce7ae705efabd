//! The headless-CMS simulator: an entries API and a generic events endpoint, both
//! honouring `X-Idempotency-Key`, plus the bookkeeping a test needs to prove that
//! nothing was lost and nothing was synced twice.
//!
//! Idempotency: the first *accepted* write (201/200/202) with a key stores its reply;
//! any later write with that key, to any write route, gets the same status and body
//! back (plus `Idempotent-Replayed: true`) and changes nothing. Rejected writes (400,
//! 404, 409) do not remember the key. Writes without a key (or with an empty one) are
//! never replayed and are counted under the key `""`, so a test can see a relay that
//! forgot to send it. `Authorization` is accepted whatever it holds.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use serde::Serialize;
use serde_json::{json, Map, Value};
use warp::http::{Method, StatusCode};

use super::clock::{iso8601_ms, now_unix_ms};
use super::exchange::{Reply, SimRequest};
use super::faults::lock;
use super::{Backend, Routed};

/// The writes log keeps at most this many records (a long benchmark would otherwise
/// grow it without bound); later writes are still counted in `writes_dropped`.
const MAX_WRITES_LOGGED: usize = 200_000;

pub(crate) enum Route {
    CreateEntry,
    UpdateEntry(String),
    GetEntry(String),
    Event,
}

struct Entry {
    kind: String,
    fields: Map<String, Value>,
    /// 1 on create, +1 on every accepted PUT.
    version: u64,
    created_at: String,
    updated_at: String,
}

impl Entry {
    fn to_json(&self, id: &str) -> Value {
        json!({
            "id": id,
            "type": self.kind,
            "fields": self.fields,
            "version": self.version,
            "createdAt": self.created_at,
            "updatedAt": self.updated_at,
        })
    }
}

/// One accepted write, in the order the server accepted them.
#[derive(Serialize)]
struct WriteRecord {
    method: &'static str,
    path: String,
    key: String,
    entry_id: Option<String>,
    at_ms: u64,
}

#[derive(Default)]
struct Data {
    entries: HashMap<String, Entry>,
    /// Idempotency key -> the reply of the first accepted write with it.
    replies: HashMap<String, Reply>,
    syncs_by_key: HashMap<String, u64>,
    events_received: u64,
    writes: Vec<WriteRecord>,
    writes_dropped: u64,
}

/// What an accepted write did: the reply to send and remember, and the entry it touched.
struct Accepted {
    reply: Reply,
    entry_id: Option<String>,
}

#[derive(Default)]
pub(crate) struct Cms {
    data: Mutex<Data>,
}

impl Cms {
    /// The shared write path: replay check, then `apply`, then the counting.
    fn write(
        &self,
        req: &SimRequest,
        method: &'static str,
        apply: impl FnOnce(&mut Data, Value) -> Result<Accepted, Reply>,
    ) -> Reply {
        let key = req.header("x-idempotency-key").unwrap_or("").to_string();
        // Parse before taking the lock; the error only matters if this is no replay.
        let body = req.json_body();
        let mut data = lock(&self.data);
        if !key.is_empty() {
            if let Some(first) = data.replies.get(&key) {
                return first
                    .clone()
                    .with_header("idempotent-replayed", "true".into());
            }
        }
        let accepted = match body.and_then(|body| apply(&mut data, body)) {
            Ok(accepted) => accepted,
            Err(reply) => return reply,
        };
        if !key.is_empty() {
            data.replies.insert(key.clone(), accepted.reply.clone());
        }
        *data.syncs_by_key.entry(key.clone()).or_default() += 1;
        if data.writes.len() < MAX_WRITES_LOGGED {
            data.writes.push(WriteRecord {
                method,
                path: req.path.clone(),
                key,
                entry_id: accepted.entry_id,
                at_ms: now_unix_ms(),
            });
        } else {
            data.writes_dropped += 1;
        }
        accepted.reply
    }
}

/// `POST /v1/entries`: `{"id", "type", "fields": {...}}`; 409 when the id exists.
fn create_entry(data: &mut Data, body: Value) -> Result<Accepted, Reply> {
    let Value::Object(mut body) = body else {
        return Err(cms_error(StatusCode::BAD_REQUEST, "expected a JSON object"));
    };
    let id = match body.get("id").and_then(Value::as_str) {
        Some(id) if !id.is_empty() => id.to_string(),
        _ => {
            return Err(cms_error(
                StatusCode::BAD_REQUEST,
                "id (a non-empty string) is required",
            ))
        }
    };
    let Some(Value::String(kind)) = body.remove("type") else {
        return Err(cms_error(
            StatusCode::BAD_REQUEST,
            "type (a string) is required",
        ));
    };
    let Some(Value::Object(fields)) = body.remove("fields") else {
        return Err(cms_error(
            StatusCode::BAD_REQUEST,
            "fields (an object) is required",
        ));
    };
    if data.entries.contains_key(&id) {
        return Err(Reply::json(
            StatusCode::CONFLICT,
            json!({"error": "conflict", "id": id}),
        ));
    }
    let now = iso8601_ms(now_unix_ms());
    let entry = Entry {
        kind,
        fields,
        version: 1,
        created_at: now.clone(),
        updated_at: now,
    };
    let reply = Reply::json(StatusCode::CREATED, entry.to_json(&id));
    data.entries.insert(id.clone(), entry);
    Ok(Accepted {
        reply,
        entry_id: Some(id),
    })
}

/// `PUT /v1/entries/{id}`: `{"fields": {...}}` (optionally `type`, and `id` if it
/// matches the path). The fields *replace* the stored ones: PUT semantics, so a
/// field the relay stopped sending disappears.
fn update_entry(data: &mut Data, id: &str, body: Value) -> Result<Accepted, Reply> {
    let Value::Object(mut body) = body else {
        return Err(cms_error(StatusCode::BAD_REQUEST, "expected a JSON object"));
    };
    if body
        .get("id")
        .is_some_and(|body_id| body_id.as_str() != Some(id))
    {
        return Err(cms_error(
            StatusCode::BAD_REQUEST,
            "id in the body does not match the path",
        ));
    }
    let kind = match body.remove("type") {
        None => None,
        Some(Value::String(kind)) => Some(kind),
        Some(_) => return Err(cms_error(StatusCode::BAD_REQUEST, "type must be a string")),
    };
    let Some(Value::Object(fields)) = body.remove("fields") else {
        return Err(cms_error(
            StatusCode::BAD_REQUEST,
            "fields (an object) is required",
        ));
    };
    let Some(entry) = data.entries.get_mut(id) else {
        return Err(Reply::json(
            StatusCode::NOT_FOUND,
            json!({"error": "not_found", "id": id}),
        ));
    };
    entry.fields = fields;
    if let Some(kind) = kind {
        entry.kind = kind;
    }
    entry.version += 1;
    entry.updated_at = iso8601_ms(now_unix_ms());
    Ok(Accepted {
        reply: Reply::ok(entry.to_json(id)),
        entry_id: Some(id.to_string()),
    })
}

/// `POST /v1/events`: any JSON. The logged `entry_id` is the body's `eventId` (or
/// `id`) when it is a string, so tests can check per-event order here too.
fn receive_event(data: &mut Data, body: Value) -> Result<Accepted, Reply> {
    data.events_received += 1;
    let entry_id = ["eventId", "id"]
        .iter()
        .find_map(|k| body.get(k).and_then(Value::as_str))
        .map(str::to_string);
    Ok(Accepted {
        reply: Reply::json(
            StatusCode::ACCEPTED,
            json!({"status": "accepted", "seq": data.events_received}),
        ),
        entry_id,
    })
}

fn cms_error(status: StatusCode, message: &str) -> Reply {
    let error = if status == StatusCode::BAD_REQUEST {
        "bad_request"
    } else {
        "error"
    };
    Reply::json(status, json!({"error": error, "message": message}))
}

impl Backend for Cms {
    type Route = Route;

    fn route(&self, req: &SimRequest) -> Routed<Route> {
        let segs = req.segs();
        let found = |template, route| Routed::Found { template, route };
        match (&req.method, segs.as_slice()) {
            (&Method::POST, ["v1", "entries"]) => found("POST /v1/entries", Route::CreateEntry),
            (_, ["v1", "entries"]) => Routed::WrongMethod {
                path: "/v1/entries",
            },
            (&Method::GET, ["v1", "entries", id]) if !id.is_empty() => {
                found("GET /v1/entries/{id}", Route::GetEntry(id.to_string()))
            }
            (&Method::PUT, ["v1", "entries", id]) if !id.is_empty() => {
                found("PUT /v1/entries/{id}", Route::UpdateEntry(id.to_string()))
            }
            (_, ["v1", "entries", id]) if !id.is_empty() => Routed::WrongMethod {
                path: "/v1/entries/{id}",
            },
            (&Method::POST, ["v1", "events"]) => found("POST /v1/events", Route::Event),
            (_, ["v1", "events"]) => Routed::WrongMethod { path: "/v1/events" },
            _ => Routed::NotFound,
        }
    }

    fn handle(&self, route: Route, req: &SimRequest) -> Reply {
        match route {
            Route::CreateEntry => self.write(req, "POST", create_entry),
            Route::UpdateEntry(id) => {
                self.write(req, "PUT", |data, body| update_entry(data, &id, body))
            }
            Route::Event => self.write(req, "POST", receive_event),
            Route::GetEntry(id) => match lock(&self.data).entries.get(&id) {
                Some(entry) => Reply::ok(entry.to_json(&id)),
                None => Reply::json(
                    StatusCode::NOT_FOUND,
                    json!({"error": "not_found", "id": id}),
                ),
            },
        }
    }

    fn control(&self, _req: &SimRequest) -> Option<Reply> {
        None
    }

    fn stats(&self) -> Map<String, Value> {
        let data = lock(&self.data);
        let syncs: BTreeMap<&String, u64> =
            data.syncs_by_key.iter().map(|(k, n)| (k, *n)).collect();
        let entries: BTreeMap<&String, &Map<String, Value>> =
            data.entries.iter().map(|(id, e)| (id, &e.fields)).collect();
        let mut stats = Map::new();
        stats.insert("syncs_by_key".into(), json!(syncs));
        stats.insert("entries".into(), json!(entries));
        stats.insert("events_received".into(), json!(data.events_received));
        stats.insert("writes".into(), json!(data.writes));
        stats.insert("writes_dropped".into(), json!(data.writes_dropped));
        stats
    }

    fn reset(&self) {
        *lock(&self.data) = Data::default();
    }
}
