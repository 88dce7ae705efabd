//! The Genesys Cloud simulator: OAuth client credentials, conversations with their
//! participants, Process Automation triggers and a per-token request budget, with the
//! Platform API's shapes, errors and `inin-ratelimit-*` headers.
//!
//! Every path used here is in the Platform API (platform-client-sdk-python
//! `build/docs/*Api.md`): `POST /oauth/token` (login host), `GET
//! /api/v2/conversations/{conversationId}`, `GET|POST /api/v2/processautomation/triggers`,
//! `GET|PUT /api/v2/processautomation/triggers/{triggerId}`,
//! `GET /api/v2/processautomation/triggers/topics`. A notification published with
//! `POST /__sim/notify` also fires the enabled triggers on its topic ([`super::workflows`]).
//! Besides the shared faults, `PUT /__sim/genesys/settings` sets per-resource rate limits
//! (`resource_rate_limits`), lower than the per-token one, and `POST /__sim/tokens/revoke`
//! ends every live token early (answered 401 like an expired one). Further APIs (the
//! Notifications channels, queues) mount in [`Genesys::route_api`] and
//! [`Genesys::handle_api`] next to these, each in its own module like [`super::triggers`]
//! and [`super::notifications`].

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use rand::RngCore;
use serde_json::{json, Map, Value};
use warp::http::{Method, StatusCode};

use super::budget::Budget;
use super::exchange::{form_pairs, Reply, SimRequest};
use super::faults::{lock, Faults};
use super::notifications::{self, Notifications};
use super::synth;
use super::triggers::Triggers;
use super::workflows::{DataActionSetup, Workflows};
use super::{Backend, GenesysSimOptions, Routed};

pub(crate) enum Route {
    Token,
    Conversation(String),
    ListTriggers,
    TriggerTopics,
    CreateTrigger,
    GetTrigger(String),
    UpdateTrigger(String),
    /// Notification channels, subscriptions and the queue listing ([`super::notifications`]).
    Notifications(notifications::Route),
}

#[derive(Default)]
struct Data {
    token_requests: u64,
    tokens_issued: u64,
    /// Tokens revoked with `POST /__sim/tokens/revoke` while live.
    tokens_revoked: u64,
    /// Live access tokens and when they expire.
    tokens: HashMap<String, Instant>,
    /// Customer attributes a test set with `PUT /__sim/conversations/{id}/attributes`.
    attributes: HashMap<String, Map<String, Value>>,
    /// Conversation ids answered 404, so a test can match each skip to its answer.
    conversations_not_found: BTreeSet<String>,
    triggers: Triggers,
    workflows: Workflows,
    budget: Budget,
    /// Per-token budgets of single resources (`resource_rate_limits`), keyed by
    /// `"<route template> <token>"`.
    resource_budget: Budget,
    settings: Settings,
}

