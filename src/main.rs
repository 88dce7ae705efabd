//! The `genesys-relay` binary: command-line parsing and wiring only; the logic lives in
//! the library crate.

use anyhow::Context;
use clap::{Parser, Subcommand};
use genesys_relay::app::{self, Role};
use genesys_relay::config::{Config, LogFormat};
use genesys_relay::shutdown;
use std::path::PathBuf;

#[derive(Parser)]
#[command(
    name = "genesys-relay",
    version,
    about = "Genesys Cloud webhook events into Kafka and downstream systems"
)]
struct Cli {
    /// TOML file with the same keys as the RELAY_* environment variables (the environment wins).
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the ingress and the workers in one process.
    Serve,
    /// Run only the webhook ingress.
    Ingress,
    /// Run only the workers (consumer group).
    Worker,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let cfg = Config::load(cli.config.as_deref())?;
    init_logging(cfg.log_format);
    let role = match cli.command {
        Command::Serve => Role::Serve,
        Command::Ingress => Role::Ingress,
        Command::Worker => Role::Worker,
    };
    run_role(cfg, role).await
}

async fn run_role(cfg: Config, role: Role) -> anyhow::Result<()> {
    let relay = app::start(cfg, role).await.context("cannot start")?;
    tokio::spawn(shutdown::on_signal(relay.shutdown_sender()));
    relay.wait().await;
    Ok(())
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("RELAY_LOG").unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new("info,librdkafka=warn,rdkafka=warn")
    });
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Human => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}
