//! The Genesys Cloud simulator: OAuth client credentials, guest profiles,
//! conversations and webhook registrations, with Genesys-shaped bodies and errors.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use rand::RngCore;
use serde_json::{json, Map, Value};
use warp::http::{Method, StatusCode};

use super::clock::{iso8601_ms, now_unix_ms};
use super::exchange::{form_pairs, Reply, SimRequest};
use super::faults::{lock, Faults};
use super::notifications::{self, Notifications};
use super::synth;
use super::{Backend, GenesysSimOptions, Routed};

const DEFAULT_PAGE_SIZE: u64 = 25;
/// Genesys caps page sizes too; a relay asking for more should find out here.
const MAX_PAGE_SIZE: u64 = 500;

pub(crate) enum Route {
    Token,
    Guest(String),
    Conversation(String),
    ListWebhooks,
    CreateWebhook,
    GetWebhook(String),
    UpdateWebhook(String),
    Notifications(notifications::Route),
}

/// A guest whose attributes a test set with `PUT /__sim/guests/{id}`.
struct GuestOverride {
    attributes: Map<String, Value>,
    updated_date: String,
}

#[derive(Default)]
struct Data {
    /// Issued access tokens and when each expires.
    tokens: HashMap<String, Instant>,
    token_requests: u64,
    tokens_issued: u64,
    guests: HashMap<String, GuestOverride>,
    /// Webhooks in creation order (listing order must be stable), and id -> index.
    webhooks: Vec<Value>,
    webhook_index: HashMap<String, usize>,
}

pub(crate) struct Genesys {
    opts: GenesysSimOptions,
    faults: Arc<Faults>,
    data: Mutex<Data>,
    notifications: Notifications,
}

impl Genesys {
    pub fn new(opts: GenesysSimOptions, faults: Arc<Faults>, notifications: Notifications) -> Self {
        Genesys {
            opts,
            faults,
            data: Mutex::new(Data::default()),
            notifications,
        }
    }

    fn token(&self, req: &SimRequest) -> Reply {
        let mut data = lock(&self.data);
        data.token_requests += 1;
        if !self.client_matches(req) {
            return Reply::json(
                StatusCode::UNAUTHORIZED,
                json!({"error": "invalid_client", "error_description": "unknown client or wrong secret"}),
            )
            .with_header("www-authenticate", "Basic realm=\"genesys-sim\"".into());
        }
        let body = String::from_utf8_lossy(&req.body);
        let grant = form_pairs(&body)
            .into_iter()
            .find(|(k, _)| k == "grant_type")
            .map(|(_, v)| v);
        match grant.as_deref() {
            Some("client_credentials") => {}
            Some(_) => {
                return Reply::json(
                    StatusCode::BAD_REQUEST,
                    json!({"error": "unsupported_grant_type"}),
                )
            }
            None => {
                return Reply::json(
                    StatusCode::BAD_REQUEST,
                    json!({"error": "invalid_request", "error_description": "grant_type is required"}),
                )
            }
        }
        let ttl = self
            .faults
            .snapshot()
            .token_ttl_s
            .map(Duration::from_secs)
            .unwrap_or(self.opts.token_ttl);
        let mut raw = [0u8; 32];
        rand::thread_rng().fill_bytes(&mut raw);
        let token = URL_SAFE_NO_PAD.encode(raw);
        let now = Instant::now();
        // Drop expired tokens here so the map stays as small as the live token set.
        data.tokens.retain(|_, expires| *expires > now);
        data.tokens.insert(token.clone(), now + ttl);
        data.tokens_issued += 1;
        Reply::ok(json!({
            "access_token": token,
            "token_type": "bearer",
            "expires_in": ttl.as_secs(),
        }))
    }

