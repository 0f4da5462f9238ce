//! Task status from the gateways' latest reports: per-gateway mode,
//! direction and lag, the totals, and health.

use std::time::Duration;

use tandem_proto::codes;
use tandem_proto::v1 as pb;

use crate::services::{duration, timestamp};
use crate::store::gateways::{Connection, GatewayRecord};
use crate::store::tasks::{OperationRecord, TaskRecord};

/// Id under which a gateway reports its replication before any assignment.
pub const LOCAL_TASK_ID: &str = "local";

/// How long a divergence or an unreconcilable write keeps a task DEGRADED.
pub const RECENT_DIVERGENCE: Duration = Duration::from_secs(15 * 60);

/// Default `lag_thresholds.warning_lag`.
pub const DEFAULT_WARNING_LAG: Duration = Duration::from_secs(60);

/// The task's gateways as last reported, ordered by gateway id.
#[derive(Debug, Clone, Default)]
pub struct TaskView {
    /// One status per gateway.
    pub gateways: Vec<pb::TaskGatewayStatus>,
}

impl TaskView {
    /// Unreplayed records summed over the gateways.
    pub fn lag_records(&self) -> u64 {
        self.gateways.iter().map(|g| g.lag_records).sum()
    }

    /// Age of the oldest unreplayed record, worst gateway.
    pub fn worst_lag(&self) -> Duration {
        self.gateways
            .iter()
            .filter_map(|g| g.lag.as_ref())
            .map(|d| Duration::new(d.seconds.max(0) as u64, d.nanos.max(0) as u32))
            .max()
            .unwrap_or_default()
    }

    /// Unresolved dead letters summed over the gateways.
    pub fn dead_letters(&self) -> u64 {
        self.gateways.iter().map(|g| g.dead_letters).sum()
    }

    /// The first disconnected gateway, if any.
    pub fn disconnected(&self) -> Option<&pb::TaskGatewayStatus> {
        self.gateways.iter().find(|g| !g.connected)
    }

    /// Why stopping now would lose writes, if it would.
    pub fn unreplayed_problem(&self) -> Option<String> {
        if let Some(g) = self.disconnected() {
            return Some(format!(
                "gateway {} is disconnected, so its unreplayed records are unknown",
                g.gateway_id
            ));
        }
        let lag = self.lag_records();
        (lag > 0).then(|| format!("{lag} records are not replayed yet"))
    }
}

/// The status of gateway `id` (row `record`, `None` when it was deleted)
/// for `task`.
pub fn gateway_status(
    task: &TaskRecord,
    id: &str,
    record: Option<&GatewayRecord>,
) -> pb::TaskGatewayStatus {
    let mut status = pb::TaskGatewayStatus {
        gateway_id: id.to_string(),
        ..Default::default()
    };
    let Some(record) = record else {
        return status;
    };
    let task_id = task.id.to_string();
    status.connected = record.connection == Connection::Connected;
    status.in_sync = status.connected && record.applied_version >= record.desired_version;
    status.reported_at = record.last_heartbeat_at.map(timestamp);
    if let Some(heartbeat) = &record.last_heartbeat {
        let runtime = heartbeat
            .tasks
            .iter()
            .find(|t| t.task_id == task_id)
            .or_else(|| heartbeat.tasks.iter().find(|t| t.task_id == LOCAL_TASK_ID));
        if let Some(runtime) = runtime {
            status.mode = runtime.mode;
            status.direction = runtime.direction;
            status.consumer_state = runtime.consumer_state;
            status.lag_records = runtime.lag_records;
        }
    }
    if let Some(stats) = &record.last_queue_stats {
        let report = stats
            .tasks
            .iter()
            .find(|t| t.task_id == task_id)
            .or_else(|| stats.tasks.iter().find(|t| t.task_id == LOCAL_TASK_ID));
        if let Some(queue) = report.and_then(|r| r.stats.as_ref()) {
            status.lag = queue.lag;
            status.dead_letters = queue.dead_letters;
            status.verifier_divergences = queue.verifier_divergences;
            status.unreconcilable_writes = queue.unreconcilable_writes;
            status.last_divergence_at = queue.last_divergence_at;
            status.last_unreconcilable_at = queue.last_unreconcilable_at;
        }
    }
    status
}

