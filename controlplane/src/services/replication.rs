//! `tandem.v1.ReplicationService`: replication tasks, their lifecycle, and
//! fleet-wide cutover and rollback.
//!
//! Every change is persisted first ([`crate::store::tasks::save`] raises the
//! desired-state version of the task's gateways in the same transaction),
//! then delivered to the gateways connected to this process
//! ([`Api::deliver`]); the others get it from the database when they
//! report or reconnect (see [`crate::fleet`]).
//!
//! Task status (per-gateway mode, direction, lag) is computed from the
//! gateways' latest heartbeats and queue statistics ([`status`]). A role
//! swap ([`swap`]) publishes the new direction with a write hold, then runs
//! in the background until every gateway reports it applied, or the hold
//! (plus a grace period) expires and the old direction is published again.
//!
//! Role swaps left in progress by a stopped control plane are driven again
//! at start-up ([`resume_interrupted`]).
//!
//! `UpdateTask` ([`update`]) changes name, description, labels, gateways,
//! lag thresholds, queue policy, replay options and shadow reads.
//!
//! Settings stored and sent to the gateways in every `TaskAssignment`, but
//! not applied by Tandem's gateway yet (it keeps its TOML configuration and
//! only logs them as ignored): queue policy, replay options, shadow reads
//! and the index filter. Lag thresholds are the control plane's own (health
//! and cutover defaults) and apply at once.
//!
//! Not implemented yet: type rewriting (accepted by CreateTask, neither
//! stored nor sent).

mod settings;
pub(crate) mod status;
mod swap;
mod update;
mod watch;

pub use swap::resume_interrupted;

use std::collections::BTreeSet;
use std::time::Duration;

use tandem_proto::codes;
use tandem_proto::v1 as pb;
use tandem_proto::v1::replication_service_server::ReplicationService;
use tonic::codegen::BoxStream;
use tonic::{Request, Response, Status};
use uuid::Uuid;

use super::store_status;
use crate::api::Api;
use crate::fleet;
use crate::pagination::PageRequest;
use crate::store::gateways as gateway_store;
use crate::store::tasks::{self as store, Bumped, InsertOutcome, NewEvent, TaskFilter, TaskRecord};
use crate::validate::{self, invalid};

#[tonic::async_trait]
impl ReplicationService for Api {
    async fn create_task(
        &self,
        request: Request<pb::CreateTaskRequest>,
    ) -> Result<Response<pb::CreateTaskResponse>, Status> {
        let request = request.into_inner();
        let record = self.check_create(&request).await?;
        let outcome = store::insert(&self.pool, &record)
            .await
            .map_err(|e| store_status(e, &format!("creating task {}", request.name)))?;
        let task = match outcome {
            InsertOutcome::Existing(task) => *task,
            InsertOutcome::ListenerBusy(other) => {
                return Err(Status::failed_precondition(format!(
                    "listener: listener {:?} of one of the gateways already serves task {other:?}; \
                     stop that task or choose another listener",
                    request.listener
                )));
            }
            InsertOutcome::Created(task, bumped) => {
                tracing::info!(task_id = %task.id, name = %task.name, state = ?task.state, "task created");
                self.deliver(&bumped).await;
                *task
            }
        };
        Ok(Response::new(pb::CreateTaskResponse {
            task: Some(self.snapshot(&task).await?),
        }))
    }

    async fn get_task(
        &self,
        request: Request<pb::GetTaskRequest>,
    ) -> Result<Response<pb::GetTaskResponse>, Status> {
        let task = self.load_task(&request.get_ref().task_id).await?;
        Ok(Response::new(pb::GetTaskResponse {
            task: Some(self.snapshot(&task).await?),
        }))
    }