    /// HTTP Basic `client_id:client_secret`, as reqwest's `basic_auth` sends it.
    fn client_matches(&self, req: &SimRequest) -> bool {
        let Some((scheme, encoded)) = req.header("authorization").and_then(|h| h.split_once(' '))
        else {
            return false;
        };
        if !scheme.eq_ignore_ascii_case("basic") {
            return false;
        }
        let Ok(decoded) = STANDARD.decode(encoded.trim()) else {
            return false;
        };
        let decoded = String::from_utf8_lossy(&decoded);
        decoded.split_once(':')
            == Some((
                self.opts.client_id.as_str(),
                self.opts.client_secret.as_str(),
            ))
    }

    /// Every `/api/v2` route needs a live bearer token issued by this server.
    fn authorize(&self, req: &SimRequest) -> Result<(), Reply> {
        let token = req
            .header("authorization")
            .and_then(|h| h.split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, token)| token.trim());
        let live = token.is_some_and(|token| {
            lock(&self.data)
                .tokens
                .get(token)
                .is_some_and(|expires| *expires > Instant::now())
        });
        if live {
            Ok(())
        } else {
            Err(Reply::genesys_error(
                StatusCode::UNAUTHORIZED,
                "authentication.required",
                "No authentication bearer token specified in authorization header, or it has expired.",
            ))
        }
    }

    fn guest(&self, id: &str) -> Reply {
        if let Some(guest) = lock(&self.data).guests.get(id) {
            return Reply::ok(json!({
                "id": id,
                "attributes": guest.attributes,
                "updatedDate": guest.updated_date,
            }));
        }
        if id.starts_with("gone-") {
            return Reply::not_found(&format!("guest {id} not found"));
        }
        Reply::ok(json!({
            "id": id,
            "attributes": synth::guest_attributes(id),
            "updatedDate": synth::guest_updated_date(id),
        }))
    }

    fn list_webhooks(&self, req: &SimRequest) -> Reply {
        let page_size = match page_param(req, "pageSize", DEFAULT_PAGE_SIZE) {
            Ok(n) if n <= MAX_PAGE_SIZE => n,
            Ok(_) => return Reply::bad_request("pageSize must be at most 500"),
            Err(reply) => return reply,
        };
        let page_number = match page_param(req, "pageNumber", 1) {
            Ok(n) => n,
            Err(reply) => return reply,
        };
        let data = lock(&self.data);
        let total = data.webhooks.len() as u64;
        let start =
            usize::try_from((page_number - 1).saturating_mul(page_size)).unwrap_or(usize::MAX);
        let entities: Vec<&Value> = data
            .webhooks
            .iter()
            .skip(start)
            .take(usize::try_from(page_size).unwrap_or(usize::MAX))
            .collect();
        Reply::ok(json!({
            "entities": entities,
            "pageSize": page_size,
            "pageNumber": page_number,
            "total": total,
            "pageCount": total.div_ceil(page_size),
        }))
    }

    fn create_webhook(&self, req: &SimRequest) -> Reply {
        let mut body = match webhook_body(req) {
            Ok(body) => body,
            Err(reply) => return reply,
        };
        let id = random_uuid();
        complete_webhook(&mut body, &id);
        let stored = Value::Object(body);
        let mut data = lock(&self.data);
        let index = data.webhooks.len();
        data.webhooks.push(stored.clone());
        data.webhook_index.insert(id, index);
        Reply::ok(stored)
    }

    fn update_webhook(&self, id: &str, req: &SimRequest) -> Reply {
        let mut body = match webhook_body(req) {
            Ok(body) => body,
            Err(reply) => return reply,
        };
        let mut data = lock(&self.data);
        let Some(&index) = data.webhook_index.get(id) else {
            return Reply::not_found(&format!("webhook {id} not found"));
        };
        complete_webhook(&mut body, id);
        let stored = Value::Object(body);
        if let Some(slot) = data.webhooks.get_mut(index) {
            *slot = stored.clone();
        }
        Reply::ok(stored)
    }

    fn get_webhook(&self, id: &str) -> Reply {
        let data = lock(&self.data);
        match data
            .webhook_index
            .get(id)
            .and_then(|&i| data.webhooks.get(i))
        {
            Some(webhook) => Reply::ok(webhook.clone()),
            None => Reply::not_found(&format!("webhook {id} not found")),
        }
    }

    /// `PUT /__sim/guests/{id}`: `{"attributes": {...}}` or a bare attributes object;
    /// the attributes replace the generated ones (also for `gone-` ids).
    fn set_guest(&self, id: &str, req: &SimRequest) -> Reply {
        let body = match req.json_body() {
            Ok(body) => body,
            Err(reply) => return reply,
        };
        let attributes = match body {
            Value::Object(mut map) => match map.remove("attributes") {
                Some(Value::Object(attributes)) if map.is_empty() => attributes,
                Some(other) => {
                    map.insert("attributes".into(), other);
                    map
                }
                None => map,
            },
            _ => return Reply::bad_request("expected a JSON object of attributes"),
        };
        let updated_date = iso8601_ms(now_unix_ms());
        let reply = json!({"id": id, "attributes": attributes, "updatedDate": updated_date});
        lock(&self.data).guests.insert(
            id.to_string(),
            GuestOverride {
                attributes,
                updated_date,
            },
        );
        Reply::ok(reply)
    }
}

