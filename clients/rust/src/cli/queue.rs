//! `tandemctl queue ...`: the gateways' replication queues (QueueService).

use clap::Subcommand;
use tandem_client::AuthenticatedChannel;
use tandem_client::v1::GetQueueStatsRequest;
use tandem_client::v1::queue_service_client::QueueServiceClient;

use super::cluster::rpc_error;
use super::output::{self, Output};

type Client = QueueServiceClient<AuthenticatedChannel>;

/// Queue commands.
#[derive(Debug, Subcommand)]
pub enum QueueCommand {
    /// Queue statistics as last reported by the gateways: fleet-wide, per
    /// task (with the per-gateway breakdown) and per gateway.
    Stats {
        /// Only this task.
        #[arg(long)]
        task: Option<String>,
        /// Only this gateway (id).
        #[arg(long)]
        gateway: Option<String>,
    },
}

/// Runs a queue command.
pub async fn run(mut client: Client, command: QueueCommand, output: Output) -> anyhow::Result<()> {
    match command {
        QueueCommand::Stats { task, gateway } => {
            let stats = client
                .get_queue_stats(GetQueueStatsRequest {
                    task_id: task.unwrap_or_default(),
                    gateway_id: gateway.unwrap_or_default(),
                })
                .await
                .map_err(|s| rpc_error("GetQueueStats", s))?
                .into_inner();
            output::queue_stats(&stats, output);
        }
    }
    Ok(())
}
