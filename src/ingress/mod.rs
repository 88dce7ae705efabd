//! The webhook ingress: `POST /webhooks/genesys` checks a delivery and writes it to the raw
//! topic, answering 202 only after the broker acknowledged the record
//! (docs/contract.md#http-endpoints).
//! Plain HTTP, or HTTPS with `RELAY_TLS_CERT` / `RELAY_TLS_KEY` (EventBridge API
//! destinations only call HTTPS endpoints).
//!
//! Invariants: a request is authenticated unless `RELAY_WEBHOOK_AUTH=none` was set on
//! purpose; a body the ingress accepts always fits in one record (`body_limit`), so a
//! broker refusal is transient (503) and a size refusal is 413, never a 503 forever.

mod auth;
mod body_limit;
mod server;
mod settings;

pub use auth::{AuthError, BasicAuth, IngressAuth, Presented, WebhookAuth, REPLAY_WINDOW_SECS};
pub use body_limit::{max_body_bytes, RECORD_OVERHEAD_BYTES};
pub use server::{ConnectionLimits, ServeError};
pub use settings::IngressSettings;

use crate::clock::now_ms;
use crate::config::ConfigError;
use crate::event::{parse_event, RawTopic};
use crate::kafka::ProduceError;
use crate::metrics::Metrics;
use bytes::Buf;
use futures::future::BoxFuture;
use futures::{FutureExt, Stream, StreamExt};
use rdkafka::error::KafkaError;
use rdkafka::types::RDKafkaErrorCode;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;
use warp::http::{HeaderMap, StatusCode};
use warp::{Filter, Reply};

/// How long a client should wait before redelivering after a 503.
const RETRY_AFTER_SECS: &str = "1";

/// Everything a request needs; shared by all requests.
pub(crate) struct Ingress {
    raw: RawTopic,
    auth: Option<IngressAuth>,
    secret_header: String,
    max_body_bytes: usize,
    tls: Option<Arc<tokio_rustls::rustls::ServerConfig>>,
    limits: ConnectionLimits,
    metrics: Arc<Metrics>,
}

/// Checks the ingress settings without building anything: credentials (required unless
/// `RELAY_WEBHOOK_AUTH=none`), the body limit against `message.max.bytes`, the TLS files.
/// Start-up calls this before touching the broker.
pub(crate) fn check_settings(
    settings: &IngressSettings,
    message_max_bytes: usize,
) -> Result<(), ConfigError> {
    settings.auth()?;
    max_body_bytes(settings, message_max_bytes)?;
    read_tls(settings)?;
    Ok(())
}

/// The TLS server configuration from the PEM files, or why they cannot serve, naming
/// the setting.
fn read_tls(
    settings: &IngressSettings,
) -> Result<Option<Arc<tokio_rustls::rustls::ServerConfig>>, ConfigError> {
    let Some((cert, key)) = &settings.tls else {
        return Ok(None);
    };
    let invalid = |name: &str, reason: String| ConfigError::Invalid {
        name: name.into(),
        reason,
    };
    let read = |name: &str, path: &std::path::Path| {
        let bytes = std::fs::read(path)
            .map_err(|e| invalid(name, format!("cannot read {}: {e}", path.display())))?;
        if !bytes.windows(11).any(|w| w == b"-----BEGIN ") {
            return Err(invalid(name, format!("{} is not PEM", path.display())));
        }
        Ok(bytes)
    };
    let cert_pem = read("RELAY_TLS_CERT", cert)?;
    let key_pem = read("RELAY_TLS_KEY", key)?;
    let certs = rustls_pemfile::certs(&mut cert_pem.as_slice())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| invalid("RELAY_TLS_CERT", format!("{}: {e}", cert.display())))?;
    if certs.is_empty() {
        return Err(invalid(
            "RELAY_TLS_CERT",
            format!("{} holds no certificate", cert.display()),
        ));
    }
    let private_key = rustls_pemfile::private_key(&mut key_pem.as_slice())
        .map_err(|e| invalid("RELAY_TLS_KEY", format!("{}: {e}", key.display())))?
        .ok_or_else(|| {
            invalid(
                "RELAY_TLS_KEY",
                format!("{} holds no private key", key.display()),
            )
        })?;
    let mut config = tokio_rustls::rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(certs, private_key)
        .map_err(|e| invalid("RELAY_TLS_KEY", format!("does not fit RELAY_TLS_CERT: {e}")))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Some(Arc::new(config)))
}