    async fn list_tasks(
        &self,
        request: Request<pb::ListTasksRequest>,
    ) -> Result<Response<pb::ListTasksResponse>, Status> {
        let request = request.into_inner();
        let mut filter = TaskFilter::default();
        for (i, state) in request.states.iter().enumerate() {
            let state: pb::TaskState =
                validate::enum_value(&validate::index("states", i), *state, false)?;
            filter.states.push(state);
        }
        if !request.cluster_id.is_empty() {
            filter.cluster_id = Some(validate::id("cluster_id", &request.cluster_id)?);
        }
        if !request.gateway_id.is_empty() {
            validate::gateway_id("gateway_id", &request.gateway_id)?;
            filter.gateway_id = Some(request.gateway_id.clone());
        }
        validate::labels("labels", &request.labels)?;
        filter.labels = request.labels.clone().into_iter().collect();
        let fingerprint = format!(
            "{:?}|{}|{}|{:?}",
            request.states, request.cluster_id, request.gateway_id, filter.labels
        );
        let page = PageRequest::<(i64, Uuid)>::parse(
            request.page_size,
            &request.page_token,
            &fingerprint,
        )?;
        let mut records = store::list(&self.pool, &filter, page.after, page.fetch_limit())
            .await
            .map_err(|e| store_status(e, "listing tasks"))?;
        let next_page_token = page.finish(
            &mut records,
            |t| (t.created_at.timestamp_micros(), t.id),
            &fingerprint,
        );
        let mut tasks = Vec::with_capacity(records.len());
        for record in &records {
            tasks.push(self.snapshot(record).await?);
        }
        Ok(Response::new(pb::ListTasksResponse {
            tasks,
            next_page_token,
        }))
    }

    async fn update_task(
        &self,
        request: Request<pb::UpdateTaskRequest>,
    ) -> Result<Response<pb::UpdateTaskResponse>, Status> {
        let task = update::run(self, request.into_inner()).await?;
        Ok(Response::new(pb::UpdateTaskResponse {
            task: Some(self.snapshot(&task).await?),
        }))
    }

    async fn start_task(
        &self,
        request: Request<pb::StartTaskRequest>,
    ) -> Result<Response<pb::StartTaskResponse>, Status> {
        let mut task = self.load_task(&request.get_ref().task_id).await?;
        match task.state {
            pb::TaskState::Running => {}
            pb::TaskState::Created => {
                task.state = pb::TaskState::Running;
                task.started_at.get_or_insert_with(chrono::Utc::now);
                task = self
                    .commit(task, NewEvent::info(codes::TASK_STARTED, "replay started"))
                    .await?;
            }
            other => return Err(illegal("start", other, "CREATED")),
        }
        Ok(Response::new(pb::StartTaskResponse {
            task: Some(self.snapshot(&task).await?),
        }))
    }

    async fn pause_task(
        &self,
        request: Request<pb::PauseTaskRequest>,
    ) -> Result<Response<pb::PauseTaskResponse>, Status> {
        let mut task = self.load_task(&request.get_ref().task_id).await?;
        match task.state {
            pb::TaskState::Paused => {}
            pb::TaskState::Running => {
                task.state = pb::TaskState::Paused;
                task = self
                    .commit(task, NewEvent::info(codes::TASK_PAUSED, "replay paused"))
                    .await?;
            }
            other => return Err(illegal("pause", other, "RUNNING")),
        }
        Ok(Response::new(pb::PauseTaskResponse {
            task: Some(self.snapshot(&task).await?),
        }))
    }

    async fn resume_task(
        &self,
        request: Request<pb::ResumeTaskRequest>,
    ) -> Result<Response<pb::ResumeTaskResponse>, Status> {
        let mut task = self.load_task(&request.get_ref().task_id).await?;
        match task.state {
            pb::TaskState::Running => {}
            pb::TaskState::Paused => {
                task.state = pb::TaskState::Running;
                task = self
                    .commit(task, NewEvent::info(codes::TASK_RESUMED, "replay resumed"))
                    .await?;
            }
            pb::TaskState::Failed => {
                task.state = match task.state_before_failure.take() {
                    Some(
                        state @ (pb::TaskState::Created
                        | pb::TaskState::Paused
                        | pb::TaskState::Running),
                    ) => state,
                    _ => pb::TaskState::Running,
                };
                task.error = None;
                task.target_direction = None;
                task.hold = None;
                task = self
                    .commit(
                        task,
                        NewEvent::info(
                            codes::TASK_RESUMED,
                            "failed task resumed; desired state re-published",
                        ),
                    )
                    .await?;
            }
            other => return Err(illegal("resume", other, "PAUSED or FAILED")),
        }
        Ok(Response::new(pb::ResumeTaskResponse {
            task: Some(self.snapshot(&task).await?),
        }))
    }

