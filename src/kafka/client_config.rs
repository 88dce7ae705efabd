//! rdkafka client settings shared by producers, consumers and the admin client.

use super::KafkaSettings;
use rdkafka::ClientConfig;

/// `bootstrap.servers` plus every `RELAY_KAFKA_*` passthrough setting (SASL, TLS, timeouts).
/// Callers set their role's own defaults first and then call this, so the passthrough wins.
pub fn client_config(
    cfg: &impl AsRef<KafkaSettings>,
    role_defaults: &[(&str, &str)],
) -> ClientConfig {
    let cfg = cfg.as_ref();
    let mut cc = ClientConfig::new();
    cc.set("bootstrap.servers", &cfg.brokers);
    for (k, v) in role_defaults {
        cc.set(*k, *v);
    }
    for (k, v) in &cfg.passthrough {
        cc.set(k, v);
    }
    cc
}
