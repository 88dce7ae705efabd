//! Genesys Cloud Platform API: its settings ([`GenesysSettings`]), the OAuth client-credentials [`TokenSource`], the
//! process-wide request [`budget`], the [`GenesysClient`] the worker uses to read
//! conversations (through a short-lived cache with one request in flight per id), and
//! idempotent Process Automation trigger registration ([`register_trigger`]).
//!
//! Every endpoint, field and header used here is listed, with its source, in
//! `docs/genesys-api.md`. Failures come back as [`HttpError`] (service `genesys`), which the
//! pipeline classifies as retriable or permanent.

pub(crate) mod budget;
mod client;
mod conversations;
mod settings;
mod token;
mod triggers;

pub use crate::outbound::HttpError;
pub(crate) use client::CallPolicy;
pub use client::GenesysClient;
pub use conversations::{Conversation, Message, Participant};
pub use settings::{GenesysConfig, GenesysSettings};
pub use token::TokenSource;
pub use triggers::{register_trigger, RegistrationOutcome, TriggerSpec};

/// The `service` of every [`HttpError`] from Genesys Cloud.
pub(crate) const SERVICE: &str = "genesys";

/// `{base}/{segments...}`, every segment percent-encoded.
pub(crate) fn api_url(base: &str, segments: &[&str]) -> Result<reqwest::Url, HttpError> {
    crate::outbound::url_with_segments(base, segments)
}
