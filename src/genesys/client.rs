//! The Genesys Cloud API calls the relay makes (conversations, Process Automation
//! triggers) and the handling every one of them shares: each request takes a slot of the
//! process's [`RequestBudget`] first, a 401 refreshes the token and retries once (a
//! second 401 comes back as the retryable [`HttpError::TokenRefused`]), a 429
//! pauses the budget for `Retry-After` (capped) and retries through it a couple of times;
//! a busy budget holds the lane in its turn; only a budget Genesys paused past
//! `RELAY_GENESYS_BUDGET_MAX_WAIT` comes back as [`HttpError::Deferred`].

use std::sync::Arc;
use std::time::Instant;

use reqwest::{Method, StatusCode, Url};
use serde_json::Value;

use super::budget::{RequestBudget, Slot};
use super::conversations::{Conversation, ConversationCache};
use super::token::TokenSource;
use super::GenesysConfig;
use super::{api_url, HttpError, SERVICE};
use crate::metrics::Metrics;
use crate::outbound::{self, Answer};

/// Retries after a 429 before the error goes back to the caller.
const MAX_RATE_LIMIT_RETRIES: u32 = 2;

/// How one kind of caller spends the request budget.
#[derive(Debug, Clone, Copy)]
pub(crate) struct CallPolicy {
    /// Wait for a budget slot however far away it is (the listener), instead of handing
    /// back [`HttpError::Deferred`] so a worker lane becomes a retry record.
    pub(crate) wait_for_far_slot: bool,
    /// 429 answers retried through the budget before the answer goes to the caller.
    pub(crate) rate_limit_retries: u32,
}

/// The policy of worker lanes and of `triggers register`.
const LANE: CallPolicy = CallPolicy {
    wait_for_far_slot: false,
    rate_limit_retries: MAX_RATE_LIMIT_RETRIES,
};
/// Wait used when a 429 carries no `Retry-After`.
const DEFAULT_RETRY_AFTER: std::time::Duration = std::time::Duration::from_secs(1);

/// Client of the Genesys Cloud Platform API; one per process (one token source, one
/// budget, one conversation cache).
pub struct GenesysClient {
    api_base: String,
    http: reqwest::Client,
    metrics: Arc<Metrics>,
    tokens: TokenSource,
    budget: RequestBudget,
    cache: ConversationCache,
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
    pub fn new(cfg: GenesysConfig, http: reqwest::Client, metrics: Arc<Metrics>) -> Self {
        let api_base = cfg.api_base.clone();
        let budget = RequestBudget::new(cfg.rate_limit_per_minute, cfg.budget_max_wait);
        let cache = ConversationCache::new(cfg.cache_ttl);
        let tokens = TokenSource::new(cfg, http.clone(), metrics.clone());
        GenesysClient {
            api_base,
            http,
            metrics,
            tokens,
            budget,
            cache,
        }
    }

    /// `GET /api/v2/conversations/{conversationId}`; `None` on 404 (the conversation is
    /// gone). Served from a short-lived cache; concurrent lookups of one id make one
    /// request.
    pub async fn conversation(&self, id: &str) -> Result<Option<Conversation>, HttpError> {
        let (found, hit) = self
            .cache
            .get_or_fetch(id, || self.fetch_conversation(id))
            .await?;
        if hit {
            self.metrics.genesys_cache_hits_total.inc();
        }
        Ok(found.map(|c| (*c).clone()))
    }

    async fn fetch_conversation(&self, id: &str) -> Result<Option<Arc<Conversation>>, HttpError> {
        let url = api_url(&self.api_base, &["api", "v2", "conversations", id])?;
        let (answer, token) = self
            .call("conversation", Method::GET, url, None, LANE)
            .await?;
        if answer.status == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        let raw: Value = answer.success(SERVICE, &[&token])?.json("conversation")?;
        Ok(Some(Arc::new(Conversation::from_json(raw, id)?)))
    }

