//! The admin listener (`RELAY_ADMIN_ADDR`): `/healthz` (process alive), `/readyz` (broker
//! reachable, and a partition assigned where a worker runs), `/metrics` (Prometheus text),
//! and the operator console under `/console` ([`crate::console`], which guards itself).

use crate::kafka::EventProducer;
use crate::metrics::Metrics;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use warp::http::StatusCode;
use warp::Filter;

/// What `/readyz` looks at.
#[derive(Clone)]
pub(crate) struct Readiness {
    pub(crate) producer: Arc<EventProducer>,
    /// One flag per worker consumer: true while it has partitions assigned.
    pub(crate) consumers_assigned: Vec<Arc<AtomicBool>>,
}

impl Readiness {
    async fn check(&self) -> Result<(), &'static str> {
        if !self.producer.broker_reachable(Duration::from_secs(2)).await {
            return Err("broker unreachable");
        }
        if !self
            .consumers_assigned
            .iter()
            .all(|a| a.load(Ordering::Relaxed))
        {
            return Err("consumer has no partition assigned");
        }
        Ok(())
    }
}

/// Binds the admin listener; returns its address and the server future.
pub(crate) fn bind(
    addr: SocketAddr,
    metrics: Arc<Metrics>,
    readiness: Readiness,
    console: Arc<crate::console::Console>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(SocketAddr, impl std::future::Future<Output = ()>), warp::Error> {
    let healthz = warp::path!("healthz").and(warp::get()).map(|| "ok");
    let readyz = warp::path!("readyz").and(warp::get()).then(move || {
        let readiness = readiness.clone();
        async move {
            match readiness.check().await {
                Ok(()) => warp::reply::with_status("ready".to_string(), StatusCode::OK),
                Err(why) => warp::reply::with_status(
                    format!("not ready: {why}"),
                    StatusCode::SERVICE_UNAVAILABLE,
                ),
            }
        }
    });
    let metrics_route = warp::path!("metrics").and(warp::get()).map(move || {
        warp::reply::with_header(
            metrics.render(),
            "content-type",
            "text/plain; version=0.0.4",
        )
    });
    let console = console.routes();
    warp::serve(healthz.or(readyz).or(metrics_route).or(console))
        .try_bind_with_graceful_shutdown(addr, shutdown)
}