    async fn stop_task(
        &self,
        request: Request<pb::StopTaskRequest>,
    ) -> Result<Response<pb::StopTaskResponse>, Status> {
        let request = request.into_inner();
        let mut task = self.load_task(&request.task_id).await?;
        match task.state {
            pb::TaskState::Stopped => {}
            pb::TaskState::CuttingOver | pb::TaskState::RollingBack => {
                return Err(illegal(
                    "stop",
                    task.state,
                    "any state but CUTTING_OVER and ROLLING_BACK",
                ));
            }
            _ => {
                if !request.discard_unreplayed {
                    let view = self.view(&task).await?;
                    if let Some(problem) = view.unreplayed_problem() {
                        return Err(Status::failed_precondition(format!(
                            "discard_unreplayed: {problem}; those writes would never reach the backup: \
                             wait for the lag to reach zero, or set discard_unreplayed"
                        )));
                    }
                }
                task.state_before_failure = None;
                task.state = pb::TaskState::Stopped;
                task.stopped_at = Some(chrono::Utc::now());
                task = self
                    .commit(
                        task,
                        NewEvent::info(codes::TASK_STOPPED, "replication stopped"),
                    )
                    .await?;
            }
        }
        Ok(Response::new(pb::StopTaskResponse {
            task: Some(self.snapshot(&task).await?),
        }))
    }

    async fn delete_task(
        &self,
        request: Request<pb::DeleteTaskRequest>,
    ) -> Result<Response<pb::DeleteTaskResponse>, Status> {
        let task = self.load_task(&request.get_ref().task_id).await?;
        if !matches!(
            task.state,
            pb::TaskState::Created | pb::TaskState::Stopped | pb::TaskState::Failed
        ) {
            return Err(illegal("delete", task.state, "CREATED, STOPPED or FAILED"));
        }
        let bumped = store::delete(&self.pool, &task)
            .await
            .map_err(|e| store_status(e, &format!("deleting task {}", task.id)))?
            .ok_or_else(|| concurrent(task.id))?;
        tracing::info!(task_id = %task.id, "task deleted");
        self.deliver(&bumped).await;
        Ok(Response::new(pb::DeleteTaskResponse {}))
    }

    async fn cutover(
        &self,
        request: Request<pb::CutoverRequest>,
    ) -> Result<Response<pb::CutoverResponse>, Status> {
        let request = request.into_inner();
        let params = swap::Params::cutover(&request)?;
        let task = self.load_task(&request.task_id).await?;
        let (task, operation) = swap::begin(self, task, params).await?;
        Ok(Response::new(pb::CutoverResponse {
            task: Some(self.snapshot(&task).await?),
            operation: Some(operation),
        }))
    }

    async fn rollback(
        &self,
        request: Request<pb::RollbackRequest>,
    ) -> Result<Response<pb::RollbackResponse>, Status> {
        let request = request.into_inner();
        let params = swap::Params::rollback(&request)?;
        let task = self.load_task(&request.task_id).await?;
        let (task, operation) = if task.state == pb::TaskState::CuttingOver && !params.dry_run {
            swap::abort(self, task).await?
        } else {
            swap::begin(self, task, params).await?
        };
        Ok(Response::new(pb::RollbackResponse {
            task: Some(self.snapshot(&task).await?),
            operation: Some(operation),
        }))
    }

