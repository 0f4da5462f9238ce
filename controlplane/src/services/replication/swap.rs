//! Cutover and rollback: one role swap across every gateway of a task.
//!
//! [`begin`] checks the preconditions (task RUNNING in the expected
//! direction, every gateway connected and in sync, no blocked consumer, lag
//! within the maximum, no dead letters unless allowed), then persists the
//! task as CUTTING_OVER / ROLLING_BACK with the target direction and a
//! write hold, and pushes it. Each gateway holds its writes, drains its
//! queue and swaps its roles by itself, bounded by the hold timeout.
//!
//! A background driver then polls the gateways' reports: once every
//! gateway reports the pushed version applied and the new direction, the
//! task is RUNNING in the new direction. If that does not happen within the
//! hold timeout plus a grace period, the operation FAILS and the old
//! direction is published again (gateways that swapped swap back), the task
//! staying RUNNING in its old direction.

use std::collections::HashMap;
use std::time::Duration;

use tandem_proto::codes;
use tandem_proto::v1 as pb;
use tonic::Status;
use uuid::Uuid;

use super::status::{self, TaskView};
use crate::api::Api;
use crate::services::store_status;
use crate::store::gateways as gateway_store;
use crate::store::tasks::{self as store, Hold, NewEvent, OperationRecord, TaskRecord};
use crate::validate;

/// Default maximum lag to start a role swap.
pub const DEFAULT_MAX_LAG: Duration = Duration::from_secs(5);
/// Default write-hold timeout.
pub const DEFAULT_HOLD_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest write-hold timeout.
pub const MAX_HOLD_TIMEOUT: Duration = Duration::from_secs(60);
/// How often the driver looks at the gateways' reports.
const POLL: Duration = Duration::from_millis(250);
/// Time given to gateways beyond the hold to report the swap.
const GRACE: Duration = Duration::from_secs(5);

/// The validated request of a cutover or rollback.
#[derive(Debug, Clone)]
pub struct Params {
    kind: pb::RoleSwapKind,
    max_lag: Option<Duration>,
    max_lag_records: Option<u64>,
    hold_timeout: Duration,
    allow_dead_letters: bool,
    /// Only check the preconditions.
    pub dry_run: bool,
}

fn hold_timeout(value: Option<&prost_types::Duration>) -> Result<Duration, Status> {
    let d = validate::duration("hold_timeout", value, MAX_HOLD_TIMEOUT)?;
    Ok(if d.is_zero() { DEFAULT_HOLD_TIMEOUT } else { d })
}

fn max_lag(value: Option<&prost_types::Duration>) -> Result<Option<Duration>, Status> {
    value
        .map(|d| validate::duration("max_lag", Some(d), Duration::from_secs(24 * 3600)))
        .transpose()
}

impl Params {
    /// From a CutoverRequest.
    pub fn cutover(request: &pb::CutoverRequest) -> Result<Params, Status> {
        validate::id("task_id", &request.task_id)?;
        if let Some(ratio) = request.max_shadow_mismatch_ratio
            && !(0.0..=1.0).contains(&ratio)
        {
            return Err(validate::invalid(
                "max_shadow_mismatch_ratio",
                format!("must be between 0 and 1 (got {ratio})"),
            ));
        }
        Ok(Params {
            kind: pb::RoleSwapKind::Cutover,
            max_lag: max_lag(request.max_lag.as_ref())?,
            max_lag_records: request.max_lag_records,
            hold_timeout: hold_timeout(request.hold_timeout.as_ref())?,
            allow_dead_letters: request.allow_dead_letters,
            dry_run: request.dry_run,
        })
    }

    /// From a RollbackRequest.
    pub fn rollback(request: &pb::RollbackRequest) -> Result<Params, Status> {
        validate::id("task_id", &request.task_id)?;
        Ok(Params {
            kind: pb::RoleSwapKind::Rollback,
            max_lag: max_lag(request.max_lag.as_ref())?,
            max_lag_records: request.max_lag_records,
            hold_timeout: hold_timeout(request.hold_timeout.as_ref())?,
            allow_dead_letters: request.allow_dead_letters,
            dry_run: request.dry_run,
        })
    }