impl Backend for Genesys {
    type Route = Route;

    fn route(&self, req: &SimRequest) -> Routed<Route> {
        if let Some(routed) = Notifications::route(req, Route::Notifications) {
            return routed;
        }
        let segs = req.segs();
        let get = req.method == Method::GET;
        let post = req.method == Method::POST;
        let put = req.method == Method::PUT;
        let found = |template, route| Routed::Found { template, route };
        match segs.as_slice() {
            ["oauth", "token"] if post => found("POST /oauth/token", Route::Token),
            ["oauth", "token"] => Routed::WrongMethod {
                path: "/oauth/token",
            },
            ["api", "v2", "conversations", "messaging", "guests", id] if !id.is_empty() => {
                if get {
                    found(
                        "GET /api/v2/conversations/messaging/guests/{guestId}",
                        Route::Guest(id.to_string()),
                    )
                } else {
                    Routed::WrongMethod {
                        path: "/api/v2/conversations/messaging/guests/{guestId}",
                    }
                }
            }
            ["api", "v2", "conversations", id] if !id.is_empty() => {
                if get {
                    found(
                        "GET /api/v2/conversations/{id}",
                        Route::Conversation(id.to_string()),
                    )
                } else {
                    Routed::WrongMethod {
                        path: "/api/v2/conversations/{id}",
                    }
                }
            }
            ["api", "v2", "webhooks"] if get => found("GET /api/v2/webhooks", Route::ListWebhooks),
            ["api", "v2", "webhooks"] if post => {
                found("POST /api/v2/webhooks", Route::CreateWebhook)
            }
            ["api", "v2", "webhooks"] => Routed::WrongMethod {
                path: "/api/v2/webhooks",
            },
            ["api", "v2", "webhooks", id] if !id.is_empty() && get => found(
                "GET /api/v2/webhooks/{id}",
                Route::GetWebhook(id.to_string()),
            ),
            ["api", "v2", "webhooks", id] if !id.is_empty() && put => found(
                "PUT /api/v2/webhooks/{id}",
                Route::UpdateWebhook(id.to_string()),
            ),
            ["api", "v2", "webhooks", id] if !id.is_empty() => Routed::WrongMethod {
                path: "/api/v2/webhooks/{id}",
            },
            _ => Routed::NotFound,
        }
    }