/// Genesys-only settings (`PUT /__sim/genesys/settings`), beside the shared faults.
#[derive(Clone, Debug, Default, serde::Serialize)]
struct Settings {
    /// Route template (`GET /api/v2/conversations/{conversationId}`) -> requests per
    /// minute per token for that resource alone: Genesys layers per-resource limits over
    /// the per-token one, and an answer then reports the lower `inin-ratelimit-allowed`.
    resource_rate_limits: BTreeMap<String, u64>,
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct SettingsPatch {
    resource_rate_limits: Option<BTreeMap<String, u64>>,
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

    /// Every `/api/v2` route needs a live bearer token issued by this server; the token
    /// is returned for the request budget.
    fn authorize(&self, req: &SimRequest) -> Result<String, Reply> {
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
        match token {
            Some(token) if live => Ok(token.to_string()),
            _ =>
Err(Reply::genesys_error(
                StatusCode::UNAUTHORIZED,
                "authentication.required",
                "No authentication bearer token specified in authorization header, or it has expired.",
            )),
        }
    }

    /// `GET /api/v2/conversations/{id}`: ids starting `gone-` do not exist (404), as a
    /// conversation past its retention would not.
    fn conversation(&self, id: &str) -> Reply {
        let mut data = lock(&self.data);
        if id.starts_with("gone-") {
            data.conversations_not_found.insert(id.to_string());
            return Reply::not_found(&format!("conversation {id} not found"));
        }
        Reply::ok(synth::conversation(id, data.attributes.get(id)))
    }

    /// `PUT /__sim/conversations/{id}/attributes`: `{"attributes": {...}}` or a bare object
    /// of string values; they replace the customer participant's attributes.
    fn set_attributes(&self, id: &str, req: &SimRequest) -> Reply {
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
        // Participant attributes are string -> string in the Platform API.
        if !attributes.values().all(Value::is_string) {
            return Reply::bad_request("attribute values must be strings");
        }
        let reply = json!({"id": id, "attributes": attributes});
        lock(&self.data)
            .attributes
            .insert(id.to_string(), attributes);
        Reply::ok(reply)
    }

    /// The `/api/v2` routes (everything but the token endpoint).
    fn route_api(&self, req: &SimRequest, segs: &[&str]) -> Routed<Route> {
        let found = |template, route| Routed::Found { template, route };
        let method = &req.method;
        match segs {
            ["conversations", id] if !id.is_empty() => match *method {
                Method::GET => found(
                    "GET /api/v2/conversations/{conversationId}",
                    Route::Conversation(id.to_string()),
                ),
                _ => Routed::WrongMethod {
                    path: "/api/v2/conversations/{conversationId}",
                },
            },
            ["processautomation", "triggers"] => match *method {
                Method::GET => found(
                    "GET /api/v2/processautomation/triggers",
                    Route::ListTriggers,
                ),
                Method::POST => found(
                    "POST /api/v2/processautomation/triggers",
                    Route::CreateTrigger,
                ),
                _ => Routed::WrongMethod {
                    path: "/api/v2/processautomation/triggers",
                },
            },
            ["processautomation", "triggers", "topics"] => match *method {
                Method::GET => found(
                    "GET /api/v2/processautomation/triggers/topics",
                    Route::TriggerTopics,
                ),
                _ => Routed::WrongMethod {
                    path: "/api/v2/processautomation/triggers/topics",
                },
            },
            ["processautomation", "triggers", id] if !id.is_empty() => match *method {
                Method::GET => found(
                    "GET /api/v2/processautomation/triggers/{triggerId}",
                    Route::GetTrigger(id.to_string()),
                ),
                Method::PUT => found(
                    "PUT /api/v2/processautomation/triggers/{triggerId}",
                    Route::UpdateTrigger(id.to_string()),
                ),
                _ => Routed::WrongMethod {
                    path: "/api/v2/processautomation/triggers/{triggerId}",
                },
            },
            _ => Notifications::route(req, Route::Notifications).unwrap_or(Routed::NotFound),
        }
    }

    /// Answers an authorised `/api/v2` request within the budget.
    fn handle_api(&self, route: Route, req: &SimRequest, token: &str) -> Reply {
        match route {
            Route::Token => self.token(req),
            Route::Conversation(id) => self.conversation(&id),
            Route::ListTriggers => lock(&self.data).triggers.list(req),
            Route::TriggerTopics => lock(&self.data).triggers.topics(req),
            Route::CreateTrigger => lock(&self.data).triggers.create(req, random_uuid()),
            Route::GetTrigger(id) => lock(&self.data).triggers.get(&id),
            Route::UpdateTrigger(id) => lock(&self.data).triggers.update(&id, req),
            Route::Notifications(route) => {
                // Channels belong to the token that created them (NotificationsApi docs).
                let expires = lock(&self.data).tokens.get(token).copied();
                let caller = crate::notifications::Caller {
                    token: token.to_string(),
                    expires: tokio::time::Instant::from_std(expires.unwrap_or_else(Instant::now)),
                };
                self.notifications.handle(route, req, &caller)
            }
        }
    }

    /// Spends one request of `token`'s budget when `rate_limit_per_minute` is set, and of
    /// the resource's own budget when `resource_rate_limits` names `template`: the headers
    /// to add (those of the lower limit), or the 429 to answer instead.
    fn spend_budget(
        &self,
        token: &str,
        template: &str,
    ) -> Result<Vec<(&'static str, String)>, Reply> {
        let token_limit = self.faults.snapshot().rate_limit_per_minute;
        let now = Instant::now();
        let mut data = lock(&self.data);
        let resource_limit = data.settings.resource_rate_limits.get(template).copied();
        let mut verdict = None;
        if let Some(allowed) = token_limit {
            data.budget.prune(now);
            verdict = Some((allowed, data.budget.spend(token, allowed, now)));
        }
        if let Some(allowed) = resource_limit {
            data.resource_budget.prune(now);
            let key = format!("{template} {token}");
            let resource = data.resource_budget.spend(&key, allowed, now);
            // The tighter window speaks: a refusal, else the lower limit's headers.
            let replace = match &verdict {
                None => true,
                Some((token_allowed, v)) => {
                    v.retry_after_s.is_none()
                        && (resource.retry_after_s.is_some() || allowed < *token_allowed)
                }
            };
            if replace {
                verdict = Some((allowed, resource));
            }
        }
        let Some((allowed, verdict)) = verdict else {
            return Ok(Vec::new());
        };
        match verdict.retry_after_s {
            None => Ok(verdict.headers),
            Some(retry_after) => {
                let mut reply = Reply::genesys_error(
                    StatusCode::TOO_MANY_REQUESTS,
                    "too.many.requests",
                    &format!("Rate limit exceeded the maximum of {allowed} requests per minute"),
                )
                .with_header("retry-after", retry_after.to_string());
                for (name, value) in verdict.headers {
                    reply = reply.with_header(name, value);
                }
                Err(reply)
            }
        }
    }
}

impl Backend for Genesys {
    type Route = Route;

    fn route(&self, req: &SimRequest) -> Routed<Route> {
        let segs = req.segs();
        match segs.as_slice() {
            ["oauth", "token"] if req.method == Method::POST => Routed::Found {
                template: "POST /oauth/token",
                route: Route::Token,
            },
            ["oauth", "token"] => Routed::WrongMethod {
                path: "/oauth/token",
            },
            ["api", "v2", rest @ ..] => self.route_api(req, rest),
            _ => Routed::NotFound,
        }
    }

