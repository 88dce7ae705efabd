//! What every Kafka client of the relay reports, as it happens: librdkafka's log lines and
//! client errors (connection refused, authentication failed, TLS) reach the relay's log
//! naming the client, and the last error is kept so a start-up that cannot reach the
//! cluster can say why ([`check_cluster`]).
//!
//! Invariant: every client the relay creates (producer, consumers, idempotency tail,
//! topic reader, admin, start-up check) carries a [`RelayClientContext`] or delegates
//! to [`log_line`] and [`client_error`]. librdkafka hands log lines and errors to a
//! client's main queue; the producer and the consumers serve it as they poll, the admin
//! client does not (rust-rdkafka polls only its own result queue), so
//! [`MainQueueServer`] serves it for the admin.

use super::{client_config, KafkaSettings};
use rdkafka::client::{Client, ClientContext};
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::ConsumerContext;
use rdkafka::error::KafkaError;
use rdkafka::producer::{BaseProducer, DeliveryResult, Producer, ProducerContext};
use rdkafka::types::RDKafkaErrorCode;
use std::ffi::CStr;
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// What kind of trouble a client error is, for the start-up message and the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BrokerTrouble {
    ConnectionRefused,
    AuthenticationFailed,
    Tls,
    NameResolution,
    /// Any other client error (the detail says which).
    Other,
}

impl BrokerTrouble {
    /// From librdkafka's error code and its text (a refused connection is a transport
    /// error whose text says so; an SSL handshake failure can arrive as one too).
    pub fn classify(code: Option<RDKafkaErrorCode>, detail: &str) -> BrokerTrouble {
        let text = detail.to_ascii_lowercase();
        match code {
            Some(RDKafkaErrorCode::Authentication | RDKafkaErrorCode::SaslAuthenticationFailed) => {
                BrokerTrouble::AuthenticationFailed
            }
            Some(RDKafkaErrorCode::SSL) => BrokerTrouble::Tls,
            Some(RDKafkaErrorCode::Resolve) => BrokerTrouble::NameResolution,
            _ if text.contains("connection refused") => BrokerTrouble::ConnectionRefused,
            _ if text.contains("authentication") => BrokerTrouble::AuthenticationFailed,
            _ if text.contains("ssl") || text.contains("tls") => BrokerTrouble::Tls,
            _ if text.contains("resolve") => BrokerTrouble::NameResolution,
            _ => BrokerTrouble::Other,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            BrokerTrouble::ConnectionRefused => "connection refused",
            BrokerTrouble::AuthenticationFailed => "authentication failed",
            BrokerTrouble::Tls => "TLS failed",
            BrokerTrouble::NameResolution => "broker name not resolved",
            BrokerTrouble::Other => "client error",
        }
    }
}

/// One client error as librdkafka reported it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientError {
    pub trouble: BrokerTrouble,
    /// librdkafka's own text (it names the broker and the state it failed in).
    pub detail: String,
}

impl fmt::Display for ClientError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.trouble.as_str(), self.detail)
    }
}

/// The callbacks of a relay Kafka client: log lines and errors into the log, naming the
/// client; the last telling error kept for [`check_cluster`].
pub struct RelayClientContext {
    client: &'static str,
    last_error: Mutex<Option<ClientError>>,
}

impl RelayClientContext {
    /// `client` names the client in every log line (`producer`, `admin`, ...).
    pub fn new(client: &'static str) -> Self {
        RelayClientContext {
            client,
            last_error: Mutex::new(None),
        }
    }

    /// The last error that said more than "all brokers are down".
    pub fn last_error(&self) -> Option<ClientError> {
        self.last_error.lock().expect("last error lock").clone()
    }
}

impl ClientContext for RelayClientContext {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, log_message: &str) {
        log_line(self.client, level, fac, log_message);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        if let Some(e) = client_error(self.client, &error, reason) {
            *self.last_error.lock().expect("last error lock") = Some(e);
        }
    }
}

impl ConsumerContext for RelayClientContext {}

