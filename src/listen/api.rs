//! The Platform API calls of the listener: create a channel, replace its subscriptions,
//! list every queue. They authenticate with the relay's OAuth client-credentials
//! [`TokenSource`], go through a Genesys request budget (`RELAY_GENESYS_RATE_LIMIT`,
//! adapted by `inin-ratelimit-*` and 429s), and a 401 refreshes the token once.
//!
//! Shapes (official SDK models, see docs/listen.md): `Channel {id, connectUri, expires}`,
//! a `list[ChannelTopic]` body `[{"id": topic}]` answered by `ChannelTopicEntityListing
//! {entities}`, and `QueueEntityListing {entities, pageSize, pageNumber, total, pageCount}`.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use reqwest::{Method, StatusCode, Url};
use serde::Deserialize;
use serde_json::Value;

use crate::genesys::budget::{RequestBudget, Slot};
use crate::genesys::{api_url, HttpError, TokenSource};
use crate::metrics::Metrics;
use crate::outbound::{self, Answer};

/// The `service` of this module's errors.
const SERVICE: &str = "genesys";
/// Wait after a 429 without `Retry-After`.
const DEFAULT_RETRY_AFTER: Duration = Duration::from_secs(1);
const RATE_LIMIT_RETRIES: u32 = 3;
/// Queues per page when listing them all.
const QUEUE_PAGE_SIZE: u32 = 100;
/// A guard against a server that never reports the last page.
const MAX_QUEUE_PAGES: u32 = 10_000;

