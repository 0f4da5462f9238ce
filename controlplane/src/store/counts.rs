//! Fleet-wide counts behind the control plane's metrics: gateways by
//! connection and drain state, replication tasks by state.
//!
//! Two aggregate queries over small tables, read on every `/metrics` scrape;
//! the values are the same on every replica.

use sqlx::PgPool;
use tandem_proto::v1 as pb;

use super::StoreError;
use super::tasks::state_name;

/// Every task state, in the order the metrics list them.
const TASK_STATES: [pb::TaskState; 7] = [
    pb::TaskState::Created,
    pb::TaskState::Running,
    pb::TaskState::Paused,
    pb::TaskState::CuttingOver,
    pb::TaskState::RollingBack,
    pb::TaskState::Stopped,
    pb::TaskState::Failed,
];

/// Gateways and tasks as stored right now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FleetCounts {
    /// Gateways that ever said hello and were not removed.
    pub gateways_known: i64,
    /// Gateways whose agent stream is open on some replica.
    pub gateways_connected: i64,
    /// Gateways reporting that they are draining (not yet drained).
    pub gateways_draining: i64,
    /// Replication tasks per stored state name, every state listed (zero
    /// when no task is in it).
    pub tasks_by_state: Vec<(&'static str, i64)>,
}

#[derive(sqlx::FromRow)]
struct GatewayCountsRow {
    known: i64,
    connected: i64,
    draining: i64,
}

/// Reads the counts (two queries on one connection).
pub async fn read(pool: &PgPool) -> Result<FleetCounts, StoreError> {
    let mut conn = pool.acquire().await?;
    let gateways: GatewayCountsRow = sqlx::query_as(
        "SELECT count(*) AS known, \
                count(*) FILTER (WHERE connection_state = 'connected') AS connected, \
                count(*) FILTER (WHERE drain_state = 'draining') AS draining \
         FROM gateways",
    )
    .fetch_one(&mut *conn)
    .await?;
    let stored: Vec<(String, i64)> =
        sqlx::query_as("SELECT state, count(*) FROM replication_tasks GROUP BY state")
            .fetch_all(&mut *conn)
            .await?;
    let tasks_by_state = TASK_STATES
        .iter()
        .map(|state| {
            let name = state_name(*state);
            let count = stored
                .iter()
                .find(|(stored_name, _)| stored_name == name)
                .map_or(0, |(_, count)| *count);
            (name, count)
        })
        .collect();
    Ok(FleetCounts {
        gateways_known: gateways.known,
        gateways_connected: gateways.connected,
        gateways_draining: gateways.draining,
        tasks_by_state,
    })
}