impl ProducerContext for RelayClientContext {
    type DeliveryOpaque = ();
    fn delivery(&self, _: &DeliveryResult<'_>, _: Self::DeliveryOpaque) {}
}

/// A librdkafka log line into the relay's log (target `librdkafka`, filtered by
/// `RELAY_LOG`), naming the client.
pub(crate) fn log_line(client: &str, level: RDKafkaLogLevel, fac: &str, message: &str) {
    match level {
        RDKafkaLogLevel::Emerg
        | RDKafkaLogLevel::Alert
        | RDKafkaLogLevel::Critical
        | RDKafkaLogLevel::Error => {
            tracing::error!(target: "librdkafka", client, facility = fac, "{message}")
        }
        RDKafkaLogLevel::Warning => {
            tracing::warn!(target: "librdkafka", client, facility = fac, "{message}")
        }
        RDKafkaLogLevel::Notice | RDKafkaLogLevel::Info => {
            tracing::info!(target: "librdkafka", client, facility = fac, "{message}")
        }
        RDKafkaLogLevel::Debug => {
            tracing::debug!(target: "librdkafka", client, facility = fac, "{message}")
        }
    }
}

/// A client error into the relay's log, as it happens; returns it classified unless it
/// only says that every broker is down (which would hide the cause that came before it).
pub(crate) fn client_error(client: &str, error: &KafkaError, reason: &str) -> Option<ClientError> {
    let code = error.rdkafka_error_code();
    let trouble = BrokerTrouble::classify(code, reason);
    let cause = trouble.as_str();
    match trouble {
        BrokerTrouble::AuthenticationFailed | BrokerTrouble::Tls => {
            tracing::error!(client, cause, %error, "kafka client error: {reason}")
        }
        _ => tracing::warn!(client, cause, %error, "kafka client error: {reason}"),
    }
    (code != Some(RDKafkaErrorCode::AllBrokersDown)).then(|| ClientError {
        trouble,
        detail: reason.to_string(),
    })
}

/// Serves a client's main queue (log lines and errors) on a thread of its own, for clients
/// whose owner does not poll it (the admin client). Stops and joins when dropped; it holds
/// the client's main queue, so it must be dropped before the client (a local declared
/// after the client, or dropped explicitly).
pub(crate) struct MainQueueServer {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// The client's main queue, handed to the serving thread.
struct MainQueue(*mut rdkafka::bindings::rd_kafka_queue_t);
// SAFETY: librdkafka queues are thread-safe; the handle is used by one thread only and
// destroyed by it.
unsafe impl Send for MainQueue {}

impl MainQueueServer {
    pub(crate) fn start<C: ClientContext + 'static>(
        client: &Client<C>,
        name: &'static str,
    ) -> Self {
        use rdkafka::bindings as rd;
        // SAFETY: the client is alive; the queue reference is released by the thread, which
        // is joined before the client goes (see the type's doc).
        let queue = MainQueue(unsafe { rd::rd_kafka_queue_get_main(client.native_ptr()) });
        let context = client.context().clone();
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        let thread = std::thread::Builder::new()
            .name(format!("{name} log"))
            .spawn(move || {
                let queue = queue;
                while !stopped.load(Ordering::Relaxed) {
                    // SAFETY: a valid queue; every returned event is destroyed below.
                    let event = unsafe { rd::rd_kafka_queue_poll(queue.0, 100) };
                    if event.is_null() {
                        continue;
                    }
                    unsafe {
                        match rd::rd_kafka_event_type(event) {
                            rd::RD_KAFKA_EVENT_LOG => {
                                let mut fac = std::ptr::null();
                                let mut text = std::ptr::null();
                                let mut level = 0;
                                if rd::rd_kafka_event_log(event, &mut fac, &mut text, &mut level)
                                    == 0
                                {
                                    context.log(
                                        log_level(level),
                                        CStr::from_ptr(fac).to_string_lossy().trim(),
                                        CStr::from_ptr(text).to_string_lossy().trim(),
                                    );
                                }
                            }
                            rd::RD_KAFKA_EVENT_ERROR => {
                                let code = RDKafkaErrorCode::from(rd::rd_kafka_event_error(event));
                                let text = rd::rd_kafka_event_error_string(event);
                                let text = if text.is_null() {
                                    String::new()
                                } else {
                                    CStr::from_ptr(text).to_string_lossy().into_owned()
                                };
                                context.error(KafkaError::Global(code), &text);
                            }
                            _ => {}
                        }
                        rd::rd_kafka_event_destroy(event);
                    }
                }
                // SAFETY: the reference taken above, released once.
                unsafe { rd::rd_kafka_queue_destroy(queue.0) };
            })
            .expect("spawn the Kafka log thread");
        MainQueueServer {
            stop,
            thread: Some(thread),
        }
    }
}

/// librdkafka's syslog level as rdkafka's enum (its own conversion is private).
fn log_level(level: i32) -> RDKafkaLogLevel {
    match level {
        0 => RDKafkaLogLevel::Emerg,
        1 => RDKafkaLogLevel::Alert,
        2 => RDKafkaLogLevel::Critical,
        3 => RDKafkaLogLevel::Error,
        4 => RDKafkaLogLevel::Warning,
        5 => RDKafkaLogLevel::Notice,
        6 => RDKafkaLogLevel::Info,
        _ => RDKafkaLogLevel::Debug,
    }
}

impl Drop for MainQueueServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The cluster did not answer within the start-up wait.
#[derive(Debug, thiserror::Error)]
#[error(
    "Kafka brokers {brokers} did not answer within {}s (RELAY_KAFKA_STARTUP_TIMEOUT); last cause: {}",
    waited.as_secs_f64().round(),
    cause.as_ref().map_or_else(|| "none reported (no answer in time)".to_string(), ToString::to_string)
)]
pub struct ClusterUnreachable {
    /// `RELAY_KAFKA_BROKERS` as set.
    pub brokers: String,
    pub waited: Duration,
    /// The last error librdkafka reported, if any.
    pub cause: Option<ClientError>,
}

impl ClusterUnreachable {
    pub fn trouble(&self) -> Option<BrokerTrouble> {
        self.cause.as_ref().map(|c| c.trouble)
    }
}