    /// `GET /api/v2/processautomation/triggers?pageSize=..[&after=..]`, or the listing's
    /// own `nextUri` (relative to the API base).
    pub(crate) async fn triggers_page(
        &self,
        next_uri: Option<&str>,
        page_size: u32,
    ) -> Result<Value, HttpError> {
        let path = ["api", "v2", "processautomation", "triggers"];
        let url = self.page_url(next_uri, &path, page_size)?;
        let (answer, token) = self.call("triggers", Method::GET, url, None, LANE).await?;
        answer.success(SERVICE, &[&token])?.json("trigger listing")
    }

    /// `GET /api/v2/processautomation/triggers/topics?pageSize=..` (SDK model
    /// `TopicCursorEntityListing`: `entities` are topic names), or the listing's own
    /// `nextUri` (relative to the API base).
    pub(crate) async fn trigger_topics_page(
        &self,
        next_uri: Option<&str>,
        page_size: u32,
    ) -> Result<Value, HttpError> {
        let path = ["api", "v2", "processautomation", "triggers", "topics"];
        let url = self.page_url(next_uri, &path, page_size)?;
        let (answer, token) = self.call("triggers", Method::GET, url, None, LANE).await?;
        answer.success(SERVICE, &[&token])?.json("trigger topics")
    }

    /// The first page of a listing (`path?pageSize=N`), or a later page by the listing's
    /// own `nextUri`, which Genesys gives relative to the API base.
    fn page_url(
        &self,
        next_uri: Option<&str>,
        path: &[&str],
        page_size: u32,
    ) -> Result<Url, HttpError> {
        match next_uri {
            Some(next) => Url::parse(&self.api_base)
                .and_then(|base| base.join(next))
                .map_err(|e| HttpError::InvalidRequest(format!("nextUri {next:?}: {e}"))),
            None => {
                let mut url = api_url(&self.api_base, path)?;
                url.query_pairs_mut()
                    .append_pair("pageSize", &page_size.to_string());
                Ok(url)
            }
        }
    }

    /// `POST /api/v2/processautomation/triggers` (body: SDK model `CreateTriggerRequest`).
    pub(crate) async fn create_trigger(&self, body: &Value) -> Result<Value, HttpError> {
        let url = api_url(
            &self.api_base,
            &["api", "v2", "processautomation", "triggers"],
        )?;
        let (answer, token) = self
            .call("triggers", Method::POST, url, Some(body), LANE)
            .await?;
        answer.success(SERVICE, &[&token])?.json("created trigger")
    }

    /// `PUT /api/v2/processautomation/triggers/{triggerId}` (SDK model
    /// `UpdateTriggerRequest`, which carries the current `version`).
    pub(crate) async fn update_trigger(&self, id: &str, body: &Value) -> Result<Value, HttpError> {
        let url = api_url(
            &self.api_base,
            &["api", "v2", "processautomation", "triggers", id],
        )?;
        let (answer, token) = self
            .call("triggers", Method::PUT, url, Some(body), LANE)
            .await?;
        answer.success(SERVICE, &[&token])?.json("updated trigger")
    }

    /// Waits for a budget slot, or hands back a deferral when the slot is too far away
    /// and the policy does not wait for such slots.
    async fn take_slot(&self, endpoint: &'static str, policy: CallPolicy) -> Result<(), HttpError> {
        let queued = Instant::now();
        let wait = match self.budget.acquire(endpoint).await {
            Slot::Wait(wait) => wait,
            Slot::Defer(wait) if policy.wait_for_far_slot => wait,
            Slot::Defer(retry_after) => {
                return Err(HttpError::Deferred {
                    service: SERVICE,
                    retry_after,
                })
            }
        };
        self.metrics
            .genesys_budget_wait_seconds
            .observe((queued.elapsed() + wait).as_secs_f64());
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
        // Genesys may have paused the budget (window spent, 429) while this slot waited.
        match self.budget.pause_before_sending() {
            Slot::Defer(retry_after) if !policy.wait_for_far_slot => {
                return Err(HttpError::Deferred {
                    service: SERVICE,
                    retry_after,
                })
            }
            Slot::Wait(pause) | Slot::Defer(pause) => {
                if !pause.is_zero() {
                    tokio::time::sleep(pause).await;
                }
            }
        }
        Ok(())
    }

