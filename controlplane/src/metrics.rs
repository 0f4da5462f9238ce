//! Prometheus metrics of the control plane, served at `GET /metrics` on
//! `--metrics-listen` (see [`endpoint`]).
//!
//! Two kinds of metrics, all named `tandem_controlplane_*`:
//!
//! - **Events**, counted as they happen in this process and kept in the
//!   [`Metrics`] handle: gRPC requests (recorded by the [`grpc`] layer around
//!   the server) and gateway command outcomes ([`Metrics::command_finished`]).
//! - **State**, read at scrape time ([`Metrics::scrape`]): the agent streams
//!   open on this replica and the Postgres pool come from memory; gateways
//!   and tasks come from one cheap Postgres read
//!   ([`crate::store::counts`]). When Postgres does not answer within
//!   [`DATABASE_SCRAPE_TIMEOUT`] the scrape still succeeds: it reports
//!   `tandem_controlplane_database_up 0` and leaves the database-derived
//!   gauges out rather than repeating stale values.
//!
//! Each [`Metrics`] owns its registry (no process globals), so several
//! control planes can run in one process — the integration tests do.

pub mod endpoint;
pub mod grpc;

use std::sync::Arc;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::encoding::text::{encode_eof, encode_registry};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use sqlx::PgPool;

use crate::store;

/// Prefix of every metric name.
const PREFIX: &str = "tandem_controlplane";

/// How long a scrape waits for Postgres before reporting it down.
pub const DATABASE_SCRAPE_TIMEOUT: Duration = Duration::from_secs(2);

/// Labels of a finished gRPC request.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RpcLabels {
    /// Fully-qualified service, e.g. `tandem.v1.ClusterService`, or
    /// `unknown` for a path the server does not serve.
    pub service: String,
    /// Method name, e.g. `ListClusters`, or `unknown`.
    pub method: String,
    /// Final gRPC status code, e.g. `OK`, `INVALID_ARGUMENT`.
    pub code: String,
}

/// Labels of the gRPC latency histogram.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct MethodLabels {
    /// Fully-qualified service.
    pub service: String,
    /// Method name.
    pub method: String,
}

/// Labels of a finished gateway command.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CommandLabels {
    /// What the command asked for, e.g. `peek_records`, `retry_dead_letters`.
    pub kind: String,
    /// How it ended: `succeeded`, `failed`, `rejected` or `expired`.
    pub outcome: String,
}

/// Labels of the task-state gauge.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabels {
    /// Stored task state, e.g. `running`.
    state: String,
}

/// The control plane's metrics: a cheap, cloneable handle.
#[derive(Clone)]
pub struct Metrics {
    inner: Arc<Inner>,
}

struct Inner {
    registry: Registry,
    grpc_requests: Family<RpcLabels, Counter>,
    grpc_request_duration: Family<MethodLabels, Histogram>,
    commands: Family<CommandLabels, Counter>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// A fresh registry with every event metric registered.
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix(PREFIX);
        let grpc_requests = Family::<RpcLabels, Counter>::default();
        registry.register(
            "grpc_requests",
            "gRPC requests finished, by service, method and status code (streams count when they end)",
            grpc_requests.clone(),
        );
        let grpc_request_duration = Family::<MethodLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.000_5, 2.0, 16))
        });
        registry.register(
            "grpc_request_duration_seconds",
            "Latency of unary gRPC requests, from request to the end of the response",
            grpc_request_duration.clone(),
        );
        let commands = Family::<CommandLabels, Counter>::default();
        registry.register(
            "commands",
            "Commands sent to gateways, by kind and outcome",
            commands.clone(),
        );
        Metrics {
            inner: Arc::new(Inner {
                registry,
                grpc_requests,
                grpc_request_duration,
                commands,
            }),
        }
    }

    /// Records that a command sent to a gateway finished: `kind` names what
    /// it asked for (`peek_records`, `retry_dead_letters`, ...) and `outcome`
    /// how it ended (`succeeded`, `failed`, `rejected`, `expired`). Keep both to a
    /// small fixed set of words: each pair becomes its own time series.
    pub fn command_finished(&self, kind: &str, outcome: &str) {
        self.inner
            .commands
            .get_or_create(&CommandLabels {
                kind: kind.to_string(),
                outcome: outcome.to_string(),
            })
            .inc();
    }

    /// Records a finished gRPC request; `duration` only for unary ones.
    fn rpc_finished(&self, labels: RpcLabels, duration: Option<Duration>) {
        if let Some(duration) = duration {
            self.inner
                .grpc_request_duration
                .get_or_create(&MethodLabels {
                    service: labels.service.clone(),
                    method: labels.method.clone(),
                })
                .observe(duration.as_secs_f64());
        }
        self.inner.grpc_requests.get_or_create(&labels).inc();
    }

    /// The OpenMetrics text exposition: every event metric, then the state
    /// read now from `pool` and the database, with `agent_streams` (the
    /// agent streams this replica holds).
    pub async fn scrape(&self, pool: &PgPool, agent_streams: usize) -> String {
        let counts =
            match tokio::time::timeout(DATABASE_SCRAPE_TIMEOUT, store::counts::read(pool)).await {
                Ok(Ok(counts)) => Some(counts),
                Ok(Err(err)) => {
                    tracing::debug!(error = %err, "metrics: reading fleet counts failed");
                    None
                }
                Err(_) => {
                    tracing::debug!("metrics: reading fleet counts timed out");
                    None
                }
            };
        let state = state_registry(pool, agent_streams, counts.as_ref());
        let mut out = String::new();
        encode_registry(&mut out, &self.inner.registry)
            .and_then(|()| encode_registry(&mut out, &state))
            .and_then(|()| encode_eof(&mut out))
            .expect("writing to a String cannot fail");
        out
    }
}

