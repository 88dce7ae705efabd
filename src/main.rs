//! The `genesys-relay` binary: command-line parsing and wiring only; the logic lives in
//! the library crate.

use anyhow::Context;
use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};
use genesys_relay::app::{self, Config, Role};
use genesys_relay::config::{self, LogFormat};
use genesys_relay::genesys::{register_trigger, GenesysClient, TriggerSpec};
use genesys_relay::kafka::EventProducer;
use genesys_relay::metrics::Metrics;
use genesys_relay::operator::{self, ReplaySelection};
use genesys_relay::shutdown;
use std::path::PathBuf;
use std::sync::Arc;

/// mimalloc instead of the system allocator: per-event buffers are allocated on one thread
/// and freed on another, which glibc's malloc serves slowly (BENCHMARKS.md, profile).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
    /// Genesys Cloud Process Automation triggers.
    #[command(subcommand)]
    Triggers(TriggersCommand),
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
enum TriggersCommand {
    /// Make sure exactly one trigger named NAME starts workflow ID on TOPIC with the event as
    /// JSON (dataFormat Json, the workflow's jsonData input), idempotent over every page: find
    /// by name; create, update (keeping fields set by hand) or leave unchanged.
    Register {
        /// The notification topic, e.g. v2.detail.events.conversation.{id}.customer.start; it
        /// must be one GET /api/v2/processautomation/triggers/topics lists.
        #[arg(long)]
        topic: String,
        /// The Architect workflow the trigger starts (its Data Action POSTs to the relay).
        #[arg(long)]
        workflow_id: String,
        #[arg(long, default_value = "genesys-relay")]
        name: String,
        /// Match criterion JSONPATH=VALUE (operator Equal; VALUE is JSON when it parses as
        /// JSON, else a string). Repeatable.
        #[arg(long = "match", value_name = "JSONPATH=VALUE", value_parser = parse_match)]
        matches: Vec<(String, serde_json::Value)>,
    },
}

fn parse_match(raw: &str) -> Result<(String, serde_json::Value), String> {
    let (path, value) = raw
        .split_once('=')
        .filter(|(p, _)| !p.trim().is_empty())
        .ok_or_else(|| format!("{raw:?} is not JSONPATH=VALUE"))?;
    let value =
        serde_json::from_str(value).unwrap_or_else(|_| serde_json::Value::String(value.into()));
    Ok((path.trim().to_string(), value))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // `--help` lists every setting from the same table as the README.
    let matches = Cli::command()
        .after_long_help(config::settings_help())
        .get_matches();
    let cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    let cfg = Config::load(cli.config.as_deref())?;
    init_logging(cfg.log_format);
    let role = match cli.command {
        Command::Serve => Role::Serve,
        Command::Ingress => Role::Ingress,
        Command::Worker => Role::Worker,
        Command::Listen => Role::Listen,
        Command::Dlq(cmd) => {
            // The same bounded wait as the long-running roles, so a wrong broker list or
            // password is named instead of a silent two-minute read.
            let kafka = cfg.kafka.clone();
            tokio::task::spawn_blocking(move || genesys_relay::kafka::check_cluster(&kafka))
                .await??;
            return run_dlq(&cfg, cmd).await;
        }
        Command::Triggers(TriggersCommand::Register {
            topic,
            workflow_id,
            name,
            matches,
        }) => {
            let spec = TriggerSpec {
                name,
                topic_name: topic,
                workflow_id,
                match_criteria: matches,
            };
            return register(&cfg, spec).await;
        }
    };
    run_role(cfg, role).await
}

async fn run_dlq(cfg: &Config, cmd: DlqCommand) -> anyhow::Result<()> {
    let dlq = cfg.topics().dlq;
    match cmd {
        DlqCommand::List { limit, json } => {
            let letters = operator::list_dead_letters(&cfg.operator(), limit).await?;
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
            let producer = EventProducer::new(&cfg.kafka, Arc::new(Metrics::new()))?;
            let sel = ReplaySelection { event_ids, all };
            let report =
                operator::replay_dead_letters(&cfg.operator(), &producer, &sel, dry_run).await?;
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
            if !report.already_synced.is_empty() {
                println!(
                    "skipped {} dead letters of events synced after all: {}",
                    report.already_synced.len(),
                    report.already_synced.join(", ")
                );
            }
            if !report.missing.is_empty() {
                anyhow::bail!("not found in {dlq}: {}", report.missing.join(", "));
            }
        }
    }
    Ok(())
}

async fn register(cfg: &Config, spec: TriggerSpec) -> anyhow::Result<()> {
    let http = app::http_client(cfg)?;
    let client = GenesysClient::new(cfg.genesys.config()?, http, Arc::new(Metrics::new()));
    let outcome = register_trigger(&client, &spec)
        .await
        .context("trigger registration failed")?;
    println!("{} {}", outcome.verb(), outcome.id());
    Ok(())
}

async fn run_role(cfg: Config, role: Role) -> anyhow::Result<()> {
    // One line (`Error: cannot start: <reason>`), not anyhow's multi-line cause chain.
    let relay = app::start(cfg, role)
        .await
        .map_err(|e| anyhow::anyhow!("cannot start: {e}"))?;
    tokio::spawn(shutdown::on_signal(relay.shutdown_sender()));
    // A failed part ends the process non-zero, naming the part and the cause.
    relay
        .wait()
        .await
        .map_err(|e| anyhow::anyhow!("stopped: {e}"))
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("RELAY_LOG").unwrap_or_else(|_| {
        let default = config::default_value("RELAY_LOG").unwrap_or("info");
        tracing_subscriber::EnvFilter::new(default)
    });
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Human => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}
