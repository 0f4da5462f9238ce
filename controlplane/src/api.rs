//! The shared state every gRPC service implementation (and the job
//! handlers) hold: one cheap-to-clone handle, built by [`crate::server`].

use crate::fleet::Fleet;
use crate::metrics::Metrics;
use crate::probe::Prober;
use crate::secrets::SecretBox;

/// Shared state behind every service implementation.
#[derive(Debug, Clone)]
pub struct Api {
    /// Postgres connection pool.
    pub pool: sqlx::PgPool,
    /// Seals and opens stored secrets.
    pub secrets: SecretBox,
    /// Probes clusters over HTTP.
    pub prober: Prober,
    /// The gateways whose agent stream this process holds.
    pub fleet: Fleet,
    /// Prometheus metrics of this process.
    pub metrics: Metrics,
}
