//! `UpdateTask`: changes the mutable settings of a task.
//!
//! Only the fields set in the request change; clusters, listener, index
//! filter, type rewriting and gc_deletes are immutable (the request cannot
//! even carry them). The request is checked in this order, so a request
//! with several faults gets the first one of the earliest kind:
//!
//! 1. every field's shape (`INVALID_ARGUMENT` naming the field);
//! 2. the task (`NOT_FOUND`), then the added gateways (`NOT_FOUND` naming
//!    `gateway_ids[i]`);
//! 3. what the task's state allows (`FAILED_PRECONDITION` naming the
//!    field): a STOPPED task is terminal, only its name, description and
//!    labels change; the gateways cannot change during a role swap; a
//!    gateway leaves only once it reported DRAINED (DrainGateway) and its
//!    stored reports show nothing of this task left to replay and no
//!    unresolved dead letter (they would be out of reach once it left). A
//!    gateway deleted from the fleet can always be removed. An added
//!    gateway must not serve the task's listener for another non-stopped
//!    task;
//! 4. a name used by another task gives `ALREADY_EXISTS`; a task changed by
//!    a concurrent request since it was read gives `ABORTED`.
//!
//! The change is saved in one transaction with a `TASK_UPDATED` event
//! listing what changed and, when something the gateways receive changed
//! (name, gateways, queue policy, replay options, shadow reads), a new
//! desired-state version for the former and current gateways, then
//! delivered. Description, labels and lag thresholds only matter to the
//! control plane (status, health, cutover defaults) and do not touch the
//! gateways. A request that changes nothing writes nothing and returns the
//! task as it is, so retrying an update is harmless.

use std::collections::BTreeSet;

use tandem_proto::codes;
use tandem_proto::v1 as pb;
use tonic::Status;

use super::{concurrent, settings, status};
use crate::api::Api;
use crate::services::store_status;
use crate::store::gateways::{self as gateway_store, DrainPhase};
use crate::store::tasks::{self as store, NewEvent, TaskRecord, UpdateOutcome};
use crate::validate::{self, invalid};

/// Checks and applies `request`; returns the task as stored afterwards.
pub async fn run(api: &Api, request: pb::UpdateTaskRequest) -> Result<TaskRecord, Status> {
    check_shape(&request)?;
    let task = api.load_task(&request.task_id).await?;
    let mut next = task.clone();
    apply(&mut next, &request)?;
    let changes = Changes::between(&task, &next);
    if changes.is_empty() {
        return Ok(task);
    }
    let added: Vec<String> = next
        .gateway_ids
        .iter()
        .filter(|id| !task.gateway_ids.contains(id))
        .cloned()
        .collect();
    if !added.is_empty() {
        check_added_exist(api, &request, &added).await?;
    }
    check_allowed(api, &task, &changes).await?;

    let notify: Vec<String> = if changes.reach_gateways() {
        let all: BTreeSet<&String> = task.gateway_ids.iter().chain(&next.gateway_ids).collect();
        all.into_iter().cloned().collect()
    } else {
        Vec::new()
    };
    let event = NewEvent::info(
        codes::TASK_UPDATED,
        format!("settings changed: {}", changes.describe(&task, &next)),
    );
    let outcome = store::update_settings(&api.pool, &next, &added, &notify, &event)
        .await
        .map_err(|e| store_status(e, &format!("updating task {}", task.id)))?;
    match outcome {
        UpdateOutcome::Updated(saved, bumped) => {
            tracing::info!(task_id = %saved.id, name = %saved.name, changes = %event.message, "task updated");
            api.deliver(&bumped).await;
            Ok(*saved)
        }
        UpdateOutcome::Changed => Err(concurrent(task.id)),
        UpdateOutcome::ListenerBusy(other) => Err(Status::failed_precondition(format!(
            "gateway_ids: listener {:?} of an added gateway already serves task {other:?}; \
             stop that task or choose other gateways",
            task.listener
        ))),
    }
}

