//! The `genesys-sim` binary: runs the Genesys Cloud and CMS simulators (and optionally a
//! schema registry) until SIGTERM or Ctrl-C. Parsing and wiring only; the servers live in
//! the library.

use std::net::SocketAddr;

use anyhow::Context;
use clap::Parser;

#[derive(Parser)]
#[command(
    name = "genesys-sim",
    version,
    about = "Genesys Cloud and headless-CMS simulators speaking the real API shapes"
)]
struct Cli {
    #[arg(long, default_value = "127.0.0.1:8181")]
    genesys_addr: SocketAddr,
    #[arg(long, default_value = "127.0.0.1:8282")]
    cms_addr: SocketAddr,
    /// Also run a minimal Confluent-compatible schema registry on this address.
    #[arg(long)]
    registry_addr: Option<SocketAddr>,
    /// Also run the Contentful Content Management API simulator on this address.
    #[arg(long)]
    contentful_addr: Option<SocketAddr>,
    /// Also run the Sanity HTTP API simulator on this address.
    #[arg(long)]
    sanity_addr: Option<SocketAddr>,
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
    let filter = tracing_subscriber::EnvFilter::try_from_env("RELAY_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    let opts = genesys_sim::GenesysSimOptions {
        client_id: cli.client_id,
        client_secret: cli.client_secret,
        ..Default::default()
    };
    let genesys = genesys_sim::start_genesys(cli.genesys_addr, opts)
        .await
        .with_context(|| format!("cannot start the Genesys simulator on {}", cli.genesys_addr))?;
    let cms = genesys_sim::start_cms(cli.cms_addr)
        .await
        .with_context(|| format!("cannot start the CMS simulator on {}", cli.cms_addr))?;
    let registry = match cli.registry_addr {
        Some(addr) => Some(
            genesys_sim::start_schema_registry(addr)
                .await
                .with_context(|| format!("cannot start the schema registry simulator on {addr}"))?,
        ),
        None => None,
    };
    let contentful = match cli.contentful_addr {
        Some(addr) => Some(
            genesys_sim::start_contentful(addr, Default::default())
                .await
                .with_context(|| format!("cannot start the Contentful simulator on {addr}"))?,
        ),
        None => None,
    };
    let sanity = match cli.sanity_addr {
        Some(addr) => Some(
            genesys_sim::start_sanity(addr, Default::default())
                .await
                .with_context(|| format!("cannot start the Sanity simulator on {addr}"))?,
        ),
        None => None,
    };
    tracing::info!(
        genesys = %genesys.base_url(),
        cms = %cms.base_url(),
        registry = registry.as_ref().map(|r| r.base_url()).unwrap_or_default(),
        "simulators running; Ctrl-C to stop"
    );
    stop_signal().await;
    tokio::join!(genesys.shutdown(), cms.shutdown());
    for extra in [registry, contentful, sanity].into_iter().flatten() {
        extra.shutdown().await;
    }
    tracing::info!("simulators stopped");
    Ok(())
}

/// SIGTERM (what process managers send) or Ctrl-C.
async fn stop_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
