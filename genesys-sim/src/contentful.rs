//! The Contentful Content Management API simulator: the entry routes the relay uses,
//! answering as the CMA reference documents them.
//!
//! - `GET /spaces/{space}/environments/{env}/entries/{id}`: the entry (`sys`, `fields`,
//!   `metadata`) or 404 `NotFound`.
//! - `PUT` the same path: without an entry, creates it with that id (`X-Contentful-Content-Type`
//!   required, else 400 `BadRequest`; 201); with one, replaces its `fields` (and `metadata`)
//!   when `X-Contentful-Version` is its current version (200, version + 1), else 409
//!   `VersionMismatch` (a missing version is a mismatch too).
//! - `PUT .../entries/{id}/published`: publishes the version given in
//!   `X-Contentful-Version` (409 when it is not current); `publishedVersion` becomes it and
//!   the version goes up by one, as in the CMA.
//! - Entry ids must match `/^[a-zA-Z0-9-_.]{1,64}$/`; fields must be `{field: {locale:
//!   value}}` in a configured locale (else 422 `ValidationFailed`).
//! - Every request needs `Authorization: Bearer <management token>` (else 401
//!   `AccessTokenInvalid`); another space or environment is 404 `NotFound`.
//! - Rate limit: at most `rate_limit_per_second` requests per second (the CMA default is
//!   7), counted per space in one-second windows; beyond it 429 `RateLimitExceeded` with
//!   `X-Contentful-RateLimit-Reset` (seconds until the next window). Every answer carries
//!   `X-Contentful-RateLimit-Second-Limit` and `-Second-Remaining`.
//!
//! Error bodies are the CMA's: `{"sys": {"type": "Error", "id": <code>}, "message",
//! "requestId"}`. Counting (`GET /__sim/stats`): `writes_by_entry` (accepted entry writes,
//! publishes included), `writes_by_relay_event_id` (every write request that reached the
//! handler, per `X-Relay-Event-Id`, `""` when absent), `version_conflicts`,
//! `rate_limited`, and the `entries`.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use serde_json::{json, Map, Value};
use warp::http::{Method, StatusCode};

use super::clock::{iso8601_ms, now_unix_ms};
use super::exchange::{Reply, SimRequest};
use super::faults::lock;
use super::{Backend, Routed};

/// Options of the Contentful simulator.
#[derive(Clone, Debug)]
pub struct ContentfulSimOptions {
    pub space: String,
    pub environment: String,
    /// The only management token accepted.
    pub token: String,
    /// Locales fields may be written in.
    pub locales: Vec<String>,
    /// Requests per second before 429 (`None`: unlimited).
    pub rate_limit_per_second: Option<u64>,
}

impl Default for ContentfulSimOptions {
    fn default() -> Self {
        ContentfulSimOptions {
            space: "sim-space".into(),
            environment: "master".into(),
            token: "sim-cma-token".into(),
            locales: vec!["en-US".into()],
            rate_limit_per_second: Some(7),
        }
    }
}

pub(crate) enum Route {
    Get(String),
    Put(String),
    Publish(String),
    /// A path of another space or environment.
    UnknownSpace,
}

struct Entry {
    content_type: String,
    fields: Map<String, Value>,
    metadata: Value,
    version: u64,
    published_version: Option<u64>,
    created_at: String,
    updated_at: String,
}

#[derive(Default)]
struct Data {
    entries: HashMap<String, Entry>,
    writes_by_entry: HashMap<String, u64>,
    writes_by_relay_event_id: HashMap<String, u64>,
    version_conflicts: u64,
    rate_limited: u64,
    /// The current one-second window (Unix seconds) and the requests counted in it.
    window: (u64, u64),
    request_seq: u64,
}

pub(crate) struct Contentful {
    opts: ContentfulSimOptions,
    data: Mutex<Data>,
}

impl Contentful {
    pub(crate) fn new(opts: ContentfulSimOptions) -> Self {
        Contentful {
            opts,
            data: Mutex::new(Data::default()),
        }
    }

    fn entry_json(&self, id: &str, e: &Entry) -> Value {
        let link =
            |kind: &str, id: &str| json!({"sys": {"type": "Link", "linkType": kind, "id": id}});
        let mut sys = json!({
            "type": "Entry",
            "id": id,
            "space": link("Space", &self.opts.space),
            "environment": link("Environment", &self.opts.environment),
            "contentType": link("ContentType", &e.content_type),
            "version": e.version,
            "createdAt": e.created_at,
            "updatedAt": e.updated_at,
        });
        if let Some(p) = e.published_version {
            sys["publishedVersion"] = json!(p);
        }
        json!({"metadata": e.metadata, "sys": sys, "fields": e.fields})
    }