/// Checks the shape of every field set, before anything is read.
fn check_shape(request: &pb::UpdateTaskRequest) -> Result<(), Status> {
    validate::id("task_id", &request.task_id)?;
    if let Some(name) = &request.name {
        validate::resource_name("name", name)?;
    }
    if let Some(description) = &request.description {
        validate::max_chars("description", description, 4096)?;
    }
    if let Some(labels) = &request.labels {
        validate::labels("labels", &labels.labels)?;
    }
    if let Some(gateways) = &request.gateway_ids {
        if gateways.values.is_empty() {
            return Err(invalid(
                "gateway_ids",
                "at least one gateway is required; stop or delete the task instead",
            ));
        }
        let mut seen = BTreeSet::new();
        for (i, id) in gateways.values.iter().enumerate() {
            let path = validate::index("gateway_ids", i);
            validate::gateway_id(&path, id)?;
            if !seen.insert(id) {
                return Err(invalid(path, format!("gateway {id} is listed twice")));
            }
        }
    }
    Ok(())
}

/// Applies the fields set in `request` to `task`, checking the settings.
fn apply(task: &mut TaskRecord, request: &pb::UpdateTaskRequest) -> Result<(), Status> {
    if let Some(name) = &request.name {
        task.name = name.clone();
    }
    if let Some(description) = &request.description {
        task.description = description.clone();
    }
    if let Some(labels) = &request.labels {
        task.labels = labels.labels.clone().into_iter().collect();
    }
    if let Some(gateways) = &request.gateway_ids {
        task.gateway_ids = gateways.values.clone();
    }
    if let Some(thresholds) = &request.lag_thresholds {
        settings::apply_lag_thresholds(task, thresholds)?;
    }
    if let Some(policy) = &request.queue_policy {
        settings::apply_queue_policy(task, policy)?;
    }
    if let Some(replay) = &request.replay {
        settings::apply_replay(task, replay)?;
    }
    if let Some(shadow_reads) = &request.shadow_reads {
        settings::apply_shadow_reads(task, shadow_reads)?;
    }
    Ok(())
}

/// `NOT_FOUND` naming `gateway_ids[i]` for the first added gateway that is
/// not registered.
async fn check_added_exist(
    api: &Api,
    request: &pb::UpdateTaskRequest,
    added: &[String],
) -> Result<(), Status> {
    let listed = request
        .gateway_ids
        .as_ref()
        .map_or(&[][..], |g| g.values.as_slice());
    for (i, id) in listed.iter().enumerate() {
        if !added.contains(id) {
            continue;
        }
        let found = gateway_store::get(&api.pool, id)
            .await
            .map_err(|e| store_status(e, &format!("reading gateway {id}")))?;
        if found.is_none() {
            return Err(Status::not_found(format!(
                "{}: no gateway with id {id}; start the gateway with a [control_plane] section so it registers",
                validate::index("gateway_ids", i)
            )));
        }
    }
    Ok(())
}

/// Refuses the changes the task's state does not allow.
async fn check_allowed(api: &Api, task: &TaskRecord, changes: &Changes) -> Result<(), Status> {
    if task.state == pb::TaskState::Stopped
        && let Some(field) = changes.operational_field()
    {
        return Err(Status::failed_precondition(format!(
            "{field}: task {} is TASK_STATE_STOPPED (terminal); only its name, description and \
             labels can change",
            task.id
        )));
    }
    if !changes.gateways {
        return Ok(());
    }
    if matches!(
        task.state,
        pb::TaskState::CuttingOver | pb::TaskState::RollingBack
    ) || task.target_direction.is_some()
    {
        return Err(Status::failed_precondition(format!(
            "gateway_ids: cannot change the gateways of a task in state {} (a role swap is in \
             progress); retry once it finished",
            task.state.as_str_name()
        )));
    }
    for id in &changes.removed {
        let Some(record) = gateway_store::get(&api.pool, id)
            .await
            .map_err(|e| store_status(e, &format!("reading gateway {id}")))?
        else {
            // Deleted from the fleet: nothing left to wait for.
            continue;
        };
        if record.drain.phase != DrainPhase::Drained {
            return Err(Status::failed_precondition(format!(
                "gateway_ids: gateway {id} cannot leave the task: it is not drained; drain it \
                 with DrainGateway and retry once it reports DRAINED"
            )));
        }
        let report = status::gateway_status(task, id, Some(&record));
        if report.lag_records > 0 {
            return Err(Status::failed_precondition(format!(
                "gateway_ids: gateway {id} cannot leave the task: {} of its records are not \
                 replayed yet; retry once its queue for this task is fully replayed",
                report.lag_records
            )));
        }
        if report.dead_letters > 0 {
            return Err(Status::failed_precondition(format!(
                "gateway_ids: gateway {id} cannot leave the task: it holds {} unresolved dead \
                 letters of this task; retry or skip them first",
                report.dead_letters
            )));
        }
    }
    Ok(())
}

