//! Idempotent webhook registration: make sure exactly one webhook with a given name
//! points at our ingress, creating or updating it only when needed, so running
//! `genesys-relay webhooks register` twice changes nothing the second time.

use super::{GenesysClient, GenesysError};

/// Page size used while searching; the API's own default.
const PAGE_SIZE: u32 = 25;
/// A guard against a server that never reports the last page.
const MAX_PAGES: u32 = 10_000;

/// The webhook we want to exist.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookSpec {
    pub name: String,
    pub url: String,
}

/// What registration had to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RegistrationOutcome {
    Created { id: String },
    Updated { id: String },
    Unchanged { id: String },
}

impl RegistrationOutcome {
    /// The id of the webhook that now matches the spec.
    pub fn id(&self) -> &str {
        match self {
            RegistrationOutcome::Created { id }
            | RegistrationOutcome::Updated { id }
            | RegistrationOutcome::Unchanged { id } => id,
        }
    }
}

/// Finds the webhook named `spec.name` across every page; leaves it alone when it already
/// points at `spec.url` and is enabled, updates it otherwise, and creates it when missing.
pub async fn register_webhook(
    client: &GenesysClient,
    spec: &WebhookSpec,
) -> Result<RegistrationOutcome, GenesysError> {
    let existing = find_by_name(client, &spec.name).await?;
    let outcome = match existing {
        // A disabled webhook delivers nothing, so it counts as needing an update.
        Some(hook) if hook.url == spec.url && hook.enabled != Some(false) => {
            RegistrationOutcome::Unchanged { id: hook.id }
        }
        Some(hook) => {
            let updated = client.update_webhook(&hook.id, spec).await?;
            RegistrationOutcome::Updated {
                id: if updated.id.is_empty() {
                    hook.id
                } else {
                    updated.id
                },
            }
        }
        None => {
            let created = client.create_webhook(spec).await?;
            RegistrationOutcome::Created { id: created.id }
        }
    };
    tracing::info!(name = %spec.name, outcome = ?outcome, "webhook registration");
    Ok(outcome)
}

async fn find_by_name(
    client: &GenesysClient,
    name: &str,
) -> Result<Option<super::Webhook>, GenesysError> {
    for page_number in 1..=MAX_PAGES {
        let page = client.list_webhooks_page(page_number, PAGE_SIZE).await?;
        if page.entities.is_empty() {
            return Ok(None);
        }
        if let Some(hook) = page.entities.into_iter().find(|h| h.name == name) {
            return Ok(Some(hook));
        }
        if page.page_count.is_some_and(|count| page_number >= count) {
            return Ok(None);
        }
    }
    Err(GenesysError::Decode(format!(
        "webhook listing did not end after {MAX_PAGES} pages"
    )))
}