    fn verb(&self) -> &'static str {
        match self.kind {
            pb::RoleSwapKind::Rollback => "roll back",
            _ => "cut over",
        }
    }

    fn directions(&self) -> (pb::ReplicationDirection, pb::ReplicationDirection) {
        match self.kind {
            pb::RoleSwapKind::Rollback => (
                pb::ReplicationDirection::Reversed,
                pb::ReplicationDirection::Forward,
            ),
            _ => (
                pb::ReplicationDirection::Forward,
                pb::ReplicationDirection::Reversed,
            ),
        }
    }
}

/// A failed precondition: (reason, message naming the field or condition).
type Refusal = (&'static str, String);

fn check(
    task: &TaskRecord,
    view: &TaskView,
    params: &Params,
    max_lag: Duration,
    max_records: u64,
) -> Result<(), Refusal> {
    let (from, _) = params.directions();
    if task.state != pb::TaskState::Running || task.direction != from {
        return Err((
            codes::TASK_NOT_RUNNING,
            format!(
                "task_id: cannot {} a task in state {} with direction {}; it must be TASK_STATE_RUNNING in direction {}",
                params.verb(),
                task.state.as_str_name(),
                task.direction.as_str_name(),
                from.as_str_name()
            ),
        ));
    }
    for g in &view.gateways {
        if !g.connected {
            return Err((
                codes::GATEWAY_DISCONNECTED,
                format!(
                    "gateway {} is disconnected; every gateway must be connected",
                    g.gateway_id
                ),
            ));
        }
        if !g.in_sync {
            return Err((
                codes::GATEWAY_OUT_OF_SYNC,
                format!(
                    "gateway {} has not applied the latest desired state yet; retry once it is in sync",
                    g.gateway_id
                ),
            ));
        }
        if g.consumer_state == pb::ConsumerState::BlockedCorrupt as i32 {
            return Err((
                codes::CONSUMER_BLOCKED,
                format!("the consumer of gateway {} is blocked", g.gateway_id),
            ));
        }
    }
    let records = view.lag_records();
    if (params.max_lag_records.is_some() || max_records > 0) && records > max_records {
        return Err((
            codes::LAG_ABOVE_MAXIMUM,
            format!(
                "max_lag_records: {records} unreplayed records, above the maximum {max_records}; wait for the backlog to drain"
            ),
        ));
    }
    let lag = view.worst_lag();
    if lag > max_lag {
        return Err((
            codes::LAG_ABOVE_MAXIMUM,
            format!(
                "max_lag: lag {lag:?} is above the maximum {max_lag:?}; wait for the backlog to drain"
            ),
        ));
    }
    if !params.allow_dead_letters && view.dead_letters() > 0 {
        return Err((
            codes::DEAD_LETTERS,
            format!(
                "allow_dead_letters: {} dead letters are unresolved; resolve them or set allow_dead_letters",
                view.dead_letters()
            ),
        ));
    }
    Ok(())
}

/// Checks the preconditions and, unless a dry run, starts the swap.
pub async fn begin(
    api: &Api,
    mut task: TaskRecord,
    params: Params,
) -> Result<(TaskRecord, pb::RoleSwapOperation), Status> {
    let view = api.view(&task).await?;
    let max_lag = params.max_lag.unwrap_or(if task.cutover_max_lag_ms > 0 {
        Duration::from_millis(task.cutover_max_lag_ms as u64)
    } else {
        DEFAULT_MAX_LAG
    });
    let max_records = params
        .max_lag_records
        .unwrap_or(u64::try_from(task.cutover_max_records).unwrap_or(0));
    let now = chrono::Utc::now();
    let mut op = OperationRecord {
        id: Uuid::new_v4(),
        kind: params.kind,
        phase: pb::RoleSwapPhase::Checking,
        max_lag_ms: i64::try_from(max_lag.as_millis()).unwrap_or(i64::MAX),
        max_lag_records: i64::try_from(max_records).unwrap_or(i64::MAX),
        hold_timeout_ms: i64::try_from(params.hold_timeout.as_millis()).unwrap_or(i64::MAX),
        start_lag_records: i64::try_from(view.lag_records()).unwrap_or(i64::MAX),
        gateways_total: i32::try_from(task.gateway_ids.len()).unwrap_or(i32::MAX),
        gateways_ready: 0,
        started_at: now,
        hold_started_at: None,
        hold_released_at: None,
        finished_at: None,
        error: None,
    };
    let checked = check(&task, &view, &params, max_lag, max_records);
    if params.dry_run {
        op.finished_at = Some(now);
        match checked {
            Ok(()) => op.phase = pb::RoleSwapPhase::Succeeded,
            Err((reason, message)) => {
                op.phase = pb::RoleSwapPhase::Failed;
                op.error = Some((reason.to_string(), message));
            }
        }
        return Ok((task, status::operation(&op)));
    }
    if let Err((reason, message)) = checked {
        return Err(Status::failed_precondition(format!("{message} ({reason})")));
    }
    let (from, to) = params.directions();
    let hold_deadline =
        now + chrono::TimeDelta::from_std(params.hold_timeout).unwrap_or(chrono::TimeDelta::zero());
    task.state = match params.kind {
        pb::RoleSwapKind::Rollback => pb::TaskState::RollingBack,
        _ => pb::TaskState::CuttingOver,
    };
    task.target_direction = Some(to);
    task.hold = Some(Hold {
        id: op.id,
        timeout_ms: op.hold_timeout_ms,
        deadline: hold_deadline,
    });
    let (saved, bumped) = store::save(
        &api.pool,
        &task,
        Some(NewEvent::info(
            if params.kind == pb::RoleSwapKind::Rollback {
                codes::ROLLBACK_STARTED
            } else {
                codes::CUTOVER_STARTED
            },
            format!(
                "role swap {} started: {} -> {}, writes held at most {:?}",
                op.id,
                from.as_str_name(),
                to.as_str_name(),
                params.hold_timeout
            ),
        )),
    )
    .await
    .map_err(|e| store_status(e, &format!("starting the role swap of task {}", task.id)))?
    .ok_or_else(|| super::concurrent(task.id))?;
    op.phase = pb::RoleSwapPhase::Swapping;
    op.hold_started_at = Some(now);
    store::insert_operation(&api.pool, saved.id, &op)
        .await
        .map_err(|e| store_status(e, &format!("recording the role swap of task {}", task.id)))?;
    tracing::info!(task_id = %saved.id, operation = %op.id, kind = ?op.kind, "role swap started");
    api.deliver(&bumped).await;
    let versions: HashMap<String, u64> = bumped.into_iter().collect();
    let deadline = tokio::time::Instant::now()
        + params.hold_timeout
        + api.fleet.settings().heartbeat_interval
        + GRACE;
    tokio::spawn(drive(
        api.clone(),
        saved.id,
        op.clone(),
        versions,
        to,
        deadline,
    ));
    Ok((saved, status::operation(&op)))
}

/// Aborts the cutover in progress on `task` (Rollback on a CUTTING_OVER
/// task): the old direction is published again without a hold.
pub async fn abort(
    api: &Api,
    mut task: TaskRecord,
) -> Result<(TaskRecord, pb::RoleSwapOperation), Status> {
    let (current, _) = store::operations(&api.pool, task.id)
        .await
        .map_err(|e| store_status(e, "reading operations"))?;
    task.state = pb::TaskState::Running;
    task.target_direction = None;
    task.hold = None;
    let saved = api
        .commit(
            task,
            NewEvent::warning(
                codes::CUTOVER_ABORTED,
                "cutover aborted by a rollback; roles unchanged",
            ),
        )
        .await?;
    let now = chrono::Utc::now();
    let op = match current {
        Some(mut op) => {
            op.phase = pb::RoleSwapPhase::Failed;
            op.hold_released_at = Some(now);
            op.finished_at = Some(now);
            op.error = Some((
                codes::ABORTED_BY_ROLLBACK.to_string(),
                "the cutover was aborted by a rollback request".to_string(),
            ));
            store::update_operation(&api.pool, &op)
                .await
                .map_err(|e| store_status(e, "recording the aborted cutover"))?;
            status::operation(&op)
        }
        None => pb::RoleSwapOperation::default(),
    };
    Ok((saved, op))
}

/// Waits for every gateway to report the swap, then commits it; or fails
/// the operation at `deadline` and publishes the old direction again.
async fn drive(
    api: Api,
    task_id: Uuid,
    mut op: OperationRecord,
    versions: HashMap<String, u64>,
    target: pb::ReplicationDirection,
    deadline: tokio::time::Instant,
) {
    loop {
        tokio::time::sleep(POLL).await;
        let task = match store::get(&api.pool, task_id).await {
            Ok(Some(task)) => task,
            Ok(None) => return,
            Err(err) => {
                tracing::warn!(%task_id, error = %err, "role swap: cannot read the task; retrying");
                continue;
            }
        };
        if task.hold.as_ref().map(|h| h.id) != Some(op.id) {
            // Aborted (or replaced) meanwhile.
            return;
        }
        let mut ready: i32 = 0;
        for (gateway_id, version) in &versions {
            if let Ok(Some(record)) = gateway_store::get(&api.pool, gateway_id).await {
                let g = status::gateway_status(&task, gateway_id, Some(&record));
                if g.connected && record.applied_version >= *version && g.direction == target as i32
                {
                    ready += 1;
                }
            }
        }
        let all = ready as usize == versions.len();
        if ready != op.gateways_ready {
            op.gateways_ready = ready;
            let _ = store::update_operation(&api.pool, &op).await;
        }
        let timed_out = tokio::time::Instant::now() >= deadline;
        if !all && !timed_out {
            continue;
        }
        let mut next = task.clone();
        next.state = pb::TaskState::Running;
        next.target_direction = None;
        next.hold = None;
        let event = if all {
            next.direction = target;
            NewEvent::info(
                if op.kind == pb::RoleSwapKind::Rollback {
                    codes::ROLLBACK_SUCCEEDED
                } else {
                    codes::CUTOVER_SUCCEEDED
                },
                format!("every gateway runs in direction {}", target.as_str_name()),
            )
        } else {
            NewEvent::warning(
                if op.kind == pb::RoleSwapKind::Rollback {
                    codes::ROLLBACK_FAILED
                } else {
                    codes::CUTOVER_FAILED
                },
                format!(
                    "only {ready} of {} gateways reported direction {} in time; old direction published again",
                    versions.len(),
                    target.as_str_name()
                ),
            )
        };
        match store::save(&api.pool, &next, Some(event)).await {
            Ok(Some((saved, bumped))) => {
                let now = chrono::Utc::now();
                op.hold_released_at = Some(now);
                op.finished_at = Some(now);
                if all {
                    op.phase = pb::RoleSwapPhase::Succeeded;
                } else {
                    op.phase = pb::RoleSwapPhase::Failed;
                    op.error = Some((
                        codes::DEADLINE_EXCEEDED.to_string(),
                        format!(
                            "{ready} of {} gateways reported the swap before the hold timeout expired",
                            versions.len()
                        ),
                    ));
                }
                if let Err(err) = store::update_operation(&api.pool, &op).await {
                    tracing::warn!(%task_id, error = %err, "role swap: cannot record the outcome");
                }
                tracing::info!(%task_id, operation = %op.id, phase = ?op.phase, direction = ?saved.direction, "role swap finished");
                api.deliver(&bumped).await;
                return;
            }
            Ok(None) => continue,
            Err(err) => {
                tracing::warn!(%task_id, error = %err, "role swap: cannot save the outcome; retrying");
            }
        }
    }
}

/// Restarts the driver of every role swap left in progress (by a control
/// plane that stopped during it): each finishes or fails as if it had not
/// been interrupted, its deadline counted from the stored hold deadline.
/// Several replicas may do so at once: only one commits the outcome
/// (optimistic concurrency).
pub async fn resume_interrupted(api: Api) {
    let filter = store::TaskFilter {
        states: vec![pb::TaskState::CuttingOver, pb::TaskState::RollingBack],
        ..Default::default()
    };
    let tasks = match store::list(&api.pool, &filter, None, 10_000).await {
        Ok(tasks) => tasks,
        Err(err) => {
            tracing::warn!(error = %err, "cannot look for interrupted role swaps");
            return;
        }
    };
    for task in tasks {
        let (Some(hold), Some(target)) = (task.hold.clone(), task.target_direction) else {
            continue;
        };
        let Ok((Some(op), _)) = store::operations(&api.pool, task.id).await else {
            continue;
        };
        if op.id != hold.id {
            continue;
        }
        let mut versions = HashMap::new();
        for gateway_id in &task.gateway_ids {
            if let Ok(Some(record)) = gateway_store::get(&api.pool, gateway_id).await {
                versions.insert(gateway_id.clone(), record.desired_version);
            }
        }
        let remaining = (hold.deadline - chrono::Utc::now())
            .to_std()
            .unwrap_or(Duration::ZERO);
        let deadline = tokio::time::Instant::now()
            + remaining
            + api.fleet.settings().heartbeat_interval
            + GRACE;
        tracing::info!(task_id = %task.id, operation = %op.id, "resuming an interrupted role swap");
        tokio::spawn(drive(api.clone(), task.id, op, versions, target, deadline));
    }
}