    fn put(&self, data: &mut Data, id: &str, req: &SimRequest) -> Reply {
        if !is_id(id) {
            return error(
                StatusCode::UNPROCESSABLE_ENTITY,
                "ValidationFailed",
                "Validation error: the entry id must match /^[a-zA-Z0-9-_.]{1,64}$/",
                data,
            );
        }
        let body = match req.json_body() {
            Ok(Value::Object(body)) => body,
            _ => {
                return error(
                    StatusCode::BAD_REQUEST,
                    "BadRequest",
                    "The body must be a JSON object",
                    data,
                )
            }
        };
        let fields = match body.get("fields") {
            None => Map::new(),
            Some(Value::Object(f)) => f.clone(),
            Some(_) => {
                return error(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "ValidationFailed",
                    "Validation error: fields must be an object",
                    data,
                )
            }
        };
        if let Err(message) = self.check_fields(&fields) {
            return error(
                StatusCode::UNPROCESSABLE_ENTITY,
                "ValidationFailed",
                &message,
                data,
            );
        }
        let version = req
            .header("x-contentful-version")
            .and_then(|v| v.trim().parse::<u64>().ok());
        let now = iso8601_ms(now_unix_ms());
        match data.entries.get_mut(id) {
            None => {
                if version.is_some() {
                    return error(
                        StatusCode::NOT_FOUND,
                        "NotFound",
                        "The resource could not be found.",
                        data,
                    );
                }
                let Some(content_type) = req
                    .header("x-contentful-content-type")
                    .filter(|c| !c.is_empty())
                else {
                    return error(
                        StatusCode::BAD_REQUEST,
                        "BadRequest",
                        "Missing X-Contentful-Content-Type header",
                        data,
                    );
                };
                let entry = Entry {
                    content_type: content_type.to_string(),
                    fields,
                    metadata: body
                        .get("metadata")
                        .cloned()
                        .unwrap_or_else(|| json!({"tags": []})),
                    version: 1,
                    published_version: None,
                    created_at: now.clone(),
                    updated_at: now,
                };
                let reply = Reply::json(StatusCode::CREATED, self.entry_json(id, &entry));
                data.entries.insert(id.to_string(), entry);
                *data.writes_by_entry.entry(id.to_string()).or_default() += 1;
                reply
            }
            Some(entry) => {
                if version != Some(entry.version) {
                    data.version_conflicts += 1;
                    return error(
                        StatusCode::CONFLICT,
                        "VersionMismatch",
                        "Version mismatch",
                        data,
                    );
                }
                entry.fields = fields;
                if let Some(metadata) = body.get("metadata") {
                    entry.metadata = metadata.clone();
                }
                entry.version += 1;
                entry.updated_at = now;
                let reply = Reply::ok(self.entry_json(id, entry));
                *data.writes_by_entry.entry(id.to_string()).or_default() += 1;
                reply
            }
        }
    }

    fn publish(&self, data: &mut Data, id: &str, req: &SimRequest) -> Reply {
        let version = req
            .header("x-contentful-version")
            .and_then(|v| v.trim().parse::<u64>().ok());
        let Some(entry) = data.entries.get_mut(id) else {
            return error(
                StatusCode::NOT_FOUND,
                "NotFound",
                "The resource could not be found.",
                data,
            );
        };
        if version != Some(entry.version) {
            data.version_conflicts += 1;
            return error(
                StatusCode::CONFLICT,
                "VersionMismatch",
                "Version mismatch",
                data,
            );
        }
        entry.published_version = Some(entry.version);
        entry.version += 1;
        entry.updated_at = iso8601_ms(now_unix_ms());
        let reply = Reply::ok(self.entry_json(id, entry));
        *data.writes_by_entry.entry(id.to_string()).or_default() += 1;
        reply
    }

    fn check_fields(&self, fields: &Map<String, Value>) -> Result<(), String> {
        for (name, value) in fields {
            let Value::Object(locales) = value else {
                return Err(format!(
                    "Validation error: field {name} must be an object of locales"
                ));
            };
            if let Some(locale) = locales.keys().find(|l| !self.opts.locales.contains(l)) {
                return Err(format!(
                    "Validation error: unknown locale {locale} in field {name}"
                ));
            }
        }
        Ok(())
    }

    /// Counts the request in the current one-second window; `Err(reset seconds)` beyond the limit.
    fn admit(&self, data: &mut Data) -> Result<u64, u64> {
        let Some(limit) = self.opts.rate_limit_per_second else {
            return Ok(u64::MAX);
        };
        let now_ms = now_unix_ms();
        let second = now_ms / 1000;
        if data.window.0 != second {
            data.window = (second, 0);
        }
        if data.window.1 >= limit {
            data.rate_limited += 1;
            return Err(1);
        }
        data.window.1 += 1;
        Ok(limit - data.window.1)
    }
}

