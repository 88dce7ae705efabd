//! Real HTTP simulators of Genesys Cloud, a headless CMS and a schema registry (control
//! routes: docs/contract.md#simulator-control-endpoints).
//!
//! Tests, benchmarks and the local stack run the relay against these instead of the
//! real services. Every request passes one pipeline ([`dispatch`]): `/__sim/...`
//! control routes are answered directly; any other request gets the configured
//! latency, then maybe an injected fault, then its handler, and is counted under its
//! route template (never a raw id) in `GET /__sim/stats`.
//!
//! Modules: [`faults`] (fault injection, request counts), [`genesys`] and [`cms`] (the
//! two APIs; [`triggers`], [`workflows`] and [`budget`] are parts of Genesys, [`notifications`] its
//! notification channels, their WebSockets and the paged queue listing; [`topics`] the SDK's
//! topic list), [`registry`] (a
//! Confluent-compatible schema registry), [`synth`]
//! (deterministic Genesys data), [`exchange`] (request/reply values), [`server`] (accept
//! loop and shutdown), [`clock`] (timestamps).

mod budget;
mod clock;
mod cms;
mod exchange;
mod faults;
mod genesys;
mod notifications;
mod registry;
mod server;
mod synth;
mod topics;
mod triggers;
mod workflows;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use serde_json::{json, Map, Value};
use warp::http::{HeaderMap, Method, StatusCode};
use warp::Filter;

use exchange::{Reply, SimRequest};
use faults::{Faults, RequestStats};

/// A running simulator. Dropping it also stops the server (without waiting).
pub struct SimServer {
    addr: SocketAddr,
    serving: server::Serving,
}

impl SimServer {
    /// The bound address (the real port when started on port 0).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://IP:PORT`, without a trailing slash.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stops accepting, lets requests in flight finish (up to 5 s), then closes every
    /// connection, idle keep-alive ones included.
    pub async fn shutdown(self) {
        self.serving.stop().await;
    }
}

/// Options of the Genesys Cloud simulator.
#[derive(Clone, Debug)]
pub struct GenesysSimOptions {
    /// The only client id `POST /oauth/token` accepts.
    pub client_id: String,
    /// The only client secret `POST /oauth/token` accepts.
    pub client_secret: String,
    /// Lifetime of issued tokens, unless `token_ttl_s` is set through `/__sim/faults`.
    pub token_ttl: Duration,
}

impl Default for GenesysSimOptions {
    fn default() -> Self {
        GenesysSimOptions {
            client_id: "sim-client".into(),
            client_secret: "sim-secret".into(),
            token_ttl: Duration::from_secs(3600),
        }
    }
}

/// Starts the Genesys Cloud simulator on `addr` (port 0 picks a free port).
pub async fn start_genesys(
    addr: SocketAddr,
    opts: GenesysSimOptions,
) -> std::io::Result<SimServer> {
    let faults = Arc::new(Faults::default());
    let notifications = notifications::Notifications::start(addr.ip(), Arc::clone(&faults)).await?;
    let backend = genesys::Genesys::new(opts, Arc::clone(&faults), notifications);
    serve(addr, backend, faults).await
}

/// Starts the CMS simulator on `addr` (port 0 picks a free port).
pub async fn start_cms(addr: SocketAddr) -> std::io::Result<SimServer> {
    let faults = Arc::new(Faults::default());
    serve(addr, cms::Cms::new(Arc::clone(&faults)), faults).await
}

/// Starts the schema registry simulator on `addr` (port 0 picks a free port): the
/// Confluent API subset the relay uses, as Redpanda's built-in registry serves it.
pub async fn start_schema_registry(addr: SocketAddr) -> std::io::Result<SimServer> {
    serve(
        addr,
        registry::Registry::default(),
        Arc::new(Faults::default()),
    )
    .await
}

/// Where a request landed in a simulated API.
pub(crate) enum Routed<R> {
    /// A route; `template` is `"<METHOD> <path template>"`, the stats key.
    Found {
        template: &'static str,
        route: R,
    },
    /// A known path with another method; `path` is the path template (`/v1/entries/{id}`).
    WrongMethod {
        path: &'static str,
    },
    NotFound,
}

/// One simulated API. Handlers are synchronous on purpose: state sits behind plain
/// mutexes, and nothing can hold a lock across an `.await` that does not exist.
pub(crate) trait Backend: Send + Sync + 'static {
    type Route: Send;
    fn route(&self, req: &SimRequest) -> Routed<Self::Route>;
    fn handle(&self, route: Self::Route, req: &SimRequest) -> Reply;
    /// A request for `route` arrived (before any latency or fault): lets an API count
    /// every request a client sent, also those it never answers.
    fn arrived(&self, _route: &Self::Route, _req: &SimRequest) {}
    /// `route`'s request was answered with an injected fault instead of the handler.
    fn faulted(&self, _route: &Self::Route, _req: &SimRequest, _status: StatusCode) {}
    /// Extra `/__sim/...` routes of this API; `None` when the path is not one of them.
    fn control(&self, req: &SimRequest) -> Option<Reply>;
    /// API-specific fields of `GET /__sim/stats`.
    fn stats(&self) -> Map<String, Value>;
    /// Forgets all data (`POST /__sim/reset`).
    fn reset(&self);
}