    async fn watch_task(
        &self,
        request: Request<pb::WatchTaskRequest>,
    ) -> Result<Response<BoxStream<pb::WatchTaskResponse>>, Status> {
        let request = request.into_inner();
        let min_severity: pb::EventSeverity =
            validate::enum_value("min_severity", request.min_severity, true)?;
        let interval = validate::duration(
            "lag_sample_interval",
            request.lag_sample_interval.as_ref(),
            Duration::from_secs(3600),
        )?;
        let task = self.load_task(&request.task_id).await?;
        let first = self.snapshot(&task).await?;
        let options = watch::Options {
            lag_sample_interval: if interval.is_zero() {
                Duration::from_secs(5)
            } else {
                interval.max(Duration::from_secs(1))
            },
            lag_samples: !request.exclude_lag_samples,
            min_severity,
        };
        Ok(Response::new(watch::spawn(
            self.clone(),
            task.id,
            first,
            options,
        )))
    }

    async fn list_task_events(
        &self,
        request: Request<pb::ListTaskEventsRequest>,
    ) -> Result<Response<pb::ListTaskEventsResponse>, Status> {
        let request = request.into_inner();
        let min_severity: pb::EventSeverity =
            validate::enum_value("min_severity", request.min_severity, true)?;
        if !request.gateway_id.is_empty() {
            validate::gateway_id("gateway_id", &request.gateway_id)?;
        }
        let task = self.load_task(&request.task_id).await?;
        let fingerprint = format!(
            "{}|{}|{}",
            request.task_id, request.min_severity, request.gateway_id
        );
        let page = PageRequest::<i64>::parse(request.page_size, &request.page_token, &fingerprint)?;
        let mut events = if request.gateway_id.is_empty() {
            store::events(
                &self.pool,
                task.id,
                None,
                page.after,
                min_severity,
                page.fetch_limit(),
            )
            .await
            .map_err(|e| store_status(e, "listing task events"))?
        } else {
            // Control-plane task events have no gateway source.
            Vec::new()
        };
        let next_page_token = page.finish(&mut events, |e| e.event_no, &fingerprint);
        Ok(Response::new(pb::ListTaskEventsResponse {
            events: events.into_iter().map(|e| e.event).collect(),
            next_page_token,
        }))
    }
}

impl Api {
    /// The task whose id is the request field `task_id`.
    pub(crate) async fn load_task(&self, task_id: &str) -> Result<TaskRecord, Status> {
        let id = validate::id("task_id", task_id)?;
        store::get(&self.pool, id)
            .await
            .map_err(|e| store_status(e, &format!("reading task {id}")))?
            .ok_or_else(|| Status::not_found(format!("task_id: no task with id {id}")))
    }

    /// Saves `task` (read at its `version`) with `event`, then delivers the
    /// new desired states. `ABORTED` when the task changed meanwhile.
    pub(crate) async fn commit(
        &self,
        task: TaskRecord,
        event: NewEvent,
    ) -> Result<TaskRecord, Status> {
        let reason = event.reason.clone();
        let (saved, bumped) = store::save(&self.pool, &task, Some(event))
            .await
            .map_err(|e| store_status(e, &format!("updating task {}", task.id)))?
            .ok_or_else(|| concurrent(task.id))?;
        tracing::info!(task_id = %saved.id, state = ?saved.state, direction = ?saved.direction, %reason, "task changed");
        self.deliver(&bumped).await;
        Ok(saved)
    }

    /// Pushes the stored desired state of each gateway in `bumped` that is
    /// connected to this process.
    pub(crate) async fn deliver(&self, bumped: &Bumped) {
        for (gateway_id, _) in bumped {
            if !self.fleet.is_connected(gateway_id) {
                continue;
            }
            let record = match gateway_store::get(&self.pool, gateway_id).await {
                Ok(Some(record)) => record,
                Ok(None) => continue,
                Err(err) => {
                    tracing::warn!(%gateway_id, error = %err, "cannot read gateway to push its desired state");
                    continue;
                }
            };
            match fleet::load_desired_state(&self.pool, &self.secrets, &record).await {
                Ok(state) => {
                    if let Err(err) = self.fleet.push_desired_state(gateway_id, state).await {
                        tracing::debug!(%gateway_id, reason = %err, "desired state not pushed from this replica");
                    }
                }
                Err(err) => {
                    tracing::warn!(%gateway_id, error = %err, "cannot build the desired state");
                }
            }
        }
    }

