//! The Platform API calls of the listener: create a channel, replace its subscriptions,
//! list every queue. They go through [`GenesysClient::call`]: the relay's OAuth
//! client-credentials token, a Genesys request budget (`RELAY_GENESYS_RATE_LIMIT`,
//! adapted by `inin-ratelimit-*` and 429s), and one token refresh on a 401.
//!
//! Shapes (official SDK models, see docs/listen.md): `Channel {id, connectUri, expires}`,
//! a `list[ChannelTopic]` body `[{"id": topic}]` answered by `ChannelTopicEntityListing
//! {entities}`, and `QueueEntityListing {entities, pageSize, pageNumber, total, pageCount}`.

use std::time::SystemTime;

use reqwest::{Method, Url};
use serde::Deserialize;
use serde_json::Value;

use crate::genesys::{api_url, CallPolicy, GenesysClient, HttpError};

/// The `service` of this module's errors.
const SERVICE: &str = "genesys";
/// The listener is not a worker lane: a far budget slot is waited for, and a 429 is
/// retried three times before the call fails (the channel logic then backs off).
const LISTENER: CallPolicy = CallPolicy {
    wait_for_far_slot: true,
    rate_limit_retries: 3,
};
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
    client: GenesysClient,
}

impl NotificationsApi {
    pub(crate) fn new(client: GenesysClient) -> Self {
        NotificationsApi { client }
    }

    /// `POST /api/v2/notifications/channels`.
    pub(crate) async fn create_channel(&self) -> Result<ChannelInfo, HttpError> {
        let url = api_url(
            self.client.api_base(),
            &["api", "v2", "notifications", "channels"],
        )?;
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
            self.client.api_base(),
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
                Some(&Value::Array(body)),
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
            let mut url = api_url(self.client.api_base(), &["api", "v2", "routing", "queues"])?;
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

    /// One call through the client (budget, token, 401 and 429 handling) with the
    /// listener's policy; the body of a 2xx answer.
    async fn call(
        &self,
        endpoint: &'static str,
        method: Method,
        url: Url,
        body: Option<&Value>,
    ) -> Result<bytes::Bytes, HttpError> {
        let (answer, token) = self
            .client
            .call(endpoint, method, url, body, LISTENER)
            .await?;
        Ok(answer.success(SERVICE, &[&token])?.body)
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
