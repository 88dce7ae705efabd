//! Topic names, all derived from `RELAY_TOPIC_PREFIX` (docs/contract.md#topics).

/// The relay's topics for one prefix and number of retry tiers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topics {
    pub raw: String,
    /// `retry[0]` is tier 1 (`<prefix>.events.retry.1`).
    pub retry: Vec<String>,
    pub dlq: String,
    pub enriched: String,
    pub(crate) idempotency: String,
}

impl Topics {
    pub fn new(prefix: &str, retry_tiers: usize) -> Self {
        Topics {
            raw: format!("{prefix}.events.raw"),
            retry: (1..=retry_tiers)
                .map(|n| format!("{prefix}.events.retry.{n}"))
                .collect(),
            dlq: format!("{prefix}.events.dlq"),
            enriched: format!("{prefix}.conversations.enriched"),
            idempotency: format!("{prefix}.relay.idempotency"),
        }
    }

    /// The tier (1-based) of a retry topic, or `None` for any other topic.
    pub(crate) fn retry_tier(&self, topic: &str) -> Option<usize> {
        self.retry.iter().position(|t| t == topic).map(|i| i + 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_prefix() {
        let t = Topics::new("acme", 2);
        assert_eq!(t.raw, "acme.events.raw");
        assert_eq!(t.retry, vec!["acme.events.retry.1", "acme.events.retry.2"]);
        assert_eq!(t.dlq, "acme.events.dlq");
        assert_eq!(t.enriched, "acme.conversations.enriched");
        assert_eq!(t.idempotency, "acme.relay.idempotency");
        assert_eq!(t.retry_tier("acme.events.retry.2"), Some(2));
        assert_eq!(t.retry_tier("acme.events.raw"), None);
    }
}
