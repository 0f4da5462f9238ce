//! `tandemctl`: operator CLI for the Tandem control plane.
//!
//! ```text
//! export TANDEM_ENDPOINT=http://127.0.0.1:50051 TANDEM_TOKEN=...
//! tandemctl cluster register es-old --url http://es-old:9200 --username tandem --secret-stdin
//! tandemctl cluster list
//! tandemctl cluster get es-old --output json
//! tandemctl gateway list
//! tandemctl gateway drain edge-1 --wait
//! tandemctl queue stats -o json
//! tandemctl task create seed --primary es-old --backup es-new --gateway edge-1 --start-paused
//! tandemctl task cutover seed --wait
//! tandemctl compare create --source es-old --target es-new --include 'logs-*'
//! ```

mod cli;
// Mounted here rather than in `cli/mod.rs` while that module is reworked.

use clap::{Parser, Subcommand};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;

use crate::cli::cluster::ClusterCommand;
use crate::cli::compare::CompareCommand;
use crate::cli::gateway::GatewayCommand;
use crate::cli::migration::MigrationCommand;
use crate::cli::output::Output;
use crate::cli::queue::QueueCommand;
use crate::cli::task::TaskCommand;

/// Operate Tandem: clusters, gateways, replication tasks, migrations.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    /// Control-plane gRPC endpoint.
    #[arg(
        long,
        env = "TANDEM_ENDPOINT",
        default_value = "http://127.0.0.1:50051",
        global = true
    )]
    endpoint: String,
    /// Bearer token of the control plane (its --auth-token). Not needed for
    /// `health`.
    #[arg(long, env = "TANDEM_TOKEN", hide_env_values = true, global = true)]
    token: Option<String>,
    /// CA certificate (PEM) of an https:// endpoint; default: the system's
    /// trusted roots.
    #[arg(long, env = "TANDEM_CA_FILE", global = true)]
    ca_file: Option<std::path::PathBuf>,
    /// Client certificate (PEM) for a control plane requiring mutual TLS.
    #[arg(long, env = "TANDEM_CERT_FILE", global = true, requires = "key_file")]
    cert_file: Option<std::path::PathBuf>,
    /// Private key (PEM) of --cert-file.
    #[arg(long, env = "TANDEM_KEY_FILE", global = true, requires = "cert_file")]
    key_file: Option<std::path::PathBuf>,
    /// Output format.
    #[arg(long, short = 'o', value_enum, default_value = "table", global = true)]
    output: Output,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Check that the control plane is serving (gRPC health).
    Health {
        /// Service to check; empty means the server as a whole.
        #[arg(long, default_value = "")]
        service: String,
    },
    /// Register, inspect, change, probe and remove clusters.
    #[command(subcommand)]
    Cluster(ClusterCommand),
    /// Inspect the gateway fleet; drain, undrain and forget gateways.
    #[command(subcommand)]
    Gateway(GatewayCommand),
    /// Inspect the gateways' replication queues.
    #[command(subcommand)]
    Queue(QueueCommand),
    /// Create and drive replication tasks: start, pause, cutover, rollback.
    #[command(subcommand)]
    Task(TaskCommand),
    /// Copy existing data between clusters (full-migration jobs).
    #[command(subcommand)]
    Migration(MigrationCommand),
    /// Compare the documents of two clusters and list the differences.
    #[command(subcommand)]
    Compare(CompareCommand),
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let tls = tandem_client::Tls {
        ca_file: cli.ca_file.clone(),
        cert_file: cli.cert_file.clone(),
        key_file: cli.key_file.clone(),
    };
    let channel = tandem_client::connect_with(&cli.endpoint, &tls).await?;
    match cli.command {
        Command::Health { service } => {
            let response = HealthClient::new(channel)
                .check(HealthCheckRequest {
                    service: service.clone(),
                })
                .await
                .map_err(|status| anyhow::anyhow!("health check failed: {}", status.message()))?
                .into_inner();
            let status = response.status().as_str_name();
            let name = if service.is_empty() {
                "control plane"
            } else {
                &service
            };
            println!("{name}: {status}");
            if response.status() != tonic_health::pb::health_check_response::ServingStatus::Serving
            {
                std::process::exit(1);
            }
        }
        Command::Cluster(command) => {
            let token = tandem_client::BearerToken::new(cli.token.as_deref())?;
            let client = tandem_client::cluster_client(channel, token);
            cli::cluster::run(client, command, cli.output).await?;
        }
        Command::Gateway(command) => {
            let token = tandem_client::BearerToken::new(cli.token.as_deref())?;
            let client = tandem_client::gateway_client(channel, token);
            cli::gateway::run(client, command, cli.output).await?;
        }
        Command::Queue(command) => {
            let token = tandem_client::BearerToken::new(cli.token.as_deref())?;
            let client = tandem_client::queue_client(channel, token);
            cli::queue::run(client, command, cli.output).await?;
        }
        Command::Task(command) => {
            let token = tandem_client::BearerToken::new(cli.token.as_deref())?;
            let client = tandem_client::replication_client(channel, token);
            cli::task::run(client, command, cli.output).await?;
        }
        Command::Migration(command) => {
            let token = tandem_client::BearerToken::new(cli.token.as_deref())?;
            let client = tandem_client::migration_client(channel, token);
            cli::migration::run(client, command, cli.output).await?;
        }
        Command::Compare(command) => {
            let token = tandem_client::BearerToken::new(cli.token.as_deref())?;
            let client = tandem_client::compare_client(channel, token);
            cli::compare::run(client, command, cli.output).await?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    #[test]
    fn command_line_definition_is_consistent() {
        super::Cli::command().debug_assert();
    }
}