    /// The task's gateways as last reported.
    pub(crate) async fn view(&self, task: &TaskRecord) -> Result<status::TaskView, Status> {
        let mut gateways = Vec::with_capacity(task.gateway_ids.len());
        let mut ids: Vec<&String> = task.gateway_ids.iter().collect();
        ids.sort();
        for id in ids {
            let record = gateway_store::get(&self.pool, id)
                .await
                .map_err(|e| store_status(e, &format!("reading gateway {id}")))?;
            gateways.push(status::gateway_status(task, id, record.as_ref()));
        }
        Ok(status::TaskView { gateways })
    }

    /// The full `ReplicationTask` of `task`, with its status.
    pub(crate) async fn snapshot(&self, task: &TaskRecord) -> Result<pb::ReplicationTask, Status> {
        let view = self.view(task).await?;
        let (current, last) = store::operations(&self.pool, task.id)
            .await
            .map_err(|e| store_status(e, &format!("reading operations of task {}", task.id)))?;
        Ok(status::task(task, &view, current.as_ref(), last.as_ref()))
    }

    /// Checks a CreateTaskRequest and builds the record to insert.
    async fn check_create(&self, request: &pb::CreateTaskRequest) -> Result<TaskRecord, Status> {
        validate::max_chars("request_id", &request.request_id, 128)?;
        validate::resource_name("name", &request.name)?;
        validate::max_chars("description", &request.description, 4096)?;
        validate::labels("labels", &request.labels)?;
        let primary = request
            .primary
            .as_ref()
            .ok_or_else(|| invalid("primary", "required"))?;
        let backup = request
            .backup
            .as_ref()
            .ok_or_else(|| invalid("backup", "required"))?;
        // Shape first, existence second: every INVALID_ARGUMENT before any
        // NOT_FOUND.
        check_ref_shape("primary", primary)?;
        check_ref_shape("backup", backup)?;
        if request.gateway_ids.is_empty() {
            return Err(invalid("gateway_ids", "at least one gateway is required"));
        }
        let mut seen = BTreeSet::new();
        for (i, id) in request.gateway_ids.iter().enumerate() {
            let path = validate::index("gateway_ids", i);
            validate::gateway_id(&path, id)?;
            if !seen.insert(id) {
                return Err(invalid(path, format!("gateway {id} is listed twice")));
            }
        }
        validate::max_chars("listener", &request.listener, 63)?;
        let indices = request.indices.clone().unwrap_or_default();
        for (list, values) in [
            ("indices.include", &indices.include),
            ("indices.exclude", &indices.exclude),
        ] {
            for (i, value) in values.iter().enumerate() {
                let path = validate::index(list, i);
                validate::required(&path, value)?;
                validate::max_chars(&path, value, 255)?;
            }
        }
        let backup_gc_deletes_ms = settings::millis(
            "backup_gc_deletes",
            request.backup_gc_deletes.as_ref(),
            settings::MAX_SETTING_DURATION,
        )?;
        let now = chrono::Utc::now();
        // Clusters are resolved once every field is checked.
        let mut record = TaskRecord {
            id: Uuid::nil(),
            name: request.name.clone(),
            description: request.description.clone(),
            labels: request.labels.clone().into_iter().collect(),
            primary_cluster_id: Uuid::nil(),
            primary_cluster_name: String::new(),
            backup_cluster_id: Uuid::nil(),
            backup_cluster_name: String::new(),
            gateway_ids: request.gateway_ids.clone(),
            listener: request.listener.clone(),
            state: if request.start_paused {
                pb::TaskState::Created
            } else {
                pb::TaskState::Running
            },
            state_before_failure: None,
            direction: pb::ReplicationDirection::Forward,
            target_direction: None,
            hold: None,
            indices,
            warning_lag_ms: 0,
            warning_records: 0,
            cutover_max_lag_ms: 0,
            cutover_max_records: 0,
            shadow_sample_ratio: 0.0,
            queue_policy: pb::QueuePolicy::default(),
            replay: pb::ReplayOptions::default(),
            backup_gc_deletes_ms,
            error: None,
            request_id: (!request.request_id.is_empty()).then(|| request.request_id.clone()),
            version: 0,
            created_at: now,
            updated_at: now,
            started_at: None,
            stopped_at: None,
        };
        settings::apply_lag_thresholds(&mut record, &request.lag_thresholds.unwrap_or_default())?;
        settings::apply_shadow_reads(&mut record, &request.shadow_reads.unwrap_or_default())?;
        settings::apply_queue_policy(&mut record, &request.queue_policy.unwrap_or_default())?;
        settings::apply_replay(&mut record, &request.replay.unwrap_or_default())?;

        record.primary_cluster_id = self.resolve_cluster("primary", primary).await?;
        record.backup_cluster_id = self.resolve_cluster("backup", backup).await?;
        if record.primary_cluster_id == record.backup_cluster_id {
            return Err(invalid(
                "backup",
                format!(
                    "must differ from primary (both are cluster {})",
                    record.primary_cluster_id
                ),
            ));
        }
        self.check_gateways_exist(&request.gateway_ids).await?;
        Ok(record)
    }

