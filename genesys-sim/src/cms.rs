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
//!
//! Counting, so a checker can fail: it counts what the client *sent* and what it was
//! *answered*, not only what was stored.
//! - `writes_by_key`: every write request per key, counted on arrival: also those
//!   answered with an injected fault, and those whose client gave up during `latency_ms`.
//! - `redundant_by_key`: writes of a key that arrived after an earlier write of that key
//!   had been answered 2xx (applied or replayed) to the client: sends the client should
//!   not have made. A retry after a failed answer (error status, reset, no answer) is not
//!   one, even when that write had been applied. `redundant_writes` lists them with
//!   their arrival time (Unix ms); `first_ok_at_by_key` says when each key was first
//!   answered 2xx (Unix ms).
//! - `answers_by_key`: per key, in order, how each write was answered: `applied`,
//!   `replayed`, `rejected:<status>`, `injected:<status>` (a fault before the handler),
//!   `applied_then:<failure>` / `replayed_then:<failure>` (`apply_then_fail_rate`:
//!   stored, then `status`, `reset` or `no_answer`); `apply_then_fail_by_key` lists the
//!   failures alone. Writes whose client gave up during the latency have no answer.
//! - `syncs_by_key`: accepted writes per key (a replay is not one); `attempts_by_key`:
//!   write requests per key that reached the handler (accepted, replayed or rejected);
//!   `replays_by_key`: the ones answered from a stored reply, also when that answer was
//!   then failed; `events_by_relay_event_id`: every `POST /v1/events` (the forward
//!   backend) that reached the handler, per `X-Relay-Event-Id`, replays included.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::sync::{Arc, Mutex};

use serde::Serialize;
use serde_json::{json, Map, Value};
use warp::http::{Method, StatusCode};

use super::clock::{iso8601_ms, now_unix_ms};
use super::exchange::Delivery;
use super::exchange::{Reply, SimRequest};
use super::faults::{injected, lock, AnswerFailure, Faults};
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

/// A write of a key already answered 2xx, when it arrived: lets a test attribute it to
/// the fault (a killed worker) that preceded it.
#[derive(Serialize)]
struct RedundantWrite {
    key: String,
    at_ms: u64,
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

/// How one write request was answered (`answers_by_key`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Answer {
    /// Stored, answered 2xx.
    Applied,
    /// Answered 2xx from the stored reply of an earlier write with the key.
    Replayed,
    /// Refused by the handler (400, 404, 409): nothing stored.
    Rejected(StatusCode),
    /// A fault answered before the handler: nothing stored.
    Injected(StatusCode),
    /// Stored, then the answer failed.
    AppliedThen(AnswerFailure),
    /// Answered from the stored reply, then the answer failed.
    ReplayedThen(AnswerFailure),
}

impl fmt::Display for Answer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let failure = |failure: &AnswerFailure| match failure {
            AnswerFailure::Status => "status",
            AnswerFailure::Reset => "reset",
            AnswerFailure::NoAnswer => "no_answer",
        };
        match self {
            Answer::Applied => f.write_str("applied"),
            Answer::Replayed => f.write_str("replayed"),
            Answer::Rejected(status) => write!(f, "rejected:{}", status.as_u16()),
            Answer::Injected(status) => write!(f, "injected:{}", status.as_u16()),
            Answer::AppliedThen(x) => write!(f, "applied_then:{}", failure(x)),
            Answer::ReplayedThen(x) => write!(f, "replayed_then:{}", failure(x)),
        }
    }
}

impl Serialize for Answer {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

#[derive(Default)]
struct Data {
    entries: HashMap<String, Entry>,
    /// Idempotency key -> the reply of the first accepted write with it.
    replies: HashMap<String, Reply>,
    syncs_by_key: HashMap<String, u64>,
    /// Every write request per idempotency key, replays and rejections included.
    attempts_by_key: HashMap<String, u64>,
    /// Write requests answered from a stored reply, per idempotency key.
    replays_by_key: HashMap<String, u64>,
    /// Every `POST /v1/events` per `X-Relay-Event-Id` (`""` when absent), replays included.
    events_by_relay_event_id: HashMap<String, u64>,
    /// Every write request per key, on arrival.
    writes_by_key: HashMap<String, u64>,
    /// Keys with a write answered 2xx to the client.
    answered_ok: HashSet<String>,
    /// When each key was first answered 2xx (Unix ms).
    first_ok_at: HashMap<String, u64>,
    /// Writes that arrived after a write of their key had been answered 2xx.
    redundant_by_key: HashMap<String, u64>,
    /// The same writes in arrival order, with their time (bounded like `writes`).
    redundant_writes: Vec<RedundantWrite>,
    answers_by_key: HashMap<String, Vec<Answer>>,
    apply_then_fail_by_key: HashMap<String, Vec<AnswerFailure>>,
    events_received: u64,
    writes: Vec<WriteRecord>,
    writes_dropped: u64,
}

/// What an accepted write did: the reply to send and remember, and the entry it touched.
struct Accepted {
    reply: Reply,
    entry_id: Option<String>,
}

pub(crate) struct Cms {
    data: Mutex<Data>,
    /// Shared with the request pipeline: `apply_then_fail_rate` is decided here, after
    /// the write.
    faults: Arc<Faults>,
}

fn is_write(route: &Route) -> bool {
    !matches!(route, Route::GetEntry(_))
}

fn idempotency_key(req: &SimRequest) -> String {
    req.header("x-idempotency-key").unwrap_or("").to_string()
}

impl Cms {
    pub fn new(faults: Arc<Faults>) -> Self {
        Cms {
            data: Mutex::default(),
            faults,
        }
    }