impl Ingress {
    pub(crate) fn new(
        settings: &IngressSettings,
        message_max_bytes: usize,
        raw: RawTopic,
        metrics: Arc<Metrics>,
    ) -> Result<Self, ConfigError> {
        let auth = settings.auth()?;
        if auth.is_none() {
            tracing::warn!("RELAY_WEBHOOK_AUTH=none: the ingress accepts unauthenticated requests");
        }
        Ok(Ingress {
            raw,
            auth,
            secret_header: settings.secret_header.to_ascii_lowercase(),
            max_body_bytes: max_body_bytes(settings, message_max_bytes)?,
            tls: read_tls(settings)?,
            limits: settings.limits,
            metrics,
        })
    }

    /// The largest body accepted.
    pub(crate) fn max_body_bytes(&self) -> usize {
        self.max_body_bytes
    }

    /// The warp filter serving `POST /webhooks/genesys`.
    pub(crate) fn routes(
        self: Arc<Self>,
    ) -> impl Filter<Extract = (warp::reply::Response,), Error = warp::Rejection> + Clone {
        warp::path!("webhooks" / "genesys")
            .and(warp::post())
            .and(warp::header::headers_cloned())
            .and(warp::body::stream())
            .then(move |headers: HeaderMap, body| {
                let ingress = self.clone();
                async move { ingress.handle(headers, body).await }
            })
    }

    /// Binds `addr` (HTTPS when TLS is configured) and serves until `shutdown` resolves;
    /// in-flight requests finish first. Connections are capped and bounded in time
    /// (`server`). Returns the bound address and the server future.
    pub(crate) fn bind(
        self: Arc<Self>,
        addr: SocketAddr,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> Result<(SocketAddr, BoxFuture<'static, ()>), ServeError> {
        let (tx, rx) = tokio::sync::watch::channel(false);
        let (bound, server) = server::bind(
            addr,
            warp::service(self.clone().routes()),
            self.tls.clone(),
            self.limits,
            self.metrics.clone(),
            rx,
        )?;
        // The server ends only after the signal (and the drain): join, not select.
        let server = async move {
            let signal = async move {
                shutdown.await;
                let _ = tx.send(true);
            };
            tokio::join!(server, signal);
        };
        Ok((bound, server.boxed()))
    }

    /// Whether the ingress serves HTTPS.
    pub(crate) fn is_tls(&self) -> bool {
        self.tls.is_some()
    }

    async fn handle<S, B>(&self, headers: HeaderMap, body: S) -> warp::reply::Response
    where
        S: Stream<Item = Result<B, warp::Error>> + Unpin,
        B: Buf,
    {
        let started = Instant::now();
        let (status, reply) = self.accept(&headers, body).await;
        self.metrics
            .ingress_requests_total
            .with_label_values(&[status.as_str()])
            .inc();
        self.metrics
            .ingress_request_duration_seconds
            .observe(started.elapsed().as_secs_f64());
        let mut response =
            warp::reply::with_status(warp::reply::json(&reply), status).into_response();
        if status == StatusCode::REQUEST_TIMEOUT {
            // The rest of a stalled body is not waited for: the connection closes.
            response
                .headers_mut()
                .insert("connection", "close".parse().expect("valid header"));
            self.metrics
                .ingress_connections_closed_total
                .with_label_values(&[server::Deadline::Body.as_str()])
                .inc();
        }
        if status == StatusCode::SERVICE_UNAVAILABLE {
            response.headers_mut().insert(
                "retry-after",
                RETRY_AFTER_SECS.parse().expect("valid header"),
            );
        }
        response
    }

    async fn accept<S, B>(
        &self,
        headers: &HeaderMap,
        mut body: S,
    ) -> (StatusCode, serde_json::Value)
    where
        S: Stream<Item = Result<B, warp::Error>> + Unpin,
        B: Buf,
    {
        let rejected = |status, error: String| {
            (
                status,
                serde_json::json!({"status": "rejected", "error": error}),
            )
        };
        if !is_json(headers) {
            return rejected(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "content type must be application/json".into(),
            );
        }
        let read_until = tokio::time::Instant::now() + self.limits.body_read_timeout;
        let read = read_limited(&mut body, headers, self.max_body_bytes);
        let body = match tokio::time::timeout_at(read_until, read)
            .await
            .unwrap_or(Err(BodyError::TimedOut))
        {
            Ok(b) => b,
            Err(BodyError::TimedOut) => {
                return rejected(
                    StatusCode::REQUEST_TIMEOUT,
                    format!(
                        "body not received within {:?}",
                        self.limits.body_read_timeout
                    ),
                )
            }
            Err(BodyError::TooLarge) => {
                // Read the rest (bounded) before answering: a sender still writing its
                // body when the connection closes sees a broken pipe, not the 413, and
                // senders retry a broken connection but never a 413.
                if content_length(headers).is_none_or(|len| len <= DRAIN_LIMIT_BYTES) {
                    let drain = discard(&mut body, DRAIN_LIMIT_BYTES);
                    let _ = tokio::time::timeout_at(read_until, drain).await;
                }
                return rejected(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    format!("body is over {} bytes", self.max_body_bytes),
                );
            }
            Err(BodyError::Read(e)) => {
                return rejected(StatusCode::BAD_REQUEST, format!("cannot read body: {e}"))
            }
        };
        if let Some(auth) = &self.auth {
            let given = Presented {
                static_header: headers
                    .get(self.secret_header.as_str())
                    .map(|v| v.as_bytes()),
                signature: headers
                    .get("x-relay-signature")
                    .and_then(|v| v.to_str().ok()),
                authorization: headers.get("authorization").map(|v| v.as_bytes()),
            };
            if let Err(e) = auth.verify(given, &body, now_ms() / 1000) {
                tracing::debug!(reason = %e, "webhook rejected: unauthenticated");
                return rejected(StatusCode::UNAUTHORIZED, e.to_string());
            }
        }
        let traceparent = headers
            .get("traceparent")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let event = match parse_event(&body, now_ms(), traceparent) {
            Ok(e) => e,
            Err(e) => return rejected(StatusCode::BAD_REQUEST, e.to_string()),
        };
        let record = match self.raw.record(&event) {
            Ok(r) => r,
            Err(e) => return rejected(StatusCode::BAD_REQUEST, e.to_string()),
        };
        // The ingress's failure policy: a refusal is answered (503, or 413 for size) and
        // the sender redelivers; nothing is retried here.
        match self.raw.write(&record).await {
            Ok(_) => (
                StatusCode::ACCEPTED,
                serde_json::json!({"status": "accepted", "eventId": event.event_id}),
            ),
            // Cannot happen within the start-up rule (`body_limit`); if a broker's or topic's
            // own limit is lower, a redelivery would fail the same way, so it is not a 503.
            Err(ProduceError::Kafka(
                KafkaError::MessageProduction(RDKafkaErrorCode::MessageSizeTooLarge)
                | KafkaError::MessageProduction(RDKafkaErrorCode::InvalidMessageSize),
            )) => {
                tracing::warn!(event_id = %event.event_id, bytes = record.value.len(), "record too large for the broker; answering 413");
                rejected(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "the event is too large for the broker's message size limit".into(),
                )
            }
            Err(e) => {
                tracing::warn!(error = %e, event_id = %event.event_id, "cannot write event; answering 503");
                (
                    StatusCode::SERVICE_UNAVAILABLE,
                    serde_json::json!({"status": "unavailable", "error": e.to_string()}),
                )
            }
        }
    }
}

fn is_json(headers: &HeaderMap) -> bool {
    let Some(ct) = headers.get("content-type").and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let essence = ct
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    essence == "application/json"
        || (essence.starts_with("application/") && essence.ends_with("+json"))
}

enum BodyError {
    TooLarge,
    /// Not read within `RELAY_INGRESS_BODY_TIMEOUT`.
    TimedOut,
    Read(warp::Error),
}

/// How much of a refused (over-size) body is read and dropped so the sender gets the 413
/// before the connection closes. Larger bodies are answered at once and the connection
/// closes under the sender, which then sees a reset instead.
const DRAIN_LIMIT_BYTES: u64 = 8 * 1024 * 1024;

fn content_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get("content-length")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
}