/// Waits until the cluster answers a metadata request, at most `RELAY_KAFKA_STARTUP_TIMEOUT`,
/// logging client errors as they come; then fails naming the brokers and the last cause.
/// Blocking (run it on a blocking thread). A client that cannot even be created (a bad
/// `RELAY_KAFKA_*` passthrough setting) fails at once.
pub fn check_cluster(cfg: &KafkaSettings) -> Result<(), StartupCheckError> {
    let producer: BaseProducer<RelayClientContext> =
        client_config(cfg, &[]).create_with_context(RelayClientContext::new("start-up check"))?;
    // Log lines and errors as they come (nothing else polls this client); dropped first.
    let events = MainQueueServer::start(producer.client(), "start-up check");
    let started = Instant::now();
    let deadline = started + cfg.startup_timeout;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let attempt = left
            .min(Duration::from_secs(1))
            .max(Duration::from_millis(10));
        match producer.client().fetch_metadata(None, attempt) {
            Ok(_) => {
                tracing::info!(brokers = %cfg.brokers, "Kafka cluster answered");
                return Ok(());
            }
            Err(e) if Instant::now() >= deadline => {
                drop(events);
                return Err(ClusterUnreachable {
                    brokers: cfg.brokers.clone(),
                    waited: started.elapsed(),
                    cause: producer.context().last_error().or_else(|| {
                        let detail = e.to_string();
                        Some(ClientError {
                            trouble: BrokerTrouble::classify(e.rdkafka_error_code(), &detail),
                            detail,
                        })
                        .filter(|c| c.trouble != BrokerTrouble::Other)
                    }),
                }
                .into());
            }
            Err(_) => std::thread::sleep(Duration::from_millis(100).min(left)),
        }
    }
}

/// Why the start-up check failed.
#[derive(Debug, thiserror::Error)]
pub enum StartupCheckError {
    #[error(transparent)]
    Unreachable(#[from] ClusterUnreachable),
    #[error("cannot create a Kafka client: {0}")]
    Client(#[from] KafkaError),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn troubles_are_told_apart() {
        let c = |code, text| BrokerTrouble::classify(code, text);
        assert_eq!(
            c(
                Some(RDKafkaErrorCode::BrokerTransportFailure),
                "127.0.0.1:1/bootstrap: Connect to ipv4#127.0.0.1:1 failed: Connection refused (after 0ms in state CONNECT)"
            ),
            BrokerTrouble::ConnectionRefused
        );
        assert_eq!(
            c(
                Some(RDKafkaErrorCode::Authentication),
                "sasl_plaintext://127.0.0.1:9092/bootstrap: SASL authentication error: Authentication failed: Invalid username or password"
            ),
            BrokerTrouble::AuthenticationFailed
        );
        assert_eq!(
            c(
                Some(RDKafkaErrorCode::BrokerTransportFailure),
                "ssl://b:9093/bootstrap: SSL handshake failed: certificate verify failed"
            ),
            BrokerTrouble::Tls
        );
        assert_eq!(
            c(
                Some(RDKafkaErrorCode::Resolve),
                "Failed to resolve 'nohost:9092'"
            ),
            BrokerTrouble::NameResolution
        );
        assert_eq!(c(None, "something else"), BrokerTrouble::Other);
    }

    /// The admin client's errors reach its context only through [`MainQueueServer`]:
    /// rust-rdkafka's admin client polls its result queue alone, so without the server the
    /// refused connection is never reported (what the relay did before).
    #[test]
    fn admin_errors_are_reported_only_with_the_main_queue_served() {
        use rdkafka::admin::AdminClient;
        let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = closed.local_addr().unwrap();
        drop(closed);
        let cfg = KafkaSettings::from_pairs(&[("RELAY_KAFKA_BROKERS", &addr.to_string())]).unwrap();
        let admin = |name| -> AdminClient<RelayClientContext> {
            client_config(&cfg, &[])
                .create_with_context(RelayClientContext::new(name))
                .unwrap()
        };
        let served = admin("admin");
        let log = MainQueueServer::start(served.inner(), "admin");
        let unserved = admin("admin unserved");
        let deadline = Instant::now() + Duration::from_secs(10);
        while served.inner().context().last_error().is_none() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        drop(log);
        let error = served
            .inner()
            .context()
            .last_error()
            .expect("an error reported");
        assert_eq!(error.trouble, BrokerTrouble::ConnectionRefused, "{error}");
        assert!(error.detail.contains(&addr.to_string()), "{error}");
        assert_eq!(unserved.inner().context().last_error(), None);
    }

    #[test]
    fn all_brokers_down_does_not_hide_the_cause() {
        let down = KafkaError::Global(RDKafkaErrorCode::AllBrokersDown);
        assert_eq!(client_error("t", &down, "1/1 brokers are down"), None);
        let refused = KafkaError::Global(RDKafkaErrorCode::BrokerTransportFailure);
        let e = client_error(
            "t",
            &refused,
            "Connect to ipv4#127.0.0.1:1 failed: Connection refused",
        )
        .unwrap();
        assert_eq!(e.trouble, BrokerTrouble::ConnectionRefused);
    }
}