/// A registry holding the gauges of one scrape.
fn state_registry(
    pool: &PgPool,
    agent_streams: usize,
    counts: Option<&store::counts::FleetCounts>,
) -> Registry {
    let mut registry = Registry::with_prefix(PREFIX);
    gauge(
        &mut registry,
        "agent_streams",
        "Gateway agent streams open on this replica",
        i64::try_from(agent_streams).unwrap_or(i64::MAX),
    );
    gauge(
        &mut registry,
        "database_pool_connections",
        "Postgres connections open in this replica's pool",
        i64::from(pool.size()),
    );
    gauge(
        &mut registry,
        "database_pool_idle_connections",
        "Idle Postgres connections in this replica's pool",
        pool.num_idle() as i64,
    );
    gauge(
        &mut registry,
        "database_pool_max_connections",
        "Most Postgres connections this replica's pool opens",
        i64::from(pool.options().get_max_connections()),
    );
    gauge(
        &mut registry,
        "database_up",
        "1 when this scrape read the fleet counts from Postgres, 0 when that failed or timed out",
        i64::from(counts.is_some()),
    );
    let Some(counts) = counts else {
        return registry;
    };
    gauge(
        &mut registry,
        "gateways_known",
        "Gateways registered with the control plane (fleet-wide)",
        counts.gateways_known,
    );
    gauge(
        &mut registry,
        "gateways_connected",
        "Gateways whose agent stream is open on any replica (fleet-wide)",
        counts.gateways_connected,
    );
    gauge(
        &mut registry,
        "gateways_draining",
        "Gateways reporting that they are draining (fleet-wide)",
        counts.gateways_draining,
    );
    let tasks = Family::<StateLabels, Gauge>::default();
    for (state, count) in &counts.tasks_by_state {
        tasks
            .get_or_create(&StateLabels {
                state: state.to_string(),
            })
            .set(*count);
    }
    registry.register("tasks", "Replication tasks by state (fleet-wide)", tasks);
    registry
}

/// Registers a gauge holding `value`.
fn gauge(registry: &mut Registry, name: &str, help: &str, value: i64) {
    let gauge = Gauge::<i64>::default();
    gauge.set(value);
    registry.register(name, help, gauge);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn scrape_without_database_reports_it_down_and_keeps_event_metrics() {
        let metrics = Metrics::new();
        metrics.command_finished("repair_queue", "succeeded");
        metrics.command_finished("repair_queue", "succeeded");
        metrics.command_finished("peek_records", "expired");
        // Nothing listens on port 1: every connection attempt fails.
        let pool = sqlx::postgres::PgPoolOptions::new()
            .acquire_timeout(Duration::from_millis(200))
            .connect_lazy("postgres://tandem@127.0.0.1:1/tandem")
            .unwrap();
        let text = metrics.scrape(&pool, 0).await;
        for line in [
            r#"tandem_controlplane_commands_total{kind="repair_queue",outcome="succeeded"} 2"#,
            r#"tandem_controlplane_commands_total{kind="peek_records",outcome="expired"} 1"#,
            "tandem_controlplane_database_up 0",
            "tandem_controlplane_agent_streams 0",
            "tandem_controlplane_database_pool_max_connections 10",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} missing: {text}");
        }
        assert!(
            !text.contains("tandem_controlplane_gateways_known"),
            "{text}"
        );
        assert!(text.ends_with("# EOF\n"), "{text}");
    }
}