/// What an update changes, compared field by field.
#[derive(Debug, Default)]
struct Changes {
    name: bool,
    description: bool,
    labels: bool,
    gateways: bool,
    removed: Vec<String>,
    lag_thresholds: bool,
    queue_policy: bool,
    replay: bool,
    shadow_reads: bool,
}

impl Changes {
    fn between(before: &TaskRecord, after: &TaskRecord) -> Changes {
        let old: BTreeSet<&String> = before.gateway_ids.iter().collect();
        let new: BTreeSet<&String> = after.gateway_ids.iter().collect();
        Changes {
            name: before.name != after.name,
            description: before.description != after.description,
            labels: before.labels != after.labels,
            gateways: old != new,
            removed: old.difference(&new).map(|id| (*id).clone()).collect(),
            lag_thresholds: (
                before.warning_lag_ms,
                before.warning_records,
                before.cutover_max_lag_ms,
                before.cutover_max_records,
            ) != (
                after.warning_lag_ms,
                after.warning_records,
                after.cutover_max_lag_ms,
                after.cutover_max_records,
            ),
            queue_policy: before.queue_policy != after.queue_policy,
            replay: before.replay != after.replay,
            shadow_reads: before.shadow_sample_ratio != after.shadow_sample_ratio,
        }
    }

    fn is_empty(&self) -> bool {
        !(self.name
            || self.description
            || self.labels
            || self.gateways
            || self.lag_thresholds
            || self.queue_policy
            || self.replay
            || self.shadow_reads)
    }

    /// Whether the gateways' task assignments change.
    fn reach_gateways(&self) -> bool {
        self.name || self.gateways || self.queue_policy || self.replay || self.shadow_reads
    }

    /// The first changed field beyond name, description and labels.
    fn operational_field(&self) -> Option<&'static str> {
        [
            ("gateway_ids", self.gateways),
            ("lag_thresholds", self.lag_thresholds),
            ("queue_policy", self.queue_policy),
            ("replay", self.replay),
            ("shadow_reads", self.shadow_reads),
        ]
        .into_iter()
        .find_map(|(field, changed)| changed.then_some(field))
    }

    /// The changes, for the task event: `name "a" -> "b", labels, ...`.
    fn describe(&self, before: &TaskRecord, after: &TaskRecord) -> String {
        let mut parts = Vec::new();
        if self.name {
            parts.push(format!("name {:?} -> {:?}", before.name, after.name));
        }
        if self.description {
            parts.push("description".to_string());
        }
        if self.labels {
            parts.push("labels".to_string());
        }
        if self.gateways {
            let added: Vec<&String> = after
                .gateway_ids
                .iter()
                .filter(|id| !before.gateway_ids.contains(id))
                .collect();
            let mut moves: Vec<String> = added.iter().map(|id| format!("+{id}")).collect();
            moves.extend(self.removed.iter().map(|id| format!("-{id}")));
            parts.push(format!("gateways {}", moves.join(" ")));
        }
        if self.lag_thresholds {
            parts.push("lag thresholds".to_string());
        }
        if self.queue_policy {
            parts.push("queue policy".to_string());
        }
        if self.replay {
            parts.push("replay options".to_string());
        }
        if self.shadow_reads {
            parts.push(format!(
                "shadow-read ratio {} -> {}",
                before.shadow_sample_ratio, after.shadow_sample_ratio
            ));
        }
        parts.join(", ")
    }
}
