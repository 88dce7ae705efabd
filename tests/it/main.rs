//! All integration tests, one program (one link of librdkafka instead of one per file).
//! Each module is an area; `common` holds the shared fixtures (broker, relay settings,
//! Kafka read-back, simulators).

mod backpressure;
mod common;
mod correctness;
mod deploy_files;
mod dlq;
mod failover;
mod fault_suite;
mod fuzz_ingress;
mod genesys_client;
mod ingress;
mod listen;
mod prometheus_dashboard;
mod real_shapes;
mod retry;
mod schema_registry;
mod secrets;
mod shutdown;
mod sim;
mod sim_cms_faults;
mod sinks;
mod slowloris;
mod supervision;
mod triggers_cli;
mod worker;
