//! The worker: two consumer loops (fresh events on the raw topic, due retries on the
//! retry topics) feeding one [`Processor`] that routes each event, syncs it downstream
//! with an idempotency key, and hands failures to a retry tier or the dead-letter topic.

mod event_view;
mod failure;
mod hand_off;
mod processor;
mod retry_policy;
mod router;
mod routes;

pub use failure::{ErrorClass, Failure};
pub use hand_off::{FailureHandOff, HandOff, Provenance};
pub use processor::Processor;
pub use retry_policy::{NextStep, RetryPolicy};
pub use router::{Route, RouteTable, DEFAULT_ROUTES};
pub use routes::{Outcome, Routes};