fn is_id(id: &str) -> bool {
    (1..=64).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// A CMA error body.
fn error(status: StatusCode, id: &str, message: &str, data: &mut Data) -> Reply {
    data.request_seq += 1;
    Reply::json(
        status,
        json!({
            "sys": {"type": "Error", "id": id},
            "message": message,
            "requestId": format!("sim-{:08x}", data.request_seq),
        }),
    )
}

impl Backend for Contentful {
    type Route = Route;

    fn route(&self, req: &SimRequest) -> Routed<Route> {
        let segs = req.segs();
        let found = |template, route| Routed::Found { template, route };
        let ours =
            |space: &str, env: &str| space == self.opts.space && env == self.opts.environment;
        match (&req.method, segs.as_slice()) {
            (m, ["spaces", space, "environments", env, "entries", id])
                if !ours(space, env)
                    && (m == Method::GET || m == Method::PUT)
                    && !id.is_empty() =>
            {
                found("* /spaces/{other}/...", Route::UnknownSpace)
            }
            (&Method::GET, ["spaces", _, "environments", _, "entries", id]) if !id.is_empty() => {
                found(
                    "GET /spaces/{space}/environments/{env}/entries/{id}",
                    Route::Get(id.to_string()),
                )
            }
            (&Method::PUT, ["spaces", _, "environments", _, "entries", id]) if !id.is_empty() => {
                found(
                    "PUT /spaces/{space}/environments/{env}/entries/{id}",
                    Route::Put(id.to_string()),
                )
            }
            (_, ["spaces", _, "environments", _, "entries", _]) => Routed::WrongMethod {
                path: "/spaces/{space}/environments/{env}/entries/{id}",
            },
            (&Method::PUT, ["spaces", space, "environments", env, "entries", id, "published"])
                if ours(space, env) && !id.is_empty() =>
            {
                found(
                    "PUT /spaces/{space}/environments/{env}/entries/{id}/published",
                    Route::Publish(id.to_string()),
                )
            }
            (_, ["spaces", _, "environments", _, "entries", _, "published"]) => {
                Routed::WrongMethod {
                    path: "/spaces/{space}/environments/{env}/entries/{id}/published",
                }
            }
            _ => Routed::NotFound,
        }
    }

    fn handle(&self, route: Route, req: &SimRequest) -> Reply {
        let mut data = lock(&self.data);
        let remaining = match self.admit(&mut data) {
            Ok(remaining) => remaining,
            Err(reset) => {
                let limit = self.opts.rate_limit_per_second.unwrap_or_default();
                return error(
                    StatusCode::TOO_MANY_REQUESTS,
                    "RateLimitExceeded",
                    "You have exceeded the rate limit of the Organization this Space belongs to by making too many API requests within a short timespan. Please wait a moment before trying the request again.",
                    &mut data,
                )
                .with_header("x-contentful-ratelimit-reset", reset.to_string())
                .with_header("x-contentful-ratelimit-second-limit", limit.to_string())
                .with_header("x-contentful-ratelimit-second-remaining", "0".into());
            }
        };
        let authorised =
            req.header("authorization") == Some(&format!("Bearer {}", self.opts.token));
        let is_write = !matches!(route, Route::Get(_));
        if is_write {
            let event = req.header("x-relay-event-id").unwrap_or("").to_string();
            *data.writes_by_relay_event_id.entry(event).or_default() += 1;
        }
        let reply = if !authorised {
            error(
                StatusCode::UNAUTHORIZED,
                "AccessTokenInvalid",
                "The access token you sent could not be found or is invalid.",
                &mut data,
            )
        } else {
            match route {
                Route::UnknownSpace => error(
                    StatusCode::NOT_FOUND,
                    "NotFound",
                    "The resource could not be found.",
                    &mut data,
                ),
                Route::Get(id) => match data.entries.get(&id) {
                    Some(entry) => Reply::ok(self.entry_json(&id, entry)),
                    None => error(
                        StatusCode::NOT_FOUND,
                        "NotFound",
                        "The resource could not be found.",
                        &mut data,
                    ),
                },
                Route::Put(id) => self.put(&mut data, &id, req),
                Route::Publish(id) => self.publish(&mut data, &id, req),
            }
        };
        match self.opts.rate_limit_per_second {
            Some(limit) => reply
                .with_header("x-contentful-ratelimit-reset", "0".into())
                .with_header("x-contentful-ratelimit-second-limit", limit.to_string())
                .with_header(
                    "x-contentful-ratelimit-second-remaining",
                    remaining.to_string(),
                ),
            None => reply,
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
        let entries: BTreeMap<&String, Value> = data
            .entries
            .iter()
            .map(|(id, e)| (id, self.entry_json(id, e)))
            .collect();
        let mut stats = Map::new();
        stats.insert(
            "writes_by_entry".into(),
            json!(counts(&data.writes_by_entry)),
        );
        stats.insert(
            "writes_by_relay_event_id".into(),
            json!(counts(&data.writes_by_relay_event_id)),
        );
        stats.insert("version_conflicts".into(), json!(data.version_conflicts));
        stats.insert("rate_limited".into(), json!(data.rate_limited));
        stats.insert("entries".into(), json!(entries));
        stats
    }

    fn reset(&self) {
        *lock(&self.data) = Data::default();
    }
}