fn millis(ms: i64) -> Duration {
    Duration::from_millis(u64::try_from(ms).unwrap_or(0))
}

/// The operation as the API shows it.
pub fn operation(op: &OperationRecord) -> pb::RoleSwapOperation {
    pb::RoleSwapOperation {
        id: op.id.to_string(),
        kind: op.kind as i32,
        phase: op.phase as i32,
        max_lag: Some(duration(millis(op.max_lag_ms))),
        max_lag_records: u64::try_from(op.max_lag_records).unwrap_or(0),
        hold_timeout: Some(duration(millis(op.hold_timeout_ms))),
        start_lag: None,
        start_lag_records: u64::try_from(op.start_lag_records).unwrap_or(0),
        gateways_total: u32::try_from(op.gateways_total).unwrap_or(0),
        gateways_ready: u32::try_from(op.gateways_ready).unwrap_or(0),
        started_at: Some(timestamp(op.started_at)),
        hold_started_at: op.hold_started_at.map(timestamp),
        hold_released_at: op.hold_released_at.map(timestamp),
        finished_at: op.finished_at.map(timestamp),
        error: op.error.as_ref().map(|(reason, message)| pb::ErrorInfo {
            reason: reason.clone(),
            message: message.clone(),
            ..Default::default()
        }),
    }
}

/// Health and problems of a task.
fn health(task: &TaskRecord, view: &TaskView) -> (pb::TaskHealth, Vec<pb::ErrorInfo>) {
    let mut problems = Vec::new();
    let mut blocked = false;
    let problem = |reason: &str, message: String| pb::ErrorInfo {
        reason: reason.to_string(),
        message,
        ..Default::default()
    };
    if matches!(task.state, pb::TaskState::Stopped) {
        return (pb::TaskHealth::Healthy, problems);
    }
    for g in &view.gateways {
        if !g.connected {
            problems.push(problem(
                codes::GATEWAY_DISCONNECTED,
                format!("gateway {} is disconnected", g.gateway_id),
            ));
        } else if !g.in_sync {
            problems.push(problem(
                codes::GATEWAY_OUT_OF_SYNC,
                format!(
                    "gateway {} has not applied the latest desired state",
                    g.gateway_id
                ),
            ));
        }
        if g.consumer_state == pb::ConsumerState::BlockedCorrupt as i32 {
            blocked = true;
            problems.push(problem(
                codes::QUEUE_CORRUPT,
                format!("the queue of gateway {} is corrupt", g.gateway_id),
            ));
        }
    }
    let warning_lag = if task.warning_lag_ms > 0 {
        millis(task.warning_lag_ms)
    } else {
        DEFAULT_WARNING_LAG
    };
    if view.worst_lag() > warning_lag {
        problems.push(problem(
            codes::LAG_ABOVE_THRESHOLD,
            format!("lag {:?} is above {:?}", view.worst_lag(), warning_lag),
        ));
    }
    let records = view.lag_records();
    if task.warning_records > 0 && records > task.warning_records as u64 {
        problems.push(problem(
            codes::LAG_ABOVE_THRESHOLD,
            format!(
                "{records} unreplayed records, above {}",
                task.warning_records
            ),
        ));
    }
    let now = std::time::SystemTime::now();
    let recent = |at: Option<prost_types::Timestamp>| {
        at.and_then(|t| std::time::SystemTime::try_from(t).ok())
            .and_then(|t| now.duration_since(t).ok())
            .is_some_and(|age| age < RECENT_DIVERGENCE)
    };
    for g in &view.gateways {
        if recent(g.last_divergence_at) {
            problems.push(problem(
                codes::BACKUP_DIVERGED,
                format!(
                    "the verifier of gateway {} found documents different on the backup ({} in all, each repaired from the primary); run a comparison job to check the rest",
                    g.gateway_id, g.verifier_divergences
                ),
            ));
        }
        if recent(g.last_unreconcilable_at) {
            problems.push(problem(
                codes::UNRECONCILABLE_WRITES,
                format!(
                    "gateway {} had writes with an unknown outcome that name no document ({} in all); run a comparison job",
                    g.gateway_id, g.unreconcilable_writes
                ),
            ));
        }
    }
    if view.dead_letters() > 0 {
        problems.push(problem(
            codes::DEAD_LETTERS,
            format!("{} unresolved dead letters", view.dead_letters()),
        ));
    }
    let health = if blocked {
        pb::TaskHealth::Blocked
    } else if problems.is_empty() {
        pb::TaskHealth::Healthy
    } else {
        pb::TaskHealth::Degraded
    };
    (health, problems)
}

