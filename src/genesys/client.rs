//! The Genesys Cloud API calls the relay makes (guest profiles, conversations, webhooks)
//! and the retry handling every one of them shares: a 401 refreshes the token and retries
//! once, a 429 waits for `Retry-After` and retries a couple of times.

use std::sync::Arc;
use std::time::Duration;

use reqwest::{Method, StatusCode, Url};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::token::TokenSource;
use super::webhooks::WebhookSpec;
use super::{api_url, GenesysError};
use crate::config::GenesysConfig;
use crate::metrics::Metrics;
use crate::outbound;

/// Retries after a 429 before the error goes back to the caller, whose retry tiers wait
/// longer than we should while holding a worker slot.
const MAX_RATE_LIMIT_RETRIES: u32 = 2;
/// Wait used when a 429 carries no `Retry-After`.
const DEFAULT_RETRY_AFTER: Duration = Duration::from_secs(1);
/// Longest single wait on a 429; a longer `Retry-After` is the caller's to honour.
const MAX_RETRY_AFTER_WAIT: Duration = Duration::from_secs(10);

/// A Web Messaging guest as the guest-state sync reads it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GuestProfile {
    #[serde(default)]
    pub id: String,
    /// Custom attributes set by the web page (`cart_value`, `last_page`, ...).
    #[serde(default, alias = "customAttributes")]
    pub attributes: Map<String, Value>,
    #[serde(default)]
    pub updated_date: Option<String>,
}

/// A conversation as the fan-out route reads it: the fields it uses, plus the whole
/// answer in `raw` so the enriched record loses nothing.
#[derive(Debug, Clone, PartialEq)]
pub struct Conversation {
    pub id: String,
    pub start_time: Option<String>,
    pub end_time: Option<String>,
    pub participants: Vec<Participant>,
    pub raw: Value,
}

/// One participant of a [`Conversation`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Participant {
    #[serde(default)]
    pub id: String,
    #[serde(default)]
    pub purpose: Option<String>,
    #[serde(default)]
    pub name: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ConversationFields {
    #[serde(default)]
    id: String,
    #[serde(default)]
    start_time: Option<String>,
    #[serde(default)]
    end_time: Option<String>,
    #[serde(default)]
    participants: Vec<Participant>,
}

/// A registered webhook.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Webhook {
    pub id: String,
    pub name: String,
    pub url: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
}

/// One page of `GET /api/v2/webhooks`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WebhookPage {
    #[serde(default)]
    pub entities: Vec<Webhook>,
    #[serde(default)]
    pub page_size: Option<u32>,
    #[serde(default)]
    pub page_number: Option<u32>,
    #[serde(default)]
    pub total: Option<u64>,
    #[serde(default)]
    pub page_count: Option<u32>,
}

/// An answer after the client's own 401/429 handling, body already read.
struct Answer {
    status: StatusCode,
    retry_after: Option<Duration>,
    body: bytes::Bytes,
    /// The token the answer was obtained with, redacted from error bodies.
    token: String,
}

impl Answer {
    /// The answer itself when it is a success, else the Status error for it.
    fn success(self) -> Result<Answer, GenesysError> {
        if self.status.is_success() {
            return Ok(self);
        }
        Err(GenesysError::Status {
            status: self.status.as_u16(),
            retry_after: self.retry_after,
            message: outbound::error_body(&self.body, &[&self.token]),
        })
    }

    fn json<T: DeserializeOwned>(&self, what: &str) -> Result<T, GenesysError> {
        serde_json::from_slice(&self.body).map_err(|e| GenesysError::Decode(format!("{what}: {e}")))
    }
}

/// Client of the Genesys Cloud Platform API.
pub struct GenesysClient {
    api_base: String,
    http: reqwest::Client,
    metrics: Arc<Metrics>,
    tokens: TokenSource,
}

impl std::fmt::Debug for GenesysClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GenesysClient")
            .field("api_base", &self.api_base)
            .field("tokens", &self.tokens)
            .finish_non_exhaustive()
    }
}

impl GenesysClient {
    /// The client and its own [`TokenSource`]; share one client per process so every
    /// task uses the same cached token.
    pub fn new(cfg: GenesysConfig, http: reqwest::Client, metrics: Arc<Metrics>) -> Self {
        let api_base = cfg.api_base.clone();
        let tokens = TokenSource::new(cfg, http.clone(), metrics.clone());
        GenesysClient {
            api_base,
            http,
            metrics,
            tokens,
        }
    }

    /// The token source this client authenticates with.
    pub fn token_source(&self) -> &TokenSource {
        &self.tokens
    }

    /// `GET /api/v2/conversations/messaging/guests/{guestId}`; `None` when the guest is
    /// gone (404), which is normal: guests are ephemeral.
    pub async fn guest(&self, guest_id: &str) -> Result<Option<GuestProfile>, GenesysError> {
        let url = api_url(
            &self.api_base,
            &[
                "api",
                "v2",
                "conversations",
                "messaging",
                "guests",
                guest_id,
            ],
        )?;
        let answer = self.call("guest", Method::GET, url, None).await?;
        if answer.status == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        let mut guest: GuestProfile = answer.success()?.json("guest profile")?;
        if guest.id.is_empty() {
            guest.id = guest_id.to_string();
        }
        Ok(Some(guest))
    }

