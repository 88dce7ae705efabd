//! The operator console: server-rendered pages on the admin listener (`/console`) to see
//! what the relay is doing and to find, read and replay dead letters.
//!
//! Parts: [`settings`] (`RELAY_ADMIN_TOKEN`), [`auth`] (bearer token, session cookie,
//! CSRF), [`kafka_view`] (lag, depths, dead letters read from Kafka), [`metrics_view`]
//! (this process's counters), [`html`] (escaping and the page frame), and one module per
//! page: [`overview`], [`dead_letters`], [`listen`].
//!
//! Invariants: without `RELAY_ADMIN_TOKEN` every `/console` path answers 404 saying the
//! console is off, and nothing else changes (`/metrics`, `/healthz`, `/readyz` never need
//! the token). Every other path needs the token; every POST made with the session cookie
//! carries the session's CSRF token. Replays go through
//! [`crate::operator::replay_dead_letters`], the code of `genesys-relay dlq replay`. No
//! page shows a secret: the token is never echoed, and header values or payload fields
//! whose names mark credentials are redacted.

mod auth;
mod dead_letters;
mod html;
mod kafka_view;
mod listen;
mod metrics_view;
mod overview;
mod settings;

pub use listen::{ListenStatus, RejectedTopic};
pub use settings::{ConsoleSettings, MIN_TOKEN_CHARS};

use crate::clock::now_ms;
use crate::kafka::EventProducer;
use crate::metrics::Metrics;
use crate::schema::Codec;
use auth::{Access, Keys, Refusal};
use bytes::Bytes;
use html::{bare_page, esc, Frame, Tab};
use std::sync::Arc;
use warp::filters::BoxedFilter;
use warp::http::{HeaderMap, Method, Response, StatusCode};
use warp::hyper::Body;
use warp::Filter;

/// Largest form body accepted (a selection of a few thousand event ids).
const MAX_FORM_BYTES: u64 = 1024 * 1024;
/// Pause before answering a sign-in with a wrong token.
const WRONG_TOKEN_DELAY: std::time::Duration = std::time::Duration::from_millis(500);

/// What the console needs from the composition root.
pub struct ConsoleContext {
    pub settings: ConsoleSettings,
    /// Kafka access and the topic names, as the dead-letter commands take them.
    pub operator: crate::operator::OperatorSettings,
    /// The worker group of the raw topic (retries: `<group>-retry`).
    pub consumer_group: String,
    pub producer: Arc<EventProducer>,
    pub metrics: Arc<Metrics>,
    pub codec: Codec,
    /// Names this process on pages, e.g. `serve on host-1 (pid 42)`.
    pub process: String,
    /// `RELAY_GENESYS_RATE_LIMIT` when this process calls Genesys.
    pub genesys_budget_per_minute: Option<u32>,
    /// Listen topics and queue selection as configured (`RELAY_LISTEN_*`), one line each.
    pub listen_configured: Vec<String>,
    /// What the listener reports beyond its metrics; `None` where it reports nothing.
    pub listen_status: Option<Arc<dyn ListenStatus>>,
}

/// The console of one process.
pub struct Console {
    ctx: ConsoleContext,
    keys: Option<Keys>,
    rates: metrics_view::RateWindow,
}

/// One request as the console sees it.
struct Request {
    method: Method,
    path: String,
    query: String,
    headers: HeaderMap,
    body: Bytes,
}

/// A signed-in request.
struct Session<'a> {
    console: &'a Console,
    access: Access,
}

impl Session<'_> {
    /// The session's CSRF token (bearer access has none: it needs none).
    fn csrf(&self) -> Option<String> {
        match (&self.access, &self.console.keys) {
            (Access::Session(s), Some(k)) => Some(k.csrf_for(s)),
            _ => None,
        }
    }

    fn frame<'b>(&'b self, title: &'b str, tab: Tab, csrf: Option<&'b str>) -> Frame<'b> {
        Frame {
            title,
            tab,
            process: &self.console.ctx.process,
            csrf,
            refresh_secs: None,
        }
    }
}

