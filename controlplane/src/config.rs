//! Control-plane settings, from flags or environment variables.

use std::net::SocketAddr;
use std::time::Duration;

/// Everything the control plane needs to start.
#[derive(Debug, Clone, clap::Args)]
pub struct ControlPlaneConfig {
    /// Address of the gRPC API.
    #[arg(long, env = "TANDEM_CP_LISTEN", default_value = "127.0.0.1:50051")]
    pub listen: SocketAddr,
    /// Postgres connection URL, e.g. postgres://user:pass@host:5432/tandem.
    #[arg(long, env = "TANDEM_DATABASE_URL")]
    pub database_url: String,
    /// How long to keep retrying the first Postgres connection, in seconds.
    #[arg(long, env = "TANDEM_DATABASE_WAIT_SECS", default_value_t = 30)]
    pub database_wait_secs: u64,
}

impl ControlPlaneConfig {
    /// The first-connection retry window.
    pub fn database_wait(&self) -> Duration {
        Duration::from_secs(self.database_wait_secs)
    }
}