struct Sim<B> {
    backend: B,
    faults: Arc<Faults>,
    requests: RequestStats,
}

async fn serve<B: Backend>(
    addr: SocketAddr,
    backend: B,
    faults: Arc<Faults>,
) -> std::io::Result<SimServer> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    let sim = Arc::new(Sim {
        backend,
        faults,
        requests: RequestStats::default(),
    });
    let in_flight = server::InFlight::default();
    let tracker = in_flight.clone();
    // `query::raw` rejects requests without a query string; fall back to "".
    let query = warp::query::raw().or(warp::any().map(String::new)).unify();
    let filter = warp::any()
        .map(move || (Arc::clone(&sim), tracker.enter()))
        .and(warp::method())
        .and(warp::path::full())
        .and(query)
        .and(warp::header::headers_cloned())
        .and(warp::body::bytes())
        .and_then(
            |(sim, in_flight): (Arc<Sim<B>>, server::InFlightGuard),
             method: Method,
             path: warp::path::FullPath,
             query: String,
             headers: HeaderMap,
             body: Bytes| async move {
                // `in_flight` is held until the reply is built, so shutdown waits for
                // this request.
                let req = SimRequest::new(method, path.as_str(), query, headers, body);
                let reply = dispatch(&sim, req).await;
                if let exchange::Delivery::Hang(hold) = reply.delivery {
                    // No answer within any client timeout; shutdown need not wait for it.
                    drop(in_flight);
                    tokio::time::sleep(hold).await;
                }
                Ok::<_, Infallible>(reply.into_response())
            },
        );
    let serving = server::spawn(listener, warp::service(filter), in_flight);
    tracing::info!(addr = %bound, "simulator listening");
    Ok(SimServer {
        addr: bound,
        serving,
    })
}

async fn dispatch<B: Backend>(sim: &Sim<B>, req: SimRequest) -> Reply {
    if req.segments.first().map(String::as_str) == Some("__sim") {
        return control(sim, &req);
    }
    let routed = sim.backend.route(&req);
    if let Routed::Found { route, .. } = &routed {
        sim.backend.arrived(route, &req);
    }
    let latency = sim.faults.latency();
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    // A faulted request never reaches the handler, so it cannot change any state.
    let (template, reply) = match (sim.faults.take_fault(), routed) {
        (Some(fault), Routed::Found { template, route }) => {
            sim.backend.faulted(&route, &req, fault.status);
            (template.to_string(), fault)
        }
        (Some(fault), Routed::WrongMethod { path }) => (format!("{} {path}", req.method), fault),
        (Some(fault), Routed::NotFound) => (unmatched(&req.method), fault),
        (None, Routed::Found { template, route }) => {
            (template.to_string(), sim.backend.handle(route, &req))
        }
        (None, Routed::WrongMethod { path }) => (
            format!("{} {path}", req.method),
            Reply::method_not_allowed(),
        ),
        (None, Routed::NotFound) => (unmatched(&req.method), Reply::not_found("no such route")),
    };
    sim.requests.record(template, reply.status, reply.delivery);
    reply
}

/// Stats key for paths no route matches; the raw path is left out to keep keys bounded.
fn unmatched(method: &Method) -> String {
    format!("{method} <unmatched>")
}

/// `/__sim/...`: not subject to faults and not counted in `requests`.
fn control<B: Backend>(sim: &Sim<B>, req: &SimRequest) -> Reply {
    let segs = req.segs();
    match (&req.method, segs.as_slice()) {
        (&Method::GET, ["__sim", "faults"]) => Reply::ok(json!(sim.faults.snapshot())),
        (&Method::POST, ["__sim", "faults"]) => match sim.faults.patch(&req.body) {
            Ok(settings) => Reply::ok(json!(settings)),
            Err(message) => Reply::bad_request(&message),
        },
        (&Method::DELETE, ["__sim", "faults"]) => {
            sim.faults.clear();
            Reply::ok(json!(sim.faults.snapshot()))
        }
        (&Method::GET, ["__sim", "stats"]) => {
            let mut stats = sim.backend.stats();
            stats.insert("requests".into(), sim.requests.to_json());
            stats.insert("faults".into(), json!(sim.faults.snapshot()));
            Reply::ok(Value::Object(stats))
        }
        (&Method::POST, ["__sim", "reset"]) => {
            sim.backend.reset();
            sim.requests.clear();
            sim.faults.clear();
            Reply::ok(json!({"reset": true}))
        }
        _ => sim.backend.control(req).unwrap_or_else(|| {
            Reply::json(
                StatusCode::NOT_FOUND,
                json!({"error": "no such control route"}),
            )
        }),
    }
}
