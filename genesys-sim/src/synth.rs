//! Deterministic Genesys data: conversations (with their customer's attributes) derived
//! from their ids.
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

/// The custom attributes the Web Messaging customer of this conversation carries. Genesys
/// keeps participant attributes as strings (`Participant.attributes: dict(str, str)` in the
/// Platform API SDK models), so numbers arrive as text and the relay converts them.
pub(crate) fn customer_attributes(conversation_id: &str) -> Map<String, Value> {
    let mut r = Seeded::new("customer", conversation_id);
    let cents = r.below(50_000);
    let mut attributes = Map::new();
    attributes.insert(
        "cart_value".into(),
        json!(format!("{}.{:02}", cents / 100, cents % 100)),
    );
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

/// A small but Genesys-shaped conversation (`GET /api/v2/conversations/{id}`): a customer
/// with string `attributes` and an `externalContactId`, an ACD queue and (usually) an agent.
/// `attributes` replaces the customer's generated attributes when a test set them.
pub(crate) fn conversation(
    conversation_id: &str,
    attributes: Option<&Map<String, Value>>,
) -> Value {
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
        "externalContactId": Seeded::new("contact", conversation_id).uuid(),
        "locale": r.pick(&LOCALES),
        "attributes": attributes.cloned().unwrap_or_else(|| customer_attributes(conversation_id)),
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
        assert_eq!(customer_attributes("c-1"), customer_attributes("c-1"));
        assert_ne!(customer_attributes("c-1"), customer_attributes("c-2"));
        assert_eq!(conversation("c-1", None), conversation("c-1", None));
        assert_ne!(conversation("c-1", None), conversation("c-2", None));
    }

    #[test]
    fn customer_has_string_attributes() {
        let a = customer_attributes("abc");
        assert!(a.values().all(Value::is_string));
        let cart = a["cart_value"].as_str().unwrap_or_default();
        assert!(cart.parse::<f64>().is_ok(), "{cart}");
        let c = conversation("abc", None);
        assert_eq!(c["participants"][0]["purpose"], "customer");
        assert_eq!(c["participants"][0]["attributes"], Value::Object(a.clone()));
        assert!(TIERS.contains(&a["loyalty_tier"].as_str().unwrap_or_default()));
        assert!(a["session_id"]
            .as_str()
            .unwrap_or_default()
            .starts_with("sess-"));
    }
}