impl Console {
    pub fn new(ctx: ConsoleContext) -> Self {
        Console {
            keys: ctx.settings.token.clone().map(Keys::new),
            ctx,
            rates: Default::default(),
        }
    }

    /// True when `RELAY_ADMIN_TOKEN` is set.
    pub fn enabled(&self) -> bool {
        self.keys.is_some()
    }

    /// Every `/console` route, for the admin listener.
    pub fn routes(self: Arc<Self>) -> BoxedFilter<(Response<Body>,)> {
        let query = warp::query::raw().or(warp::any().map(String::new)).unify();
        // A GET has no Content-Length; a body over the limit (or without a length) is
        // read as empty, which a POST then fails on (no CSRF token, no form fields).
        let body = warp::body::content_length_limit(MAX_FORM_BYTES)
            .and(warp::body::bytes())
            .or(warp::any().map(Bytes::new))
            .unify();
        warp::path("console")
            .and(warp::path::tail())
            .and(warp::method())
            .and(query)
            .and(warp::header::headers_cloned())
            .and(body)
            .then(
                move |tail: warp::path::Tail, method, query, headers, body| {
                    let console = self.clone();
                    async move {
                        let req = Request {
                            method,
                            path: tail.as_str().trim_end_matches('/').to_string(),
                            query,
                            headers,
                            body,
                        };
                        console.handle(req).await
                    }
                },
            )
            .boxed()
    }

    async fn handle(&self, req: Request) -> Response<Body> {
        let Some(keys) = &self.keys else {
            return html_response(
                StatusCode::NOT_FOUND,
                bare_page(
                    "The console is off",
                    "<p>This process has no <code>RELAY_ADMIN_TOKEN</code>, so the operator console is off.</p>\
<p>Set <code>RELAY_ADMIN_TOKEN</code> (at least 16 characters) and restart to turn it on. \
<code>/metrics</code>, <code>/healthz</code> and <code>/readyz</code> work either way.</p>",
                ),
            );
        };
        let path = req.path.as_str();
        if path == "static/console.css" && req.method == Method::GET {
            return Response::builder()
                .header("content-type", "text/css; charset=utf-8")
                .header("cache-control", "max-age=300")
                .body(Body::from(html::CSS))
                .unwrap_or_default();
        }
        if path == "login" {
            return self.login(keys, &req).await;
        }
        let access = match keys.check(&req.headers, now_ms()) {
            Ok(a) => a,
            Err(Refusal::NoCredential) if req.method == Method::GET => {
                return redirect("/console/login", None);
            }
            Err(Refusal::NoCredential) => {
                return refusal(StatusCode::UNAUTHORIZED, "Sign in first.");
            }
            Err(Refusal::Invalid) => {
                let mut r = refusal(
                    StatusCode::UNAUTHORIZED,
                    "The token is wrong or the session has expired.",
                );
                let secure = auth::served_over_https(&req.headers);
                if let Ok(v) = auth::cleared_cookie(secure).parse() {
                    r.headers_mut().insert("set-cookie", v);
                }
                return r;
            }
        };
        let session = Session {
            console: self,
            access,
        };
        let form = if req.method == Method::POST {
            let form: Vec<(String, String)> = form_urlencoded::parse(&req.body)
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect();
            if let Access::Session(s) = &session.access {
                let sent = form
                    .iter()
                    .find(|(k, _)| k == "csrf")
                    .map_or("", |(_, v)| v.as_str());
                if !keys.csrf_valid(s, sent) {
                    return refusal(
                        StatusCode::FORBIDDEN,
                        "This action did not carry the page's CSRF token, so it was refused. Reload the page and try again.",
                    );
                }
            }
            form
        } else {
            Vec::new()
        };
        let segments: Vec<&str> = path.split('/').collect();
        match (&req.method, segments.as_slice()) {
            (&Method::GET, [""] | ["overview"]) => overview::page(&session).await,
            (&Method::GET, ["dead-letters"]) => dead_letters::list(&session, &req.query).await,
            (&Method::GET, ["dead-letters", p, o]) => match (p.parse(), o.parse()) {
                (Ok(p), Ok(o)) => dead_letters::detail(&session, p, o).await,
                _ => not_found(),
            },
            (&Method::POST, ["dead-letters", "replay"]) => {
                dead_letters::replay(&session, &form).await
            }
            (&Method::GET, ["listen"]) => listen::page(&session),
            (&Method::POST, ["logout"]) => {
                let secure = auth::served_over_https(&req.headers);
                redirect("/console/login", Some(auth::cleared_cookie(secure)))
            }
            _ => not_found(),
        }
    }