/// A notification channel as `POST /api/v2/notifications/channels` answers it.
#[derive(Debug, Clone)]
pub(crate) struct ChannelInfo {
    pub(crate) id: String,
    pub(crate) connect_uri: String,
    /// When Genesys Cloud will expire it (`None` when the answer did not say).
    pub(crate) expires: Option<SystemTime>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ChannelAnswer {
    #[serde(default)]
    id: String,
    #[serde(default)]
    connect_uri: String,
    #[serde(default)]
    expires: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct QueuePage {
    #[serde(default)]
    entities: Vec<QueueRef>,
    #[serde(default)]
    page_count: Option<u32>,
}

#[derive(Deserialize)]
struct QueueRef {
    #[serde(default)]
    id: String,
}

#[derive(Deserialize)]
struct TopicListing {
    #[serde(default)]
    entities: Vec<Value>,
}

/// The Notifications and routing calls the listener makes.
pub(crate) struct NotificationsApi {
    api_base: String,
    http: reqwest::Client,
    tokens: Arc<TokenSource>,
    budget: RequestBudget,
    metrics: Arc<Metrics>,
}

impl NotificationsApi {
    pub(crate) fn new(
        api_base: String,
        http: reqwest::Client,
        tokens: Arc<TokenSource>,
        budget: RequestBudget,
        metrics: Arc<Metrics>,
    ) -> Self {
        NotificationsApi {
            api_base,
            http,
            tokens,
            budget,
            metrics,
        }
    }

    /// `POST /api/v2/notifications/channels`.
    pub(crate) async fn create_channel(&self) -> Result<ChannelInfo, HttpError> {
        let url = api_url(&self.api_base, &["api", "v2", "notifications", "channels"])?;
        let body = self
            .call("notifications_channels", Method::POST, url, None)
            .await?;
        let answer: ChannelAnswer = decode(&body, "channel")?;
        if answer.id.is_empty() || answer.connect_uri.is_empty() {
            return Err(HttpError::Decode(
                "channel answer lacks id or connectUri".into(),
            ));
        }
        Ok(ChannelInfo {
            id: answer.id,
            connect_uri: answer.connect_uri,
            expires: answer.expires.as_deref().and_then(parse_time),
        })
    }

    /// `PUT /api/v2/notifications/channels/{channelId}/subscriptions`: replaces the
    /// channel's topics (and renews its lifetime). Returns how many topics it now has.
    pub(crate) async fn put_subscriptions(
        &self,
        channel_id: &str,
        topics: &[String],
    ) -> Result<usize, HttpError> {
        let url = api_url(
            &self.api_base,
            &[
                "api",
                "v2",
                "notifications",
                "channels",
                channel_id,
                "subscriptions",
            ],
        )?;
        let body: Vec<Value> = topics
            .iter()
            .map(|t| serde_json::json!({ "id": t }))
            .collect();
        let answer = self
            .call(
                "notifications_subscriptions",
                Method::PUT,
                url,
                Some(Value::Array(body)),
            )
            .await?;
        let listing: TopicListing = decode(&answer, "subscriptions")?;
        Ok(listing.entities.len())
    }

    /// Every queue id of the org: `GET /api/v2/routing/queues` page by page until
    /// `pageCount` (or an empty page).
    pub(crate) async fn all_queue_ids(&self) -> Result<Vec<String>, HttpError> {
        let mut ids = Vec::new();
        let mut page = 1u32;
        loop {
            let mut url = api_url(&self.api_base, &["api", "v2", "routing", "queues"])?;
            url.query_pairs_mut()
                .append_pair("pageSize", &QUEUE_PAGE_SIZE.to_string())
                .append_pair("pageNumber", &page.to_string());
            let body = self.call("routing_queues", Method::GET, url, None).await?;
            let listing: QueuePage = decode(&body, "queue listing")?;
            let empty = listing.entities.is_empty();
            ids.extend(
                listing
                    .entities
                    .into_iter()
                    .map(|q| q.id)
                    .filter(|id| !id.is_empty()),
            );
            let last = listing.page_count.is_some_and(|count| page >= count);
            if empty || last || page >= MAX_QUEUE_PAGES {
                break;
            }
            page += 1;
        }
        Ok(ids)
    }

    /// One call through the budget, with the token and 401/429 handling; the body of a
    /// 2xx answer. The listener is not a worker lane: a deferred slot is waited for.
    async fn call(
        &self,
        endpoint: &str,
        method: Method,
        url: Url,
        body: Option<Value>,
    ) -> Result<bytes::Bytes, HttpError> {
        let mut refreshed = false;
        let mut rate_limited = 0u32;
        loop {
            let wait = match self.budget.acquire() {
                Slot::Wait(wait) | Slot::Defer(wait) => wait,
            };
            self.metrics
                .genesys_budget_wait_seconds
                .observe(wait.as_secs_f64());
            if !wait.is_zero() {
                tokio::time::sleep(wait).await;
            }
            let token = self.tokens.token().await?;
            let mut req = self
                .http
                .request(method.clone(), url.clone())
                .bearer_auth(&token);
            if let Some(b) = &body {
                req = req.json(b);
            }
            let resp = match req.send().await {
                Ok(r) => r,
                Err(e) => {
                    let err = HttpError::transport(SERVICE, e);
                    self.count(endpoint, err.transport_label());
                    return Err(err);
                }
            };
            if let Some(remaining) = self.budget.observe(resp.headers()) {
                self.metrics
                    .genesys_ratelimit_remaining
                    .set(i64::try_from(remaining).unwrap_or(i64::MAX));
            }
            let answer = Answer::read(SERVICE, resp).await?;
            self.count(endpoint, &outbound::status_label(answer.status));
            if answer.status == StatusCode::UNAUTHORIZED && !refreshed {
                refreshed = true;
                self.tokens.invalidate(&token);
                continue;
            }
            if answer.status == StatusCode::TOO_MANY_REQUESTS && rate_limited < RATE_LIMIT_RETRIES {
                // The budget pauses (capped) for everything this process sends.
                rate_limited += 1;
                self.budget
                    .pause(answer.retry_after.unwrap_or(DEFAULT_RETRY_AFTER));
                continue;
            }
            return Ok(answer.success(SERVICE, &[&token])?.body);
        }
    }

    fn count(&self, endpoint: &str, status: &str) {
        self.metrics
            .genesys_requests_total
            .with_label_values(&[endpoint, status])
            .inc();
    }
}

fn decode<T: serde::de::DeserializeOwned>(body: &[u8], what: &str) -> Result<T, HttpError> {
    serde_json::from_slice(body).map_err(|e| HttpError::Decode(format!("{what}: {e}")))
}

/// `2026-11-26T08:30:00.000Z` (ISO-8601, as the `Channel` model documents).
fn parse_time(text: &str) -> Option<SystemTime> {
    humantime::parse_rfc3339_weak(text.trim_end_matches('Z')).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channel_expiry_parses() {
        let t = parse_time("2026-11-26T08:30:00.123Z").unwrap();
        let secs = t.duration_since(SystemTime::UNIX_EPOCH).unwrap().as_secs();
        assert_eq!(secs, 1_795_681_800);
        assert!(parse_time("tomorrow").is_none());
    }
}