    /// `NOT_FOUND` naming `gateway_ids[i]` for the first of `ids` that is
    /// not registered.
    async fn check_gateways_exist(&self, ids: &[String]) -> Result<(), Status> {
        for (i, id) in ids.iter().enumerate() {
            let found = gateway_store::get(&self.pool, id)
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

    /// The id of the cluster `reference` (field `field`) designates.
    pub(crate) async fn resolve_cluster(
        &self,
        field: &str,
        reference: &pb::ClusterRef,
    ) -> Result<Uuid, Status> {
        if !reference.cluster_id.is_empty() {
            let path = validate::field(field, "cluster_id");
            let id = validate::id(&path, &reference.cluster_id)?;
            let exists = store::cluster_exists(&self.pool, id)
                .await
                .map_err(|e| store_status(e, "reading clusters"))?;
            if !exists {
                return Err(Status::not_found(format!(
                    "{path}: no cluster with id {id}"
                )));
            }
            return Ok(id);
        }
        let path = validate::field(field, "cluster_name");
        store::cluster_id_by_name(&self.pool, &reference.cluster_name)
            .await
            .map_err(|e| store_status(e, "reading clusters"))?
            .ok_or_else(|| {
                Status::not_found(format!(
                    "{path}: no cluster named {:?}",
                    reference.cluster_name
                ))
            })
    }
}

/// Checks that a ClusterRef names a cluster by id or by name.
pub(crate) fn check_ref_shape(field: &str, reference: &pb::ClusterRef) -> Result<(), Status> {
    if !reference.cluster_id.is_empty() {
        validate::id(&validate::field(field, "cluster_id"), &reference.cluster_id)?;
        return Ok(());
    }
    if reference.cluster_name.is_empty() {
        return Err(invalid(field, "required: set cluster_id or cluster_name"));
    }
    validate::resource_name(
        &validate::field(field, "cluster_name"),
        &reference.cluster_name,
    )
}

/// `FAILED_PRECONDITION` for an operation not allowed in `state`.
fn illegal(action: &str, state: pb::TaskState, allowed: &str) -> Status {
    Status::failed_precondition(format!(
        "task_id: cannot {action} a task in state {}; allowed from {allowed}",
        state.as_str_name()
    ))
}

/// `ABORTED` for a task changed by a concurrent request.
pub(crate) fn concurrent(id: Uuid) -> Status {
    Status::aborted(format!(
        "task_id: task {id} was changed by a concurrent request; read it again and retry"
    ))
}