/// The `ReplicationTask` of `task` with its status.
pub fn task(
    task: &TaskRecord,
    view: &TaskView,
    current: Option<&OperationRecord>,
    last: Option<&OperationRecord>,
) -> pb::ReplicationTask {
    let original_primary = pb::ClusterRef {
        cluster_id: task.primary_cluster_id.to_string(),
        cluster_name: task.primary_cluster_name.clone(),
    };
    let original_backup = pb::ClusterRef {
        cluster_id: task.backup_cluster_id.to_string(),
        cluster_name: task.backup_cluster_name.clone(),
    };
    let (primary, backup) = if task.direction == pb::ReplicationDirection::Reversed {
        (original_backup, original_primary)
    } else {
        (original_primary, original_backup)
    };
    let (health, problems) = health(task, view);
    let mut gateway_ids = task.gateway_ids.clone();
    gateway_ids.sort();
    pb::ReplicationTask {
        id: task.id.to_string(),
        name: task.name.clone(),
        description: task.description.clone(),
        labels: task.labels.clone().into_iter().collect(),
        state: task.state as i32,
        direction: task.direction as i32,
        primary: Some(primary),
        backup: Some(backup),
        gateway_ids,
        listener: task.listener.clone(),
        indices: Some(task.indices.clone()),
        lag_thresholds: Some(pb::LagThresholds {
            warning_lag: Some(duration(millis(task.warning_lag_ms))),
            warning_records: u64::try_from(task.warning_records).unwrap_or(0),
            cutover_max_lag: Some(duration(millis(task.cutover_max_lag_ms))),
            cutover_max_records: u64::try_from(task.cutover_max_records).unwrap_or(0),
        }),
        queue_policy: Some(task.queue_policy),
        replay: Some(task.replay),
        shadow_reads: Some(pb::ShadowReadConfig {
            sample_ratio: task.shadow_sample_ratio,
        }),
        backup_gc_deletes: Some(duration(millis(task.backup_gc_deletes_ms))),
        health: health as i32,
        problems,
        queue_stats: Some(pb::QueueStats {
            lag_records: view.lag_records(),
            lag: Some(duration(view.worst_lag())),
            dead_letters: view.dead_letters(),
            ..Default::default()
        }),
        gateways: view.gateways.clone(),
        current_operation: current.map(operation),
        last_operation: last.map(operation),
        error: task.error.as_ref().map(|(reason, message)| pb::ErrorInfo {
            reason: reason.clone(),
            message: message.clone(),
            ..Default::default()
        }),
        created_at: Some(timestamp(task.created_at)),
        updated_at: Some(timestamp(task.updated_at)),
        started_at: task.started_at.map(timestamp),
        stopped_at: task.stopped_at.map(timestamp),
        ..Default::default()
    }
}
