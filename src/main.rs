//! The `genesys-relay` binary: command-line parsing and wiring only; the logic lives in
//! the library crate.

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use genesys_relay::app::{self, Role};
use genesys_relay::config::{Config, LogFormat};
use genesys_relay::genesys::{register_webhook, GenesysClient, RegistrationOutcome, WebhookSpec};
use genesys_relay::kafka::{EventProducer, Topics};
use genesys_relay::metrics::Metrics;
use genesys_relay::operator::{self, ReplaySelection};
use genesys_relay::{shutdown, sim};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

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
    /// Read Genesys Cloud notifications over WebSockets into the raw topic
    /// (RELAY_LISTEN_TOPICS / RELAY_LISTEN_QUEUES).
    Listen,
    /// Dead letters: list them, replay them to the raw topic.
    #[command(subcommand)]
    Dlq(DlqCommand),
    /// Genesys Cloud webhook registration.
    #[command(subcommand)]
    Webhooks(WebhooksCommand),
    /// Run the Genesys Cloud and CMS simulators until SIGTERM or Ctrl-C.
    Sim(SimArgs),
}

#[derive(Subcommand)]
enum DlqCommand {
    /// List the dead letters (partition and offset order).
    List {
        /// Show at most N dead letters.
        #[arg(long, value_name = "N")]
        limit: Option<usize>,
        /// Print one JSON array instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Republish dead letters to the raw topic with a fresh attempt count.
    Replay {
        /// Replay the dead letter of this event id (repeatable).
        #[arg(long = "event-id", value_name = "ID", conflicts_with = "all")]
        event_ids: Vec<String>,
        /// Replay every dead letter.
        #[arg(long)]
        all: bool,
        /// Show what would be replayed without writing anything.
        #[arg(long)]
        dry_run: bool,
    },
}

#[derive(Subcommand)]
enum WebhooksCommand {
    /// Make sure exactly one webhook named NAME points at URL (idempotent).
    Register {
        /// The relay's public ingress URL.
        #[arg(long)]
        url: String,
        #[arg(long, default_value = "genesys-relay")]
        name: String,
    },
}

#[derive(Args)]
struct SimArgs {
    #[arg(long, default_value = "127.0.0.1:8181")]
    genesys_addr: SocketAddr,
    #[arg(long, default_value = "127.0.0.1:8282")]
    cms_addr: SocketAddr,
    /// Also run a minimal Confluent-compatible schema registry on this address.
    #[arg(long)]
    registry_addr: Option<SocketAddr>,
    /// The only client id the simulated `/oauth/token` accepts.
    #[arg(long, env = "RELAY_GENESYS_CLIENT_ID", default_value = "sim-client")]
    client_id: String,
    /// The only client secret the simulated `/oauth/token` accepts.
    #[arg(
        long,
        env = "RELAY_GENESYS_CLIENT_SECRET",
        default_value = "sim-secret",
        hide_env_values = true
    )]
    client_secret: String,
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
        Command::Listen => Role::Listen,
        Command::Dlq(cmd) => return run_dlq(&cfg, cmd).await,
        Command::Webhooks(WebhooksCommand::Register { url, name }) => {
            return register(&cfg, WebhookSpec { name, url }).await
        }
        Command::Sim(args) => return run_sim(args).await,
    };
    run_role(cfg, role).await
}

async fn run_dlq(cfg: &Config, cmd: DlqCommand) -> anyhow::Result<()> {
    let dlq = Topics::new(&cfg.topic_prefix, cfg.retry_delays.len()).dlq;
    match cmd {
        DlqCommand::List { limit, json } => {
            let letters = operator::list_dead_letters(cfg, limit).await?;
            if json {
                println!("{}", operator::to_json(&letters)?);
            } else if letters.is_empty() {
                println!("no dead letters in {dlq}");
            } else {
                print!("{}", operator::format_table(&letters));
            }
        }
        DlqCommand::Replay {
            event_ids,
            all,
            dry_run,
        } => {
            let producer = EventProducer::new(cfg, Arc::new(Metrics::new()))?;
            let sel = ReplaySelection { event_ids, all };
            let report = operator::replay_dead_letters(cfg, &producer, &sel, dry_run).await?;
            if report.dry_run {
                println!("dry run: would replay {} dead letters", report.matched);
            } else {
                println!(
                    "replayed {} of {} dead letters",
                    report.replayed, report.matched
                );
            }
            if report.superseded > 0 {
                println!(
                    "skipped {} older dead letters of the same events",
                    report.superseded
                );
            }
            if !report.missing.is_empty() {
                anyhow::bail!("not found in {dlq}: {}", report.missing.join(", "));
            }
        }
    }
    Ok(())
}

async fn register(cfg: &Config, spec: WebhookSpec) -> anyhow::Result<()> {
    let http = reqwest::Client::builder()
        .timeout(cfg.http_timeout)
        .build()?;
    let client = GenesysClient::new(cfg.genesys()?, http, Arc::new(Metrics::new()));
    let outcome = register_webhook(&client, &spec)
        .await
        .context("webhook registration failed")?;
    let verb = match &outcome {
        RegistrationOutcome::Created { .. } => "created",
        RegistrationOutcome::Updated { .. } => "updated",
        RegistrationOutcome::Unchanged { .. } => "unchanged",
    };
    println!("{verb} {}", outcome.id());
    Ok(())
}

async fn run_sim(args: SimArgs) -> anyhow::Result<()> {
    let opts = sim::GenesysSimOptions {
        client_id: args.client_id,
        client_secret: args.client_secret,
        ..Default::default()
    };
    let genesys = sim::start_genesys(args.genesys_addr, opts)
        .await
        .with_context(|| {
            format!(
                "cannot start the Genesys simulator on {}",
                args.genesys_addr
            )
        })?;
    let cms = sim::start_cms(args.cms_addr)
        .await
        .with_context(|| format!("cannot start the CMS simulator on {}", args.cms_addr))?;
    let registry =
        match args.registry_addr {
            Some(addr) => Some(sim::start_schema_registry(addr).await.with_context(|| {
                format!("cannot start the schema registry simulator on {addr}")
            })?),
            None => None,
        };
    tracing::info!(
        genesys = %genesys.base_url(),
        cms = %cms.base_url(),
        registry = registry.as_ref().map(|r| r.base_url()).unwrap_or_default(),
        "simulators running; Ctrl-C to stop"
    );
    let (tx, rx) = shutdown::channel();
    tokio::spawn(shutdown::on_signal(tx));
    shutdown::signalled(rx).await;
    tokio::join!(genesys.shutdown(), cms.shutdown());
    if let Some(r) = registry {
        r.shutdown().await;
    }
    tracing::info!("simulators stopped");
    Ok(())
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
