//! `tandem-controlplane` binary: connects to Postgres, applies migrations and
//! serves the gRPC API until SIGTERM / SIGINT.

use clap::Parser;
use tandem_controlplane::config::ControlPlaneConfig;
use tracing_subscriber::EnvFilter;

/// Tandem control plane: gRPC API for clusters, gateways, replication tasks,
/// queues, migration and comparison jobs.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    #[command(flatten)]
    config: ControlPlaneConfig,
    /// Log format: `text` or `json`.
    #[arg(long, env = "TANDEM_LOG_FORMAT", default_value = "text")]
    log_format: String,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    match args.log_format.as_str() {
        "json" => builder.json().init(),
        "text" => builder.init(),
        other => anyhow::bail!("--log-format: expected `text` or `json`, got {other:?}"),
    }

    let listener = tokio::net::TcpListener::bind(args.config.listen)
        .await
        .map_err(|e| anyhow::anyhow!("--listen {}: {e}", args.config.listen))?;
    tandem_controlplane::serve(&args.config, listener, shutdown_signal()).await
}

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("install SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("install SIGINT handler");
    tokio::select! {
        _ = term.recv() => {},
        _ = int.recv() => {},
    }
    tracing::info!("shutting down");
}
