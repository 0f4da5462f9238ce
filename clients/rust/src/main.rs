//! `tandemctl`: operator CLI for the Tandem control plane.

use clap::{Parser, Subcommand};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;

/// Operate Tandem: clusters, gateways, replication tasks, migrations.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    /// Control-plane gRPC endpoint.
    #[arg(
        long,
        env = "TANDEM_ENDPOINT",
        default_value = "http://127.0.0.1:50051"
    )]
    endpoint: String,
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
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let channel = tandem_client::connect(&cli.endpoint).await?;
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
    }
    Ok(())
}
