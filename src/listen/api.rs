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
    /// When the OAuth token that created it expires (set by the caller that knows it).
    pub(crate) token_expires: Option<SystemTime>,
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

/// One `ChannelTopic` of a subscription answer (SDK `ChannelTopic`: `id`, `state`
/// `Permitted|Rejected`, `rejectionReason`, `missingPermissions`).
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct TopicAnswer {
    #[serde(default)]
    id: String,
    #[serde(default)]
    state: Option<String>,
    #[serde(default)]
    rejection_reason: Option<String>,
    #[serde(default)]
    missing_permissions: Vec<String>,
}

#[derive(Deserialize)]
struct TopicListing {
    #[serde(default)]
    entities: Vec<TopicAnswer>,
}

/// A topic Genesys Cloud refused to subscribe, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Rejected {
    pub(crate) reason: String,
    pub(crate) missing_permissions: Vec<String>,
}

/// What a subscription request achieved, topic by topic.
#[derive(Debug, Default)]
pub(crate) struct Subscribed {
    /// Topics answered `Permitted`: the only ones that will deliver.
    pub(crate) permitted: Vec<String>,
    /// Topics answered `Rejected`, or asked for and missing from the answer.
    pub(crate) rejected: Vec<(String, Rejected)>,
}

/// `GET /api/v2/notifications/channels` (`ChannelEntityListing`): only the count is used.
#[derive(Deserialize)]
struct ChannelListing {
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
            token_expires: None,
        })
    }

    /// `PUT /api/v2/notifications/channels/{channelId}/subscriptions?ignoreErrors=true`:
    /// replaces the channel's topics (and renews its lifetime). With `ignoreErrors` one
    /// bad topic does not fail the whole request; each topic comes back with its `state`,
    /// and only `Permitted` ones are subscribed.
    pub(crate) async fn put_subscriptions(
        &self,
        channel_id: &str,
        topics: &[String],
    ) -> Result<Subscribed, HttpError> {
        let mut url = api_url(
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
        url.query_pairs_mut().append_pair("ignoreErrors", "true");
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
        Ok(verdicts(topics, listing.entities))
    }

    /// How many channels the relay's OAuth client holds, across every token and process:
    /// `GET /api/v2/notifications/channels?includechannels=oauthclient` (channels of other
    /// tokens are listed without their ids, "to show their existence").
    pub(crate) async fn client_channel_count(&self) -> Result<usize, HttpError> {
        let mut url = api_url(
            self.client.api_base(),
            &["api", "v2", "notifications", "channels"],
        )?;
        url.query_pairs_mut()
            .append_pair("includechannels", "oauthclient");
        let body = self
            .call("notifications_channels_list", Method::GET, url, None)
            .await?;
        let listing: ChannelListing = decode(&body, "channel listing")?;
        Ok(listing.entities.len())
    }

    /// Makes sure the next call carries a token valid at least `min` longer (fetching a
    /// new one if the cached one is older) and says when that token expires: a channel
    /// lives no longer than the token that created it (docs/listen.md).
    pub(crate) async fn token_valid_for(
        &self,
        min: std::time::Duration,
    ) -> Result<Option<SystemTime>, HttpError> {
        self.client.token_valid_for(min).await
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

/// Reads each asked topic's verdict from the answer: `Permitted` subscribes, anything
/// else (`Rejected`, or a topic the answer does not mention) does not.
fn verdicts(asked: &[String], answered: Vec<TopicAnswer>) -> Subscribed {
    let mut by_topic: std::collections::HashMap<String, TopicAnswer> =
        answered.into_iter().map(|t| (t.id.clone(), t)).collect();
    let mut out = Subscribed::default();
    for topic in asked {
        match by_topic.remove(topic) {
            // An answer without `state` predates the field: it lists what was subscribed.
            Some(t)
                if t.state
                    .as_deref()
                    .is_none_or(|s| s.eq_ignore_ascii_case("Permitted")) =>
            {
                out.permitted.push(topic.clone())
            }
            Some(t) => out.rejected.push((
                topic.clone(),
                Rejected {
                    reason: t
                        .rejection_reason
                        .unwrap_or_else(|| format!("state {}", t.state.unwrap_or_default())),
                    missing_permissions: t.missing_permissions,
                },
            )),
            None => out.rejected.push((
                topic.clone(),
                Rejected {
                    reason: "not in Genesys Cloud's answer".into(),
                    missing_permissions: Vec::new(),
                },
            )),
        }
    }
    out
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
    fn only_permitted_topics_count() {
        let answer: TopicListing = serde_json::from_str(
            r#"{"entities":[
                {"id":"a","state":"Permitted"},
                {"id":"b","state":"Rejected","rejectionReason":"no queue","missingPermissions":["routing:queue:view"]}
            ]}"#,
        )
        .unwrap();
        let asked = ["a".to_string(), "b".to_string(), "c".to_string()];
        let s = verdicts(&asked, answer.entities);
        assert_eq!(s.permitted, vec!["a".to_string()]);
        assert_eq!(s.rejected.len(), 2);
        assert_eq!(s.rejected[0].0, "b");
        assert_eq!(
            s.rejected[0].1.missing_permissions,
            vec!["routing:queue:view"]
        );
        assert_eq!(s.rejected[1].0, "c");
    }

    #[test]
    fn channel_expiry_parses() {
        let t = parse_time("2026-11-26T08:30:00.123Z").unwrap();
        let secs = t.duration_since(SystemTime::UNIX_EPOCH).unwrap().as_secs();
        assert_eq!(secs, 1_795_681_800);
        assert!(parse_time("tomorrow").is_none());
    }
}