    /// `GET` shows the form; `POST` checks the token and sets the session cookie.
    async fn login(&self, keys: &Keys, req: &Request) -> Response<Body> {
        let form_page = |status, message: &str| {
            html_response(
                status,
                bare_page(
                    "Sign in",
                    &format!(
                        "{message}<form method=\"post\" action=\"/console/login\" class=\"login\">\
<p><label for=\"token\">Admin token (<code>RELAY_ADMIN_TOKEN</code>)</label><br>\
<input type=\"password\" id=\"token\" name=\"token\" autocomplete=\"current-password\" required size=\"40\"></p>\
<p><button type=\"submit\" id=\"sign-in\">Sign in</button></p></form>\
<p class=\"muted\">Scripts can send <code>Authorization: Bearer &lt;token&gt;</code> instead.</p>"
                    ),
                ),
            )
        };
        if req.method != Method::POST {
            return form_page(StatusCode::OK, "");
        }
        let token = form_urlencoded::parse(&req.body)
            .find(|(k, _)| k == "token")
            .map(|(_, v)| v.into_owned())
            .unwrap_or_default();
        if !keys.token_matches(token.trim()) {
            tracing::warn!("console sign-in refused: wrong token");
            // Slows guessing down; the token's length already makes guessing hopeless.
            tokio::time::sleep(WRONG_TOKEN_DELAY).await;
            return form_page(
                StatusCode::UNAUTHORIZED,
                "<p class=\"notice bad\" id=\"login-error\">Wrong token: not signed in.</p>",
            );
        }
        let secure = auth::served_over_https(&req.headers);
        redirect(
            "/console",
            Some(auth::session_cookie(&keys.new_session(now_ms()), secure)),
        )
    }
}

/// An HTML answer with the console's security headers.
fn html_response(status: StatusCode, body: String) -> Response<Body> {
    Response::builder()
        .status(status)
        .header("content-type", "text/html; charset=utf-8")
        .header("cache-control", "no-store")
        .header(
            "content-security-policy",
            "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        )
        .header("x-frame-options", "DENY")
        .header("x-content-type-options", "nosniff")
        .header("referrer-policy", "no-referrer")
        .body(Body::from(body))
        .unwrap_or_default()
}

fn redirect(to: &str, cookie: Option<String>) -> Response<Body> {
    let mut b = Response::builder()
        .status(StatusCode::SEE_OTHER)
        .header("location", to)
        .header("cache-control", "no-store");
    if let Some(c) = cookie {
        b = b.header("set-cookie", c);
    }
    b.body(Body::empty()).unwrap_or_default()
}

fn refusal(status: StatusCode, why: &str) -> Response<Body> {
    html_response(
        status,
        bare_page(
            "Refused",
            &format!(
                "<p class=\"notice bad\" id=\"refusal\">{}</p><p><a href=\"/console/login\">Sign in</a></p>",
                esc(why)
            ),
        ),
    )
}

fn not_found() -> Response<Body> {
    html_response(
        StatusCode::NOT_FOUND,
        bare_page("Not found", "<p><a href=\"/console\">Overview</a></p>"),
    )
}

/// Runs a blocking Kafka read off the async threads.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, rdkafka::error::KafkaError> + Send + 'static,
) -> Result<T, String> {
    match tokio::task::spawn_blocking(f).await {
        Ok(r) => r.map_err(|e| e.to_string()),
        Err(e) => Err(e.to_string()),
    }
}
