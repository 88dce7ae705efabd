//! The HTTP floor of the ingress benchmark (scripts/bench-matrix.sh): a bare warp handler on
//! the relay's warp and tokio versions that reads the whole body of `POST /webhooks/genesys`
//! and answers 202, with no authentication, parsing or Kafka. What the relay adds on top of
//! this is the cost of its own work; the floor is the best any warp server does here.
//!
//! Invariant: nothing but reading the body happens before the answer, so the floor stays a
//! floor; it must not grow features of the relay.
//!
//!   cargo build --release --example bench_floor
//!   target/release/examples/bench_floor 127.0.0.1:18080

use std::net::SocketAddr;

use warp::Filter;

#[tokio::main]
async fn main() {
    let addr: SocketAddr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:18080".into())
        .parse()
        .expect("usage: bench_floor IP:PORT");
    let route = warp::post()
        .and(warp::path!("webhooks" / "genesys"))
        .and(warp::body::content_length_limit(1 << 20))
        .and(warp::body::bytes())
        .map(|_body: bytes::Bytes| warp::reply::with_status("", warp::http::StatusCode::ACCEPTED));
    warp::serve(route).run(addr).await;
}
