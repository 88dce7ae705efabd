//! The conversation cache: a lookup of one conversation within `RELAY_GENESYS_CACHE_TTL`
//! is served from memory, and concurrent lookups of one id share one request (moka's
//! `try_get_with` runs one initialiser per key and hands its result to every waiter).
//! 404s are cached too (a gone conversation stays gone); errors are not.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use moka::future::Cache;

use super::client::Conversation;
use super::HttpError;

/// Entries kept at most; far more than the conversations alive within one TTL.
const CAPACITY: u64 = 100_000;

pub(crate) struct ConversationCache {
    /// `None` when the TTL is zero (caching off).
    cache: Option<Cache<String, Option<Arc<Conversation>>>>,
}

impl ConversationCache {
    pub fn new(ttl: Duration) -> Self {
        let cache = (!ttl.is_zero()).then(|| {
            Cache::builder()
                .max_capacity(CAPACITY)
                .time_to_live(ttl)
                .build()
        });
        ConversationCache { cache }
    }

    /// The cached value, or `fetch`'s; the flag says whether it came from the cache
    /// (including from a request another caller had in flight).
    pub async fn get_or_fetch<F, Fut>(
        &self,
        id: &str,
        fetch: F,
    ) -> Result<(Option<Arc<Conversation>>, bool), HttpError>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Option<Arc<Conversation>>, HttpError>>,
    {
        let Some(cache) = &self.cache else {
            return Ok((fetch().await?, false));
        };
        let entry = cache
            .entry_by_ref(id)
            .or_try_insert_with(fetch())
            .await
            .map_err(|e| (*e).clone())?;
        let hit = !entry.is_fresh();
        Ok((entry.into_value(), hit))
    }
}