    fn handle(&self, route: Route, req: &SimRequest) -> Reply {
        if matches!(route, Route::Token) {
            return self.token(req);
        }
        let token = match self.authorize(req) {
            Ok(token) => token,
            Err(reply) => return reply,
        };
        let template = match self.route(req) {
            Routed::Found { template, .. } => template,
            _ => "",
        };
        let headers = match self.spend_budget(&token, template) {
            Ok(headers) => headers,
            Err(reply) => return reply,
        };
        let mut reply = self.handle_api(route, req, &token);
        for (name, value) in headers {
            reply = reply.with_header(name, value);
        }
        reply
    }

    fn control(&self, req: &SimRequest) -> Option<Reply> {
        if let Some(reply) = self.notifications.control(req) {
            // A published notification also reaches the triggers on its topic (the same
            // events feed notifications, EventBridge and Process Automation).
            if req.method == Method::POST
                && req.segs() == ["__sim", "notify"]
                && reply.status.is_success()
            {
                if let Ok(notification) = req.json_body() {
                    let mut data = lock(&self.data);
                    let Data {
                        triggers,
                        workflows,
                        ..
                    } = &mut *data;
                    let topic = notification["topicName"].as_str().unwrap_or_default();
                    workflows.fire(triggers.enabled_for(topic), &notification);
                }
            }
            return Some(reply);
        }
        match (&req.method, req.segs().as_slice()) {
            (&Method::GET, ["__sim", "workflows", "invocations"]) => {
                Some(Reply::ok(lock(&self.data).workflows.invocations()))
            }
            (&Method::PUT, ["__sim", "workflows", id]) if !id.is_empty() => {
                Some(match serde_json::from_slice::<DataActionSetup>(&req.body) {
                    Ok(setup) => {
                        lock(&self.data).workflows.set_up(id, setup);
                        Reply::ok(json!({"workflowId": id}))
                    }
                    Err(e) => Reply::bad_request(&format!("invalid data action setup: {e}")),
                })
            }
            (&Method::PUT, ["__sim", "genesys", "settings"]) => Some(self.settings(req)),
            (&Method::POST, ["__sim", "tokens", "revoke"]) => {
                // Every live token stops working before its `expires_in`, as when an
                // admin revokes the client's tokens or rotates its secret; the client
                // credentials still get new ones.
                let mut data = lock(&self.data);
                let revoked = data.tokens.len();
                data.tokens.clear();
                data.tokens_revoked += revoked as u64;
                Some(Reply::ok(json!({ "revoked": revoked })))
            }
            (&Method::PUT, ["__sim", "conversations", id, "attributes"]) if !id.is_empty() => {
                Some(self.set_attributes(id, req))
            }
            (&Method::DELETE, ["__sim", "conversations", id, "attributes"]) if !id.is_empty() => {
                let removed = lock(&self.data).attributes.remove(*id).is_some();
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
        stats.insert("tokens_revoked".into(), json!(data.tokens_revoked));
        stats.insert("triggers".into(), json!(data.triggers.len()));
        stats.insert("attribute_overrides".into(), json!(data.attributes.len()));
        stats.insert(
            "conversations_not_found".into(),
            json!(data.conversations_not_found),
        );
        stats.insert(
            "rate_limited".into(),
            json!(data.budget.refused + data.resource_budget.refused),
        );
        stats.insert(
            "resource_rate_limited".into(),
            json!(data.resource_budget.refused),
        );
        let posts = &data.workflows.posts;
        stats.insert(
            "workflows".into(),
            json!({
                "started": data.workflows.started,
                "criteria_unsupported": data.workflows.criteria_unsupported,
                "data_action_posts_2xx": posts.sent_2xx.load(Ordering::Relaxed),
                "data_action_posts_other": posts.sent_other.load(Ordering::Relaxed),
                "data_action_posts_failed": posts.failed.load(Ordering::Relaxed),
            }),
        );
        stats.insert("settings".into(), json!(data.settings));
        stats.insert("notifications".into(), self.notifications.stats());
        stats
    }

    fn reset(&self) {
        // Data Action POSTs still in flight count into the old counters, not the new ones.
        *lock(&self.data) = Data::default();
        self.notifications.reset();
    }
}

impl Genesys {
    fn settings(&self, req: &SimRequest) -> Reply {
        let patch: SettingsPatch = match serde_json::from_slice(&req.body) {
            Ok(p) => p,
            Err(e) => return Reply::bad_request(&format!("invalid settings: {e}")),
        };
        if let Some(limits) = &patch.resource_rate_limits {
            if limits.values().any(|n| *n == 0) {
                return Reply::bad_request("resource_rate_limits must be at least 1");
            }
        }
        let mut data = lock(&self.data);
        if let Some(limits) = patch.resource_rate_limits {
            data.settings.resource_rate_limits = limits;
        }
        Reply::ok(json!(data.settings))
    }
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
