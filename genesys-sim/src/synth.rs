//! Deterministic Genesys data: guest profiles and conversations derived from their ids.
//!
//! The same id always yields the same document (across runs and machines), so tests
//! can compute what the relay should have synced. The hash is FNV-1a feeding a
//! splitmix64 stream; `std`'s `DefaultHasher` is not guaranteed stable across releases.

use serde_json::{json, Map, Value};

use super::clock::iso8601_ms;

/// 2024-01-01T00:00:00Z: generated timestamps fall within the year after it.
const BASE_MS: u64 = 1_704_067_200_000;
const YEAR_MS: u64 = 365 * 86_400_000;

const TIERS: [&str; 4] = ["bronze", "silver", "gold", "platinum"];
const SECTIONS: [&str; 5] = ["products", "cart", "checkout", "deals", "account"];
const QUEUES: [&str; 3] = ["Sales", "Support", "Billing"];
const AGENTS: [&str; 4] = [
    "Ada Lovelace",
    "Grace Hopper",
    "Alan Turing",
    "Edsger Dijkstra",
];
const LOCALES: [&str; 3] = ["en-US", "en-GB", "de-DE"];
const DIVISION_ID: &str = "7c1e2c5b-1f4a-4c2e-9a53-5b1d0f0a0001";

/// A reproducible stream of pseudo-random numbers seeded from a string.
struct Seeded(u64);

impl Seeded {
    fn new(domain: &str, id: &str) -> Self {
        // FNV-1a over "domain\0id" so guests and conversations with the same id differ.
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in domain.bytes().chain([0]).chain(id.bytes()) {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        Seeded(h)
    }

    /// splitmix64.
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        let i = usize::try_from(self.below(items.len() as u64)).unwrap_or(0);
        items.get(i).copied().unwrap_or_default()
    }

    /// A version-4-shaped UUID.
    fn uuid(&mut self) -> String {
        let a = self.next();
        let b = self.next();
        format!(
            "{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
            a >> 32,
            (a >> 16) & 0xffff,
            a & 0x0fff,
            0x8000 | (b >> 48) & 0x3fff,
            b & 0xffff_ffff_ffff
        )
    }
}

/// The attributes Genesys would hold for this guest.
pub(crate) fn guest_attributes(guest_id: &str) -> Map<String, Value> {
    let mut r = Seeded::new("guest", guest_id);
    let cents = r.below(50_000);
    let mut attributes = Map::new();
    // Whole cents divided by 100 keep the value short: 123.45, never 123.4500000001.
    attributes.insert("cart_value".into(), json!(cents as f64 / 100.0));
    let section = r.pick(&SECTIONS);
    let page = r.below(10_000);
    attributes.insert(
        "last_page".into(),
        json!(format!("https://shop.example.com/{section}/{page}")),
    );
    attributes.insert(
        "session_id".into(),
        json!(format!("sess-{:016x}", r.next())),
    );
    attributes.insert("loyalty_tier".into(), json!(r.pick(&TIERS)));
    attributes
}

/// When the generated guest profile was last updated.
pub(crate) fn guest_updated_date(guest_id: &str) -> String {
    let mut r = Seeded::new("guest-updated", guest_id);
    iso8601_ms(BASE_MS + r.below(YEAR_MS))
}

/// A small but Genesys-shaped conversation: customer, ACD queue and (usually) an agent.
pub(crate) fn conversation(conversation_id: &str) -> Value {
    let mut r = Seeded::new("conversation", conversation_id);
    let start = BASE_MS + r.below(YEAR_MS);
    let queue = r.pick(&QUEUES);
    let queue_id = Seeded::new("queue", queue).uuid();
    let answered = r.below(5) != 0;
    let ended = r.below(4) != 0;

    let mut customer = json!({
        "id": r.uuid(),
        "startTime": iso8601_ms(start),
        "purpose": "customer",
        "attributes": {
            "channel": "webmessaging",
            "locale": r.pick(&LOCALES),
            "entry_page": format!("https://shop.example.com/{}/{}", r.pick(&SECTIONS), r.below(10_000)),
        },
    });
    if r.below(2) == 0 {
        customer["name"] = json!(format!("Guest {}", r.below(10_000)));
    }
    let mut participants = vec![
        customer,
        json!({
            "id": r.uuid(),
            "startTime": iso8601_ms(start + 1_000),
            "purpose": "acd",
            "name": queue,
            "queueId": queue_id,
            "attributes": {},
        }),
    ];
    if answered {
        participants.push(json!({
            "id": r.uuid(),
            "startTime": iso8601_ms(start + 1_000 + r.below(120_000)),
            "purpose": "agent",
            "name": r.pick(&AGENTS),
            "userId": r.uuid(),
            "queueId": queue_id,
            "attributes": {},
        }));
    }

    let mut conversation = json!({
        "id": conversation_id,
        "startTime": iso8601_ms(start),
        "participants": participants,
        "divisions": [{
            "division": {"id": DIVISION_ID, "selfUri": format!("/api/v2/authorization/divisions/{DIVISION_ID}")},
            "entities": [{"id": queue_id, "selfUri": format!("/api/v2/routing/queues/{queue_id}")}],
        }],
        "selfUri": format!("/api/v2/conversations/{conversation_id}"),
    });
    if ended {
        conversation["endTime"] = json!(iso8601_ms(start + 30_000 + r.below(3_600_000)));
    }
    if r.below(2) == 0 {
        conversation["address"] = json!(format!("+1555{:07}", r.below(10_000_000)));
    }
    conversation
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_id_same_data_and_ids_differ() {
        assert_eq!(guest_attributes("g-1"), guest_attributes("g-1"));
        assert_ne!(guest_attributes("g-1"), guest_attributes("g-2"));
        assert_eq!(conversation("c-1"), conversation("c-1"));
        assert_ne!(conversation("c-1"), conversation("c-2"));
    }

    #[test]
    fn guest_has_the_mapped_attributes() {
        let a = guest_attributes("abc");
        assert!(a["cart_value"].is_f64());
        assert!(TIERS.contains(&a["loyalty_tier"].as_str().unwrap_or_default()));
        assert!(a["session_id"]
            .as_str()
            .unwrap_or_default()
            .starts_with("sess-"));
    }
}
