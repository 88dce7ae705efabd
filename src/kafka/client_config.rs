//! rdkafka client settings shared by producers, consumers and the admin client.

use crate::config::Config;
use rdkafka::ClientConfig;

/// `bootstrap.servers` plus every `RELAY_KAFKA_*` passthrough setting (SASL, TLS, timeouts).
/// Callers set their role's own defaults first and then call this, so the passthrough wins.
pub fn client_config(cfg: &Config, role_defaults: &[(&str, &str)]) -> ClientConfig {
    let mut cc = ClientConfig::new();
    cc.set("bootstrap.servers", &cfg.kafka_brokers);
    for (k, v) in role_defaults {
        cc.set(*k, *v);
    }
    for (k, v) in &cfg.kafka_passthrough {
        cc.set(k, v);
    }
    cc
}
