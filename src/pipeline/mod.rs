//! The worker's processing: one `Processor` that routes each event (route table), syncs
//! it downstream with an idempotency key (route handlers), and hands failures to a retry
//! tier or the dead-letter topic. The composition root (`app`) feeds it from two consumer
//! loops: fresh events on the raw topic, due retries on the retry topics.

mod event_view;
mod failure;
mod guest_scope;
mod hand_off;
mod outcome;
mod processor;
mod retry_policy;
mod route_handlers;
mod route_table;
mod settings;

pub use guest_scope::GuestScope;
pub(crate) use hand_off::FailureHandOff;
pub(crate) use processor::{declare_series, Processor};
pub(crate) use retry_policy::RetryPolicy;
pub(crate) use route_handlers::RouteHandlers;
pub(crate) use route_table::RouteTable;
// The console names the series it shows with the pipeline's own types.
pub(crate) use outcome::EventOutcome;
pub(crate) use route_table::Route;
pub use settings::{AttributeMapping, AttributeType, EntryKey, WorkerSettings};