    /// `GET /api/v2/conversations/{id}`; `None` on 404.
    pub async fn conversation(&self, id: &str) -> Result<Option<Conversation>, GenesysError> {
        let url = api_url(&self.api_base, &["api", "v2", "conversations", id])?;
        let answer = self.call("conversation", Method::GET, url, None).await?;
        if answer.status == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        let raw: Value = answer.success()?.json("conversation")?;
        let fields = ConversationFields::deserialize(&raw)
            .map_err(|e| GenesysError::Decode(format!("conversation: {e}")))?;
        Ok(Some(Conversation {
            id: if fields.id.is_empty() {
                id.to_string()
            } else {
                fields.id
            },
            start_time: fields.start_time,
            end_time: fields.end_time,
            participants: fields.participants,
            raw,
        }))
    }

    /// `GET /api/v2/webhooks?pageSize=..&pageNumber=..` (page numbers start at 1).
    pub async fn list_webhooks_page(
        &self,
        page_number: u32,
        page_size: u32,
    ) -> Result<WebhookPage, GenesysError> {
        let mut url = api_url(&self.api_base, &["api", "v2", "webhooks"])?;
        url.query_pairs_mut()
            .append_pair("pageSize", &page_size.to_string())
            .append_pair("pageNumber", &page_number.to_string());
        let answer = self
            .call("webhooks", Method::GET, url, None)
            .await?
            .success()?;
        answer.json("webhook page")
    }

    /// `POST /api/v2/webhooks` with `{"name","url","enabled":true}`.
    pub async fn create_webhook(&self, spec: &WebhookSpec) -> Result<Webhook, GenesysError> {
        let url = api_url(&self.api_base, &["api", "v2", "webhooks"])?;
        let answer = self
            .call("webhooks", Method::POST, url, Some(&webhook_body(spec)))
            .await?
            .success()?;
        answer.json("created webhook")
    }

    /// `PUT /api/v2/webhooks/{id}` with `{"name","url","enabled":true}`.
    pub async fn update_webhook(
        &self,
        id: &str,
        spec: &WebhookSpec,
    ) -> Result<Webhook, GenesysError> {
        let url = api_url(&self.api_base, &["api", "v2", "webhooks", id])?;
        let answer = self
            .call("webhooks", Method::PUT, url, Some(&webhook_body(spec)))
            .await?
            .success()?;
        if answer.body.iter().all(u8::is_ascii_whitespace) {
            // A 204 says it worked without echoing the webhook; we know what we sent.
            return Ok(Webhook {
                id: id.to_string(),
                name: spec.name.clone(),
                url: spec.url.clone(),
                enabled: Some(true),
            });
        }
        answer.json("updated webhook")
    }

    /// Sends one request with the shared 401 and 429 handling; any status comes back as
    /// an [`Answer`] for the caller to interpret (404 means different things to different
    /// calls).
    async fn call(
        &self,
        endpoint: &'static str,
        method: Method,
        url: Url,
        body: Option<&Value>,
    ) -> Result<Answer, GenesysError> {
        let mut refreshed = false;
        let mut rate_limited = 0;
        loop {
            let token = self.tokens.token().await?;
            let mut request = self
                .http
                .request(method.clone(), url.clone())
                .bearer_auth(&token);
            if let Some(body) = body {
                request = request.json(body);
            }
            let response = match request.send().await {
                Ok(response) => response,
                Err(err) => {
                    let err = GenesysError::transport(err);
                    let label = if err.is_timeout() {
                        outbound::LABEL_TIMEOUT
                    } else {
                        outbound::LABEL_ERROR
                    };
                    self.count(endpoint, label);
                    return Err(err);
                }
            };
            let status = response.status();
            self.count(endpoint, &outbound::status_label(status));
            let retry_after = outbound::retry_after(response.headers());

            if status == StatusCode::UNAUTHORIZED && !refreshed {
                // Revoked or expired early: one fresh token, one more try. A second 401
                // means the credentials themselves are wrong, and goes to the caller.
                refreshed = true;
                self.tokens.invalidate(&token);
                drain(response).await;
                tracing::debug!(
                    endpoint,
                    "Genesys answered 401; refreshing the token and retrying once"
                );
                continue;
            }
            if status == StatusCode::TOO_MANY_REQUESTS && rate_limited < MAX_RATE_LIMIT_RETRIES {
                rate_limited += 1;
                let wait = retry_after
                    .unwrap_or(DEFAULT_RETRY_AFTER)
                    .min(MAX_RETRY_AFTER_WAIT);
                drain(response).await;
                tracing::debug!(
                    endpoint,
                    wait_ms = wait.as_millis() as u64,
                    "Genesys answered 429; waiting"
                );
                tokio::time::sleep(wait).await;
                continue;
            }

            let body = response.bytes().await.map_err(GenesysError::transport)?;
            return Ok(Answer {
                status,
                retry_after,
                body,
                token,
            });
        }
    }

    fn count(&self, endpoint: &str, status: &str) {
        self.metrics
            .genesys_requests_total
            .with_label_values(&[endpoint, status])
            .inc();
    }
}

fn webhook_body(spec: &WebhookSpec) -> Value {
    serde_json::json!({ "name": spec.name, "url": spec.url, "enabled": true })
}

/// Reads and discards a body we will not use, so the connection can be reused.
async fn drain(response: reqwest::Response) {
    let _ = response.bytes().await;
}