    fn handle(&self, route: Route, req: &SimRequest) -> Reply {
        if !matches!(route, Route::Token) {
            if let Err(reply) = self.authorize(req) {
                return reply;
            }
        }
        match route {
            Route::Token => self.token(req),
            Route::Guest(id) => self.guest(&id),
            Route::Conversation(id) if id.starts_with("gone-") => {
                Reply::not_found(&format!("conversation {id} not found"))
            }
            Route::Conversation(id) => Reply::ok(synth::conversation(&id)),
            Route::ListWebhooks => self.list_webhooks(req),
            Route::CreateWebhook => self.create_webhook(req),
            Route::GetWebhook(id) => self.get_webhook(&id),
            Route::UpdateWebhook(id) => self.update_webhook(&id, req),
            Route::Notifications(route) => self.notifications.handle(route, req),
        }
    }

    fn control(&self, req: &SimRequest) -> Option<Reply> {
        if let Some(reply) = self.notifications.control(req) {
            return Some(reply);
        }
        match (&req.method, req.segs().as_slice()) {
            (&Method::PUT, ["__sim", "guests", id]) if !id.is_empty() => {
                Some(self.set_guest(id, req))
            }
            (&Method::DELETE, ["__sim", "guests", id]) if !id.is_empty() => {
                let removed = lock(&self.data).guests.remove(*id).is_some();
                Some(Reply::ok(json!({"id": id, "removed": removed})))
            }
            _ => None,
        }
    }

    fn stats(&self) -> Map<String, Value> {
        let data = lock(&self.data);
        let mut stats = Map::new();
        stats.insert("token_requests".into(), json!(data.token_requests));
        stats.insert("tokens_issued".into(), json!(data.tokens_issued));
        stats.insert("webhooks".into(), json!(data.webhooks.len()));
        stats.insert("guest_overrides".into(), json!(data.guests.len()));
        stats.insert("notifications".into(), self.notifications.stats());
        stats
    }

    fn reset(&self) {
        *lock(&self.data) = Data::default();
        self.notifications.reset();
    }
}

/// A positive integer query parameter, or its default when absent.
fn page_param(req: &SimRequest, name: &str, default: u64) -> Result<u64, Reply> {
    match req.query_param(name) {
        None => Ok(default),
        Some(raw) => match raw.parse::<u64>() {
            Ok(n) if n >= 1 => Ok(n),
            _ => Err(Reply::bad_request(&format!(
                "{name} must be a positive integer"
            ))),
        },
    }
}

/// Validates a webhook create/update body: an object with a non-empty `name` and a
/// `url`; `enabled` must be a boolean and `topics` an array of strings when present.
fn webhook_body(req: &SimRequest) -> Result<Map<String, Value>, Reply> {
    let Value::Object(body) = req.json_body()? else {
        return Err(Reply::bad_request("expected a JSON object"));
    };
    if body
        .get("name")
        .and_then(Value::as_str)
        .is_none_or(str::is_empty)
    {
        return Err(Reply::bad_request("name is required"));
    }
    if !body.get("url").is_some_and(Value::is_string) {
        return Err(Reply::bad_request("url is required"));
    }
    if body.get("enabled").is_some_and(|e| !e.is_boolean()) {
        return Err(Reply::bad_request("enabled must be a boolean"));
    }
    if let Some(topics) = body.get("topics") {
        let all_strings = topics
            .as_array()
            .is_some_and(|t| t.iter().all(Value::is_string));
        if !all_strings {
            return Err(Reply::bad_request("topics must be an array of strings"));
        }
    }
    Ok(body)
}

/// Adds what the server owns (`id`, `selfUri`) and the defaults of optional fields;
/// any other fields the client sent are kept as they are.
fn complete_webhook(body: &mut Map<String, Value>, id: &str) {
    body.insert("id".into(), json!(id));
    body.insert("selfUri".into(), json!(format!("/api/v2/webhooks/{id}")));
    body.entry("enabled").or_insert(json!(true));
    body.entry("topics").or_insert(json!([]));
}

fn random_uuid() -> String {
    let mut b = [0u8; 16];
    rand::thread_rng().fill_bytes(&mut b);
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}