    /// See [`TokenSource::valid_for`]: the token the next calls carry stays valid at
    /// least `min` longer; when it expires.
    pub(crate) async fn token_valid_for(
        &self,
        min: std::time::Duration,
    ) -> Result<Option<std::time::SystemTime>, HttpError> {
        self.tokens.valid_for(min).await
    }

    /// The API base URL (`https://api.<region>` or the override).
    pub(crate) fn api_base(&self) -> &str {
        &self.api_base
    }

    /// Sends one request with the shared budget, 401 and 429 handling; any status comes
    /// back as an [`Answer`] (with the token used, for redaction) for the caller to
    /// interpret (404 means different things to different calls).
    pub(crate) async fn call(
        &self,
        endpoint: &'static str,
        method: Method,
        url: Url,
        body: Option<&Value>,
        policy: CallPolicy,
    ) -> Result<(Answer, String), HttpError> {
        let mut refreshed = false;
        let mut rate_limited = 0;
        loop {
            // The slot first: a token fetched before a wait for the budget could expire
            // during it (a 401, and after the refresh possibly another), and a deferred
            // call must cost nothing, not even a token.
            self.take_slot(endpoint, policy).await?;
            let token = self.tokens.token().await?;
            let mut request = self
                .http
                .request(method.clone(), url.clone())
                .bearer_auth(&token);
            if let Some(body) = body {
                request = request.json(body);
            }
            let started = Instant::now();
            let response = match request.send().await {
                Ok(response) => response,
                Err(err) => {
                    let err = HttpError::transport(SERVICE, err);
                    self.count(endpoint, err.transport_label());
                    return Err(err);
                }
            };
            if let Some(remaining) = self.budget.observe(endpoint, response.headers()) {
                self.metrics
                    .genesys_ratelimit_remaining
                    .set(i64::try_from(remaining).unwrap_or(i64::MAX));
            }
            let answer = Answer::read(SERVICE, response).await?;
            self.count(endpoint, &outbound::status_label(answer.status));
            tracing::trace!(
                endpoint,
                elapsed_ms = started.elapsed().as_millis() as u64,
                "genesys call"
            );

            if answer.status == StatusCode::UNAUTHORIZED && refreshed {
                // The fresh token was refused too: revoked again in between, or Genesys's
                // own authentication failing. Wrong client credentials fail at the token
                // endpoint, not here, so the event is worth a retry tier, not a dead letter.
                return Err(HttpError::TokenRefused {
                    service: SERVICE,
                    body: outbound::error_body(&answer.body, &[&token]),
                });
            }
            if answer.status == StatusCode::UNAUTHORIZED {
                // Revoked or expired early: one fresh token, one more try.
                refreshed = true;
                self.tokens.invalidate(&token);
                tracing::debug!(
                    endpoint,
                    "Genesys answered 401; refreshing the token and retrying once"
                );
                continue;
            }
            if answer.status == StatusCode::TOO_MANY_REQUESTS {
                // Every later request waits too: the budget is shared by the process.
                self.budget
                    .pause(answer.retry_after.unwrap_or(DEFAULT_RETRY_AFTER));
                if rate_limited < policy.rate_limit_retries {
                    rate_limited += 1;
                    tracing::debug!(
                        endpoint,
                        "Genesys answered 429; retrying through the budget"
                    );
                    continue;
                }
            }
            return Ok((answer, token));
        }
    }

    fn count(&self, endpoint: &str, status: &str) {
        self.metrics
            .genesys_requests_total
            .with_label_values(&[endpoint, status])
            .inc();
    }
}