    /// The shared write path: replay check, then `apply`, then the counting.
    fn write(
        &self,
        req: &SimRequest,
        method: &'static str,
        apply: impl FnOnce(&mut Data, Value) -> Result<Accepted, Reply>,
    ) -> Reply {
        let key = idempotency_key(req);
        // Parse before taking the lock; the error only matters if this is no replay.
        let body = req.json_body();
        let mut data = lock(&self.data);
        *data.attempts_by_key.entry(key.clone()).or_default() += 1;
        if req.path == "/v1/events" {
            let event_id = req.header("x-relay-event-id").unwrap_or("").to_string();
            *data.events_by_relay_event_id.entry(event_id).or_default() += 1;
        }
        if !key.is_empty() {
            if let Some(first) = data.replies.get(&key).cloned() {
                *data.replays_by_key.entry(key.clone()).or_default() += 1;
                let reply = first.with_header("idempotent-replayed", "true".into());
                return self.answer(&mut data, key, reply, false);
            }
        }
        let accepted = match body.and_then(|body| apply(&mut data, body)) {
            Ok(accepted) => accepted,
            Err(reply) => {
                let answer = Answer::Rejected(reply.status);
                data.answers_by_key.entry(key).or_default().push(answer);
                return reply;
            }
        };
        if !key.is_empty() {
            data.replies.insert(key.clone(), accepted.reply.clone());
        }
        *data.syncs_by_key.entry(key.clone()).or_default() += 1;
        if data.writes.len() < MAX_WRITES_LOGGED {
            data.writes.push(WriteRecord {
                method,
                path: req.path.clone(),
                key: key.clone(),
                entry_id: accepted.entry_id,
                at_ms: now_unix_ms(),
            });
        } else {
            data.writes_dropped += 1;
        }
        self.answer(&mut data, key, accepted.reply, true)
    }

    /// The answer to a write that was stored (`applied`) or replayed: as is, or failed by
    /// `apply_then_fail_rate`. Records which, and whether the client got a 2xx.
    fn answer(&self, data: &mut Data, key: String, reply: Reply, applied: bool) -> Reply {
        let Some((failure, status, hold)) = self.faults.take_apply_then_fail() else {
            let answer = if applied {
                Answer::Applied
            } else {
                Answer::Replayed
            };
            data.answers_by_key
                .entry(key.clone())
                .or_default()
                .push(answer);
            data.first_ok_at
                .entry(key.clone())
                .or_insert_with(now_unix_ms);
            data.answered_ok.insert(key);
            return reply;
        };
        let answer = if applied {
            Answer::AppliedThen(failure)
        } else {
            Answer::ReplayedThen(failure)
        };
        data.answers_by_key
            .entry(key.clone())
            .or_default()
            .push(answer);
        data.apply_then_fail_by_key
            .entry(key)
            .or_default()
            .push(failure);
        match failure {
            AnswerFailure::Status => injected(status),
            AnswerFailure::Reset => reply.with_delivery(Delivery::Reset),
            AnswerFailure::NoAnswer => reply.with_delivery(Delivery::Hang(hold)),
        }
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

    fn arrived(&self, route: &Route, req: &SimRequest) {
        if !is_write(route) {
            return;
        }
        let key = idempotency_key(req);
        let mut data = lock(&self.data);
        *data.writes_by_key.entry(key.clone()).or_default() += 1;
        if !key.is_empty() && data.answered_ok.contains(&key) {
            *data.redundant_by_key.entry(key.clone()).or_default() += 1;
            if data.redundant_writes.len() < MAX_WRITES_LOGGED {
                let at_ms = now_unix_ms();
                data.redundant_writes.push(RedundantWrite { key, at_ms });
            }
        }
    }

    fn faulted(&self, route: &Route, req: &SimRequest, status: StatusCode) {
        if is_write(route) {
            lock(&self.data)
                .answers_by_key
                .entry(idempotency_key(req))
                .or_default()
                .push(Answer::Injected(status));
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
        let syncs = counts(&data.syncs_by_key);
        let entries: BTreeMap<&String, &Map<String, Value>> =
            data.entries.iter().map(|(id, e)| (id, &e.fields)).collect();
        let mut stats = Map::new();
        stats.insert("syncs_by_key".into(), json!(syncs));
        stats.insert(
            "attempts_by_key".into(),
            json!(counts(&data.attempts_by_key)),
        );
        stats.insert("replays_by_key".into(), json!(counts(&data.replays_by_key)));
        stats.insert(
            "events_by_relay_event_id".into(),
            json!(counts(&data.events_by_relay_event_id)),
        );
        stats.insert("writes_by_key".into(), json!(counts(&data.writes_by_key)));
        stats.insert(
            "redundant_by_key".into(),
            json!(counts(&data.redundant_by_key)),
        );
        stats.insert("redundant_writes".into(), json!(data.redundant_writes));
        stats.insert(
            "first_ok_at_by_key".into(),
            json!(counts(&data.first_ok_at)),
        );
        let answers: BTreeMap<&String, &Vec<Answer>> = data.answers_by_key.iter().collect();
        stats.insert("answers_by_key".into(), json!(answers));
        let failed: BTreeMap<&String, &Vec<AnswerFailure>> =
            data.apply_then_fail_by_key.iter().collect();
        stats.insert("apply_then_fail_by_key".into(), json!(failed));
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
