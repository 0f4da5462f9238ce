//! `tandem-gateway` binary: loads the config and runs the proxy until
//! SIGTERM (graceful) or SIGINT (fast).

use std::path::PathBuf;

use clap::Parser;
use tracing_subscriber::EnvFilter;

/// Tandem gateway: dual-writing proxy in front of a search cluster.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// Path of the TOML configuration file.
    #[arg(long, short, env = "TANDEM_GATEWAY_CONFIG")]
    config: PathBuf,
    /// Log format: `text` or `json`.
    #[arg(long, env = "TANDEM_LOG_FORMAT", default_value = "text")]
    log_format: String,
}

/// mimalloc: the write path allocates on the proxy threads and frees on the
/// queue writer's thread; glibc's arenas made that a sixth of the CPU.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    match args.log_format.as_str() {
        "json" => builder.json().init(),
        "text" => builder.init(),
        other => anyhow::bail!("--log-format: expected `text` or `json`, got {other:?}"),
    }

    let config = tandem_gateway::GatewayConfig::load(&args.config)?;
    tracing::info!(
        listen = %config.listen,
        admin = %config.admin_listen,
        primary = %config.primary.url,
        "starting gateway"
    );
    let handle = tandem_gateway::spawn(&config, true)?;
    handle.wait();
    tracing::info!("gateway stopped");
    Ok(())
}