/// Reads and drops the rest of `body`, up to `limit` bytes.
async fn discard<S, B>(body: &mut S, limit: u64)
where
    S: Stream<Item = Result<B, warp::Error>> + Unpin,
    B: Buf,
{
    let mut read = 0u64;
    while read < limit {
        match body.next().await {
            Some(Ok(chunk)) => read += chunk.remaining() as u64,
            _ => return,
        }
    }
}

/// Reads the body, refusing more than `max` bytes without buffering them.
async fn read_limited<S, B>(
    body: &mut S,
    headers: &HeaderMap,
    max: usize,
) -> Result<Vec<u8>, BodyError>
where
    S: Stream<Item = Result<B, warp::Error>> + Unpin,
    B: Buf,
{
    let declared = content_length(headers);
    if declared.is_some_and(|len| len > max as u64) {
        return Err(BodyError::TooLarge);
    }
    let mut buf = Vec::with_capacity(declared.unwrap_or(4096).min(max as u64) as usize);
    while let Some(chunk) = body.next().await {
        let mut chunk = chunk.map_err(BodyError::Read)?;
        if buf.len() + chunk.remaining() > max {
            return Err(BodyError::TooLarge);
        }
        while chunk.has_remaining() {
            let part = chunk.chunk();
            buf.extend_from_slice(part);
            let n = part.len();
            chunk.advance(n);
        }
    }
    Ok(buf)
}
